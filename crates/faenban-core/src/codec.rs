//! The compact stored form of a change's body and of a record's merged
//! state, which laptops and servers keep in place of JSON.
//!
//! Integers are LEB128 varints; a stamp is its clock reading (the wall
//! time as a zigzag difference from the stamp before it in the blob; a
//! change body's first from the change's own stamp) and the index of its
//! device in a small table at the head of the blob,
//! so that a device id is written once per blob however many stamps name
//! it; a value is a tag byte and its payload: nothing for null and the
//! booleans, the bytes of a text, the 16 bytes of a text that is a record
//! id, a zigzag varint for an integer, the 8 bytes of a number with a
//! fraction (exactly as it was), and JSON text for anything else (lists,
//! objects, integers past 64 bits). A change body leaves out what its row
//! keeps in columns (stamp, record, field); a state names a record field
//! the model knows by a number, and any other by the bytes it shares with
//! the name before and the rest.
//! Every blob starts with a form byte, so that a later form can be told
//! apart: form 1, which started each list of stamps from zero and wrote
//! names whole, is still read.
//!
//! Decoding trusts nothing: a blob that is cut short, names a device it
//! does not hold, or carries more than it says is refused as
//! [`CodecError`].

use serde_json::Value;
use smallvec::SmallVec;
use uuid::Uuid;

use crate::change::{Change, FieldName, RecordKey};
use crate::clock::{DeviceId, Hlc, Stamp};
use crate::merge::{Entry, FieldState, RecordState};

/// The form byte of the blobs this version writes: every stamp's wall time
/// is a difference from the stamp before it in the whole blob (a change
/// body's first from the change's own stamp), and a state's field names
/// share their beginning with the name before.
const FORM: u8 = 2;

/// Field names a state names by their place in this list (1 for the
/// first): the records' fields (`crate::model`). Stored blobs refer to
/// these places, so the list only ever grows at its end.
const KNOWN_FIELDS: &[&str] = &[
    "archived",
    // Households.
    "house_code",
    "village",
    "address",
    "location",
    "head",
    "status",
    "entry",
    "classification",
    "livelihood",
    "welfare_card",
    "notes",
    // Members.
    "household",
    "national_id",
    "title",
    "first_name",
    "last_name",
    "sex",
    "birth_date",
    "relation",
    "education",
    "occupation",
    "income_per_year",
    "disability",
    "chronic_illness",
    // Visits.
    "date",
    "surveyor",
    "edition",
    "members",
    "in_progress",
    // Assistance.
    "dimension",
    "item",
    "agency",
    "sector",
    "amount",
    "stage",
    "outcome",
    // Officials and pairings.
    "name",
    "position",
    "official",
];

/// The first form: each list of stamps, and each field's first stamp,
/// started again from zero, and field names were written whole. Still read.
const FIRST_FORM: u8 = 1;

/// The first byte of a stored value: what its payload is.
mod value_tag {
    pub(super) const NULL: u8 = 0;
    pub(super) const FALSE: u8 = 1;
    pub(super) const TRUE: u8 = 2;
    pub(super) const TEXT: u8 = 3;
    pub(super) const ID: u8 = 4;
    pub(super) const INTEGER: u8 = 5;
    pub(super) const JSON: u8 = 6;
    pub(super) const FLOAT: u8 = 7;
}

/// The id a text spells in the one form ids are written in (lowercase,
/// hyphenated), which reads back as the same text.
fn canonical_id(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    let id = Uuid::parse_str(text).ok()?;
    (id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text).then_some(id)
}

/// A stored blob that is not one this version can read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a stored {what} cannot be read: {why}")]
pub struct CodecError {
    what: &'static str,
    why: &'static str,
}

/// Writes a blob: its device table is gathered first, then the stamps
/// refer to it.
struct Writer {
    devices: Vec<DeviceId>,
    out: Vec<u8>,
    /// The device index 0 stands for without being written (a change
    /// body's own device, kept in its row).
    implicit: Option<DeviceId>,
    /// The wall time of the stamp written last.
    wall: u64,
}

