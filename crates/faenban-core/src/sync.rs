//! The sync protocol's messages, the compact wire form of changes, and the
//! scope rules that decide who may see and change which records. Shared by
//! the CLI (client) and the server; `docs/sync-protocol.md` describes them.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalogue::Dimension;
use crate::change::{Change, FieldName, RecordKey, RecordKind, Stamps};
use crate::clock::{DeviceId, Hlc, Stamp};

/// The protocol version this build speaks. A request with another version is
/// refused with a reason, never half-understood.
pub const PROTOCOL_VERSION: u32 = 3;

/// How a device writes a run of its outbox for its signature. Both forms
/// hold the same things: a domain tag, the device, the first sequence, and
/// each change in its own form (not the wire form, so that a run re-encoded
/// on the way still verifies). A server verifies either; a device signs
/// in the form its server's hello names ([`HelloResponse::run_signing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunSigning {
    /// Form 2: each change as its JSON, after its length. Devices built
    /// before form 3 sign this, and a bundle's letters still do, since a
    /// bundle may reach a server of any age.
    Json,
    /// Form 3: each change's parts at fixed widths or after their lengths,
    /// only its value as JSON. About a third of form 2's bytes, so a
    /// push's signature costs a third of the hashing and none of the
    /// writing of whole changes as JSON.
    Compact,
}

impl RunSigning {
    /// The form a server of this build names at hello.
    pub const NEWEST: RunSigning = RunSigning::Compact;

    /// The number a hello answer gives the form.
    pub fn number(self) -> u32 {
        match self {
            RunSigning::Json => 2,
            RunSigning::Compact => 3,
        }
    }

    /// The newest form this build knows that a server naming `number`
    /// verifies: a server verifies every form up to the one it names.
    pub fn for_server(number: u32) -> RunSigning {
        if number >= RunSigning::Compact.number() {
            RunSigning::Compact
        } else {
            RunSigning::Json
        }
    }

    /// The message a device signs for the run of `device`'s outbox that
    /// starts at `first_sequence`.
    pub fn message(self, device: DeviceId, first_sequence: u64, changes: &[Change]) -> Vec<u8> {
        match self {
            RunSigning::Json => json_run_signing_message(device, first_sequence, changes),
            RunSigning::Compact => run_signing_message(device, first_sequence, changes),
        }
    }
}

/// The run signing form a hello answer from a server that does not name
/// one means: such a server verifies form 2 only.
fn json_run_signing() -> u32 {
    RunSigning::Json.number()
}

/// The compact signing message (form 3, `docs/sync-protocol.md`, "Signed
/// runs"): the tag `faenban outbox run v3\0`, the device (16 bytes), the
/// first sequence and the number of changes (8 bytes each, big-endian),
/// then for each change its stamp, record, field, value and earlier
/// stamps, every part at a fixed width or after its length, so that no two
/// runs give the same bytes.
pub fn run_signing_message(device: DeviceId, first_sequence: u64, changes: &[Change]) -> Vec<u8> {
    fn stamp(message: &mut Vec<u8>, stamp: &Stamp) {
        message.extend_from_slice(&stamp.hlc.wall_ms.to_be_bytes());
        message.extend_from_slice(&stamp.hlc.counter.to_be_bytes());
        message.extend_from_slice(stamp.device.0.as_bytes());
    }
    fn length(message: &mut Vec<u8>, length: usize) {
        // A change is far below 4 GiB (`limits`); a longer part could not
        // have been decoded from a request in the first place.
        message.extend_from_slice(&(length as u32).to_be_bytes());
    }
    fn stamps(message: &mut Vec<u8>, list: &[Stamp]) {
        length(message, list.len());
        for each in list {
            stamp(message, each);
        }
    }
    let mut message = Vec::with_capacity(48 + changes.len() * 128);
    message.extend_from_slice(b"faenban outbox run v3\0");
    message.extend_from_slice(device.0.as_bytes());
    message.extend_from_slice(&first_sequence.to_be_bytes());
    message.extend_from_slice(&(changes.len() as u64).to_be_bytes());
    for change in changes {
        stamp(&mut message, &change.stamp);
        let kind = change.record.kind.as_str().as_bytes();
        length(&mut message, kind.len());
        message.extend_from_slice(kind);
        message.extend_from_slice(change.record.id.0.as_bytes());
        length(&mut message, change.field.len());
        message.extend_from_slice(change.field.as_bytes());
        // The value's JSON is written in place and its length filled in
        // after, so it is held once.
        let length_at = message.len();
        message.extend_from_slice(&[0; 4]);
        // A `Value` always serializes.
        serde_json::to_writer(&mut message, &change.value).expect("a value serializes to JSON");
        let value_length = (message.len() - length_at - 4) as u32;
        message[length_at..length_at + 4].copy_from_slice(&value_length.to_be_bytes());
        stamps(&mut message, &change.supersedes);
        stamps(&mut message, &change.observed);
        stamps(&mut message, &change.previous_stamps);
    }
    message
}

