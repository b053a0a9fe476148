//! Property tests of the merge laws: any order, grouping and duplication of
//! the same changes gives the same state and the same conflicts.
//!
//! Each case simulates 2–6 devices that edit, archive, restore and resolve
//! conflicts on a few shared records while gossiping partially (bundles),
//! pushing to a server that re-stamps clocks from the future, and correcting
//! their clocks. The union of every change ever made is then delivered in
//! many ways and every result compared byte for byte.

use faenban_core::merge::Conflict;
use faenban_core::replica::normalize_arrival;
use faenban_core::{Change, Clock, DeviceId, RecordKey, RecordKind, Replica, State};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;
use uuid::Uuid;

#[allow(dead_code)]
#[path = "support/rng.rs"]
mod rng;
use rng::SplitMix;

const BASE_MS: u64 = 1_760_000_000_000;
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
const FIELDS: [&str; 3] = ["income_per_year", "address", "notes"];

#[derive(Clone, Debug)]
enum Op {
    Edit {
        device: usize,
        record: usize,
        field: usize,
        value: u8,
    },
    Archive {
        device: usize,
        record: usize,
    },
    Restore {
        device: usize,
        record: usize,
    },
    Resolve {
        device: usize,
        restore: bool,
    },
    /// `to` receives everything `from` knows (a bundle or a direct sync).
    Gossip {
        from: usize,
        to: usize,
    },
    /// `device` pushes its outbox to the server and pulls everything back;
    /// with `ack_lost` the server's answer never arrives, so the laptop
    /// still holds the changes (and will send them again).
    Sync {
        device: usize,
        ack_lost: bool,
    },
    /// `device` learns the server's time without pushing.
    CorrectClock {
        device: usize,
    },
    /// `device`'s wall clock jumps: 0 = right, 1 = 2035, 2 = ten years slow.
    SetClockSkew {
        device: usize,
        skew: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0usize..6;
    prop_oneof![
        6 => (d.clone(), 0usize..3, 0usize..3, 0u8..4)
            .prop_map(|(device, record, field, value)| Op::Edit { device, record, field, value }),
        1 => (d.clone(), 0usize..3).prop_map(|(device, record)| Op::Archive { device, record }),
        1 => (d.clone(), 0usize..3).prop_map(|(device, record)| Op::Restore { device, record }),
        2 => (d.clone(), any::<bool>()).prop_map(|(device, restore)| Op::Resolve { device, restore }),
        3 => (d.clone(), d.clone()).prop_map(|(from, to)| Op::Gossip { from, to }),
        2 => (d.clone(), any::<bool>()).prop_map(|(device, ack_lost)| Op::Sync { device, ack_lost }),
        1 => d.clone().prop_map(|device| Op::CorrectClock { device }),
        1 => (d, 0u8..3).prop_map(|(device, skew)| Op::SetClockSkew { device, skew }),
    ]
}

/// A simulated week: how many devices, and what happens.
fn week() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=6, prop::collection::vec(op(), 1..60))
}

fn key(record: usize) -> RecordKey {
    RecordKey::new(
        RecordKind::Household,
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + record as u128),
    )
}

struct Device {
    replica: Replica,
    known: Vec<Change>,
    skew_ms: i64,
}

impl Device {
    fn wall(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew_ms)
    }

    fn take(&mut self, change: Change, now: u64) {
        let wall = self.wall(now);
        self.replica.receive(change.clone(), wall);
        self.known.push(change);
    }
}

