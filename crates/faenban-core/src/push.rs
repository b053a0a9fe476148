//! What a push does, decided from the batch and what the server holds: the
//! rules every server backend executes and none re-implements.
//!
//! A backend answers a few questions through [`Holdings`] (how far a
//! device's outbox is held, where a household is); the functions here
//! decide, in the order a push runs:
//!
//! 1. [`admit`]: the batch's sequence, author and limit checks, and which
//!    of its changes are new to the server and which are sent again;
//! 2. [`check_scope`]: every new change against the account's scope, before
//!    anything is merged, and which households must be placed again;
//! 3. [`check_merged`]: each changed record as the merge left it;
//! 4. [`filed_under`], [`place_of`] and [`placement`]: where each change is
//!    filed in the feed, where a household now is, and which changes are
//!    announced again ([`Announce`]) so that scopes a household has just
//!    entered receive its history.
//!
//! The pull side reads the feed with [`Announce::reaches`] and
//! [`Scope::may_read`]. A refusal of some records' changes
//! ([`PushError::Records`]) sets those records aside; the backend merges
//! the rest again (at most [`SET_ASIDE_ROUNDS`] times).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

use crate::change::{Change, RecordId, RecordKey, RecordKind};
use crate::clock::{DeviceId, Hlc};
use crate::merge::RecordState;
use crate::model::assess_visit;
use crate::refusal::RefusalCode;
use crate::sync::{HouseholdPlace, Refusal, Role, Scope};
use crate::{limits, Catalogues, Dimension};

/// Why the changes of one record in a push were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRefusal {
    /// The record.
    pub record: RecordKey,
    /// `OutOfScope`, `BadValue` or `LimitExceeded`.
    pub code: RefusalCode,
    /// What is wrong, in English.
    pub message: String,
}

/// Why a push, or part of it, was refused, or the backend's own failure.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<E> {
    /// Nothing of the batch may be applied.
    Batch {
        /// Why, as a stable code.
        code: RefusalCode,
        /// What is wrong and what to do, in English.
        message: String,
    },
    /// These records' changes are refused for what they say; the rest of
    /// the batch may go on without them.
    Records(Vec<RecordRefusal>),
    /// The backend could not answer.
    Store(E),
}

fn batch<E>(code: RefusalCode, message: impl Into<String>) -> PushError<E> {
    PushError::Batch {
        code,
        message: message.into(),
    }
}

/// What a backend holds that a push's rules depend on. Every answer is as
/// the backend holds it now, the changes this push has merged so far
/// included.
pub trait Holdings {
    /// The backend's failure.
    type Error;
    /// The highest sequence of `device`'s outbox the server holds (0: none).
    fn held_through(&mut self, device: DeviceId) -> Result<u64, Self::Error>;
    /// What the server holds as `sequence` of `device`'s outbox (a
    /// held-back change's too).
    fn held_arrival(
        &mut self,
        device: DeviceId,
        sequence: u64,
    ) -> Result<Option<HeldArrival>, Self::Error>;
    /// The household a record belongs to as merged.
    fn household_of(&mut self, record: &RecordKey) -> Result<Option<RecordId>, Self::Error>;
    /// Where a household was last placed ([`placement`]).
    fn place(&mut self, household: RecordId) -> Result<Option<HouseholdPlace>, Self::Error>;
    /// The village a household has as merged, if the backend holds its
    /// record.
    fn merged_village(&mut self, household: RecordId) -> Result<Option<String>, Self::Error>;
    /// True when the backend holds the household's record.
    fn household_exists(&mut self, household: RecordId) -> Result<bool, Self::Error>;
}

/// What a server keeps of each sequence of an outbox it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldArrival {
    /// The change's clock reading.
    pub hlc: Hlc,
    /// [`crate::codec::fingerprint`] of the change (`None` for sequences
    /// held before servers kept it).
    pub fingerprint: Option<u64>,
}

impl HeldArrival {
    /// What to keep of a change that arrives.
    pub fn of(change: &Change) -> HeldArrival {
        HeldArrival {
            hlc: change.stamp.hlc,
            fingerprint: Some(crate::codec::fingerprint(change)),
        }
    }

    /// True when `change` is the one held: the same stamp, and the same
    /// content where the server kept its fingerprint.
    pub fn is(&self, change: &Change) -> bool {
        self.hlc == change.stamp.hlc
            && self
                .fingerprint
                .is_none_or(|held| held == crate::codec::fingerprint(change))
    }
}

/// Bytes a server kept per sequence of a run of an outbox before runs were
/// packed: the change's clock reading (wall_ms 8, counter 4) and its
/// fingerprint (8).
pub const ARRIVAL_BYTES: usize = 20;

