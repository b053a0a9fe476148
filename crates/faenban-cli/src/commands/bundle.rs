//! `faenban bundle export|import`: a sync that travels as a file, for a
//! laptop with no connection at all. The offline laptop exports its outbox
//! in letters sealed to the server; an online laptop imports the file,
//! syncs (handing the letters to the server, which answers each with a
//! reply sealed to the offline laptop), and exports a bundle back that
//! carries the replies. Only the server and the laptop a reply is for can
//! read what travels.

use std::path::Path;

use anyhow::Context as _;
use faenban_core::sync::{
    ChangeSet, Letter, LetterRun, RunSigning, MAX_BATCH_CHANGES, PROTOCOL_VERSION,
};
use faenban_store::bundle::{
    self, Bundle, BundleError, DecodedBundle, SealedItem, FORMAT, LETTER_RUN_BYTES,
};

use super::{now_ms, write_atomically, Context};
use crate::failure::{Failure, Kind};

/// `faenban bundle export FILE`.
pub fn export(context: &mut Context, file: &Path) -> anyhow::Result<()> {
    super::refuse_damaged(context)?;
    let device = context
        .store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let key = super::sync::device_key(context)?;
    let Some(server) = context.store.server_key()? else {
        return Err(Failure::new(
            Kind::BadInput,
            context.lang,
            "เครื่องนี้ยังไม่เคยเชื่อมต่อเซิร์ฟเวอร์ จึงปิดผนึกไฟล์ชุดข้อมูลถึงเซิร์ฟเวอร์ไม่ได้ ให้รัน faenban login ที่ที่มีสัญญาณสักครั้งก่อน ข้อมูลในเครื่องยังอยู่ครบ",
            "this laptop has never reached the server, so it cannot seal a bundle to it; log in once where there is signal (faenban login); everything recorded is still on this laptop",
        )
        .into());
    };
    let created_ms = now_ms();
    let mut letters = Vec::new();
    let mut pending = 0;
    let run = context.store.outbox_run(usize::MAX >> 1)?;
    let outbox_from = run.as_ref().map_or(u64::MAX, |run| run.first_sequence);
    if let Some(run) = run {
        // Once in a file, these changes may reach the server by another
        // laptop: they keep their stamps from now on.
        context.store.mark_shared(run.last_sequence())?;
        pending = run.changes.len();
        // One signed run per letter, each small enough for one request.
        for piece in run.split(MAX_BATCH_CHANGES, LETTER_RUN_BYTES) {
            letters.push(Letter {
                device: device.id,
                created_ms,
                outbox_from,
                run: Some(LetterRun {
                    first_sequence: piece.first_sequence,
                    changes: ChangeSet::encode(&piece.changes),
                    // A bundle may reach a server of any age, by way of
                    // any laptop: its runs are signed in the form every
                    // server verifies.
                    signature: key
                        .sign_run_as(
                            RunSigning::Json,
                            piece.device,
                            piece.first_sequence,
                            &piece.changes,
                        )
                        .to_string(),
                }),
                pull: None,
            });
        }
    }
    // The last letter asks for what is new since this laptop's last pull.
    let pull = Some(context.store.pull_from()?);
    match letters.last_mut() {
        Some(last) => last.pull = pull,
        None => letters.push(Letter {
            device: device.id,
            created_ms,
            outbox_from,
            run: None,
            pull,
        }),
    }
    let mut sealed = Vec::with_capacity(letters.len());
    for letter in &letters {
        let body = bundle::seal_letter(&key, &server, letter)
            .map_err(|error| anyhow::anyhow!("sealing the bundle: {error}"))?;
        sealed.push(SealedItem {
            device: device.id,
            sealed: faenban_keys::hex(&body),
        });
    }
    let as_items = |carried: Vec<faenban_store::sync::CarriedLetter>| -> Vec<SealedItem> {
        carried
            .into_iter()
            .map(|carried| SealedItem {
                device: carried.item.device,
                sealed: faenban_keys::hex(&carried.item.body),
            })
            .collect()
    };
    let carried_letters = as_items(context.store.carried_letters()?);
    let replies = as_items(context.store.carried_replies()?);
    let (letters_carried, replies_carried) = (carried_letters.len(), replies.len());
    sealed.extend(carried_letters);
    let bundle = Bundle {
        format: FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        from_device: device.id,
        created_ms,
        letters: sealed,
        replies,
    };
    let bytes = bundle::encode(&bundle)?;
    write_atomically(file, |out| {
        out.write_all(&bytes)?;
        Ok(())
    })
    .with_context(|| format!("writing the bundle {}", file.display()))?;
    if context.json {
        say!(
            "{}",
            serde_json::json!({
                "file": file.display().to_string(),
                "outbox_changes": pending,
                "letters_carried": letters_carried,
                "replies_carried": replies_carried,
            })
        );
    } else {
        say!(
            "{} {} ({} {}; {} {}, {} {})",
            context.lang.pick("เขียนไฟล์ชุดข้อมูลแล้ว:", "bundle written:"),
            file.display(),
            pending,
            context
                .lang
                .pick("การแก้ไขรอส่งเซิร์ฟเวอร์", "changes waiting for the server"),
            context
                .lang
                .pick("ฝากส่งต่อ: จดหมาย", "carried for others: letters"),
            letters_carried,
            context.lang.pick("คำตอบ", "replies"),
            replies_carried,
        );
    }
    Ok(())
}

