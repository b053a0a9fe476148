//! Records: validation, their mapping to per-field changes, and reading them
//! back from the merged state.

use chrono::NaiveDate;
use faenban_core::catalogue::VisitAnswers;
use faenban_core::codes::{AreaCode, NationalId};
use faenban_core::model::{
    answer_field, assistance_menu, check_field, decode, fields_of, menu_item, visit_answers,
    Assistance, AssistanceStatus, GeoPoint, Household, HouseholdStatus, Official, Pairing,
    ProgrammeEntry, Sector, Stage, Visit,
};
use faenban_core::{Answer, Baht, Catalogues, DeviceId, Dimension, Error, Replica};
use serde_json::json;
use uuid::Uuid;

const NOW: u64 = 1_767_571_200_000;

fn household() -> Household {
    Household {
        house_code: "4001-012345-6".parse().unwrap(),
        village: AreaCode::parse_village("40010101").unwrap(),
        address: "99 หมู่ 1".into(),
        location: Some(GeoPoint {
            lat: 16.44,
            lon: 102.83,
        }),
        head: None,
        status: HouseholdStatus::Active,
        entry: ProgrammeEntry::ExclusionError,
        classification: None,
        livelihood: None,
        welfare_card: false,
        notes: String::new(),
    }
}

fn invalid_field(result: faenban_core::Result<impl std::fmt::Debug>) -> &'static str {
    match result {
        Err(Error::Invalid(invalid)) => invalid.field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn a_household_round_trips_through_per_field_changes() {
    let mut laptop = Replica::new(DeviceId::from_u128(1));
    let (key, changes) = laptop
        .create(NOW, Uuid::from_u128(5), &household())
        .unwrap();
    // One change per field given; empty defaults are not written.
    let mut fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "address",
            "entry",
            "house_code",
            "location",
            "status",
            "village"
        ]
    );
    let view = decode::<Household>(&key, laptop.state.record(&key).unwrap()).unwrap();
    assert_eq!(view.value, household());
    assert!(!view.archived && !view.in_conflict);
    assert_eq!(view.shown_status(), HouseholdStatus::Active);
}

#[test]
fn invalid_records_are_refused_naming_the_field() {
    let mut h = household();
    h.village = AreaCode::parse("400101").unwrap();
    assert_eq!(invalid_field(fields_of(&h)), "village");
    let mut h = household();
    h.address = "  ".into();
    assert_eq!(invalid_field(fields_of(&h)), "address");
    let mut h = household();
    h.location = Some(GeoPoint {
        lat: 116.0,
        lon: 102.0,
    });
    assert_eq!(invalid_field(fields_of(&h)), "location");
    let mut h = household();
    h.status = HouseholdStatus::Archived;
    assert_eq!(invalid_field(fields_of(&h)), "status");
    let official = Official {
        name: "".into(),
        position: "นักพัฒนาชุมชน".into(),
        agency: "พช.".into(),
    };
    assert_eq!(invalid_field(fields_of(&official)), "name");
}

#[test]
fn a_single_field_edit_is_checked_against_the_record() {
    let mut laptop = Replica::new(DeviceId::from_u128(1));
    let (key, _) = laptop
        .create(NOW, Uuid::from_u128(5), &household())
        .unwrap();
    let record = laptop.state.record(&key);
    assert_eq!(
        check_field::<Household>(record, "house_code", json!("4001-999999-1")).unwrap(),
        json!("40019999991"),
        "stored in canonical form"
    );
    let error = check_field::<Household>(record, "house_code", json!("4001")).unwrap_err();
    assert!(error.to_string().contains("house_code"), "{error}");
    assert!(check_field::<Household>(record, "entry", json!("lottery_winner")).is_err());
    assert_eq!(
        invalid_field(check_field::<Household>(record, "address", json!(""))),
        "address"
    );
}