/// The signing message of form 2 ([`RunSigning::Json`]): the tag, the
/// device, the first sequence, the count, then each change as JSON after
/// its length (8 bytes, big-endian).
pub fn json_run_signing_message(
    device: DeviceId,
    first_sequence: u64,
    changes: &[Change],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(64 + changes.len() * 256);
    message.extend_from_slice(b"faenban outbox run v2\0");
    message.extend_from_slice(device.0.as_bytes());
    message.extend_from_slice(&first_sequence.to_be_bytes());
    message.extend_from_slice(&(changes.len() as u64).to_be_bytes());
    for change in changes {
        // Each change's JSON follows its length; it is written in place and
        // its length filled in after, so no change is held twice.
        let length_at = message.len();
        message.extend_from_slice(&[0; 8]);
        // Plain data with string keys always serializes.
        serde_json::to_writer(&mut message, change).expect("a change serializes to JSON");
        let length = (message.len() - length_at - 8) as u64;
        message[length_at..length_at + 8].copy_from_slice(&length.to_be_bytes());
    }
    message
}

/// What a device signs at hello to prove it holds its key: a domain tag,
/// the device, its public key and the digest of the token it says hello
/// with, so that the proof cannot be replayed with another account.
pub fn hello_signing_message(
    device: DeviceId,
    public_key: &[u8; 32],
    token_digest: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(96);
    message.extend_from_slice(b"faenban hello v2\0");
    message.extend_from_slice(device.0.as_bytes());
    message.extend_from_slice(public_key);
    message.extend_from_slice(token_digest);
    message
}

/// What the server signs to acknowledge that it holds `device`'s outbox
/// through `held_through`, the change at that sequence being the one
/// stamped `stamp`: a device can check it against its own outbox.
pub fn ack_signing_message(device: DeviceId, held_through: u64, stamp: &Stamp) -> Vec<u8> {
    let mut message = Vec::with_capacity(80);
    message.extend_from_slice(b"faenban ack v2\0");
    message.extend_from_slice(device.0.as_bytes());
    message.extend_from_slice(&held_through.to_be_bytes());
    message.extend_from_slice(&stamp.hlc.wall_ms.to_be_bytes());
    message.extend_from_slice(&stamp.hlc.counter.to_be_bytes());
    message.extend_from_slice(stamp.device.0.as_bytes());
    message
}

/// What is sealed inside a bundle for the server: a device's letter.
pub const LETTER_PURPOSE: &str = "faenban letter v1";

/// What is sealed inside a bundle for a device: the server's reply.
pub const REPLY_PURPOSE: &str = "faenban reply v1";

/// What the sender of a sealed message signs: a domain tag, the purpose,
/// the recipient's key and the payload, so that a signed message sealed
/// for one recipient or use does not pass for another.
pub fn sealed_signing_message(purpose: &str, recipient: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(64 + purpose.len() + payload.len());
    message.extend_from_slice(b"faenban sealed v1\0");
    message.extend_from_slice(&(purpose.len() as u64).to_be_bytes());
    message.extend_from_slice(purpose.as_bytes());
    message.extend_from_slice(recipient);
    message.extend_from_slice(payload);
    message
}

/// At most this many changes travel in one push.
pub const MAX_BATCH_CHANGES: usize = 1000;

/// A push batch is cut before its encoded changes pass this many bytes.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// A stamp on the wire: `[wall_ms, counter, device index]`, the index into
/// the [`ChangeSet`]'s device table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireStamp(pub u64, pub u32, pub u32);

/// One change on the wire. Keys are one letter: a page of a thousand changes
/// repeats them a thousand times, and compression does the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireChange {
    /// Index into the record table.
    pub r: u32,
    /// Field name.
    pub f: FieldName,
    /// Value.
    pub v: Value,
    /// Stamp.
    pub t: WireStamp,
    /// Supersedes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s: Vec<WireStamp>,
    /// Observed (archives only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub o: Vec<WireStamp>,
    /// Previous stamps (re-stamped changes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub p: Vec<WireStamp>,
}

