//! `import`: a household list from CSV (a TPMAP target list, a district's
//! spreadsheet). Every row is checked before anything is written; good rows
//! go in together in one transaction, and every rejected row is reported
//! with its line and reason (and can be written out to fix and re-import).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use faenban_core::csv;
use faenban_core::model::{Household, Member};
use faenban_core::RecordKind;
use faenban_store::Store;
use serde_json::json;
use uuid::Uuid;

use super::household::{household_values, member_values};
use super::{build, now_ms, print_json, write_atomically, Context};
use crate::cli::{HouseholdFields, MemberFields};
use crate::failure::{Failure, Kind};
use crate::lang::Lang;

/// The columns `import` reads: the name in the file (English or Thai, any
/// case) and the field it fills. The last six describe the head of the
/// household, who is added as a member when a first name is given.
const COLUMNS: &[(&str, &[&str])] = &[
    ("house_code", &["house_code", "รหัสประจำบ้าน", "รหัสบ้าน"]),
    ("village", &["village", "village_code", "รหัสหมู่บ้าน"]),
    ("address", &["address", "ที่อยู่", "บ้านเลขที่"]),
    ("entry", &["entry", "ที่มา"]),
    ("classification", &["classification", "กลุ่ม"]),
    ("livelihood", &["livelihood", "อาชีพหลัก"]),
    (
        "welfare_card",
        &["welfare_card", "บัตรสวัสดิการ", "บัตรสวัสดิการแห่งรัฐ"],
    ),
    ("notes", &["notes", "หมายเหตุ"]),
    (
        "national_id",
        &["national_id", "เลขประจำตัวประชาชน", "เลขบัตรประชาชน"],
    ),
    ("title", &["title", "คำนำหน้า"]),
    ("first_name", &["first_name", "ชื่อ"]),
    ("last_name", &["last_name", "นามสกุล"]),
    ("sex", &["sex", "เพศ"]),
    ("birth_date", &["birth_date", "วันเกิด"]),
];

/// Why a row was not imported.
struct Rejected {
    line: usize,
    reason: String,
    fields: Vec<String>,
}

/// A row that passed every check, ready to write.
struct Accepted {
    household: Household,
    head: Option<Member>,
}

