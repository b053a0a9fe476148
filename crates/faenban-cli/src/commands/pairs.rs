//! `official`, `pair` and `pairs`: the officials who follow households, and
//! Khon Kaen's คู่เสี่ยว pairing of one official with (normally) two
//! households.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use faenban_core::model::{
    decode, latest_visits, Household, Official, Pairing, Record, Visit, HOUSEHOLDS_PER_OFFICIAL,
};
use faenban_core::{RecordId, RecordKey, RecordKind, RecordState};
use faenban_store::Store;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    add_record, assess, bad_input, dimension_name, now_ms, print_json, resolve, short, Context,
};
use crate::cli::OfficialCommand;
use crate::failure::{Failure, Kind};
use crate::lang::Lang;

/// `faenban official …`.
pub fn official(context: &mut Context, command: OfficialCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        OfficialCommand::Add {
            name,
            position,
            agency,
        } => {
            let official = Official {
                name: name.split_whitespace().collect::<Vec<_>>().join(" "),
                position: position.trim().to_owned(),
                agency: agency.trim().to_owned(),
            };
            // The same person twice would split their pairings; the same
            // name with another position or agency is another person.
            let same = officials(&context.store)?.into_iter().find(|o| {
                o.value
                    .name
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    == official.name
                    && o.value.position == official.position
                    && o.value.agency == official.agency
            });
            if let Some(same) = same {
                return Err(Failure::new(
                    Kind::Conflict,
                    context.lang,
                    format!(
                        "มีเจ้าหน้าที่ชื่อ ตำแหน่ง และหน่วยงานนี้แล้ว (รหัส {}) ไม่ได้บันทึกซ้ำ ถ้าเป็นคนละคนที่ชื่อเหมือนกัน ให้ระบุตำแหน่งหรือหน่วยงานให้ต่างกัน",
                        short(&same.key.id)
                    ),
                    format!(
                        "an official with this name, position and agency is already recorded ({}); nothing was saved; for another person of the same name, give their own position or agency",
                        short(&same.key.id)
                    ),
                )
                .into());
            }
            let what = official.name.clone();
            add_record(
                context,
                &official,
                ("เพิ่มเจ้าหน้าที่แล้ว:", "official added:"),
                &what,
            )
        }
        OfficialCommand::List => {
            let officials = officials(&context.store)?;
            let pairings = active_pairings(&context.store)?;
            let count = |id: RecordId| pairings.iter().filter(|p| p.official == id).count();
            if context.json {
                let rows: Vec<Value> = officials
                    .iter()
                    .map(|o| {
                        json!({
                            "id": o.key.id,
                            "name": o.value.name,
                            "position": o.value.position,
                            "agency": o.value.agency,
                            "households": count(o.key.id),
                        })
                    })
                    .collect();
                return print_json(&rows);
            }
            for o in &officials {
                say!(
                    "{}  {}  {}  {}  ({} {})",
                    short(&o.key.id),
                    o.value.name,
                    o.value.position,
                    o.value.agency,
                    count(o.key.id),
                    lang.pick("ครัวเรือน", "households")
                );
            }
            say!("{} {}", lang.pick("รวม", "total"), officials.len());
            Ok(())
        }
    }
}

