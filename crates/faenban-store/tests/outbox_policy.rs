//! The laptop's outbox, as the store keeps it in SQLite, follows the core's
//! `Outbox` exactly: a model-based property test runs the same arbitrary
//! sequence of recordings (with clocks right and years ahead), sends,
//! acknowledgements (some changes held back), renumberings after a restore
//! and clock corrections against both, and compares what is pending after
//! every step: the same sequences, the same changes, the same ones
//! re-stamped and the same ones set aside.

use faenban_core::replica::Outbox;
use faenban_core::sync::HeldBack;
use faenban_core::{Change, Clock, RecordKey, RecordKind};
use faenban_keys::DeviceKey;
use faenban_store::Store;
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;
const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 60 * 60 * 1000;

#[derive(Clone, Debug)]
enum Step {
    /// Record `fields` changes with the laptop's clock right or years ahead.
    Record { fields: u8, ahead: bool },
    /// Mark the outbox through this many changes as sent.
    Send { through: u8 },
    /// The server acknowledges this many changes.
    Acknowledge { through: u8 },
    /// A sync learns the server's time while the laptop's clock is right or
    /// years ahead.
    Correct { ahead: bool },
    /// The server acknowledges this many changes, holding back those whose
    /// bit is set in `held` (bit i: the i-th sequence).
    HoldBack { through: u8, held: u16 },
    /// The server holds this file's sequences through `held` for other
    /// changes (a file restored from a backup): the outbox moves after them.
    Renumber { held: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1..4u8, any::<bool>()).prop_map(|(fields, ahead)| Step::Record { fields, ahead }),
        1 => (0..12u8).prop_map(|through| Step::Send { through }),
        1 => (0..12u8).prop_map(|through| Step::Acknowledge { through }),
        1 => any::<bool>().prop_map(|ahead| Step::Correct { ahead }),
        1 => (0..12u8, any::<u16>()).prop_map(|(through, held)| Step::HoldBack { through, held }),
        1 => (0..16u8).prop_map(|held| Step::Renumber { held }),
    ]
}

fn local(ahead: bool) -> u64 {
    if ahead {
        NOW + TEN_YEARS_MS
    } else {
        NOW
    }
}

