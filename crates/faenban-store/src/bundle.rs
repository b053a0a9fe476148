//! The bundle file: a sync that travels as a file, for a laptop with no
//! connection at all, and the sealed letters and replies inside it.
//!
//! A bundle holds nothing readable. A device writes its outbox into letters
//! sealed to the server's key; the server answers each with a reply sealed
//! to the device's key (an acknowledgement and what is new in the device's
//! scope). A laptop that carries a bundle hands the letters to the server
//! and takes the replies back, and learns nothing from either. Decoding
//! takes any bytes (a damaged or hostile file) and either gives every sealed
//! item in it or says what is wrong.

use std::io::{Read, Write as _};

use faenban_core::sync::{Letter, Reply, LETTER_PURPOSE, PROTOCOL_VERSION, REPLY_PURPOSE};
use faenban_core::DeviceId;
use faenban_keys::{DeviceKey, PublicKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The first field of every bundle.
pub const FORMAT: &str = "faenban-sealed-bundle";

/// The bundle file: gzip-compressed JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// The sync protocol version of the letters and replies inside.
    pub protocol: u32,
    /// The laptop that wrote it.
    pub from_device: DeviceId,
    /// When (that laptop's clock, ms since the epoch).
    pub created_ms: u64,
    /// Letters for the server: the writer's own and those it carries.
    pub letters: Vec<SealedItem>,
    /// The server's replies it carries back to their devices.
    pub replies: Vec<SealedItem>,
}

/// A letter (from `device`) or a reply (for `device`), sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedItem {
    /// The device that wrote the letter, or whom the reply is for.
    pub device: DeviceId,
    /// The sealed bytes, in hex.
    pub sealed: String,
}

/// The most bytes a bundle may take once decompressed (a small file that
/// unpacks to gigabytes is refused, not read into memory).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// The most bytes a letter's JSON may take once inflated: a run of at most
/// [`LETTER_RUN_BYTES`], with room for its wire form.
pub const MAX_LETTER_BYTES: u64 = 2 << 20;

/// A letter's run is cut before its changes pass this many bytes of JSON,
/// so that a letter, sealed and in hex, always fits one request to the
/// server, however poorly its changes compress.
pub const LETTER_RUN_BYTES: usize = 512 << 10;

/// The most bytes a reply's JSON may take once inflated.
pub const MAX_REPLY_BYTES: u64 = 64 << 20;

/// A bundle, decoded: the sealed items in it, still sealed.
#[derive(Debug, Default)]
pub struct DecodedBundle {
    /// Letters for the server, in the order the writer put them.
    pub letters: Vec<SealedBytes>,
    /// Replies for devices.
    pub replies: Vec<SealedBytes>,
}

/// One sealed item, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBytes {
    /// The device that wrote the letter, or whom the reply is for.
    pub device: DeviceId,
    /// The sealed bytes.
    pub body: Vec<u8>,
}

/// Why a file is not a bundle this faenban can take.
#[derive(Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Not gzip, cut off, or larger than [`MAX_BUNDLE_BYTES`] unpacked.
    NotABundle(String),
    /// Not the bundle's JSON; where.
    Unreadable {
        /// Line in the unpacked JSON.
        line: usize,
        /// Column.
        column: usize,
    },
    /// Another format, or another protocol version.
    Version {
        /// The file's format.
        format: String,
        /// Its protocol.
        protocol: u32,
    },
    /// Well formed, but an item in it is not sealed bytes.
    Damaged(String),
}

/// Writes a bundle's file bytes.
pub fn encode(bundle: &Bundle) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut encoder, bundle)?;
    encoder.finish()
}

/// Decodes a bundle file's bytes.
pub fn decode(bytes: &[u8]) -> Result<DecodedBundle, BundleError> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|error| BundleError::NotABundle(error.to_string()))?;
    if json.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(BundleError::NotABundle(format!(
            "it unpacks to more than {} MiB",
            MAX_BUNDLE_BYTES >> 20
        )));
    }
    // The version first: a bundle of another format is told as such, not
    // as one of the wrong shape.
    #[derive(Deserialize)]
    struct Versioned {
        format: String,
        protocol: u32,
    }
    if let Ok(Versioned { format, protocol }) = serde_json::from_slice(&json) {
        if format != FORMAT || protocol != PROTOCOL_VERSION {
            return Err(BundleError::Version { format, protocol });
        }
    }
    let bundle: Bundle =
        serde_json::from_slice(&json).map_err(|error| BundleError::Unreadable {
            line: error.line(),
            column: error.column(),
        })?;
    if bundle.format != FORMAT || bundle.protocol != PROTOCOL_VERSION {
        return Err(BundleError::Version {
            format: bundle.format,
            protocol: bundle.protocol,
        });
    }
    let unsealed = |items: Vec<SealedItem>, what: &str| {
        items
            .into_iter()
            .enumerate()
            .map(|(position, item)| {
                let body = faenban_keys::unhex_vec(&item.sealed)
                    .filter(|body| body.len() >= faenban_keys::SEAL_OVERHEAD)
                    .ok_or_else(|| {
                        BundleError::Damaged(format!("{what} {position} is not sealed bytes"))
                    })?;
                Ok(SealedBytes {
                    device: item.device,
                    body,
                })
            })
            .collect::<Result<Vec<_>, BundleError>>()
    };
    Ok(DecodedBundle {
        letters: unsealed(bundle.letters, "letter")?,
        replies: unsealed(bundle.replies, "reply")?,
    })
}

