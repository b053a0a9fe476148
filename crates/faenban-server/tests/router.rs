//! Router-level tests: the protocol's answers to good, bad and hostile
//! requests, each run against both stores (a real SQLite store in a
//! scratch folder, and a scratch database on a real PostgreSQL).

mod support;

use std::io::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use faenban_core::model::{assess_visit, latest_visits};
use faenban_core::sync::{Role, PROTOCOL_VERSION};
use faenban_core::{Catalogues, Change, Dimension, RecordKey, RecordKind, Replica};
use faenban_server::backend::Backend;
use faenban_server::token;
use faenban_store::{Store, SCHEMA_VERSION};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

on_both_stores! {
#[tokio::test]
async fn health_names_the_protocol_and_schema(server: Server) {
    let request = Request::get("/health").body(Body::empty()).unwrap();
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["protocol"], PROTOCOL_VERSION);
    assert_eq!(body["schema"], SCHEMA_VERSION);
}
}

on_both_stores! {
#[tokio::test]
async fn a_push_is_applied_once_and_a_resent_batch_changes_nothing(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    assert_eq!(server.hello(&token, device).await.0, StatusCode::OK);
    let (_, changes) = households(1, "40010203", 3, NOW);
    let (status, first) = server.push(&token, device, 1, &changes).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["applied"], 6);
    assert_eq!(first["held_through"], 6);
    let feed = server.feed_end();

    let (status, again) = server.push(&token, device, 1, &changes).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["applied"], 0);
    assert_eq!(again["duplicates"], 6);
    assert_eq!(again["held_through"], 6);
    // Half old, half new: only the new half is applied.
    let (mut replica, changes) = households(1, "40010203", 3, NOW);
    let home = changes[0].record.clone();
    let mut overlap = changes[4..].to_vec();
    overlap.push(replica.set(NOW + 5, &home, "address", json!("9 หมู่ 3")));
    overlap.push(replica.set(NOW + 6, &home, "house_code", json!("4001-000009-7")));
    let (status, overlap) = server.push(&token, device, 5, &overlap).await;
    assert_eq!(status, StatusCode::OK, "{overlap}");
    assert_eq!(overlap["held_through"], 8);
    assert_eq!(server.feed_end(), feed + 2);
    assert_eq!(server.pull_all(&token).await.len(), 8);
    // A cursor beyond the feed (a server restored from a backup) is refused.
    let (status, body) = server.get("/v1/changes?since=999", &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("cursor_ahead"))
    );
    // A cursor inside the feed whose entry is not the one it was.
    let (status, body) = server
        .get(
            "/v1/changes?since=3&check=1.0.00000000-0000-0000-0000-000000000009",
            &token,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("cursor_ahead"))
    );
    // The check a page gives is accepted back with its cursor.
    let (_, page) = server.get("/v1/changes?since=0&limit=3", &token).await;
    let again = format!(
        "/v1/changes?since={}&check={}",
        page["next"],
        page["check"].as_str().unwrap()
    );
    assert_eq!(server.get(&again, &token).await.0, StatusCode::OK);
}
}

on_both_stores! {
#[tokio::test]
async fn a_page_of_changes_is_sent_compressed_and_a_short_answer_as_it_is(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    assert_eq!(server.hello(&token, device).await.0, StatusCode::OK);
    let (_, changes) = households(1, "40010203", 20, NOW);
    let body = push_body(device, 1, &changes, false).to_string();
    let answer = |request: Request<Body>| async {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;
        let response = server.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let encoding = response.headers().get(header::CONTENT_ENCODING).cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, encoding, bytes)
    };
    let (status, encoding, bytes) = answer(
        Request::post("/v1/push")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding, None, "a push's short answer is sent as it is");
    assert!(bytes.len() < usize::from(faenban_server::COMPRESSED_FROM));
    let pushed: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(pushed["applied"], changes.len());

    let (status, encoding, bytes) = answer(
        Request::get("/v1/changes?since=0")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding.as_ref().map(|e| e.to_str().unwrap()), Some("gzip"));
    let mut page = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut page)
        .unwrap();
    assert!(page.len() >= usize::from(faenban_server::COMPRESSED_FROM));
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["next"], server.feed_end(), "the page reaches the feed's end");
}
}