/// Bytes per sequence in runs kept before servers kept fingerprints.
pub const STAMP_BYTES: usize = 12;

/// The first byte of a packed run ([`arrival_stamps`]).
const PACKED_RUN: u8 = 0xfa;

/// What a server keeps of a run of fresh changes ([`HeldArrival`] of each,
/// in sequence order), packed: a tag byte, then per change the zigzag
/// varint difference of its wall clock from the change before, its counter
/// as a varint, and its 8-byte fingerprint, about 10 bytes a change.
///
/// The runs kept before were fixed-width, 12 or 20 bytes a change, so their
/// length is a multiple of 4; a packed run's never is (a zero byte is added
/// when it would be), which tells the forms apart without a column.
pub fn arrival_stamps<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Vec<u8> {
    let mut packed = vec![PACKED_RUN];
    let mut wall = 0u64;
    for change in changes {
        let held = HeldArrival::of(change);
        let delta = held.hlc.wall_ms.wrapping_sub(wall) as i64;
        wall = held.hlc.wall_ms;
        push_varint(&mut packed, ((delta << 1) ^ (delta >> 63)) as u64);
        push_varint(&mut packed, u64::from(held.hlc.counter));
        packed.extend_from_slice(&held.fingerprint.unwrap_or_default().to_le_bytes());
    }
    if packed.len().is_multiple_of(4) {
        packed.push(0);
    }
    packed
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A kept run of an outbox (`first..=last`) read back from its
/// [`arrival_stamps`] (or the fixed-width form kept before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRun {
    first: u64,
    held: Vec<HeldArrival>,
}

impl KeptRun {
    /// The run as kept; `None` if its bytes are not a run of
    /// `first..=last`.
    pub fn read(first: u64, last: u64, stamps: &[u8]) -> Option<KeptRun> {
        let count = usize::try_from(last.checked_sub(first)?.checked_add(1)?).ok()?;
        let held = if !stamps.len().is_multiple_of(4) {
            read_packed(count, stamps)?
        } else {
            read_fixed(count, stamps)?
        };
        Some(KeptRun { first, held })
    }

    /// The first sequence of the run.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last sequence of the run.
    pub fn last(&self) -> u64 {
        self.first + self.held.len() as u64 - 1
    }

    /// What the run holds as `sequence`; `None` outside it.
    pub fn get(&self, sequence: u64) -> Option<HeldArrival> {
        let at = usize::try_from(sequence.checked_sub(self.first)?).ok()?;
        self.held.get(at).copied()
    }
}

fn read_packed(count: usize, stamps: &[u8]) -> Option<Vec<HeldArrival>> {
    let (&tag, mut input) = stamps.split_first()?;
    if tag != PACKED_RUN || count > input.len() / 10 {
        return None;
    }
    let varint = |input: &mut &[u8]| -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let mut held = Vec::with_capacity(count);
    let mut wall = 0u64;
    for _ in 0..count {
        let zigzag = varint(&mut input)?;
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        wall = wall.wrapping_add(delta as u64);
        let counter = u32::try_from(varint(&mut input)?).ok()?;
        let (fingerprint, rest) = input.split_at_checked(8)?;
        input = rest;
        held.push(HeldArrival {
            hlc: Hlc {
                wall_ms: wall,
                counter,
            },
            fingerprint: Some(u64::from_le_bytes(fingerprint.try_into().ok()?)),
        });
    }
    // Nothing after the last but the zero byte that keeps the length off a
    // multiple of 4.
    matches!(input, [] | [0]).then_some(held)
}

fn read_fixed(count: usize, stamps: &[u8]) -> Option<Vec<HeldArrival>> {
    // Runs kept before fingerprints have 12 bytes a sequence; their
    // changes are compared by stamp alone.
    let width = if stamps.len() == count.checked_mul(ARRIVAL_BYTES)? {
        ARRIVAL_BYTES
    } else if stamps.len() == count.checked_mul(STAMP_BYTES)? {
        STAMP_BYTES
    } else {
        return None;
    };
    stamps
        .chunks_exact(width)
        .map(|bytes| {
            Some(HeldArrival {
                hlc: Hlc {
                    wall_ms: u64::from_le_bytes(bytes[..8].try_into().ok()?),
                    counter: u32::from_le_bytes(bytes[8..12].try_into().ok()?),
                },
                fingerprint: (width == ARRIVAL_BYTES)
                    .then(|| bytes[12..].try_into().ok().map(u64::from_le_bytes))
                    .flatten(),
            })
        })
        .collect()
}

