//! `faenban bundle export|import`: a sync that travels as a file, for a
//! laptop with no connection at all. The offline laptop exports; an online
//! one imports, syncs (passing on the offline laptop's outbox), and exports
//! a bundle back that carries the server's acknowledgement and everything
//! it pulled.

use std::path::Path;

use anyhow::Context as _;
use faenban_core::sync::{
    ChangeSet, ChangeSetBuilder, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, PROTOCOL_VERSION,
};
use faenban_store::bundle::{
    self, Bundle, BundleAck, BundleError, BundleOutbox, DecodedBundle, FORMAT,
};
use faenban_store::sync::RunSignature;

use super::{now_ms, write_atomically, Context};
use crate::failure::{Failure, Kind};

/// `faenban bundle export FILE`.
pub fn export(context: &mut Context, file: &Path) -> anyhow::Result<()> {
    let device = context
        .store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let key = super::sync::device_key(context)?;
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
            .map(|ack| BundleAck {
                device: ack.device,
                held_through: ack.held_through,
                signature: ack.signature,
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
    let bytes =
        std::fs::read(file).with_context(|| format!("opening the bundle {}", file.display()))?;
    let lang = context.lang;
    let DecodedBundle {
        changes,
        outboxes,
        acks,
    } = bundle::decode(&bytes).map_err(|error| -> anyhow::Error {
        let (th, en) = match error {
            BundleError::NotABundle(reason) => (
                format!("{} ไม่ใช่ไฟล์ชุดข้อมูลของ faenban หรือไฟล์ไม่ครบ ({reason}) ไม่ได้นำเข้าอะไรเลย", file.display()),
                format!("{} is not a faenban bundle, or it is cut off ({reason}); nothing was imported", file.display()),
            ),
            BundleError::Unreadable { line, column } => (
                format!("อ่านไฟล์ชุดข้อมูลไม่ได้ (ตำแหน่ง line {line} column {column}) ไม่ได้นำเข้าอะไรเลย"),
                format!("the bundle cannot be read (at line {line} column {column}); nothing was imported"),
            ),
            BundleError::Version { format, protocol } => (
                format!("ไฟล์ชุดข้อมูลเป็นรุ่น {protocol} ส่วนโปรแกรมนี้อ่านรุ่น {PROTOCOL_VERSION} ไม่ได้นำเข้าอะไรเลย"),
                format!("the bundle is {format} version {protocol}; this faenban reads {} version {PROTOCOL_VERSION}; nothing was imported", bundle::FORMAT),
            ),
            BundleError::Damaged(reason) => (
                format!("ไฟล์ชุดข้อมูลเสียหาย: {reason} (ไม่ได้นำเข้าอะไรเลย)"),
                format!("the bundle is damaged: {reason} (nothing was imported)"),
            ),
        };
        Failure::new(Kind::BadInput, lang, th, en).into()
    })?;
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
