//! Indicator catalogues as data, and what a visit's answers mean: deprivation
//! in each TPMAP dimension and whether a household is "target poor".
//!
//! A catalogue is a CSV text (see `schema/catalogues/`) handed to
//! [`Catalogue::parse`]; a new edition is a new file, not new code. Every
//! visit keeps the edition it was recorded with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::Baht;

/// The five TPMAP dimensions of poverty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// ด้านสุขภาพ
    Health,
    /// ด้านความเป็นอยู่
    Living,
    /// ด้านการศึกษา
    Education,
    /// ด้านรายได้
    Income,
    /// ด้านการเข้าถึงบริการรัฐ
    Accessibility,
}

impl Dimension {
    /// All five, in TPMAP order.
    pub const ALL: [Dimension; 5] = [
        Dimension::Health,
        Dimension::Living,
        Dimension::Education,
        Dimension::Income,
        Dimension::Accessibility,
    ];

    /// The key used in files and on the wire.
    pub fn key(self) -> &'static str {
        match self {
            Dimension::Health => "health",
            Dimension::Living => "living",
            Dimension::Education => "education",
            Dimension::Income => "income",
            Dimension::Accessibility => "accessibility",
        }
    }

    /// The dimension with this key.
    pub fn from_key(key: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.key() == key)
    }

    /// The Thai name.
    pub fn name_th(self) -> &'static str {
        match self {
            Dimension::Health => "ด้านสุขภาพ",
            Dimension::Living => "ด้านความเป็นอยู่",
            Dimension::Education => "ด้านการศึกษา",
            Dimension::Income => "ด้านรายได้",
            Dimension::Accessibility => "ด้านการเข้าถึงบริการรัฐ",
        }
    }

    /// The English name.
    pub fn name_en(self) -> &'static str {
        match self {
            Dimension::Health => "health",
            Dimension::Living => "living conditions",
            Dimension::Education => "education",
            Dimension::Income => "income",
            Dimension::Accessibility => "access to public services",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// An answer to one indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// ผ่าน: the household meets the indicator.
    Pass,
    /// ไม่ผ่าน: it does not.
    Fail,
    /// ไม่เกี่ยวข้อง: it does not apply (e.g. no child of that age).
    NotApplicable,
}

impl Answer {
    /// Reads `pass`/`fail`/`na` and their Thai forms.
    pub fn parse(text: &str) -> Option<Answer> {
        match text.trim().to_lowercase().as_str() {
            "pass" | "p" | "y" | "yes" | "ผ่าน" => Some(Answer::Pass),
            "fail" | "f" | "n" | "no" | "ไม่ผ่าน" => Some(Answer::Fail),
            "na" | "n/a" | "not_applicable" | "-" | "ไม่เกี่ยวข้อง" => {
                Some(Answer::NotApplicable)
            }
            _ => None,
        }
    }
}

/// Who an indicator asks about, so that a survey can skip what does not
/// apply to a household.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "who", rename_all = "snake_case")]
pub enum AppliesTo {
    /// Every household.
    Household,
    /// Households with a member aged `from` to `to` (inclusive; no upper
    /// bound when `to` is `None`).
    Age {
        /// The youngest age asked about.
        from: u32,
        /// The oldest, if any.
        to: Option<u32>,
    },
    /// Households with a member with a disability.
    Disability,
    /// Households with a chronically ill member.
    ChronicIllness,
}

/// What the survey knows of a household's members, to decide what applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HouseholdProfile {
    /// Every member's age in whole years, where known.
    pub ages: Vec<u32>,
    /// True if any member has a disability.
    pub any_disability: bool,
    /// True if any member is chronically ill.
    pub any_chronic_illness: bool,
}