/// A device as the server has it bound, for [`pusher`] and [`hello_binding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Bound to the account that asks.
    pub same_account: bool,
    /// Its account was revoked.
    pub revoked: bool,
    /// Its key: `None` while unbound (a device bound before keys existed),
    /// else whether it is the key the request proves or carries.
    pub key_matches: Option<bool>,
}

/// Whose key verifies a pushed run and whose scope it is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pusher {
    /// The device's own account pushes: its bound key, the account's scope.
    Own,
    /// Another account relays a bound device's outbox: the device's bound
    /// key, and the scope of the device's own account (its work, whoever
    /// carries it).
    RelayOfBound,
    /// A relay of a device the server does not know, carrying the key the
    /// device's id is made from: that key, the relaying account's scope.
    RelayOfUnknown,
}

/// The refusal of a run whose signature is not good by the key of the
/// device that must have signed it.
pub fn bad_signature(device: DeviceId) -> (RefusalCode, String) {
    (
        RefusalCode::BadSignature,
        format!(
            "the batch is not signed by device {device}'s key (changed on the way, or not that device's); nothing of it was applied"
        ),
    )
}

/// Who may push a device's outbox: its own account, or, as a relay, any
/// account for a device that is bound and not revoked, or one unknown to
/// the server whose relay carries the key its id is made from.
/// `carried_key_makes_id`: the relay carries a key and the device's id is
/// the one that key makes.
pub fn pusher(
    device: DeviceId,
    bound: Option<Bound>,
    relay: bool,
    carried_key_makes_id: bool,
) -> Result<Pusher, (RefusalCode, String)> {
    let unknown = |message: String| Err((RefusalCode::UnknownDevice, message));
    match (bound, relay) {
        (Some(bound), false) if bound.same_account => match bound.key_matches {
            Some(_) => Ok(Pusher::Own),
            None => unknown(format!(
                "device {device} has not bound its key yet; sync again from the start"
            )),
        },
        (Some(_), false) => Err(wrong_device(device)),
        (None, false) => unknown(format!(
            "device {device} has not said hello to this server; sync again from the start"
        )),
        (Some(bound), true) if bound.revoked => Err((
            RefusalCode::Revoked,
            format!("device {device} belongs to a revoked account; its changes are not accepted"),
        )),
        (Some(bound), true) => match bound.key_matches {
            Some(_) => Ok(Pusher::RelayOfBound),
            None => unknown(format!(
                "device {device} has not said hello since it got its key; its outbox can be relayed once it has"
            )),
        },
        (None, true) if carried_key_makes_id => Ok(Pusher::RelayOfUnknown),
        (None, true) => unknown(format!(
            "device {device} is not known to this server, and the relay does not carry the key its id is made from"
        )),
    }
}

/// What a hello does with the device's binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloBinding {
    /// Bound with this key already: nothing to write.
    Known,
    /// Bound to this account before keys existed: bind the key proved now.
    BindKey,
    /// New to the server: bind it to this account with this key.
    Bind,
}

/// A hello's rule: a device is bound to the account of its first hello,
/// with its key; from then on it is claimed only with that key and that
/// account. One made before keys existed (its id not made from its key)
/// may bind by its first hello only while the server has never seen its
/// id, so that an id read from a bundle cannot be claimed; an id of
/// version 8 is made from a key, so only that key claims it.
/// `key_makes_id`: the id is the one the proved key makes; `seen`: a
/// change of the device has reached the server.
pub fn hello_binding(
    device: DeviceId,
    bound: Option<Bound>,
    key_makes_id: bool,
    seen: bool,
) -> Result<HelloBinding, (RefusalCode, String)> {
    match bound {
        Some(bound) if !bound.same_account => Err(wrong_device(device)),
        Some(Bound {
            key_matches: Some(false),
            ..
        }) => Err(wrong_key(device)),
        Some(Bound {
            key_matches: Some(true),
            ..
        }) => Ok(HelloBinding::Known),
        Some(Bound {
            key_matches: None, ..
        }) => Ok(HelloBinding::BindKey),
        None if device.0.get_version_num() == 8 && !key_makes_id => Err(wrong_key(device)),
        None if !key_makes_id && seen => Err((
            RefusalCode::WrongDevice,
            format!(
                "device {device} was made by an older faenban and has already reached the server through another laptop; the administrator can enroll it: faenban-server device enroll --device {device} --account NAME"
            ),
        )),
        None => Ok(HelloBinding::Bind),
    }
}

/// A device claimed under another account.
pub fn wrong_device(device: DeviceId) -> (RefusalCode, String) {
    (
        RefusalCode::WrongDevice,
        format!(
            "device {device} belongs to another account; each laptop syncs with the account it first logged in with"
        ),
    )
}