/// `faenban import FILE`.
pub fn import(
    context: &mut Context,
    path: &Path,
    dry_run: bool,
    rejects: Option<&Path>,
) -> Result<()> {
    super::refuse_damaged(context)?;
    let lang = context.lang;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = decode_text(&bytes).ok_or_else(|| {
        Failure::new(
            Kind::BadInput,
            lang,
            "ไฟล์นี้ไม่ใช่ข้อความ CSV (อ่านเป็น UTF-8 หรือ TIS-620 ไม่ได้) ใน Excel ให้บันทึกเป็น \"CSV UTF-8\"",
            "this file is not CSV text (neither UTF-8 nor TIS-620); in Excel, save as \"CSV UTF-8\"",
        )
    })?;
    let mut rows = csv::rows(&text);
    let header = match rows.next() {
        Some(Ok(row)) => row,
        _ => {
            return Err(Failure::new(
                Kind::BadInput,
                lang,
                "ไฟล์ไม่มีแถวหัวตาราง (ชื่อคอลัมน์)",
                "the file has no header row (column names)",
            )
            .into())
        }
    };
    let mut column_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ignored = Vec::new();
    for (index, name) in header.fields.iter().enumerate() {
        let name = name.trim().to_lowercase();
        match COLUMNS
            .iter()
            .find(|(_, aliases)| aliases.contains(&name.as_str()))
        {
            Some((field, _)) => {
                column_of.entry(field).or_insert(index);
            }
            None if name.is_empty() => {}
            None => ignored.push(name),
        }
    }
    let missing: Vec<&str> = ["house_code", "village", "address"]
        .into_iter()
        .filter(|c| !column_of.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(
            Kind::BadInput,
            lang,
            format!("ไฟล์ไม่มีคอลัมน์ {} (ดูรูปแบบใน docs/cli.md)", missing.join(", ")),
            format!(
                "the file has no {} column (see docs/cli.md for the format)",
                missing.join(", ")
            ),
        )
        .into());
    }

    let mut accepted: Vec<Accepted> = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut already = Vec::new();
    let mut house_codes_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut national_ids_seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        let row = match row {
            Ok(row) => row,
            Err(broken) => {
                // The row cannot be split into cells; its line is kept whole.
                let raw = text
                    .strip_prefix('\u{feff}')
                    .unwrap_or(&text)
                    .lines()
                    .nth(broken.line - 1)
                    .unwrap_or("");
                rejected.push(Rejected {
                    line: broken.line,
                    reason: lang
                        .pick(broken_row_th(broken.problem), broken.problem)
                        .to_owned(),
                    fields: vec![raw.to_owned()],
                });
                continue;
            }
        };
        // Spreadsheets write empty rows as commas, and may carry empty
        // cells past the last column.
        let mut row = row;
        if row.fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        while row.fields.len() > header.fields.len()
            && row.fields.last().is_some_and(|f| f.trim().is_empty())
        {
            row.fields.pop();
        }
        if row.fields.len() > header.fields.len() {
            rejected.push(Rejected {
                line: row.line,
                reason: match lang {
                    Lang::Th => format!(
                        "มี {} ช่อง แต่หัวตารางมี {} คอลัมน์ (อาจมีจุลภาคเกินในข้อความ)",
                        row.fields.len(),
                        header.fields.len()
                    ),
                    Lang::En => format!(
                        "has {} cells but the header has {} columns (a stray comma?)",
                        row.fields.len(),
                        header.fields.len()
                    ),
                },
                fields: row.fields,
            });
            continue;
        }
        let cell = |name: &str| -> Option<String> {
            let index = *column_of.get(name)?;
            let value = row.fields.get(index)?.trim();
            (!value.is_empty()).then(|| value.to_owned())
        };
        match check_row(lang, &cell) {
            Ok(row_ok) => {
                let code = row_ok.household.house_code.digits().to_owned();
                if let Some(first) = house_codes_seen.get(&code) {
                    rejected.push(Rejected {
                        line: row.line,
                        reason: match lang {
                            Lang::Th => format!("รหัสประจำบ้านซ้ำกับบรรทัด {first}"),
                            Lang::En => format!("the same house code as line {first}"),
                        },
                        fields: row.fields,
                    });
                    continue;
                }
                house_codes_seen.insert(code.clone(), row.line);
                let recorded = context.store.search(&code)?.iter().any(|key| {
                    key.kind == RecordKind::Household
                        && is_house_code_of(&context.store, key, &code)
                });
                if recorded {
                    already.push((row.line, row_ok.household.house_code.to_string()));
                    continue;
                }
                if let Some(id) = row_ok.head.as_ref().and_then(|m| m.national_id.as_ref()) {
                    let digits = id.digits().to_owned();
                    let known = context
                        .store
                        .search(&digits)?
                        .iter()
                        .any(|key| key.kind == RecordKind::Member);
                    let reason = if let Some(first) = national_ids_seen.get(&digits) {
                        Some(match lang {
                            Lang::Th => format!("เลขประจำตัวประชาชนซ้ำกับบรรทัด {first}"),
                            Lang::En => format!("the same national ID as line {first}"),
                        })
                    } else if known {
                        Some(
                            lang.pick(
                                "มีคนที่ใช้เลขประจำตัวประชาชนนี้บันทึกไว้แล้ว",
                                "a person with this national ID is already recorded",
                            )
                            .to_owned(),
                        )
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        house_codes_seen.remove(&code);
                        rejected.push(Rejected {
                            line: row.line,
                            reason,
                            fields: row.fields,
                        });
                        continue;
                    }
                    national_ids_seen.insert(digits, row.line);
                }
                if let Some(reason) = unsendable(context, &row_ok)? {
                    house_codes_seen.remove(&code);
                    rejected.push(Rejected {
                        line: row.line,
                        reason,
                        fields: row.fields,
                    });
                    continue;
                }
                accepted.push(row_ok);
            }
            Err(error) => {
                // The checks speak of command-line flags; a spreadsheet has
                // columns.
                let mut reason = Failure::from_error(lang, error).message;
                for (field, index) in &column_of {
                    let flag = format!("--{}", field.replace('_', "-"));
                    let column = match lang {
                        Lang::Th => format!("คอลัมน์ {}", header.fields[*index].trim()),
                        Lang::En => format!("column {}", header.fields[*index].trim()),
                    };
                    reason = reason.replace(&flag, &column);
                }
                rejected.push(Rejected {
                    line: row.line,
                    reason,
                    fields: row.fields,
                })
            }
        }
    }

    if !dry_run && !accepted.is_empty() {
        context.store.write(now_ms(), |s| {
            for row in &accepted {
                let household = s.create(Uuid::now_v7(), &row.household)?;
                if let Some(head) = &row.head {
                    let mut head = head.clone();
                    head.household = household.id;
                    s.create(Uuid::now_v7(), &head)?;
                }
            }
            Ok(())
        })?;
    }
    if let Some(path) = rejects {
        write_rejects(path, &header.fields, &rejected)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    if context.json {
        print_json(&json!({
            "dry_run": dry_run,
            "imported": if dry_run { 0 } else { accepted.len() },
            "would_import": accepted.len(),
            "already_recorded": already.iter().map(|(line, code)| json!({"line": line, "house_code": code})).collect::<Vec<_>>(),
            "rejected": rejected.iter().map(|r| json!({"line": r.line, "reason": r.reason})).collect::<Vec<_>>(),
            "ignored_columns": ignored,
        }))?;
    } else {
        print_report(lang, dry_run, accepted.len(), &already, &rejected, &ignored);
    }
    let bad = rejected.len();
    match (bad, dry_run) {
        (0, _) => Ok(()),
        (_, true) => Err(Failure::new(
            Kind::BadInput,
            lang,
            format!("{bad} แถวจะไม่ผ่าน (ตรวจอย่างเดียว ยังไม่ได้บันทึกอะไร)"),
            format!("{bad} rows would be rejected (checked only; nothing was written)"),
        )
        .into()),
        (_, false) => Err(Failure::new(
            Kind::BadInput,
            lang,
            format!("{bad} แถวไม่ถูกนำเข้า (แถวที่ถูกต้องนำเข้าแล้ว) แก้แล้วนำเข้าใหม่ได้"),
            format!("{bad} rows were not imported (the good rows were); fix them and import again"),
        )
        .into()),
    }
}