/// Changes in their compact wire form: devices and records are written once
/// in tables, and each change refers to them by index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSet {
    /// Every device named by a stamp, once.
    pub devices: Vec<DeviceId>,
    /// Every record changed, once, as `[kind, id]`.
    pub records: Vec<(RecordKind, crate::change::RecordId)>,
    /// The changes, in order.
    pub changes: Vec<WireChange>,
}

/// A change set that names a device or record index it does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadIndex {
    /// Which change (0-based).
    pub change: usize,
    /// "device" or "record".
    pub table: &'static str,
    /// The index it named.
    pub index: u32,
}

impl fmt::Display for BadIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "change {} names {} {} that the batch does not list",
            self.change, self.table, self.index
        )
    }
}

impl std::error::Error for BadIndex {}

/// Builds a [`ChangeSet`] one change at a time.
#[derive(Debug, Default)]
pub struct ChangeSetBuilder {
    set: ChangeSet,
    devices: FxHashMap<DeviceId, u32>,
    records: FxHashMap<RecordKey, u32>,
}

impl ChangeSetBuilder {
    /// An empty builder.
    pub fn new() -> ChangeSetBuilder {
        ChangeSetBuilder::default()
    }

    /// How many changes so far.
    pub fn len(&self) -> usize {
        self.set.changes.len()
    }

    /// True before the first change.
    pub fn is_empty(&self) -> bool {
        self.set.changes.is_empty()
    }

    fn device(&mut self, device: DeviceId) -> u32 {
        let next = self.set.devices.len() as u32;
        *self.devices.entry(device).or_insert_with(|| {
            self.set.devices.push(device);
            next
        })
    }

    fn stamp(&mut self, stamp: &Stamp) -> WireStamp {
        WireStamp(
            stamp.hlc.wall_ms,
            stamp.hlc.counter,
            self.device(stamp.device),
        )
    }

    fn stamps<'a>(&mut self, stamps: impl IntoIterator<Item = &'a Stamp>) -> Vec<WireStamp> {
        stamps.into_iter().map(|stamp| self.stamp(stamp)).collect()
    }

    /// Adds a change.
    pub fn push(&mut self, change: &Change) {
        let next = self.set.records.len() as u32;
        let r = match self.records.get(&change.record) {
            Some(&index) => index,
            None => {
                self.records.insert(change.record.clone(), next);
                self.set
                    .records
                    .push((change.record.kind.clone(), change.record.id));
                next
            }
        };
        let t = self.stamp(&change.stamp);
        let s = self.stamps(&change.supersedes);
        let o = self.stamps(&change.observed);
        let p = self.stamps(&change.previous_stamps);
        self.set.changes.push(WireChange {
            r,
            f: change.field.clone(),
            v: change.value.clone(),
            t,
            s,
            o,
            p,
        });
    }

    /// The change set.
    pub fn finish(self) -> ChangeSet {
        self.set
    }
}

impl ChangeSet {
    /// The wire form of these changes.
    pub fn encode<'a>(changes: impl IntoIterator<Item = &'a Change>) -> ChangeSet {
        let mut builder = ChangeSetBuilder::new();
        for change in changes {
            builder.push(change);
        }
        builder.finish()
    }

    /// How many changes it holds.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes back in full form; an index outside the tables is an error
    /// naming the change.
    pub fn decode(&self) -> Result<Vec<Change>, BadIndex> {
        self.changes
            .iter()
            .enumerate()
            .map(|(position, wire)| self.decode_one(position, wire))
            .collect()
    }

    fn decode_one(&self, position: usize, wire: &WireChange) -> Result<Change, BadIndex> {
        let stamp = |w: &WireStamp| -> Result<Stamp, BadIndex> {
            let device = self.devices.get(w.2 as usize).ok_or(BadIndex {
                change: position,
                table: "device",
                index: w.2,
            })?;
            Ok(Stamp::new(
                Hlc {
                    wall_ms: w.0,
                    counter: w.1,
                },
                *device,
            ))
        };
        let (kind, id) = self.records.get(wire.r as usize).ok_or(BadIndex {
            change: position,
            table: "record",
            index: wire.r,
        })?;
        Ok(Change {
            stamp: stamp(&wire.t)?,
            record: RecordKey {
                kind: kind.clone(),
                id: *id,
            },
            field: wire.f.clone(),
            value: wire.v.clone(),
            supersedes: wire.s.iter().map(stamp).collect::<Result<Stamps, _>>()?,
            observed: wire.o.iter().map(stamp).collect::<Result<_, _>>()?,
            previous_stamps: wire.p.iter().map(stamp).collect::<Result<_, _>>()?,
        })
    }
}

