//! What each command does: turn flags into values, call the store and the
//! core, and print the result for a person or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use chrono::NaiveDate;
use faenban_core::catalogue::{HouseholdProfile, VisitAnswers};
use faenban_core::codes::{AreaCode, HouseCode, NationalId};
use faenban_core::dates::{age_on, format_buddhist_short, parse_date_field};
use faenban_core::merge::Conflict;
use faenban_core::model::{
    answer_field, check_field, decode, visit_answers, Assistance, Household, Member, RecordType,
    Visit,
};
use faenban_core::{
    Answer, Assessment, Baht, Catalogues, Change, Dimension, RecordId, RecordKey, RecordKind,
    RecordState,
};
use faenban_store::{Session, Store};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::cli::{
    AssistCommand, ConflictsCommand, ExportFormat, HouseholdCommand, HouseholdFields,
    MemberCommand, MemberFields, SurveyArgs,
};
use crate::failure::{Failure, Kind};
use crate::lang::Lang;

/// Prints a line to stdout. A reader that went away (`faenban … | head`)
/// ends the program quietly instead of with a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

fn emit(text: &str) {
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

/// The shipped catalogues, parsed once per run: an export assesses every
/// household's latest visit against them.
fn builtin_catalogues() -> &'static Catalogues {
    static CATALOGUES: std::sync::OnceLock<Catalogues> = std::sync::OnceLock::new();
    CATALOGUES.get_or_init(Catalogues::builtin)
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
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

fn date(lang: Lang, field: &'static str, text: &str) -> Result<Value> {
    let date = parse_date_field(text, field).map_err(|e| Failure::invalid(lang, &e))?;
    Ok(json!(date))
}

fn household_values(lang: Lang, fields: &HouseholdFields) -> Result<Map<String, Value>> {
    let mut values = Map::new();
    let text = [
        ("house_code", &fields.house_code),
        ("village", &fields.village),
        ("address", &fields.address),
        ("entry", &fields.entry),
        ("classification", &fields.classification),
        ("livelihood", &fields.livelihood),
        ("status", &fields.status),
        ("notes", &fields.notes),
    ];
    for (name, value) in text {
        if let Some(value) = value {
            values.insert(name.into(), json!(value.trim()));
        }
    }
    // Codes are checked here so the error names the field in the user's language.
    if let Some(code) = &fields.house_code {
        let code = HouseCode::parse(code).map_err(|e| Failure::invalid(lang, &e))?;
        values.insert("house_code".into(), json!(code));
    }
    if let Some(code) = &fields.village {
        let code = AreaCode::parse_village(code).map_err(|e| Failure::invalid(lang, &e))?;
        values.insert("village".into(), json!(code));
    }
    if let Some(card) = &fields.welfare_card {
        values.insert(
            "welfare_card".into(),
            json!(yes_no(lang, "welfare_card", card)?),
        );
    }
    if let Some(location) = &fields.location {
        let parsed = location.split_once(',').and_then(|(lat, lon)| {
            Some((
                lat.trim().parse::<f64>().ok()?,
                lon.trim().parse::<f64>().ok()?,
            ))
        });
        let Some((lat, lon)) = parsed else {
            return Err(bad_input(
                lang,
                "พิกัดต้องเขียนเป็น ละติจูด,ลองจิจูด เช่น 16.44,102.83",
                "location must be LAT,LON, e.g. 16.44,102.83",
            ));
        };
        values.insert("location".into(), json!({ "lat": lat, "lon": lon }));
    }
    Ok(values)
}

fn member_values(lang: Lang, fields: &MemberFields) -> Result<Map<String, Value>> {
    let mut values = Map::new();
    let text = [
        ("national_id", &fields.national_id),
        ("title", &fields.title),
        ("first_name", &fields.first_name),
        ("last_name", &fields.last_name),
        ("sex", &fields.sex),
        ("relation", &fields.relation),
        ("education", &fields.education),
        ("occupation", &fields.occupation),
    ];
    for (name, value) in text {
        if let Some(value) = value {
            values.insert(name.into(), json!(value.trim()));
        }
    }
    if let Some(id) = &fields.national_id {
        let id = NationalId::parse(id).map_err(|e| Failure::invalid(lang, &e))?;
        values.insert("national_id".into(), json!(id));
    }
    if let Some(birth) = &fields.birth_date {
        values.insert("birth_date".into(), date(lang, "birth_date", birth)?);
    }
    if let Some(income) = &fields.income {
        values.insert(
            "income_per_year".into(),
            money(lang, "income_per_year", income)?,
        );
    }
    for (name, value) in [
        ("disability", &fields.disability),
        ("chronic_illness", &fields.chronic_illness),
        ("welfare_card", &fields.welfare_card),
    ] {
        if let Some(value) = value {
            values.insert(name.into(), json!(yes_no(lang, name, value)?));
        }
    }
    Ok(values)
}

/// A record type built from a map of values, or a clear bad-input failure.
fn build<T: RecordType>(lang: Lang, values: Map<String, Value>) -> Result<T> {
    serde_json::from_value(Value::Object(values)).map_err(|error| {
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

/// The last 8 characters of an id: the random part of a UUIDv7, which is
/// what tells records (and devices) made at the same moment apart.
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
        let found: Vec<RecordKey> = store
            .search(&digits)?
            .into_iter()
            .filter(|key| key.kind == RecordKind::Household)
            .collect();
        if let [key] = found.as_slice() {
            return Ok(key.clone());
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
        format!("ไม่พบ {kind} `{trimmed}`"),
        format!("no {kind} `{trimmed}`"),
    )
    .into())
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `faenban init`.
pub fn init(context: &mut Context, name: &str) -> Result<()> {
    let device = faenban_core::DeviceId(Uuid::now_v7());
    let info = context.store.init(name, device)?;
    if context.json {
        return print_json(&json!({ "device_id": info.id, "name": info.name }));
    }
    let lang = context.lang;
    say!(
        "{} {} ({})",
        lang.pick("ตั้งค่าเครื่องแล้ว:", "device set up:"),
        info.name,
        info.id
    );
    Ok(())
}

/// `faenban status`.
pub fn status(context: &mut Context) -> Result<()> {
    let status = context.store.status()?;
    let lang = context.lang;
    if context.json {
        return print_json(&json!({
            "device_id": status.device.as_ref().map(|d| d.id),
            "device_name": status.device.as_ref().map(|d| d.name.clone()),
            "unpushed_changes": status.unpushed,
            "last_sync_ms": status.last_sync_ms,
            "records": status.records,
            "conflicts": status.conflicts,
        }));
    }
    match &status.device {
        Some(device) => say!(
            "{} {} ({})",
            lang.pick("เครื่อง:", "device:"),
            device.name,
            device.id
        ),
        None => say!(
            "{}",
            lang.pick(
                "ยังไม่ได้ตั้งค่าเครื่อง (faenban init)",
                "no device yet (faenban init)"
            )
        ),
    }
    say!(
        "{} {}",
        lang.pick("รายการที่ยังไม่ได้ส่ง:", "unpushed changes:"),
        status.unpushed
    );
    let last_sync = status
        .last_sync_ms
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64 + THAI_OFFSET_MS))
        .map(|t| format_buddhist_short(t.date_naive()));
    say!(
        "{} {}",
        lang.pick("ซิงค์ล่าสุด:", "last sync:"),
        last_sync.unwrap_or_else(|| lang.pick("ยังไม่เคย", "never").to_owned())
    );
    say!(
        "{} {}",
        lang.pick("ระเบียนทั้งหมด:", "records:"),
        status.records
    );
    say!(
        "{} {}",
        lang.pick("ข้อขัดแย้งที่ยังเปิดอยู่:", "open conflicts:"),
        status.conflicts
    );
    Ok(())
}

/// `faenban household …`.
pub fn household(context: &mut Context, command: HouseholdCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        HouseholdCommand::Add(fields) => {
            let mut values = household_values(lang, &fields)?;
            values.entry("entry").or_insert(json!("tpmap_target"));
            let household: Household = build(lang, values)?;
            let what = household.house_code.to_string();
            add_record(
                context,
                &household,
                ("บันทึกครัวเรือนแล้ว:", "household added:"),
                &what,
            )
        }
        HouseholdCommand::Edit { id, fields } => {
            let key = resolve(&context.store, lang, RecordKind::Household, &id)?;
            let values = household_values(lang, &fields)?;
            edit_record::<Household>(context, &key, values)
        }
        HouseholdCommand::Show { id } => {
            let key = resolve(&context.store, lang, RecordKind::Household, &id)?;
            show_household(context, &key)
        }
        HouseholdCommand::List { area, archived } => {
            let area = area
                .map(|a| faenban_core::codes::AreaCode::parse(&a))
                .transpose()
                .map_err(|e| Failure::invalid(lang, &e))?;
            let mut rows = Vec::new();
            for (key, state) in context.store.records(&RecordKind::Household)? {
                let Ok(record) = decode::<Household>(&key, &state) else {
                    continue;
                };
                if record.archived && !archived {
                    continue;
                }
                if area
                    .as_ref()
                    .is_some_and(|a| !a.contains(&record.value.village))
                {
                    continue;
                }
                rows.push(record);
            }
            rows.sort_by(|a, b| a.value.house_code.cmp(&b.value.house_code));
            if context.json {
                let list: Vec<Value> = rows.iter().map(household_json).collect();
                return print_json(&list);
            }
            for record in &rows {
                say!("{}", household_line(lang, record));
            }
            say!("{} {}", lang.pick("รวม", "total"), rows.len());
            Ok(())
        }
        HouseholdCommand::Search { text } => {
            let mut households = Vec::new();
            for key in context.store.search(&text)? {
                let household_key = match key.kind {
                    RecordKind::Household => key,
                    RecordKind::Member => {
                        let Some(state) = context.store.record(&key)? else {
                            continue;
                        };
                        let Some(id) = state.shown("household").and_then(Value::as_str) else {
                            continue;
                        };
                        let Ok(id) = Uuid::parse_str(id) else {
                            continue;
                        };
                        RecordKey::new(RecordKind::Household, id)
                    }
                    _ => continue,
                };
                if !households.contains(&household_key) {
                    households.push(household_key);
                }
            }
            let mut found = Vec::new();
            for key in households {
                if let Some(state) = context.store.record(&key)? {
                    if let Ok(record) = decode::<Household>(&key, &state) {
                        found.push(record);
                    }
                }
            }
            if context.json {
                let list: Vec<Value> = found.iter().map(household_json).collect();
                return print_json(&list);
            }
            if found.is_empty() {
                say!("{}", lang.pick("ไม่พบ", "nothing found"));
            }
            for record in &found {
                say!("{}", household_line(lang, record));
            }
            Ok(())
        }
        HouseholdCommand::Archive { id } => {
            let key = resolve(&context.store, lang, RecordKind::Household, &id)?;
            let change = context.store.write(now_ms(), |s| s.archive(&key))?;
            report_changes(context, &[change])
        }
        HouseholdCommand::Restore { id } => {
            let key = resolve(&context.store, lang, RecordKind::Household, &id)?;
            let change = context.store.write(now_ms(), |s| s.restore(&key))?;
            report_changes(context, &[change])
        }
    }
}