/// `faenban pair OFFICIAL HOUSEHOLD… [--end]`.
pub fn pair(context: &mut Context, official: &str, households: &[String], end: bool) -> Result<()> {
    let lang = context.lang;
    let official = resolve_official(&context.store, lang, official)?;
    // Every household is found before anything is written.
    let mut wanted: Vec<RecordKey> = Vec::new();
    for text in households {
        let key = resolve(&context.store, lang, RecordKind::Household, text)?;
        if !wanted.contains(&key) {
            wanted.push(key);
        }
    }
    let existing: BTreeMap<RecordId, RecordKey> = active_pairings_with_keys(&context.store)?
        .into_iter()
        .filter(|(_, p)| p.official == official.id)
        .map(|(key, p)| (p.household, key))
        .collect();
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    if end {
        let mut to_end = Vec::new();
        for household in &wanted {
            match existing.get(&household.id) {
                Some(pairing) => to_end.push((household.id, pairing.clone())),
                None => {
                    return Err(Failure::new(
                        Kind::Conflict,
                        lang,
                        format!("ครัวเรือน {} ไม่ได้จับคู่กับเจ้าหน้าที่คนนี้", short(&household.id)),
                        format!(
                            "household {} is not paired with this official",
                            short(&household.id)
                        ),
                    )
                    .into())
                }
            }
        }
        context.store.write(now_ms(), |s| {
            for (_, pairing) in &to_end {
                s.archive(pairing)?;
            }
            Ok(())
        })?;
        done.extend(to_end.into_iter().map(|(household, _)| household));
    } else {
        let new: Vec<RecordId> = wanted
            .iter()
            .map(|h| h.id)
            .filter(|id| !existing.contains_key(id))
            .collect();
        skipped.extend(
            wanted
                .iter()
                .map(|h| h.id)
                .filter(|id| existing.contains_key(id)),
        );
        context.store.write(now_ms(), |s| {
            for household in &new {
                s.create(
                    Uuid::now_v7(),
                    &Pairing {
                        official: official.id,
                        household: *household,
                    },
                )?;
            }
            Ok(())
        })?;
        done.extend(new);
    }
    let followed = active_pairings(&context.store)?
        .iter()
        .filter(|p| p.official == official.id)
        .count();
    if context.json {
        return print_json(&json!({
            "official": official.id,
            if end { "ended" } else { "paired" }: done,
            "already_paired": skipped,
            "households_followed": followed,
        }));
    }
    let house_code = |id: &RecordId| -> Result<String> {
        let key = RecordKey::new(RecordKind::Household, id.0);
        let state = context.store.record(&key)?;
        Ok(state
            .and_then(|s| {
                s.shown("house_code")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .and_then(|code| faenban_core::codes::HouseCode::parse(&code).ok())
            .map_or_else(|| short(id), |code| code.to_string()))
    };
    for household in &done {
        say!(
            "{} {}",
            if end {
                lang.pick("เลิกจับคู่แล้ว:", "pairing ended:")
            } else {
                lang.pick("จับคู่แล้ว:", "paired:")
            },
            house_code(household)?
        );
    }
    for household in &skipped {
        say!(
            "{} {}",
            lang.pick("จับคู่อยู่แล้ว:", "already paired:"),
            house_code(household)?
        );
    }
    if followed > HOUSEHOLDS_PER_OFFICIAL {
        say!(
            "{}",
            match lang {
                Lang::Th => format!(
                    "หมายเหตุ: เจ้าหน้าที่คนนี้ดูแล {followed} ครัวเรือนแล้ว (คู่เสี่ยวปกติคือ 1 ต่อ {HOUSEHOLDS_PER_OFFICIAL})"
                ),
                Lang::En => format!(
                    "note: this official now follows {followed} households (คู่เสี่ยว is normally 1 to {HOUSEHOLDS_PER_OFFICIAL})"
                ),
            }
        );
    }
    Ok(())
}

/// `faenban pairs [--official X]`.
pub fn pairs(context: &mut Context, only: Option<&str>) -> Result<()> {
    let lang = context.lang;
    let only = only
        .map(|text| resolve_official(&context.store, lang, text))
        .transpose()?;
    let store = &context.store;
    let pairings = active_pairings(store)?;
    let mut households: BTreeMap<RecordId, Record<Household>> = BTreeMap::new();
    for (key, state) in store.records(&RecordKind::Household)? {
        if let Ok(record) = decode::<Household>(&key, &state) {
            if !record.archived {
                households.insert(key.id, record);
            }
        }
    }
    // Every household's latest survey, read once.
    let latest = latest_visits(store.records(&RecordKind::Visit)?);
    let mut rows = Vec::new();
    for official in officials(store)? {
        if only.as_ref().is_some_and(|o| o.id != official.key.id) {
            continue;
        }
        let mut theirs = Vec::new();
        for pairing in pairings.iter().filter(|p| p.official == official.key.id) {
            if let Some(household) = households.get(&pairing.household) {
                theirs.push(household_summary(&latest, lang, household)?);
            }
        }
        rows.push((official, theirs));
    }
    let paired: BTreeSet<RecordId> = pairings.iter().map(|p| p.household).collect();
    let mut unpaired = Vec::new();
    if only.is_none() {
        for household in households.values() {
            if !paired.contains(&household.key.id) {
                unpaired.push(household_summary(&latest, lang, household)?);
            }
        }
    }
    if context.json {
        let officials: Vec<Value> = rows
            .iter()
            .map(|(o, theirs)| {
                json!({
                    "id": o.key.id,
                    "name": o.value.name,
                    "position": o.value.position,
                    "agency": o.value.agency,
                    "households": theirs.iter().map(|(json, _)| json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let unpaired: Vec<&Value> = unpaired.iter().map(|(json, _)| json).collect();
        return print_json(&json!({ "officials": officials, "unpaired": unpaired }));
    }
    for (official, theirs) in &rows {
        say!(
            "{}  {} ({}, {})",
            short(&official.key.id),
            official.value.name,
            official.value.position,
            official.value.agency
        );
        if theirs.is_empty() {
            say!("    {}", lang.pick("ยังไม่ได้จับคู่", "no households yet"));
        }
        for (_, line) in theirs {
            say!("    {line}");
        }
    }
    if !unpaired.is_empty() {
        say!(
            "{} ({})",
            lang.pick("ครัวเรือนที่ยังไม่มีเจ้าหน้าที่คู่", "households with no official"),
            unpaired.len()
        );
        for (_, line) in &unpaired {
            say!("    {line}");
        }
    }
    Ok(())
}

/// A household as `pairs` shows it: JSON, and a line with what it lacks.
fn household_summary(
    latest: &HashMap<RecordId, (Visit, RecordState)>,
    lang: Lang,
    household: &Record<Household>,
) -> Result<(Value, String)> {
    let deprived = match latest.get(&household.key.id) {
        Some((visit, state)) => assess(visit, state, household.value.welfare_card)?.deprived,
        None => Vec::new(),
    };
    let json = json!({
        "id": household.key.id,
        "house_code": household.value.house_code.to_string(),
        "address": household.value.address,
        "deprived": deprived.iter().map(|d| d.key()).collect::<Vec<_>>(),
    });
    let names: Vec<&str> = deprived.iter().map(|d| dimension_name(lang, *d)).collect();
    let mut line = format!(
        "{}  {}  {}",
        short(&household.key.id),
        household.value.house_code,
        household.value.address
    );
    if !names.is_empty() {
        line.push_str(&format!(
            "  ({} {})",
            lang.pick("ขาดแคลน:", "deprived:"),
            names.join(", ")
        ));
    }
    Ok((json, line))
}

/// The officials not archived, by name.
fn officials(store: &Store) -> Result<Vec<Record<Official>>> {
    let mut officials: Vec<Record<Official>> = store
        .records(&RecordKind::Official)?
        .iter()
        .filter_map(|(key, state)| decode::<Official>(key, state).ok())
        .filter(|o| !o.archived)
        .collect();
    officials.sort_by(|a, b| {
        a.value
            .name
            .cmp(&b.value.name)
            .then(a.key.id.cmp(&b.key.id))
    });
    Ok(officials)
}

fn active_pairings_with_keys(store: &Store) -> Result<Vec<(RecordKey, Pairing)>> {
    Ok(store
        .records(&RecordKind::Pairing)?
        .iter()
        .filter_map(|(key, state)| decode::<Pairing>(key, state).ok())
        .filter(|p| !p.archived)
        .map(|p| (p.key, p.value))
        .collect())
}

fn active_pairings(store: &Store) -> Result<Vec<Pairing>> {
    Ok(active_pairings_with_keys(store)?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// Finds an official by id, the end of an id, or exact name.
fn resolve_official(store: &Store, lang: Lang, text: &str) -> Result<RecordKey> {
    if let Ok(key) = resolve(store, lang, RecordKind::Official, text) {
        return Ok(key);
    }
    let wanted = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let named: Vec<_> = officials(store)?
        .into_iter()
        .filter(|o| {
            o.value
                .name
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                == wanted
        })
        .collect();
    match named.as_slice() {
        [official] => Ok(official.key.clone()),
        [] => Err(Failure::new(
            Kind::NotFound,
            lang,
            format!("ไม่พบเจ้าหน้าที่ `{wanted}` (ดูรายชื่อด้วย faenban official list)"),
            format!("no official `{wanted}` (see faenban official list)"),
        )
        .into()),
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|o| {
                    format!(
                        "{} ({}, {})",
                        short(&o.key.id),
                        o.value.position,
                        o.value.agency
                    )
                })
                .collect();
            Err(bad_input(
                lang,
                format!(
                    "มีเจ้าหน้าที่ชื่อ `{wanted}` หลายคน: {} ให้ใช้รหัสแทน",
                    listed.join("; ")
                ),
                format!(
                    "several officials are called `{wanted}`: {}; use the id instead",
                    listed.join("; ")
                ),
            ))
        }
    }
}
