//! `household` and `member`: the people and homes a volunteer visits.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use faenban_core::codes::{HouseCode, NationalId};
use faenban_core::dates::format_buddhist_short;
use faenban_core::model::{decode, Assistance, Household, Member};
use faenban_core::{RecordKey, RecordKind};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{
    add_record, area_code, assess, assistance_line, bad_input, build, builtin_areas,
    dimension_name, edit_record, emit, latest_visit, members_of, money, now_ms, past_date,
    print_json, report_changes, resolve, short, write_stdout, yes_no, yes_no_text, Context,
};
use crate::cli::{HouseholdCommand, HouseholdFields, MemberCommand, MemberFields};
use crate::failure::Failure;
use crate::lang::Lang;

pub(super) fn household_values(lang: Lang, fields: &HouseholdFields) -> Result<Map<String, Value>> {
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
        let code = area_code(lang, code, true)?;
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

pub(super) fn member_values(lang: Lang, fields: &MemberFields) -> Result<Map<String, Value>> {
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
    // Thai spreadsheets and volunteers write the sex in Thai.
    if let Some(sex) = &fields.sex {
        let sex = match sex.trim() {
            "ชาย" | "ช" | "ช." | "M" | "m" => "male",
            "หญิง" | "ญ" | "ญ." | "F" | "f" => "female",
            other => other,
        };
        values.insert("sex".into(), json!(sex));
    }
    if let Some(id) = &fields.national_id {
        let id = NationalId::parse(id).map_err(|e| Failure::invalid(lang, &e))?;
        values.insert("national_id".into(), json!(id));
    }
    if let Some(birth) = &fields.birth_date {
        values.insert(
            "birth_date".into(),
            json!(past_date(lang, "birth_date", birth)?),
        );
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

/// `faenban household …`.
pub fn household(context: &mut Context, command: HouseholdCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        HouseholdCommand::Add(fields) => {
            let mut values = household_values(lang, &fields)?;
            values.entry("entry").or_insert(json!("tpmap_target"));
            let household: Household = build(lang, values)?;
            refuse_recorded_house_code(context, household.house_code.digits(), None)?;
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
            if let Some(code) = values.get("house_code").and_then(Value::as_str) {
                refuse_recorded_house_code(context, &code.replace('-', ""), Some(&key))?;
            }
            edit_record::<Household>(context, &key, values)
        }
        HouseholdCommand::Show { id } => {
            let key = resolve(&context.store, lang, RecordKind::Household, &id)?;
            show_household(context, &key)
        }
        HouseholdCommand::List { area, archived } => {
            let area = area.map(|a| area_code(lang, &a, false)).transpose()?;
            let mut rows = Vec::new();
            let mut keep = |key: RecordKey, state: faenban_core::RecordState| {
                let Ok(record) = decode::<Household>(&key, &state) else {
                    return;
                };
                if record.archived && !archived {
                    return;
                }
                if area
                    .as_ref()
                    .is_some_and(|a| !a.contains(&record.value.village))
                {
                    return;
                }
                rows.push(record);
            };
            match &area {
                // Village codes are search terms: only that area's rows are read.
                Some(area) => {
                    for (key, state) in context.store.households_in_area(area.as_str())? {
                        keep(key, state);
                    }
                }
                // Each state is let go once read: a province's need not all
                // be held at once.
                None => context.store.for_each_record_of::<faenban_store::Error>(
                    &RecordKind::Household,
                    |key, state| {
                        keep(key, state);
                        Ok(())
                    },
                )?,
            }
            // Sorted by reference: a household is a few hundred bytes to move.
            let mut sorted: Vec<&faenban_core::model::Record<Household>> = rows.iter().collect();
            sorted.sort_by(|a, b| a.value.house_code.cmp(&b.value.house_code));
            if context.json {
                let list: Vec<Value> = sorted.into_iter().map(household_json).collect();
                return print_json(&list);
            }
            // A province's list is written through one buffer, not flushed
            // line by line.
            write_stdout(|out| {
                for record in sorted {
                    writeln!(out, "{}", household_line(lang, record))?;
                }
                writeln!(out, "{} {}", lang.pick("รวม", "total"), rows.len())?;
                Ok(())
            })
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

/// One household as a line of `household list`, written straight into its
/// output: a province's list formats 100,000 of them.
fn household_line(
    lang: Lang,
    record: &faenban_core::model::Record<Household>,
) -> HouseholdLine<'_> {
    HouseholdLine { lang, record }
}

struct HouseholdLine<'a> {
    lang: Lang,
    record: &'a faenban_core::model::Record<Household>,
}

impl std::fmt::Display for HouseholdLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let record = self.record;
        let mut id = Uuid::encode_buffer();
        let id = record.key.id.0.hyphenated().encode_lower(&mut id);
        write!(
            f,
            "{}  {}  {}  {}",
            &id[id.len() - 8..],
            record.value.house_code,
            record.value.village,
            record.value.address
        )?;
        if record.archived {
            f.write_str(self.lang.pick("  [ปิดแฟ้มแล้ว]", "  [archived]"))?;
        }
        if record.in_conflict {
            f.write_str(self.lang.pick("  [มีข้อขัดแย้ง]", "  [conflict]"))?;
        }
        Ok(())
    }
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
    let place = match lang {
        Lang::Th => builtin_areas().describe_th(&record.value.village),
        Lang::En => builtin_areas().describe_en(&record.value.village),
    };
    if !place.is_empty() {
        let _ = writeln!(out, "{place}");
    }
    let _ = writeln!(
        out,
        "{} {}",
        lang.pick("บัตรสวัสดิการแห่งรัฐ:", "welfare card:"),
        if record.value.welfare_card {
            lang.pick("มี", "yes")
        } else {
            lang.pick("ไม่มี", "no")
        }
    );
    // Every field a person recorded, each with its label.
    let code_of = |value: Value| value.as_str().unwrap_or("").to_owned();
    let shown = |field: &str, code: String| -> String {
        match lang {
            Lang::Th => crate::lang::value_th(field, &code)
                .map(str::to_owned)
                .unwrap_or(code),
            Lang::En => code.replace('_', " "),
        }
    };
    let h = &record.value;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "status",
            shown("status", code_of(json!(record.shown_status()))),
        ),
        ("entry", shown("entry", code_of(json!(h.entry)))),
    ];
    if let Some(classification) = h.classification {
        rows.push((
            "classification",
            shown("classification", code_of(json!(classification))),
        ));
    }
    if let Some(livelihood) = h.livelihood {
        rows.push((
            "livelihood",
            shown("livelihood", code_of(json!(livelihood))),
        ));
    }
    if let Some(location) = &h.location {
        rows.push((
            "location",
            format!("{:.5}, {:.5}", location.lat, location.lon),
        ));
    }
    if !h.notes.is_empty() {
        rows.push(("notes", h.notes.clone()));
    }
    for (field, value) in rows {
        let label = match lang {
            Lang::Th => crate::lang::field_name_th(field).to_owned(),
            Lang::En => field.replace('_', " "),
        };
        let _ = writeln!(out, "{label}: {value}");
    }
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
            match lang {
                Lang::Th => crate::lang::relation_th(relation.as_str().unwrap_or("")),
                Lang::En => relation.as_str().unwrap_or(""),
            }
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
            let _ = writeln!(
                out,
                "{}",
                lang.pick("ยังไม่มีการสำรวจที่เสร็จแล้ว", "no finished survey yet")
            );
        }
    }
    if let Some((_, paused)) = super::survey::unfinished_visit(context, key)? {
        let _ = writeln!(
            out,
            "{} {} ({} faenban survey {})",
            lang.pick("มีการสำรวจที่ยังไม่เสร็จ วันที่", "an unfinished survey of"),
            format_buddhist_short(paused.date),
            lang.pick("ทำต่อด้วย", "go on with"),
            record.value.house_code
        );
    }
    let _ = writeln!(
        out,
        "{} ({})",
        lang.pick("การช่วยเหลือ", "assistance"),
        assistance.len()
    );
    for help in &assistance {
        let _ = writeln!(out, "  {}", assistance_line(lang, help));
    }
    emit(&out);
    Ok(())
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
            if let Some(id) = &member.national_id {
                refuse_recorded_national_id(context, id.digits(), None)?;
            }
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
            if let Some(id) = values.get("national_id").and_then(Value::as_str) {
                refuse_recorded_national_id(context, &id.replace('-', ""), Some(&key))?;
            }
            edit_record::<Member>(context, &key, values)
        }
        MemberCommand::Remove { id } => {
            let key = resolve(&context.store, lang, RecordKind::Member, &id)?;
            let change = context.store.write(now_ms(), |s| s.archive(&key))?;
            report_changes(context, &[change])
        }
    }
}