/// `POST /v1/hello`: a device introduces itself (and is bound to the
/// account at its first hello), learns the server's time and what the
/// server already holds of its outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloRequest {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The device's id.
    pub device: DeviceId,
    /// The name the volunteer gave the device.
    pub name: String,
    /// The device's public key (64 hex digits), bound at its first hello.
    pub public_key: String,
    /// The device's signature (128 hex digits) over
    /// [`hello_signing_message`]: proof that it holds the key.
    pub proof: String,
}

/// The answer to a hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloResponse {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The server's store schema version.
    pub schema: i64,
    /// The account the token belongs to.
    pub account: String,
    /// Its role.
    pub role: Role,
    /// Its areas.
    pub areas: Vec<String>,
    /// Its dimension (working groups only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<Dimension>,
    /// The highest sequence of this device's outbox the server holds.
    pub held_through: u64,
    /// The server's clock, ms since the epoch.
    pub server_time_ms: u64,
    /// The server's public key (64 hex digits), which signs acknowledgements.
    pub server_key: String,
    /// The newest form of a run's signing message the server verifies
    /// ([`RunSigning::number`]); a server that does not say verifies form 2.
    #[serde(default = "json_run_signing")]
    pub run_signing: u32,
}

/// `POST /v1/push`: a run of one device's outbox, sequences
/// `first_sequence`, `first_sequence + 1`, … in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The store schema version of the sender.
    pub schema: i64,
    /// Whose outbox this is.
    pub device: DeviceId,
    /// True when the sender is passing on another device's outbox that came
    /// to it in a bundle.
    #[serde(default)]
    pub relay: bool,
    /// The sequence of the first change.
    pub first_sequence: u64,
    /// The changes.
    pub changes: ChangeSet,
    /// The device's signature (128 hex digits) over
    /// [`run_signing_message`] of exactly these changes.
    pub signature: String,
    /// The device's public key, for a relayed outbox of a device that has
    /// never said hello (its id must be the one the key makes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// The answer to a push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The device whose outbox this was.
    pub device: DeviceId,
    /// The highest sequence of that outbox the server now holds: the device
    /// may drop everything up to it.
    pub held_through: u64,
    /// Changes new to the server.
    pub applied: u32,
    /// Changes it already held (a re-sent batch).
    pub duplicates: u32,
    /// Changes it re-stamped because their clock was in the future.
    pub restamped: u32,
    /// The server's clock, ms since the epoch.
    pub server_time_ms: u64,
    /// The server's signature (128 hex digits) over [`ack_signing_message`]
    /// for `held_through` and the stamp the batch gave that sequence, when
    /// the batch holds it: a bundle carries it back to the device, which
    /// drops its outbox only on an acknowledgement that verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    /// Sequences up to `held_through` the server refused for what they say
    /// (scope, a value, a limit) and did not apply: the device sets them
    /// aside with the reason, and may send them again later under new
    /// sequences. Every other sequence up to `held_through` is held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<HeldBack>,
}

/// A change of a pushed batch that the server refused and did not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldBack {
    /// Its outbox sequence.
    pub sequence: u64,
    /// `out_of_scope`, `bad_value` or `limit_exceeded`.
    pub error: String,
    /// Why, in English.
    pub message: String,
}

/// `GET /v1/changes?since=…&limit=…`: one page of the changes in the
/// account's scope that the server accepted after the cursor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PullPage {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The changes, in server order.
    pub changes: ChangeSet,
    /// The cursor to ask from next time; store it with the changes.
    pub next: u64,
    /// True when more pages follow.
    pub more: bool,
    /// What identifies the entry at `next`: send it back as `check` with
    /// `since=next`, so that a server restored from a backup is noticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The server's clock, ms since the epoch.
    pub server_time_ms: u64,
    /// Who the devices of these changes are, for history and conflicts to
    /// name them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceName>,
}

/// A device as people know it: the name it gave at its first hello, and
/// its account's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceName {
    /// The device.
    pub device: DeviceId,
    /// Its name (such as "อสม. มาลี บ้านโนนสูง").
    pub name: String,
    /// Its account's name.
    pub account: String,
}

