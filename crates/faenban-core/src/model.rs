//! The household model: households, members, visits, assistance, officials
//! and pairings, their validation, and how each maps to per-field changes.
//!
//! Every top-level field of a record type is one mergeable field: two people
//! who change different fields of a household never conflict. Records are
//! read back from the merged state by decoding the shown values, so fields a
//! newer version added are carried along untouched.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalogue::{Answer, Assessment, Catalogues, Dimension, VisitAnswers};
use crate::change::{FieldName, RecordId, RecordKey, RecordKind};
use crate::codes::{AreaCode, AreaLevel, HouseCode, NationalId};
use crate::error::{Error, InvalidValue, Result};
use crate::merge::RecordState;
use crate::money::Baht;

/// A point on the map, in WGS 84 degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lon: f64,
}

/// Whether a household still lives at its address. Archiving is separate:
/// every record can be archived and restored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HouseholdStatus {
    /// Lives there.
    #[default]
    Active,
    /// Moved away.
    Moved,
    /// Archived (soft-deleted); only ever shown, never stored in the field.
    Archived,
}

/// How a household entered the programme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgrammeEntry {
    /// On the TPMAP target list.
    TpmapTarget,
    /// Found in the field, missed by the system (exclusion error).
    ExclusionError,
    /// A vulnerable group added by the province.
    VulnerableGroup,
}

/// The household's classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// ต้องสงเคราะห์: needs welfare.
    NeedsWelfare,
    /// พัฒนาได้: can develop.
    CanDevelop,
}

/// The livelihood group (Kalasin's four target groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Livelihood {
    /// เกษตรกร
    Farmer,
    /// ผู้ประกอบการ
    Entrepreneur,
    /// แรงงาน
    Labourer,
    /// ผู้ด้อยโอกาส
    Disadvantaged,
}

/// A household (ครัวเรือน).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Household {
    /// รหัสประจำบ้าน.
    pub house_code: HouseCode,
    /// The village (8-digit area code).
    pub village: AreaCode,
    /// The address as written.
    pub address: String,
    /// Where the house is, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    /// The member who heads the household, once recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<RecordId>,
    /// Active or moved.
    #[serde(default)]
    pub status: HouseholdStatus,
    /// How the household entered the programme.
    pub entry: ProgrammeEntry,
    /// Needs welfare or can develop, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// The livelihood group, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livelihood: Option<Livelihood>,
    /// Holds a state welfare card (บัตรสวัสดิการแห่งรัฐ).
    #[serde(default)]
    pub welfare_card: bool,
    /// Free notes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// Sex as recorded on the ID card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// ชาย
    Male,
    /// หญิง
    Female,
}

/// A member's relation to the head of the household.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// หัวหน้าครัวเรือน
    Head,
    /// คู่สมรส
    Spouse,
    /// บุตร
    Child,
    /// บิดามารดา
    Parent,
    /// หลาน
    Grandchild,
    /// ญาติ
    Relative,
    /// ผู้อาศัย (not related)
    Other,
}

/// Highest education completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Education {
    /// ไม่ได้เรียน
    None,
    /// ก่อนวัยเรียน / กำลังเรียน ป.
    Preschool,
    /// ประถมศึกษา
    Primary,
    /// มัธยมศึกษาตอนต้น (ม.3)
    LowerSecondary,
    /// มัธยมศึกษาตอนปลาย (ม.6)
    UpperSecondary,
    /// ปวช./ปวส.
    Vocational,
    /// ปริญญาตรี
    Bachelor,
    /// สูงกว่าปริญญาตรี
    Postgraduate,
}

/// A person in a household.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The household the member belongs to.
    pub household: RecordId,
    /// เลขประจำตัวประชาชน, when the person has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub national_id: Option<NationalId>,
    /// คำนำหน้า (นาย, นาง, นางสาว, ด.ช., ด.ญ.…).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_name: String,
    /// Sex.
    pub sex: Sex,
    /// Date of birth, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    /// Relation to the head.
    pub relation: Relation,
    /// Highest education.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub education: Option<Education>,
    /// Occupation as described.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub occupation: String,
    /// The member's own income per year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_per_year: Option<Baht>,
    /// Has a disability.
    #[serde(default)]
    pub disability: bool,
    /// Has a chronic illness.
    #[serde(default)]
    pub chronic_illness: bool,
    /// Holds a state welfare card.
    #[serde(default)]
    pub welfare_card: bool,
}

