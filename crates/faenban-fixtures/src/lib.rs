//! faenban-fixtures: seeded synthetic Khon Kaen datasets for tests, the
//! demo and benchmarks. The same seed always gives the same data.
//!
//! Nothing here is a real person. Area codes are real (the shipped DOPA
//! lists), but every national ID has `9999` as its registration office
//! (digits 2–5), which no office uses, so a generated ID can never be
//! someone's; its check digit is valid, so faenban accepts it. Names are
//! drawn from common Thai given and family names.

use anyhow::Result;
use chrono::{Datelike, Days, NaiveDate};
use faenban_core::areas::Areas;
use faenban_core::catalogue::HouseholdProfile;
use faenban_core::codes::{AreaCode, HouseCode, NationalId};
use faenban_core::dates::age_on;
use faenban_core::model::{
    answer_field, assistance_menu, Assistance, AssistanceStatus, Classification, Education,
    Household, HouseholdStatus, Livelihood, Member, Official, Pairing, ProgrammeEntry, Relation,
    Sector, Sex, Stage, Visit,
};
use faenban_core::{Answer, Baht, Catalogues, Dimension, RecordId};
use faenban_store::{Session, Store};
use serde_json::json;
use uuid::Uuid;

/// A small deterministic random generator (SplitMix64), with a simulated
/// clock for the record ids it makes.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    clock_ms: u64,
}

/// 2025-01-01T00:00:00Z: where the simulated clock of record ids starts.
const FIRST_RECORD_MS: u64 = 1_735_689_600_000;

impl Rng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed,
            clock_ms: FIRST_RECORD_MS,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be zero.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One item of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A random (version 4) UUID, reproducible from the seed.
    pub fn uuid(&mut self) -> Uuid {
        let bytes = (u128::from(self.next_u64()) << 64 | u128::from(self.next_u64())).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// A record id as a laptop makes one: a UUIDv7, whose first bits are
    /// the time it was made (here a simulated clock that moves on by up to a
    /// second each time), so that ids made one after another sort together,
    /// as they do in the field.
    pub fn record_id(&mut self) -> Uuid {
        self.clock_ms += 1 + self.below(1_000);
        let random =
            (u128::from(self.next_u64()) << 64 | u128::from(self.next_u64())).to_be_bytes();
        let tail: [u8; 10] = random[..10].try_into().expect("ten bytes");
        uuid::Builder::from_unix_timestamp_millis(self.clock_ms, &tail).into_uuid()
    }

    /// A valid national ID that no real person can hold (office `9999`).
    pub fn national_id(&mut self) -> NationalId {
        let first = *self.pick(&[1u64, 1, 1, 3, 3, 5, 8]);
        let running = self.below(10_000_000);
        let twelve = format!("{first}9999{running:07}");
        NationalId::with_check_digit(&twelve).expect("12 digits starting 1-8")
    }
}

const MALE_NAMES: &[&str] = &[
    "สมชาย",
    "สมศักดิ์",
    "ประเสริฐ",
    "บุญมี",
    "สุริยา",
    "วิชัย",
    "ทองดี",
    "คำพอง",
    "อนันต์",
    "ณรงค์",
    "สมพงษ์",
    "บุญเลิศ",
    "ชัยวัฒน์",
    "ธนากร",
    "ภูมิ",
    "เอกชัย",
];
const FEMALE_NAMES: &[&str] = &[
    "มาลี",
    "สมหญิง",
    "บุญเรือน",
    "คำปุน",
    "ทองใบ",
    "สุดา",
    "วันเพ็ญ",
    "นงลักษณ์",
    "อรทัย",
    "ปราณี",
    "จันทร์เพ็ญ",
    "ลำดวน",
    "พิมพ์ใจ",
    "กาญจนา",
    "ศิริพร",
    "ดวงใจ",
];
const FAMILY_NAMES: &[&str] = &[
    "ศรีสุข",
    "ใจดี",
    "บุญมา",
    "แก้วมณี",
    "พรมมา",
    "สุขเกษม",
    "ทองคำ",
    "ศรีวงศ์",
    "ภูผา",
    "คำแสน",
    "นามวงศ์",
    "จันทร์หอม",
    "ดวงดี",
    "มีสุข",
    "แสนสุข",
    "ชัยมงคล",
    "บุญประเสริฐ",
    "วงศ์สวัสดิ์",
];
const AGENCIES: &[&str] = &[
    "อบต.",
    "รพ.สต.",
    "สำนักงานเกษตรอำเภอ",
    "กศน.อำเภอ",
    "สำนักงานพัฒนาชุมชนอำเภอ",
    "พมจ.ขอนแก่น",
];
const POSITIONS: &[&str] = &[
    "นักวิชาการเกษตร",
    "นักพัฒนาชุมชน",
    "พยาบาลวิชาชีพ",
    "ครู กศน.",
    "ปลัดอำเภอ",
];

