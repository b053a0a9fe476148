//! Changes: one field of one record set to one value, stamped and linked to
//! what the editor had seen.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;
use smol_str::SmolStr;
use uuid::Uuid;

use crate::clock::{DeviceId, Stamp};

/// The id of a record (household, member, visit…): a UUIDv7 made on the device
/// that created it, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub Uuid);

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", self.0)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What a record is. Kinds this version does not know (from a newer device)
/// are kept under their name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// A household (ครัวเรือน).
    Household,
    /// A person in a household.
    Member,
    /// A survey visit with its BMN answers.
    Visit,
    /// Help given to a household.
    Assistance,
    /// An official who is paired with households.
    Official,
    /// One official ↔ household pairing.
    Pairing,
    /// A kind introduced by a newer version of faenban.
    Other(SmolStr),
}

impl RecordKind {
    /// The kinds this version knows.
    pub const KNOWN: [RecordKind; 6] = [
        RecordKind::Household,
        RecordKind::Member,
        RecordKind::Visit,
        RecordKind::Assistance,
        RecordKind::Official,
        RecordKind::Pairing,
    ];

    /// The name used on the wire and in storage.
    pub fn as_str(&self) -> &str {
        match self {
            RecordKind::Household => "household",
            RecordKind::Member => "member",
            RecordKind::Visit => "visit",
            RecordKind::Assistance => "assistance",
            RecordKind::Official => "official",
            RecordKind::Pairing => "pairing",
            RecordKind::Other(name) => name,
        }
    }

    /// The kind with this name; unknown names are kept as [`RecordKind::Other`].
    pub fn from_name(name: &str) -> RecordKind {
        RecordKind::KNOWN
            .iter()
            .find(|kind| kind.as_str() == name)
            .cloned()
            .unwrap_or_else(|| RecordKind::Other(SmolStr::new(name)))
    }
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RecordKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RecordKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(RecordKind::from_name(&name))
    }
}

/// A record's full address: records of different kinds never share state,
/// even if a buggy device reused an id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    /// What the record is.
    pub kind: RecordKind,
    /// Which one.
    pub id: RecordId,
}

impl RecordKey {
    /// A key from its parts.
    pub fn new(kind: RecordKind, id: Uuid) -> RecordKey {
        RecordKey {
            kind,
            id: RecordId(id),
        }
    }
}

/// The name of a field. Short names are stored inline, without allocation.
pub type FieldName = SmolStr;

/// A short list of stamps: most changes supersede one value, and keeping one
/// or two inline saves an allocation per change.
pub type Stamps = SmallVec<[Stamp; 2]>;

/// The lifecycle field every record has: `true` once archived (soft-deleted),
/// `false` after a restore.
pub const ARCHIVED_FIELD: &str = "archived";

/// One field of one record set to one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The change's identity and order.
    pub stamp: Stamp,
    /// The record it belongs to.
    pub record: RecordKey,
    /// The field it sets.
    pub field: FieldName,
    /// The new value. Fields this version does not know keep their value as is.
    pub value: serde_json::Value,
    /// The values of this field the editor had seen and replaces (empty for a
    /// first value). A change that supersedes every value shown fast-forwards;
    /// a change that supersedes several resolves a conflict.
    #[serde(default, skip_serializing_if = "SmallVec::is_empty")]
    pub supersedes: Stamps,
    /// For an archive: the values of the record's other fields the archiving
    /// person had seen. An edit not in this list was made concurrently and
    /// wins over the archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<Stamp>,
    /// Stamps this same change carried before it was re-stamped (by its own
    /// device before anyone saw it, or once by the server because its clock
    /// was in the future). Kept for the record; a copy under an earlier stamp
    /// gives way to this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_stamps: Vec<Stamp>,
}

impl Change {
    /// A change that allocates nothing, to leave behind when a change is
    /// moved out of a batch.
    pub(crate) fn placeholder() -> Change {
        Change {
            stamp: Stamp::new(crate::clock::Hlc::default(), DeviceId::from_u128(0)),
            record: RecordKey {
                kind: RecordKind::Household,
                id: RecordId(Uuid::nil()),
            },
            field: FieldName::default(),
            value: serde_json::Value::Null,
            supersedes: Stamps::new(),
            observed: Vec::new(),
            previous_stamps: Vec::new(),
        }
    }

    /// True for changes to the archive/restore lifecycle field.
    pub fn is_lifecycle(&self) -> bool {
        self.field == ARCHIVED_FIELD
    }

    /// The device whose person made the change, even after the server
    /// re-stamped it.
    pub fn author(&self) -> DeviceId {
        self.previous_stamps
            .first()
            .map_or(self.stamp.device, |first| first.device)
    }

    /// True when the change was re-stamped at some point.
    pub fn was_restamped(&self) -> bool {
        !self.previous_stamps.is_empty()
    }

    /// The same change under a new stamp, remembering the old one.
    pub fn restamped(mut self, new_stamp: Stamp) -> Change {
        self.previous_stamps.push(self.stamp);
        self.stamp = new_stamp;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_record_kinds_survive_a_round_trip() {
        let kind: RecordKind = serde_json::from_str("\"garden_plot\"").unwrap();
        assert_eq!(kind, RecordKind::Other(SmolStr::new("garden_plot")));
        assert_eq!(serde_json::to_string(&kind).unwrap(), "\"garden_plot\"");
        let known: RecordKind = serde_json::from_str("\"household\"").unwrap();
        assert_eq!(known, RecordKind::Household);
    }
}