/// A device claimed with another key than the one it is bound with.
pub fn wrong_key(device: DeviceId) -> (RefusalCode, String) {
    (
        RefusalCode::WrongKey,
        format!(
            "device {device} is bound to another key; a device id is claimed only with the key it was first bound with"
        ),
    )
}

/// One device's outbox run, as pushed (its signature already checked).
#[derive(Clone, Debug)]
pub struct Batch {
    /// Whose outbox.
    pub device: DeviceId,
    /// Passed on from a bundle by another device.
    pub relay: bool,
    /// The sequence of the first change.
    pub first_sequence: u64,
    /// The changes, sequences `first_sequence`, `first_sequence + 1`, ….
    pub changes: Vec<Change>,
}

/// What [`admit`] found: what the server holds of the outbox, which changes
/// are new, and which records are refused before any merge.
#[derive(Debug, Default)]
pub struct Admission {
    /// The highest sequence held before this push.
    pub held: u64,
    /// The sequences sent again (held already), in order.
    pub resent: Vec<u64>,
    /// The changes new to the server, with their sequences.
    pub fresh: Vec<(u64, Change)>,
    /// Records whose changes are refused for what they say.
    pub set_aside: HashMap<RecordKey, RecordRefusal>,
}

/// How many times a push sets records aside and merges the rest again
/// before it refuses the whole batch: each round finds every refusal it can
/// in one pass, so a second round is needed only where a record depended on
/// one set aside (a member of a household refused).
pub const SET_ASIDE_ROUNDS: usize = 8;

/// What a batch claims before its signature is checked: an outbox of a
/// device that is not the server's own, numbered from 1.
pub fn check_claim<E>(
    server_device: DeviceId,
    device: DeviceId,
    first_sequence: u64,
) -> Result<(), PushError<E>> {
    if first_sequence == 0 {
        return Err(batch(
            RefusalCode::BadSequence,
            "outbox sequences start at 1; first_sequence was 0",
        ));
    }
    if device == server_device {
        return Err(batch(
            RefusalCode::WrongDevice,
            "no outbox may claim the server's own device; nothing of this batch was applied",
        ));
    }
    Ok(())
}

/// The checks of a batch before anything is merged: sequences start at 1
/// and follow on from what the server holds; no outbox is the server's
/// own; every stamp a change carries is of the outbox's device; a change
/// sent again is the one held under its sequence. A change over the limits
/// sets its record aside.
///
/// A change is the one held under its sequence only if its stamp and its
/// content are: a laptop restored from a backup may give the same clock
/// readings to different changes, which must not be taken for duplicates.
pub fn admit<H: Holdings>(
    server_device: DeviceId,
    batch: Batch,
    holdings: &mut H,
) -> Result<Admission, PushError<H::Error>> {
    let Batch {
        device,
        relay,
        first_sequence,
        changes,
    } = batch;
    check_claim(server_device, device, first_sequence)?;
    let mut set_aside = HashMap::new();
    for (position, change) in changes.iter().enumerate() {
        // A stamp names a change: a stamp of another device would take that
        // device's change's place.
        let foreign = std::iter::once(&change.stamp)
            .chain(&change.previous_stamps)
            .find(|stamp| stamp.device != device);
        if let Some(stamp) = foreign {
            return Err(self::batch(
                RefusalCode::WrongAuthor,
                format!(
                    "change {position} carries a stamp of device {}, not of device {device} whose outbox this is; nothing of this batch was applied",
                    stamp.device
                ),
            ));
        }
        if let Err(exceeded) = limits::check_change(change) {
            set_aside
                .entry(change.record.clone())
                .or_insert_with(|| RecordRefusal {
                    record: change.record.clone(),
                    code: RefusalCode::LimitExceeded,
                    message: format!(
                        "change {position} ({} {}): {}",
                        change.record.kind,
                        change.record.id,
                        exceeded.describe()
                    ),
                });
        }
    }
    let held = holdings.held_through(device).map_err(PushError::Store)?;
    if first_sequence > held + 1 {
        // A relaying account learns nothing of how far another device's
        // outbox is held.
        let message = if relay {
            "this relayed outbox does not follow on from what the server holds of it; nothing of this batch was applied".to_owned()
        } else {
            format!(
                "the server holds device {device}'s outbox through sequence {held}; this batch starts at {first_sequence}; send from {}",
                held + 1
            )
        };
        return Err(self::batch(RefusalCode::SequenceGap, message));
    }
    let mut admission = Admission {
        held,
        set_aside,
        ..Admission::default()
    };
    for (offset, change) in changes.into_iter().enumerate() {
        let sequence = first_sequence + offset as u64;
        if sequence <= held {
            let held = holdings
                .held_arrival(device, sequence)
                .map_err(PushError::Store)?;
            if !held.is_some_and(|held| held.is(&change)) {
                return Err(self::batch(
                    RefusalCode::SequenceReused,
                    format!(
                        "the server already holds a different change as sequence {sequence} of device {device}; nothing of this batch was applied"
                    ),
                ));
            }
            admission.resent.push(sequence);
        } else {
            admission.fresh.push((sequence, change));
        }
    }
    Ok(admission)
}