fn household_json(record: &faenban_core::model::Record<Household>) -> Value {
    json!({
        "id": record.key.id,
        "house_code": record.value.house_code.to_string(),
        "village": record.value.village,
        "address": record.value.address,
        "status": record.shown_status(),
        "welfare_card": record.value.welfare_card,
        "in_conflict": record.in_conflict,
    })
}

fn household_line(lang: Lang, record: &faenban_core::model::Record<Household>) -> String {
    let mut line = format!(
        "{}  {}  {}  {}",
        short(&record.key.id),
        record.value.house_code,
        record.value.village,
        record.value.address
    );
    if record.archived {
        line.push_str(lang.pick("  [จัดเก็บแล้ว]", "  [archived]"));
    }
    if record.in_conflict {
        line.push_str(lang.pick("  [มีข้อขัดแย้ง]", "  [conflict]"));
    }
    line
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
    let mut latest: Option<(Visit, RecordState)> = None;
    for (key, state) in store.records_of_household(&RecordKind::Visit, household)? {
        let Ok(visit) = decode::<Visit>(&key, &state) else {
            continue;
        };
        if visit.archived {
            continue;
        }
        if latest
            .as_ref()
            .is_none_or(|(v, _)| visit.value.date >= v.date)
        {
            latest = Some((visit.value, state));
        }
    }
    Ok(latest)
}

