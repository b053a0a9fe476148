//! The office's report: the programme's figures per area, computed once
//! from the merged records and the catalogues, for the CLI (and, later, the
//! server, the workbook and the War Room page) to render, so that they can
//! never disagree. Pure: records in, figures out. `docs/report.md` defines
//! every figure in words a district officer can check.

use std::collections::{BTreeMap, HashMap};

// Ids and agency names hashed many times per household: a fast hash, not
// one that resists flooding (the keys are the store's own).
use rustc_hash::{FxHashMap, FxHashSet};

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

/// What the report needs of one household and its records, whatever is
/// asked: the stores keep one per household, rewritten as its records
/// change, so that a report reads one small row per household instead of
/// every record. The figures come from these alone ([`build_from_digests`]).
/// Stored as JSON with one- and two-letter keys and dates as day numbers:
/// a province reads hundreds of thousands of them per report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HouseholdDigest {
    /// The household.
    #[serde(rename = "i")]
    pub id: RecordId,
    /// Its 8-digit village code.
    #[serde(rename = "v")]
    pub village: String,
    /// Its house code (รหัสบ้าน).
    #[serde(rename = "h", default)]
    pub house_code: String,
    /// Its classification, if made.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// How it entered the programme.
    #[serde(rename = "e")]
    pub entry: ProgrammeEntry,
    /// Its livelihood group, if recorded.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub livelihood: Option<Livelihood>,
    /// A head is recorded among its members.
    #[serde(rename = "hd", default, skip_serializing_if = "is_false")]
    pub head: bool,
    /// A record of it (itself, a member, a visit, help) is in conflict.
    #[serde(rename = "x", default, skip_serializing_if = "is_false")]
    pub conflict: bool,
    /// Finished visits, oldest first.
    #[serde(rename = "vs", default, skip_serializing_if = "Vec::is_empty")]
    pub visits: Vec<VisitDigest>,
    /// The dates of visits left unfinished.
    #[serde(
        rename = "u",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "day_numbers"
    )]
    pub unfinished: Vec<chrono::NaiveDate>,
    /// Its assistance records (not archived).
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub assistance: Vec<HelpDigest>,
    /// The officials paired with it.
    #[serde(rename = "o", default, skip_serializing_if = "Vec::is_empty")]
    pub officials: Vec<RecordId>,
}

/// A finished visit, as the report counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitDigest {
    /// The day of the visit.
    #[serde(rename = "d", with = "day_number")]
    pub date: chrono::NaiveDate,
    /// Bit `i` set when deprived in `Dimension::ALL[i]` by the catalogue.
    #[serde(rename = "p")]
    pub deprived: u8,
    /// Target poor at this visit.
    #[serde(rename = "t", default, skip_serializing_if = "is_false")]
    pub target_poor: bool,
    /// The household's yearly income, if asked.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub income: Option<Baht>,
}

/// An assistance record, as the report counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpDigest {
    /// The day given or planned.
    #[serde(rename = "d", with = "day_number")]
    pub date: chrono::NaiveDate,
    /// The dimension it addresses.
    #[serde(rename = "n")]
    pub dimension: Dimension,
    /// Planned, under way or given.
    #[serde(rename = "s")]
    pub status: AssistanceStatus,
    /// Its stage.
    #[serde(rename = "g")]
    pub stage: Stage,
    /// The giver's sector.
    #[serde(rename = "c")]
    pub sector: crate::model::Sector,
    /// The agency that gave it, as recorded (trimmed).
    #[serde(rename = "y")]
    pub agency: String,
    /// The amount, if known.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Baht>,
}

