//! Pushes that arrive together are applied together (one transaction, one
//! commit) on either store, and each keeps its own answer: a push refused
//! for a bad signature, or one whose change is held back out of scope, in
//! the same group as others changes nothing of theirs, and theirs nothing
//! of its.

mod support;

use std::collections::HashMap;
use std::sync::{Barrier, Mutex};

use faenban_core::sync::{Role, Scope};
use faenban_core::{Change, RecordKey, RecordKind, RefusalCode, Replica, Stamp};
use faenban_server::backend::{Backend, BackendError};
use faenban_server::token;
use faenban_store::server::{Account, PushInput};
use serde_json::json;
use support::{device, key_of, off_runtime, Kind, Server, NOW};
use uuid::Uuid;

/// Devices pushing at the same moment, and how many times.
const DEVICES: u128 = 12;
const ROUNDS: u64 = 6;

/// The device whose pushes carry another key's signature.
const FORGER: u128 = 0;
/// The device whose every second change is for a household outside its
/// account's village.
const STRAY: u128 = 1;

const HOME: &str = "40010101";
const ELSEWHERE: &str = "40010102";

/// An account and its token.
fn account(backend: &dyn Backend, name: &str, role: Role, areas: &[&str]) -> (Account, String) {
    let token = token::generate().unwrap();
    let scope = Scope {
        role,
        areas: areas.iter().map(|area| area.to_string()).collect(),
        dimension: None,
    };
    let account = backend
        .add_account(name, &scope, &token::hash(&token), NOW)
        .unwrap();
    (account, token)
}

/// What each push was answered.
#[derive(Default)]
struct Answers {
    /// Changes acknowledged as applied, by stamp.
    applied: HashMap<Stamp, Change>,
    /// Sequences held back, per device.
    held_back: HashMap<u128, Vec<u64>>,
    /// Pushes refused, per device, by code.
    refused: HashMap<u128, Vec<RefusalCode>>,
}

on_both_stores! {
#[tokio::test]
async fn pushes_arriving_together_keep_their_own_answers(server: Server) {
    let backend = server.backend.clone();
    let (answers, office_token) = off_runtime(move || {
        let backend = &*backend;
        let (office, office_token) = account(backend, "office", Role::Province, &[]);
        let (volunteer, _) = account(backend, "volunteer", Role::Volunteer, &[HOME]);
        let accounts: Vec<Account> = (0..DEVICES)
            .map(|n| if n == STRAY { volunteer.clone() } else { office.clone() })
            .collect();
        for (n, account) in accounts.iter().enumerate() {
            let device = device(200 + n as u128);
            backend
                .hello(account, device, "laptop", &key_of(device).public(), NOW)
                .unwrap();
        }
        let answers = Mutex::new(Answers::default());
        let start = Barrier::new(DEVICES as usize);
        std::thread::scope(|threads| {
            for n in 0..DEVICES {
                let (account, answers, start) = (&accounts[n as usize], &answers, &start);
                threads.spawn(move || push_rounds(backend, account, n, start, answers));
            }
        });
        (answers.into_inner().unwrap(), office_token)
    });
    // The forger's every push was refused, and nothing of it applied.
    assert_eq!(
        answers.refused.get(&FORGER).map(Vec::as_slice),
        Some(&[RefusalCode::BadSignature; ROUNDS as usize][..])
    );
    assert_eq!(answers.refused.len(), 1, "only the forger was refused");
    let forger = device(200 + FORGER);
    assert_eq!(server.call(|b| b.held_through(forger).unwrap()), 0);
    // The stray device's out-of-scope changes (every second one) were held
    // back, each by its sequence, and its others applied.
    let held: Vec<u64> = (0..ROUNDS)
        .flat_map(|round| [round * 4 + 3, round * 4 + 4])
        .collect();
    let mut stray_held = answers.held_back.get(&STRAY).cloned().unwrap_or_default();
    stray_held.sort_unstable();
    assert_eq!(stray_held, held);
    let stray = device(200 + STRAY);
    assert_eq!(server.call(|b| b.held_through(stray).unwrap()), ROUNDS * 4);
    assert_eq!(
        server.call(|b| b.refusals_between(stray, 1, ROUNDS * 4).unwrap()).len(),
        held.len()
    );
    // The office pulls exactly what was acknowledged, each change once.
    let expected = (DEVICES as usize - 1) * ROUNDS as usize * 4 - held.len();
    assert_eq!(answers.applied.len(), expected);
    let pulled = server.pull_all(&office_token).await;
    let mut seen: HashMap<Stamp, usize> = HashMap::new();
    for change in &pulled {
        *seen.entry(change.stamp).or_default() += 1;
        assert_eq!(answers.applied.get(&change.stamp), Some(change));
    }
    assert_eq!(seen.len(), expected, "every acknowledged change is in the feed");
    assert!(seen.values().all(|count| *count == 1), "none of them twice");
}
}

/// One device's rounds: each starts when every device is ready, so that the
/// pushes arrive together.
fn push_rounds(
    backend: &dyn Backend,
    account: &Account,
    n: u128,
    start: &Barrier,
    answers: &Mutex<Answers>,
) {
    let forged_with = key_of(device(999));
    let device = device(200 + n);
    let key = if n == FORGER {
        forged_with
    } else {
        key_of(device)
    };
    let mut replica = Replica::new(device);
    let mut sequence = 1;
    for round in 0..ROUNDS {
        let mut changes = Vec::new();
        for h in 0..2u128 {
            let id = Uuid::from_u128(n << 64 | u128::from(round) << 8 | h);
            let record = RecordKey::new(RecordKind::Household, id);
            let village = if n == STRAY && h == 1 {
                ELSEWHERE
            } else {
                HOME
            };
            changes.push(replica.set(NOW, &record, "village", json!(village)));
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
        start.wait();
        let result = loop {
            match backend.push(account, input.clone(), NOW) {
                Err(BackendError::Busy | BackendError::Unavailable(_)) => continue,
                result => break result,
            }
        };
        let mut answers = answers.lock().unwrap();
        match result {
            Ok(outcome) => {
                let held: Vec<u64> = outcome.held_back.iter().map(|h| h.sequence).collect();
                for (offset, change) in changes.into_iter().enumerate() {
                    if !held.contains(&(sequence + offset as u64)) {
                        answers.applied.insert(change.stamp, change);
                    }
                }
                answers.held_back.entry(n).or_default().extend(held);
                sequence += 4;
            }
            Err(BackendError::Refused { code, .. }) => {
                answers.refused.entry(n).or_default().push(code);
            }
            Err(error) => panic!("device {n}, round {round}: {error}"),
        }
    }
}
