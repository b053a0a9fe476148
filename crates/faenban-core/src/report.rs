//! The office's report: the programme's figures per area, computed once
//! from the merged records and the catalogues, for the CLI (and, later, the
//! server, the workbook and the War Room page) to render, so that they can
//! never disagree. Pure: records in, figures out. `docs/report.md` defines
//! every figure in words a district officer can check.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::areas::Areas;
use crate::catalogue::{Catalogues, Dimension};
use crate::change::{RecordId, RecordKey, RecordKind};
use crate::codes::{AreaCode, AreaLevel};
use crate::dates::fiscal_year_be;
use crate::merge::RecordState;
use crate::model::{
    assess_visit, decode, Assistance, AssistanceStatus, Classification, Household, Livelihood,
    Member, Pairing, ProgrammeEntry, Relation, Stage, Visit,
};
use crate::money::Baht;

/// The version of the report's JSON form (`schema/report.schema.json`).
pub const REPORT_VERSION: u32 = 1;

/// What to report on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// Only households in this area (any level).
    pub area: Option<AreaCode>,
    /// One row per area at this level (besides the total).
    pub level: Option<AreaLevel>,
    /// Only this dimension in the per-dimension figures.
    pub dimension: Option<Dimension>,
    /// Only visits and assistance dated in this fiscal year (BE, 1 October
    /// to 30 September).
    pub fiscal_year: Option<i32>,
}

/// The report: the total for the scope asked, then one row per area.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The area asked for, if any.
    pub area: Option<String>,
    /// The fiscal year asked for, if any (BE).
    pub fiscal_year: Option<i32>,
    /// The dimension asked for, if any.
    pub dimension: Option<Dimension>,
    /// The whole scope.
    pub total: AreaFigures,
    /// One row per area at the level asked, in code order.
    pub areas: Vec<AreaFigures>,
}

/// Every figure of one area.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AreaFigures {
    /// Its code (empty for the total).
    pub code: String,
    /// `province`, `district`, `subdistrict`, `village`, or `all`.
    pub level: String,
    /// Its name in Thai, as the DOPA lists give it.
    pub name_th: String,
    /// Households in the programme (not archived).
    pub households: u64,
    /// Households deprived, at their latest finished visit, in at least one
    /// dimension and holding a state welfare card.
    pub target_poor: u64,
    /// By classification.
    pub classification: ClassificationCounts,
    /// By how they entered the programme.
    pub entry: EntryCounts,
    /// By livelihood group.
    pub livelihood: BTreeMap<String, u64>,
    /// Per TPMAP dimension, by the core's dimension keys.
    pub dimensions: BTreeMap<String, DimensionFigures>,
    /// First and latest finished visit.
    pub income: IncomeChange,
    /// Officials and the households they follow.
    pub pairing: PairingFigures,
    /// Assistance by partner sector.
    pub sectors: BTreeMap<String, AssistanceTotals>,
    /// Assistance by the agency that gave it, as recorded.
    pub agencies: BTreeMap<String, AssistanceTotals>,
    /// What is missing.
    pub gaps: Gaps,
    /// Households with a record in conflict, awaiting review.
    pub conflicts: u64,
}

/// Households by classification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassificationCounts {
    /// ต้องสงเคราะห์.
    pub needs_welfare: u64,
    /// พัฒนาได้.
    pub can_develop: u64,
    /// Not yet classified.
    pub unclassified: u64,
}

/// Households by how they entered the programme.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryCounts {
    /// From the TPMAP list.
    pub tpmap_target: u64,
    /// Found in the field.
    pub exclusion_error: u64,
    /// A vulnerable group.
    pub vulnerable_group: u64,
}

