//! The stored form reads back exactly what was written, for states made by
//! fleets of devices that edit, conflict, archive and re-stamp, and refuses
//! any other bytes without panicking.

use faenban_core::codec::{decode_change, decode_state, encode_change_body, encode_state};
use faenban_core::{Change, DeviceId, RecordKey, RecordKind, Replica, State};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;

#[derive(Clone, Debug)]
enum Step {
    Set {
        device: usize,
        record: u8,
        field: u8,
        value: i64,
    },
    Archive {
        device: usize,
        record: u8,
    },
    Restore {
        device: usize,
        record: u8,
    },
    /// One device takes in another's changes.
    Share {
        from: usize,
        to: usize,
    },
    /// A device whose clock ran years ahead learns the right time.
    Correct {
        device: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..3u8, 0..4u8, any::<i64>())
            .prop_map(|(device, record, field, value)| Step::Set { device, record, field, value }),
        1 => (0..3usize, 0..3u8).prop_map(|(device, record)| Step::Archive { device, record }),
        1 => (0..3usize, 0..3u8).prop_map(|(device, record)| Step::Restore { device, record }),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Share { from, to }),
        1 => (0..3usize).prop_map(|device| Step::Correct { device }),
    ]
}

fn key(record: u8) -> RecordKey {
    RecordKey::new(RecordKind::Member, Uuid::from_u128(u128::from(record) + 1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_state_and_change_reads_back_as_written(steps in prop::collection::vec(step(), 1..40)) {
        let mut devices: Vec<Replica> =
            (1..=3).map(|n| Replica::new(DeviceId::from_u128(n))).collect();
        let mut made: Vec<Vec<Change>> = vec![Vec::new(); 3];
        // Device 2's clock runs ten years ahead until it is corrected.
        let local = |device: usize, tick: u64| {
            NOW + tick * 1_000 + if device == 2 { 10 * 365 * 86_400_000 } else { 0 }
        };
        for (tick, step) in steps.iter().enumerate() {
            let tick = tick as u64;
            match *step {
                Step::Set { device, record, field, value } => {
                    let field = format!("field_{field}");
                    let value = if value % 3 == 0 { json!({"n": value, "ชื่อ": "ก"}) } else { json!(value) };
                    let change = devices[device].set(local(device, tick), &key(record), &field, value);
                    made[device].push(change);
                }
                Step::Archive { device, record } => {
                    let change = devices[device].archive(local(device, tick), &key(record));
                    made[device].push(change);
                }
                Step::Restore { device, record } => {
                    let change = devices[device].restore(local(device, tick), &key(record));
                    made[device].push(change);
                }
                Step::Share { from, to } => {
                    for change in made[from].clone() {
                        devices[to].receive(change, local(to, tick));
                    }
                }
                Step::Correct { device } => {
                    let restamped = devices[device].correct_clock(NOW + tick * 1_000, local(device, tick));
                    made[device].extend(restamped);
                }
            }
        }
        let mut everything = State::new();
        for changes in &made {
            for change in changes {
                let body = encode_change_body(change);
                let read = decode_change(change.stamp, change.record.clone(), change.field.clone(), &body);
                prop_assert_eq!(read.as_ref(), Ok(change));
                everything.apply(change.clone());
            }
        }
        let states = devices.iter().map(|device| &device.state).chain(std::iter::once(&everything));
        for state in states {
            for (_, record) in state.records_sorted() {
                let blob = encode_state(record);
                let read = decode_state(&blob);
                prop_assert_eq!(read.as_ref(), Ok(record));
                let json = serde_json::to_vec(record).unwrap();
                prop_assert!(blob.len() <= json.len() / 2, "{} bytes beside {} as JSON", blob.len(), json.len());
            }
        }
    }

    #[test]
    fn every_value_reads_back_as_the_same_value(value in json_value()) {
        let stamp = faenban_core::Stamp::new(faenban_core::Hlc { wall_ms: NOW, counter: 0 }, DeviceId::from_u128(1));
        let change = Change { stamp, record: key(0), field: "f".into(), value: value.clone(), supersedes: Default::default(), observed: Vec::new(), previous_stamps: Vec::new() };
        let body = encode_change_body(&change);
        let read = decode_change(stamp, key(0), "f".into(), &body).unwrap();
        prop_assert_eq!(&read.value, &value);
        // A text that is an id in its written form is kept as its 16 bytes.
        if let Some(text) = value.as_str() {
            if Uuid::parse_str(text).is_ok_and(|id| id.to_string() == text) {
                prop_assert!(body.len() < 24, "{} bytes for an id", body.len());
            }
        }
    }

    #[test]
    fn any_other_bytes_are_refused_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_state(&bytes);
        let stamp = faenban_core::Stamp::new(faenban_core::Hlc { wall_ms: 1, counter: 0 }, DeviceId::from_u128(1));
        let _ = decode_change(stamp, key(0), "f".into(), &bytes);
    }
}

/// Any JSON value a field may hold, with texts that are ids, that look
/// like ids but are not in their written form, and numbers of every kind.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (-1e12f64..1e12).prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
        any::<u128>().prop_map(|n| serde_json::Value::from(Uuid::from_u128(n).to_string())),
        any::<u128>()
            .prop_map(|n| serde_json::Value::from(Uuid::from_u128(n).to_string().to_uppercase())),
        any::<u128>()
            .prop_map(|n| serde_json::Value::from(Uuid::from_u128(n).simple().to_string())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-zก-ฮ]{0,4}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}