on_both_stores! {
#[tokio::test]
async fn a_different_change_under_a_held_sequence_is_refused(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    server.hello(&token, device).await;
    let (_, changes) = households(1, "40010203", 1, NOW);
    server.push(&token, device, 1, &changes).await;
    let (_, other) = households(1, "40010203", 1, NOW + 1);
    let (status, body) = server.push(&token, device, 1, &other).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "sequence_reused");
    let (status, body) = server.push(&token, device, 9, &other).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "sequence_gap");
    assert!(body["message"].as_str().unwrap().contains("send from 3"));
}
}

on_both_stores! {
#[tokio::test]
async fn one_change_outside_the_accounts_villages_is_held_back_and_the_rest_applied(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    server.hello(&token, device).await;
    let (mut replica, mut changes) = households(1, "40010203", 2, NOW);
    let outside = RecordKey::new(RecordKind::Household, Uuid::from_u128(99));
    changes.push(replica.set(NOW, &outside, "village", json!("40020101")));
    let (status, body) = server.push(&token, device, 1, &changes).await;
    assert_held_back(status, &body, "out_of_scope", &[5]);
    assert_eq!(body["applied"], 4);
    assert_eq!(body["held_through"], 5);
    assert!(body["held_back"][0]["message"]
        .as_str()
        .unwrap()
        .contains("outside the account's areas"));
    // Sent again (its answer lost): answered the same way, nothing twice.
    let (status, body) = server.push(&token, device, 1, &changes).await;
    assert_held_back(status, &body, "out_of_scope", &[5]);
    assert_eq!(
        (body["applied"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(4))
    );

    // A member of a household the account cannot see, and an official
    // (volunteers do not keep officials): held back too.
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(7));
    let stranger = replica.set(
        NOW,
        &member,
        "household",
        json!(Uuid::from_u128(99).to_string()),
    );
    let (status, body) = server.push(&token, device, 6, &[stranger]).await;
    assert_held_back(status, &body, "out_of_scope", &[6]);
    let official = RecordKey::new(RecordKind::Official, Uuid::from_u128(8));
    let official = replica.set(NOW, &official, "name", json!("ปลัดอำเภอ"));
    let (status, body) = server.push(&token, device, 7, &[official]).await;
    assert_held_back(status, &body, "out_of_scope", &[7]);
    // A household made outside and moved inside within one batch, too.
    let wanderer = RecordKey::new(RecordKind::Household, Uuid::from_u128(77));
    let through = [
        replica.set(NOW, &wanderer, "village", json!("40020101")),
        replica.set(NOW, &wanderer, "village", json!("40010203")),
    ];
    let (status, body) = server.push(&token, device, 8, &through).await;
    assert_held_back(status, &body, "out_of_scope", &[8, 9]);
    // Moving a household out of the account's villages is refused as well.
    let moved = replica.set(
        NOW,
        &RecordKey::new(RecordKind::Household, Uuid::from_u128(1 << 64)),
        "village",
        json!("40020101"),
    );
    let (status, body) = server.push(&token, device, 10, &[moved]).await;
    assert_held_back(status, &body, "out_of_scope", &[10]);
    // Of all this, only the four in-scope changes were applied.
    assert_eq!(
        server.feed_end(),
        4
    );
}
}

on_both_stores! {
#[tokio::test]
async fn missing_forged_and_revoked_tokens_are_refused(server: Server) {
    let device = device(1);
    let request = Request::post("/v1/hello").body(Body::from("{}")).unwrap();
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_token");

    let forged = token::generate().unwrap();
    let (status, body) = server.hello(&forged, device).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "bad_token");
    let (status, _) = server.hello("fbn_not-even-the-right-shape", device).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    assert_eq!(server.hello(&token, device).await.0, StatusCode::OK);
    // The scheme name is case-insensitive.
    let request = Request::get("/v1/changes")
        .header(header::AUTHORIZATION, format!("bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(server.send(request).await.0, StatusCode::OK);
    server.call(|backend| backend.revoke_account("มาลี", NOW).unwrap());
    let (_, changes) = households(1, "40010203", 1, NOW);
    let (status, body) = server.push(&token, device, 1, &changes).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "revoked");
    server.assert_nothing_stored(device);
}
}

