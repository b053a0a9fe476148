//! What the server-side property tests of devices share: their keys, the
//! bindings they compare, refusals by code, and proptest's settings.

use faenban_core::{DeviceId, RefusalCode};
use faenban_keys::DeviceKey;
use faenban_store::{Error, Store};
use proptest::test_runner::{Config, FileFailurePersistence};

/// Three devices' keys, the same in every run.
pub fn keys() -> Vec<DeviceKey> {
    (0..3u8)
        .map(|n| DeviceKey::from_seed([n + 10; 32]))
        .collect()
}

/// Every device binding, as the server keeps it: device, account, and
/// whether a key is bound.
pub fn bindings(store: &Store) -> Vec<(DeviceId, String, bool)> {
    store
        .devices()
        .unwrap()
        .into_iter()
        .map(|device| (device.device, device.account, device.has_key))
        .collect()
}

/// A refusal's code; `None` for an error that is no refusal.
pub fn refusal_code(error: &Error) -> Option<RefusalCode> {
    match error {
        Error::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

/// `cases` cases, failures kept beside the test's source.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}