/// One dimension's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimensionFigures {
    /// Households with a finished visit.
    pub surveyed: u64,
    /// Deprived in the dimension at their latest finished visit.
    pub deprived: u64,
    /// Deprived and helped in the dimension.
    pub helped: u64,
    /// Helped in the dimension though not deprived in it.
    pub helped_not_deprived: u64,
    /// `helped` over `deprived`, in percent, two decimals rounded half up;
    /// `None` when none is deprived.
    pub percent_helped: Option<String>,
    /// Helped households by the furthest stage of help reached.
    pub stage: StageCounts,
    /// With two or more finished visits: deprived at the first and not at the latest.
    pub left_deprivation: u64,
    /// With two or more finished visits: not deprived at the first, deprived at the latest.
    pub fell_into_deprivation: u64,
}

/// Households by the furthest stage their help reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    /// อยู่รอด.
    pub survive: u64,
    /// พอเพียง.
    pub sufficient: u64,
    /// ยั่งยืน.
    pub sustainable: u64,
}

/// Income at the first and the latest finished visit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomeChange {
    /// Households with two or more finished visits.
    pub households_revisited: u64,
    /// Of those, with a yearly income at both.
    pub households_with_income: u64,
    /// Mean monthly household income at the first visit (baht, exact to
    /// the satang, rounded down).
    pub first_mean_monthly: Option<Baht>,
    /// The same at the latest visit.
    pub latest_mean_monthly: Option<Baht>,
    /// The change, in percent, two decimals rounded half up.
    pub percent_change: Option<String>,
}

/// Officials and the households they follow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingFigures {
    /// Households with an official.
    pub with_official: u64,
    /// Households with none.
    pub without_official: u64,
    /// Officials following a household here.
    pub officials: u64,
    /// Of those, following more than two households (anywhere).
    pub officials_above_two: u64,
}

/// Assistance records of one partner sector or agency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistanceTotals {
    /// Records.
    pub records: u64,
    /// Households helped.
    pub households: u64,
    /// Baht given or planned, exact.
    pub baht: Baht,
    /// Records planned.
    pub planned: u64,
    /// Records under way.
    pub in_progress: u64,
    /// Records given.
    pub done: u64,
}

/// What the office has yet to collect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gaps {
    /// Households with no finished visit.
    pub never_surveyed: u64,
    /// Households with a survey left unfinished.
    pub unfinished_surveys: u64,
    /// Households with no head recorded.
    pub no_head: u64,
}

/// A percentage of two counts, two decimals, rounded half up (72.48 for
/// 266 of 367); `None` when the whole is zero.
pub fn percent(part: u64, whole: u64) -> Option<String> {
    if whole == 0 {
        return None;
    }
    // In hundredths of a percent, rounded half up, in integers.
    let hundredths = (u128::from(part) * 20_000 + u128::from(whole)) / (2 * u128::from(whole));
    Some(format!("{}.{:02}", hundredths / 100, hundredths % 100))
}

/// The change from `before` to `after`, in percent, as [`percent`] rounds it
/// (negative for a fall).
pub fn percent_change(before: Baht, after: Baht) -> Option<String> {
    let (before, after) = (before.satang(), after.satang());
    if before == 0 {
        return None;
    }
    let (sign, difference) = if after >= before {
        ("", after - before)
    } else {
        ("-", before - after)
    };
    percent(difference, before).map(|text| format!("{sign}{text}"))
}

/// What is known of one household, for the figures.
#[derive(Default)]
struct HouseholdFacts {
    village: String,
    classification: Option<Classification>,
    entry: Option<ProgrammeEntry>,
    livelihood: Option<Livelihood>,
    welfare_card: bool,
    /// Finished visits, oldest first: the date, the deprived dimensions,
    /// the yearly income.
    visits: Vec<(chrono::NaiveDate, Vec<Dimension>, bool, Option<Baht>)>,
    unfinished: bool,
    head: bool,
    /// Per dimension: helped (under way or given), and the furthest stage.
    helped: HashMap<Dimension, Stage>,
    officials: HashSet<RecordId>,
    conflict: bool,
}

