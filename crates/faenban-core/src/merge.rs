//! The conflict-free merge: per-field multi-value registers, archive rules,
//! conflicts, and the join of two states.
//!
//! The state of a field is a pure function of the *set* of changes known for
//! it, so any order, grouping or duplication of delivery gives the same state.
//! Concretely a field keeps:
//!
//! * its **live** values: every change not known to be replaced, sorted by
//!   stamp (the highest is the one shown), and
//! * the stamps some known change **superseded**, and the stamps some
//!   re-stamped change used to carry (**replaced**).
//!
//! A change `x` is dead when its stamp is superseded or replaced, or when an
//! earlier stamp of the same change was superseded. Everything else is live.
//! Two live values that differ are a conflict; a change that supersedes them
//! both resolves it.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smallvec::SmallVec;

use crate::change::{Change, FieldName, RecordKey, ARCHIVED_FIELD};
use crate::clock::Stamp;

/// One value of a field that no known change has replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The stamp of the change that wrote it.
    pub stamp: Stamp,
    /// The value written.
    pub value: Value,
    /// Stamps the change carried before it was re-stamped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_stamps: Vec<Stamp>,
}

impl Entry {
    /// The device whose person wrote the value.
    pub fn author(&self) -> crate::DeviceId {
        self.previous_stamps
            .first()
            .map_or(self.stamp.device, |first| first.device)
    }
}

/// What applying one change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The change's value is now live (shown, or kept beside a concurrent one).
    Live,
    /// The change was new but is already superseded or replaced; only its
    /// links were taken in.
    Dead,
    /// The change was already live here; nothing changed.
    Duplicate,
}

/// The merged state of one field of one record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldState {
    // One live value is the common case; keep it inline.
    pub(crate) live: SmallVec<[Entry; 1]>,
    /// Stamps some known change superseded, sorted.
    pub(crate) superseded: Vec<Stamp>,
    /// Stamps some known change carried before it was re-stamped, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) replaced: Vec<Stamp>,
}

impl FieldState {
    /// Every live value, lowest stamp first.
    pub fn live(&self) -> &[Entry] {
        &self.live
    }

    /// The value shown: the live value with the highest stamp.
    pub fn shown(&self) -> Option<&Entry> {
        self.live.last()
    }

    /// True when live values disagree: a person should choose.
    pub fn in_conflict(&self) -> bool {
        match self.live.split_first() {
            Some((first, rest)) => rest.iter().any(|entry| entry.value != first.value),
            None => false,
        }
    }

    /// The stamps an edit made now would supersede.
    pub fn live_stamps(&self) -> Vec<Stamp> {
        self.live.iter().map(|entry| entry.stamp).collect()
    }

    fn is_superseded(&self, stamp: &Stamp) -> bool {
        self.superseded.binary_search(stamp).is_ok()
    }

    fn is_dead(&self, stamp: &Stamp, previous_stamps: &[Stamp]) -> bool {
        self.is_superseded(stamp)
            || self.replaced.binary_search(stamp).is_ok()
            || previous_stamps.iter().any(|p| self.is_superseded(p))
    }

    fn apply(
        &mut self,
        stamp: Stamp,
        value: Value,
        supersedes: &[Stamp],
        previous_stamps: Vec<Stamp>,
    ) -> Outcome {
        for superseded in supersedes {
            insert_sorted(&mut self.superseded, *superseded);
            if !self.live.is_empty() {
                self.live.retain(|entry| {
                    entry.stamp != *superseded && !entry.previous_stamps.contains(superseded)
                });
            }
        }
        for previous in &previous_stamps {
            insert_sorted(&mut self.replaced, *previous);
            if !self.live.is_empty() {
                self.live.retain(|entry| entry.stamp != *previous);
            }
        }
        match self.live.binary_search_by(|entry| entry.stamp.cmp(&stamp)) {
            Ok(_) => Outcome::Duplicate,
            Err(_) if self.is_dead(&stamp, &previous_stamps) => Outcome::Dead,
            Err(index) => {
                self.live.insert(
                    index,
                    Entry {
                        stamp,
                        value,
                        previous_stamps,
                    },
                );
                Outcome::Live
            }
        }
    }

    fn join(&mut self, other: &FieldState) {
        for stamp in &other.superseded {
            insert_sorted(&mut self.superseded, *stamp);
        }
        for stamp in &other.replaced {
            insert_sorted(&mut self.replaced, *stamp);
        }
        for entry in &other.live {
            if let Err(index) = self
                .live
                .binary_search_by(|mine| mine.stamp.cmp(&entry.stamp))
            {
                self.live.insert(index, entry.clone());
            }
        }
        let mut live = std::mem::take(&mut self.live);
        live.retain(|entry| !self.is_dead(&entry.stamp, &entry.previous_stamps));
        self.live = live;
    }
}