/// Runs the simulation and returns every change any device or the server
/// ever held, in the order they were made.
fn simulate(devices: usize, ops: &[Op]) -> Vec<Change> {
    let mut fleet: Vec<Device> = (0..devices)
        .map(|i| Device {
            replica: Replica::new(DeviceId::from_u128(i as u128 + 1)),
            known: Vec::new(),
            skew_ms: 0,
        })
        .collect();
    let server_device = DeviceId::from_u128(0xFFFF);
    let mut server_clock = Clock::new();
    let mut server_log: Vec<Change> = Vec::new();
    let mut server_received: std::collections::HashSet<(DeviceId, u64)> = Default::default();
    let mut everything: Vec<Change> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let now = BASE_MS + step as u64 * 1_000;
        let made: Vec<Change> = match *op {
            Op::Edit {
                device,
                record,
                field,
                value,
            } => {
                let d = &mut fleet[device % devices];
                let wall = d.wall(now);
                vec![d
                    .replica
                    .set(wall, &key(record), FIELDS[field], json!(value))]
            }
            Op::Archive { device, record } => {
                let d = &mut fleet[device % devices];
                let wall = d.wall(now);
                vec![d.replica.archive(wall, &key(record))]
            }
            Op::Restore { device, record } => {
                let d = &mut fleet[device % devices];
                let wall = d.wall(now);
                vec![d.replica.restore(wall, &key(record))]
            }
            Op::Resolve { device, restore } => {
                let d = &mut fleet[device % devices];
                let wall = d.wall(now);
                match d.replica.state.conflicts().into_iter().next() {
                    Some(Conflict::Values {
                        record,
                        field,
                        candidates,
                    }) => {
                        let chosen = candidates[0].value.clone();
                        vec![d.replica.set(wall, &record, &field, chosen)]
                    }
                    Some(Conflict::EditDuringArchive { record, .. }) if restore => {
                        vec![d.replica.restore(wall, &record)]
                    }
                    Some(Conflict::EditDuringArchive { record, .. }) => {
                        vec![d.replica.archive(wall, &record)]
                    }
                    None => Vec::new(),
                }
            }
            Op::Gossip { from, to } => {
                let (from, to) = (from % devices, to % devices);
                if from != to {
                    let last = fleet[from]
                        .replica
                        .outbox
                        .pending()
                        .last()
                        .map(|e| e.sequence);
                    fleet[from].replica.outbox.mark_shared(last.unwrap_or(0));
                    for change in fleet[from].known.clone() {
                        fleet[to].take(change, now);
                    }
                }
                Vec::new()
            }
            Op::Sync { device, ack_lost } => {
                let d = &mut fleet[device % devices];
                let up_to = d.replica.outbox.pending().last().map_or(0, |e| e.sequence);
                d.replica.outbox.mark_shared(up_to);
                let pending: Vec<(u64, Change)> = d
                    .replica
                    .outbox
                    .pending()
                    .iter()
                    .map(|e| (e.sequence, e.change.clone()))
                    .collect();
                for (sequence, change) in pending {
                    // The server keys pushes by (device, sequence): a change
                    // sent again is recognized and not normalized twice.
                    if !server_received.insert((d.replica.device, sequence)) {
                        continue;
                    }
                    let arrival = normalize_arrival(change, &mut server_clock, server_device, now);
                    server_log.push(arrival.change.clone());
                    everything.push(arrival.change);
                }
                if ack_lost {
                    Vec::new()
                } else {
                    d.replica.outbox.acknowledge(up_to);
                    for change in server_log.clone() {
                        d.take(change, now);
                    }
                    let wall = d.wall(now);
                    d.replica.correct_clock(now, wall)
                }
            }
            Op::CorrectClock { device } => {
                let d = &mut fleet[device % devices];
                let wall = d.wall(now);
                d.replica.correct_clock(now, wall)
            }
            Op::SetClockSkew { device, skew } => {
                fleet[device % devices].skew_ms = match skew {
                    0 => 0,
                    1 => (9 * YEAR_MS) as i64,
                    _ => -((10 * YEAR_MS) as i64),
                };
                Vec::new()
            }
        };
        for change in made {
            let d = &mut fleet[op_device(op) % devices];
            d.known.push(change.clone());
            everything.push(change);
        }
    }
    everything
}

fn op_device(op: &Op) -> usize {
    match *op {
        Op::Edit { device, .. }
        | Op::Archive { device, .. }
        | Op::Restore { device, .. }
        | Op::Resolve { device, .. }
        | Op::Sync { device, .. }
        | Op::CorrectClock { device }
        | Op::SetClockSkew { device, .. } => device,
        Op::Gossip { to, .. } => to,
    }
}

fn state_of(changes: impl IntoIterator<Item = Change>) -> State {
    let mut state = State::new();
    state.apply_all(changes);
    state
}

fn fingerprint(state: &State) -> (String, String) {
    (
        state.canonical_json(),
        serde_json::to_string(&state.conflicts()).unwrap(),
    )
}