/// A survey visit. The answers are separate fields, one per indicator (see
/// [`answer_field`]), so two surveyors answering different indicators merge
/// cleanly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// The household visited.
    pub household: RecordId,
    /// The day of the visit.
    pub date: NaiveDate,
    /// Who surveyed.
    pub surveyor: String,
    /// The catalogue edition the answers follow (`bmn-2560-2564`).
    pub edition: String,
    /// The household's income per year, as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_per_year: Option<Baht>,
    /// How many people the household had at the visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u32>,
    /// True while a guided survey is under way: it was interrupted (or is
    /// still going) and can be resumed. Reports use finished visits only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_progress: bool,
}

/// The partner sector that gave assistance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    /// ภาครัฐ
    Public,
    /// ภาคเอกชน
    Private,
    /// ภาควิชาการ
    Academic,
    /// ภาคศาสนา
    Religious,
    /// ภาคสื่อมวลชน
    Media,
    /// ภาคประชาสังคม
    CivilSociety,
    /// ภาคประชาชน
    People,
}

/// Sisaket's stages of help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// อยู่รอด
    Survive,
    /// พอเพียง
    Sufficient,
    /// ยั่งยืน
    Sustainable,
}

/// Where an assistance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssistanceStatus {
    /// Planned.
    Planned,
    /// Under way.
    InProgress,
    /// Given.
    Done,
}

/// Help given to a household.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assistance {
    /// The household helped.
    pub household: RecordId,
    /// The TPMAP dimension the help addresses.
    pub dimension: Dimension,
    /// What was given: a menu item code (see [`assistance_menu`]) or free text.
    pub item: String,
    /// The agency that gave it.
    pub agency: String,
    /// The agency's sector.
    pub sector: Sector,
    /// The amount in baht, if money or goods of known value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Baht>,
    /// The day given (or planned).
    pub date: NaiveDate,
    /// Survive, sufficient or sustainable.
    pub stage: Stage,
    /// Planned, in progress or done.
    pub status: AssistanceStatus,
    /// What came of it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
}

/// An official paired with households (คู่เสี่ยว).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Official {
    /// Full name.
    pub name: String,
    /// Position.
    pub position: String,
    /// Agency.
    pub agency: String,
}

/// One official ↔ household pairing; an official normally has two. Ending a
/// pairing archives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    /// The official.
    pub official: RecordId,
    /// The household.
    pub household: RecordId,
}

/// How many households an official is normally paired with (Khon Kaen's 1 : 2).
pub const HOUSEHOLDS_PER_OFFICIAL: usize = 2;

/// A record type stored as per-field changes.
pub trait RecordType: Serialize + DeserializeOwned {
    /// Its kind.
    fn kind() -> RecordKind;

    /// Checks what the types alone cannot.
    fn validate(&self) -> Result<(), InvalidValue> {
        Ok(())
    }
}

fn required(field: &'static str, text: &str) -> Result<(), InvalidValue> {
    if text.trim().is_empty() {
        return Err(InvalidValue::new(field, "is empty", "some text").th("ว่างอยู่"));
    }
    Ok(())
}

