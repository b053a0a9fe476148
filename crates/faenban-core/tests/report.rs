//! The report's figures on a small programme planted by hand, every figure
//! known in advance: what `docs/report.md` defines, checked.

use faenban_core::areas::Areas;
use faenban_core::catalogue::Catalogues;
use faenban_core::codes::{AreaCode, AreaLevel};
use faenban_core::model::answer_field;
use faenban_core::report::{self, ReportOptions};
use faenban_core::{Baht, DeviceId, RecordKey, RecordKind, Replica};
use serde_json::{json, Value};
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;

fn record(replica: &mut Replica, kind: RecordKind, n: u128, fields: Value) -> RecordKey {
    let key = RecordKey::new(kind, Uuid::from_u128(n));
    for (field, value) in fields.as_object().unwrap() {
        replica.set(NOW, &key, field, value.clone());
    }
    key
}

fn household(replica: &mut Replica, n: u128, village: &str, extra: Value) -> String {
    let mut fields = json!({
        "house_code": format!("4001{:07}", n),
        "village": village,
        "address": format!("{n} หมู่ 1"),
        "entry": "tpmap_target",
        "status": "active",
        "welfare_card": false,
    });
    for (field, value) in extra.as_object().unwrap() {
        fields[field] = value.clone();
    }
    record(replica, RecordKind::Household, n, fields);
    Uuid::from_u128(n).to_string()
}

/// A visit: `(date, yearly income, people)`, its answers, and whether it
/// was left unfinished.
fn visit(
    replica: &mut Replica,
    n: u128,
    household: &str,
    (date, income, members): (&str, &str, u32),
    answers: &[(&str, &str)],
    in_progress: bool,
) {
    let key = record(
        replica,
        RecordKind::Visit,
        n,
        json!({
            "household": household,
            "date": date,
            "surveyor": "อสม.",
            "edition": "bmn-2560-2564",
            "income_per_year": income,
            "members": members,
            "in_progress": in_progress,
        }),
    );
    for (code, answer) in answers {
        replica.set(NOW, &key, &answer_field(code), json!(answer));
    }
}

fn assistance(
    replica: &mut Replica,
    n: u128,
    household: &str,
    dimension: &str,
    status: &str,
    stage: &str,
    amount: &str,
) {
    record(
        replica,
        RecordKind::Assistance,
        n,
        json!({
            "household": household,
            "dimension": dimension,
            "item": "other",
            "agency": "อบต.",
            "sector": "public",
            "amount": amount,
            "date": "2025-12-01",
            "stage": stage,
            "status": status,
        }),
    );
}

fn planted() -> Vec<(RecordKey, faenban_core::RecordState)> {
    let mut r = Replica::new(DeviceId::from_u128(1));
    // 1: needs welfare, a welfare card; deprived in living and income at the
    // first visit, in income only at the second; its head recorded; helped
    // in income (given, sustainable).
    let h1 = household(
        &mut r,
        1,
        "40010101",
        json!({"classification": "needs_welfare", "welfare_card": true}),
    );
    visit(
        &mut r,
        11,
        &h1,
        ("2025-11-01", "24000.00", 2),
        &[("8", "fail")],
        false,
    );
    visit(
        &mut r,
        12,
        &h1,
        ("2026-06-01", "36000.00", 1),
        &[("8", "pass")],
        false,
    );
    record(
        &mut r,
        RecordKind::Member,
        13,
        json!({"household": h1, "first_name": "มาลี", "sex": "female", "relation": "head"}),
    );
    assistance(&mut r, 14, &h1, "income", "done", "sustainable", "1500.50");
    // 2: can develop; one visit, deprived in nothing; helped in health.
    let h2 = household(
        &mut r,
        2,
        "40010102",
        json!({"classification": "can_develop"}),
    );
    visit(&mut r, 21, &h2, ("2025-11-02", "100000.00", 2), &[], false);
    assistance(&mut r, 22, &h2, "health", "done", "survive", "200.00");
    // 3: a survey left unfinished, never finished.
    let h3 = household(&mut r, 3, "40010102", json!({}));
    visit(
        &mut r,
        31,
        &h3,
        ("2025-11-03", "50000.00", 1),
        &[("8", "fail")],
        true,
    );
    // 4: another district; deprived in living, help under way (sufficient),
    // and a planned record that does not count as help.
    let h4 = household(&mut r, 4, "40020101", json!({"entry": "vulnerable_group"}));
    visit(
        &mut r,
        41,
        &h4,
        ("2025-11-04", "90000.00", 1),
        &[("8", "fail")],
        false,
    );
    assistance(
        &mut r,
        42,
        &h4,
        "living",
        "in_progress",
        "sufficient",
        "3000.00",
    );
    assistance(&mut r, 43, &h4, "education", "planned", "survive", "100.00");
    // 5: archived: in no figure.
    let h5 = household(&mut r, 5, "40010101", json!({}));
    let archived = RecordKey::new(RecordKind::Household, Uuid::parse_str(&h5).unwrap());
    r.archive(NOW, &archived);
    // One official follows households 1 and 2.
    record(
        &mut r,
        RecordKind::Official,
        90,
        json!({"name": "นายสมชาย", "position": "นักวิชาการ", "agency": "เกษตร"}),
    );
    let official = Uuid::from_u128(90).to_string();
    record(
        &mut r,
        RecordKind::Pairing,
        91,
        json!({"official": official, "household": h1}),
    );
    record(
        &mut r,
        RecordKind::Pairing,
        92,
        json!({"official": official, "household": h2}),
    );
    r.state
        .records_sorted()
        .into_iter()
        .map(|(key, state)| (key.clone(), state.clone()))
        .collect()
}

