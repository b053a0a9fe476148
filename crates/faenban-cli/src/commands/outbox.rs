//! `faenban outbox list|show|retry`: the changes the server refused, set
//! aside on this laptop with its reason, and sending them again once the
//! cause is fixed.

use anyhow::Result;
use faenban_core::dates::format_buddhist_short;
use faenban_store::sync::HeldChange;
use serde_json::json;

use super::{print_json, short, Context, THAI_OFFSET_MS};
use crate::cli::OutboxCommand;
use crate::failure::{Failure, Kind};
use crate::lang::{field_name_th, kind_th};

/// `faenban outbox …`.
pub fn outbox(context: &mut Context, command: OutboxCommand) -> Result<()> {
    match command {
        OutboxCommand::List => list(context),
        OutboxCommand::Show { sequence } => show(context, sequence),
        OutboxCommand::Retry { sequences } => retry(context, &sequences),
    }
}

fn list(context: &mut Context) -> Result<()> {
    let status = context.store.status()?;
    let held = context.store.held_back()?;
    if context.json {
        return print_json(&json!({
            "waiting": status.unpushed,
            "held_back": held.iter().map(held_json).collect::<Vec<_>>(),
        }));
    }
    let lang = context.lang;
    say!(
        "{} {}",
        lang.pick("รอส่งเซิร์ฟเวอร์:", "waiting for the server:"),
        status.unpushed
    );
    say!(
        "{} {}",
        lang.pick("เซิร์ฟเวอร์ไม่รับ พักไว้:", "refused by the server, set aside:"),
        held.len()
    );
    // One line per record: a new household set aside is one line, not
    // one per field.
    for group in held.chunk_by(|a, b| a.change.record == b.change.record && a.code == b.code) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let numbers = if group.len() == 1 {
            format!("#{}", first.sequence)
        } else {
            format!("#{}–{}", first.sequence, last.sequence)
        };
        let fields = if group.len() == 1 {
            lang.pick(field_name_th(&first.change.field), &first.change.field)
                .to_owned()
        } else {
            format!("{} {}", group.len(), lang.pick("ช่อง", "fields"))
        };
        say!(
            "  {numbers}  {}  {} {} · {fields}  — {}",
            when(first.held_ms),
            lang.pick(
                kind_th(first.change.record.kind.as_str()),
                first.change.record.kind.as_str()
            ),
            short(&first.change.record.id),
            reason(context, first),
        );
    }
    if !held.is_empty() {
        say!(
            "{}",
            lang.pick(
                "ดูรายละเอียด: faenban outbox show <หมายเลข> · เมื่อแก้สาเหตุแล้ว: faenban outbox retry แล้ว faenban sync",
                "details: faenban outbox show <number> · once the cause is fixed: faenban outbox retry, then faenban sync"
            )
        );
    }
    Ok(())
}

fn show(context: &mut Context, sequence: u64) -> Result<()> {
    let lang = context.lang;
    let held = context.store.held_back()?;
    let Some(change) = held.iter().find(|change| change.sequence == sequence) else {
        return Err(Failure::new(
            Kind::NotFound,
            lang,
            format!("ไม่มีการแก้ไขหมายเลข {sequence} ที่พักไว้ ดูรายการด้วย faenban outbox list"),
            format!("no change set aside as number {sequence}; see faenban outbox list"),
        )
        .into());
    };
    if context.json {
        return print_json(&held_json(change));
    }
    say!("#{}", change.sequence);
    say!(
        "{} {} {}",
        lang.pick("ระเบียน:", "record:"),
        lang.pick(
            kind_th(change.change.record.kind.as_str()),
            change.change.record.kind.as_str()
        ),
        change.change.record.id
    );
    say!(
        "{} {}",
        lang.pick("ช่อง:", "field:"),
        lang.pick(field_name_th(&change.change.field), &change.change.field)
    );
    say!("{} {}", lang.pick("ค่า:", "value:"), change.change.value);
    say!(
        "{} {}",
        lang.pick("พักไว้เมื่อ:", "set aside:"),
        when(change.held_ms)
    );
    say!(
        "{} {}",
        lang.pick("เหตุผล:", "reason:"),
        reason(context, change)
    );
    say!(
        "{} {}",
        lang.pick("ข้อความจากเซิร์ฟเวอร์:", "the server said:"),
        change.message
    );
    Ok(())
}

fn retry(context: &mut Context, sequences: &[u64]) -> Result<()> {
    let lang = context.lang;
    let held = context.store.held_back()?;
    if let Some(missing) = sequences
        .iter()
        .find(|sequence| !held.iter().any(|change| change.sequence == **sequence))
    {
        return Err(Failure::new(
            Kind::NotFound,
            lang,
            format!("ไม่มีการแก้ไขหมายเลข {missing} ที่พักไว้ ไม่ได้ส่งใหม่เลย ดูรายการด้วย faenban outbox list"),
            format!("no change set aside as number {missing}; nothing was queued; see faenban outbox list"),
        )
        .into());
    }
    let queued = context
        .store
        .retry_held_back((!sequences.is_empty()).then_some(sequences))?;
    if context.json {
        return print_json(&json!({ "queued": queued }));
    }
    say!(
        "{} {queued} ({})",
        lang.pick("นำกลับเข้าคิวรอส่งแล้ว:", "queued again:"),
        lang.pick("จะส่งเมื่อ faenban sync", "they go at the next faenban sync")
    );
    Ok(())
}

fn held_json(change: &HeldChange) -> serde_json::Value {
    json!({
        "sequence": change.sequence,
        "record_kind": change.change.record.kind.as_str(),
        "record_id": change.change.record.id,
        "field": change.change.field,
        "error": change.code,
        "message": change.message,
        "held_ms": change.held_ms,
    })
}

fn when(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64 + THAI_OFFSET_MS)
        .map(|t| {
            format!(
                "{} {}",
                format_buddhist_short(t.date_naive()),
                t.format("%H:%M")
            )
        })
        .unwrap_or_default()
}

/// The server's reason in the user's language.
fn reason(context: &Context, change: &HeldChange) -> String {
    let th = super::sync::refusal_th(&change.code);
    context.lang.pick(th, &change.code).to_owned()
}
