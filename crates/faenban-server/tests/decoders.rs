//! Decoder robustness: arbitrary bytes, and valid requests cut, spliced and
//! with bytes flipped, sent with a valid token to every endpoint. The server
//! answers each with a 2xx or a 4xx with a reason (never a 5xx, never a
//! hang), stores nothing it should not, and still answers `/health` after.
//!
//! 10,000 cases in all by default (2,500 per endpoint); `DECODER_CASES=N`
//! runs N per endpoint:
//! `DECODER_CASES=100000 cargo test --release -p faenban-server --test decoders`.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use faenban_core::sync::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::*;
use tower::ServiceExt as _;

fn cases() -> u32 {
    std::env::var("DECODER_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(2_500)
}

/// Bytes made from a valid body: cut, spliced with random bytes, or with
/// bytes flipped; or random bytes outright.
fn mangled(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let cut = {
        let valid = valid.clone();
        (0..len).prop_map(move |at| valid[..at].to_vec())
    };
    let flipped = {
        let valid = valid.clone();
        prop::collection::vec((0..len, any::<u8>()), 1..8).prop_map(move |flips| {
            let mut bytes = valid.clone();
            for (at, byte) in flips {
                bytes[at] = byte;
            }
            bytes
        })
    };
    let spliced = {
        let valid = valid.clone();
        (0..len, prop::collection::vec(any::<u8>(), 0..64)).prop_map(move |(at, junk)| {
            let mut bytes = valid[..at].to_vec();
            bytes.extend(junk);
            bytes.extend_from_slice(&valid[at..]);
            bytes
        })
    };
    let json_noise = prop::sample::select(vec![
        &b"{}"[..],
        b"[]",
        b"null",
        b"{\"protocol\":2}",
        b"{\"protocol\":18446744073709551616}",
        b"{\"protocol\":2,\"changes\":{\"devices\":[],\"records\":[],\"changes\":[{\"r\":4294967295}]}}",
        b"\"\\ud800\"",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ])
    .prop_map(|bytes| bytes.to_vec());
    prop_oneof![
        2 => cut,
        3 => flipped,
        2 => spliced,
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_noise,
    ]
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Sends every case to `path` and checks the answer.
fn fuzz_post(
    server: &Server,
    runtime: &tokio::runtime::Runtime,
    token: &str,
    path: &str,
    valid: Vec<u8>,
) {
    runner()
        .run(&mangled(valid), |bytes| {
            let request = Request::post(path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(bytes))
                .unwrap();
            let (status, body) = runtime.block_on(server.send(request));
            prop_assert!(
                status.is_success() || status.is_client_error(),
                "{path}: {status} {body}"
            );
            if status.is_client_error() {
                prop_assert!(
                    body["error"].is_string() && body["message"].is_string(),
                    "{body}"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_to_every_endpoint_get_an_answer_with_a_reason() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = Server::new();
    let token = server.account("มาลี", Role::Volunteer, &["40010101"], None);
    let (replica, changes) = households(1, "40010101", 3, NOW);
    assert_eq!(
        runtime.block_on(server.hello(&token, replica.device)).0,
        StatusCode::OK
    );

    let key = key_of(replica.device);
    let hello = serde_json::json!({
        "protocol": faenban_core::sync::PROTOCOL_VERSION,
        "device": replica.device,
        "name": "laptop",
        "public_key": key.public().to_string(),
        "proof": key.sign_hello(replica.device, &token).to_string(),
    });
    fuzz_post(
        &server,
        &runtime,
        &token,
        "/v1/hello",
        hello.to_string().into_bytes(),
    );
    let push = push_body(replica.device, 1, &changes, false);
    fuzz_post(
        &server,
        &runtime,
        &token,
        "/v1/push",
        push.to_string().into_bytes(),
    );
    let relay = push_body(replica.device, 1, &changes, true);
    fuzz_post(
        &server,
        &runtime,
        &token,
        "/v1/push",
        relay.to_string().into_bytes(),
    );
    let letter = relay_body(&server, replica.device, 1, &changes, Some(0));
    fuzz_post(
        &server,
        &runtime,
        &token,
        "/v1/relay",
        letter.to_string().into_bytes(),
    );

    // Query strings for pulls.
    runner()
        .run(
            &mangled(b"since=0&limit=700&protocol=3&check=1.0.x".to_vec()),
            |bytes| {
                let query: String = bytes
                    .iter()
                    .map(|b| match b {
                        b'a'..=b'z' | b'0'..=b'9' | b'=' | b'&' | b'.' | b'-' => char::from(*b),
                        _ => '%',
                    })
                    .collect();
                let (status, body) =
                    runtime.block_on(server.get(&format!("/v1/changes?{query}"), &token));
                prop_assert!(
                    status.is_success() || status.is_client_error(),
                    "{query}: {status} {body}"
                );
                Ok(())
            },
        )
        .unwrap();

    // Nothing half-stored: whatever was accepted is whole and pulls back.
    let (pulled, _) = runtime.block_on(server.pull_from(&token, 0));
    assert!(
        pulled.iter().all(|change| changes.contains(change)),
        "{pulled:?}"
    );
    let request = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(runtime.block_on(server.send(request)).0, StatusCode::OK);
}

#[test]
fn mangled_war_room_forms_and_queries_get_a_page_never_a_failure() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = Server::new();
    let token = server.account("ศจพ.จ.", Role::Province, &[], None);
    let answer = |request: Request<Body>| {
        let response = runtime
            .block_on(server.app.clone().oneshot(request))
            .unwrap();
        let status = response.status();
        let csp = response
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .is_some();
        let cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        (status, csp, cookie)
    };
    // Sign-in forms.
    let form = format!("token={token}&lang=th").into_bytes();
    runner()
        .run(&mangled(form), |bytes| {
            let request = Request::post("/war-room/sign-in")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(bytes))
                .unwrap();
            let (status, csp, _) = answer(request);
            prop_assert!(
                status == StatusCode::SEE_OTHER || status.is_client_error(),
                "{status}"
            );
            prop_assert!(csp);
            Ok(())
        })
        .unwrap();
    // Page queries, signed in.
    let request = Request::post("/war-room/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let (status, _, cookie) = answer(request);
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    runner()
        .run(
            &mangled(b"area=4001&dimension=income&fiscal_year=2569&lang=en".to_vec()),
            |bytes| {
                let query: String = bytes
                    .iter()
                    .map(|b| match b {
                        b'a'..=b'z' | b'0'..=b'9' | b'=' | b'&' | b'_' => char::from(*b),
                        _ => '%',
                    })
                    .collect();
                let request = Request::get(format!("/war-room?{query}"))
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .unwrap();
                let (status, csp, _) = answer(request);
                prop_assert!(
                    status.is_success() || status.is_client_error(),
                    "{query}: {status}"
                );
                prop_assert!(csp);
                Ok(())
            },
        )
        .unwrap();
}