fn assess(visit: &Visit, state: &RecordState, welfare_card: bool) -> Result<Assessment> {
    let catalogues = builtin_catalogues();
    Ok(catalogues.get(&visit.edition)?.assess(&VisitAnswers {
        answers: visit_answers(state),
        income_per_year: visit.income_per_year,
        members: visit.members,
        welfare_card,
    })?)
}

fn show_household(context: &mut Context, key: &RecordKey) -> Result<()> {
    let lang = context.lang;
    let state = context.store.record(key)?.context("household vanished")?;
    let record = decode::<Household>(key, &state)?;
    let members = members_of(&context.store, key.id)?;
    let assessment = match latest_visit(&context.store, key.id)? {
        Some((visit, visit_state)) => Some((
            visit.date,
            assess(&visit, &visit_state, record.value.welfare_card)?,
        )),
        None => None,
    };
    let assistance: Vec<Assistance> = context
        .store
        .records_of_household(&RecordKind::Assistance, key.id)?
        .iter()
        .filter_map(|(k, s)| decode::<Assistance>(k, s).ok())
        .filter(|a| !a.archived)
        .map(|a| a.value)
        .collect();
    if context.json {
        return print_json(&json!({
            "household": household_json(&record),
            "fields": state.shown_values(),
            "members": members.iter().map(|m| json!({"id": m.key.id, "member": m.value})).collect::<Vec<_>>(),
            "latest_assessment": assessment.as_ref().map(|(date, a)| json!({"date": date, "assessment": a})),
            "assistance": assistance,
        }));
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", household_line(lang, &record));
    let _ = writeln!(
        out,
        "{} {}",
        lang.pick("บัตรสวัสดิการแห่งรัฐ:", "welfare card:"),
        yes_no_text(lang, record.value.welfare_card)
    );
    let _ = writeln!(out, "{} ({})", lang.pick("สมาชิก", "members"), members.len());
    for member in &members {
        let m = &member.value;
        let relation = json!(m.relation);
        let _ = writeln!(
            out,
            "  {}  {}{} {}  {}",
            short(&member.key.id),
            m.title,
            m.first_name,
            m.last_name,
            relation.as_str().unwrap_or("")
        );
    }
    match &assessment {
        Some((date, a)) => {
            let _ = writeln!(
                out,
                "{} {}",
                lang.pick("สำรวจล่าสุด:", "latest survey:"),
                format_buddhist_short(*date)
            );
            let dims: Vec<&str> = a
                .deprived
                .iter()
                .map(|d| dimension_name(lang, *d))
                .collect();
            let _ = writeln!(
                out,
                "  {} {}",
                lang.pick("ขาดแคลนด้าน:", "deprived in:"),
                if dims.is_empty() {
                    lang.pick("ไม่มี", "none").to_owned()
                } else {
                    dims.join(", ")
                }
            );
            let _ = writeln!(
                out,
                "  {} {}",
                lang.pick("คนจนเป้าหมาย:", "target poor:"),
                yes_no_text(lang, a.target_poor)
            );
        }
        None => {
            let _ = writeln!(out, "{}", lang.pick("ยังไม่มีการสำรวจ", "no survey yet"));
        }
    }
    let _ = writeln!(
        out,
        "{} ({})",
        lang.pick("การช่วยเหลือ", "assistance"),
        assistance.len()
    );
    for help in &assistance {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}  {:?}",
            format_buddhist_short(help.date),
            dimension_name(lang, help.dimension),
            help.item,
            help.amount.map(|a| format!("{a} บาท")).unwrap_or_default(),
            help.status
        );
    }
    emit(&out);
    Ok(())
}

