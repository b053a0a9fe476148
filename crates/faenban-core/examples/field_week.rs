//! A week in the field, told by the core: two volunteers record the same
//! household offline, their laptops meet, the conflict is seen and resolved,
//! and the household's deprivation is assessed from a BMN visit.
//!
//! Run with `cargo run -p faenban-core --example field_week`.

use chrono::NaiveDate;
use faenban_core::catalogue::VisitAnswers;
use faenban_core::codes::{AreaCode, HouseCode};
use faenban_core::dates::format_thai;
use faenban_core::merge::Conflict;
use faenban_core::model::{
    answer_field, decode, visit_answers, Household, HouseholdStatus, ProgrammeEntry, Visit,
};
use faenban_core::{Answer, Baht, Catalogues, DeviceId, Replica};
use serde_json::json;
use uuid::Uuid;

const HOUR_MS: u64 = 3_600_000;
/// 5 January 2026, 09:00 in Khon Kaen.
const MONDAY_9AM: u64 = 1_767_578_400_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut somchai = Replica::new(DeviceId::from_u128(0x5011));
    let mut malee = Replica::new(DeviceId::from_u128(0x3A1E));

    let household = Household {
        house_code: HouseCode::parse("4001-012345-6")?,
        village: AreaCode::parse_village("40010101")?,
        address: "12 หมู่ 1 ต.ในเมือง อ.เมืองขอนแก่น จ.ขอนแก่น".into(),
        location: None,
        head: None,
        status: HouseholdStatus::Active,
        entry: ProgrammeEntry::TpmapTarget,
        classification: None,
        livelihood: None,
        welfare_card: true,
        notes: String::new(),
    };
    let household_id = Uuid::from_u128(0x019b_8a00_0000_7000_8000_0000_0000_0001);
    let (key, created) = somchai.create(MONDAY_9AM, household_id, &household)?;
    println!(
        "Monday: Somchai records household {} ({} changes).",
        household.house_code,
        created.len()
    );
    for change in created {
        malee.receive(change, MONDAY_9AM);
    }

    // Both are offline for the week and both write the household's notes.
    let by_somchai = somchai.set(MONDAY_9AM + 30 * HOUR_MS, &key, "notes", json!("หลังคารั่ว"));
    let by_malee = malee.set(
        MONDAY_9AM + 50 * HOUR_MS,
        &key,
        "notes",
        json!("ต้องการถังเก็บน้ำ"),
    );
    println!("Tuesday and Wednesday: each writes the notes, offline.");

    // Friday: the laptops meet (a sync, or a bundle on a USB stick).
    somchai.receive(by_malee, MONDAY_9AM + 100 * HOUR_MS);
    malee.receive(by_somchai, MONDAY_9AM + 100 * HOUR_MS);
    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());
    for conflict in somchai.state.conflicts() {
        if let Conflict::Values {
            field, candidates, ..
        } = conflict
        {
            println!("Friday: both laptops show a conflict on `{field}`; both values are kept:");
            for entry in &candidates {
                println!("  {} (written on device {})", entry.value, entry.author());
            }
        }
    }
    somchai.set(
        MONDAY_9AM + 101 * HOUR_MS,
        &key,
        "notes",
        json!("หลังคารั่ว; ต้องการถังเก็บน้ำ"),
    );
    println!(
        "Somchai resolves it by writing both; conflicts left: {}.",
        somchai.state.conflicts().len()
    );

    // The BMN survey of the same week.
    let visit = Visit {
        household: key.id,
        date: NaiveDate::from_ymd_opt(2026, 1, 9).ok_or("date")?,
        surveyor: "อสม. มาลี".into(),
        edition: "bmn-2560-2564".into(),
        income_per_year: Some(Baht::parse("96,000")?),
        members: Some(4),
        in_progress: false,
    };
    let (visit_key, _) = malee.create(MONDAY_9AM + 102 * HOUR_MS, Uuid::from_u128(2), &visit)?;
    for (code, answer) in [("8", "fail"), ("9", "pass"), ("16", "pass"), ("19", "fail")] {
        malee.set(
            MONDAY_9AM + 102 * HOUR_MS,
            &visit_key,
            &answer_field(code),
            json!(answer),
        );
    }
    let visit_state = malee.state.record(&visit_key).ok_or("visit")?;
    let visit = decode::<Visit>(&visit_key, visit_state)?.value;
    let catalogues = Catalogues::builtin();
    let assessment = catalogues.get(&visit.edition)?.assess(&VisitAnswers {
        answers: visit_answers(visit_state),
        income_per_year: visit.income_per_year,
        members: visit.members,
        welfare_card: true,
    })?;
    println!(
        "Survey of {}: income {} baht per person per year (indicator 22: {:?}).",
        format_thai(visit.date),
        assessment
            .income_per_person_per_year
            .map_or("?".into(), |b| b.to_string()),
        assessment
            .answers
            .get("22")
            .copied()
            .unwrap_or(Answer::NotApplicable),
    );
    let deprived: Vec<&str> = assessment.deprived.iter().map(|d| d.name_th()).collect();
    println!(
        "Deprived in: {}; target poor: {}.",
        deprived.join(", "),
        assessment.target_poor
    );
    Ok(())
}