/// A conflict a person should look at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conflict {
    /// Edits that did not see each other left different values in one field.
    /// The highest stamp is shown until someone chooses.
    Values {
        /// The record.
        record: RecordKey,
        /// The field.
        field: FieldName,
        /// Every value kept, lowest stamp first; the last is shown.
        candidates: Vec<Entry>,
    },
    /// Someone archived the record while someone else, unseen, edited it. The
    /// edit wins (the record stays active) until a person archives it again
    /// or confirms the restore.
    EditDuringArchive {
        /// The record.
        record: RecordKey,
        /// The archive changes in force.
        archives: Vec<Stamp>,
        /// The edits the archiving person had not seen, as (field, stamp).
        unseen_edits: Vec<(FieldName, Stamp)>,
    },
}

impl Conflict {
    /// The record the conflict is about.
    pub fn record(&self) -> &RecordKey {
        match self {
            Conflict::Values { record, .. } | Conflict::EditDuringArchive { record, .. } => record,
        }
    }
}

/// The merged state of one record: its fields, sorted by name, and what the
/// record's archive changes had seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordState {
    pub(crate) fields: Vec<(FieldName, FieldState)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) observed_by_archives: Vec<Stamp>,
}

impl RecordState {
    /// Takes one change to this record into its state.
    pub fn apply(&mut self, change: Change) -> Outcome {
        // Only an archive says what it had seen; the list means nothing on
        // any other change.
        if change.is_lifecycle() && change.value == Value::Bool(true) {
            for stamp in &change.observed {
                insert_sorted(&mut self.observed_by_archives, *stamp);
            }
        }
        let field = self.field_mut(change.field);
        field.apply(
            change.stamp,
            change.value,
            &change.supersedes,
            change.previous_stamps,
        )
    }

    /// Merges another replica's state of the same record into this one.
    pub fn join(&mut self, other: &RecordState) {
        for stamp in &other.observed_by_archives {
            insert_sorted(&mut self.observed_by_archives, *stamp);
        }
        for (name, other_field) in &other.fields {
            self.field_mut(name.clone()).join(other_field);
        }
    }

    fn field_mut(&mut self, name: FieldName) -> &mut FieldState {
        let index = match self.fields.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(index) => index,
            Err(index) => {
                self.fields.insert(index, (name, FieldState::default()));
                index
            }
        };
        &mut self.fields[index].1
    }

    /// The state of one field, if any change to it is known.
    pub fn field(&self, name: &str) -> Option<&FieldState> {
        self.fields
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|index| &self.fields[index].1)
    }

    /// Every field known, sorted by name, the lifecycle field included.
    pub fn fields(&self) -> impl Iterator<Item = (&FieldName, &FieldState)> {
        self.fields.iter().map(|(name, state)| (name, state))
    }

    /// The value shown for a field.
    pub fn shown(&self, name: &str) -> Option<&Value> {
        self.field(name)?.shown().map(|entry| &entry.value)
    }

    /// The stamps an edit of `name` made now would supersede.
    pub fn live_stamps(&self, name: &str) -> Vec<Stamp> {
        self.field(name)
            .map(FieldState::live_stamps)
            .unwrap_or_default()
    }

    /// The live values of every field but the lifecycle field: what an
    /// archive made now has seen.
    pub fn live_edit_stamps(&self) -> Vec<Stamp> {
        self.edit_fields()
            .flat_map(|(_, field)| field.live.iter().map(|entry| entry.stamp))
            .collect()
    }

    fn edit_fields(&self) -> impl Iterator<Item = (&FieldName, &FieldState)> {
        self.fields
            .iter()
            .filter(|(name, _)| name != ARCHIVED_FIELD)
            .map(|(name, state)| (name, state))
    }

    fn seen_by_an_archive(&self, entry: &Entry) -> bool {
        let seen = |stamp: &Stamp| self.observed_by_archives.binary_search(stamp).is_ok();
        seen(&entry.stamp) || entry.previous_stamps.iter().any(seen)
    }

    fn unseen_edits(&self) -> Vec<(FieldName, Stamp)> {
        self.edit_fields()
            .flat_map(|(name, field)| {
                field
                    .live
                    .iter()
                    .filter(|entry| !self.seen_by_an_archive(entry))
                    .map(move |entry| (name.clone(), entry.stamp))
            })
            .collect()
    }

    /// True when every live lifecycle value is an archive (a restore, even a
    /// concurrent one, wins).
    fn archive_in_force(&self) -> bool {
        match self.field(ARCHIVED_FIELD) {
            Some(field) if !field.live.is_empty() => field
                .live
                .iter()
                .all(|entry| entry.value == Value::Bool(true)),
            _ => false,
        }
    }

    /// True when the record counts as archived: an archive is in force and
    /// every live edit was seen by an archive. An edit made concurrently with
    /// the archive keeps the record active.
    pub fn is_archived(&self) -> bool {
        self.archive_in_force()
            && self
                .edit_fields()
                .all(|(_, field)| field.live.iter().all(|e| self.seen_by_an_archive(e)))
    }

    /// The conflicts on this record, in field order.
    pub fn conflicts(&self, key: &RecordKey) -> Vec<Conflict> {
        let mut conflicts: Vec<Conflict> = self
            .fields
            .iter()
            .filter(|(_, field)| field.in_conflict())
            .map(|(name, field)| Conflict::Values {
                record: key.clone(),
                field: name.clone(),
                candidates: field.live.to_vec(),
            })
            .collect();
        if self.archive_in_force() {
            let unseen_edits = self.unseen_edits();
            if !unseen_edits.is_empty() {
                conflicts.push(Conflict::EditDuringArchive {
                    record: key.clone(),
                    archives: self.live_stamps(ARCHIVED_FIELD),
                    unseen_edits,
                });
            }
        }
        conflicts
    }

    /// True when the record has at least one conflict.
    pub fn has_conflict(&self) -> bool {
        self.fields.iter().any(|(_, field)| field.in_conflict())
            || (self.archive_in_force() && !self.unseen_edits().is_empty())
    }

    /// The shown value of every field but the lifecycle one, as a JSON object.
    pub fn shown_values(&self) -> serde_json::Map<String, Value> {
        self.shown_fields()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect()
    }

    /// The shown value of every field but the lifecycle one, in name order,
    /// borrowed: what [`RecordState::shown_values`] copies.
    pub fn shown_fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.edit_fields()
            .filter_map(|(name, field)| Some((name.as_str(), &field.shown()?.value)))
    }
}