/// A date as its day number from the Common Era (`2025-02-14` is 739296):
/// a tenth of the time to read back.
mod day_number {
    use chrono::{Datelike, NaiveDate};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(date: &NaiveDate, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_i32(date.num_days_from_ce())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<NaiveDate, D::Error> {
        let days = i32::deserialize(input)?;
        NaiveDate::from_num_days_from_ce_opt(days)
            .ok_or_else(|| serde::de::Error::custom("not a day number"))
    }
}

/// Dates as day numbers, for a list.
mod day_numbers {
    use chrono::{Datelike, NaiveDate};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(dates: &[NaiveDate], out: S) -> Result<S::Ok, S::Error> {
        out.collect_seq(dates.iter().map(|date| date.num_days_from_ce()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        input: D,
    ) -> Result<Vec<NaiveDate>, D::Error> {
        Vec::<i32>::deserialize(input)?
            .into_iter()
            .map(|days| {
                NaiveDate::from_num_days_from_ce_opt(days)
                    .ok_or_else(|| serde::de::Error::custom("not a day number"))
            })
            .collect()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn deprived_in(bits: u8, dimension: Dimension) -> bool {
    bits & crate::sync::HouseholdPlace::bit(dimension) != 0
}

/// The digest of one household from its own record and every record that
/// names it (members, visits, assistance, pairings; any order). `None` when
/// the household is archived or cannot be read: the report leaves it out.
pub fn digest_household<'a>(
    household: (&RecordKey, &RecordState),
    related: impl IntoIterator<Item = (&'a RecordKey, &'a RecordState)>,
    catalogues: &Catalogues,
) -> Option<HouseholdDigest> {
    let (key, state) = household;
    let record = decode::<Household>(key, state).ok()?;
    if record.archived {
        return None;
    }
    let value = record.value;
    let mut digest = HouseholdDigest {
        id: key.id,
        village: value.village.as_str().to_owned(),
        house_code: value.house_code.to_string(),
        classification: value.classification,
        entry: value.entry,
        livelihood: value.livelihood,
        head: false,
        conflict: record.in_conflict,
        visits: Vec::new(),
        unfinished: Vec::new(),
        assistance: Vec::new(),
        officials: Vec::new(),
    };
    for (key, state) in related {
        match key.kind {
            RecordKind::Visit => {
                let Ok(record) = decode::<Visit>(key, state) else {
                    continue;
                };
                digest.conflict |= record.in_conflict;
                let visit = record.value;
                if record.archived || visit.household != digest.id {
                    continue;
                }
                if visit.in_progress {
                    digest.unfinished.push(visit.date);
                    continue;
                }
                let Ok(assessment) = assess_visit(catalogues, &visit, state, value.welfare_card)
                else {
                    continue;
                };
                digest.visits.push(VisitDigest {
                    date: visit.date,
                    deprived: assessment
                        .deprived
                        .iter()
                        .fold(0, |bits, d| bits | crate::sync::HouseholdPlace::bit(*d)),
                    target_poor: assessment.target_poor,
                    income: visit.income_per_year,
                });
            }
            RecordKind::Assistance => {
                let Ok(record) = decode::<Assistance>(key, state) else {
                    continue;
                };
                digest.conflict |= record.in_conflict;
                let help = record.value;
                if record.archived || help.household != digest.id {
                    continue;
                }
                digest.assistance.push(HelpDigest {
                    date: help.date,
                    dimension: help.dimension,
                    status: help.status,
                    stage: help.stage,
                    sector: help.sector,
                    agency: help.agency.trim().to_owned(),
                    amount: help.amount,
                });
            }
            RecordKind::Member => {
                let Ok(record) = decode::<Member>(key, state) else {
                    continue;
                };
                digest.conflict |= record.in_conflict;
                if !record.archived
                    && record.value.household == digest.id
                    && record.value.relation == Relation::Head
                {
                    digest.head = true;
                }
            }
            RecordKind::Pairing => {
                if let Ok(record) = decode::<Pairing>(key, state) {
                    if !record.archived && record.value.household == digest.id {
                        digest.officials.push(record.value.official);
                    }
                }
            }
            _ => {}
        }
    }
    // By everything a visit's digest holds, not by date alone: two visits
    // of one day come in whatever order a store reads them, and the latest
    // must be the same one however it was read.
    digest
        .visits
        .sort_by_key(|visit| (visit.date, visit.deprived, visit.target_poor, visit.income));
    digest.unfinished.sort_unstable();
    digest
        .assistance
        .sort_by_key(|help| (help.date, help.dimension));
    digest.officials.sort_unstable();
    digest.officials.dedup();
    Some(digest)
}

/// One household as the office's list of a village shows it: no name, no
/// national ID.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HouseholdRow {
    /// The household.
    pub id: RecordId,
    /// Its house code.
    pub house_code: String,
    /// Its classification, if made.
    pub classification: Option<Classification>,
    /// The dimensions it is deprived in at its latest finished visit (in
    /// the fiscal year asked); `None` if never surveyed.
    pub deprived: Option<Vec<Dimension>>,
    /// Per dimension helped in: the furthest status and stage reached.
    pub help: Vec<(Dimension, AssistanceStatus, Stage)>,
    /// The officials paired with it.
    pub officials: Vec<RecordId>,
    /// A record of it awaits review.
    pub conflict: bool,
}

/// The households of one area (any level) as the office lists them, by
/// house code, with the fiscal year and dimension asked applied as the
/// report applies them.
pub fn household_rows(
    digests: impl IntoIterator<Item = HouseholdDigest>,
    area: &AreaCode,
    options: &ReportOptions,
) -> Vec<HouseholdRow> {
    let in_year = |date: chrono::NaiveDate| {
        options
            .fiscal_year
            .is_none_or(|year| fiscal_year_be(date) == year)
    };
    let shown = |dimension: Dimension| options.dimension.is_none_or(|only| only == dimension);
    let mut rows: Vec<HouseholdRow> = digests
        .into_iter()
        .filter(|digest| digest.village.starts_with(area.as_str()))
        .map(|digest| {
            let latest = digest.visits.iter().rev().find(|visit| in_year(visit.date));
            let deprived = latest.map(|visit| {
                Dimension::ALL
                    .into_iter()
                    .filter(|d| shown(*d) && deprived_in(visit.deprived, *d))
                    .collect()
            });
            let mut help: Vec<(Dimension, AssistanceStatus, Stage)> = Vec::new();
            for given in digest.assistance.iter().filter(|help| in_year(help.date)) {
                if !shown(given.dimension) {
                    continue;
                }
                match help.iter_mut().find(|(d, ..)| *d == given.dimension) {
                    Some((_, status, stage)) => {
                        if status_rank(given.status) > status_rank(*status) {
                            *status = given.status;
                        }
                        if stage_rank(given.stage) > stage_rank(*stage) {
                            *stage = given.stage;
                        }
                    }
                    None => help.push((given.dimension, given.status, given.stage)),
                }
            }
            help.sort_by_key(|(dimension, ..)| *dimension);
            HouseholdRow {
                id: digest.id,
                house_code: digest.house_code,
                classification: digest.classification,
                deprived,
                help,
                officials: digest.officials,
                conflict: digest.conflict,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.house_code, a.id).cmp(&(&b.house_code, b.id)));
    rows
}

fn status_rank(status: AssistanceStatus) -> u8 {
    match status {
        AssistanceStatus::Planned => 0,
        AssistanceStatus::InProgress => 1,
        AssistanceStatus::Done => 2,
    }
}

/// Each row with the names of its officials, each official's record read
/// once through `state_of` (the store's lookup); an official the store does
/// not hold is named "".
pub fn with_official_names<E>(
    rows: Vec<HouseholdRow>,
    mut state_of: impl FnMut(&RecordKey) -> Result<Option<RecordState>, E>,
) -> Result<Vec<(HouseholdRow, Vec<String>)>, E> {
    let mut names: HashMap<RecordId, String> = HashMap::new();
    rows.into_iter()
        .map(|row| {
            let mut officials = Vec::with_capacity(row.officials.len());
            for official in &row.officials {
                if !names.contains_key(official) {
                    let key = RecordKey::new(RecordKind::Official, official.0);
                    let name = state_of(&key)?
                        .map(|state| official_name(&key, &state))
                        .unwrap_or_default();
                    names.insert(*official, name);
                }
                officials.push(names[official].clone());
            }
            Ok((row, officials))
        })
        .collect()
}

/// An official's name as recorded (empty for a record that does not read
/// as an official), as the office's lists show it.
pub fn official_name(key: &RecordKey, state: &RecordState) -> String {
    decode::<crate::model::Official>(key, state)
        .map(|record| record.value.name)
        .unwrap_or_default()
}

/// The household a record belongs to, as its `household` field names it.
pub fn household_of(state: &RecordState) -> Option<RecordId> {
    state
        .shown("household")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(RecordId)
}

/// Computes the report from every record (any order) with the catalogues
/// and area names: each household is digested ([`digest_all`]), then
/// [`build_from_digests`]. The stores keep the digests instead and call
/// that directly.
pub fn build(
    records: impl IntoIterator<Item = (RecordKey, RecordState)>,
    catalogues: &Catalogues,
    areas: &Areas,
    options: &ReportOptions,
) -> Report {
    build_from_digests(digest_all(records, catalogues), areas, options)
}

/// Every household's digest from every record (any order): each record
/// goes with the household its `household` field names.
pub fn digest_all(
    records: impl IntoIterator<Item = (RecordKey, RecordState)>,
    catalogues: &Catalogues,
) -> Vec<HouseholdDigest> {
    let mut households = Vec::new();
    let mut related: HashMap<RecordId, Vec<(RecordKey, RecordState)>> = HashMap::new();
    for (key, state) in records {
        if key.kind == RecordKind::Household {
            households.push((key, state));
        } else if let Some(household) = household_of(&state) {
            related.entry(household).or_default().push((key, state));
        }
    }
    households
        .iter()
        .filter_map(|(key, state)| {
            let own = related.get(&key.id).map(Vec::as_slice).unwrap_or_default();
            digest_household(
                (key, state),
                own.iter().map(|(key, state)| (key, state)),
                catalogues,
            )
        })
        .collect()
}

/// What is counted of one household for the report asked (its digest with
/// the fiscal year applied).
struct HouseholdFacts {
    id: RecordId,
    village: String,
    /// The village code as a number, for sorting and grouping by area.
    village_number: u32,
    classification: Option<Classification>,
    entry: ProgrammeEntry,
    livelihood: Option<Livelihood>,
    /// The first and the latest finished visit in the year, and whether
    /// there were two or more.
    first: Option<VisitDigest>,
    latest: Option<VisitDigest>,
    revisited: bool,
    unfinished: bool,
    head: bool,
    /// Per dimension (in `Dimension::ALL` order): the furthest stage of
    /// help under way or given.
    helped: [Option<Stage>; 5],
    officials: Vec<RecordId>,
    conflict: bool,
    /// Its assistance records in the year.
    given: Vec<HelpDigest>,
}

fn dimension_index(dimension: Dimension) -> usize {
    Dimension::ALL
        .iter()
        .position(|d| *d == dimension)
        .expect("every dimension is in ALL")
}

/// Computes the report from the households' digests (any order).
pub fn build_from_digests(
    digests: impl IntoIterator<Item = HouseholdDigest>,
    areas: &Areas,
    options: &ReportOptions,
) -> Report {
    let in_year = |date: chrono::NaiveDate| {
        options
            .fiscal_year
            .is_none_or(|year| fiscal_year_be(date) == year)
    };
    let mut households: Vec<HouseholdFacts> = Vec::new();
    // An official's load counts every household the store holds, in the
    // area asked or not.
    let mut officials_households: FxHashMap<RecordId, u64> = FxHashMap::default();
    for digest in digests {
        for official in &digest.officials {
            *officials_households.entry(*official).or_default() += 1;
        }
        if options
            .area
            .as_ref()
            .is_some_and(|area| !digest.village.starts_with(area.as_str()))
        {
            continue;
        }
        let mut helped: [Option<Stage>; 5] = [None; 5];
        let mut given = digest.assistance;
        given.retain(|help| in_year(help.date));
        for help in &given {
            if help.status != AssistanceStatus::Planned {
                let stage = &mut helped[dimension_index(help.dimension)];
                if stage.is_none_or(|reached| stage_rank(help.stage) > stage_rank(reached)) {
                    *stage = Some(help.stage);
                }
            }
        }
        let mut visits = digest
            .visits
            .into_iter()
            .filter(|visit| in_year(visit.date));
        let first = visits.next();
        let latest = visits.next_back();
        let revisited = latest.is_some();
        let latest = latest.or_else(|| first.clone());
        households.push(HouseholdFacts {
            id: digest.id,
            village_number: digest.village.parse().unwrap_or(u32::MAX),
            village: digest.village,
            classification: digest.classification,
            entry: digest.entry,
            livelihood: digest.livelihood,
            first,
            latest,
            revisited,
            unfinished: digest.unfinished.iter().any(|date| in_year(*date)),
            head: digest.head,
            helped,
            officials: digest.officials,
            conflict: digest.conflict,
            given,
        });
    }
    // Code order, for rows grouped by area below.
    households.sort_unstable_by_key(|facts| (facts.village_number, facts.id));

    let dimensions: Vec<Dimension> = match options.dimension {
        Some(dimension) => vec![dimension],
        None => Dimension::ALL.to_vec(),
    };
    let over_two: FxHashSet<RecordId> = officials_households
        .iter()
        .filter(|(_, households)| **households > crate::model::HOUSEHOLDS_PER_OFFICIAL as u64)
        .map(|(official, _)| *official)
        .collect();
    // Each area's figures from its own households, grouped once
    // beforehand: a village-level report reads each household once.
    let figures = |code: &str, level: &str, name_th: String, in_area: &[HouseholdFacts]| {
        area_figures(code, level, name_th, in_area, &dimensions, &over_two)
    };

    let scope_code = options
        .area
        .as_ref()
        .map(|area| area.as_str().to_owned())
        .unwrap_or_default();
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
        &households,
    );
    let mut rows = Vec::new();
    if let Some(level) = options.level {
        let length = level_length(level);
        // Households are in code order: each area is one run of them.
        let divisor = 10u32.pow(8 - length as u32);
        let mut start = 0;
        while start < households.len() {
            let area = households[start].village_number / divisor;
            let end = start
                + households[start..]
                    .iter()
                    .take_while(|facts| facts.village_number / divisor == area)
                    .count();
            if let Some(code) = households[start].village.get(..length) {
                let name = AreaCode::parse(code)
                    .map(|area| areas.describe_th(&area))
                    .unwrap_or_default();
                rows.push(figures(
                    code,
                    level_key(level),
                    name,
                    &households[start..end],
                ));
            }
            start = end;
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

/// The figures of one area from its households.
fn area_figures(
    code: &str,
    level: &str,
    name_th: String,
    in_area: &[HouseholdFacts],
    dimensions: &[Dimension],
    over_two: &FxHashSet<RecordId>,
) -> AreaFigures {
    let mut area = AreaFigures {
        code: code.to_owned(),
        level: level.to_owned(),
        name_th,
        ..AreaFigures::default()
    };
    let mut per_dimension: [DimensionFigures; 5] = Default::default();
    let mut livelihoods: Vec<(Livelihood, u64)> = Vec::new();
    let mut first_total = 0u128;
    let mut latest_total = 0u128;
    let mut officials: FxHashSet<RecordId> = FxHashSet::default();
    let mut sectors: Vec<(crate::model::Sector, Totals)> = Vec::new();
    let mut agencies: FxHashMap<&str, Totals> = FxHashMap::default();
    for facts in in_area {
        area.households += 1;
        match facts.classification {
            Some(Classification::NeedsWelfare) => area.classification.needs_welfare += 1,
            Some(Classification::CanDevelop) => area.classification.can_develop += 1,
            None => area.classification.unclassified += 1,
        }
        match facts.entry {
            ProgrammeEntry::TpmapTarget => area.entry.tpmap_target += 1,
            ProgrammeEntry::ExclusionError => area.entry.exclusion_error += 1,
            ProgrammeEntry::VulnerableGroup => area.entry.vulnerable_group += 1,
        }
        if let Some(livelihood) = facts.livelihood {
            match livelihoods.iter_mut().find(|(l, _)| *l == livelihood) {
                Some((_, count)) => *count += 1,
                None => livelihoods.push((livelihood, 1)),
            }
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
        let (first, latest) = (facts.first.as_ref(), facts.latest.as_ref());
        if latest.is_none() {
            area.gaps.never_surveyed += 1;
        }
        if latest.is_some_and(|visit| visit.target_poor) {
            area.target_poor += 1;
        }
        if facts.revisited {
            area.income.households_revisited += 1;
            if let (Some(before), Some(after)) = (
                first.and_then(|visit| visit.income),
                latest.and_then(|visit| visit.income),
            ) {
                area.income.households_with_income += 1;
                first_total += u128::from(before.satang());
                latest_total += u128::from(after.satang());
            }
        }
        for dimension in dimensions {
            let index = dimension_index(*dimension);
            let numbers = &mut per_dimension[index];
            let deprived = latest.is_some_and(|visit| deprived_in(visit.deprived, *dimension));
            if latest.is_some() {
                numbers.surveyed += 1;
            }
            if deprived {
                numbers.deprived += 1;
            }
            match (deprived, facts.helped[index]) {
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
            if facts.revisited {
                let was = first.is_some_and(|visit| deprived_in(visit.deprived, *dimension));
                match (was, deprived) {
                    (true, false) => numbers.left_deprivation += 1,
                    (false, true) => numbers.fell_into_deprivation += 1,
                    _ => {}
                }
            }
        }
        for help in &facts.given {
            let sector = match sectors.iter_mut().find(|(s, _)| *s == help.sector) {
                Some((_, totals)) => totals,
                None => {
                    sectors.push((help.sector, Totals::default()));
                    &mut sectors.last_mut().expect("just pushed").1
                }
            };
            sector.add(facts.id, help);
            agencies
                .entry(help.agency.as_str())
                .or_default()
                .add(facts.id, help);
        }
    }
    for dimension in dimensions {
        let mut numbers = std::mem::take(&mut per_dimension[dimension_index(*dimension)]);
        numbers.percent_helped = percent(numbers.helped, numbers.deprived);
        area.dimensions.insert(dimension.key().to_owned(), numbers);
    }
    area.livelihood = livelihoods
        .into_iter()
        .map(|(livelihood, count)| (code_of(&livelihood), count))
        .collect();
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
    area.sectors = sectors
        .into_iter()
        .map(|(sector, totals)| (code_of(&sector), totals.finish()))
        .collect();
    area.agencies = agencies
        .into_iter()
        .map(|(agency, totals)| (agency.to_owned(), totals.finish()))
        .collect();
    area
}

/// Assistance totals being counted, with the households helped.
#[derive(Default)]
struct Totals {
    totals: AssistanceTotals,
    households: FxHashSet<RecordId>,
}

impl Totals {
    fn add(&mut self, household: RecordId, help: &HelpDigest) {
        let entry = &mut self.totals;
        entry.records += 1;
        if let Some(amount) = help.amount {
            entry.baht = entry.baht.checked_add(amount).unwrap_or(entry.baht);
        }
        match help.status {
            AssistanceStatus::Planned => entry.planned += 1,
            AssistanceStatus::InProgress => entry.in_progress += 1,
            AssistanceStatus::Done => entry.done += 1,
        }
        self.households.insert(household);
    }

    fn finish(mut self) -> AssistanceTotals {
        self.totals.households = self.households.len() as u64;
        self.totals
    }
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
