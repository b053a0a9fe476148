//! `history` and `conflicts`: what happened to a record, and settling disagreements.

use anyhow::{Context as _, Result};
use faenban_core::dates::format_buddhist_short;
use faenban_core::merge::Conflict;
use faenban_core::model::{check_field, Assistance, Household, Member};
use faenban_core::RecordKind;
use serde_json::Value;

use super::{
    bad_input, find_any, now_ms, print_json, report_changes, short, Context, THAI_OFFSET_MS,
};
use crate::cli::ConflictsCommand;
use crate::failure::{Failure, Kind};
use crate::lang::Lang;

/// `faenban history`.
pub fn history(context: &mut Context, id: &str) -> Result<()> {
    let lang = context.lang;
    let key = find_any(&context.store, lang, id)?;
    let changes = context.store.history(&key)?;
    if context.json {
        return print_json(&changes);
    }
    let own = context.store.device()?.map(|device| device.id);
    let names = context.store.device_names()?;
    say!("{} {}", kind_label(lang, &key.kind), key.id);
    for change in &changes {
        let when = chrono::DateTime::from_timestamp_millis(
            change.stamp.hlc.wall_ms as i64 + THAI_OFFSET_MS,
        )
        .map(|t| {
            format!(
                "{} {}",
                format_buddhist_short(t.date_naive()),
                t.format("%H:%M:%S")
            )
        })
        .unwrap_or_default();
        let restamped = if change.was_restamped() {
            lang.pick("  (ปรับเวลาแล้ว)", "  (re-stamped)")
        } else {
            ""
        };
        say!(
            "  {when}  {}  {} = {}{restamped}",
            device_label(lang, own, &names, change.author()),
            field_label(lang, &change.field),
            value_text(lang, &change.field, &change.value)
        );
    }
    Ok(())
}