/// What [`check_scope`] learned about the changes it let through.
#[derive(Debug, Default)]
pub struct ScopeCheck {
    /// Records the batch moves to another household, with the one they
    /// leave: once merged, a record that did move is announced again under
    /// its new household ([`moved_to`]).
    pub leaving: HashMap<RecordKey, RecordId>,
    /// Households whose place ([`place_of`]) the batch may change: a
    /// village or welfare card changed, a visit added, changed or taken
    /// away.
    pub to_place: BTreeSet<RecordId>,
}

/// Checks every change against the account's scope before anything is
/// merged, and that the values scope is decided by are well formed.
///
/// Every household a record is placed in by the batch (every `household`
/// value, not only the last: the merge keeps the highest stamp, not the
/// last in the batch), every village the batch gives a household, and the
/// place the server already has for each, must be the account's. The
/// merged result is checked again by [`check_merged`].
pub fn check_scope<H: Holdings>(
    scope: &Scope,
    fresh: &[(u64, Change)],
    holdings: &mut H,
) -> Result<ScopeCheck, PushError<H::Error>> {
    let mut refusals: Vec<RecordRefusal> = Vec::new();
    let mut batch_households: HashMap<&RecordKey, Vec<RecordId>> = HashMap::new();
    let mut batch_villages: HashMap<RecordId, Vec<&str>> = HashMap::new();
    for (position, (_, change)) in fresh.iter().enumerate() {
        let key = &change.record;
        match (&key.kind, change.field.as_str()) {
            (RecordKind::Household, "village") => {
                let Some(village) = village_value(&change.value) else {
                    refusals.push(bad_value(
                        position,
                        change,
                        "does not give a real 8-digit village code",
                    ));
                    continue;
                };
                if !scope.covers_village(village) {
                    refusals.push(out_of_scope(position, change, Refusal::OutsideAreas));
                    continue;
                }
                batch_villages.entry(key.id).or_default().push(village);
            }
            (kind, "household") if *kind != RecordKind::Household => {
                let Some(household) = household_value(&change.value) else {
                    refusals.push(bad_value(
                        position,
                        change,
                        "does not name a household by its id",
                    ));
                    continue;
                };
                batch_households.entry(key).or_default().push(household);
            }
            (RecordKind::Assistance, "dimension") if scope.role == Role::Dimension => {
                let own = scope.dimension.map(Dimension::key);
                if change.value.as_str() != own {
                    refusals.push(out_of_scope(position, change, Refusal::OtherDimension));
                }
            }
            _ => {}
        }
    }
    let mut checked = ScopeCheck::default();
    let mut households: HashMap<&RecordKey, Vec<RecordId>> = HashMap::new();
    let mut places: HashMap<RecordId, Option<HouseholdPlace>> = HashMap::new();
    let mut known: HashMap<RecordId, bool> = HashMap::new();
    for (position, (_, change)) in fresh.iter().enumerate() {
        let key = &change.record;
        if households.contains_key(key) || refusals.iter().any(|refusal| &refusal.record == key) {
            continue;
        }
        let mut candidates: Vec<RecordId> = Vec::new();
        if key.kind == RecordKind::Household {
            candidates.push(key.id);
        } else {
            let stored = holdings.household_of(key).map_err(PushError::Store)?;
            if let Some(named) = batch_households.get(key) {
                if let Some(stored) = stored.filter(|stored| named.iter().any(|n| n != stored)) {
                    checked.leaving.insert(key.clone(), stored);
                }
                candidates.extend(named.iter().copied());
            }
            candidates.extend(stored);
            candidates.sort_unstable();
            candidates.dedup();
        }
        let verdict = may_write_in(
            scope,
            key,
            &candidates,
            &batch_villages,
            &mut places,
            &mut known,
            holdings,
        )
        .map_err(PushError::Store)?;
        match verdict {
            Ok(()) => {
                households.insert(key, candidates);
            }
            Err(reason) => {
                checked.leaving.remove(key);
                refusals.push(out_of_scope(position, change, reason));
            }
        }
    }
    if !refusals.is_empty() {
        return Err(PushError::Records(refusals));
    }
    for (_, change) in fresh {
        let places_it = matches!(
            (&change.record.kind, change.field.as_str()),
            (RecordKind::Household, "village" | "welfare_card") | (RecordKind::Visit, _)
        );
        if places_it {
            checked
                .to_place
                .extend(households.get(&change.record).into_iter().flatten());
        }
    }
    for (record, left) in &checked.leaving {
        // A visit that leaves a household may have been its latest.
        if record.kind == RecordKind::Visit {
            checked.to_place.insert(*left);
        }
    }
    Ok(checked)
}

