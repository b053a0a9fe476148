//! The bundle file: a sync that travels as a file (gzip-compressed JSON),
//! for a laptop with no connection at all, and its decoding, which takes
//! any bytes (a damaged or hostile file) and either gives every change and
//! signed run in it, each within the limits a push has, or says what is
//! wrong.

use std::io::Read;

use faenban_core::sync::{ChangeSet, PROTOCOL_VERSION};
use faenban_core::{limits, Change, DeviceId};
use serde::{Deserialize, Serialize};

use crate::sync::{Ack, OutboxRun, RunSignature};

/// The first field of every bundle.
pub const FORMAT: &str = "faenban-bundle";

/// The bundle file: gzip-compressed JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Always "faenban-bundle".
    pub format: String,
    /// The sync protocol version of the wire forms inside.
    pub protocol: u32,
    /// The laptop that wrote it.
    pub from_device: DeviceId,
    /// When (that laptop's clock, ms since the epoch).
    pub created_ms: u64,
    /// Outboxes to push: the writer's own and those it carries for others.
    pub outboxes: Vec<BundleOutbox>,
    /// How much of each device's outbox the server holds, as last heard.
    pub acks: Vec<BundleAck>,
    /// Every change the writer knows.
    pub changes: ChangeSet,
}

/// One run of a device's outbox, as that device signed it; it travels
/// whole and is pushed exactly as it is.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleOutbox {
    pub device: DeviceId,
    pub first_sequence: u64,
    pub changes: ChangeSet,
    /// The device's signature over the run (128 hex digits).
    pub signature: String,
    /// The device's public key (64 hex digits), for a server it has never
    /// said hello to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BundleAck {
    pub device: DeviceId,
    pub held_through: u64,
    /// The server's signature over the acknowledgement; a laptop drops its
    /// own outbox only on one that verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The most bytes a bundle may take once decompressed (a small file that
/// unpacks to gigabytes is refused, not read into memory).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// A bundle, decoded and checked.
#[derive(Debug)]
pub struct DecodedBundle {
    /// Every change the writer held.
    pub changes: Vec<Change>,
    /// Outbox runs to push, each as its device signed it.
    pub outboxes: Vec<OutboxRun>,
    /// What the server was last heard to hold of each device's outbox.
    pub acks: Vec<Ack>,
}

/// Why a file is not a bundle this faenban can take.
#[derive(Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Not gzip, cut off, or larger than [`MAX_BUNDLE_BYTES`] unpacked.
    NotABundle(String),
    /// Not the bundle's JSON; where (never the value, which may be personal).
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
    /// Well formed, but a change in it is not one a push would take.
    Damaged(String),
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
    let checked = |set: &ChangeSet| -> Result<Vec<Change>, BundleError> {
        let changes = set
            .decode()
            .map_err(|error| BundleError::Damaged(error.to_string()))?;
        for (position, change) in changes.iter().enumerate() {
            limits::check_change(change).map_err(|exceeded| {
                BundleError::Damaged(format!("change {position}: {}", exceeded.describe()))
            })?;
        }
        Ok(changes)
    };
    let changes = checked(&bundle.changes)?;
    let mut outboxes = Vec::new();
    for outbox in &bundle.outboxes {
        outboxes.push(OutboxRun {
            device: outbox.device,
            first_sequence: outbox.first_sequence,
            changes: checked(&outbox.changes)?,
            signed: Some(RunSignature {
                signature: outbox.signature.clone(),
                public_key: outbox.public_key.clone(),
            }),
        });
    }
    let acks = bundle
        .acks
        .iter()
        .map(|ack| Ack {
            device: ack.device,
            held_through: ack.held_through,
            signature: ack.signature.clone(),
        })
        .collect();
    Ok(DecodedBundle {
        changes,
        outboxes,
        acks,
    })
}