/// Computes the report from every record (any order) with the catalogues
/// and area names.
pub fn build(
    records: impl IntoIterator<Item = (RecordKey, RecordState)>,
    catalogues: &Catalogues,
    areas: &Areas,
    options: &ReportOptions,
) -> Report {
    let in_year = |date: chrono::NaiveDate| {
        options
            .fiscal_year
            .is_none_or(|year| fiscal_year_be(date) == year)
    };
    let mut households: HashMap<RecordId, HouseholdFacts> = HashMap::new();
    let mut visits = Vec::new();
    let mut assistance = Vec::new();
    let mut members = Vec::new();
    let mut pairings = Vec::new();
    let mut conflicted: HashSet<RecordId> = HashSet::new();
    for (key, state) in records {
        match key.kind {
            RecordKind::Household => {
                let Ok(record) = decode::<Household>(&key, &state) else {
                    continue;
                };
                if record.archived {
                    continue;
                }
                let household = record.value;
                if options
                    .area
                    .as_ref()
                    .is_some_and(|area| !area.contains(&household.village))
                {
                    continue;
                }
                if record.in_conflict {
                    conflicted.insert(key.id);
                }
                households.insert(
                    key.id,
                    HouseholdFacts {
                        village: household.village.as_str().to_owned(),
                        classification: household.classification,
                        entry: Some(household.entry),
                        livelihood: household.livelihood,
                        welfare_card: household.welfare_card,
                        ..HouseholdFacts::default()
                    },
                );
            }
            // A visit of a household already read is taken at once (the
            // stores give households first), so that visits, the largest
            // records, are not all held at once.
            RecordKind::Visit => {
                let household = state
                    .shown("household")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                    .map(RecordId);
                if household.is_some_and(|id| households.contains_key(&id)) {
                    take_visit(
                        &mut households,
                        &mut conflicted,
                        catalogues,
                        &in_year,
                        &key,
                        &state,
                    );
                } else {
                    visits.push((key, state));
                }
            }
            RecordKind::Assistance => {
                if let Ok(record) = decode::<Assistance>(&key, &state) {
                    if record.in_conflict {
                        conflicted.insert(record.value.household);
                    }
                    if !record.archived {
                        assistance.push(record.value);
                    }
                }
            }
            RecordKind::Member => {
                if let Ok(record) = decode::<Member>(&key, &state) {
                    if record.in_conflict {
                        conflicted.insert(record.value.household);
                    }
                    if !record.archived {
                        members.push(record.value);
                    }
                }
            }
            RecordKind::Pairing => {
                if let Ok(record) = decode::<Pairing>(&key, &state) {
                    if !record.archived {
                        pairings.push(record.value);
                    }
                }
            }
            _ => {}
        }
    }
    for (key, state) in visits {
        take_visit(
            &mut households,
            &mut conflicted,
            catalogues,
            &in_year,
            &key,
            &state,
        );
    }
    for member in members {
        if member.relation == Relation::Head {
            if let Some(facts) = households.get_mut(&member.household) {
                facts.head = true;
            }
        }
    }
    let mut officials_households: HashMap<RecordId, HashSet<RecordId>> = HashMap::new();
    for pairing in &pairings {
        officials_households
            .entry(pairing.official)
            .or_default()
            .insert(pairing.household);
        if let Some(facts) = households.get_mut(&pairing.household) {
            facts.officials.insert(pairing.official);
        }
    }
    let mut given: Vec<(String, Assistance)> = Vec::new();
    for help in assistance {
        let Some(facts) = households.get_mut(&help.household) else {
            continue;
        };
        if !in_year(help.date) {
            continue;
        }
        if help.status != AssistanceStatus::Planned {
            let stage = facts.helped.entry(help.dimension).or_insert(help.stage);
            if stage_rank(help.stage) > stage_rank(*stage) {
                *stage = help.stage;
            }
        }
        given.push((facts.village.clone(), help));
    }
    for id in conflicted {
        if let Some(facts) = households.get_mut(&id) {
            facts.conflict = true;
        }
    }
    for facts in households.values_mut() {
        facts.visits.sort_by_key(|(date, ..)| *date);
    }

    let dimensions: Vec<Dimension> = match options.dimension {
        Some(dimension) => vec![dimension],
        None => Dimension::ALL.to_vec(),
    };
    let over_two: HashSet<RecordId> = officials_households
        .iter()
        .filter(|(_, households)| households.len() > crate::model::HOUSEHOLDS_PER_OFFICIAL)
        .map(|(official, _)| *official)
        .collect();
    // Each area's figures from its own households and assistance, grouped
    // once beforehand: a village-level report reads each household once.
    let figures = |code: &str,
                   level: &str,
                   name_th: String,
                   in_area: &[&HouseholdFacts],
                   given_here: &[&(String, Assistance)]|
     -> AreaFigures {
        let mut area = AreaFigures {
            code: code.to_owned(),
            level: level.to_owned(),
            name_th,
            ..AreaFigures::default()
        };
        for dimension in &dimensions {
            area.dimensions
                .insert(dimension.key().to_owned(), DimensionFigures::default());
        }
        let mut first_total = 0u128;
        let mut latest_total = 0u128;
        let mut officials: HashSet<RecordId> = HashSet::new();
        for facts in in_area.iter().copied() {
            area.households += 1;
            match facts.classification {
                Some(Classification::NeedsWelfare) => area.classification.needs_welfare += 1,
                Some(Classification::CanDevelop) => area.classification.can_develop += 1,
                None => area.classification.unclassified += 1,
            }
            match facts.entry {
                Some(ProgrammeEntry::TpmapTarget) | None => area.entry.tpmap_target += 1,
                Some(ProgrammeEntry::ExclusionError) => area.entry.exclusion_error += 1,
                Some(ProgrammeEntry::VulnerableGroup) => area.entry.vulnerable_group += 1,
            }
            if let Some(livelihood) = facts.livelihood {
                *area.livelihood.entry(code_of(&livelihood)).or_default() += 1;
            }
            if !facts.head {
                area.gaps.no_head += 1;
            }
            if facts.unfinished {
                area.gaps.unfinished_surveys += 1;
            }
            if facts.conflict {
                area.conflicts += 1;
            }
            if facts.officials.is_empty() {
                area.pairing.without_official += 1;
            } else {
                area.pairing.with_official += 1;
                officials.extend(facts.officials.iter().copied());
            }
            let latest = facts.visits.last();
            let first = facts.visits.first();
            if latest.is_none() {
                area.gaps.never_surveyed += 1;
            }
            if latest.is_some_and(|(_, _, target, _)| *target) {
                area.target_poor += 1;
            }
            let revisited = facts.visits.len() >= 2;
            if revisited {
                area.income.households_revisited += 1;
                if let (Some((_, _, _, Some(before))), Some((_, _, _, Some(after)))) =
                    (first, latest)
                {
                    area.income.households_with_income += 1;
                    first_total += u128::from(before.satang());
                    latest_total += u128::from(after.satang());
                }
            }
            for dimension in &dimensions {
                let numbers = area
                    .dimensions
                    .get_mut(dimension.key())
                    .expect("inserted above");
                let deprived = latest.is_some_and(|(_, d, ..)| d.contains(dimension));
                let helped = facts.helped.get(dimension);
                if latest.is_some() {
                    numbers.surveyed += 1;
                }
                if deprived {
                    numbers.deprived += 1;
                }
                match (deprived, helped) {
                    (true, Some(stage)) => {
                        numbers.helped += 1;
                        match stage {
                            Stage::Survive => numbers.stage.survive += 1,
                            Stage::Sufficient => numbers.stage.sufficient += 1,
                            Stage::Sustainable => numbers.stage.sustainable += 1,
                        }
                    }
                    (false, Some(_)) => numbers.helped_not_deprived += 1,
                    _ => {}
                }
                if revisited {
                    let was = first.is_some_and(|(_, d, ..)| d.contains(dimension));
                    match (was, deprived) {
                        (true, false) => numbers.left_deprivation += 1,
                        (false, true) => numbers.fell_into_deprivation += 1,
                        _ => {}
                    }
                }
            }
        }
        for numbers in area.dimensions.values_mut() {
            numbers.percent_helped = percent(numbers.helped, numbers.deprived);
        }
        let with_income = area.income.households_with_income;
        if with_income > 0 {
            // Monthly means: the yearly totals over twelve months and the
            // households, rounded down to the satang.
            let mean = |total: u128| {
                Baht::from_satang(
                    u64::try_from(total / (12 * u128::from(with_income))).unwrap_or(u64::MAX),
                )
            };
            let (before, after) = (mean(first_total), mean(latest_total));
            area.income.first_mean_monthly = Some(before);
            area.income.latest_mean_monthly = Some(after);
            area.income.percent_change = percent_change(before, after);
        }
        area.pairing.officials = officials.len() as u64;
        area.pairing.officials_above_two =
            officials.iter().filter(|o| over_two.contains(o)).count() as u64;
        area.sectors = totals_by(given_here, |help| code_of(&help.sector));
        area.agencies = totals_by(given_here, |help| help.agency.trim().to_owned());
        area
    };

    let scope_code = options
        .area
        .as_ref()
        .map(|area| area.as_str().to_owned())
        .unwrap_or_default();
    let all: Vec<&HouseholdFacts> = households.values().collect();
    let all_given: Vec<&(String, Assistance)> = given.iter().collect();
    let total = figures(
        &scope_code,
        options
            .area
            .as_ref()
            .map_or("all", |area| level_key(area.level())),
        options
            .area
            .as_ref()
            .map(|area| areas.describe_th(area))
            .unwrap_or_default(),
        &all,
        &all_given,
    );
    let mut rows = Vec::new();
    if let Some(level) = options.level {
        let length = level_length(level);
        let mut by_area: BTreeMap<&str, AreaRecords<'_>> = BTreeMap::new();
        for facts in &all {
            if let Some(code) = facts.village.get(..length) {
                by_area.entry(code).or_default().0.push(facts);
            }
        }
        for help in &all_given {
            if let Some(entry) = help.0.get(..length).and_then(|code| by_area.get_mut(code)) {
                entry.1.push(help);
            }
        }
        for (code, (in_area, given_here)) in by_area {
            let name = AreaCode::parse(code)
                .map(|area| areas.describe_th(&area))
                .unwrap_or_default();
            rows.push(figures(code, level_key(level), name, &in_area, &given_here));
        }
    }
    Report {
        version: REPORT_VERSION,
        area: options.area.as_ref().map(|area| area.as_str().to_owned()),
        fiscal_year: options.fiscal_year,
        dimension: options.dimension,
        total,
        areas: rows,
    }
}