fn yes_no_text(lang: Lang, value: bool) -> &'static str {
    match (lang, value) {
        (Lang::Th, true) => "มี/ใช่",
        (Lang::Th, false) => "ไม่มี/ไม่ใช่",
        (Lang::En, true) => "yes",
        (Lang::En, false) => "no",
    }
}

fn dimension_name(lang: Lang, dimension: Dimension) -> &'static str {
    match lang {
        Lang::Th => dimension.name_th(),
        Lang::En => dimension.name_en(),
    }
}

/// `faenban member …`.
pub fn member(context: &mut Context, command: MemberCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        MemberCommand::Add { household, fields } => {
            let household = resolve(&context.store, lang, RecordKind::Household, &household)?;
            let mut values = member_values(lang, &fields)?;
            values.insert("household".into(), json!(household.id));
            let member: Member = build(lang, values)?;
            let what = format!("{} {}", member.first_name, member.last_name);
            add_record(
                context,
                &member,
                ("เพิ่มสมาชิกแล้ว:", "member added:"),
                what.trim(),
            )
        }
        MemberCommand::Edit { id, fields } => {
            let key = resolve(&context.store, lang, RecordKind::Member, &id)?;
            let values = member_values(lang, &fields)?;
            edit_record::<Member>(context, &key, values)
        }
        MemberCommand::Remove { id } => {
            let key = resolve(&context.store, lang, RecordKind::Member, &id)?;
            let change = context.store.write(now_ms(), |s| s.archive(&key))?;
            report_changes(context, &[change])
        }
    }
}