fn print_report(
    lang: Lang,
    dry_run: bool,
    accepted: usize,
    already: &[(usize, String)],
    rejected: &[Rejected],
    ignored: &[String],
) {
    let line_word = lang.pick("บรรทัด", "line");
    if !ignored.is_empty() {
        say!(
            "{} {}",
            lang.pick("ไม่ได้ใช้คอลัมน์:", "columns not used:"),
            ignored.join(", ")
        );
    }
    let skipped = lang.pick("บันทึกไว้แล้ว ข้าม", "already recorded, skipped");
    let mut lines: Vec<(usize, String)> = rejected
        .iter()
        .map(|r| (r.line, r.reason.clone()))
        .chain(
            already
                .iter()
                .map(|(line, code)| (*line, format!("{skipped} {code}"))),
        )
        .collect();
    lines.sort_by_key(|(line, _)| *line);
    for (line, text) in lines {
        say!("{line_word} {line}: {text}");
    }
    say!(
        "{} {accepted}, {} {}, {} {}",
        if dry_run {
            lang.pick("ตรวจแล้ว นำเข้าได้", "checked, would import")
        } else {
            lang.pick("นำเข้าแล้ว", "imported")
        },
        lang.pick("มีอยู่แล้ว", "already recorded"),
        already.len(),
        lang.pick("ไม่ผ่าน", "rejected"),
        rejected.len()
    );
}

/// Checks one row: the household and, when named, its head.
fn check_row(lang: Lang, cell: &dyn Fn(&str) -> Option<String>) -> Result<Accepted> {
    let fields = HouseholdFields {
        house_code: cell("house_code"),
        village: cell("village"),
        address: cell("address"),
        entry: cell("entry").or(Some("tpmap_target".into())),
        classification: cell("classification"),
        livelihood: cell("livelihood"),
        welfare_card: cell("welfare_card"),
        notes: cell("notes"),
        ..HouseholdFields::default()
    };
    let household: Household = build(lang, household_values(lang, &fields)?)?;
    let head = if cell("first_name").is_some() || cell("national_id").is_some() {
        let fields = MemberFields {
            national_id: cell("national_id"),
            title: cell("title"),
            first_name: cell("first_name"),
            last_name: cell("last_name"),
            sex: cell("sex"),
            birth_date: cell("birth_date"),
            relation: Some("head".into()),
            ..MemberFields::default()
        };
        let mut values = member_values(lang, &fields)?;
        // The household's id is made when the row is written.
        values.insert("household".into(), json!(Uuid::nil()));
        Some(build::<Member>(lang, values)?)
    } else {
        None
    };
    Ok(Accepted { household, head })
}

