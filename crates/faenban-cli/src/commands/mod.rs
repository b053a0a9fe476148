//! What each command does: turn flags into values, call the store and the
//! core, and print the result for a person or as JSON.

use std::path::Path;

use anyhow::Result;
use chrono::NaiveDate;
use faenban_core::areas::Areas;
use faenban_core::codes::AreaCode;
use faenban_core::dates::format_buddhist_short;
use faenban_core::dates::parse_date_field;
use faenban_core::model::{
    assess_visit, check_field, decode, latest_visits, menu_item, Assistance, AssistanceStatus,
    Member, RecordType, Visit,
};
use faenban_core::{
    Assessment, Baht, Catalogues, Change, Dimension, RecordId, RecordKey, RecordKind, RecordState,
};
use faenban_store::{Session, Store};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::failure::{Failure, Kind};
use crate::lang::{field_name_th, Lang};

/// Prints a line to stdout. A reader that went away (`faenban … | head`)
/// ends the program quietly instead of with a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

// After `say!`: macros are visible only below their definition.
mod assist;
mod bundle;
mod device;
mod export;
mod household;
mod import;
mod outbox;
mod pairs;
mod records;
mod report;
mod survey;
mod sync;

pub use assist::assist;
use device::refuse_damaged;
pub use device::{check, init, status};
pub use export::export;
pub use household::{household, member};
pub use import::import;
pub use outbox::outbox;
pub use pairs::{official, pair, pairs};
pub use records::{conflicts, history};
pub use report::{report, ReportArgs};
pub use survey::survey;
pub use sync::{login, sync};

/// `faenban bundle export|import`.
pub mod bundles {
    pub use super::bundle::{export, import};
}

/// The shipped catalogues, parsed once per run: an export assesses every
/// household's latest visit against them.
fn builtin_catalogues() -> &'static Catalogues {
    static CATALOGUES: std::sync::OnceLock<Catalogues> = std::sync::OnceLock::new();
    CATALOGUES.get_or_init(Catalogues::builtin)
}

/// The shipped area lists, read once per run.
fn builtin_areas() -> &'static Areas {
    static AREAS: std::sync::OnceLock<Areas> = std::sync::OnceLock::new();
    AREAS.get_or_init(Areas::builtin)
}

/// Checks an area code's syntax and that the area exists.
fn area_code(lang: Lang, text: &str, village: bool) -> Result<AreaCode> {
    let code = if village {
        AreaCode::parse_village(text)
    } else {
        AreaCode::parse(text)
    };
    let code = code
        .and_then(|code| builtin_areas().check(&code).map(|()| code))
        .map_err(|e| Failure::invalid(lang, &e))?;
    Ok(code)
}

/// Thailand's offset from UTC; it keeps no daylight saving time.
const THAI_OFFSET_MS: i64 = 7 * 3_600_000;

/// What every command needs.
pub struct Context {
    /// The open database.
    pub store: Store,
    /// The user's language.
    pub lang: Lang,
    /// Print JSON instead of text.
    pub json: bool,
}

/// The laptop's clock, in milliseconds since the epoch.
///
/// `FAENBAN_CLOCK_SKEW_MS` (signed) moves it, to simulate a laptop whose
/// clock is wrong; the tests use it for clocks that say 2015 or 2035.
pub fn now_ms() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let skew = std::env::var("FAENBAN_CLOCK_SKEW_MS")
        .ok()
        .and_then(|value| value.trim().parse::<i64>().ok())
        .unwrap_or(0);
    real.saturating_add_signed(skew)
}

/// Today's date in Thailand.
fn today() -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(now_ms() as i64 + THAI_OFFSET_MS)
        .map_or(NaiveDate::MIN, |t| t.date_naive())
}

fn bad_input(lang: Lang, th: impl AsRef<str>, en: impl AsRef<str>) -> anyhow::Error {
    Failure::new(Kind::BadInput, lang, th, en).into()
}

fn yes_no(lang: Lang, field: &str, text: &str) -> Result<bool> {
    match text.trim().to_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "มี" | "ใช่" => Ok(true),
        "no" | "n" | "false" | "0" | "ไม่มี" | "ไม่ใช่" => Ok(false),
        _ => Err(bad_input(
            lang,
            format!("{field}: `{text}` ต้องเป็น yes หรือ no"),
            format!("{field}: `{text}` is not yes or no"),
        )),
    }
}

fn money(lang: Lang, field: &'static str, text: &str) -> Result<Value> {
    let amount = Baht::parse_field(text, field).map_err(|e| Failure::invalid(lang, &e))?;
    Ok(json!(amount))
}