/// Whether the account may change `key`, which may belong to any of
/// `candidates`, each where the server has it and where the batch puts it.
fn may_write_in<H: Holdings>(
    scope: &Scope,
    key: &RecordKey,
    candidates: &[RecordId],
    batch_villages: &HashMap<RecordId, Vec<&str>>,
    places: &mut HashMap<RecordId, Option<HouseholdPlace>>,
    known: &mut HashMap<RecordId, bool>,
    holdings: &mut H,
) -> Result<Result<(), Refusal>, H::Error> {
    if scope.is_everything() {
        return Ok(Ok(()));
    }
    if candidates.is_empty() {
        return Ok(scope.may_write(&key.kind, None));
    }
    for household in candidates {
        if !places.contains_key(household) {
            places.insert(*household, holdings.place(*household)?);
        }
        let stored = places[household]
            .clone()
            .filter(|place| !place.village.is_empty());
        let batch = batch_villages.get(household);
        match (&stored, batch) {
            (Some(stored), _) => {
                if let Err(reason) = scope.may_write(&key.kind, Some(stored)) {
                    return Ok(Err(reason));
                }
            }
            (None, None) => return Ok(Err(Refusal::UnknownHousehold)),
            (None, Some(_)) => {
                // A household the server holds but never placed is the
                // province's to place, not the first volunteer's who learns
                // its id.
                let is_known = match known.get(household) {
                    Some(is_known) => *is_known,
                    None => {
                        let is_known = holdings.household_exists(*household)?;
                        known.insert(*household, is_known);
                        is_known
                    }
                };
                if is_known {
                    return Ok(Err(Refusal::UnplacedHousehold));
                }
            }
        }
        for village in batch.into_iter().flatten() {
            let place = HouseholdPlace {
                village: (*village).to_owned(),
                deprived: stored.as_ref().map_or(0, |p| p.deprived),
            };
            if let Err(reason) = scope.may_write(&key.kind, Some(&place)) {
                return Ok(Err(reason));
            }
        }
    }
    Ok(Ok(()))
}

/// Checks a record a push changed as the merge left it: no field holds
/// more values than the limits allow, and, for an account with a scope,
/// the record still belongs to a household the account may change (its
/// merged `household`, that household's merged `village`) and a working
/// group's assistance is in its own dimension.
pub fn check_merged<H: Holdings>(
    scope: &Scope,
    device: DeviceId,
    key: &RecordKey,
    state: &RecordState,
    holdings: &mut H,
) -> Result<Result<(), RecordRefusal>, H::Error> {
    let refused = |code: RefusalCode, message: String| {
        Ok(Err(RecordRefusal {
            record: key.clone(),
            code,
            message,
        }))
    };
    if let Err(exceeded) = limits::check_record(state, device) {
        return refused(
            RefusalCode::LimitExceeded,
            format!("{} {}: {}", key.kind, key.id, exceeded.describe()),
        );
    }
    if scope.is_everything() {
        return Ok(Ok(()));
    }
    let out_of_scope = |reason: Refusal| {
        refused(
            RefusalCode::OutOfScope,
            format!(
                "{} {} as merged is outside this account's scope: {}",
                key.kind,
                key.id,
                reason.describe()
            ),
        )
    };
    let household = if key.kind == RecordKind::Household {
        Some(key.id)
    } else {
        match state.shown("household") {
            None => None,
            Some(value) => match household_value(value) {
                Some(household) => Some(household),
                None => return out_of_scope(Refusal::UnknownHousehold),
            },
        }
    };
    let place = match household {
        None => None,
        Some(household) => {
            let stored = holdings.place(household)?;
            let village = match holdings.merged_village(household)? {
                Some(village) => Some(village),
                None => stored.as_ref().map(|place| place.village.clone()),
            };
            let Some(village) = village.filter(|village| !village.is_empty()) else {
                return out_of_scope(Refusal::UnknownHousehold);
            };
            Some(HouseholdPlace {
                village,
                deprived: stored.map_or(0, |place| place.deprived),
            })
        }
    };
    if let Err(reason) = scope.may_write(&key.kind, place.as_ref()) {
        return out_of_scope(reason);
    }
    if scope.role == Role::Dimension && key.kind == RecordKind::Assistance {
        let own = scope.dimension.map(Dimension::key);
        if state.shown("dimension").and_then(Value::as_str) != own {
            return out_of_scope(Refusal::OtherDimension);
        }
    }
    Ok(Ok(()))
}