on_both_stores! {
#[tokio::test]
async fn a_device_pushes_only_its_own_changes_with_its_own_account(server: Server) {
    let malee = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let somchai = server.account("สมชาย", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    server.hello(&malee, device).await;
    let (status, body) = server.hello(&somchai, device).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "wrong_device");
    let (_, changes) = households(1, "40010203", 1, NOW);
    let (status, body) = server.push(&somchai, device, 1, &changes).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "wrong_device");
    // Changes stamped by another device, pushed as this device's outbox.
    let (_, others) = households(2, "40010203", 1, NOW);
    let (status, body) = server.push(&malee, device, 1, &others).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "wrong_author");
    // A device that never said hello.
    let (status, body) = server.push(&malee, support::device(3), 1, &changes).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "unknown_device");
    server.assert_nothing_stored(device);
}
}

on_both_stores! {
#[tokio::test]
async fn malformed_mistyped_unversioned_oversized_and_truncated_bodies_get_a_reason(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    server.hello(&token, device).await;
    let (_, changes) = households(1, "40010203", 2, NOW);
    let good = push_body(device, 1, &changes, false);

    let (status, body) = server.post("/v1/push", &token, "{\"protocol\": 1,").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed"))
    );

    let mut wrong = good.clone();
    wrong["first_sequence"] = json!("one");
    let (status, body) = server.post("/v1/push", &token, wrong.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "wrong_types");
    // Where, never the offending value (it may be a name or an ID).
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("line 1 column"), "{message}");
    assert!(!message.contains("\"one\""), "{message}");

    let mut future = good.clone();
    future["protocol"] = json!(99);
    let (status, body) = server.post("/v1/push", &token, future.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("protocol_version"))
    );

    let mut bad_index = good.clone();
    bad_index["changes"]["changes"][0]["r"] = json!(42);
    let (status, body) = server.post("/v1/push", &token, bad_index.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_index"))
    );

    let huge = format!("{{\"protocol\":1,\"padding\":\"{}\"}}", "x".repeat(3 << 20));
    let (status, body) = server.post("/v1/push", &token, huge).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );

    // Compressed, but cut off in the middle of the stream.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(good.to_string().as_bytes()).unwrap();
    let compressed = gzip.finish().unwrap();
    let request = Request::post("/v1/push")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(compressed[..compressed.len() / 2].to_vec()))
        .unwrap();
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Plain JSON cut off.
    let text = good.to_string();
    let (status, body) = server
        .post("/v1/push", &token, text[..text.len() - 10].to_owned())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed"))
    );
    // Too many changes in one batch.
    let (_, many) = households(1, "40010203", 501, NOW);
    let (status, body) = server.push(&token, device, 1, &many).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_changes"))
    );
    server.assert_nothing_stored(device);

    // And the same batch, whole and compressed, goes in.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(good.to_string().as_bytes()).unwrap();
    let request = Request::post("/v1/push")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip.finish().unwrap()))
        .unwrap();
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], 4);
}
}

on_both_stores! {
#[tokio::test]
async fn a_stamp_from_the_future_is_restamped_once_by_the_server(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    server.hello(&token, device).await;
    let year_2035 = 2_051_222_400_000;
    let (_, changes) = households(1, "40010203", 1, year_2035);
    let (status, body) = server.push(&token, device, 1, &changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["restamped"], 2);
    let server_time = body["server_time_ms"].as_u64().unwrap();
    let pulled = server.pull_all(&token).await;
    assert_eq!(pulled.len(), 2);
    for change in &pulled {
        assert!(change.stamp.hlc.wall_ms <= server_time + 1000, "{change:?}");
        assert_eq!(change.previous_stamps.len(), 1);
        assert_eq!(change.previous_stamps[0].hlc.wall_ms, year_2035);
        assert_eq!(change.author(), device);
    }
    // Re-sending it does not re-stamp it again.
    let (_, again) = server.push(&token, device, 1, &changes).await;
    assert_eq!(again["restamped"], 0);
    assert_eq!(server.pull_all(&token).await, pulled);
}
}