#[test]
fn a_national_id_with_a_wrong_check_digit_never_enters_a_record() {
    let bad = json!({
        "household": Uuid::from_u128(5), "national_id": "1101700230709",
        "first_name": "สมชาย", "sex": "male", "relation": "head"
    });
    let error = serde_json::from_value::<faenban_core::model::Member>(bad).unwrap_err();
    assert!(error.to_string().contains("check digit"), "{error}");
    assert!(NationalId::parse("1101700230708").is_ok());
}

#[test]
fn a_visit_record_is_assessed_under_its_own_edition() {
    let mut laptop = Replica::new(DeviceId::from_u128(1));
    let visit = Visit {
        household: faenban_core::RecordId(Uuid::from_u128(5)),
        date: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
        surveyor: "อสม. สมศรี".into(),
        edition: "bmn-2560-2564".into(),
        income_per_year: Some(Baht::from_baht(60_000)),
        members: Some(3),
        in_progress: false,
    };
    let (key, _) = laptop.create(NOW, Uuid::from_u128(6), &visit).unwrap();
    laptop.set(NOW, &key, &answer_field("8"), json!("fail"));
    laptop.set(NOW, &key, &answer_field("16"), json!("pass"));
    let state = laptop.state.record(&key).unwrap();
    let read = decode::<Visit>(&key, state).unwrap().value;
    let answers = visit_answers(state);
    assert_eq!(answers.len(), 2);
    let catalogues = Catalogues::builtin();
    let assessment = catalogues
        .get(&read.edition)
        .unwrap()
        .assess(&VisitAnswers {
            answers,
            income_per_year: read.income_per_year,
            members: read.members,
            welfare_card: true,
        })
        .unwrap();
    // 20,000 per person fails income; indicator 8 fails living conditions.
    assert_eq!(
        assessment.deprived,
        vec![Dimension::Living, Dimension::Income]
    );
    assert!(assessment.target_poor);
    assert_eq!(answers_of(&assessment, "16"), Some(Answer::Pass));
}

fn answers_of(assessment: &faenban_core::Assessment, code: &str) -> Option<Answer> {
    assessment.answers.get(code).copied()
}

#[test]
fn assistance_pairing_and_the_menu() {
    let mut laptop = Replica::new(DeviceId::from_u128(1));
    let help = Assistance {
        household: faenban_core::RecordId(Uuid::from_u128(5)),
        dimension: Dimension::Living,
        item: "house_repair".into(),
        agency: "อบต.ในเมือง".into(),
        sector: Sector::Public,
        amount: Some(Baht::parse("15,000.50").unwrap()),
        date: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
        stage: Stage::Survive,
        status: AssistanceStatus::Done,
        outcome: "หลังคาไม่รั่ว".into(),
    };
    let (key, changes) = laptop.create(NOW, Uuid::from_u128(7), &help).unwrap();
    let amount = changes.iter().find(|c| c.field == "amount").unwrap();
    assert_eq!(
        amount.value,
        json!("15000.50"),
        "money travels as exact text"
    );
    assert_eq!(
        decode::<Assistance>(&key, laptop.state.record(&key).unwrap())
            .unwrap()
            .value,
        help
    );
    assert_eq!(
        menu_item("house_repair").unwrap().dimension,
        Dimension::Living
    );
    for dimension in Dimension::ALL {
        assert!(
            assistance_menu(dimension).count() >= 3,
            "{dimension} has a menu"
        );
    }
    let pairing = Pairing {
        official: faenban_core::RecordId(Uuid::from_u128(8)),
        household: faenban_core::RecordId(Uuid::from_u128(5)),
    };
    let (pair_key, _) = laptop.create(NOW, Uuid::from_u128(9), &pairing).unwrap();
    laptop.archive(NOW, &pair_key);
    assert!(
        decode::<Pairing>(&pair_key, laptop.state.record(&pair_key).unwrap())
            .unwrap()
            .archived
    );
}