fn read_answers(lang: Lang, args: &SurveyArgs) -> Result<BTreeMap<String, Answer>> {
    let mut answers = BTreeMap::new();
    if let Some(path) = &args.answers_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading answers file {}", path.display()))?;
        let raw: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|error| {
            bad_input(
                lang,
                format!("ไฟล์คำตอบไม่ถูกต้อง: {error}"),
                format!("the answers file is not a JSON object of code → answer: {error}"),
            )
        })?;
        for (code, answer) in raw {
            answers.insert(code.clone(), parse_answer(lang, &code, &answer)?);
        }
    }
    for pair in &args.answers {
        let Some((code, answer)) = pair.split_once('=') else {
            return Err(bad_input(
                lang,
                format!("`{pair}` ต้องเขียนเป็น รหัส=คำตอบ เช่น 8=fail"),
                format!("`{pair}` must be CODE=ANSWER, e.g. 8=fail"),
            ));
        };
        answers.insert(
            code.trim().to_owned(),
            parse_answer(lang, code.trim(), answer)?,
        );
    }
    Ok(answers)
}

fn parse_answer(lang: Lang, code: &str, text: &str) -> Result<Answer> {
    Answer::parse(text).ok_or_else(|| {
        bad_input(
            lang,
            format!("คำตอบตัวชี้วัด {code} `{text}` ต้องเป็น pass, fail หรือ na"),
            format!("answer to indicator {code}: `{text}` is not pass, fail or na"),
        )
    })
}