on_both_stores! {
/// Pushes a whole generated district through the province account.
#[tokio::test]
async fn each_account_pulls_exactly_its_scope(server: Server) {
    let province = server.account("สำนักงานจังหวัด", Role::Province, &[], None);
    let mut laptop = Store::open_in_memory().unwrap();
    laptop
        .init("generator", &faenban_keys::DeviceKey::generate().unwrap())
        .unwrap();
    faenban_fixtures::populate(&mut laptop, &faenban_fixtures::Spec::khon_kaen(7, 120)).unwrap();
    push_store(&server, &province, &laptop).await;

    let everything = server.pull_all(&province).await;
    assert_eq!(everything.len(), laptop.outbox().unwrap().len());

    // A volunteer of one village gets that village's households and all
    // their records, and nothing of any other household.
    let homes = laptop.records(&RecordKind::Household).unwrap();
    let village = homes[0]
        .1
        .shown("village")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let expected: std::collections::BTreeSet<Uuid> = laptop
        .households_in_area(&village)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key.id.0)
        .collect();
    let volunteer = server.account("อสม.", Role::Volunteer, &[&village], None);
    let pulled = server.pull_all(&volunteer).await;
    assert_eq!(households_in(&pulled), expected);
    for change in &pulled {
        if let Some(household) = change
            .value
            .as_str()
            .filter(|_| change.field == "household")
        {
            assert!(expected.contains(&household.parse().unwrap()));
        }
    }

    // An income working group gets the households whose latest survey finds
    // them deprived in income, computed here independently.
    let catalogues = Catalogues::builtin();
    let visits = laptop.records(&RecordKind::Visit).unwrap();
    let deprived: std::collections::BTreeSet<Uuid> = latest_visits(visits)
        .into_iter()
        .filter(|(household, (visit, state))| {
            let home = laptop
                .record(&RecordKey::new(RecordKind::Household, household.0))
                .unwrap()
                .unwrap();
            let card = home
                .shown("welfare_card")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            assess_visit(&catalogues, visit, state, card)
                .unwrap()
                .is_deprived_in(Dimension::Income)
        })
        .map(|(household, _)| household.0)
        .collect();
    assert!(!deprived.is_empty() && deprived.len() < homes.len());
    let group = server.account(
        "คณะทำงานด้านรายได้",
        Role::Dimension,
        &["40"],
        Some(Dimension::Income),
    );
    assert_eq!(households_in(&server.pull_all(&group).await), deprived);
}
}

on_both_stores! {
#[tokio::test]
async fn a_relayed_outbox_is_checked_against_the_relaying_account(server: Server) {
    let team = server.account("ทีมอำเภอ", Role::Team, &["4001"], None);
    let (_, changes) = households(5, "40010203", 2, NOW);
    let offline = device(5);
    let body = push_body(offline, 1, &changes, true);
    let (status, body) = server.post("/v1/push", &team, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["held_through"], 4);
    let (_, outside) = households(6, "40020101", 1, NOW);
    let body = push_body(device(6), 1, &outside, true);
    let (status, body) = server.post("/v1/push", &team, body.to_string()).await;
    assert_held_back(status, &body, "out_of_scope", &[1, 2]);
}
}

on_both_stores! {
#[tokio::test]
async fn a_record_moved_between_households_needs_both_in_scope_and_an_unplaced_one_reaches_no_volunteer(server: Server) {
    let province = server.account("จังหวัด", Role::Province, &[], None);
    let volunteer = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let office = device(1);
    let laptop = device(2);
    server.hello(&province, office).await;
    server.hello(&volunteer, laptop).await;
    // The province records a household elsewhere with a member, and a
    // member whose household the server has never seen.
    let (mut office_replica, mut changes) = households(1, "40020101", 1, NOW);
    let elsewhere = changes[0].record.id;
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(500));
    changes.push(office_replica.set(NOW, &member, "household", json!(elsewhere.to_string())));
    changes.push(office_replica.set(NOW, &member, "first_name", json!("สมศรี")));
    let orphan = RecordKey::new(RecordKind::Member, Uuid::from_u128(501));
    changes.push(office_replica.set(NOW, &orphan, "first_name", json!("ไม่มีบ้าน")));
    let (status, body) = server.push(&province, office, 1, &changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The volunteer's own household, then an attempt to pull the other
    // household's member into it.
    let (mut replica, own) = households(2, "40010203", 1, NOW);
    server.push(&volunteer, laptop, 1, &own).await;
    let taken = [
        replica.set(
            NOW,
            &member,
            "household",
            json!(own[0].record.id.to_string()),
        ),
        replica.set(NOW, &member, "first_name", json!("ถูกย้าย")),
    ];
    let (status, body) = server.push(&volunteer, laptop, 3, &taken).await;
    assert_held_back(status, &body, "out_of_scope", &[3, 4]);
    // Neither the other household's member nor the unplaced one reaches the volunteer.
    let pulled = server.pull_all(&volunteer).await;
    assert!(
        pulled
            .iter()
            .all(|c| c.record != member && c.record != orphan),
        "{pulled:?}"
    );
    assert_eq!(
        server.pull_all(&province).await.len(),
        changes.len() + own.len()
    );
}
}