fn insert_sorted(stamps: &mut Vec<Stamp>, stamp: Stamp) {
    if let Err(index) = stamps.binary_search(&stamp) {
        stamps.insert(index, stamp);
    }
}

/// The merged state of many records, held in memory.
///
/// The same set of changes gives an equal `State` whatever the order,
/// grouping or duplication of their delivery; [`State::canonical_json`] gives
/// it byte for byte.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    records: FxHashMap<RecordKey, RecordState>,
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// Takes one change into the state.
    pub fn apply(&mut self, change: Change) -> Outcome {
        // Look up by reference first: cloning the key on every change costs
        // more than the second lookup for the rare new record.
        if let Some(record) = self.records.get_mut(&change.record) {
            return record.apply(change);
        }
        let record = self.records.entry(change.record.clone()).or_default();
        record.apply(change)
    }

    /// Takes many changes into the state.
    pub fn apply_all<I: IntoIterator<Item = Change>>(&mut self, changes: I) {
        for change in changes {
            self.apply(change);
        }
    }

    /// Takes a batch of changes into the state, grouped by record.
    ///
    /// The result is the same as applying them one by one in any order (the
    /// merge commutes); grouping makes each record's state hot in the cache
    /// while its changes are applied, which is most of the cost of a large
    /// batch.
    pub fn apply_batch(&mut self, mut changes: Vec<Change>) {
        let mut order: Vec<(u128, u32)> = changes
            .iter()
            .enumerate()
            .map(|(index, change)| (change.record.id.0.as_u128(), index as u32))
            .collect();
        order.sort_unstable();
        let mut start = 0;
        while start < order.len() {
            let first = order[start].1 as usize;
            let key = changes[first].record.clone();
            let record = self.records.entry(key).or_default();
            let mut end = start;
            while end < order.len() {
                let index = order[end].1 as usize;
                if order[end].0 != order[start].0 || changes[index].record != changes[first].record
                {
                    break;
                }
                end += 1;
            }
            for &(_, index) in &order[start..end] {
                record.apply(std::mem::replace(
                    &mut changes[index as usize],
                    Change::placeholder(),
                ));
            }
            start = end;
        }
    }

    /// Merges another state into this one, as if every change behind it had
    /// been applied here.
    pub fn join(&mut self, other: &State) {
        for (key, record) in &other.records {
            self.records.entry(key.clone()).or_default().join(record);
        }
    }

    /// One record's state.
    pub fn record(&self, key: &RecordKey) -> Option<&RecordState> {
        self.records.get(key)
    }

    /// How many records are known.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no change has been applied.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, in key order.
    pub fn records_sorted(&self) -> Vec<(&RecordKey, &RecordState)> {
        let mut records: Vec<_> = self.records.iter().collect();
        records.sort_unstable_by(|a, b| a.0.cmp(b.0));
        records
    }

    /// Every open conflict, in record order.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.records_sorted()
            .into_iter()
            .flat_map(|(key, record)| record.conflicts(key))
            .collect()
    }

    /// The whole state in a stable JSON form: equal states give equal bytes.
    pub fn canonical_json(&self) -> String {
        let records: Vec<_> = self.records_sorted();
        // Plain data with string keys always serializes.
        serde_json::to_string(&records).expect("state serializes to JSON")
    }
}