/// Why a sealed letter or reply was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum UnsealError {
    /// It is not sealed to this key, or it was changed on the way.
    NotForThisKey,
    /// It opens, but is not signed by the key it claims.
    BadSignature,
    /// It opens and verifies, but its contents cannot be read, or it names
    /// another device than the one it travels under.
    Unreadable(String),
}

impl std::fmt::Display for UnsealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnsealError::NotForThisKey => {
                f.write_str("it is not sealed to this key, or it was changed on the way")
            }
            UnsealError::BadSignature => f.write_str("it is not signed by the key it claims"),
            UnsealError::Unreadable(reason) => write!(f, "its contents cannot be read: {reason}"),
        }
    }
}

/// Seals `device`'s letter to the server.
pub fn seal_letter(
    key: &DeviceKey,
    server: &PublicKey,
    letter: &Letter,
) -> Result<Vec<u8>, faenban_keys::SealError> {
    key.sign_and_seal(server, LETTER_PURPOSE, &deflated_json(letter))
}

/// Opens a letter sealed to the server's key that travels under `device`;
/// `key_of` gives the device's bound key, if it has one.
pub fn open_letter(
    server: &DeviceKey,
    device: DeviceId,
    sealed: &[u8],
    key_of: impl FnOnce(DeviceId) -> Option<PublicKey>,
) -> Result<Letter, UnsealError> {
    let opened = server
        .open(LETTER_PURPOSE, sealed)
        .ok_or(UnsealError::NotForThisKey)?;
    let sender = key_of(device).ok_or(UnsealError::BadSignature)?;
    if !opened.signed_by(&sender) {
        return Err(UnsealError::BadSignature);
    }
    let letter: Letter = inflated_json(&opened.payload, MAX_LETTER_BYTES)?;
    if letter.device != device {
        return Err(UnsealError::Unreadable(
            "it names another device than the one it travels under".into(),
        ));
    }
    Ok(letter)
}

/// Seals the server's reply to its device.
pub fn seal_reply(
    server: &DeviceKey,
    device: &PublicKey,
    reply: &Reply,
) -> Result<Vec<u8>, faenban_keys::SealError> {
    server.sign_and_seal(device, REPLY_PURPOSE, &deflated_json(reply))
}

/// Opens a reply sealed to `device`'s key, signed by the server's. The
/// device is the laptop's own id, which for a laptop made before keys is
/// not the one its key makes.
pub fn open_reply(
    key: &DeviceKey,
    device: DeviceId,
    server: &PublicKey,
    sealed: &[u8],
) -> Result<Reply, UnsealError> {
    let opened = key
        .open(REPLY_PURPOSE, sealed)
        .ok_or(UnsealError::NotForThisKey)?;
    if !opened.signed_by(server) {
        return Err(UnsealError::BadSignature);
    }
    let reply: Reply = inflated_json(&opened.payload, MAX_REPLY_BYTES)?;
    if reply.device != device {
        return Err(UnsealError::Unreadable("it is for another device".into()));
    }
    Ok(reply)
}

fn deflated_json(value: &impl Serialize) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into memory does not fail, and plain data always serializes.
    serde_json::to_writer(&mut encoder, value).expect("a letter serializes");
    encoder.flush().expect("writing into memory");
    encoder.finish().expect("writing into memory")
}

fn inflated_json<T: DeserializeOwned>(bytes: &[u8], max: u64) -> Result<T, UnsealError> {
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .take(max + 1)
        .read_to_end(&mut json)
        .map_err(|error| UnsealError::Unreadable(error.to_string()))?;
    if json.len() as u64 > max {
        return Err(UnsealError::Unreadable(format!(
            "it unpacks to more than {} MiB",
            max >> 20
        )));
    }
    serde_json::from_slice(&json).map_err(|error| {
        UnsealError::Unreadable(format!("line {} column {}", error.line(), error.column()))
    })
}
