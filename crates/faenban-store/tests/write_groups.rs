//! Property tests of the server's grouped writes: hellos applied in
//! groups answer and bind exactly as hellos one by one do, and a push
//! whose signature was checked before the writer is applied or refused
//! exactly as an unchecked one, whatever key a hostile account signs with,
//! names for the check, or changes after signing.

mod support;

use faenban_core::sync::{Role, Scope};
use faenban_core::{Change, DeviceId, RecordKey, RecordKind, RefusalCode, Replica};
use faenban_keys::DeviceKey;
use faenban_store::server::{Account, Hello, PushInput, SignedPush};
use faenban_store::{Error, Store};
use proptest::prelude::*;
use serde_json::json;
use support::{bindings, config, keys, refusal_code};
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;
const VILLAGE: &str = "40010101";

fn volunteer() -> Scope {
    Scope {
        role: Role::Volunteer,
        areas: vec![VILLAGE.into()],
        dimension: None,
    }
}

/// A server with accounts a0 and a1, and a2 revoked.
fn server() -> (Store, Vec<Account>) {
    let mut store = Store::open_in_memory().unwrap();
    store
        .init("server", &DeviceKey::from_seed([1; 32]))
        .unwrap();
    let mut accounts: Vec<Account> = (0..3)
        .map(|n| {
            store
                .add_account(&format!("a{n}"), &volunteer(), &[n as u8; 32], NOW)
                .unwrap()
        })
        .collect();
    accounts[2] = store.revoke_account("a2", NOW).unwrap();
    (store, accounts)
}

/// A hello's answer, as the two ways are compared: the sequence held, or
/// the refusal's code.
fn answer(result: Result<u64, Error>) -> Result<u64, Option<RefusalCode>> {
    result.map_err(|error| refusal_code(&error))
}

/// A household of the village, recorded on `device`.
fn household(device: DeviceId) -> Vec<Change> {
    let mut replica = Replica::new(device);
    let home = RecordKey::new(RecordKind::Household, Uuid::from_u128(40));
    vec![
        replica.set(NOW, &home, "village", json!(VILLAGE)),
        replica.set(NOW, &home, "notes", json!("บ้านตัวอย่าง")),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn hellos_in_groups_answer_and_bind_as_hellos_one_by_one(
        hellos in prop::collection::vec((0..3usize, 0..5usize, 0..3usize), 1..16),
        cuts in prop::collection::vec(1..5usize, 1..16),
    ) {
        let keys = keys();
        let (mut alone, accounts) = server();
        let (mut grouped, _) = server();
        // Each key's own device, one no key makes, and the server's own.
        let mut devices: Vec<DeviceId> = keys.iter().map(DeviceKey::device_id).collect();
        devices.push(DeviceId(Uuid::from_u128(0xD0)));
        devices.push(alone.device().unwrap().unwrap().id);
        prop_assert_eq!(devices[4], grouped.device().unwrap().unwrap().id);
        let hellos: Vec<(Account, Hello)> = hellos
            .into_iter()
            .map(|(account, device, key)| {
                (accounts[account].clone(), Hello { device: devices[device], name: "laptop".into(), key: keys[key].public() })
            })
            .collect();
        let one_by_one: Vec<_> = hellos
            .iter()
            .map(|(account, hello)| answer(alone.hello(account, hello.device, &hello.name, &hello.key, NOW)))
            .collect();
        let mut in_groups = Vec::new();
        let mut rest = hellos.as_slice();
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (group, after) = rest.split_at((*cut).min(rest.len()));
            rest = after;
            let answers = grouped.hello_group(group.to_vec(), NOW).unwrap();
            prop_assert_eq!(answers.len(), group.len());
            in_groups.extend(answers.into_iter().map(answer));
        }
        prop_assert_eq!(in_groups, one_by_one);
        prop_assert_eq!(bindings(&grouped), bindings(&alone));
    }

    #[test]
    fn a_push_checked_before_the_writer_is_decided_as_an_unchecked_one(
        signer in 0..3usize,
        named in prop::option::of(0..3usize),
        tampered in any::<bool>(),
        relay in any::<bool>(),
    ) {
        // Key 0 is the device's, bound at its hello; key 1 is another
        // laptop's of the same account; key 2 is bound to nothing.
        let keys = keys();
        let device = keys[0].device_id();
        let (mut checked_first, accounts) = server();
        let (mut unchecked, _) = server();
        for store in [&mut checked_first, &mut unchecked] {
            store.hello(&accounts[0], device, "laptop", &keys[0].public(), NOW).unwrap();
            store.hello(&accounts[0], keys[1].device_id(), "laptop", &keys[1].public(), NOW).unwrap();
        }
        let mut changes = household(device);
        let signature = keys[signer].sign_run(device, 1, &changes);
        if tampered {
            changes[1].value = json!("ข้อความที่ถูกแก้ระหว่างทาง");
        }
        let input = PushInput {
            device,
            relay,
            first_sequence: 1,
            changes,
            signature,
            public_key: relay.then(|| keys[signer].public()),
        };
        let expected = checked_first.expected_push_key(&accounts[0], &input).unwrap();
        prop_assert_eq!(expected, Some(keys[0].public()), "the reader names the bound key");
        let named_key = named.map(|named| keys[named].public());
        let push = SignedPush::check(input.clone(), named_key);
        let first = checked_first.push_group(vec![(accounts[0].clone(), push)], NOW).unwrap().remove(0);
        let plain = unchecked.push_group(vec![(accounts[0].clone(), input)], NOW).unwrap().remove(0);
        let applied = signer == 0 && !tampered;
        prop_assert_eq!(first.is_ok(), applied, "{:?}", first);
        prop_assert_eq!(answer(first.map(|outcome| outcome.held_through)), answer(plain.map(|outcome| outcome.held_through)));
        if !applied {
            prop_assert_eq!(checked_first.feed_head().unwrap(), 0, "a refused push left changes");
        }
    }
}