/// The household a feed entry is filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FiledUnder {
    /// The household the record belongs to as merged.
    Household(RecordId),
    /// Officials belong to no household, and every account reads them.
    Everyone,
    /// A record that should belong to a household the server does not know
    /// yet (possible only for province and admin pushes): read by the
    /// province's scope alone, rather than shown to everyone.
    NoKnownHousehold,
}

/// Where a change of `kind` is filed, given the household its record
/// belongs to once merged — not the one the batch claims: a losing
/// `household` change must not carry the record's other changes to the
/// wrong village.
pub fn filed_under(kind: &RecordKind, household: Option<RecordId>) -> FiledUnder {
    match (kind, household) {
        (_, Some(household)) => FiledUnder::Household(household),
        (RecordKind::Official, None) => FiledUnder::Everyone,
        (_, None) => FiledUnder::NoKnownHousehold,
    }
}

/// The household a record that left `left` is announced again under, once
/// merged: the one it now belongs to, unless a concurrent change kept it
/// where it was.
pub fn moved_to(left: RecordId, now: Option<RecordId>) -> Option<RecordId> {
    now.filter(|now| *now != left)
}

/// Why a change is in the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Announce {
    /// It arrived.
    Arrival,
    /// Its household moved village, or it moved to another household, or
    /// its household was placed for the first time.
    Moved,
    /// Its household became deprived in a dimension it was not.
    Deprivation,
}

impl Announce {
    /// The number a store keeps for it.
    pub fn as_i64(self) -> i64 {
        match self {
            Announce::Arrival => 0,
            Announce::Moved => 1,
            Announce::Deprivation => 2,
        }
    }

    /// The reason a stored number stands for.
    pub fn from_i64(number: i64) -> Option<Announce> {
        match number {
            0 => Some(Announce::Arrival),
            1 => Some(Announce::Moved),
            2 => Some(Announce::Deprivation),
            _ => None,
        }
    }

    /// True when a feed entry for this reason is for this scope: a change
    /// announced again matters only to the scopes its household may just
    /// have entered (the province's covers every place already).
    pub fn reaches(self, scope: &Scope) -> bool {
        match self {
            Announce::Arrival => true,
            Announce::Moved => !scope.is_everything(),
            Announce::Deprivation => scope.role == Role::Dimension,
        }
    }

    /// The highest reason that [`Announce::reaches`] this scope (the
    /// reasons are ordered so that a store can filter by `≤`).
    pub fn widest_for(scope: &Scope) -> Announce {
        if scope.role == Role::Dimension {
            Announce::Deprivation
        } else if scope.is_everything() {
            Announce::Arrival
        } else {
            Announce::Moved
        }
    }
}

/// True when an account reads a feed entry for `announce`, filed where it
/// is; `place` is where the entry's household is now (`None` if it has
/// never been placed), `record_now` the household the entry's record
/// belongs to now (a household's record belongs to itself).
///
/// A scoped account does not read entries of records that have since left
/// the household they are filed under: a household that enters a scope
/// brings the history of the people and visits it has now, not of those who
/// moved away before (their history was announced again where they went).
pub fn reads_entry(
    scope: &Scope,
    announce: Announce,
    filed: FiledUnder,
    place: Option<&HouseholdPlace>,
    record_now: Option<RecordId>,
) -> bool {
    if !announce.reaches(scope) {
        return false;
    }
    if scope.is_everything() {
        return true;
    }
    let unplaced = HouseholdPlace::default();
    match filed {
        FiledUnder::Everyone => scope.may_read(None),
        FiledUnder::Household(_) => {
            still_filed_right(filed, record_now) && scope.may_read(Some(place.unwrap_or(&unplaced)))
        }
        FiledUnder::NoKnownHousehold => scope.may_read(Some(&unplaced)),
    }
}

/// False for an entry filed under a household its record has since left
/// (see [`reads_entry`]); `record_now` is the household the record belongs
/// to now.
pub fn still_filed_right(filed: FiledUnder, record_now: Option<RecordId>) -> bool {
    match filed {
        FiledUnder::Household(household) => record_now == Some(household),
        FiledUnder::Everyone | FiledUnder::NoKnownHousehold => true,
    }
}