/// Assistance records totalled by `group` (a sector, an agency).
fn totals_by(
    given: &[&(String, Assistance)],
    group: impl Fn(&Assistance) -> String,
) -> BTreeMap<String, AssistanceTotals> {
    let mut totals: BTreeMap<String, AssistanceTotals> = BTreeMap::new();
    let mut households: BTreeMap<String, HashSet<RecordId>> = BTreeMap::new();
    for (_, help) in given.iter().copied() {
        let key = group(help);
        let entry = totals.entry(key.clone()).or_default();
        entry.records += 1;
        if let Some(amount) = help.amount {
            entry.baht = entry.baht.checked_add(amount).unwrap_or(entry.baht);
        }
        match help.status {
            AssistanceStatus::Planned => entry.planned += 1,
            AssistanceStatus::InProgress => entry.in_progress += 1,
            AssistanceStatus::Done => entry.done += 1,
        }
        households.entry(key).or_default().insert(help.household);
    }
    for (key, helped) in households {
        if let Some(entry) = totals.get_mut(&key) {
            entry.households = helped.len() as u64;
        }
    }
    totals
}

/// One area's households and its assistance (with the village of each).
type AreaRecords<'a> = (Vec<&'a HouseholdFacts>, Vec<&'a (String, Assistance)>);