/// `POST /v1/relay`: a letter a device sealed to the server, passed on by
/// whoever carried its bundle. The carrier cannot read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The device that wrote the letter.
    pub device: DeviceId,
    /// The sealed [`Letter`], in hex.
    pub letter: String,
}

/// The answer to a relay: the server's [`Reply`], sealed to the letter's
/// device, for the carrier to take back to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayResponse {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The device the reply is for.
    pub device: DeviceId,
    /// The sealed [`Reply`], in hex.
    pub reply: String,
}

/// What a device seals to the server in a bundle (deflated JSON, signed):
/// at most one signed run of its outbox, and, in the last letter of a
/// bundle, where its pull stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Letter {
    /// The device that wrote it.
    pub device: DeviceId,
    /// When, by its clock.
    pub created_ms: u64,
    /// The first sequence of the device's outbox when it wrote the bundle:
    /// the reply answers, as held back, every sequence from there that the
    /// server refused, whichever letter carried it (a courier may hand in
    /// the letters, and bring back the replies, in any order, or lose some).
    pub outbox_from: u64,
    /// A run of its outbox, as a push would carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<LetterRun>,
    /// Where its pull stands, when it asks for what is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullFrom>,
}

/// A signed run of an outbox inside a [`Letter`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterRun {
    /// The sequence of the first change.
    pub first_sequence: u64,
    /// The changes.
    pub changes: ChangeSet,
    /// The device's signature over [`run_signing_message`] (128 hex digits).
    pub signature: String,
}

/// Where a device's pull stands: the cursor and its check, as a pull sends them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullFrom {
    /// The cursor.
    pub since: u64,
    /// What identifies the entry at the cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// What the server seals to a device in answer to its letter (deflated
/// JSON, signed by the server's key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The device it is for.
    pub device: DeviceId,
    /// The server's clock, ms since the epoch.
    pub server_time_ms: u64,
    /// How much of the device's outbox the server holds.
    pub held_through: u64,
    /// The server's signature over [`ack_signing_message`] for
    /// `held_through`, when the letter's run held that sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    /// Why the letter's run was refused, when it was (nothing of it applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<ErrorBody>,
    /// Changes of the run the server refused and did not apply, as a push
    /// answers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<HeldBack>,
    /// The pull the letter asked for: where it started, and its pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<ReplyPull>,
}

/// Pages of a pull inside a [`Reply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyPull {
    /// The cursor the letter gave.
    pub since: u64,
    /// The pages, in order, each with the cursor after it.
    pub pages: Vec<ReplyPage>,
    /// True when the feed goes on past the last page (the next bundle
    /// brings more).
    pub more: bool,
}

/// One page of a pull inside a [`Reply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyPage {
    /// The changes in the device's scope, in server order.
    pub changes: ChangeSet,
    /// The cursor after them.
    pub next: u64,
    /// What identifies the entry at `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Who the devices of these changes are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceName>,
}

/// Every refusal has this body, with a stable code for programs and a
/// sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code, such as `out_of_scope`.
    pub error: String,
    /// What went wrong and what to do, in English.
    pub message: String,
}

/// What an account is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A village volunteer: the households of their villages.
    Volunteer,
    /// A district or subdistrict team: the households of their areas; it
    /// also keeps the officials (who, like every record of no household,
    /// every account sees).
    Team,
    /// A per-dimension working group: the households of their areas that are
    /// deprived in their dimension; it records assistance for them.
    Dimension,
    /// The provincial office: everything.
    Province,
    /// Manages accounts; sees everything.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Volunteer,
        Role::Team,
        Role::Dimension,
        Role::Province,
        Role::Admin,
    ];

    /// The name used in commands and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Volunteer => "volunteer",
            Role::Team => "team",
            Role::Dimension => "dimension",
            Role::Province => "province",
            Role::Admin => "admin",
        }
    }

    /// The role with this name.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// What the server knows of a household when it decides scope: where it is
/// and in which dimensions its latest survey found it deprived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HouseholdPlace {
    /// The 8-digit village code (empty if not known).
    pub village: String,
    /// Bit `i` set when deprived in `Dimension::ALL[i]`.
    pub deprived: u8,
}

impl HouseholdPlace {
    /// The bit of a dimension in [`HouseholdPlace::deprived`].
    pub fn bit(dimension: Dimension) -> u8 {
        let index = Dimension::ALL
            .iter()
            .position(|d| *d == dimension)
            .expect("every dimension is in ALL");
        1 << index
    }
}

