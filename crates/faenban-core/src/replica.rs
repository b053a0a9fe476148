//! Making changes from what a device has seen, the outbox of changes not yet
//! pushed, the server's one-time normalization of stamps from the future, and
//! an in-memory replica that ties them together.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{Change, RecordKey, ARCHIVED_FIELD};
use crate::clock::{is_from_the_future, Clock, DeviceId, Stamp};
use crate::error::Result;
use crate::merge::{Outcome, RecordState, State};
use crate::model::{fields_of, RecordType};

/// A change setting `field` of `record` to `value`, superseding every value
/// of that field the device holds. On a field in conflict this is the
/// resolution: the person saw every value and chose one.
pub fn set_field(
    record: &RecordKey,
    current: Option<&RecordState>,
    field: &str,
    value: Value,
    stamp: Stamp,
) -> Change {
    Change {
        stamp,
        record: record.clone(),
        field: field.into(),
        value,
        supersedes: current
            .map(|state| state.live_stamps(field).into_iter().collect())
            .unwrap_or_default(),
        observed: Vec::new(),
        previous_stamps: Vec::new(),
    }
}

/// An archive (soft delete) of `record`, recording which edits the person
/// had seen so that a concurrent, unseen edit can win over it.
pub fn archive(record: &RecordKey, current: Option<&RecordState>, stamp: Stamp) -> Change {
    let mut change = set_field(record, current, ARCHIVED_FIELD, Value::Bool(true), stamp);
    change.observed = current
        .map(RecordState::live_edit_stamps)
        .unwrap_or_default();
    change
}

/// A restore of an archived `record`.
pub fn restore(record: &RecordKey, current: Option<&RecordState>, stamp: Stamp) -> Change {
    set_field(record, current, ARCHIVED_FIELD, Value::Bool(false), stamp)
}

/// One change waiting in the outbox, with its place in the device's sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The device sequence number: pushes are keyed (device, sequence).
    pub sequence: u64,
    /// True once the change left the device, pushed to the server (even if
    /// the acknowledgement never came back) or handed out in a bundle:
    /// someone else may hold it, so this device may no longer re-stamp it.
    pub shared: bool,
    /// The change.
    pub change: Change,
}

/// The changes a device made that the server has not acknowledged yet.
///
/// Only changes in the outbox that have never left the device may be
/// re-stamped; once acknowledged they leave the outbox, and with it every way
/// to change their stamp.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    next_sequence: u64,
    pending: Vec<OutboxEntry>,
}

impl Outbox {
    /// An empty outbox whose first change gets sequence 1.
    pub fn new() -> Outbox {
        Outbox {
            next_sequence: 1,
            pending: Vec::new(),
        }
    }

    /// Queues a change and returns its sequence number.
    pub fn push(&mut self, change: Change) -> u64 {
        let sequence = self.next_sequence.max(1);
        self.next_sequence = sequence + 1;
        self.pending.push(OutboxEntry {
            sequence,
            shared: false,
            change,
        });
        sequence
    }

    /// The changes not yet acknowledged, oldest first.
    pub fn pending(&self) -> &[OutboxEntry] {
        &self.pending
    }

    /// Marks the pending changes with a sequence ≤ `up_to` as having left
    /// the device. Call it before they are sent, so that a send whose
    /// acknowledgement is lost still counts.
    pub fn mark_shared(&mut self, up_to: u64) {
        for entry in self.pending.iter_mut().filter(|e| e.sequence <= up_to) {
            entry.shared = true;
        }
    }

    /// Drops every change the server holds: all with a sequence ≤ `up_to`.
    pub fn acknowledge(&mut self, up_to: u64) {
        self.pending.retain(|entry| entry.sequence > up_to);
    }

    /// Drops every change the server holds, and returns those of them it
    /// held back (refused, not applied: `held_back` are their sequences),
    /// which the device sets aside with the server's reasons.
    pub fn acknowledge_holding_back(&mut self, up_to: u64, held_back: &[u64]) -> Vec<OutboxEntry> {
        let (held, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|entry| entry.sequence <= up_to);
        self.pending = pending;
        held.into_iter()
            .filter(|entry| sets_aside(up_to, entry.sequence, held_back))
            .collect()
    }