/// A house code already recorded for another household is refused: the
/// office would count the house twice, and neither could be found by it.
fn refuse_recorded_house_code(
    context: &Context,
    digits: &str,
    except: Option<&faenban_core::RecordKey>,
) -> Result<()> {
    let found = super::households_with_code(&context.store, digits, except)?;
    refuse_recorded(
        context,
        found.first(),
        "รหัสประจำบ้านนี้บันทึกไว้แล้ว (ครัวเรือน {short}) ไม่ได้บันทึกซ้ำ แก้ข้อมูลด้วย faenban household edit {id}",
        "this house code is already recorded (household {short}); nothing was saved; change it with faenban household edit {id}",
    )
}

/// A national ID already recorded for another person is refused.
fn refuse_recorded_national_id(
    context: &Context,
    digits: &str,
    except: Option<&faenban_core::RecordKey>,
) -> Result<()> {
    let found = super::members_with_national_id(&context.store, digits, except)?;
    refuse_recorded(
        context,
        found.first(),
        "เลขประจำตัวประชาชนนี้บันทึกไว้แล้วสำหรับสมาชิกอีกคน (รหัส {short}) ไม่ได้บันทึกซ้ำ ถ้าเป็นคนเดียวกันที่ย้ายบ้าน ให้แก้ที่สมาชิกเดิมด้วย faenban member edit {id}",
        "this national ID is already recorded for another member ({short}); nothing was saved; if it is the same person, moved, edit that member with faenban member edit {id}",
    )
}

/// The conflict of a value already recorded on `other`, with `{short}` and
/// `{id}` in the messages standing for its id.
fn refuse_recorded(
    context: &Context,
    other: Option<&faenban_core::RecordKey>,
    th: &str,
    en: &str,
) -> Result<()> {
    let Some(other) = other else {
        return Ok(());
    };
    let fill = |text: &str| {
        text.replace("{short}", &super::short(&other.id))
            .replace("{id}", &other.id.to_string())
    };
    Err(Failure::new(
        crate::failure::Kind::Conflict,
        context.lang,
        fill(th),
        fill(en),
    )
    .into())
}