/// A date that cannot be later than today (a birth, a visit already made).
fn past_date(lang: Lang, field: &'static str, text: &str) -> Result<NaiveDate> {
    let date = parse_date_field(text, field).map_err(|e| Failure::invalid(lang, &e))?;
    if date > today() {
        return Err(bad_input(
            lang,
            format!(
                "{} ไม่ถูกต้อง: เป็นวันในอนาคต — ที่ถูกต้องคือ วันที่ไม่เกินวันนี้",
                field_name_th(field)
            ),
            format!("{field}: is in the future; expected a date no later than today"),
        ));
    }
    Ok(date)
}

/// The date of something that happened (a visit, assistance given): not
/// later than today, not before [`EARLIEST_EVENT`].
///
/// [`EARLIEST_EVENT`]: faenban_core::dates::EARLIEST_EVENT
fn event_date(lang: Lang, field: &'static str, text: &str) -> Result<NaiveDate> {
    let date = past_date(lang, field, text)?;
    let earliest = faenban_core::dates::EARLIEST_EVENT;
    if date < earliest {
        return Err(bad_input(
            lang,
            format!(
                "{} ไม่ถูกต้อง: ก่อนวันที่ {} — ที่ถูกต้องคือ วันที่ตั้งแต่ {} จนถึงวันนี้ (ตรวจปี พ.ศ. อีกครั้ง)",
                field_name_th(field),
                faenban_core::dates::format_buddhist_short(earliest),
                faenban_core::dates::format_buddhist_short(earliest)
            ),
            format!("{field}: is before {earliest}; expected a date from {earliest} to today (check the year)"),
        ));
    }
    Ok(date)
}

/// A record type built from a map of values, or a clear bad-input failure.
fn build<T: RecordType>(lang: Lang, values: Map<String, Value>) -> Result<T> {
    serde_json::from_value(Value::Object(values.clone())).map_err(|error| {
        let text = error.to_string();
        let quoted: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
        if text.starts_with("missing field") {
            let field = quoted.first().copied().unwrap_or("?");
            let flag = field.replace('_', "-");
            return bad_input(
                lang,
                format!("ยังไม่ได้ระบุ{} (--{flag})", field_name_th(field)),
                format!("--{flag} is required"),
            );
        }
        if let (true, Some((given, allowed))) =
            (text.starts_with("unknown variant"), quoted.split_first())
        {
            let field = values
                .iter()
                .find(|(_, v)| v.as_str() == Some(given))
                .map_or("?", |(k, _)| k.as_str());
            let flag = field.replace('_', "-");
            return bad_input(
                lang,
                format!(
                    "{} (--{flag}) `{given}` ใช้ไม่ได้ ต้องเป็นหนึ่งใน {}",
                    field_name_th(field),
                    allowed.join(", ")
                ),
                format!("--{flag} `{given}` is not one of {}", allowed.join(", ")),
            );
        }
        bad_input(
            lang,
            format!("ข้อมูลไม่ครบหรือไม่ถูกต้อง: {error}"),
            format!("missing or invalid value: {error}"),
        )
    })
}

/// Writes each given field of an existing record, checking it first.
fn edit_fields<T: RecordType>(
    session: &mut Session<'_>,
    key: &RecordKey,
    values: Map<String, Value>,
) -> faenban_store::Result<Vec<Change>> {
    let mut changes = Vec::new();
    for (field, value) in values {
        let current = session.require(key)?;
        let value = check_field::<T>(Some(&current), &field, value)?;
        // Writing a value that is already shown, with nothing in conflict,
        // is not a change.
        let settled = current
            .field(&field)
            .is_some_and(|f| !f.in_conflict() && f.shown().map(|e| &e.value) == Some(&value));
        if !settled {
            changes.push(session.set(key, &field, value)?);
        }
    }
    Ok(changes)
}

/// Creates a record in one transaction and says so (`what` names it).
fn add_record<T: RecordType>(
    context: &mut Context,
    record: &T,
    added: (&str, &str),
    what: &str,
) -> Result<()> {
    let key = context
        .store
        .write(now_ms(), |s| s.create(Uuid::now_v7(), record))?;
    if context.json {
        return print_json(&json!({ "id": key.id }));
    }
    let lang = context.lang;
    say!(
        "{} {what} ({} {})",
        lang.pick(added.0, added.1),
        lang.pick("รหัส", "id"),
        short(&key.id)
    );
    Ok(())
}

/// Changes the given fields of an existing record in one transaction.
fn edit_record<T: RecordType>(
    context: &mut Context,
    key: &RecordKey,
    values: Map<String, Value>,
) -> Result<()> {
    if values.is_empty() {
        return Err(bad_input(
            context.lang,
            "ไม่ได้ระบุข้อมูลที่จะแก้ไข",
            "no field to change was given",
        ));
    }
    let changes = context
        .store
        .write(now_ms(), |s| edit_fields::<T>(s, key, values))?;
    report_changes(context, &changes)
}