/// What an account covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The role.
    pub role: Role,
    /// Area codes (province, district, subdistrict or village) it covers.
    pub areas: Vec<String>,
    /// For a working group: its dimension.
    pub dimension: Option<Dimension>,
}

/// Why a write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The household is outside the account's areas.
    OutsideAreas,
    /// A working group may write only for households deprived in its dimension.
    NotDeprivedInDimension,
    /// This role may not change records of this kind.
    KindNotAllowed,
    /// The record names no household the server knows, so its place is unknown.
    UnknownHousehold,
    /// The household has no village yet: only the provincial office places it.
    UnplacedHousehold,
    /// A working group records assistance only in its own dimension.
    OtherDimension,
}

impl Refusal {
    /// The reason in a sentence.
    pub fn describe(&self) -> &'static str {
        match self {
            Refusal::OutsideAreas => "the household is outside the account's areas",
            Refusal::NotDeprivedInDimension => {
                "the household is not deprived in the working group's dimension"
            }
            Refusal::KindNotAllowed => "this role may not change records of this kind",
            Refusal::UnknownHousehold => {
                "the record belongs to no household the server knows, so its area is unknown"
            }
            Refusal::UnplacedHousehold => {
                "the household has no village yet; only the provincial office may place it"
            }
            Refusal::OtherDimension => {
                "a working group records assistance only in its own dimension"
            }
        }
    }
}

impl Scope {
    /// Whether an account may have this scope: areas unless it covers
    /// everything, and a dimension for a working group and only for it.
    /// The reason, in English, when it may not.
    pub fn check_shape(&self) -> Result<(), String> {
        if !self.is_everything() && self.areas.is_empty() {
            return Err(format!(
                "a {} account needs at least one area code",
                self.role.as_str()
            ));
        }
        if (self.role == Role::Dimension) != self.dimension.is_some() {
            return Err(
                "a dimension (working group) account needs --dimension, and only it takes one"
                    .into(),
            );
        }
        Ok(())
    }

    /// True for the roles that see and change everything.
    pub fn is_everything(&self) -> bool {
        matches!(self.role, Role::Province | Role::Admin)
    }

    /// True when the village lies in one of the account's areas.
    pub fn covers_village(&self, village: &str) -> bool {
        self.is_everything()
            || (!village.is_empty() && self.areas.iter().any(|area| village.starts_with(area)))
    }

    /// True when the account may see records of a household in this place
    /// (`None`: a record of no household, such as an official).
    pub fn may_read(&self, place: Option<&HouseholdPlace>) -> bool {
        match place {
            None => true,
            Some(place) => self.covers_village(&place.village) && self.dimension_allows(place),
        }
    }

    fn dimension_allows(&self, place: &HouseholdPlace) -> bool {
        match (self.role, self.dimension) {
            (Role::Dimension, Some(dimension)) => {
                place.deprived & HouseholdPlace::bit(dimension) != 0
            }
            (Role::Dimension, None) => false,
            _ => true,
        }
    }

    /// May the account change a record of `kind` that belongs to a household
    /// in `place` (`None`: the record belongs to no household)?
    pub fn may_write(
        &self,
        kind: &RecordKind,
        place: Option<&HouseholdPlace>,
    ) -> Result<(), Refusal> {
        if self.is_everything() {
            return Ok(());
        }
        let Some(place) = place else {
            // Officials and other records of no household: the teams that
            // organise the pairing keep them.
            return match (self.role, kind) {
                (Role::Team, RecordKind::Official) => Ok(()),
                (_, RecordKind::Household | RecordKind::Member | RecordKind::Visit)
                | (_, RecordKind::Assistance | RecordKind::Pairing) => {
                    Err(Refusal::UnknownHousehold)
                }
                _ => Err(Refusal::KindNotAllowed),
            };
        };
        if self.role == Role::Dimension && *kind != RecordKind::Assistance {
            return Err(Refusal::KindNotAllowed);
        }
        if !self.covers_village(&place.village) {
            return Err(Refusal::OutsideAreas);
        }
        if !self.dimension_allows(place) {
            return Err(Refusal::NotDeprivedInDimension);
        }
        Ok(())
    }

