//! A property test of the hello answered by a reader: whatever devices,
//! keys and accounts say hello, in any order, with accounts revoked and
//! devices enrolled between them, `Store::hello_if_known` answers only
//! what the writer's `Store::hello` would answer without writing, refuses
//! only what it refuses, and leaves every binding to it.

mod support;

use faenban_core::sync::{Role, Scope};
use faenban_core::DeviceId;
use faenban_keys::DeviceKey;
use faenban_store::server::Account;
use faenban_store::Store;
use proptest::prelude::*;
use support::{bindings, config, keys, refusal_code};
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;

#[derive(Clone, Debug)]
enum Step {
    /// Account `account` says hello for device `device` with key `key`.
    Hello {
        account: usize,
        device: usize,
        key: usize,
    },
    /// The office revokes an account.
    Revoke { account: usize },
    /// The office enrolls a device to an account (its key released).
    Enroll { device: usize, account: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3usize, 0..4usize, 0..3usize)
            .prop_map(|(account, device, key)| Step::Hello { account, device, key }),
        1 => (0..3usize).prop_map(|account| Step::Revoke { account }),
        1 => (0..4usize, 0..3usize).prop_map(|(device, account)| Step::Enroll { device, account }),
    ]
}

/// The devices a hello may claim: each key's own id, and one id no key
/// makes (a device from before keys).
fn devices(keys: &[DeviceKey]) -> Vec<DeviceId> {
    let mut devices: Vec<DeviceId> = keys.iter().map(DeviceKey::device_id).collect();
    devices.push(DeviceId(Uuid::from_u128(0xD0)));
    devices
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn a_hello_answered_by_a_reader_is_the_writers_answer_without_a_write(
        steps in prop::collection::vec(step(), 1..24)
    ) {
        let mut store = Store::open_in_memory().unwrap();
        store.init("server", &DeviceKey::from_seed([1; 32])).unwrap();
        let volunteer = Scope { role: Role::Volunteer, areas: vec!["40010101".into()], dimension: None };
        let mut accounts: Vec<Account> = (0..3)
            .map(|n| store.add_account(&format!("a{n}"), &volunteer, &[n as u8; 32], NOW).unwrap())
            .collect();
        let keys = keys();
        let devices = devices(&keys);
        // The device from before keys was seen (it has pushed before).
        store.enroll_device(devices[3], "a0").unwrap();
        for step in steps {
            match step {
                Step::Revoke { account } => {
                    accounts[account] = store.revoke_account(&format!("a{account}"), NOW).unwrap();
                }
                Step::Enroll { device, account } => {
                    // Refused for a revoked account; the test goes on.
                    let _ = store.enroll_device(devices[device], &format!("a{account}"));
                }
                Step::Hello { account, device, key } => {
                    let (account, device, key) = (&accounts[account], devices[device], keys[key].public());
                    let before = bindings(&store);
                    let read = store.hello_if_known(account, device, &key);
                    prop_assert_eq!(&bindings(&store), &before, "the reader wrote");
                    let written = store.hello(account, device, "laptop", &key, NOW);
                    match (read, written) {
                        (Ok(Some(held)), Ok(also)) => {
                            prop_assert_eq!(held, also);
                            prop_assert_eq!(&bindings(&store), &before, "a known device's hello wrote");
                        }
                        (Ok(Some(_)), Err(error)) => {
                            prop_assert!(false, "the reader answered what the writer refused: {error}");
                        }
                        (Ok(None), Ok(_)) => {
                            prop_assert_ne!(&bindings(&store), &before, "the reader left a hello with nothing to bind");
                        }
                        (Ok(None), Err(error)) => {
                            prop_assert!(false, "the reader left to the writer what it refuses: {error}");
                        }
                        (Err(read), written) => {
                            let code = refusal_code(&read);
                            prop_assert!(code.is_some(), "not a refusal: {read}");
                            prop_assert_eq!(code, written.as_ref().err().and_then(refusal_code));
                        }
                    }
                }
            }
        }
    }
}
