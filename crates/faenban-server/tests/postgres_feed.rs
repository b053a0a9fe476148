//! The feed on PostgreSQL stays exact with several server processes on one
//! database: writers on two backends (each its own pool, as two processes
//! are) push at once while a third pulls, page by page, as laptops do; every
//! acknowledged change reaches the puller exactly once, none is skipped
//! because a later-numbered one committed first, and a province's team
//! receives exactly its province's.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use faenban_core::sync::{Role, Scope};
use faenban_core::{Change, RecordKey, RecordKind, Replica, Stamp};
use faenban_server::backend::{Backend, BackendError};
use faenban_server::postgres::PostgresBackend;
use faenban_server::token;
use faenban_store::server::{Account, PushInput};
use serde_json::json;
use support::postgres_support::ScratchDatabase;
use support::{device, key_of, off_runtime, NOW};
use uuid::Uuid;

/// Devices pushing at once, and what each pushes.
const DEVICES: u128 = 6;
const BATCHES: u64 = 12;
const HOUSEHOLDS_PER_BATCH: u128 = 5;

/// Three provinces, so that the pushes write to several partitions.
const VILLAGES: [&str; 3] = ["40010101", "46010101", "33010101"];

fn scope(role: Role, areas: &[&str]) -> Scope {
    Scope {
        role,
        areas: areas.iter().map(|area| area.to_string()).collect(),
        dimension: None,
    }
}

/// Pulls from `since` until the feed says there is no more; the changes
/// and the cursor after them.
fn pull_on(
    backend: &dyn Backend,
    scope: &Scope,
    since: &mut u64,
    check: &mut Option<String>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    loop {
        let page = backend.pull(scope, *since, check.as_deref(), 37).unwrap();
        changes.extend(page.changes.decode().unwrap());
        *since = page.next;
        *check = page.check;
        if !page.more {
            return changes;
        }
    }
}

#[test]
fn two_servers_pushing_and_a_third_pulling_deliver_every_acknowledged_change_exactly_once() {
    let database = ScratchDatabase::new();
    off_runtime(|| {
        let writers: Vec<Arc<PostgresBackend>> = (0..2)
            .map(|_| Arc::new(PostgresBackend::open(&database.url).unwrap()))
            .collect();
        let reader = PostgresBackend::open(&database.url).unwrap();
        let office = writers[0]
            .add_account(
                "office",
                &scope(Role::Province, &[]),
                &token::hash("o"),
                NOW,
            )
            .unwrap();
        let team = writers[0]
            .add_account(
                "team 40",
                &scope(Role::Team, &["40"]),
                &token::hash("t"),
                NOW,
            )
            .unwrap();
        let acknowledged: Arc<Mutex<HashMap<Stamp, Change>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|threads| {
            let pushing: Vec<_> = (0..DEVICES)
                .map(|n| {
                    let backend = writers[n as usize % 2].clone();
                    let acknowledged = acknowledged.clone();
                    let office = office.clone();
                    threads.spawn(move || push_device(&*backend, &office, n, &acknowledged))
                })
                .collect();
            // Pulls while the pushes go on, as a laptop syncing then would.
            let puller = threads.spawn(|| {
                let everything = scope(Role::Province, &[]);
                let (mut since, mut check) = (0, None);
                let mut pulled = Vec::new();
                while !done.load(Ordering::Acquire) {
                    pulled.extend(pull_on(&reader, &everything, &mut since, &mut check));
                }
                pulled.extend(pull_on(&reader, &everything, &mut since, &mut check));
                pulled
            });
            let team_puller = threads.spawn(|| {
                let (mut since, mut check) = (0, None);
                let mut pulled = Vec::new();
                while !done.load(Ordering::Acquire) {
                    pulled.extend(pull_on(&reader, &team.scope, &mut since, &mut check));
                }
                pulled.extend(pull_on(&reader, &team.scope, &mut since, &mut check));
                pulled
            });
            let finished: Vec<_> = pushing.into_iter().map(|writer| writer.join()).collect();
            done.store(true, Ordering::Release);
            for result in finished {
                result.unwrap();
            }
            let expected = (DEVICES * BATCHES as u128 * HOUSEHOLDS_PER_BATCH * 2) as usize;
            let pulled = puller.join().unwrap();
            let team_pulled = team_puller.join().unwrap();
            let acknowledged = acknowledged.lock().unwrap();
            assert_eq!(acknowledged.len(), expected);
            assert_exactly_once(&pulled, &acknowledged, |_| true);
            assert_exactly_once(&team_pulled, &acknowledged, |change| {
                change.record.id.0.as_u128() as u8 == 0
            });
        });
    });
}

/// `pulled` holds each acknowledged change `wanted` picks exactly once, and
/// nothing else.
fn assert_exactly_once(
    pulled: &[Change],
    acknowledged: &HashMap<Stamp, Change>,
    wanted: impl Fn(&Change) -> bool,
) {
    let mut seen: HashMap<Stamp, usize> = HashMap::new();
    for change in pulled {
        *seen.entry(change.stamp).or_default() += 1;
        assert_eq!(
            acknowledged.get(&change.stamp),
            Some(change),
            "a pulled change that was never acknowledged"
        );
    }
    let twice = seen.values().filter(|count| **count > 1).count();
    assert_eq!(twice, 0, "{twice} changes were pulled more than once");
    let missing: Vec<&Change> = acknowledged
        .values()
        .filter(|change| wanted(change) && !seen.contains_key(&change.stamp))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged changes were never pulled (skipped by the cursor)",
        missing.len()
    );
    let unwanted = pulled.iter().filter(|change| !wanted(change)).count();
    assert_eq!(
        unwanted, 0,
        "{unwanted} changes outside the scope were pulled"
    );
}

/// One device's outbox, pushed batch by batch; the acknowledged changes
/// are added to `acknowledged`.
fn push_device(
    backend: &dyn Backend,
    account: &Account,
    n: u128,
    acknowledged: &Mutex<HashMap<Stamp, Change>>,
) {
    let device = device(100 + n);
    let key = key_of(device);
    backend
        .hello(account, device, "laptop", &key.public(), NOW)
        .unwrap();
    let mut replica = Replica::new(device);
    let mut sequence = 1;
    for batch in 0..BATCHES {
        let mut changes = Vec::new();
        for h in 0..HOUSEHOLDS_PER_BATCH {
            // The low byte is the village, so the team's share is known.
            let number = (n << 32) | (u128::from(batch) << 16) | (h << 8);
            let village = (h as usize + n as usize + batch as usize) % 3;
            let id = Uuid::from_u128(number | village as u128);
            let record = RecordKey::new(RecordKind::Household, id);
            changes.push(replica.set(NOW, &record, "village", json!(VILLAGES[village])));
            changes.push(replica.set(NOW, &record, "address", json!(format!("{h} หมู่ 1"))));
        }
        let input = PushInput {
            device,
            relay: false,
            first_sequence: sequence,
            signature: key.sign_run(device, sequence, &changes),
            changes: changes.clone(),
            public_key: None,
        };
        loop {
            match backend.push(account, input.clone(), NOW) {
                Ok(outcome) => {
                    assert_eq!(outcome.applied as usize, changes.len(), "{outcome:?}");
                    break;
                }
                // The pool was busy: a laptop tries again.
                Err(BackendError::Busy | BackendError::Unavailable(_)) => continue,
                Err(error) => panic!("push {batch} of device {n}: {error}"),
            }
        }
        sequence += changes.len() as u64;
        let mut acknowledged = acknowledged.lock().unwrap();
        for change in changes {
            acknowledged.insert(change.stamp, change);
        }
    }
}
