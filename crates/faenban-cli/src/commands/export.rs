//! `export`: the merged data as stable JSON or as CSV for Excel.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};
use faenban_core::merge::RecordState;
use faenban_core::model::{decode, latest_visits, Household, Member};
use faenban_core::{RecordId, RecordKind};
use faenban_store::Store;
use serde::Serialize;
use serde_json::{json, Value};

use super::{assess, write_atomically, write_stdout, Context};
use crate::cli::ExportFormat;

/// `faenban export`.
pub fn export(context: &mut Context, format: ExportFormat, output: Option<&Path>) -> Result<()> {
    let store = &context.store;
    let write = |out: &mut dyn Write| match format {
        ExportFormat::Json => export_json(store, out),
        ExportFormat::Csv => Ok(out.write_all(export_csv(store)?.as_bytes())?),
    };
    match output {
        Some(path) => {
            write_atomically(path, write).with_context(|| format!("writing {}", path.display()))?;
            // The data went to the file; say where, on stderr, so that
            // nothing else lands in a pipe.
            eprintln!(
                "{} {}",
                context.lang.pick("ส่งออกไปที่", "exported to"),
                path.display()
            );
            Ok(())
        }
        None => write_stdout(write),
    }
}

/// The whole merged state, in (kind, id) order with sorted keys: two files
/// that hold the same changes export the same bytes. Records are written as
/// they are read, so a province's export does not sit in memory.
fn export_json(store: &Store, out: &mut dyn Write) -> Result<()> {
    out.write_all(b"{\n  \"faenban_export\": 1,\n  \"records\": [")?;
    let mut first = true;
    // One buffer for every record: a province's export makes no string per
    // record.
    let mut buffer = Vec::new();
    store.for_each_record(|key, state| -> Result<()> {
        let record = ExportedRecord {
            archived: state.is_archived(),
            fields: ShownFields(&state),
            id: &key.id,
            in_conflict: state.has_conflict(),
            kind: &key.kind,
        };
        buffer.clear();
        serde_json::to_writer_pretty(&mut buffer, &record)?;
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        // Indented as if the whole file were printed at once.
        for (n, line) in buffer.split(|byte| *byte == b'\n').enumerate() {
            out.write_all(if n == 0 { b"    " } else { b"\n    " })?;
            out.write_all(line)?;
        }
        Ok(())
    })?;
    out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })?;
    Ok(())
}

/// One record of the JSON export. Its keys are in name order, as a JSON
/// object's always were in this export.
#[derive(Serialize)]
struct ExportedRecord<'a> {
    archived: bool,
    fields: ShownFields<'a>,
    id: &'a RecordId,
    in_conflict: bool,
    kind: &'a RecordKind,
}

/// A record's shown values, written from its state without copying them.
struct ShownFields<'a>(&'a RecordState);

impl Serialize for ShownFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.shown_fields())
    }
}

/// One row per household, with a byte-order mark so Excel reads the Thai.
fn export_csv(store: &Store) -> Result<String> {
    let mut out = String::from("\u{feff}id,house_code,village,address,status,entry,classification,livelihood,welfare_card,members,latest_survey,household_size,income_per_year,income_per_person_per_year,deprived,target_poor,notes\n");
    // Members and visits are read in one pass each, not once per household.
    let mut members: HashMap<RecordId, usize> = HashMap::new();
    for (key, state) in store.records(&RecordKind::Member)? {
        if let Ok(member) = decode::<Member>(&key, &state) {
            if !member.archived {
                *members.entry(member.value.household).or_default() += 1;
            }
        }
    }
    let mut latest = latest_visits(store.records(&RecordKind::Visit)?);
    for (key, state) in store.records(&RecordKind::Household)? {
        let Ok(record) = decode::<Household>(&key, &state) else {
            continue;
        };
        let h = &record.value;
        let members = members.get(&key.id).copied().unwrap_or(0);
        // The household's size and income as its latest finished survey
        // gave them: what the office counts, not the members recorded here.
        let (survey, size, income, per_person, deprived, target) = match latest.remove(&key.id) {
            Some((visit, visit_state)) => {
                let a = assess(&visit, &visit_state, h.welfare_card)?;
                let deprived: Vec<&str> = a.deprived.iter().map(|d| d.key()).collect();
                (
                    visit.date.to_string(),
                    visit.members.map(|n| n.to_string()).unwrap_or_default(),
                    visit
                        .income_per_year
                        .map(|b| b.to_string())
                        .unwrap_or_default(),
                    a.income_per_person_per_year
                        .map(|b| b.to_string())
                        .unwrap_or_default(),
                    deprived.join(" "),
                    a.target_poor.to_string(),
                )
            }
            None => Default::default(),
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
            size,
            income,
            per_person,
            deprived,
            target,
            h.notes.clone(),
        ];
        let cells: Vec<_> = row.iter().map(|c| faenban_core::csv::cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}