on_both_stores! {
#[tokio::test]
async fn a_member_moved_to_another_village_arrives_there_with_its_history(server: Server) {
    let province = server.account("จังหวัด", Role::Province, &[], None);
    let there = server.account("อสม. ปลายทาง", Role::Volunteer, &["40020101"], None);
    let office = device(1);
    server.hello(&province, office).await;
    let (mut replica, mut changes) = households(1, "40010203", 1, NOW);
    let from = changes[0].record.id;
    let to = RecordKey::new(RecordKind::Household, Uuid::from_u128(900));
    changes.push(replica.set(NOW, &to, "village", json!("40020101")));
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(901));
    changes.push(replica.set(NOW, &member, "household", json!(from.to_string())));
    changes.push(replica.set(NOW, &member, "first_name", json!("บุญมี")));
    server.push(&province, office, 1, &changes).await;
    let before = server.pull_all(&there).await;
    assert!(before.iter().all(|c| c.record != member));

    let moved = replica.set(NOW + 1, &member, "household", json!(to.id.to_string()));
    let (status, body) = server
        .push(&province, office, changes.len() as u64 + 1, &[moved])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = server.pull_all(&there).await;
    let fields: Vec<&str> = after
        .iter()
        .filter(|c| c.record == member)
        .map(|c| c.field.as_str())
        .collect();
    assert!(
        fields.contains(&"first_name"),
        "the member's earlier changes arrive: {fields:?}"
    );
}
}

on_both_stores! {
/// A household that enters a village brings the people it has now: a
/// member who moved out before is not part of its history there, on a
/// laptop that pulls the village from the start (the narrow pull) nor on a
/// team's that scans the feed (the wide one).
#[tokio::test]
async fn a_household_entering_a_village_does_not_bring_a_member_who_left_it(server: Server) {
    let province = server.account("จังหวัด", Role::Province, &[], None);
    let volunteer = server.account("อสม. ปลายทาง", Role::Volunteer, &["40020101"], None);
    let team = server.account("ทีมอำเภอ", Role::Team, &["4002"], None);
    let office = device(1);
    server.hello(&province, office).await;
    let (mut replica, mut changes) = households(1, "40010203", 1, NOW);
    let household = changes[0].record.clone();
    let elsewhere = RecordKey::new(RecordKind::Household, Uuid::from_u128(900));
    changes.push(replica.set(NOW, &elsewhere, "village", json!("40010203")));
    let stays = RecordKey::new(RecordKind::Member, Uuid::from_u128(901));
    let leaves = RecordKey::new(RecordKind::Member, Uuid::from_u128(902));
    for member in [&stays, &leaves] {
        changes.push(replica.set(NOW, member, "household", json!(household.id.to_string())));
        changes.push(replica.set(NOW, member, "first_name", json!("บุญมี")));
    }
    let moves = [
        replica.set(
            NOW + 1,
            &leaves,
            "household",
            json!(elsewhere.id.to_string()),
        ),
        replica.set(NOW + 2, &household, "village", json!("40020101")),
    ];
    // One push each: the member's first changes are filed under the
    // household, it leaves, and only then does the household move.
    let mut sequence = 1;
    for batch in [changes.as_slice(), &moves[..1], &moves[1..]] {
        let (status, body) = server.push(&province, office, sequence, batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sequence += batch.len() as u64;
    }
    for account in [&volunteer, &team] {
        let pulled = server.pull_all(account).await;
        assert!(
            pulled.iter().any(|c| c.record == stays),
            "the member who stays"
        );
        assert!(
            pulled.iter().any(|c| c.record == household),
            "the household"
        );
        assert!(
            pulled.iter().all(|c| c.record != leaves),
            "nothing of the member who left"
        );
    }
}
}

on_both_stores! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_at_the_same_time_each_apply_exactly_what_is_in_scope(server: Server) {
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for n in 0..24u128 {
        let token = server.account(&format!("อสม. {n}"), Role::Volunteer, &["40010203"], None);
        let device = device(100 + n);
        server.hello(&token, device).await;
        // Every sixth device recorded one household outside its village.
        let village = if n % 6 == 5 { "40020101" } else { "40010203" };
        let (_, changes) = households(100 + n, village, 5, NOW);
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = server.push(&token, device, 1, &changes).await;
            (n, status, body)
        }));
    }
    let mut applied = 0;
    for task in tasks {
        let (n, status, body) = task.await.unwrap();
        if n % 6 == 5 {
            let every: Vec<u64> = (1..=10).collect();
            assert_held_back(status, &body, "out_of_scope", &every);
            assert_eq!(body["applied"], 0);
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["applied"], 10);
            applied += 10;
        }
    }
    assert_eq!(server.feed_end(), applied);
}
}

