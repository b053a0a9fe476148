//! `faenban bundle export|import`: a sync that travels as a file, for a
//! laptop with no connection at all. The offline laptop exports; an online
//! one imports, syncs (passing on the offline laptop's outbox), and exports
//! a bundle back that carries the server's acknowledgement and everything
//! it pulled.

use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::Context as _;
use faenban_core::sync::{
    ChangeSet, ChangeSetBuilder, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, PROTOCOL_VERSION,
};
use faenban_core::DeviceId;
use faenban_store::sync::{OutboxRun, RunSignature};
use serde::{Deserialize, Serialize};

use super::{now_ms, write_atomically, Context};
use crate::failure::{Failure, Kind};

/// The first field of every bundle.
const FORMAT: &str = "faenban-bundle";

/// The bundle file: gzip-compressed JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Bundle {
    /// Always "faenban-bundle".
    format: String,
    /// The sync protocol version of the wire forms inside.
    protocol: u32,
    /// The laptop that wrote it.
    from_device: DeviceId,
    /// When (that laptop's clock, ms since the epoch).
    created_ms: u64,
    /// Outboxes to push: the writer's own and those it carries for others.
    outboxes: Vec<BundleOutbox>,
    /// How much of each device's outbox the server holds, as last heard.
    acks: Vec<BundleAck>,
    /// Every change the writer knows.
    changes: ChangeSet,
}

/// One run of a device's outbox, as that device signed it; it travels
/// whole and is pushed exactly as it is.
#[derive(Debug, Serialize, Deserialize)]
struct BundleOutbox {
    device: DeviceId,
    first_sequence: u64,
    changes: ChangeSet,
    /// The device's signature over the run (128 hex digits).
    signature: String,
    /// The device's public key (64 hex digits), for a server it has never
    /// said hello to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BundleAck {
    device: DeviceId,
    held_through: u64,
}

/// `faenban bundle export FILE`.
pub fn export(context: &mut Context, file: &Path) -> anyhow::Result<()> {
    let device = context
        .store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let key = context
        .store
        .device_key()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let mut outboxes = Vec::new();
    if let Some(run) = context.store.outbox_run(usize::MAX >> 1)? {
        // Once in a file, these changes may reach the server by another
        // laptop: they keep their stamps from now on.
        context.store.mark_shared(run.last_sequence())?;
        // Signed in pieces that each fit one push: whoever passes them on
        // cannot cut a signed run.
        for mut piece in run.split(MAX_BATCH_CHANGES, MAX_BATCH_BYTES) {
            piece.signed = Some(RunSignature {
                signature: key
                    .sign_run(piece.device, piece.first_sequence, &piece.changes)
                    .to_string(),
                public_key: Some(key.public().to_string()),
            });
            outboxes.push(piece);
        }
    }
    outboxes.extend(context.store.relay_runs()?);
    let mut builder = ChangeSetBuilder::new();
    context.store.for_each_change(|change| {
        builder.push(&change);
        Ok::<_, faenban_store::Error>(())
    })?;
    let bundle = Bundle {
        format: FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        from_device: device.id,
        created_ms: now_ms(),
        outboxes: outboxes
            .iter()
            .filter_map(|run| {
                let signed = run.signed.as_ref()?;
                Some(BundleOutbox {
                    device: run.device,
                    first_sequence: run.first_sequence,
                    changes: ChangeSet::encode(&run.changes),
                    signature: signed.signature.clone(),
                    public_key: signed.public_key.clone(),
                })
            })
            .collect(),
        acks: context
            .store
            .acks()?
            .into_iter()
            .map(|(device, held_through)| BundleAck {
                device,
                held_through,
            })
            .collect(),
        changes: builder.finish(),
    };
    write_atomically(file, |out| {
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        serde_json::to_writer(&mut encoder, &bundle)?;
        std::io::Write::flush(encoder.finish()?)?;
        Ok(())
    })
    .with_context(|| format!("writing the bundle {}", file.display()))?;
    let pending: usize = outboxes.iter().map(|run| run.changes.len()).sum();
    if context.json {
        println!(
            "{}",
            serde_json::json!({
                "file": file.display().to_string(),
                "changes": bundle.changes.len(),
                "outbox_changes": pending,
            })
        );
    } else {
        println!(
            "{} {} ({} {}, {} {})",
            context.lang.pick("เขียนไฟล์ชุดข้อมูลแล้ว:", "bundle written:"),
            file.display(),
            bundle.changes.len(),
            context.lang.pick("การแก้ไขทั้งหมด", "changes in all"),
            pending,
            context.lang.pick("รอส่งเซิร์ฟเวอร์", "waiting for the server"),
        );
    }
    Ok(())
}