/// `faenban survey`.
pub fn survey(context: &mut Context, args: SurveyArgs) -> Result<()> {
    let lang = context.lang;
    let household_key = resolve(&context.store, lang, RecordKind::Household, &args.household)?;
    let household_state = context
        .store
        .record(&household_key)?
        .context("household vanished")?;
    let household = decode::<Household>(&household_key, &household_state)?;
    let catalogues = builtin_catalogues();
    let catalogue = catalogues.get(&args.edition)?;
    let answers = read_answers(lang, &args)?;
    for code in answers.keys() {
        if catalogue.indicator(code).is_none() {
            return Err(faenban_core::Error::UnknownIndicator {
                code: code.clone(),
                edition: catalogue.edition.clone(),
            }
            .into());
        }
    }
    if answers.is_empty() {
        return Err(bad_input(
            lang,
            "ไม่มีคำตอบ: ใช้ --answer รหัส=คำตอบ หรือ --answers-file",
            "no answers: give --answer CODE=ANSWER or --answers-file",
        ));
    }
    let date = match &args.date {
        Some(text) => parse_date_field(text, "date").map_err(|e| Failure::invalid(lang, &e))?,
        None => today(),
    };
    let members = members_of(&context.store, household_key.id)?;
    let member_count = args
        .members
        .or_else(|| u32::try_from(members.len()).ok().filter(|n| *n > 0));
    let surveyor = match args.surveyor.clone() {
        Some(name) => name,
        None => context.store.device()?.map(|d| d.name).unwrap_or_default(),
    };
    let income = args
        .income
        .as_deref()
        .map(|text| Baht::parse_field(text, "income_per_year"))
        .transpose()
        .map_err(|e| Failure::invalid(lang, &e))?;
    let visit = Visit {
        household: household_key.id,
        date,
        surveyor,
        edition: catalogue.edition.clone(),
        income_per_year: income,
        members: member_count,
    };
    let profile = HouseholdProfile {
        ages: members
            .iter()
            .filter_map(|m| m.value.birth_date.map(|b| age_on(b, date)))
            .collect(),
        any_disability: members.iter().any(|m| m.value.disability),
        any_chronic_illness: members.iter().any(|m| m.value.chronic_illness),
    };
    let skipped: Vec<String> = catalogue
        .indicators
        .iter()
        .filter(|i| !i.applies_to.applies(&profile) && !answers.contains_key(&i.code))
        .map(|i| i.code.clone())
        .collect();
    let visit_key = context.store.write(now_ms(), |s| {
        let key = s.create(Uuid::now_v7(), &visit)?;
        for (code, answer) in &answers {
            s.set(&key, &answer_field(code), json!(answer))?;
        }
        Ok(key)
    })?;
    let state = context
        .store
        .record(&visit_key)?
        .context("visit vanished")?;
    let assessment = assess(&visit, &state, household.value.welfare_card)?;
    if context.json {
        return print_json(&json!({
            "visit_id": visit_key.id,
            "assessment": assessment,
            "not_applicable_to_household": skipped,
        }));
    }
    say!(
        "{} {} {}",
        lang.pick("บันทึกการสำรวจ", "survey recorded for"),
        household.value.house_code,
        format_buddhist_short(date)
    );
    for dimension in Dimension::ALL {
        let mark = if assessment.is_deprived_in(dimension) {
            lang.pick("ขาดแคลน", "deprived")
        } else {
            lang.pick("ผ่าน", "ok")
        };
        say!("  {:<28} {}", dimension_name(lang, dimension), mark);
    }
    if let Some(per) = assessment.income_per_person_per_year {
        say!(
            "  {} {per}",
            lang.pick("รายได้ต่อคนต่อปี (บาท):", "income per person per year (baht):")
        );
    }
    say!(
        "  {} {}",
        lang.pick("คนจนเป้าหมาย:", "target poor:"),
        yes_no_text(lang, assessment.target_poor)
    );
    if !assessment.unanswered.is_empty() {
        say!(
            "  {} {}",
            lang.pick("ยังไม่ได้ตอบ:", "not answered:"),
            assessment.unanswered.join(", ")
        );
    }
    Ok(())
}