impl RecordType for Household {
    fn kind() -> RecordKind {
        RecordKind::Household
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        if self.village.level() != AreaLevel::Village {
            return Err(InvalidValue::new(
                "village",
                format!("is a {:?} code, not a village", self.village.level()).to_lowercase(),
                "a village code of 8 digits, e.g. 40010101",
            )
            .th("ไม่ใช่รหัสหมู่บ้าน"));
        }
        required("address", &self.address)?;
        if self.status == HouseholdStatus::Archived {
            return Err(InvalidValue::new(
                "status",
                "cannot be set to archived directly",
                "active or moved (archive the household instead)",
            )
            .th("ตั้งเป็น archived โดยตรงไม่ได้ ให้ใช้คำสั่งจัดเก็บ (archive)"));
        }
        if let Some(point) = self.location {
            let valid = point.lat.is_finite()
                && point.lon.is_finite()
                && (-90.0..=90.0).contains(&point.lat)
                && (-180.0..=180.0).contains(&point.lon);
            if !valid {
                return Err(InvalidValue::new(
                    "location",
                    "is not a point on Earth",
                    "latitude −90 to 90 and longitude −180 to 180, e.g. 16.44,102.83",
                )
                .th("ไม่ใช่จุดบนโลก"));
            }
        }
        Ok(())
    }
}

impl RecordType for Member {
    fn kind() -> RecordKind {
        RecordKind::Member
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        required("first_name", &self.first_name)
    }
}

impl RecordType for Visit {
    fn kind() -> RecordKind {
        RecordKind::Visit
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        required("surveyor", &self.surveyor)?;
        required("edition", &self.edition)?;
        if self.members == Some(0) {
            return Err(InvalidValue::new(
                "members",
                "is zero",
                "the number of people in the household, 1 or more",
            )
            .th("เป็นศูนย์"));
        }
        Ok(())
    }
}

impl RecordType for Assistance {
    fn kind() -> RecordKind {
        RecordKind::Assistance
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        required("item", &self.item)?;
        required("agency", &self.agency)
    }
}

impl RecordType for Official {
    fn kind() -> RecordKind {
        RecordKind::Official
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        required("name", &self.name)?;
        required("agency", &self.agency)
    }
}

impl RecordType for Pairing {
    fn kind() -> RecordKind {
        RecordKind::Pairing
    }
}

/// The fields of a new record, one (name, value) per field to write. Fields
/// left at their empty default are not written.
pub fn fields_of<T: RecordType>(record: &T) -> Result<Vec<(FieldName, Value)>> {
    record.validate()?;
    match serde_json::to_value(record) {
        Ok(Value::Object(map)) => Ok(map
            .into_iter()
            .filter(|(_, value)| !matches!(value, Value::Bool(false)))
            .map(|(name, value)| (FieldName::from(name), value))
            .collect()),
        _ => unreachable!("record types serialize to JSON objects"),
    }
}

/// Checks that setting `field` to `value` keeps the record valid, given what
/// the record holds now. Returns the value in its stored form.
pub fn check_field<T: RecordType>(
    current: Option<&RecordState>,
    field: &str,
    value: Value,
) -> Result<Value> {
    let mut shown = current.map(RecordState::shown_values).unwrap_or_default();
    shown.insert(field.to_owned(), value);
    let record: T =
        serde_json::from_value(Value::Object(shown)).map_err(|error| Error::InvalidField {
            field: field.to_owned(),
            message: error.to_string(),
        })?;
    record.validate()?;
    match serde_json::to_value(&record) {
        Ok(Value::Object(mut map)) => Ok(map.remove(field).unwrap_or(Value::Null)),
        _ => unreachable!("record types serialize to JSON objects"),
    }
}