impl AppliesTo {
    fn parse(text: &str) -> Option<AppliesTo> {
        match text.trim() {
            "household" | "" => Some(AppliesTo::Household),
            "disability" => Some(AppliesTo::Disability),
            "chronic_illness" => Some(AppliesTo::ChronicIllness),
            other => {
                let range = other.strip_prefix("age:")?;
                if let Some(from) = range.strip_suffix('+') {
                    Some(AppliesTo::Age {
                        from: from.parse().ok()?,
                        to: None,
                    })
                } else {
                    let (from, to) = range.split_once('-')?;
                    let (from, to) = (from.parse().ok()?, to.parse().ok()?);
                    (from <= to).then_some(AppliesTo::Age { from, to: Some(to) })
                }
            }
        }
    }

    /// True when the indicator concerns this household.
    pub fn applies(&self, profile: &HouseholdProfile) -> bool {
        match *self {
            AppliesTo::Household => true,
            AppliesTo::Age { from, to } => profile
                .ages
                .iter()
                .any(|age| *age >= from && to.is_none_or(|to| *age <= to)),
            AppliesTo::Disability => profile.any_disability,
            AppliesTo::ChronicIllness => profile.any_chronic_illness,
        }
    }
}

/// How an indicator is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// The surveyor answers pass, fail or not applicable.
    Answered,
    /// Passes when the household's yearly income per member is at least this.
    MinIncomePerPersonPerYear {
        /// The threshold.
        baht: Baht,
    },
}

/// One indicator of a catalogue edition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    /// Its code in this edition (`"22"`).
    pub code: String,
    /// The BMN group number.
    pub group: u32,
    /// The group's Thai name.
    pub group_th: String,
    /// The group's English name.
    pub group_en: String,
    /// The indicator in Thai.
    pub text_th: String,
    /// The indicator in English (unofficial).
    pub text_en: String,
    /// The TPMAP dimension it counts towards, if any.
    pub dimension: Option<Dimension>,
    /// The TPMAP label (`"4.3"`), if mapped.
    pub tpmap_label: Option<String>,
    /// Who it asks about.
    pub applies_to: AppliesTo,
    /// How it is decided.
    pub rule: Rule,
}

/// One edition of the indicator catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    /// The edition's id, kept by every visit (`"bmn-2560-2564"`).
    pub edition: String,
    /// Its Thai title.
    pub title_th: String,
    /// Its English title.
    pub title_en: String,
    /// The indicators, in file order.
    pub indicators: Vec<Indicator>,
}

/// The BMN 2560–2564 catalogue as shipped in `schema/catalogues/`.
pub const BMN_2560_2564: &str = include_str!("../../../schema/catalogues/bmn-2560-2564.csv");

const COLUMNS: [&str; 10] = [
    "code",
    "group",
    "group_th",
    "group_en",
    "text_th",
    "text_en",
    "tpmap_dimension",
    "tpmap_label",
    "applies_to",
    "rule",
];

