//! The push rules every server backend calls for what it keeps of an
//! outbox and for who may push or say hello: a hostile device gets no
//! sequence taken for another change, and no device or key that is not
//! its own.

use faenban_core::push::{
    arrival_stamps, hello_binding, pusher, Bound, HeldArrival, HelloBinding, KeptRun, Pusher,
};
use faenban_core::{Change, DeviceId, Hlc, RecordKey, RecordKind, RefusalCode, Stamp};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

/// What a kept run holds as `sequence`, read as a backend reads it.
fn held_arrival_in(first: u64, last: u64, stamps: &[u8], sequence: u64) -> Option<HeldArrival> {
    KeptRun::read(first, last, stamps)?.get(sequence)
}

fn change(wall_ms: u64, counter: u32, value: i64) -> Change {
    Change {
        stamp: Stamp::new(Hlc { wall_ms, counter }, DeviceId(Uuid::from_u128(7))),
        record: RecordKey::new(RecordKind::Household, Uuid::from_u128(1)),
        field: "notes".into(),
        value: json!(value),
        supersedes: Default::default(),
        observed: Vec::new(),
        previous_stamps: Vec::new(),
    }
}

proptest! {
    /// Every sequence of a kept run reads back as its change, and as no
    /// other content under the same stamp; nothing outside the run reads.
    #[test]
    fn a_kept_run_answers_for_each_of_its_sequences_and_no_other(
        first in 1u64..1_000_000,
        stamps in proptest::collection::vec((any::<u64>(), any::<u32>(), any::<i64>()), 1..40),
        other in any::<i64>(),
    ) {
        let changes: Vec<Change> = stamps.iter().map(|(w, c, v)| change(*w, *c, *v)).collect();
        let last = first + changes.len() as u64 - 1;
        let kept = arrival_stamps(&changes);
        for (offset, change) in changes.iter().enumerate() {
            let held = held_arrival_in(first, last, &kept, first + offset as u64).unwrap();
            prop_assert_eq!(held, HeldArrival::of(change));
            prop_assert!(held.is(change));
            let mut forged = change.clone();
            forged.value = json!(other);
            prop_assert_eq!(held.is(&forged), forged == *change);
        }
        prop_assert!(held_arrival_in(first, last, &kept, first - 1).is_none());
        prop_assert!(held_arrival_in(first, last, &kept, last + 1).is_none());
        // The run is packed: never the length of a fixed-width one, and
        // the bytes of a run of another length are not read as this one.
        prop_assert_ne!(kept.len() % 4, 0);
        prop_assert!(kept.len() <= 2 + changes.len() * 23);
        prop_assert!(KeptRun::read(first, last + 1, &kept).is_none());
        if changes.len() > 1 {
            prop_assert!(KeptRun::read(first, last - 1, &kept).is_none());
        }
        // Runs kept before runs were packed, 20 bytes a sequence, answer
        // as they did; those kept before fingerprints (12 bytes) answer
        // the stamp alone.
        let fixed: Vec<u8> = changes
            .iter()
            .flat_map(|change| {
                let held = HeldArrival::of(change);
                let mut bytes = held.hlc.wall_ms.to_le_bytes().to_vec();
                bytes.extend_from_slice(&held.hlc.counter.to_le_bytes());
                bytes.extend_from_slice(&held.fingerprint.unwrap().to_le_bytes());
                bytes
            })
            .collect();
        let legacy: Vec<u8> = fixed.chunks(20).flat_map(|bytes| bytes[..12].to_vec()).collect();
        for (offset, change) in changes.iter().enumerate() {
            let sequence = first + offset as u64;
            prop_assert_eq!(held_arrival_in(first, last, &fixed, sequence), Some(HeldArrival::of(change)));
            let held = held_arrival_in(first, last, &legacy, sequence).unwrap();
            prop_assert_eq!(held.hlc, change.stamp.hlc);
            prop_assert_eq!(held.fingerprint, None);
        }
    }

    /// Whatever bytes a damaged or forged run holds, reading it answers or
    /// says no; it never panics nor allocates past its bytes.
    #[test]
    fn any_bytes_read_as_a_run_or_as_none(
        first in 0u64..u64::MAX,
        count in 0u64..5_000,
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let last = first.saturating_add(count);
        if let Some(run) = KeptRun::read(first, last, &bytes) {
            prop_assert_eq!(run.last(), last);
            prop_assert!(run.get(last).is_some());
        }
    }
}

const DEVICE: DeviceId = DeviceId(Uuid::from_u128(0x1234));

#[test]
fn only_the_bound_account_pushes_and_a_relay_needs_a_bound_key_or_the_key_of_the_id() {
    let own = Bound {
        same_account: true,
        revoked: false,
        key_matches: Some(true),
    };
    let other = Bound {
        same_account: false,
        ..own
    };
    assert_eq!(pusher(DEVICE, Some(own), false, false), Ok(Pusher::Own));
    assert_eq!(
        pusher(DEVICE, Some(other), false, false).unwrap_err().0,
        RefusalCode::WrongDevice
    );
    assert_eq!(
        pusher(DEVICE, None, false, true).unwrap_err().0,
        RefusalCode::UnknownDevice
    );
    let unbound = Bound {
        key_matches: None,
        ..own
    };
    assert_eq!(
        pusher(DEVICE, Some(unbound), false, false).unwrap_err().0,
        RefusalCode::UnknownDevice
    );
    assert_eq!(
        pusher(DEVICE, Some(other), true, false),
        Ok(Pusher::RelayOfBound)
    );
    let revoked = Bound {
        revoked: true,
        ..other
    };
    assert_eq!(
        pusher(DEVICE, Some(revoked), true, false).unwrap_err().0,
        RefusalCode::Revoked
    );
    assert_eq!(pusher(DEVICE, None, true, true), Ok(Pusher::RelayOfUnknown));
    assert_eq!(
        pusher(DEVICE, None, true, false).unwrap_err().0,
        RefusalCode::UnknownDevice
    );
}

#[test]
fn a_hello_binds_a_device_once_to_its_account_and_key() {
    let bound = |same_account, key_matches| Bound {
        same_account,
        revoked: false,
        key_matches,
    };
    assert_eq!(
        hello_binding(DEVICE, Some(bound(true, Some(true))), true, false),
        Ok(HelloBinding::Known)
    );
    assert_eq!(
        hello_binding(DEVICE, Some(bound(true, Some(false))), true, false)
            .unwrap_err()
            .0,
        RefusalCode::WrongKey
    );
    assert_eq!(
        hello_binding(DEVICE, Some(bound(false, Some(true))), true, false)
            .unwrap_err()
            .0,
        RefusalCode::WrongDevice
    );
    assert_eq!(
        hello_binding(DEVICE, Some(bound(true, None)), false, true),
        Ok(HelloBinding::BindKey)
    );
    assert_eq!(
        hello_binding(DEVICE, None, true, true),
        Ok(HelloBinding::Bind)
    );
    // An id made before keys, seen through another laptop: not claimable.
    assert_eq!(
        hello_binding(DEVICE, None, false, true).unwrap_err().0,
        RefusalCode::WrongDevice
    );
    assert_eq!(
        hello_binding(DEVICE, None, false, false),
        Ok(HelloBinding::Bind)
    );
    // An id of version 8 is made from a key: only that key claims it.
    let keyed = DeviceId(uuid::Builder::from_custom_bytes([7; 16]).into_uuid());
    assert_eq!(
        hello_binding(keyed, None, false, false).unwrap_err().0,
        RefusalCode::WrongKey
    );
}