/// `faenban bundle import FILE`.
pub fn import(context: &mut Context, file: &Path) -> anyhow::Result<()> {
    super::refuse_damaged(context)?;
    let bytes =
        std::fs::read(file).with_context(|| format!("opening the bundle {}", file.display()))?;
    let lang = context.lang;
    let decoded = bundle::decode(&bytes).map_err(|error| -> anyhow::Error {
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
    let DecodedBundle { letters, replies } = decoded;
    let own = context
        .store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?
        .id;
    let now = now_ms();
    // Letters of other laptops go on to the server; this laptop's own
    // (a bundle come back) are already in its outbox.
    let letters: Vec<_> = letters
        .into_iter()
        .filter(|item| item.device != own)
        .collect();
    let letters_to_pass = context.store.carry(now, true, letters)?;
    let (own_replies, others): (Vec<_>, Vec<_>) =
        replies.into_iter().partition(|item| item.device == own);
    let replies_to_pass = context.store.carry(now, false, others)?;
    let key = super::sync::device_key(context)?;
    let server = context.store.server_key()?;
    let mut received = faenban_store::sync::Received::default();
    let mut acknowledged = None;
    let mut more = false;
    let mut refused = None;
    let mut unverified = 0;
    let mut held_back = 0;
    for item in own_replies {
        let opened = server
            .as_ref()
            .ok_or(bundle::UnsealError::BadSignature)
            .and_then(|server| bundle::open_reply(&key, own, server, &item.body));
        let Ok(reply) = opened else {
            // Not the server's, or changed on the way: nothing of it is taken.
            unverified += 1;
            continue;
        };
        let taken = context.store.take_reply(now_ms(), reply)?;
        received.new += taken.received.new;
        received.duplicates += taken.received.duplicates;
        acknowledged = acknowledged.max(taken.acknowledged);
        more |= taken.more;
        held_back += taken.held_back;
        if taken.refused.is_some() {
            refused = taken.refused;
        }
    }
    let unpushed = context.store.status()?.unpushed;
    if context.json {
        say!(
            "{}",
            serde_json::json!({
                "new": received.new,
                "already_here": received.duplicates,
                "acknowledged_through": acknowledged,
                "unpushed": unpushed,
                "more_on_server": more,
                "letters_to_pass_on": letters_to_pass,
                "replies_to_pass_on": replies_to_pass,
                "unverified_replies": unverified,
                "held_back": held_back,
            })
        );
    } else {
        let lang = context.lang;
        say!(
            "{} {} ({} {})",
            lang.pick("รับมา:", "received:"),
            received.new,
            received.duplicates,
            lang.pick("มีอยู่แล้ว", "already here"),
        );
        say!("{} {unpushed}", lang.pick("ยังไม่ได้ส่ง:", "still unpushed:"));
        if held_back > 0 {
            say!(
                "{} {held_back} ({})",
                lang.pick(
                    "เซิร์ฟเวอร์ไม่รับ พักไว้ในเครื่อง:",
                    "refused by the server, set aside here:"
                ),
                lang.pick("ดูด้วย faenban outbox list", "see faenban outbox list")
            );
        }
        if more {
            say!(
                "{}",
                lang.pick(
                    "เซิร์ฟเวอร์ยังมีข้อมูลอีก จะมากับไฟล์ชุดข้อมูลรอบหน้า",
                    "the server has more; it comes with the next bundle"
                )
            );
        }
        if letters_to_pass + replies_to_pass > 0 {
            say!(
                "{} {letters_to_pass}, {} {replies_to_pass}",
                lang.pick(
                    "ฝากส่งต่อ (เปิดอ่านไม่ได้): จดหมายถึงเซิร์ฟเวอร์",
                    "to pass on (sealed, unreadable here): letters for the server"
                ),
                lang.pick("คำตอบถึงเครื่องอื่น", "replies for other laptops"),
            );
        }
        if unverified > 0 {
            eprintln!(
                "{} {unverified}",
                lang.pick(
                    "คำตอบที่ยืนยันไม่ได้ว่ามาจากเซิร์ฟเวอร์ ไม่ได้นำเข้า:",
                    "replies that do not verify as the server's, not taken:"
                )
            );
        }
    }
    if let Some(refused) = refused {
        return Err(Failure::new(
            Kind::Refused,
            lang,
            format!(
                "{} ({}: {}) ข้อมูลในเครื่องยังอยู่ครบ",
                super::sync::refusal_th(&refused.error),
                refused.error,
                refused.message
            ),
            format!(
                "the server refused this laptop's changes ({}: {}); everything recorded is still on this laptop",
                refused.error, refused.message
            ),
        )
        .into());
    }
    Ok(())
}