/// What a visit tells of its household: a finished one its deprivation and
/// income; an unfinished one, a gap.
fn take_visit(
    households: &mut HashMap<RecordId, HouseholdFacts>,
    conflicted: &mut HashSet<RecordId>,
    catalogues: &Catalogues,
    in_year: &impl Fn(chrono::NaiveDate) -> bool,
    key: &RecordKey,
    state: &RecordState,
) {
    let Ok(record) = decode::<Visit>(key, state) else {
        return;
    };
    let visit = record.value;
    if record.in_conflict {
        conflicted.insert(visit.household);
    }
    let Some(facts) = households.get_mut(&visit.household) else {
        return;
    };
    if record.archived || !in_year(visit.date) {
        return;
    }
    if visit.in_progress {
        facts.unfinished = true;
        return;
    }
    let Ok(assessment) = assess_visit(catalogues, &visit, state, facts.welfare_card) else {
        return;
    };
    facts.visits.push((
        visit.date,
        assessment.deprived,
        assessment.target_poor,
        visit.income_per_year,
    ));
}

fn stage_rank(stage: Stage) -> u8 {
    match stage {
        Stage::Survive => 0,
        Stage::Sufficient => 1,
        Stage::Sustainable => 2,
    }
}

/// An enum's stored code (`needs_welfare`, `civil_society`).
fn code_of(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The key of an area level in the report.
pub fn level_key(level: AreaLevel) -> &'static str {
    match level {
        AreaLevel::Province => "province",
        AreaLevel::District => "district",
        AreaLevel::Subdistrict => "subdistrict",
        AreaLevel::Village => "village",
    }
}