/// `faenban assist …`.
pub fn assist(context: &mut Context, command: AssistCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        AssistCommand::Add {
            household,
            dimension,
            item,
            agency,
            sector,
            amount,
            date: given,
            stage,
            status,
            outcome,
        } => {
            let household = resolve(&context.store, lang, RecordKind::Household, &household)?;
            let mut values = Map::new();
            values.insert("household".into(), json!(household.id));
            values.insert("dimension".into(), json!(dimension.trim()));
            values.insert("item".into(), json!(item.trim()));
            values.insert("agency".into(), json!(agency.trim()));
            values.insert("sector".into(), json!(sector.trim()));
            values.insert("stage".into(), json!(stage.trim()));
            values.insert("status".into(), json!(status.trim()));
            values.insert(
                "date".into(),
                match given {
                    Some(text) => date(lang, "date", &text)?,
                    None => json!(today()),
                },
            );
            if let Some(amount) = amount {
                values.insert("amount".into(), money(lang, "amount", &amount)?);
            }
            if let Some(outcome) = outcome {
                values.insert("outcome".into(), json!(outcome));
            }
            let assistance: Assistance = build(lang, values)?;
            let what = assistance.item.clone();
            add_record(
                context,
                &assistance,
                ("บันทึกการช่วยเหลือแล้ว:", "assistance recorded:"),
                &what,
            )
        }
        AssistCommand::Update {
            id,
            status,
            outcome,
            amount,
            stage,
        } => {
            let key = resolve(&context.store, lang, RecordKind::Assistance, &id)?;
            let mut values = Map::new();
            if let Some(status) = status {
                values.insert("status".into(), json!(status.trim()));
            }
            if let Some(stage) = stage {
                values.insert("stage".into(), json!(stage.trim()));
            }
            if let Some(outcome) = outcome {
                values.insert("outcome".into(), json!(outcome));
            }
            if let Some(amount) = amount {
                values.insert("amount".into(), money(lang, "amount", &amount)?);
            }
            edit_record::<Assistance>(context, &key, values)
        }
        AssistCommand::List { household } => {
            let records = match household {
                Some(text) => {
                    let household = resolve(&context.store, lang, RecordKind::Household, &text)?;
                    context
                        .store
                        .records_of_household(&RecordKind::Assistance, household.id)?
                }
                None => context.store.records(&RecordKind::Assistance)?,
            };
            let list: Vec<(RecordKey, Assistance)> = records
                .iter()
                .filter_map(|(k, s)| decode::<Assistance>(k, s).ok())
                .filter(|a| !a.archived)
                .map(|a| (a.key, a.value))
                .collect();
            if context.json {
                let rows: Vec<Value> = list
                    .iter()
                    .map(|(k, a)| json!({"id": k.id, "assistance": a}))
                    .collect();
                return print_json(&rows);
            }
            for (key, help) in &list {
                say!(
                    "{}  {}  {}  {}  {}  {:?}",
                    short(&key.id),
                    format_buddhist_short(help.date),
                    dimension_name(lang, help.dimension),
                    help.item,
                    help.amount.map(|a| a.to_string()).unwrap_or_default(),
                    help.status
                );
            }
            say!("{} {}", lang.pick("รวม", "total"), list.len());
            Ok(())
        }
    }
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