/// A character that changes how the text around it is shown without being
/// seen: a bidirectional embedding, override or isolate (U+202A–U+202E,
/// U+2066–U+2069), or a control character other than a line break or tab.
/// Typed into a name or a note, U+202E makes "ตัวอย่าง 1500" read backwards in a
/// list or a spreadsheet.
pub fn hidden_control(text: &str) -> Option<char> {
    text.chars().find(|c| {
        matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
            || (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    })
}

/// Refuses a change whose text (anywhere in its value) holds a
/// [`hidden_control`] character.
pub fn check_text(change: &crate::Change) -> std::result::Result<(), InvalidValue> {
    fn find(value: &Value) -> Option<char> {
        match value {
            Value::String(text) => hidden_control(text),
            Value::Array(items) => items.iter().find_map(find),
            Value::Object(map) => map.values().find_map(find),
            _ => None,
        }
    }
    let Some(c) = find(&change.value) else {
        return Ok(());
    };
    let field = match change.field.as_str() {
        "first_name" => "first_name",
        "last_name" => "last_name",
        "title" => "title",
        "address" => "address",
        "notes" => "notes",
        "name" => "name",
        "position" => "position",
        "agency" => "agency",
        "outcome" => "outcome",
        "surveyor" => "surveyor",
        "occupation" => "occupation",
        _ => "text",
    };
    Err(InvalidValue::new(
        field,
        format!("holds the invisible control character U+{:04X}", c as u32),
        "text without invisible control characters",
    )
    .th(format!(
        "มีอักขระควบคุมที่มองไม่เห็น (U+{:04X}) ให้พิมพ์ใหม่โดยไม่คัดลอกมาจากที่อื่น",
        c as u32
    )))
}

/// A record read back from the merged state.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<T> {
    /// Its key.
    pub key: RecordKey,
    /// Its fields as shown.
    pub value: T,
    /// True when archived (and no concurrent edit keeps it active).
    pub archived: bool,
    /// True when a field or the archive is in conflict.
    pub in_conflict: bool,
}

impl Record<Household> {
    /// The status a person sees: archived overrides active or moved.
    pub fn shown_status(&self) -> HouseholdStatus {
        if self.archived {
            HouseholdStatus::Archived
        } else {
            self.value.status
        }
    }
}

/// Reads a record of type `T` from its merged state. A record whose fields
/// do not (yet) make a valid `T` is reported, not guessed at.
pub fn decode<T: RecordType>(key: &RecordKey, state: &RecordState) -> Result<Record<T>> {
    let value: T =
        serde_json::from_value(Value::Object(state.shown_values())).map_err(|error| {
            Error::IncompleteRecord {
                kind: key.kind.to_string(),
                id: key.id.to_string(),
                message: error.to_string(),
            }
        })?;
    Ok(Record {
        key: key.clone(),
        value,
        archived: state.is_archived(),
        in_conflict: state.has_conflict(),
    })
}

const ANSWER_PREFIX: &str = "answer.";

/// The field holding a visit's answer to indicator `code`.
pub fn answer_field(code: &str) -> FieldName {
    FieldName::from(format!("{ANSWER_PREFIX}{code}"))
}

/// A visit's answers, by indicator code. Answers that do not read as an
/// answer (from a newer version) are left out here but kept in the state.
pub fn visit_answers(state: &RecordState) -> BTreeMap<String, Answer> {
    state
        .fields()
        .filter_map(|(name, field)| {
            let code = name.strip_prefix(ANSWER_PREFIX)?;
            let answer = serde_json::from_value(field.shown()?.value.clone()).ok()?;
            Some((code.to_owned(), answer))
        })
        .collect()
}

/// Each household's latest finished visit, from a set of visit records, in
/// one pass. An unfinished guided survey (`in_progress`) is not yet a
/// result, and an archived visit no longer is.
pub fn latest_visits(
    visits: impl IntoIterator<Item = (RecordKey, RecordState)>,
) -> HashMap<RecordId, (Visit, RecordState)> {
    let mut latest: HashMap<RecordId, (Visit, RecordState, RecordId)> = HashMap::new();
    for (key, state) in visits {
        let Ok(visit) = decode::<Visit>(&key, &state) else {
            continue;
        };
        if visit.archived || visit.value.in_progress {
            continue;
        }
        // Two visits of one day: the one with the higher id, so that the
        // latest is the same whatever order the visits come in.
        let newer = latest
            .get(&visit.value.household)
            .is_none_or(|(v, _, id)| (visit.value.date, key.id) > (v.date, *id));
        if newer {
            latest.insert(visit.value.household, (visit.value, state, key.id));
        }
    }
    latest
        .into_iter()
        .map(|(household, (visit, state, _))| (household, (visit, state)))
        .collect()
}