on_both_stores! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_push_lets_it_finish_or_leaves_nothing_of_it(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let device = device(1);
    server.hello(&token, device).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend: Arc<dyn Backend> = server.backend.clone();
    let serving = tokio::spawn(faenban_server::run(listener, backend, async {
        let _ = stopped.await;
    }));
    let (_, changes) = households(1, "40010203", 500, NOW);
    let body = push_body(device, 1, &changes, false).to_string();
    let push = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{address}/v1/push"))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    let held = server.call(|backend| backend.held_through(device).unwrap());
    match push.await.unwrap() {
        Ok(response) if response.status().is_success() => assert_eq!(held, 1000),
        _ => assert_eq!(held, 0, "a push cut off by the shutdown left nothing"),
    }
}
}

on_both_stores! {
#[tokio::test]
async fn records_that_arrive_before_their_household_reach_its_village_once_it_is_placed(server: Server) {
    let province = server.account("จังหวัด", Role::Province, &[], None);
    let volunteer = server.account("มาลี", Role::Volunteer, &["40010203"], None);
    let office = device(1);
    server.hello(&province, office).await;
    let mut replica = Replica::new(office);
    let home = RecordKey::new(RecordKind::Household, Uuid::from_u128(10));
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(11));
    let early = [
        replica.set(NOW, &member, "household", json!(home.id.to_string())),
        replica.set(NOW, &member, "first_name", json!("มาก่อน")),
    ];
    server.push(&province, office, 1, &early).await;
    let (seen, cursor) = server.pull_from(&volunteer, 0).await;
    assert!(seen.is_empty(), "nothing is placed yet: {seen:?}");
    let placed = [replica.set(NOW, &home, "village", json!("40010203"))];
    server.push(&province, office, 3, &placed).await;
    let (after, _) = server.pull_from(&volunteer, cursor).await;
    assert!(
        after
            .iter()
            .any(|c| c.record == member && c.field == "first_name"),
        "the member's earlier change arrives once its household is placed: {after:?}"
    );
}
}

on_both_stores! {
#[tokio::test]
async fn changes_are_filed_under_the_household_the_merge_kept(server: Server) {
    let province = server.account("จังหวัด", Role::Province, &[], None);
    let team = server.account("ทีม", Role::Team, &["400102"], None);
    let here = server.account("อสม. 3", Role::Volunteer, &["40010203"], None);
    let there = server.account("อสม. 4", Role::Volunteer, &["40010204"], None);
    let office = device(1);
    let laptop = device(2);
    server.hello(&province, office).await;
    server.hello(&team, laptop).await;
    let mut replica = Replica::new(office);
    let first = RecordKey::new(RecordKind::Household, Uuid::from_u128(20));
    let second = RecordKey::new(RecordKind::Household, Uuid::from_u128(21));
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(22));
    let setup = [
        replica.set(NOW, &first, "village", json!("40010203")),
        replica.set(NOW, &second, "village", json!("40010204")),
        // The member's household, set later than the team's move below.
        replica.set(
            NOW + 60_000,
            &member,
            "household",
            json!(first.id.to_string()),
        ),
    ];
    server.push(&province, office, 1, &setup).await;
    // The team, with an older clock and without having seen that, moves the
    // member and names it: the move loses, the name stands.
    let mut team_replica = Replica::new(laptop);
    let edits = [
        team_replica.set(NOW, &member, "household", json!(second.id.to_string())),
        team_replica.set(NOW, &member, "first_name", json!("ชื่อใหม่")),
    ];
    let (status, body) = server.push(&team, laptop, 1, &edits).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let named = |changes: &[Change]| {
        changes
            .iter()
            .any(|c| c.record == member && c.field == "first_name")
    };
    assert!(
        named(&server.pull_all(&here).await),
        "the member's own village gets the name"
    );
    assert!(
        !named(&server.pull_all(&there).await),
        "the other village does not"
    );
}
}