impl Writer {
    fn new(implicit: Option<DeviceId>, wall: u64) -> Writer {
        Writer {
            devices: Vec::new(),
            out: Vec::with_capacity(64),
            implicit,
            wall,
        }
    }

    /// A field name: its place in [`KNOWN_FIELDS`], or 0 and the bytes it
    /// shares with the name before and the rest.
    fn name(&mut self, name: &str, before: &str) {
        if let Some(place) = KNOWN_FIELDS.iter().position(|known| *known == name) {
            self.varint(place as u64 + 1);
            return;
        }
        self.varint(0);
        if name.len() > crate::limits::MAX_FIELD_NAME_BYTES {
            // Written whole: a reader copies a shared beginning only for
            // names as short as the limit ([`Reader::name`]).
            self.varint(0);
            self.bytes(name.as_bytes());
            return;
        }
        let shared = name
            .char_indices()
            .map(|(at, c)| at + c.len_utf8())
            .take_while(|&end| before.as_bytes().get(..end) == Some(&name.as_bytes()[..end]))
            .last()
            .unwrap_or(0);
        self.varint(shared as u64);
        self.bytes(&name.as_bytes()[shared..]);
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    fn device_index(&mut self, device: DeviceId) -> u64 {
        if self.implicit == Some(device) {
            return 0;
        }
        let position = match self.devices.iter().position(|known| *known == device) {
            Some(position) => position,
            None => {
                self.devices.push(device);
                self.devices.len() - 1
            }
        };
        position as u64 + 1
    }

    fn stamps<'a>(&mut self, stamps: impl ExactSizeIterator<Item = &'a Stamp>) {
        self.varint(stamps.len() as u64);
        for stamp in stamps {
            self.stamp(stamp);
        }
    }

    fn stamp(&mut self, stamp: &Stamp) {
        let delta = stamp.hlc.wall_ms.wrapping_sub(self.wall) as i64;
        self.varint(((delta << 1) ^ (delta >> 63)) as u64);
        self.wall = stamp.hlc.wall_ms;
        self.varint(u64::from(stamp.hlc.counter));
        let index = self.device_index(stamp.device);
        self.varint(index);
    }

    /// A value: its length, its tag, its payload.
    fn value(&mut self, value: &Value) {
        let tagged = |writer: &mut Writer, tag: u8, payload: &[u8]| {
            writer.varint(1 + payload.len() as u64);
            writer.out.push(tag);
            writer.out.extend_from_slice(payload);
        };
        match value {
            Value::Null => tagged(self, value_tag::NULL, &[]),
            Value::Bool(false) => tagged(self, value_tag::FALSE, &[]),
            Value::Bool(true) => tagged(self, value_tag::TRUE, &[]),
            Value::String(text) => match canonical_id(text) {
                Some(id) => tagged(self, value_tag::ID, id.as_bytes()),
                None => tagged(self, value_tag::TEXT, text.as_bytes()),
            },
            Value::Number(number) if number.is_i64() => {
                let integer = number.as_i64().unwrap_or_default();
                let mut zigzag = ((integer << 1) ^ (integer >> 63)) as u64;
                let (mut bytes, mut len) = ([0u8; 10], 0);
                while zigzag >= 0x80 {
                    bytes[len] = (zigzag as u8) | 0x80;
                    zigzag >>= 7;
                    len += 1;
                }
                bytes[len] = zigzag as u8;
                tagged(self, value_tag::INTEGER, &bytes[..=len]);
            }
            Value::Number(number) if number.is_f64() => {
                let float = number.as_f64().unwrap_or_default();
                tagged(self, value_tag::FLOAT, &float.to_le_bytes());
            }
            other => {
                // Serializing a `Value` cannot fail: its keys are strings.
                let json = serde_json::to_vec(other).unwrap_or_default();
                tagged(self, value_tag::JSON, &json);
            }
        }
    }

    /// The form byte, the device table, then what was written.
    fn finish(self) -> Vec<u8> {
        let mut head = Writer::new(None, 0);
        head.out.push(FORM);
        head.varint(self.devices.len() as u64);
        for device in &self.devices {
            head.out.extend_from_slice(device.0.as_bytes());
        }
        head.out.extend_from_slice(&self.out);
        head.out
    }
}