/// Where a household is and where its latest finished survey found it
/// deprived, from its merged record and its visits'. The latest is the
/// report's: the finished visit of the latest day whose catalogue assessed
/// it, and of two on one day the one the report's digest sorts last, so
/// that who may see a household and how the report counts it agree.
pub fn place_of(
    household: RecordId,
    state: &RecordState,
    visits: impl IntoIterator<Item = (RecordKey, RecordState)>,
) -> HouseholdPlace {
    let village = state
        .shown("village")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let welfare_card = state
        .shown("welfare_card")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut latest = None;
    for (key, visit_state) in visits {
        let Ok(visit) = crate::model::decode::<crate::model::Visit>(&key, &visit_state) else {
            continue;
        };
        if visit.archived || visit.value.in_progress || visit.value.household != household {
            continue;
        }
        let Ok(assessment) = assess_visit(catalogues(), &visit.value, &visit_state, welfare_card)
        else {
            continue;
        };
        let deprived = Dimension::ALL
            .into_iter()
            .filter(|dimension| assessment.is_deprived_in(*dimension))
            .fold(0u8, |bits, dimension| bits | HouseholdPlace::bit(dimension));
        // The report digest's order (`report::digest_household`).
        let found = (
            visit.value.date,
            deprived,
            assessment.target_poor,
            visit.value.income_per_year,
        );
        if latest.as_ref().is_none_or(|latest| found > *latest) {
            latest = Some(found);
        }
    }
    HouseholdPlace {
        village,
        deprived: latest.map_or(0, |(_, deprived, ..)| deprived),
    }
}

/// What a new place of a household means for the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Nothing changed.
    Unchanged,
    /// Placed for the first time: changes to its records that reached the
    /// server before its village did (filed under it, but unreadable for
    /// want of a place) are announced again, as [`Announce::Moved`].
    First,
    /// Placed again, and its records' changes are announced again for this
    /// reason, so that accounts whose scope it has just entered receive its
    /// whole history.
    AnnounceAll(Announce),
    /// Placed again with fewer deprivations: no scope gains it.
    Quiet,
}

/// What placing a household at `after`, where it was at `before`, means.
pub fn placement(before: Option<&HouseholdPlace>, after: &HouseholdPlace) -> Placement {
    match before {
        None => Placement::First,
        Some(before) if before == after => Placement::Unchanged,
        Some(before) if before.village != after.village => Placement::AnnounceAll(Announce::Moved),
        Some(before) if after.deprived & !before.deprived != 0 => {
            Placement::AnnounceAll(Announce::Deprivation)
        }
        Some(_) => Placement::Quiet,
    }
}

/// A `village` value that is a real village code, as written.
fn village_value(value: &Value) -> Option<&str> {
    let text = value.as_str()?;
    let code = crate::codes::AreaCode::parse(text).ok()?;
    (code.as_str() == text
        && code.level() == crate::codes::AreaLevel::Village
        && areas().check(&code).is_ok())
    .then_some(text)
}

/// The household a record's state names in its `household` field, if it
/// names one by its id ([`household_value`]).
pub fn household_value_of(state: &RecordState) -> Option<RecordId> {
    state.shown("household").and_then(household_value)
}

/// A `household` value that names a household id in its canonical form
/// (the form every store files records under).
pub fn household_value(value: &Value) -> Option<RecordId> {
    let text = value.as_str()?;
    let id = uuid::Uuid::parse_str(text).ok()?;
    (id.hyphenated().to_string() == text).then_some(RecordId(id))
}

fn areas() -> &'static crate::areas::Areas {
    static AREAS: OnceLock<crate::areas::Areas> = OnceLock::new();
    AREAS.get_or_init(crate::areas::Areas::builtin)
}

fn catalogues() -> &'static Catalogues {
    static CATALOGUES: OnceLock<Catalogues> = OnceLock::new();
    CATALOGUES.get_or_init(Catalogues::builtin)
}

fn out_of_scope(position: usize, change: &Change, reason: Refusal) -> RecordRefusal {
    RecordRefusal {
        record: change.record.clone(),
        code: RefusalCode::OutOfScope,
        message: format!(
            "change {position} ({} {}, field {}) is outside this account's scope: {}",
            change.record.kind,
            change.record.id,
            change.field,
            reason.describe()
        ),
    }
}

fn bad_value(position: usize, change: &Change, what: &str) -> RecordRefusal {
    RecordRefusal {
        record: change.record.clone(),
        code: RefusalCode::BadValue,
        message: format!(
            "change {position} ({} {}, field {}) {what}",
            change.record.kind, change.record.id, change.field
        ),
    }
}