    /// What a laptop can tell, as a record is typed, that the server will
    /// refuse for this account: [`Scope::may_write`] with what the laptop
    /// knows. `village` is the village of the record's household as the
    /// laptop has it (`None`: no household, or one it does not know);
    /// `dimension` the assistance's dimension. What the laptop cannot know
    /// (whether a household is deprived in a working group's dimension, a
    /// household it has not pulled) is left to the server.
    pub fn may_record(
        &self,
        kind: &RecordKind,
        village: Option<&str>,
        dimension: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.is_everything() {
            return Ok(());
        }
        if self.role == Role::Dimension && *kind != RecordKind::Assistance {
            return Err(Refusal::KindNotAllowed);
        }
        if *kind == RecordKind::Official && self.role != Role::Team {
            return Err(Refusal::KindNotAllowed);
        }
        if let Some(village) = village.filter(|village| !village.is_empty()) {
            if !self.covers_village(village) {
                return Err(Refusal::OutsideAreas);
            }
        }
        if self.role == Role::Dimension
            && *kind == RecordKind::Assistance
            && dimension
                .is_some_and(|dimension| Some(dimension) != self.dimension.map(Dimension::key))
        {
            return Err(Refusal::OtherDimension);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn change(n: u128, device: u128, record: u128) -> Change {
        let stamp = Stamp::new(
            Hlc::at(1_700_000_000_000 + n as u64),
            DeviceId::from_u128(device),
        );
        Change {
            stamp,
            record: RecordKey::new(RecordKind::Household, Uuid::from_u128(record)),
            field: "house_code".into(),
            value: Value::String(format!("4001-00000{n}")),
            supersedes: [Stamp::new(Hlc::at(5), DeviceId::from_u128(9))]
                .into_iter()
                .collect(),
            observed: Vec::new(),
            previous_stamps: vec![Stamp::new(Hlc::at(7), DeviceId::from_u128(device))],
        }
    }

    #[test]
    fn a_change_set_round_trips_and_lists_each_device_and_record_once() {
        let changes: Vec<Change> = (0..6).map(|n| change(n, n % 2, n % 3)).collect();
        let set = ChangeSet::encode(&changes);
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.devices.len(), 3);
        let json = serde_json::to_string(&set).unwrap();
        let back: ChangeSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back.decode().unwrap(), changes);
    }

    #[test]
    fn a_run_is_signed_as_its_tag_device_first_count_then_each_change_as_length_and_json() {
        // Devices already in the field sign this layout: it must not move.
        let changes: Vec<Change> = (0..3).map(|n| change(n, 4, n)).collect();
        let device = DeviceId::from_u128(4);
        let mut expected = b"faenban outbox run v2\0".to_vec();
        expected.extend_from_slice(device.0.as_bytes());
        expected.extend_from_slice(&17u64.to_be_bytes());
        expected.extend_from_slice(&3u64.to_be_bytes());
        for change in &changes {
            let json = serde_json::to_vec(change).unwrap();
            expected.extend_from_slice(&(json.len() as u64).to_be_bytes());
            expected.extend_from_slice(&json);
        }
        assert_eq!(json_run_signing_message(device, 17, &changes), expected);
        assert_eq!(RunSigning::Json.message(device, 17, &changes), expected);
    }

    #[test]
    fn a_run_is_signed_compactly_as_its_parts_at_fixed_widths_or_after_their_lengths() {
        // Devices sign this layout from form 3 on: it must not move.
        let mut changes: Vec<Change> = (0..2).map(|n| change(n, 4, n)).collect();
        let device = DeviceId::from_u128(4);
        changes[1].previous_stamps = vec![Stamp::new(
            Hlc {
                wall_ms: 5,
                counter: 6,
            },
            device,
        )];
        let mut expected = b"faenban outbox run v3\0".to_vec();
        expected.extend_from_slice(device.0.as_bytes());
        expected.extend_from_slice(&17u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        let stamp = |expected: &mut Vec<u8>, stamp: &Stamp| {
            expected.extend_from_slice(&stamp.hlc.wall_ms.to_be_bytes());
            expected.extend_from_slice(&stamp.hlc.counter.to_be_bytes());
            expected.extend_from_slice(stamp.device.0.as_bytes());
        };
        for change in &changes {
            stamp(&mut expected, &change.stamp);
            let kind = change.record.kind.as_str();
            expected.extend_from_slice(&(kind.len() as u32).to_be_bytes());
            expected.extend_from_slice(kind.as_bytes());
            expected.extend_from_slice(change.record.id.0.as_bytes());
            expected.extend_from_slice(&(change.field.len() as u32).to_be_bytes());
            expected.extend_from_slice(change.field.as_bytes());
            let value = serde_json::to_vec(&change.value).unwrap();
            expected.extend_from_slice(&(value.len() as u32).to_be_bytes());
            expected.extend_from_slice(&value);
            for list in [
                &change.supersedes[..],
                &change.observed,
                &change.previous_stamps,
            ] {
                expected.extend_from_slice(&(list.len() as u32).to_be_bytes());
                for each in list {
                    stamp(&mut expected, each);
                }
            }
        }
        assert_eq!(run_signing_message(device, 17, &changes), expected);
        assert_eq!(RunSigning::Compact.message(device, 17, &changes), expected);
        // Under half of the JSON form's bytes.
        assert!(expected.len() * 2 < json_run_signing_message(device, 17, &changes).len());
    }

    #[test]
    fn a_server_names_the_newest_run_signing_form_it_verifies_and_an_older_one_none() {
        let answer = HelloResponse {
            protocol: PROTOCOL_VERSION,
            schema: 9,
            account: "a".into(),
            role: Role::Volunteer,
            areas: vec![],
            dimension: None,
            held_through: 0,
            server_time_ms: 1,
            server_key: "00".into(),
            run_signing: RunSigning::NEWEST.number(),
        };
        let mut json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["run_signing"], 3);
        json.as_object_mut().unwrap().remove("run_signing");
        let older: HelloResponse = serde_json::from_value(json).unwrap();
        assert_eq!(RunSigning::for_server(older.run_signing), RunSigning::Json);
        assert_eq!(RunSigning::for_server(3), RunSigning::Compact);
        // A newer server verifies every form up to its own.
        assert_eq!(RunSigning::for_server(9), RunSigning::Compact);
    }