/// The area level a report key names (`district`), as [`level_key`] writes it.
pub fn level_from_key(key: &str) -> Option<AreaLevel> {
    [
        AreaLevel::Province,
        AreaLevel::District,
        AreaLevel::Subdistrict,
        AreaLevel::Village,
    ]
    .into_iter()
    .find(|level| level_key(*level) == key)
}

fn level_length(level: AreaLevel) -> usize {
    match level {
        AreaLevel::Province => 2,
        AreaLevel::District => 4,
        AreaLevel::Subdistrict => 6,
        AreaLevel::Village => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_rounded_half_up_to_two_decimals() {
        // The Khon Kaen article's 266 of 367 is 72.4795…: 72.48, not the
        // article's truncated 72.47.
        assert_eq!(percent(266, 367).as_deref(), Some("72.48"));
        assert_eq!(percent(1, 8).as_deref(), Some("12.50"));
        assert_eq!(percent(1, 3).as_deref(), Some("33.33"));
        assert_eq!(percent(2, 3).as_deref(), Some("66.67"));
        assert_eq!(percent(1174, 1174).as_deref(), Some("100.00"));
        assert_eq!(percent(0, 5).as_deref(), Some("0.00"));
        assert_eq!(percent(1, 0), None);
    }

    #[test]
    fn an_income_change_is_a_percentage_of_the_first() {
        // Kalasin's 2,465 → 2,671 baht a month is +8.36%, not the +8.24%
        // the article gives.
        let change = percent_change(Baht::from_baht(2_465), Baht::from_baht(2_671));
        assert_eq!(change.as_deref(), Some("8.36"));
        let fall = percent_change(Baht::from_baht(2_000), Baht::from_baht(1_500));
        assert_eq!(fall.as_deref(), Some("-25.00"));
        assert_eq!(percent_change(Baht::ZERO, Baht::from_baht(1)), None);
    }
}