struct Reader<'a> {
    what: &'static str,
    input: &'a [u8],
    devices: Vec<DeviceId>,
    implicit: Option<DeviceId>,
    form: u8,
    /// The wall time of the stamp read last ([`FORM`]).
    wall: u64,
}

impl<'a> Reader<'a> {
    fn new(
        what: &'static str,
        input: &'a [u8],
        implicit: Option<DeviceId>,
        wall: u64,
    ) -> Result<Self, CodecError> {
        let mut reader = Reader {
            what,
            input,
            devices: Vec::new(),
            implicit,
            form: FORM,
            wall,
        };
        reader.form = reader.byte()?;
        if reader.form != FORM && reader.form != FIRST_FORM {
            return Err(reader.fail("an unknown form"));
        }
        let count = reader.count(16)?;
        for _ in 0..count {
            let bytes = reader.take(16)?;
            let id = Uuid::from_slice(bytes).map_err(|_| reader.fail("a device id"))?;
            reader.devices.push(DeviceId(id));
        }
        Ok(reader)
    }

    fn fail(&self, why: &'static str) -> CodecError {
        CodecError {
            what: self.what,
            why,
        }
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let (&first, rest) = self.input.split_first().ok_or(self.fail("cut short"))?;
        self.input = rest;
        Ok(first)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        if self.input.len() < len {
            return Err(self.fail("cut short"));
        }
        let (taken, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(taken)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fail("an integer too long"))
    }

    /// A count of items each at least `min_bytes` long: never more than the
    /// bytes left could hold, so a forged count allocates nothing.
    fn count(&mut self, min_bytes: usize) -> Result<usize, CodecError> {
        let count = self.varint()?;
        if count > (self.input.len() / min_bytes.max(1)) as u64 {
            return Err(self.fail("a count larger than its bytes"));
        }
        Ok(count as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.fail("a length too large"))?;
        self.take(len)
    }