/// `faenban conflicts …`.
pub fn conflicts(context: &mut Context, command: ConflictsCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        ConflictsCommand::List => {
            let conflicts = context.store.conflicts()?;
            if context.json {
                return print_json(&conflicts);
            }
            if conflicts.is_empty() {
                say!("{}", lang.pick("ไม่มีข้อขัดแย้ง", "no conflicts"));
            }
            for conflict in &conflicts {
                match conflict {
                    Conflict::Values {
                        record,
                        field,
                        candidates,
                    } => say!(
                        "{} {}  {}  {} {}",
                        kind_label(lang, &record.kind),
                        short(&record.id),
                        field_label(lang, field),
                        candidates.len(),
                        lang.pick("ค่า", "values")
                    ),
                    Conflict::EditDuringArchive { record, .. } => say!(
                        "{} {}  {}",
                        kind_label(lang, &record.kind),
                        short(&record.id),
                        lang.pick("ถูกปิดแฟ้มขณะที่มีคนแก้ไข", "archived while someone edited it")
                    ),
                }
            }
            Ok(())
        }
        ConflictsCommand::Show { id } => {
            let own = context.store.device()?.map(|device| device.id);
            let names = context.store.device_names()?;
            let key = find_any(&context.store, lang, &id)?;
            let state = context.store.record(&key)?.context("record vanished")?;
            let conflicts = state.conflicts(&key);
            if context.json {
                return print_json(&conflicts);
            }
            if conflicts.is_empty() {
                say!(
                    "{}",
                    lang.pick("ระเบียนนี้ไม่มีข้อขัดแย้ง", "this record has no conflict")
                );
            }
            for conflict in &conflicts {
                match conflict {
                    Conflict::Values {
                        field, candidates, ..
                    } => {
                        let name = match lang {
                            Lang::Th => crate::lang::field_name_th(field),
                            Lang::En => field.as_str(),
                        };
                        say!("{name}:");
                        for (number, entry) in candidates.iter().enumerate() {
                            let shown = if number + 1 == candidates.len() {
                                lang.pick("  (แสดงอยู่)", "  (shown)")
                            } else {
                                ""
                            };
                            say!(
                                "  [{}] {}  {} {}{shown}",
                                number + 1,
                                value_text(lang, field, &entry.value),
                                lang.pick("จาก", "from"),
                                device_label(lang, own, &names, entry.author())
                            );
                        }
                    }
                    Conflict::EditDuringArchive { unseen_edits, .. } => {
                        say!(
                            "{}",
                            lang.pick(
                                "ระเบียนถูกปิดแฟ้ม แต่มีการแก้ไขที่ผู้ปิดแฟ้มไม่เห็น:",
                                "archived, but edited by someone who had not seen the archive:"
                            )
                        );
                        for (field, _) in unseen_edits {
                            say!(
                                "  {} = {}",
                                field_label(lang, field),
                                value_text(
                                    lang,
                                    field,
                                    &state.shown(field).cloned().unwrap_or(Value::Null)
                                )
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        ConflictsCommand::Resolve {
            id,
            field,
            keep,
            value,
            archive,
            keep_active,
        } => {
            let key = find_any(&context.store, lang, &id)?;
            let state = context.store.record(&key)?.context("record vanished")?;
            let conflicts = state.conflicts(&key);
            let not_in_conflict = || -> anyhow::Error {
                Failure::new(
                    Kind::Conflict,
                    lang,
                    "ไม่มีข้อขัดแย้งที่จะแก้",
                    "there is no such conflict to resolve",
                )
                .into()
            };
            if archive || keep_active {
                if !conflicts
                    .iter()
                    .any(|c| matches!(c, Conflict::EditDuringArchive { .. }))
                {
                    return Err(not_in_conflict());
                }
                let change = context.store.write(now_ms(), |s| {
                    if archive {
                        s.archive(&key)
                    } else {
                        s.restore(&key)
                    }
                })?;
                return report_changes(context, &[change]);
            }
            let field = match field {
                Some(field) => field,
                None => match conflicts.as_slice() {
                    [Conflict::Values { field, .. }] => field.to_string(),
                    _ => {
                        return Err(bad_input(
                            lang,
                            "ระบุ --field ของข้อขัดแย้ง",
                            "give the --field in conflict",
                        ))
                    }
                },
            };
            let Some(Conflict::Values { candidates, .. }) = conflicts
                .iter()
                .find(|c| matches!(c, Conflict::Values { field: f, .. } if f == &field))
            else {
                return Err(not_in_conflict());
            };
            let chosen = match (keep, value) {
                (Some(number), None) => candidates
                    .get(number.wrapping_sub(1))
                    .map(|e| e.value.clone())
                    .ok_or_else(|| {
                        bad_input(
                            lang,
                            format!("ไม่มีค่าลำดับที่ {number}"),
                            format!("there is no value number {number}"),
                        )
                    })?,
                (None, Some(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                _ => {
                    return Err(bad_input(
                        lang,
                        "ระบุ --keep หมายเลข หรือ --value ค่าใหม่",
                        "give --keep NUMBER or --value VALUE",
                    ))
                }
            };
            let change = context.store.write(now_ms(), |s| {
                let current = s.require(&key)?;
                let checked = match key.kind {
                    RecordKind::Household => {
                        check_field::<Household>(Some(&current), &field, chosen)?
                    }
                    RecordKind::Member => check_field::<Member>(Some(&current), &field, chosen)?,
                    RecordKind::Assistance => {
                        check_field::<Assistance>(Some(&current), &field, chosen)?
                    }
                    _ => chosen,
                };
                s.set(&key, &field, checked)
            })?;
            report_changes(context, &[change])
        }
    }
}

/// A record kind as the reader calls it.
fn kind_label(lang: Lang, kind: &RecordKind) -> String {
    match lang {
        Lang::Th => crate::lang::kind_th(kind.as_str()).to_owned(),
        Lang::En => kind.to_string(),
    }
}

/// A field by its label (Thai), or its name with spaces (English).
fn field_label(lang: Lang, field: &str) -> String {
    match lang {
        Lang::Th => crate::lang::field_name_th(field).to_owned(),
        Lang::En => field.replace('_', " "),
    }
}

/// A stored value as a reader reads it: text without quotes, codes by
/// their Thai words, nothing as a dash.
fn value_text(lang: Lang, field: &str, value: &Value) -> String {
    let code = match value {
        Value::Null => return "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        other => other.to_string(),
    };
    match lang {
        Lang::Th => crate::lang::value_th(field, &code)
            .map(str::to_owned)
            .unwrap_or(code),
        Lang::En => code,
    }
}

/// Who made a change: this laptop, or another by the name it gave and its
/// account's (as pulls name them), or else by the start of its id.
fn device_label(
    lang: Lang,
    own: Option<faenban_core::DeviceId>,
    names: &std::collections::HashMap<faenban_core::DeviceId, (String, String)>,
    author: faenban_core::DeviceId,
) -> String {
    if own == Some(author) {
        return lang.pick("เครื่องนี้", "this laptop").to_owned();
    }
    match names.get(&author) {
        Some((name, account)) if name != account => format!("{name} ({account})"),
        Some((name, _)) => name.clone(),
        None => format!("{} {}", lang.pick("เครื่อง", "laptop"), short(&author)),
    }
}