    /// Moves every pending change to the sequences after `held_through`, in
    /// the same order, for a file restored from a backup whose sequences the
    /// server holds for other changes ([`renumbering`]). Returns how many
    /// moved.
    pub fn renumber_after(&mut self, held_through: u64) -> u64 {
        let Some(shift) = self
            .pending
            .first()
            .and_then(|first| renumbering(first.sequence, held_through))
        else {
            return 0;
        };
        for entry in &mut self.pending {
            entry.sequence += shift;
        }
        self.next_sequence = self
            .pending
            .last()
            .map_or(self.next_sequence, |e| e.sequence + 1);
        self.pending.len() as u64
    }
}

/// True when the change under `sequence` is one an acknowledgement through
/// `up_to` sets aside: held by the server, and among those it held back.
pub fn sets_aside(up_to: u64, sequence: u64, held_back: &[u64]) -> bool {
    sequence <= up_to && held_back.contains(&sequence)
}

/// How far to move an outbox whose first pending sequence is `first` when
/// the server holds sequences through `held_through` for other changes:
/// past them, or not at all if it starts after them.
pub fn renumbering(first: u64, held_through: u64) -> Option<u64> {
    (first <= held_through).then(|| held_through + 1 - first)
}

impl Outbox {
    /// Re-stamps the pending changes that no one else has seen and whose
    /// stamp is beyond the (corrected) clock's time plus the allowed drift
    /// ([`restamp_future`]).
    ///
    /// Called after a sync corrected the clock. Returns the re-stamped
    /// changes, to be applied to the device's own state, where each replaces
    /// its earlier copy.
    pub fn restamp_future(&mut self, clock: &mut Clock, local_wall_ms: u64) -> Vec<Change> {
        let restamped = restamp_future(&self.pending, clock, local_wall_ms);
        for (sequence, change) in &restamped {
            if let Some(entry) = self.pending.iter_mut().find(|e| e.sequence == *sequence) {
                entry.change = change.clone();
            }
        }
        restamped.into_iter().map(|(_, change)| change).collect()
    }
}

/// The outbox's rule once a sync has corrected the clock: the pending
/// changes that get a new stamp, with it, by sequence, oldest first. Only a
/// change that never left the device (no one else may hold it) and whose
/// stamp is beyond the corrected time plus the allowed drift; its new stamp
/// is the clock's next tick. [`Outbox`] and the laptop's store both call it.
pub fn restamp_future<'a>(
    entries: impl IntoIterator<Item = &'a OutboxEntry>,
    clock: &mut Clock,
    local_wall_ms: u64,
) -> Vec<(u64, Change)> {
    let now = clock.corrected(local_wall_ms);
    let mut restamped = Vec::new();
    for entry in entries {
        if entry.shared || !is_from_the_future(&entry.change.stamp, now) {
            continue;
        }
        let device = entry.change.stamp.device;
        let stamp = Stamp::new(clock.tick(local_wall_ms), device);
        restamped.push((entry.sequence, entry.change.clone().restamped(stamp)));
    }
    restamped
}

/// A change as the server accepted it.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// The canonical change every replica ends with.
    pub change: Change,
    /// True when the server re-stamped it because its stamp was from the future.
    pub restamped: bool,
}

/// What the server does with each change as it arrives: a stamp beyond the
/// server's time plus the allowed drift is re-stamped with the server's clock
/// (the original kept in `previous_stamps`); any other stamp moves the
/// server's clock forward.
///
/// "Once" is the server's duty: it must call this only for a change it does
/// not hold yet (pushes are keyed by device and sequence, so a re-sent or
/// forwarded change is recognized before it gets here).
pub fn normalize_arrival(
    change: Change,
    server_clock: &mut Clock,
    server_device: DeviceId,
    server_wall_ms: u64,
) -> Arrival {
    let now = server_clock.corrected(server_wall_ms);
    if is_from_the_future(&change.stamp, now) {
        let stamp = Stamp::new(server_clock.tick(server_wall_ms), server_device);
        Arrival {
            change: change.restamped(stamp),
            restamped: true,
        }
    } else {
        server_clock.observe(change.stamp.hlc, server_wall_ms);
        Arrival {
            change,
            restamped: false,
        }
    }
}

/// A whole device held in memory: its clock, merged state and outbox. Used by
/// simulations, tests and benchmarks; the laptop keeps the same parts in
/// SQLite.
#[derive(Clone, Debug)]
pub struct Replica {
    /// This device.
    pub device: DeviceId,
    /// Its clock.
    pub clock: Clock,
    /// Everything it has merged.
    pub state: State,
    /// What it made and has not had acknowledged.
    pub outbox: Outbox,
}