/// How much each household carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Members, a survey visit, assistance, officials and pairings.
    Full,
    /// The household and its head only (about ten changes a household):
    /// for benchmarks that need many households.
    Minimal,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The seed: the same seed gives the same data.
    pub seed: u64,
    /// How many households.
    pub households: usize,
    /// How much each carries.
    pub detail: Detail,
    /// The province whose subdistricts the villages are in.
    pub province: AreaCode,
    /// Each fully detailed household is surveyed a second time a year
    /// later, its income and some answers changed (before/after figures).
    pub second_visit: bool,
}

impl Spec {
    /// `households` households in Khon Kaen (province 40), fully detailed.
    pub fn khon_kaen(seed: u64, households: usize) -> Spec {
        Spec {
            seed,
            households,
            detail: Detail::Full,
            province: AreaCode::parse("40").expect("valid"),
            second_visit: false,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Households.
    pub households: usize,
    /// Members.
    pub members: usize,
    /// Survey visits.
    pub visits: usize,
    /// Assistance records.
    pub assistance: usize,
    /// Officials.
    pub officials: usize,
    /// Official ↔ household pairings.
    pub pairings: usize,
    /// Field changes written.
    pub changes: u64,
}

/// A household's place: a real subdistrict of the province and a village
/// number in it.
fn village(rng: &mut Rng, subdistricts: &[&AreaCode]) -> AreaCode {
    let subdistrict = rng.pick(subdistricts);
    let number = 1 + rng.below(15);
    AreaCode::parse_village(&format!("{subdistrict}{number:02}")).expect("a real subdistrict")
}

fn house_code(rng: &mut Rng, village: &AreaCode) -> HouseCode {
    let office = &village.as_str()[..4];
    let running = 1 + rng.below(999_999);
    let check = rng.below(10);
    HouseCode::parse(&format!("{office}{running:06}{check}")).expect("11 digits")
}

/// The days of the fixture world: surveys in fiscal year 2568 (2025).
fn day(offset: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 6).expect("valid") + Days::new(offset)
}

fn person(
    rng: &mut Rng,
    household: RecordId,
    relation: Relation,
    age: u64,
    family: &str,
    visit: NaiveDate,
) -> Member {
    let sex = if relation != Relation::Spouse && rng.chance(50) {
        Sex::Male
    } else {
        Sex::Female
    };
    let (title, names) = match (sex, age) {
        (Sex::Male, 0..=14) => ("ด.ช.", MALE_NAMES),
        (Sex::Female, 0..=14) => ("ด.ญ.", FEMALE_NAMES),
        (Sex::Male, _) => ("นาย", MALE_NAMES),
        (Sex::Female, _) => (
            if relation == Relation::Spouse {
                "นาง"
            } else {
                "นางสาว"
            },
            FEMALE_NAMES,
        ),
    };
    let year = visit.year() - age as i32;
    let birth = NaiveDate::from_ymd_opt(year, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32)
        .expect("valid day");
    let education = match age {
        0..=2 => None,
        3..=5 => Some(Education::Preschool),
        6..=11 => Some(Education::Primary),
        12..=14 => Some(Education::LowerSecondary),
        15..=17 => Some(Education::UpperSecondary),
        _ => Some(*rng.pick(&[
            Education::Primary,
            Education::Primary,
            Education::LowerSecondary,
            Education::UpperSecondary,
            Education::Vocational,
            Education::Bachelor,
        ])),
    };
    let adult = age >= 18;
    Member {
        household,
        national_id: Some(rng.national_id()),
        title: title.into(),
        first_name: (*rng.pick(names)).into(),
        last_name: family.into(),
        sex,
        birth_date: Some(birth),
        relation,
        education,
        occupation: if adult {
            (*rng.pick(&["ทำนา", "รับจ้างทั่วไป", "ค้าขาย", "เลี้ยงสัตว์", "ว่างงาน"])).into()
        } else {
            String::new()
        },
        income_per_year: adult.then(|| Baht::from_baht(12_000 + rng.below(90_000))),
        disability: rng.chance(4),
        chronic_illness: age >= 50 && rng.chance(25),
        welfare_card: adult && rng.chance(60),
    }
}

/// Writes a synthetic dataset into `store`, initializing it as a device
/// (named for the seed) if it is not one yet.
pub fn populate(store: &mut Store, spec: &Spec) -> Result<Summary> {
    let mut rng = Rng::new(spec.seed);
    if store.device()?.is_none() {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(rng.uuid().as_bytes());
        seed[16..].copy_from_slice(rng.uuid().as_bytes());
        store.init(
            &format!("fixtures seed {}", spec.seed),
            &faenban_keys::DeviceKey::from_seed(seed),
        )?;
    }
    let areas = Areas::builtin();
    let subdistricts = areas.subdistricts_of(&spec.province);
    anyhow::ensure!(
        !subdistricts.is_empty(),
        "no subdistrict list for province {}",
        spec.province
    );
    let catalogues = Catalogues::builtin();
    let catalogue = catalogues.get("bmn-2560-2564")?;
    let before = store.status()?.unpushed;
    let mut summary = Summary::default();
    // The fixture world's clock: 2025-01-06 07:00 Thai time, a minute per household.
    let mut wall_ms: u64 = 1_736_121_600_000;
    let mut households: Vec<RecordId> = Vec::with_capacity(spec.households);
    const PER_TRANSACTION: usize = 500;
    let mut done = 0;
    while done < spec.households {
        let batch = PER_TRANSACTION.min(spec.households - done);
        store.write(wall_ms, |s| {
            for _ in 0..batch {
                let id = add_household(s, &mut rng, spec, &subdistricts, catalogue, &mut summary)?;
                households.push(id);
            }
            Ok(())
        })?;
        done += batch;
        wall_ms += 60_000 * batch as u64;
    }
    if spec.detail == Detail::Full {
        // Khon Kaen's คู่เสี่ยว: one official for every two households.
        store.write(wall_ms, |s| {
            for pair in households.chunks(2) {
                let official = Official {
                    name: format!("{} {}", rng.pick(MALE_NAMES), rng.pick(FAMILY_NAMES)),
                    position: (*rng.pick(POSITIONS)).into(),
                    agency: (*rng.pick(AGENCIES)).into(),
                };
                let official_key = s.create(rng.record_id(), &official)?;
                summary.officials += 1;
                for household in pair {
                    s.create(
                        rng.record_id(),
                        &Pairing {
                            official: official_key.id,
                            household: *household,
                        },
                    )?;
                    summary.pairings += 1;
                }
            }
            Ok(())
        })?;
    }
    summary.changes = store.status()?.unpushed - before;
    Ok(summary)
}

fn add_household(
    s: &mut Session<'_>,
    rng: &mut Rng,
    spec: &Spec,
    subdistricts: &[&AreaCode],
    catalogue: &faenban_core::Catalogue,
    summary: &mut Summary,
) -> faenban_store::Result<RecordId> {
    let place = village(rng, subdistricts);
    let number = &place.as_str()[6..];
    let household = Household {
        house_code: house_code(rng, &place),
        address: format!(
            "{}/{} หมู่ {}",
            1 + rng.below(250),
            1 + rng.below(9),
            number.trim_start_matches('0')
        ),
        village: place,
        location: None,
        head: None,
        status: HouseholdStatus::Active,
        entry: if rng.chance(85) {
            ProgrammeEntry::TpmapTarget
        } else {
            ProgrammeEntry::ExclusionError
        },
        classification: Some(if rng.chance(30) {
            Classification::NeedsWelfare
        } else {
            Classification::CanDevelop
        }),
        livelihood: Some(*rng.pick(&[
            Livelihood::Farmer,
            Livelihood::Farmer,
            Livelihood::Labourer,
            Livelihood::Entrepreneur,
            Livelihood::Disadvantaged,
        ])),
        welfare_card: rng.chance(70),
        notes: String::new(),
    };
    let key = s.create(rng.record_id(), &household)?;
    summary.households += 1;
    let visit_day = day(rng.below(300));
    let family = *rng.pick(FAMILY_NAMES);
    let head_age = 30 + rng.below(45);
    let mut members = vec![person(
        rng,
        key.id,
        Relation::Head,
        head_age,
        family,
        visit_day,
    )];
    if spec.detail == Detail::Minimal {
        let mut head = members.pop().expect("a head");
        // Fewer fields, so that a household is about ten changes.
        head.education = None;
        head.occupation = String::new();
        head.income_per_year = None;
        s.create(rng.record_id(), &head)?;
        summary.members += 1;
        return Ok(key.id);
    }
    if rng.chance(75) {
        let age = head_age.saturating_sub(rng.below(6));
        members.push(person(
            rng,
            key.id,
            Relation::Spouse,
            age,
            family,
            visit_day,
        ));
    }
    for _ in 0..rng.below(4) {
        let age = rng.below(head_age.saturating_sub(17).max(1));
        members.push(person(rng, key.id, Relation::Child, age, family, visit_day));
    }
    if rng.chance(25) {
        let age = head_age + 22 + rng.below(10);
        members.push(person(
            rng,
            key.id,
            Relation::Parent,
            age,
            family,
            visit_day,
        ));
    }
    for member in &members {
        s.create(rng.record_id(), member)?;
    }
    summary.members += members.len();

    // A survey visit: every applicable indicator answered.
    let profile = HouseholdProfile {
        ages: members
            .iter()
            .filter_map(|m| m.birth_date.map(|b| age_on(b, visit_day)))
            .collect(),
        any_disability: members.iter().any(|m| m.disability),
        any_chronic_illness: members.iter().any(|m| m.chronic_illness),
    };
    let income: u64 = members
        .iter()
        .filter_map(|m| m.income_per_year)
        .map(|b| b.satang() / 100)
        .sum();
    let visit = Visit {
        household: key.id,
        date: visit_day,
        surveyor: "อสม. ตัวอย่าง".into(),
        edition: catalogue.edition.clone(),
        income_per_year: Some(Baht::from_baht(income)),
        members: Some(members.len() as u32),
        in_progress: false,
    };
    let visit_key = s.create(rng.record_id(), &visit)?;
    summary.visits += 1;
    let mut failed: Vec<Dimension> = Vec::new();
    for indicator in &catalogue.indicators {
        let answer = if !indicator.applies_to.applies(&profile) {
            Answer::NotApplicable
        } else if rng.chance(12) {
            if let Some(dimension) = indicator.dimension {
                failed.push(dimension);
            }
            Answer::Fail
        } else {
            Answer::Pass
        };
        s.set(&visit_key, &answer_field(&indicator.code), json!(answer))?;
    }
    if spec.second_visit {
        // A year on: income up or down by up to a fifth, and each failed
        // indicator passed with even odds.
        let later = visit_day + Days::new(365);
        let change = rng.below(41) as i64 - 15;
        let income_later = (income as i64 + income as i64 * change / 100).max(0) as u64;
        let second = s.create(
            rng.record_id(),
            &Visit {
                date: later,
                income_per_year: Some(Baht::from_baht(income_later)),
                ..visit.clone()
            },
        )?;
        summary.visits += 1;
        let first = s.require(&visit_key)?;
        for indicator in &catalogue.indicators {
            let field = answer_field(&indicator.code);
            let Some(answer) = first.shown(&field).cloned() else {
                continue;
            };
            let answer = if answer == json!(Answer::Fail) && rng.chance(50) {
                json!(Answer::Pass)
            } else {
                answer
            };
            s.set(&second, &field, answer)?;
        }
    }
    // Help for up to two of the dimensions it lacks.
    failed.dedup();
    for dimension in failed.into_iter().take(2) {
        let menu: Vec<_> = assistance_menu(dimension).collect();
        let Some(item) = (!menu.is_empty()).then(|| rng.pick(&menu)) else {
            continue;
        };
        let help = Assistance {
            household: key.id,
            dimension,
            item: item.code.into(),
            agency: (*rng.pick(AGENCIES)).into(),
            sector: Sector::Public,
            amount: rng
                .chance(60)
                .then(|| Baht::from_baht(500 + 100 * rng.below(50))),
            date: visit_day + Days::new(7 + rng.below(60)),
            stage: Stage::Survive,
            status: if rng.chance(70) {
                AssistanceStatus::Done
            } else {
                AssistanceStatus::InProgress
            },
            outcome: String::new(),
        };
        s.create(rng.record_id(), &help)?;
        summary.assistance += 1;
    }
    Ok(key.id)
}

/// A TPMAP-style target list to `import`: house code, village, address and
/// the head of the household, with a header row in Thai.
pub fn target_list_csv(seed: u64, rows: usize) -> String {
    let mut rng = Rng::new(seed);
    let areas = Areas::builtin();
    let province = AreaCode::parse("40").expect("valid");
    let subdistricts = areas.subdistricts_of(&province);
    let mut out = String::from(
        "\u{feff}รหัสประจำบ้าน,รหัสหมู่บ้าน,บ้านเลขที่,คำนำหน้า,ชื่อ,นามสกุล,เพศ,วันเกิด,เลขประจำตัวประชาชน,บัตรสวัสดิการ\n",
    );
    for _ in 0..rows {
        let place = village(&mut rng, &subdistricts);
        let code = house_code(&mut rng, &place);
        let (title, sex, names) = if rng.chance(50) {
            ("นาย", "male", MALE_NAMES)
        } else {
            ("นาง", "female", FEMALE_NAMES)
        };
        let birth_be = 2490 + rng.below(50);
        out.push_str(&format!(
            "{code},{place},{} หมู่ {},{title},{},{},{sex},{:02}/{:02}/{birth_be},{},{}\n",
            1 + rng.below(250),
            place.as_str()[6..].trim_start_matches('0'),
            rng.pick(names),
            rng.pick(FAMILY_NAMES),
            1 + rng.below(28),
            1 + rng.below(12),
            rng.national_id(),
            if rng.chance(70) {
                "มี"
            } else {
                "ไม่มี"
            },
        ));
    }
    out
}

/// Where a benchmark's database file spends its bytes: the pages in use in
/// all (without the write-ahead log), then the tables and indexes above one
/// byte per change, largest first, each as bytes per change (`changes` is
/// the field changes the file holds).
pub fn bytes_per_change_by_table(store: &Store, changes: u64) -> Result<String> {
    let changes = changes.max(1) as f64;
    let space = store.space_by_table()?;
    let total: u64 = space.iter().map(|(_, bytes)| bytes).sum();
    let parts: Vec<String> = space
        .into_iter()
        .map(|(name, bytes)| (name, bytes as f64 / changes))
        .filter(|(_, per_change)| *per_change >= 1.0)
        .map(|(name, per_change)| format!("{name} {per_change:.0}"))
        .collect();
    Ok(format!(
        "{:.0} in all: {}",
        total as f64 / changes,
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::{populate, target_list_csv, Rng, Spec};
    use faenban_core::codes::NationalId;
    use faenban_store::Store;

    #[test]
    fn generated_ids_are_valid_and_from_no_real_office() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let id = rng.national_id();
            assert!(NationalId::parse(id.digits()).is_ok());
            assert_eq!(&id.digits()[1..5], "9999");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let export = |seed| {
            let mut store = Store::open_in_memory().unwrap();
            let summary = populate(&mut store, &Spec::khon_kaen(seed, 12)).unwrap();
            assert_eq!(summary.households, 12);
            assert_eq!(summary.officials, 6);
            assert!(summary.members >= 12 && summary.visits == 12);
            store.all_records().unwrap()
        };
        assert_eq!(export(3), export(3));
        assert_ne!(export(3), export(4));
        assert_eq!(target_list_csv(5, 10), target_list_csv(5, 10));
        assert_eq!(target_list_csv(5, 10).lines().count(), 11);
    }
}