#[test]
fn every_figure_of_a_planted_programme_is_the_one_planted() {
    let report = report::build(
        planted(),
        &Catalogues::builtin(),
        &Areas::builtin(),
        &ReportOptions {
            level: Some(AreaLevel::District),
            ..ReportOptions::default()
        },
    );
    let total = &report.total;
    assert_eq!(total.households, 4, "the archived one is left out");
    assert_eq!(
        (
            total.classification.needs_welfare,
            total.classification.can_develop,
            total.classification.unclassified
        ),
        (1, 1, 2)
    );
    assert_eq!(
        (total.entry.tpmap_target, total.entry.vulnerable_group),
        (3, 1)
    );
    assert_eq!(total.target_poor, 1);
    let living = &total.dimensions["living"];
    assert_eq!((living.surveyed, living.deprived, living.helped), (3, 1, 1));
    assert_eq!(living.percent_helped.as_deref(), Some("100.00"));
    assert_eq!(living.stage.sufficient, 1);
    assert_eq!(
        living.left_deprivation, 1,
        "household 1 left it at its second visit"
    );
    let income = &total.dimensions["income"];
    assert_eq!((income.deprived, income.helped), (1, 1));
    assert_eq!(income.stage.sustainable, 1);
    let health = &total.dimensions["health"];
    assert_eq!(
        (health.deprived, health.helped, health.helped_not_deprived),
        (0, 0, 1)
    );
    assert_eq!(health.percent_helped, None);
    let education = &total.dimensions["education"];
    assert_eq!(
        (education.helped, education.helped_not_deprived),
        (0, 0),
        "planned is not help"
    );
    assert_eq!(total.income.households_revisited, 1);
    assert_eq!(
        total.income.first_mean_monthly,
        Some(Baht::from_baht(2_000))
    );
    assert_eq!(
        total.income.latest_mean_monthly,
        Some(Baht::from_baht(3_000))
    );
    assert_eq!(total.income.percent_change.as_deref(), Some("50.00"));
    assert_eq!(
        (
            total.pairing.with_official,
            total.pairing.without_official,
            total.pairing.officials
        ),
        (2, 2, 1)
    );
    assert_eq!(
        (
            total.gaps.never_surveyed,
            total.gaps.unfinished_surveys,
            total.gaps.no_head
        ),
        (1, 1, 3)
    );
    let public = &total.sectors["public"];
    assert_eq!(
        (
            public.records,
            public.households,
            public.planned,
            public.in_progress,
            public.done
        ),
        (4, 3, 1, 1, 2)
    );
    assert_eq!(public.baht, Baht::parse("4800.50").unwrap());
    let agency = &total.agencies["อบต."];
    assert_eq!((agency.records, agency.households), (4, 3));
    // A row per district, in code order, adding up to the total.
    let codes: Vec<&str> = report.areas.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["4001", "4002"]);
    assert_eq!(report.areas[0].households + report.areas[1].households, 4);
    assert!(
        report.areas[0].name_th.contains("เมืองขอนแก่น"),
        "{}",
        report.areas[0].name_th
    );
}

#[test]
fn an_area_a_dimension_and_a_fiscal_year_narrow_the_report() {
    let district = report::build(
        planted(),
        &Catalogues::builtin(),
        &Areas::builtin(),
        &ReportOptions {
            area: Some(AreaCode::parse("4002").unwrap()),
            dimension: Some(faenban_core::Dimension::Living),
            ..ReportOptions::default()
        },
    );
    assert_eq!(district.total.households, 1);
    assert_eq!(
        district.total.dimensions.keys().collect::<Vec<_>>(),
        ["living"]
    );
    // Fiscal year 2569 runs from 1 October 2025 to 30 September 2026: both
    // of household 1's visits; 2570 holds none of them.
    let year = |fiscal_year| {
        report::build(
            planted(),
            &Catalogues::builtin(),
            &Areas::builtin(),
            &ReportOptions {
                fiscal_year: Some(fiscal_year),
                ..ReportOptions::default()
            },
        )
    };
    assert_eq!(year(2569).total.income.households_revisited, 1);
    assert_eq!(year(2570).total.gaps.never_surveyed, 4);
}