impl Replica {
    /// A new, empty device.
    pub fn new(device: DeviceId) -> Replica {
        Replica {
            device,
            clock: Clock::new(),
            state: State::new(),
            outbox: Outbox::new(),
        }
    }

    fn next_stamp(&mut self, local_wall_ms: u64) -> Stamp {
        Stamp::new(self.clock.tick(local_wall_ms), self.device)
    }

    fn record_locally(&mut self, change: Change) -> Change {
        self.state.apply(change.clone());
        self.outbox.push(change.clone());
        change
    }

    /// Sets a field (resolving any conflict on it) and returns the change.
    pub fn set(
        &mut self,
        local_wall_ms: u64,
        record: &RecordKey,
        field: &str,
        value: Value,
    ) -> Change {
        let stamp = self.next_stamp(local_wall_ms);
        let change = set_field(record, self.state.record(record), field, value, stamp);
        self.record_locally(change)
    }

    /// Creates a record of type `T` with id `id`: one change per field.
    pub fn create<T: RecordType>(
        &mut self,
        local_wall_ms: u64,
        id: Uuid,
        record: &T,
    ) -> Result<(RecordKey, Vec<Change>)> {
        let key = RecordKey::new(T::kind(), id);
        let changes = fields_of(record)?
            .into_iter()
            .map(|(field, value)| self.set(local_wall_ms, &key, &field, value))
            .collect();
        Ok((key, changes))
    }

    /// Archives a record and returns the change.
    pub fn archive(&mut self, local_wall_ms: u64, record: &RecordKey) -> Change {
        let stamp = self.next_stamp(local_wall_ms);
        let change = archive(record, self.state.record(record), stamp);
        self.record_locally(change)
    }

    /// Restores a record and returns the change.
    pub fn restore(&mut self, local_wall_ms: u64, record: &RecordKey) -> Change {
        let stamp = self.next_stamp(local_wall_ms);
        let change = restore(record, self.state.record(record), stamp);
        self.record_locally(change)
    }

    /// Takes in a change made elsewhere.
    pub fn receive(&mut self, change: Change, local_wall_ms: u64) -> Outcome {
        self.clock.observe(change.stamp.hlc, local_wall_ms);
        self.state.apply(change)
    }

    /// After a sync told us the server's time: corrects the clock and
    /// re-stamps what never left the device and is from the future.
    pub fn correct_clock(&mut self, server_wall_ms: u64, local_wall_ms: u64) -> Vec<Change> {
        self.clock.correct_to_server(server_wall_ms, local_wall_ms);
        let restamped = self.outbox.restamp_future(&mut self.clock, local_wall_ms);
        for change in &restamped {
            self.state.apply(change.clone());
        }
        restamped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{RecordKey, RecordKind};

    fn outbox_of(count: u64) -> Outbox {
        let mut replica = Replica::new(DeviceId::from_u128(1));
        let record = RecordKey::new(RecordKind::Household, uuid::Uuid::from_u128(1));
        for n in 0..count {
            replica.set(1_000 + n, &record, "notes", Value::from(n));
        }
        replica.outbox
    }

    #[test]
    fn an_acknowledgement_drops_what_is_held_and_sets_aside_what_was_held_back() {
        let mut outbox = outbox_of(5);
        let set_aside = outbox.acknowledge_holding_back(3, &[2, 3, 4]);
        let aside: Vec<u64> = set_aside.iter().map(|entry| entry.sequence).collect();
        assert_eq!(aside, [2, 3], "4 is beyond what the answer covers");
        let pending: Vec<u64> = outbox
            .pending()
            .iter()
            .map(|entry| entry.sequence)
            .collect();
        assert_eq!(pending, [4, 5]);
    }

    #[test]
    fn a_restored_outbox_moves_past_what_the_server_holds_and_no_further() {
        assert_eq!(renumbering(1, 5), Some(5));
        assert_eq!(renumbering(5, 5), Some(1));
        assert_eq!(renumbering(6, 5), None);
        let mut outbox = outbox_of(3);
        assert_eq!(outbox.renumber_after(7), 3);
        let pending: Vec<u64> = outbox
            .pending()
            .iter()
            .map(|entry| entry.sequence)
            .collect();
        assert_eq!(pending, [8, 9, 10]);
        assert_eq!(outbox.push(outbox.pending()[0].change.clone()), 11);
        assert_eq!(outbox.renumber_after(2), 0);
    }
}