/// Why a row, valid in itself, could never be sent, checked as a command
/// would check it when typed: a value over the size limit, an invisible
/// control character, a village outside the account's areas. `None` when
/// it can go in.
fn unsendable(context: &Context, row: &Accepted) -> Result<Option<String>> {
    let lang = context.lang;
    let mut values: Vec<(String, serde_json::Value)> = Vec::new();
    for record in [serde_json::to_value(&row.household)?]
        .into_iter()
        .chain(row.head.as_ref().map(serde_json::to_value).transpose()?)
    {
        if let serde_json::Value::Object(fields) = record {
            values.extend(fields);
        }
    }
    for (field, value) in &values {
        if faenban_core::limits::check_value(value).is_err() {
            let label = crate::lang::field_name_th(field);
            return Ok(Some(match lang {
                Lang::Th => format!("{label} ยาวเกินกว่าที่เซิร์ฟเวอร์รับได้ (ไม่เกิน 64 KiB)"),
                Lang::En => format!("{field} is longer than the server takes (at most 64 KiB)"),
            }));
        }
        if let Some(c) = value.as_str().and_then(faenban_core::model::hidden_control) {
            let label = crate::lang::field_name_th(field);
            return Ok(Some(match lang {
                Lang::Th => format!("{label} มีอักขระควบคุมที่มองไม่เห็น (U+{:04X})", c as u32),
                Lang::En => format!(
                    "{field} holds the invisible control character U+{:04X}",
                    c as u32
                ),
            }));
        }
    }
    if let Some(scope) = context.store.account_scope()? {
        let village = row.household.village.to_string();
        if scope
            .may_record(&RecordKind::Household, Some(&village), None)
            .is_err()
        {
            return Ok(Some(match lang {
                Lang::Th => format!("หมู่บ้าน {village} ไม่อยู่ในพื้นที่ของบัญชีนี้"),
                Lang::En => format!("village {village} is outside this account's areas"),
            }));
        }
    }
    Ok(None)
}

/// True when the household record `key` has this house code (search terms
/// match by prefix).
fn is_house_code_of(store: &Store, key: &faenban_core::RecordKey, digits: &str) -> bool {
    store
        .record(key)
        .ok()
        .flatten()
        .and_then(|state| state.shown("house_code").cloned())
        .and_then(|value| value.as_str().map(|s| s.replace('-', "")))
        .is_some_and(|code| code == digits)
}

/// The rejected rows with their reason, as CSV to fix in Excel and import
/// again.
fn write_rejects(path: &Path, header: &[String], rejected: &[Rejected]) -> Result<()> {
    let mut out = String::from("\u{feff}line,reason");
    for name in header {
        out.push(',');
        out.push_str(&csv::cell(name));
    }
    out.push('\n');
    for row in rejected {
        out.push_str(&row.line.to_string());
        out.push(',');
        out.push_str(&csv::cell(&row.reason));
        for field in &row.fields {
            out.push(',');
            out.push_str(&csv::cell(field));
        }
        out.push('\n');
    }
    write_atomically(path, |file| Ok(file.write_all(out.as_bytes())?))
}

fn broken_row_th(problem: &str) -> &'static str {
    match problem {
        "a quote in the middle of an unquoted field" => {
            "มีเครื่องหมายคำพูด (\") กลางช่องที่ไม่ได้ครอบด้วยคำพูด"
        }
        "text after the closing quote of a field" => "มีข้อความต่อท้ายหลังเครื่องหมายคำพูดปิด",
        _ => "เปิดเครื่องหมายคำพูด (\") แล้วไม่ได้ปิด",
    }
}

/// Reads a file's text: UTF-8 (with or without a byte-order mark), or else
/// TIS-620 / Windows-874, which Thai Windows and older Excel write.
fn decode_text(bytes: &[u8]) -> Option<String> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Some(text.to_owned());
    }
    bytes.iter().map(|&b| windows_874(b)).collect()
}

/// One byte of Windows-874 (TIS-620 plus a few punctuation marks).
fn windows_874(byte: u8) -> Option<char> {
    let code = match byte {
        0x00..=0x7F => u32::from(byte),
        0x80 => 0x20AC,
        0x85 => 0x2026,
        0x91 => 0x2018,
        0x92 => 0x2019,
        0x93 => 0x201C,
        0x94 => 0x201D,
        0x95 => 0x2022,
        0x96 => 0x2013,
        0x97 => 0x2014,
        0xA0 => 0x00A0,
        0xA1..=0xDA | 0xDF..=0xFB => u32::from(byte) - 0xA0 + 0x0E00,
        _ => return None,
    };
    char::from_u32(code)
}

#[cfg(test)]
mod tests {
    use super::decode_text;

    #[test]
    fn thai_windows_files_are_read() {
        // "บ้าน" in TIS-620, then a comma and ASCII.
        let bytes = [0xBA, 0xE9, 0xD2, 0xB9, b',', b'1'];
        assert_eq!(decode_text(&bytes).as_deref(), Some("บ้าน,1"));
        assert_eq!(decode_text("บ้าน".as_bytes()).as_deref(), Some("บ้าน"));
        // A byte no Thai code page uses.
        assert_eq!(decode_text(&[0xFF, 0xFE, 0x00]), None);
    }
}