on_both_stores! {
#[tokio::test]
async fn the_report_is_scoped_by_the_account_and_is_the_cores_report_of_what_was_pushed(server: Server) {
    let province = server.account("จังหวัด", Role::Province, &[], None);
    let team = server.account("ทีม 4001", Role::Team, &["4001"], None);
    let volunteer = server.account("มาลี", Role::Volunteer, &["40010101"], None);
    let group = server.account("รายได้", Role::Dimension, &["40"], Some(Dimension::Income));
    // Five whole households: three in district 4001, two in 4002.
    let mut replica = Replica::new(device(1));
    let mut changes = Vec::new();
    for n in 0..5u128 {
        let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(0x5000 + n));
        let village = if n < 3 { "40010101" } else { "40020101" };
        for (field, value) in [
            ("house_code", json!(format!("4001{:07}", n + 1))),
            ("village", json!(village)),
            ("address", json!(format!("{n} หมู่ 1"))),
            ("entry", json!("tpmap_target")),
            ("status", json!("active")),
            ("welfare_card", json!(false)),
        ] {
            changes.push(replica.set(NOW, &key, field, value));
        }
    }
    assert_eq!(
        server.hello(&province, replica.device).await.0,
        StatusCode::OK
    );
    let (status, body) = server.push(&province, replica.device, 1, &changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, report) = server.get("/v1/report?level=district", &province).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["version"], 1);
    assert_eq!(report["total"]["households"], 5);
    let districts: Vec<&str> = report["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|area| area["code"].as_str().unwrap())
        .collect();
    assert_eq!(districts, ["4001", "4002"]);
    // The same as the core's report of the records pushed, as the laptop
    // holds them.
    let records: Vec<(RecordKey, faenban_core::RecordState)> = replica
        .state
        .records_sorted()
        .into_iter()
        .map(|(key, state)| (key.clone(), state.clone()))
        .collect();
    let direct = faenban_core::report::build(
        records,
        &faenban_core::Catalogues::builtin(),
        &faenban_core::areas::Areas::builtin(),
        &faenban_core::report::ReportOptions {
            level: Some(faenban_core::codes::AreaLevel::District),
            ..Default::default()
        },
    );
    assert_eq!(report, serde_json::to_value(&direct).unwrap());

    // A team sees its district only, and nothing outside it.
    let (status, report) = server.get("/v1/report", &team).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["total"]["households"], 3);
    let (status, body) = server.get("/v1/report?area=4002", &team).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("out_of_scope"))
    );
    // A working group sees its dimension only.
    let (status, report) = server.get("/v1/report?dimension=health", &group).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let keys: Vec<&String> = report["total"]["dimensions"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["income"]);
    // The same report as a workbook.
    let request = Request::get("/v1/report.xlsx?level=district")
        .header(header::AUTHORIZATION, format!("Bearer {province}"))
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(server.app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(bytes.starts_with(b"PK"), "a zip file");
    let (status, body) = server.get("/v1/report.xlsx", &volunteer).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_report"))
    );
    // A volunteer's account is refused, with the reason.
    let (status, body) = server.get("/v1/report", &volunteer).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_report"))
    );
    // Bad requests say what is wrong.
    let (status, _) = server.get("/v1/report?fiscal_year=2025", &province).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.get("/v1/report?level=region", &province).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
}

/// A War Room request's status, body and `Set-Cookie`.
async fn war_room(server: &Server, request: Request<Body>) -> (StatusCode, String, Option<String>) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = server.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), cookie)
}

fn sign_in_request(token: &str, behind_tls: bool) -> Request<Body> {
    let mut request = Request::post("/war-room/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if behind_tls {
        request = request.header("x-forwarded-proto", "https");
    }
    request
        .body(Body::from(format!("token={token}&lang=en")))
        .unwrap()
}