    fn text(&mut self) -> Result<&'a str, CodecError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.fail("text that is not UTF-8"))
    }

    /// A field name: written whole in the first form, else as its place
    /// in [`KNOWN_FIELDS`] or as the bytes it shares with `before` and the
    /// rest.
    fn name(&mut self, before: &str) -> Result<String, CodecError> {
        if self.form == FIRST_FORM {
            return Ok(self.text()?.to_owned());
        }
        let place = self.varint()?;
        if place > 0 {
            return usize::try_from(place - 1)
                .ok()
                .and_then(|at| KNOWN_FIELDS.get(at))
                .map(|known| (*known).to_owned())
                .ok_or(self.fail("a field name it does not know"));
        }
        let shared = usize::try_from(self.varint()?).map_err(|_| self.fail("a name too long"))?;
        let start = before
            .get(..shared)
            .ok_or(self.fail("a name sharing more than the name before"))?;
        let rest = self.text()?;
        // Only a name of at most MAX_FIELD_NAME_BYTES shares a beginning
        // (`Writer::name`): a blob cannot make its reader copy a long name
        // again for every few bytes it holds.
        if shared > 0 && shared + rest.len() > crate::limits::MAX_FIELD_NAME_BYTES {
            return Err(self.fail("a long name sharing the name before"));
        }
        Ok(format!("{start}{rest}"))
    }

    /// Where the next list of stamps, or a field's first stamp, starts
    /// from: zero in the first form, else the stamp read last.
    fn restart(&mut self) {
        if self.form == FIRST_FORM {
            self.wall = 0;
        }
    }

    fn stamp(&mut self) -> Result<Stamp, CodecError> {
        let zigzag = self.varint()?;
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        let wall_ms = self.wall.wrapping_add(delta as u64);
        self.wall = wall_ms;
        let counter =
            u32::try_from(self.varint()?).map_err(|_| self.fail("a counter too large"))?;
        let device = match self.varint()? {
            0 => self
                .implicit
                .ok_or(self.fail("a device it does not name"))?,
            index => *self
                .devices
                .get(index as usize - 1)
                .ok_or(self.fail("a device it does not name"))?,
        };
        Ok(Stamp {
            hlc: Hlc { wall_ms, counter },
            device,
        })
    }

    fn stamps<C: FromIterator<Stamp>>(&mut self) -> Result<C, CodecError> {
        let count = self.count(3)?;
        self.restart();
        (0..count).map(|_| self.stamp()).collect()
    }

    fn value(&mut self) -> Result<Value, CodecError> {
        let bytes = self.bytes()?;
        let (&tag, payload) = bytes
            .split_first()
            .ok_or(self.fail("a value without its tag"))?;
        let bare = |value: Value| {
            if payload.is_empty() {
                Ok(value)
            } else {
                Err(self.fail("a value with bytes past its end"))
            }
        };
        match tag {
            value_tag::NULL => bare(Value::Null),
            value_tag::FALSE => bare(Value::Bool(false)),
            value_tag::TRUE => bare(Value::Bool(true)),
            value_tag::TEXT => std::str::from_utf8(payload)
                .map(|text| Value::String(text.to_owned()))
                .map_err(|_| self.fail("text that is not UTF-8")),
            value_tag::ID => <[u8; 16]>::try_from(payload)
                .map(|bytes| Value::String(Uuid::from_bytes(bytes).hyphenated().to_string()))
                .map_err(|_| self.fail("an id that is not 16 bytes")),
            value_tag::INTEGER => {
                let mut integer = Reader {
                    what: self.what,
                    input: payload,
                    devices: Vec::new(),
                    implicit: None,
                    form: FORM,
                    wall: 0,
                };
                let zigzag = integer.varint()?;
                integer.end()?;
                Ok(Value::from(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)))
            }
            value_tag::FLOAT => <[u8; 8]>::try_from(payload)
                .ok()
                .and_then(|bytes| serde_json::Number::from_f64(f64::from_le_bytes(bytes)))
                .map(Value::Number)
                .ok_or(self.fail("a number that is not 8 bytes of a finite float")),
            value_tag::JSON => {
                serde_json::from_slice(payload).map_err(|_| self.fail("a value that is not JSON"))
            }
            _ => Err(self.fail("a value of a form this version does not know")),
        }
    }

    fn end(self) -> Result<(), CodecError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(self.fail("bytes past its end"))
        }
    }
}

/// A change's body: what its row does not keep in columns.
pub fn encode_change_body(change: &Change) -> Vec<u8> {
    let mut writer = Writer::new(Some(change.stamp.device), change.stamp.hlc.wall_ms);
    writer.stamps(change.supersedes.iter());
    writer.stamps(change.observed.iter());
    writer.stamps(change.previous_stamps.iter());
    writer.value(&change.value);
    writer.finish()
}

/// The change a row holds: its columns and its body.
pub fn decode_change(
    stamp: Stamp,
    record: RecordKey,
    field: FieldName,
    body: &[u8],
) -> Result<Change, CodecError> {
    let mut reader = Reader::new("change", body, Some(stamp.device), stamp.hlc.wall_ms)?;
    let supersedes: SmallVec<[Stamp; 2]> = reader.stamps()?;
    let observed: Vec<Stamp> = reader.stamps()?;
    let previous_stamps: Vec<Stamp> = reader.stamps()?;
    let value = reader.value()?;
    reader.end()?;
    Ok(Change {
        stamp,
        record,
        field,
        value,
        supersedes,
        observed,
        previous_stamps,
    })
}