/// `faenban history`.
pub fn history(context: &mut Context, id: &str) -> Result<()> {
    let lang = context.lang;
    let key = find_any(&context.store, lang, id)?;
    let changes = context.store.history(&key)?;
    if context.json {
        return print_json(&changes);
    }
    say!("{} {}", key.kind, key.id);
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
            short(&change.author()),
            change.field,
            change.value
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
                        record.kind,
                        short(&record.id),
                        field,
                        candidates.len(),
                        lang.pick("ค่า", "values")
                    ),
                    Conflict::EditDuringArchive { record, .. } => say!(
                        "{} {}  {}",
                        record.kind,
                        short(&record.id),
                        lang.pick("ถูกจัดเก็บขณะที่มีคนแก้ไข", "archived while someone edited it")
                    ),
                }
            }
            Ok(())
        }
        ConflictsCommand::Show { id } => {
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
                        say!("{field}:");
                        for (number, entry) in candidates.iter().enumerate() {
                            let shown = if number + 1 == candidates.len() {
                                lang.pick("  (แสดงอยู่)", "  (shown)")
                            } else {
                                ""
                            };
                            say!(
                                "  [{}] {}  {} {}{shown}",
                                number + 1,
                                entry.value,
                                lang.pick("จากเครื่อง", "from device"),
                                short(&entry.author())
                            );
                        }
                    }
                    Conflict::EditDuringArchive { unseen_edits, .. } => {
                        say!(
                            "{}",
                            lang.pick(
                                "ระเบียนถูกจัดเก็บ แต่มีการแก้ไขที่ผู้จัดเก็บไม่เห็น:",
                                "archived, but edited by someone who had not seen the archive:"
                            )
                        );
                        for (field, _) in unseen_edits {
                            say!(
                                "  {field} = {}",
                                state.shown(field).cloned().unwrap_or(Value::Null)
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

/// `faenban export`.
pub fn export(context: &mut Context, format: ExportFormat, output: Option<&Path>) -> Result<()> {
    let text = match format {
        ExportFormat::Json => export_json(&context.store)?,
        ExportFormat::Csv => export_csv(&context.store)?,
    };
    match output {
        Some(path) => write_atomically(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => emit(&text),
    }
    Ok(())
}

/// The whole merged state, in (kind, id) order with sorted keys: two files
/// that hold the same changes export the same bytes.
fn export_json(store: &Store) -> Result<String> {
    let records: Vec<Value> = store
        .all_records()?
        .into_iter()
        .map(|(key, state)| {
            json!({
                "kind": key.kind,
                "id": key.id,
                "archived": state.is_archived(),
                "in_conflict": state.has_conflict(),
                "fields": state.shown_values(),
            })
        })
        .collect();
    let mut text =
        serde_json::to_string_pretty(&json!({ "faenban_export": 1, "records": records }))?;
    text.push('\n');
    Ok(text)
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// One row per household, with a byte-order mark so Excel reads the Thai.
fn export_csv(store: &Store) -> Result<String> {
    let mut out = String::from("\u{feff}id,house_code,village,address,status,entry,classification,livelihood,welfare_card,members,latest_survey,deprived,target_poor\n");
    for (key, state) in store.records(&RecordKind::Household)? {
        let Ok(record) = decode::<Household>(&key, &state) else {
            continue;
        };
        let h = &record.value;
        let members = members_of(store, key.id)?.len();
        let (survey, deprived, target) = match latest_visit(store, key.id)? {
            Some((visit, visit_state)) => {
                let a = assess(&visit, &visit_state, h.welfare_card)?;
                let deprived: Vec<&str> = a.deprived.iter().map(|d| d.key()).collect();
                (
                    visit.date.to_string(),
                    deprived.join(" "),
                    a.target_poor.to_string(),
                )
            }
            None => (String::new(), String::new(), String::new()),
        };
        let enum_text = |value: Value| value.as_str().unwrap_or("").to_owned();
        let row = [
            key.id.to_string(),
            h.house_code.to_string(),
            h.village.to_string(),
            h.address.clone(),
            enum_text(json!(record.shown_status())),
            enum_text(json!(h.entry)),
            h.classification
                .map(|c| enum_text(json!(c)))
                .unwrap_or_default(),
            h.livelihood
                .map(|l| enum_text(json!(l)))
                .unwrap_or_default(),
            h.welfare_card.to_string(),
            members.to_string(),
            survey,
            deprived,
            target,
        ];
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Writes a file so that it is either the old one or the whole new one,
/// never half: write beside it, flush to disk, then rename over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