/// The last 8 characters of an id: the random part of a UUIDv7, which is
/// what tells records (and devices) made at the same moment apart.
fn short(id: &impl std::fmt::Display) -> String {
    let text = id.to_string();
    text[text.len().saturating_sub(8)..].to_owned()
}

/// Finds a record from what a person typed: a full id, the last 6 or more
/// characters of one, or (for households) a house code.
pub fn resolve(store: &Store, lang: Lang, kind: RecordKind, text: &str) -> Result<RecordKey> {
    if let Ok(id) = Uuid::parse_str(text.trim()) {
        let key = RecordKey::new(kind.clone(), id);
        if store.record(&key)?.is_some() {
            return Ok(key);
        }
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if kind == RecordKind::Household && digits.len() == 11 {
        let found = households_with_code(store, &digits, None)?;
        match found.as_slice() {
            [key] => return Ok(key.clone()),
            [] => {}
            // Two laptops recorded the same house before either synced:
            // both stay reachable, by their own ids.
            several => {
                let listed: Vec<String> = several
                    .iter()
                    .map(|key| {
                        let address = store
                            .record(key)
                            .ok()
                            .flatten()
                            .and_then(|state| {
                                state
                                    .shown("address")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            })
                            .unwrap_or_default();
                        format!("{} ({address})", key.id)
                    })
                    .collect();
                return Err(Failure::new(
                    Kind::Conflict,
                    lang,
                    format!(
                        "รหัสประจำบ้าน {} มี {} ครัวเรือน: {} ให้ใช้รหัสครัวเรือนแทน และปิดแฟ้ม (household archive) ครัวเรือนที่ซ้ำ",
                        text.trim(),
                        several.len(),
                        listed.join(", ")
                    ),
                    format!(
                        "house code {} is recorded for {} households: {}; give the household's id instead, and archive the duplicate",
                        text.trim(),
                        several.len(),
                        listed.join(", ")
                    ),
                )
                .into());
            }
        }
    }
    let trimmed = text.trim();
    if trimmed.len() >= 6 {
        let found = store.find_by_id_suffix(&kind, trimmed)?;
        match found.as_slice() {
            [key] => return Ok(key.clone()),
            [] => {}
            _ => {
                return Err(bad_input(
                    lang,
                    format!("`{trimmed}` ตรงกับหลายรายการ ให้พิมพ์รหัสให้ยาวขึ้น"),
                    format!("`{trimmed}` matches several records; type more of the id"),
                ))
            }
        }
    }
    Err(Failure::new(
        Kind::NotFound,
        lang,
        format!("ไม่พบ{} `{trimmed}`", crate::lang::kind_th(kind.as_str())),
        format!("no {kind} `{trimmed}`"),
    )
    .into())
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    write_stdout(|out| {
        serde_json::to_writer_pretty(&mut *out, value)?;
        out.write_all(b"\n")?;
        Ok(())
    })
}

fn report_changes(context: &Context, changes: &[Change]) -> Result<()> {
    if context.json {
        let stamps: Vec<Value> = changes
            .iter()
            .map(|c| json!({ "record": c.record.id, "field": c.field, "value": c.value }))
            .collect();
        return print_json(&json!({ "changes": stamps }));
    }
    let lang = context.lang;
    if changes.is_empty() {
        say!("{}", lang.pick("ไม่มีอะไรเปลี่ยน", "nothing changed"));
    }
    for change in changes {
        say!(
            "{} {}.{} = {}",
            lang.pick("บันทึก", "saved"),
            short(&change.record.id),
            change.field,
            change.value
        );
    }
    Ok(())
}

fn members_of(
    store: &Store,
    household: RecordId,
) -> Result<Vec<faenban_core::model::Record<Member>>> {
    let mut members = Vec::new();
    for (key, state) in store.records_of_household(&RecordKind::Member, household)? {
        if let Ok(member) = decode::<Member>(&key, &state) {
            if !member.archived {
                members.push(member);
            }
        }
    }
    Ok(members)
}

fn latest_visit(store: &Store, household: RecordId) -> Result<Option<(Visit, RecordState)>> {
    let visits = store.records_of_household(&RecordKind::Visit, household)?;
    Ok(latest_visits(visits).remove(&household))
}

fn assess(visit: &Visit, state: &RecordState, welfare_card: bool) -> Result<Assessment> {
    Ok(assess_visit(
        builtin_catalogues(),
        visit,
        state,
        welfare_card,
    )?)
}

fn yes_no_text(lang: Lang, value: bool) -> &'static str {
    match (lang, value) {
        (Lang::Th, true) => "ใช่",
        (Lang::Th, false) => "ไม่ใช่",
        (Lang::En, true) => "yes",
        (Lang::En, false) => "no",
    }
}

