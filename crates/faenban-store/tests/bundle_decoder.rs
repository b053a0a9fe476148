//! Bundle decoding over arbitrary bytes: random bytes, a valid bundle's
//! file with bytes flipped or cut, and its JSON mangled then compressed
//! again (so that the damage gets past gzip's checksum). Decoding answers
//! each with the bundle or a reason, never a panic, and whatever it accepts
//! is within the limits a push has.
//!
//! 10,000 cases by default; `DECODER_CASES=N` runs N:
//! `DECODER_CASES=200000 cargo test --release -p faenban-store --test bundle_decoder`.

use std::io::Write as _;

use faenban_core::sync::{ChangeSet, PROTOCOL_VERSION};
use faenban_core::{limits, DeviceId, RecordKey, RecordKind, Replica};
use faenban_store::bundle::{self, Bundle, BundleAck, BundleOutbox};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn valid_bundle_json() -> Vec<u8> {
    let device = DeviceId::from_u128(5);
    let mut replica = Replica::new(device);
    let home = RecordKey::new(RecordKind::Household, uuid::Uuid::from_u128(9));
    let changes = vec![
        replica.set(1_795_000_000_000, &home, "village", json!("40010101")),
        replica.set(1_795_000_000_000, &home, "notes", json!({"a": [1, "ก"]})),
    ];
    let bundle = Bundle {
        format: bundle::FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        from_device: device,
        created_ms: 1_795_000_000_000,
        outboxes: vec![BundleOutbox {
            device,
            first_sequence: 1,
            changes: ChangeSet::encode(&changes),
            signature: "ab".repeat(64),
            public_key: Some("cd".repeat(32)),
        }],
        acks: vec![BundleAck {
            device,
            held_through: 0,
            signature: None,
        }],
        changes: ChangeSet::encode(&changes),
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
fn any_bytes_decode_to_a_bundle_within_limits_or_to_a_reason() {
    let json = valid_bundle_json();
    let decoded = bundle::decode(&gzip(&json)).unwrap();
    assert_eq!(decoded.changes.len(), 2);
    let cases: u32 = std::env::var("DECODER_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(10_000);
    let file = gzip(&json);
    let strategy = prop_oneof![
        mangle(file),
        mangle(json).prop_map(|mangled| gzip(&mangled)),
    ];
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |bytes| {
            if let Ok(decoded) = bundle::decode(&bytes) {
                let runs = decoded.outboxes.iter().flat_map(|run| &run.changes);
                for change in decoded.changes.iter().chain(runs) {
                    prop_assert!(limits::check_change(change).is_ok());
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_bundle_that_unpacks_to_too_much_or_nests_too_deep_is_refused() {
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = serde_json::Value::Array(vec![deep]);
    }
    let text = String::from_utf8(valid_bundle_json()).unwrap();
    let poisoned = text.replacen("{\"a\":[1,\"ก\"]}", &deep.to_string(), 1);
    assert_ne!(poisoned, text);
    assert!(matches!(
        bundle::decode(&gzip(poisoned.as_bytes())),
        Err(bundle::BundleError::Damaged(_))
    ));
    assert!(matches!(
        bundle::decode(b"not gzip at all"),
        Err(bundle::BundleError::NotABundle(_))
    ));
}