impl Catalogue {
    /// Reads a catalogue from its CSV text: `# key: value` metadata lines
    /// (`edition` is required), then a header row and one row per indicator.
    pub fn parse(text: &str) -> Result<Catalogue> {
        let mut metadata = BTreeMap::new();
        let mut body_start = 0;
        let mut line_number = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim();
            if !(trimmed.starts_with('#') || trimmed.is_empty()) {
                break;
            }
            line_number += 1;
            body_start += line.len();
            if let Some((key, value)) = trimmed.trim_start_matches('#').split_once(':') {
                metadata.insert(key.trim().to_owned(), value.trim().to_owned());
            }
        }
        let edition = metadata
            .get("edition")
            .filter(|e| !e.is_empty())
            .cloned()
            .ok_or_else(|| Error::Catalogue {
                line: 1,
                message: "no `# edition: …` line before the header".into(),
            })?;
        let rows = crate::csv::parse(&text[body_start..]).map_err(|broken| Error::Catalogue {
            line: line_number + broken.line,
            message: broken.problem.into(),
        })?;
        let mut rows = rows.into_iter().map(|row| (row.line, row.fields));
        let (header_line, header) = rows.next().ok_or_else(|| Error::Catalogue {
            line: line_number + 1,
            message: "no header row".into(),
        })?;
        let header_line = line_number + header_line;
        let column = |name: &str| -> Result<usize> {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::Catalogue {
                    line: header_line,
                    message: format!("no `{name}` column; the columns are {}", COLUMNS.join(",")),
                })
        };
        let index: Vec<usize> = COLUMNS.iter().map(|c| column(c)).collect::<Result<_>>()?;
        let mut indicators = Vec::new();
        let mut codes = BTreeSet::new();
        for (row_line, row) in rows {
            let line = line_number + row_line;
            let bad = |message: String| Error::Catalogue { line, message };
            let cell = |i: usize| row.get(index[i]).map(|s| s.trim()).unwrap_or("");
            let code = cell(0).to_owned();
            if code.is_empty() {
                return Err(bad("an indicator has no code".into()));
            }
            if !codes.insert(code.clone()) {
                return Err(bad(format!("indicator `{code}` appears twice")));
            }
            let group = cell(1)
                .parse()
                .map_err(|_| bad(format!("group `{}` is not a number", cell(1))))?;
            let dimension = match cell(6) {
                "" => None,
                key => Some(Dimension::from_key(key).ok_or_else(|| {
                    bad(format!(
                        "unknown TPMAP dimension `{key}`; expected health, living, education, income or accessibility"
                    ))
                })?),
            };
            let applies_to = AppliesTo::parse(cell(8)).ok_or_else(|| {
                bad(format!(
                    "applies_to `{}` is not household, age:A-B, age:A+, disability or chronic_illness",
                    cell(8)
                ))
            })?;
            let rule = match cell(9) {
                "" => Rule::Answered,
                rule => {
                    let threshold = rule
                        .strip_prefix("min_income_per_person_per_year:")
                        .and_then(|b| Baht::parse(b).ok())
                        .ok_or_else(|| {
                            bad(format!(
                                "rule `{rule}` is not empty or min_income_per_person_per_year:BAHT"
                            ))
                        })?;
                    Rule::MinIncomePerPersonPerYear { baht: threshold }
                }
            };
            indicators.push(Indicator {
                code,
                group,
                group_th: cell(2).to_owned(),
                group_en: cell(3).to_owned(),
                text_th: cell(4).to_owned(),
                text_en: cell(5).to_owned(),
                dimension,
                tpmap_label: Some(cell(7).to_owned()).filter(|l| !l.is_empty()),
                applies_to,
                rule,
            });
        }
        if indicators.is_empty() {
            return Err(Error::Catalogue {
                line: header_line,
                message: "the catalogue has no indicators".into(),
            });
        }
        Ok(Catalogue {
            edition,
            title_th: metadata.get("title_th").cloned().unwrap_or_default(),
            title_en: metadata.get("title_en").cloned().unwrap_or_default(),
            indicators,
        })
    }

    /// The indicator with this code.
    pub fn indicator(&self, code: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.code == code)
    }

    /// The indicators that apply to a household, in catalogue order.
    pub fn applicable<'a>(
        &'a self,
        profile: &'a HouseholdProfile,
    ) -> impl Iterator<Item = &'a Indicator> + 'a {
        self.indicators
            .iter()
            .filter(move |i| i.applies_to.applies(profile))
    }

    /// What a visit's answers mean.
    ///
    /// An indicator with an income rule is computed from `income_per_year`
    /// and `members` when both are known (the computed answer replaces any
    /// typed one); otherwise the typed answer counts. A household is deprived
    /// in a dimension when any indicator mapped to it fails, and is target
    /// poor when it is deprived in at least one dimension and holds a state
    /// welfare card.
    pub fn assess(&self, visit: &VisitAnswers) -> Result<Assessment> {
        for code in visit.answers.keys() {
            if self.indicator(code).is_none() {
                return Err(Error::UnknownIndicator {
                    code: code.clone(),
                    edition: self.edition.clone(),
                });
            }
        }
        let income_per_person = match (visit.income_per_year, visit.members) {
            (Some(income), Some(members)) => income.per(members),
            _ => None,
        };
        let mut outcome = BTreeMap::new();
        for indicator in &self.indicators {
            let computed = match indicator.rule {
                Rule::MinIncomePerPersonPerYear { baht } => income_per_person.map(|per| {
                    if per >= baht {
                        Answer::Pass
                    } else {
                        Answer::Fail
                    }
                }),
                Rule::Answered => None,
            };
            if let Some(answer) = computed.or_else(|| visit.answers.get(&indicator.code).copied()) {
                outcome.insert(indicator.code.clone(), answer);
            }
        }
        let failed: Vec<&Indicator> = self
            .indicators
            .iter()
            .filter(|i| outcome.get(&i.code) == Some(&Answer::Fail))
            .collect();
        let deprived: BTreeSet<Dimension> = failed.iter().filter_map(|i| i.dimension).collect();
        let unanswered = self
            .indicators
            .iter()
            .filter(|i| !outcome.contains_key(&i.code))
            .map(|i| i.code.clone())
            .collect();
        Ok(Assessment {
            edition: self.edition.clone(),
            target_poor: !deprived.is_empty() && visit.welfare_card,
            deprived: deprived.into_iter().collect(),
            failed: failed.iter().map(|i| i.code.clone()).collect(),
            unanswered,
            income_per_person_per_year: income_per_person,
            answers: outcome,
        })
    }
}