/// `text` followed by spaces to fill `width` columns on a terminal. Thai
/// vowel and tone marks written above or below a letter take no column of
/// their own, so counting characters would misalign Thai.
fn pad(text: &str, width: usize) -> String {
    let columns = text
        .chars()
        .filter(|c| !matches!(c, '\u{0E31}' | '\u{0E34}'..='\u{0E3A}' | '\u{0E47}'..='\u{0E4E}'))
        .count();
    format!("{text}{}", " ".repeat(width.saturating_sub(columns)))
}

/// One assistance record as a line: date, dimension, what (the menu's
/// words when it is a menu item), amount and how far it got.
fn assistance_line(lang: Lang, help: &Assistance) -> String {
    let item = menu_item(&help.item).map_or(help.item.as_str(), |m| lang.pick(m.th, m.en));
    let amount = help
        .amount
        .map(|a| format!("{} {}", a.grouped(), lang.pick("บาท", "baht")))
        .unwrap_or_default();
    let status = match help.status {
        AssistanceStatus::Planned => lang.pick("วางแผนไว้", "planned"),
        AssistanceStatus::InProgress => lang.pick("กำลังดำเนินการ", "in progress"),
        AssistanceStatus::Done => lang.pick("เสร็จแล้ว", "done"),
    };
    format!(
        "{}  {}  {item}  {amount}  {status}",
        format_buddhist_short(help.date),
        dimension_name(lang, help.dimension)
    )
}

fn dimension_name(lang: Lang, dimension: Dimension) -> &'static str {
    match lang {
        Lang::Th => dimension.name_th(),
        Lang::En => dimension.name_en(),
    }
}

/// The households recorded with this house code (11 digits), other than
/// `except`.
pub(crate) fn households_with_code(
    store: &Store,
    digits: &str,
    except: Option<&RecordKey>,
) -> Result<Vec<RecordKey>> {
    // An archived household keeps its code: restore it rather than add it again.
    records_with(
        store,
        RecordKind::Household,
        "house_code",
        digits,
        except,
        true,
    )
}

/// The people recorded with this national ID (13 digits), other than `except`.
pub(crate) fn members_with_national_id(
    store: &Store,
    digits: &str,
    except: Option<&RecordKey>,
) -> Result<Vec<RecordKey>> {
    // A member removed (archived) may be added again elsewhere: a person who moved.
    records_with(
        store,
        RecordKind::Member,
        "national_id",
        digits,
        except,
        false,
    )
}

/// The records of `kind` other than `except` (and, unless `archived_too`,
/// not archived) whose `field` holds this code (its digits, dashes aside).
/// Search terms match by prefix, so the field itself is compared.
fn records_with(
    store: &Store,
    kind: RecordKind,
    field: &str,
    digits: &str,
    except: Option<&RecordKey>,
    archived_too: bool,
) -> Result<Vec<RecordKey>> {
    let mut found = Vec::new();
    for key in store.search(digits)? {
        if key.kind != kind || Some(&key) == except {
            continue;
        }
        let Some(state) = store.record(&key)? else {
            continue;
        };
        let code = state
            .shown(field)
            .and_then(Value::as_str)
            .map(|code| code.replace('-', ""));
        let archived = state
            .shown("archived")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if code.as_deref() == Some(digits) && (archived_too || !archived) {
            found.push(key);
        }
    }
    Ok(found)
}

fn find_any(store: &Store, lang: Lang, text: &str) -> Result<RecordKey> {
    for kind in RecordKind::KNOWN {
        if let Ok(key) = resolve(store, lang, kind, text) {
            return Ok(key);
        }
    }
    Err(Failure::new(
        Kind::NotFound,
        lang,
        format!("ไม่พบระเบียน `{text}`"),
        format!("no record `{text}`"),
    )
    .into())
}

/// Writes a file so that it is either the old one or the whole new one,
/// never half: write beside it, flush to disk, then rename over it.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
) -> Result<()> {
    // Beside the target, named so that it can never be the target itself.
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    let temporary = path.with_file_name(name);
    let file = std::fs::File::create(&temporary)?;
    let mut writer = std::io::BufWriter::new(file);
    let written = write(&mut writer).and_then(|()| {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    if let Err(error) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(anyhow::Error::new(error).context(format!(
            "replacing {} (is it open in another program, such as Excel?)",
            path.display()
        )));
    }
    Ok(())
}

/// Streams output to stdout; a reader that went away ends the program
/// quietly, as with [`say!`].
fn write_stdout(write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut writer = std::io::BufWriter::new(stdout.lock());
    let result = write(&mut writer).and_then(|()| Ok(writer.flush()?));
    match result {
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::exit(0)
        }
        other => other,
    }
}