/// `faenban bundle import FILE`.
pub fn import(context: &mut Context, file: &Path) -> anyhow::Result<()> {
    let bundle = read_bundle(context, file)?;
    let bad = |reason: String| -> anyhow::Error {
        Failure::new(
            Kind::BadInput,
            context.lang,
            format!("ไฟล์ชุดข้อมูลเสียหาย: {reason} (ไม่ได้นำเข้าอะไรเลย)"),
            format!("the bundle is damaged: {reason} (nothing was imported)"),
        )
        .into()
    };
    let changes = bundle.changes.decode().map_err(|e| bad(e.to_string()))?;
    let mut outboxes = Vec::new();
    for outbox in &bundle.outboxes {
        outboxes.push(OutboxRun {
            device: outbox.device,
            first_sequence: outbox.first_sequence,
            changes: outbox.changes.decode().map_err(|e| bad(e.to_string()))?,
            signed: Some(RunSignature {
                signature: outbox.signature.clone(),
                public_key: outbox.public_key.clone(),
            }),
        });
    }
    let acks: Vec<(DeviceId, u64)> = bundle
        .acks
        .iter()
        .map(|ack| (ack.device, ack.held_through))
        .collect();
    let own = context.store.device()?.map(|d| d.id);
    let carried: usize = outboxes
        .iter()
        .filter(|run| Some(run.device) != own)
        .map(|run| run.changes.len())
        .sum();
    let received = context
        .store
        .import_bundle(now_ms(), changes, outboxes, &acks)?;
    if context.json {
        println!(
            "{}",
            serde_json::json!({
                "new": received.new,
                "already_here": received.duplicates,
                "to_pass_on": carried,
            })
        );
    } else {
        println!(
            "{} {} ({} {}); {} {}",
            context.lang.pick("นำเข้าแล้ว:", "imported:"),
            received.new,
            received.duplicates,
            context.lang.pick("มีอยู่แล้ว", "already here"),
            carried,
            context.lang.pick(
                "การแก้ไขจะส่งต่อให้เซิร์ฟเวอร์เมื่อ sync",
                "changes to pass on at the next sync"
            ),
        );
    }
    Ok(())
}

fn read_bundle(context: &Context, file: &Path) -> anyhow::Result<Bundle> {
    let opened = std::fs::File::open(file)
        .with_context(|| format!("opening the bundle {}", file.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(BufReader::new(opened))
        .read_to_end(&mut bytes)
        .map_err(|error| {
            Failure::new(
                Kind::BadInput,
                context.lang,
                format!(
                    "{} ไม่ใช่ไฟล์ชุดข้อมูลของ faenban หรือไฟล์ไม่ครบ ({error})",
                    file.display()
                ),
                format!(
                    "{} is not a faenban bundle, or it is cut off ({error}); nothing was imported",
                    file.display()
                ),
            )
        })?;
    let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|error| {
        // Only where: serde_json's own text can quote a value (a name, an ID).
        let at = format!("line {} column {}", error.line(), error.column());
        Failure::new(
            Kind::BadInput,
            context.lang,
            format!("อ่านไฟล์ชุดข้อมูลไม่ได้ (ตำแหน่ง {at}) ไม่ได้นำเข้าอะไรเลย"),
            format!("the bundle cannot be read (at {at}); nothing was imported"),
        )
    })?;
    if bundle.format != FORMAT || bundle.protocol != PROTOCOL_VERSION {
        return Err(Failure::new(
            Kind::BadInput,
            context.lang,
            format!(
                "ไฟล์ชุดข้อมูลเป็นรุ่น {} ส่วนโปรแกรมนี้อ่านรุ่น {PROTOCOL_VERSION}",
                bundle.protocol
            ),
            format!(
                "the bundle is {} version {}; this faenban reads {FORMAT} version {PROTOCOL_VERSION}",
                bundle.format, bundle.protocol
            ),
        )
        .into());
    }
    Ok(bundle)
}