/// A change without its stamps, for comparing what was recorded.
fn content(change: &Change) -> (RecordKey, String, serde_json::Value) {
    (
        change.record.clone(),
        change.field.to_string(),
        change.value.clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_stores_outbox_is_the_cores(steps in prop::collection::vec(step(), 1..24)) {
        let mut store = Store::open_in_memory().unwrap();
        store.init("laptop", &DeviceKey::from_seed([9; 32])).unwrap();
        let mut model = Outbox::new();
        let mut clock = Clock::new();
        let record = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
        let mut recorded = 0u64;
        for (index, step) in steps.iter().enumerate() {
            // The server's clock moves on between syncs, as it does.
            let server_ms = NOW + 1_000 * index as u64;
            let before: Vec<(u64, Change)> = store.outbox().unwrap();
            let mut restamped_by_model: Vec<u64> = Vec::new();
            let mut renumbered = false;
            match *step {
                Step::Record { fields, ahead } => {
                    store
                        .write(local(ahead), |session| {
                            for _ in 0..fields {
                                recorded += 1;
                                session.set(&record, "notes", json!(format!("note {recorded}")))?;
                            }
                            Ok(())
                        })
                        .unwrap();
                    let held = model.pending().last().map_or(0, |e| e.sequence);
                    for (sequence, change) in store.outbox().unwrap() {
                        if sequence > held {
                            prop_assert_eq!(model.push(change), sequence);
                        }
                    }
                    // The model's clock keeps up with the laptop's readings.
                    clock.tick(local(ahead));
                }
                Step::Send { through } => {
                    let up_to = u64::from(through);
                    store.mark_shared(up_to).unwrap();
                    model.mark_shared(up_to);
                }
                Step::Acknowledge { through } => {
                    let up_to = u64::from(through);
                    store.acknowledge(NOW, up_to, None, &[]).unwrap();
                    model.acknowledge(up_to);
                }
                Step::HoldBack { through, held } => {
                    let up_to = u64::from(through);
                    let refused: Vec<HeldBack> = (1..=16u64)
                        .filter(|sequence| held & (1 << (sequence - 1)) != 0)
                        .map(|sequence| HeldBack {
                            sequence,
                            error: "out_of_scope".into(),
                            message: "outside".into(),
                        })
                        .collect();
                    let sequences: Vec<u64> = refused.iter().map(|held| held.sequence).collect();
                    let before_held = store.held_back().unwrap().len();
                    store.acknowledge(NOW, up_to, None, &refused).unwrap();
                    let set_aside = model.acknowledge_holding_back(up_to, &sequences);
                    let now_held = store.held_back().unwrap();
                    let newly: Vec<(u64, (RecordKey, String, serde_json::Value))> = now_held[before_held..]
                        .iter()
                        .map(|held| (held.sequence, content(&held.change)))
                        .collect();
                    let expected: Vec<(u64, (RecordKey, String, serde_json::Value))> = set_aside
                        .iter()
                        .map(|entry| (entry.sequence, content(&entry.change)))
                        .collect();
                    prop_assert_eq!(newly, expected, "set aside after {:?}", step);
                }
                Step::Renumber { held } => {
                    let held = u64::from(held);
                    let moved = store.renumber_outbox_after(held).unwrap();
                    prop_assert_eq!(moved, model.renumber_after(held));
                    renumbered = true;
                }
                Step::Correct { ahead } => {
                    store.correct_clock(server_ms, local(ahead)).unwrap();
                    clock.correct_to_server(server_ms, local(ahead));
                    let stamps_before: Vec<_> =
                        model.pending().iter().map(|e| (e.sequence, e.change.stamp)).collect();
                    model.restamp_future(&mut clock, local(ahead));
                    for (entry, (sequence, stamp)) in model.pending().iter().zip(stamps_before) {
                        prop_assert_eq!(entry.sequence, sequence);
                        if entry.change.stamp != stamp {
                            restamped_by_model.push(sequence);
                        }
                    }
                }
            }
            let after = store.outbox().unwrap();
            let sequences: Vec<u64> = after.iter().map(|(s, _)| *s).collect();
            let expected: Vec<u64> = model.pending().iter().map(|e| e.sequence).collect();
            prop_assert_eq!(&sequences, &expected, "after {:?}", step);
            if renumbered {
                // The same changes, stamps and order, under new numbers.
                let changes: Vec<&Change> = after.iter().map(|(_, c)| c).collect();
                let were: Vec<&Change> = before.iter().map(|(_, c)| c).collect();
                prop_assert_eq!(changes, were);
                continue;
            }
            for ((sequence, change), entry) in after.iter().zip(model.pending()) {
                prop_assert_eq!(content(change), content(&entry.change));
                let was = before.iter().find(|(s, _)| s == sequence).map(|(_, c)| c.stamp);
                let restamped_by_store = was.is_some_and(|stamp| stamp != change.stamp);
                prop_assert_eq!(
                    restamped_by_store,
                    restamped_by_model.contains(sequence),
                    "sequence {} after {:?}",
                    sequence,
                    step
                );
            }
        }
    }
}

/// A laptop whose clock jumps years ahead, is corrected, is set right and
/// jumps ahead again (a dead clock battery) hands out the same readings
/// twice. Every change it records still lands in its outbox under a stamp
/// of its own (one once vanished as a "duplicate" of an earlier change),
/// and a correction never re-stamps onto a stamp the log holds (it once
/// refused the sync).
#[test]
fn corrections_in_the_same_server_millisecond_never_reuse_a_stamp() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .init("laptop", &DeviceKey::from_seed([9; 32]))
        .unwrap();
    for round in 0..3u128 {
        let record = RecordKey::new(RecordKind::Household, Uuid::from_u128(round + 1));
        store
            .write(NOW + TEN_YEARS_MS, |session| {
                session.set(&record, "notes", json!(format!("round {round}")))?;
                Ok(())
            })
            .unwrap();
        store.correct_clock(NOW, NOW + TEN_YEARS_MS).unwrap();
        store.correct_clock(NOW, NOW).unwrap();
    }
    let outbox = store.outbox().unwrap();
    assert_eq!(outbox.len(), 3);
    let mut stamps: Vec<_> = outbox.iter().map(|(_, change)| change.stamp).collect();
    assert!(stamps
        .iter()
        .all(|stamp| !faenban_core::clock::is_from_the_future(stamp, NOW + 2)));
    stamps.sort();
    stamps.dedup();
    assert_eq!(stamps.len(), 3);
}