    #[test]
    fn an_index_outside_the_tables_is_named() {
        let mut set = ChangeSet::encode(&[change(1, 1, 1)]);
        set.changes[0].t.2 = 7;
        assert_eq!(
            set.decode().unwrap_err(),
            BadIndex {
                change: 0,
                table: "device",
                index: 7
            }
        );
        set.changes[0].t.2 = 0;
        set.changes[0].r = 3;
        assert_eq!(set.decode().unwrap_err().table, "record");
    }

    fn scope(role: Role, areas: &[&str], dimension: Option<Dimension>) -> Scope {
        Scope {
            role,
            areas: areas.iter().map(|a| a.to_string()).collect(),
            dimension,
        }
    }

    #[test]
    fn volunteers_and_teams_change_only_households_in_their_areas() {
        let inside = HouseholdPlace {
            village: "40010203".into(),
            deprived: 0,
        };
        let outside = HouseholdPlace {
            village: "40020101".into(),
            deprived: 0,
        };
        let volunteer = scope(Role::Volunteer, &["40010203"], None);
        assert_eq!(
            volunteer.may_write(&RecordKind::Member, Some(&inside)),
            Ok(())
        );
        assert_eq!(
            volunteer.may_write(&RecordKind::Member, Some(&outside)),
            Err(Refusal::OutsideAreas)
        );
        assert_eq!(
            volunteer.may_write(&RecordKind::Official, None),
            Err(Refusal::KindNotAllowed)
        );
        let team = scope(Role::Team, &["4001"], None);
        assert_eq!(
            team.may_write(&RecordKind::Household, Some(&inside)),
            Ok(())
        );
        assert_eq!(team.may_write(&RecordKind::Official, None), Ok(()));
        assert!(!team.may_read(Some(&outside)));
        assert!(team.may_read(None));
        let province = scope(Role::Province, &[], None);
        assert!(province.may_read(Some(&outside)));
        assert_eq!(
            province.may_write(&RecordKind::Other("x".into()), None),
            Ok(())
        );
    }

    #[test]
    fn a_working_group_sees_and_assists_only_households_deprived_in_its_dimension() {
        let group = scope(Role::Dimension, &["4001"], Some(Dimension::Income));
        let deprived = HouseholdPlace {
            village: "40010203".into(),
            deprived: HouseholdPlace::bit(Dimension::Income),
        };
        let other = HouseholdPlace {
            village: "40010203".into(),
            deprived: HouseholdPlace::bit(Dimension::Health),
        };
        assert!(group.may_read(Some(&deprived)));
        assert!(!group.may_read(Some(&other)));
        assert_eq!(
            group.may_write(&RecordKind::Assistance, Some(&deprived)),
            Ok(())
        );
        assert_eq!(
            group.may_write(&RecordKind::Assistance, Some(&other)),
            Err(Refusal::NotDeprivedInDimension)
        );
        assert_eq!(
            group.may_write(&RecordKind::Household, Some(&deprived)),
            Err(Refusal::KindNotAllowed)
        );
    }
}