/// A fingerprint of everything a change says but its stamp: its record,
/// field, value and the stamps it carries (64-bit FNV-1a; stable across
/// versions and machines). A server keeps it per outbox sequence, so that a
/// different change sent under a held sequence and stamp (a laptop restored
/// from a backup whose clock gave the same readings again) is told from the
/// same change sent again. It is computed for every change a push sends
/// again, so it allocates nothing.
pub fn fingerprint(change: &Change) -> u64 {
    let mut hash = Fnv::new();
    hash.part(change.record.kind.as_str().as_bytes());
    hash.part(change.record.id.0.as_bytes());
    hash.part(change.field.as_bytes());
    for stamps in [
        &change.supersedes[..],
        &change.observed,
        &change.previous_stamps,
    ] {
        hash.part(&(stamps.len() as u64).to_le_bytes());
        for stamp in stamps {
            hash.write_bytes(&stamp.hlc.wall_ms.to_le_bytes());
            hash.write_bytes(&stamp.hlc.counter.to_le_bytes());
            hash.write_bytes(stamp.device.0.as_bytes());
        }
    }
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut hash, &change.value);
    hash.0
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Fnv::PRIME);
        }
    }

    /// Bytes and then a separator, so that no two splits of the same bytes
    /// agree.
    fn part(&mut self, bytes: &[u8]) {
        self.write_bytes(bytes);
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(Fnv::PRIME);
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_bytes(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A record's merged state.
pub fn encode_state(state: &RecordState) -> Vec<u8> {
    let mut writer = Writer::new(None, 0);
    writer.varint(state.fields.len() as u64);
    let mut before = "";
    for (name, field) in &state.fields {
        writer.name(name.as_str(), before);
        before = name.as_str();
        writer.varint(field.live.len() as u64);
        for entry in &field.live {
            writer.stamp(&entry.stamp);
            writer.stamps(entry.previous_stamps.iter());
            writer.value(&entry.value);
        }
        writer.stamps(field.superseded.iter());
        writer.stamps(field.replaced.iter());
    }
    writer.stamps(state.observed_by_archives.iter());
    writer.finish()
}

/// A record's merged state, as [`encode_state`] wrote it.
pub fn decode_state(blob: &[u8]) -> Result<RecordState, CodecError> {
    let mut reader = Reader::new("record state", blob, None, 0)?;
    let count = reader.count(4)?;
    let mut fields: Vec<(FieldName, FieldState)> = Vec::with_capacity(count);
    for _ in 0..count {
        let before = fields.last().map_or("", |(name, _)| name.as_str());
        let name = FieldName::from(reader.name(before)?.as_str());
        let live_count = reader.count(5)?;
        let mut live = SmallVec::with_capacity(live_count);
        for _ in 0..live_count {
            reader.restart();
            let stamp = reader.stamp()?;
            let previous_stamps = reader.stamps()?;
            let value = reader.value()?;
            live.push(Entry {
                stamp,
                value,
                previous_stamps,
            });
        }
        let superseded = reader.stamps()?;
        let replaced = reader.stamps()?;
        fields.push((
            name,
            FieldState {
                live,
                superseded,
                replaced,
            },
        ));
    }
    let observed_by_archives = reader.stamps()?;
    reader.end()?;
    Ok(RecordState {
        fields,
        observed_by_archives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::RecordKind;
    use serde_json::json;

    fn stamp(wall_ms: u64, counter: u32, device: u128) -> Stamp {
        Stamp::new(Hlc { wall_ms, counter }, DeviceId::from_u128(device))
    }

    #[test]
    fn a_change_body_reads_back_as_its_change_and_is_small() {
        let change = Change {
            stamp: stamp(1_795_000_000_000, 3, 1),
            record: RecordKey::new(RecordKind::Household, Uuid::from_u128(7)),
            field: "address".into(),
            value: json!("12 หมู่ 1"),
            supersedes: [
                stamp(1_794_000_000_000, 0, 2),
                stamp(1_794_999_000_000, 1, 1),
            ]
            .into_iter()
            .collect(),
            observed: vec![],
            previous_stamps: vec![stamp(1_800_000_000_000, 0, 1)],
        };
        let body = encode_change_body(&change);
        let json = serde_json::to_vec(&change).unwrap();
        assert!(
            body.len() * 4 < json.len(),
            "{} vs {}",
            body.len(),
            json.len()
        );
        let read = decode_change(
            change.stamp,
            change.record.clone(),
            change.field.clone(),
            &body,
        );
        assert_eq!(read.unwrap(), change);
    }

    #[test]
    fn a_fingerprint_tells_changes_apart_by_what_they_say_not_by_their_stamp() {
        let change = Change {
            stamp: stamp(5, 0, 1),
            record: RecordKey::new(RecordKind::Household, Uuid::from_u128(8)),
            field: "address".into(),
            value: json!("1 หมู่ 1"),
            supersedes: Default::default(),
            observed: vec![],
            previous_stamps: vec![],
        };
        let mut restamped = change.clone();
        restamped.stamp = stamp(6, 0, 1);
        assert_eq!(fingerprint(&change), fingerprint(&restamped));
        let mut other = change.clone();
        other.value = json!("2 หมู่ 1");
        assert_ne!(fingerprint(&change), fingerprint(&other));
        let mut moved = change.clone();
        moved.record = RecordKey::new(RecordKind::Household, Uuid::from_u128(9));
        assert_ne!(fingerprint(&change), fingerprint(&moved));
        let mut superseding = change.clone();
        superseding.supersedes = [stamp(4, 0, 2)].into_iter().collect();
        assert_ne!(fingerprint(&change), fingerprint(&superseding));
        // Stable across runs and machines: servers keep it.
        assert_eq!(fingerprint(&change), 0xa806_3705_317e_f9f6);
    }

    #[test]
    fn a_blob_cut_short_or_padded_or_of_another_form_is_refused() {
        let change = Change {
            stamp: stamp(5, 0, 1),
            record: RecordKey::new(RecordKind::Member, Uuid::from_u128(8)),
            field: "first_name".into(),
            value: json!("ก"),
            supersedes: [stamp(4, 0, 9)].into_iter().collect(),
            observed: vec![],
            previous_stamps: vec![],
        };
        let body = encode_change_body(&change);
        let read = |bytes: &[u8]| {
            decode_change(
                change.stamp,
                change.record.clone(),
                change.field.clone(),
                bytes,
            )
        };
        for cut in 0..body.len() {
            assert!(read(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = body.clone();
        padded.push(0);
        assert!(read(&padded).is_err());
        let mut other = body.clone();
        other[0] = FORM + 1;
        assert!(read(&other).is_err());
        assert!(decode_state(&[FORM, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        // A name that shares more than the name before it had.
        let state = decode_state(&encode_state(&member_state())).unwrap();
        let mut forged = Writer::new(None, 0);
        forged.varint(1);
        forged.varint(0);
        forged.varint(3);
        forged.bytes(b"x");
        assert!(decode_state(&forged.finish()).is_err());
        // A long name that says it shares the one before: refused, so that
        // a small blob cannot ask for the same long name again and again.
        let long = "x".repeat(crate::limits::MAX_FIELD_NAME_BYTES);
        let mut forged = Writer::new(None, 0);
        forged.varint(2);
        for (shared, rest) in [
            (0, long.as_str()),
            (crate::limits::MAX_FIELD_NAME_BYTES, "y"),
        ] {
            forged.varint(0);
            forged.varint(shared as u64);
            forged.bytes(rest.as_bytes());
            forged.varint(0);
            forged.varint(0);
            forged.varint(0);
        }
        forged.varint(0);
        assert!(decode_state(&forged.finish()).is_err());
        // Such names as the store holds them are written whole, and read.
        let key = RecordKey::new(RecordKind::Member, Uuid::from_u128(9));
        let mut long_names = RecordState::default();
        for (wall, suffix) in [(7, "a"), (8, "b")] {
            long_names.apply(crate::replica::set_field(
                &key,
                None,
                &format!("{long}{long}{suffix}"),
                json!(1),
                stamp(wall, 0, 1),
            ));
        }
        assert_eq!(
            decode_state(&encode_state(&long_names)).unwrap(),
            long_names
        );
        // A known name past the end of the list.
        let mut forged = Writer::new(None, 0);
        forged.varint(1);
        forged.varint(KNOWN_FIELDS.len() as u64 + 1);
        assert!(decode_state(&forged.finish()).is_err());
        assert_eq!(state, member_state());
    }

    #[test]
    fn each_known_field_name_has_one_place() {
        let mut names = KNOWN_FIELDS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KNOWN_FIELDS.len());
        assert_eq!(KNOWN_FIELDS[0], crate::change::ARCHIVED_FIELD);
    }

    /// A member's state as a laptop records it: two devices, one conflict.
    fn member_state() -> RecordState {
        let key = RecordKey::new(RecordKind::Member, Uuid::from_u128(8));
        let mut state = RecordState::default();
        let mut wall = 1_795_000_000_000;
        for (field, value) in [
            ("birth_date", json!("1980-01-02")),
            ("first_name", json!("สมหญิง")),
            ("household", json!(Uuid::from_u128(1).to_string())),
            ("income_per_year", json!(48_000)),
            ("last_name", json!("ใจดี")),
            ("national_id", json!("1999900000001")),
        ] {
            wall += 1_000;
            state.apply(crate::replica::set_field(
                &key,
                Some(&state),
                field,
                value,
                stamp(wall, 0, 1),
            ));
        }
        let current = state.clone();
        state.apply(crate::replica::set_field(
            &key,
            Some(&current),
            "first_name",
            json!("สมศรี"),
            stamp(wall + 5, 0, 2),
        ));
        state.apply(crate::replica::set_field(
            &key,
            Some(&current),
            "first_name",
            json!("สมใจ"),
            stamp(wall + 7, 0, 1),
        ));
        state
    }

    /// The first form of a state: every list and field's first stamp from
    /// zero, names whole.
    fn first_form_state(state: &RecordState) -> Vec<u8> {
        let mut writer = Writer::new(None, 0);
        let stamps = |writer: &mut Writer, stamps: &[Stamp]| {
            writer.wall = 0;
            writer.stamps(stamps.iter());
        };
        writer.varint(state.fields.len() as u64);
        for (name, field) in &state.fields {
            writer.bytes(name.as_bytes());
            writer.varint(field.live.len() as u64);
            for entry in &field.live {
                writer.wall = 0;
                writer.stamp(&entry.stamp);
                stamps(&mut writer, &entry.previous_stamps);
                writer.value(&entry.value);
            }
            stamps(&mut writer, &field.superseded[..]);
            stamps(&mut writer, &field.replaced[..]);
        }
        stamps(&mut writer, &state.observed_by_archives[..]);
        let mut blob = writer.finish();
        blob[0] = FIRST_FORM;
        blob
    }

    #[test]
    fn states_and_bodies_of_the_first_form_still_read_and_the_new_form_is_smaller() {
        let state = member_state();
        assert!(state.has_conflict());
        let first = first_form_state(&state);
        assert_eq!(decode_state(&first).unwrap(), state);
        let now = encode_state(&state);
        assert!(
            now.len() + 60 < first.len(),
            "{} vs {}",
            now.len(),
            first.len()
        );

        let change = Change {
            stamp: stamp(1_795_000_000_000, 3, 1),
            record: RecordKey::new(RecordKind::Household, Uuid::from_u128(7)),
            field: "address".into(),
            value: json!("12 หมู่ 1"),
            supersedes: [stamp(1_794_999_999_000, 0, 2)].into_iter().collect(),
            observed: vec![stamp(1_794_999_990_000, 0, 1)],
            previous_stamps: vec![],
        };
        let mut writer = Writer::new(Some(change.stamp.device), 0);
        for list in [
            &change.supersedes[..],
            &change.observed[..],
            &change.previous_stamps[..],
        ] {
            writer.wall = 0;
            writer.stamps(list.iter());
        }
        writer.value(&change.value);
        let mut first = writer.finish();
        first[0] = FIRST_FORM;
        let read = |body: &[u8]| {
            decode_change(
                change.stamp,
                change.record.clone(),
                change.field.clone(),
                body,
            )
        };
        assert_eq!(read(&first).unwrap(), change);
        let now = encode_change_body(&change);
        assert_eq!(read(&now).unwrap(), change);
        assert!(
            now.len() + 6 < first.len(),
            "{} vs {}",
            now.len(),
            first.len()
        );
    }
}