/// What a visit recorded, as the assessment needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VisitAnswers {
    /// Answers by indicator code.
    pub answers: BTreeMap<String, Answer>,
    /// The household's income per year.
    pub income_per_year: Option<Baht>,
    /// How many people the household had at the visit.
    pub members: Option<u32>,
    /// Whether the household (or a member) holds a state welfare card.
    pub welfare_card: bool,
}

/// The meaning of one visit under its catalogue edition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// The edition the visit was recorded with.
    pub edition: String,
    /// The dimensions in which the household is deprived, in TPMAP order.
    pub deprived: Vec<Dimension>,
    /// True when deprived in at least one dimension and holding a welfare card.
    pub target_poor: bool,
    /// Codes of the indicators failed.
    pub failed: Vec<String>,
    /// Codes of the indicators with no answer.
    pub unanswered: Vec<String>,
    /// Income per member per year, when it could be computed.
    pub income_per_person_per_year: Option<Baht>,
    /// Every answer that counted, computed ones included.
    pub answers: BTreeMap<String, Answer>,
}

impl Assessment {
    /// True when the household is deprived in `dimension`.
    pub fn is_deprived_in(&self, dimension: Dimension) -> bool {
        self.deprived.contains(&dimension)
    }
}

/// The catalogue editions an installation knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogues {
    editions: BTreeMap<String, Catalogue>,
}

impl Catalogues {
    /// The editions shipped with faenban.
    pub fn builtin() -> Catalogues {
        let mut catalogues = Catalogues::default();
        // The shipped file is checked by a test; failing here would be a build defect.
        catalogues.add(Catalogue::parse(BMN_2560_2564).expect("the shipped BMN catalogue parses"));
        catalogues
    }

    /// Adds (or replaces) an edition.
    pub fn add(&mut self, catalogue: Catalogue) {
        self.editions.insert(catalogue.edition.clone(), catalogue);
    }

    /// The edition with this id.
    pub fn get(&self, edition: &str) -> Result<&Catalogue> {
        self.editions
            .get(edition)
            .ok_or_else(|| Error::UnknownEdition {
                edition: edition.to_owned(),
                known: self.editions.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every edition id, sorted.
    pub fn editions(&self) -> impl Iterator<Item = &str> {
        self.editions.keys().map(String::as_str)
    }
}