/// What a visit found, by its own catalogue edition.
pub fn assess_visit(
    catalogues: &Catalogues,
    visit: &Visit,
    state: &RecordState,
    welfare_card: bool,
) -> Result<Assessment> {
    catalogues.get(&visit.edition)?.assess(&VisitAnswers {
        answers: visit_answers(state),
        income_per_year: visit.income_per_year,
        members: visit.members,
        welfare_card,
    })
}

/// One item of the assistance menu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MenuItem {
    /// The code stored in [`Assistance::item`].
    pub code: &'static str,
    /// The dimension it belongs to.
    pub dimension: Dimension,
    /// Thai label.
    pub th: &'static str,
    /// English label.
    pub en: &'static str,
}

const MENU: &[MenuItem] = &[
    MenuItem {
        code: "health_visit",
        dimension: Dimension::Health,
        th: "เยี่ยมบ้านดูแลสุขภาพ",
        en: "home health visit",
    },
    MenuItem {
        code: "medical_referral",
        dimension: Dimension::Health,
        th: "ส่งต่อรักษาพยาบาล",
        en: "medical referral",
    },
    MenuItem {
        code: "assistive_device",
        dimension: Dimension::Health,
        th: "อุปกรณ์ช่วยเหลือคนพิการ",
        en: "assistive device",
    },
    MenuItem {
        code: "house_repair",
        dimension: Dimension::Living,
        th: "ซ่อมแซมบ้าน",
        en: "house repair",
    },
    MenuItem {
        code: "water_supply",
        dimension: Dimension::Living,
        th: "ภาชนะเก็บน้ำ/ประปา",
        en: "water tank or supply",
    },
    MenuItem {
        code: "toilet",
        dimension: Dimension::Living,
        th: "ห้องส้วม",
        en: "toilet",
    },
    MenuItem {
        code: "scholarship",
        dimension: Dimension::Education,
        th: "ทุนการศึกษา",
        en: "scholarship",
    },
    MenuItem {
        code: "school_supplies",
        dimension: Dimension::Education,
        th: "อุปกรณ์การเรียน",
        en: "school supplies",
    },
    MenuItem {
        code: "literacy_class",
        dimension: Dimension::Education,
        th: "ส่งเสริมการอ่านเขียน",
        en: "literacy class",
    },
    MenuItem {
        code: "job_training",
        dimension: Dimension::Income,
        th: "ฝึกอาชีพ",
        en: "job training",
    },
    MenuItem {
        code: "seed_funding",
        dimension: Dimension::Income,
        th: "ทุนประกอบอาชีพ",
        en: "start-up funding",
    },
    MenuItem {
        code: "livestock_or_seeds",
        dimension: Dimension::Income,
        th: "พันธุ์สัตว์/พันธุ์พืช",
        en: "livestock or seeds",
    },
    MenuItem {
        code: "job_placement",
        dimension: Dimension::Income,
        th: "จัดหางาน",
        en: "job placement",
    },
    MenuItem {
        code: "welfare_registration",
        dimension: Dimension::Accessibility,
        th: "ลงทะเบียนสวัสดิการแห่งรัฐ",
        en: "welfare card registration",
    },
    MenuItem {
        code: "allowance",
        dimension: Dimension::Accessibility,
        th: "เบี้ยยังชีพ",
        en: "living allowance",
    },
    MenuItem {
        code: "id_documents",
        dimension: Dimension::Accessibility,
        th: "ทำบัตรประชาชน/เอกสาร",
        en: "ID card or documents",
    },
    MenuItem {
        code: "cash_relief",
        dimension: Dimension::Accessibility,
        th: "เงินสงเคราะห์",
        en: "cash relief",
    },
];

/// The assistance menu of one dimension.
pub fn assistance_menu(dimension: Dimension) -> impl Iterator<Item = &'static MenuItem> {
    MENU.iter().filter(move |item| item.dimension == dimension)
}

/// The menu item with this code, if it is one.
pub fn menu_item(code: &str) -> Option<&'static MenuItem> {
    MENU.iter().find(|item| item.code == code)
}