fn page_request(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

on_both_stores! {
#[tokio::test]
async fn a_war_room_session_is_a_strict_cookie_that_ends_with_its_account(server: Server) {
    let team = server.account("ทีมอำเภอเมือง", Role::Team, &["4001"], None);
    let province = server.account("province", Role::Province, &[], None);
    let mut laptop = Store::open_in_memory().unwrap();
    faenban_fixtures::populate(&mut laptop, &faenban_fixtures::Spec::khon_kaen(5, 120)).unwrap();
    push_store(&server, &province, &laptop).await;
    let in_district = laptop
        .records(&RecordKind::Household)
        .unwrap()
        .iter()
        .filter(|(_, state)| {
            state
                .shown("village")
                .and_then(Value::as_str)
                .is_some_and(|village| village.starts_with("4001"))
        })
        .count();
    assert!(in_district > 0);

    // Without a session: the sign-in form; a made-up cookie is no session.
    let (status, body, _) =
        war_room(&server, page_request("/war-room", "faenban_session=00")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"token\""));
    let forged = format!("faenban_session={}", "ab".repeat(32));
    let (_, body, _) = war_room(&server, page_request("/war-room", &forged)).await;
    assert!(body.contains("name=\"token\"") && !body.contains("id=\"place\""));

    // A wrong token is refused with the form again.
    let (status, _, cookie) = war_room(&server, sign_in_request("fbn_nothing", false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());

    // Signed in: HttpOnly, SameSite=Strict, scoped to the page; Secure only
    // behind TLS.
    let (status, _, cookie) = war_room(&server, sign_in_request(&team, false)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/war-room",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"));
    let (_, _, secure) = war_room(&server, sign_in_request(&team, true)).await;
    assert!(secure.unwrap().contains("; Secure"));
    let session = cookie.split(';').next().unwrap().to_owned();

    // The team's district, by default; its households are counted.
    let (status, body, _) = war_room(&server, page_request("/war-room?lang=en", &session)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(&format!("id=\"households\" data-value=\"{in_district}\"")),
        "{body}"
    );
    // Another district is refused with a page that says so.
    let (status, body, _) = war_room(
        &server,
        page_request("/war-room?area=4002&lang=en", &session),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("outside this account"), "{body}");
    // A bad query is a page too.
    let (status, _, _) =
        war_room(&server, page_request("/war-room?fiscal_year=abc", &session)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Revoking the account ends the session at once.
    server.call(|backend| backend.revoke_account("ทีมอำเภอเมือง", NOW).unwrap());
    let (status, body, _) = war_room(&server, page_request("/war-room", &session)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("name=\"token\"") && !body.contains("id=\"place\""));
}
}

on_both_stores! {
#[tokio::test]
async fn signing_out_of_the_war_room_ends_the_session(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    let (_, _, cookie) = war_room(&server, sign_in_request(&province, false)).await;
    let session = cookie.unwrap().split(';').next().unwrap().to_owned();
    let (_, body, _) = war_room(&server, page_request("/war-room", &session)).await;
    assert!(body.contains("id=\"place\""));
    let request = Request::post("/war-room/sign-out")
        .header(header::COOKIE, &session)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("lang=th"))
        .unwrap();
    let (status, _, cleared) = war_room(&server, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cleared.unwrap().contains("Max-Age=0"));
    let (_, body, _) = war_room(&server, page_request("/war-room", &session)).await;
    assert!(!body.contains("id=\"place\""));
}
}

on_both_stores! {
#[tokio::test]
async fn a_war_room_form_from_another_site_is_refused(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
        ("origin", "null"),
    ] {
        let mut request = sign_in_request(&province, false);
        request.headers_mut().insert(name, value.parse().unwrap());
        let (status, _, cookie) = war_room(&server, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(cookie.is_none(), "{name}: {value}");
    }
    // The page's own form: same origin.
    let mut request = sign_in_request(&province, false);
    request
        .headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().unwrap());
    let (status, _, cookie) = war_room(&server, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookie.is_some());
}
}

on_both_stores! {
#[tokio::test]
async fn an_account_of_several_areas_starts_from_a_list_of_them(server: Server) {
    let team = server.account("two districts", Role::Team, &["4001", "4002"], None);
    let (_, _, cookie) = war_room(&server, sign_in_request(&team, false)).await;
    let session = cookie.unwrap().split(';').next().unwrap().to_owned();
    let (status, body, _) = war_room(&server, page_request("/war-room?lang=en", &session)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("data-drill=\"4001\"") && body.contains("data-drill=\"4002\""),
        "{body}"
    );
    let (status, body, _) = war_room(
        &server,
        page_request("/war-room?lang=en&area=4002", &session),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The language switch stays in the area.
    assert!(
        body.contains("href=\"/war-room?lang=th&amp;area=4002\" id=\"switch-lang\""),
        "{body}"
    );
}
}
