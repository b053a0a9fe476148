//! Bundle decoding and unsealing over arbitrary bytes: random bytes, a
//! valid bundle's file with bytes flipped or cut, its JSON mangled then
//! compressed again (so that the damage gets past gzip's checksum), and
//! sealed letters and replies with bytes changed or with hostile contents
//! sealed properly. Each is answered with what it holds or a reason, never
//! a panic, and a changed seal never opens.
//!
//! 10,000 cases by default; `DECODER_CASES=N` runs N:
//! `DECODER_CASES=200000 cargo test --release -p faenban-store --test bundle_decoder`.

use std::io::Write as _;

use faenban_core::sync::{
    ChangeSet, Letter, LetterRun, PullFrom, Reply, ReplyPage, ReplyPull, LETTER_PURPOSE,
    PROTOCOL_VERSION,
};
use faenban_core::{RecordKey, RecordKind, Replica};
use faenban_keys::DeviceKey;
use faenban_store::bundle::{self, Bundle, SealedItem, UnsealError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn cases() -> u32 {
    std::env::var("DECODER_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(10_000)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

struct Fixture {
    device: DeviceKey,
    server: DeviceKey,
    letter: Letter,
    reply: Reply,
    sealed_letter: Vec<u8>,
    sealed_reply: Vec<u8>,
}

fn fixture() -> Fixture {
    let device = DeviceKey::from_seed([5; 32]);
    let server = DeviceKey::from_seed([6; 32]);
    let id = device.device_id();
    let mut replica = Replica::new(id);
    let home = RecordKey::new(RecordKind::Household, uuid::Uuid::from_u128(9));
    let changes = vec![
        replica.set(1_795_000_000_000, &home, "village", json!("40010101")),
        replica.set(1_795_000_000_000, &home, "notes", json!({"a": [1, "ก"]})),
    ];
    let letter = Letter {
        device: id,
        created_ms: 1_795_000_000_000,
        outbox_from: 1,
        run: Some(LetterRun {
            first_sequence: 1,
            changes: ChangeSet::encode(&changes),
            signature: device.sign_run(id, 1, &changes).to_string(),
        }),
        pull: Some(PullFrom {
            since: 0,
            check: None,
        }),
    };
    let reply = Reply {
        device: id,
        server_time_ms: 1_795_000_000_100,
        held_through: 2,
        ack: None,
        refused: None,
        held_back: Vec::new(),
        pulled: Some(ReplyPull {
            since: 0,
            pages: vec![ReplyPage {
                changes: ChangeSet::encode(&changes),
                next: 2,
                check: Some("x".into()),
                devices: Vec::new(),
            }],
            more: false,
        }),
    };
    let sealed_letter = bundle::seal_letter(&device, &server.public(), &letter).unwrap();
    let sealed_reply = bundle::seal_reply(&server, &device.public(), &reply).unwrap();
    Fixture {
        device,
        server,
        letter,
        reply,
        sealed_letter,
        sealed_reply,
    }
}

fn valid_bundle_json(fixture: &Fixture) -> Vec<u8> {
    let id = fixture.device.device_id();
    let bundle = Bundle {
        format: bundle::FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        from_device: id,
        created_ms: 1_795_000_000_000,
        letters: vec![SealedItem {
            device: id,
            sealed: faenban_keys::hex(&fixture.sealed_letter),
        }],
        replies: vec![SealedItem {
            device: id,
            sealed: faenban_keys::hex(&fixture.sealed_reply),
        }],
    };
    serde_json::to_vec(&bundle).unwrap()
}

fn mangle(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let v1 = valid.clone();
    let v2 = valid.clone();
    prop_oneof![
        (0..len).prop_map(move |at| v1[..at].to_vec()),
        prop::collection::vec((0..len, any::<u8>()), 1..8).prop_map(move |flips| {
            let mut bytes = v2.clone();
            for (at, byte) in flips {
                bytes[at] = byte;
            }
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

#[test]
fn any_bytes_decode_to_sealed_items_that_open_only_unchanged() {
    let fixture = fixture();
    let json = valid_bundle_json(&fixture);
    let decoded = bundle::decode(&gzip(&json)).unwrap();
    assert_eq!(decoded.letters.len(), 1);
    let strategy = prop_oneof![
        mangle(gzip(&json)),
        mangle(json).prop_map(|mangled| gzip(&mangled)),
    ];
    let device_key = fixture.device.public();
    runner(cases())
        .run(&strategy, |bytes| {
            let Ok(decoded) = bundle::decode(&bytes) else {
                return Ok(());
            };
            for letter in &decoded.letters {
                if let Ok(opened) =
                    bundle::open_letter(&fixture.server, letter.device, &letter.body, |_| {
                        Some(device_key)
                    })
                {
                    prop_assert_eq!(&opened, &fixture.letter);
                    prop_assert_eq!(&letter.body, &fixture.sealed_letter);
                }
            }
            for reply in &decoded.replies {
                if let Ok(opened) = bundle::open_reply(
                    &fixture.device,
                    fixture.device.device_id(),
                    &fixture.server.public(),
                    &reply.body,
                ) {
                    prop_assert_eq!(&opened, &fixture.reply);
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_changed_seal_never_opens() {
    let fixture = fixture();
    let device_key = fixture.device.public();
    let id = fixture.device.device_id();
    let strategy = prop_oneof![
        mangle(fixture.sealed_letter.clone()).prop_map(|bytes| (true, bytes)),
        mangle(fixture.sealed_reply.clone()).prop_map(|bytes| (false, bytes)),
    ];
    runner(cases() / 2)
        .run(&strategy, |(is_letter, bytes)| {
            if is_letter {
                let opened = bundle::open_letter(&fixture.server, id, &bytes, |_| Some(device_key));
                prop_assert!(opened.is_err() || bytes == fixture.sealed_letter);
            } else {
                let opened = bundle::open_reply(
                    &fixture.device,
                    fixture.device.device_id(),
                    &fixture.server.public(),
                    &bytes,
                );
                prop_assert!(opened.is_err() || bytes == fixture.sealed_reply);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn hostile_contents_sealed_properly_are_refused_with_a_reason() {
    // A device may seal anything to the server: the contents are read as
    // carefully as any request.
    let fixture = fixture();
    let id = fixture.device.device_id();
    let device_key = fixture.device.public();
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        mangle(serde_json::to_vec(&fixture.letter).unwrap()).prop_map(|json| {
            let mut encoder =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&json).unwrap();
            encoder.finish().unwrap()
        }),
    ];
    runner(cases() / 10)
        .run(&payload, |payload| {
            let sealed = fixture
                .device
                .sign_and_seal(&fixture.server.public(), LETTER_PURPOSE, &payload)
                .unwrap();
            match bundle::open_letter(&fixture.server, id, &sealed, |_| Some(device_key)) {
                Ok(letter) => prop_assert_eq!(letter.device, id),
                Err(error) => prop_assert!(matches!(error, UnsealError::Unreadable(_))),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_letter_opens_only_for_the_server_and_only_as_its_devices() {
    let fixture = fixture();
    let id = fixture.device.device_id();
    let stranger = DeviceKey::from_seed([7; 32]);
    // The courier (any other key) cannot open it.
    assert_eq!(
        bundle::open_letter(&stranger, id, &fixture.sealed_letter, |_| Some(
            fixture.device.public()
        )),
        Err(UnsealError::NotForThisKey)
    );
    // Signed by another key than the device's bound one: refused.
    assert_eq!(
        bundle::open_letter(&fixture.server, id, &fixture.sealed_letter, |_| Some(
            stranger.public()
        )),
        Err(UnsealError::BadSignature)
    );
    // A stranger's letter under the device's id: refused too.
    let forged = bundle::seal_letter(&stranger, &fixture.server.public(), &fixture.letter).unwrap();
    assert_eq!(
        bundle::open_letter(&fixture.server, id, &forged, |_| Some(
            fixture.device.public()
        )),
        Err(UnsealError::BadSignature)
    );
    // A reply signed by anyone but the server is not taken.
    let fake = bundle::seal_reply(&stranger, &fixture.device.public(), &fixture.reply).unwrap();
    assert_eq!(
        bundle::open_reply(
            &fixture.device,
            fixture.device.device_id(),
            &fixture.server.public(),
            &fake
        ),
        Err(UnsealError::BadSignature)
    );
    // Nothing readable travels: no village code, no note, no device id.
    let file = String::from_utf8(valid_bundle_json(&fixture)).unwrap();
    let sealed_only = file.replace(&id.to_string(), "");
    assert!(!sealed_only.contains("40010101"));
    assert!(!sealed_only.contains("village"));
}

#[test]
fn a_bundle_of_another_format_or_no_bundle_is_refused() {
    let fixture = fixture();
    let text = String::from_utf8(valid_bundle_json(&fixture)).unwrap();
    let older = text.replacen(bundle::FORMAT, "faenban-bundle", 1);
    assert!(matches!(
        bundle::decode(&gzip(older.as_bytes())),
        Err(bundle::BundleError::Version { .. })
    ));
    assert!(matches!(
        bundle::decode(b"not gzip at all"),
        Err(bundle::BundleError::NotABundle(_))
    ));
    let not_hex = text.replacen("\"sealed\":\"", "\"sealed\":\"zz", 1);
    assert!(matches!(
        bundle::decode(&gzip(not_hex.as_bytes())),
        Err(bundle::BundleError::Damaged(_))
    ));
}