fn config() -> ProptestConfig {
    // At least 1,000 cases; PROPTEST_CASES may ask for more.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(1_000)
        .max(1_000);
    ProptestConfig {
        cases,
        // Cases that once failed are replayed first on every run; the file is
        // committed (cargo runs tests from the crate's directory).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/merge_laws.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any order of delivery, with any changes delivered more than once,
    /// gives the same state and the same conflicts.
    #[test]
    fn order_and_duplication_do_not_matter(
        (devices, ops) in week(),
        seed in any::<u64>(),
    ) {
        let changes = simulate(devices, &ops);
        let expected = fingerprint(&state_of(changes.clone()));

        let mut rng = SplitMix(seed);
        let mut delivery = changes.clone();
        let duplicates = if changes.is_empty() { 0 } else { rng.index(changes.len() + 1) };
        for _ in 0..duplicates {
            delivery.push(changes[rng.index(changes.len())].clone());
        }
        rng.shuffle(&mut delivery);
        prop_assert_eq!(fingerprint(&state_of(delivery)), expected);
    }

    /// Splitting the changes into groups merged separately, then joining the
    /// groups' states in any order, gives the same state as applying them all.
    #[test]
    fn grouping_does_not_matter(
        (devices, ops) in week(),
        seed in any::<u64>(),
        groups in 1usize..6,
    ) {
        let changes = simulate(devices, &ops);
        let expected = fingerprint(&state_of(changes.clone()));

        let mut rng = SplitMix(seed);
        let mut parts: Vec<Vec<Change>> = vec![Vec::new(); groups];
        for change in &changes {
            parts[rng.index(groups)].push(change.clone());
            // Some changes travel in more than one group.
            if rng.index(5) == 0 {
                parts[rng.index(groups)].push(change.clone());
            }
        }
        // Half the groups arrive as one batch (grouped by record inside),
        // the others change by change.
        let mut states: Vec<State> = parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 0 {
                    state_of(part)
                } else {
                    let mut state = State::new();
                    state.apply_batch(part);
                    state
                }
            })
            .collect();
        // Join in a random tree shape: repeatedly merge two random states.
        while states.len() > 1 {
            let a = states.swap_remove(rng.index(states.len()));
            let b_index = rng.index(states.len());
            states[b_index].join(&a);
        }
        prop_assert_eq!(fingerprint(&states[0]), expected);
    }

    /// Applying the same changes twice, or joining a state with itself,
    /// changes nothing.
    #[test]
    fn applying_twice_equals_applying_once(
        (devices, ops) in week(),
    ) {
        let changes = simulate(devices, &ops);
        let once = state_of(changes.clone());
        let mut twice = once.clone();
        twice.apply_all(changes);
        prop_assert_eq!(fingerprint(&twice), fingerprint(&once));
        let mut joined = once.clone();
        joined.join(&once);
        prop_assert_eq!(fingerprint(&joined), fingerprint(&once));
    }

    /// Devices that end up holding the same changes, whatever they saw along
    /// the way, hold equal states: incremental merge converges.
    #[test]
    fn devices_that_hold_the_same_changes_agree(
        (devices, ops) in week(),
        seed in any::<u64>(),
    ) {
        let changes = simulate(devices, &ops);
        let expected = fingerprint(&state_of(changes.clone()));
        let mut rng = SplitMix(seed);
        // Deliver a random prefix, look at the state (as a laptop would), then
        // the rest, in another random order.
        let mut delivery = changes.clone();
        rng.shuffle(&mut delivery);
        let split = rng.index(delivery.len() + 1);
        let mut state = state_of(delivery[..split].to_vec());
        let _ = state.conflicts();
        let mut rest = delivery[split..].to_vec();
        rest.extend(delivery[..split].iter().cloned());
        rng.shuffle(&mut rest);
        state.apply_all(rest);
        prop_assert_eq!(fingerprint(&state), expected);
    }

    /// Nothing is lost: every change ever made is either still live in the
    /// merged state, or some other known change replaced it (it superseded
    /// the change, or is a re-stamped copy of it).
    #[test]
    fn every_change_is_live_or_knowingly_replaced(
        (devices, ops) in week(),
    ) {
        let changes = simulate(devices, &ops);
        let state = state_of(changes.clone());
        for change in &changes {
            let live = state
                .record(&change.record)
                .and_then(|record| record.field(&change.field))
                .is_some_and(|field| field.live().iter().any(|e| e.stamp == change.stamp));
            let replaced_by_someone = changes.iter().any(|other| {
                other.supersedes.contains(&change.stamp)
                    || other.previous_stamps.contains(&change.stamp)
                    || change.previous_stamps.iter().any(|p| other.supersedes.contains(p))
            });
            prop_assert!(
                live != replaced_by_someone,
                "change {:?} is {} but {} replaced",
                change.stamp,
                if live { "live" } else { "gone" },
                if replaced_by_someone { "was" } else { "was not" },
            );
        }
    }
}

/// The simulation does produce what the laws are about: concurrency,
/// conflicts, archives that lose to edits, and server re-stamps. Without this
/// check the properties above could pass vacuously.
#[test]
fn the_simulation_exercises_conflicts_archives_and_restamps() {
    let ops = vec![
        Op::Edit {
            device: 0,
            record: 0,
            field: 0,
            value: 1,
        },
        Op::Edit {
            device: 1,
            record: 0,
            field: 0,
            value: 2,
        },
        Op::SetClockSkew { device: 2, skew: 1 },
        Op::Edit {
            device: 2,
            record: 1,
            field: 1,
            value: 3,
        },
        Op::Archive {
            device: 0,
            record: 1,
        },
        Op::Gossip { from: 0, to: 1 },
        Op::Gossip { from: 2, to: 1 },
        Op::Sync {
            device: 2,
            ack_lost: false,
        },
        Op::Sync {
            device: 1,
            ack_lost: false,
        },
    ];
    let changes = simulate(3, &ops);
    assert!(
        changes.iter().any(Change::was_restamped),
        "a 2035 change is re-stamped"
    );
    let state = state_of(changes);
    let conflicts = state.conflicts();
    assert!(
        conflicts
            .iter()
            .any(|c| matches!(c, Conflict::Values { .. })),
        "{conflicts:?}"
    );
    assert!(
        conflicts
            .iter()
            .any(|c| matches!(c, Conflict::EditDuringArchive { .. })),
        "{conflicts:?}"
    );
}
