//! A programme shaped like the Khon Kaen articles, planted on the district
//! teams' laptops, synced through a real server process, pulled by the
//! province: `faenban report` on the province's file and `GET /v1/report`
//! both give exactly the figures planted.
//!
//! 1,174 target households in 26 districts, 147 subdistricts and 577
//! villages; 513 need welfare, 661 can develop; help per dimension at the
//! published rates (accessibility 91 of 115 = 79.13%, health 100%, income
//! 595 of 625 = 95.20%, education 266 of 367 = 72.48%, living all 1,174);
//! a second visit that moves the mean monthly income from 2,465 to 2,671
//! baht (+8.36%). Each of the 587 officials (คู่เสี่ยว) has a laptop with its
//! two households, logged in with its district team's account.

mod support;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use faenban_core::areas::Areas;
use faenban_core::codes::{AreaCode, HouseCode};
use faenban_core::model::{
    answer_field, Assistance, AssistanceStatus, Classification, Household, HouseholdStatus,
    Official, Pairing, ProgrammeEntry, Sector, Stage, Visit,
};
use faenban_core::{Baht, Dimension};
use faenban_keys::DeviceKey;
use faenban_store::Store;
use serde_json::{json, Value};
use support::{Laptop, ServerProcess};
use uuid::Uuid;

const HOUSEHOLDS: usize = 1_174;

/// 577 villages of 147 subdistricts, every one of the 26 districts among them.
fn villages() -> Vec<String> {
    let areas = Areas::builtin();
    let subdistricts = areas.subdistricts_of(&AreaCode::parse("40").unwrap());
    let mut by_district: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for subdistrict in &subdistricts {
        by_district
            .entry(&subdistrict.as_str()[..4])
            .or_default()
            .push(subdistrict.as_str());
    }
    assert_eq!(by_district.len(), 26);
    // Round robin over the districts until 147 subdistricts are taken.
    let mut chosen = Vec::new();
    let mut round = 0;
    while chosen.len() < 147 {
        for list in by_district.values() {
            if let Some(subdistrict) = list.get(round) {
                if chosen.len() < 147 {
                    chosen.push(*subdistrict);
                }
            }
        }
        round += 1;
    }
    // Three villages each, and a fourth in the first 136: 577.
    let mut villages = Vec::new();
    for (n, subdistrict) in chosen.iter().enumerate() {
        for village in 1..=if n < 136 { 4 } else { 3 } {
            villages.push(format!("{subdistrict}{village:02}"));
        }
    }
    assert_eq!(villages.len(), 577);
    villages
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// Plants household `n` on the laptop's store.
fn plant(store: &mut Store, n: usize, village: &str) {
    let deprived = |dimension: Dimension| match dimension {
        Dimension::Living => true,
        Dimension::Health => n < 200,
        Dimension::Education => n < 367,
        Dimension::Income => n < 625,
        Dimension::Accessibility => n < 115,
    };
    let helped = |dimension: Dimension| match dimension {
        Dimension::Living => true,
        Dimension::Health => n < 200,
        Dimension::Education => n < 266,
        Dimension::Income => n < 595,
        Dimension::Accessibility => n < 91,
    };
    store
        .write(1_795_000_000_000, |s| {
            let id = Uuid::from_u128(0x1174_0000 + n as u128);
            let household = Household {
                house_code: HouseCode::parse(&format!("9{:010}", n + 1)).unwrap(),
                village: AreaCode::parse(village).unwrap(),
                address: format!("{} หมู่ {}", n + 1, &village[6..]),
                location: None,
                head: None,
                status: HouseholdStatus::Active,
                entry: ProgrammeEntry::TpmapTarget,
                classification: Some(if n < 513 {
                    Classification::NeedsWelfare
                } else {
                    Classification::CanDevelop
                }),
                livelihood: None,
                welfare_card: true,
                notes: String::new(),
            };
            s.create(id, &household)?;
            // Two finished visits with the same answers: 29,580 then 32,052
            // baht a year. The income indicator is computed for one person
            // where it is to fail; elsewhere it is answered.
            for (k, (day, income)) in [("2025-11-01", "29580"), ("2026-05-01", "32052")]
                .into_iter()
                .enumerate()
            {
                let visit = Visit {
                    household: faenban_core::RecordId(id),
                    date: date(day),
                    surveyor: "ทีม".into(),
                    edition: "bmn-2560-2564".into(),
                    income_per_year: Some(Baht::parse(income).unwrap()),
                    members: deprived(Dimension::Income).then_some(1),
                    in_progress: false,
                };
                let key = s.create(Uuid::from_u128(0x2000_0000 + (n * 2 + k) as u128), &visit)?;
                for (code, dimension) in [
                    ("8", Dimension::Living),
                    ("4", Dimension::Health),
                    ("19", Dimension::Education),
                    ("27", Dimension::Accessibility),
                ] {
                    let answer = if deprived(dimension) { "fail" } else { "pass" };
                    s.set(&key, &answer_field(code), json!(answer))?;
                }
                if !deprived(Dimension::Income) {
                    s.set(&key, &answer_field("22"), json!("pass"))?;
                }
            }
            for (k, dimension) in Dimension::ALL.into_iter().enumerate() {
                if !helped(dimension) {
                    continue;
                }
                let help = Assistance {
                    household: faenban_core::RecordId(id),
                    dimension,
                    item: "other".into(),
                    agency: "ศจพ.อ.".into(),
                    sector: Sector::Public,
                    amount: Some(Baht::from_baht(1_000)),
                    date: date("2026-01-15"),
                    stage: Stage::Survive,
                    status: AssistanceStatus::Done,
                    outcome: String::new(),
                };
                s.create(Uuid::from_u128(0x3000_0000 + (n * 5 + k) as u128), &help)?;
            }
            Ok(())
        })
        .unwrap();
}

fn check(report: &Value) {
    let total = &report["total"];
    assert_eq!(total["households"], 1_174);
    assert_eq!(total["classification"]["needs_welfare"], 513);
    assert_eq!(total["classification"]["can_develop"], 661);
    assert_eq!(total["target_poor"], 1_174);
    for (key, deprived, helped, percent) in [
        ("living", 1_174, 1_174, "100.00"),
        ("health", 200, 200, "100.00"),
        ("education", 367, 266, "72.48"),
        ("income", 625, 595, "95.20"),
        ("accessibility", 115, 91, "79.13"),
    ] {
        let d = &total["dimensions"][key];
        assert_eq!(
            (d["deprived"].as_u64(), d["helped"].as_u64()),
            (Some(deprived), Some(helped)),
            "{key}"
        );
        assert_eq!(d["percent_helped"], percent, "{key}");
    }
    assert_eq!(total["income"]["households_revisited"], 1_174);
    assert_eq!(total["income"]["first_mean_monthly"], "2465.00");
    assert_eq!(total["income"]["latest_mean_monthly"], "2671.00");
    assert_eq!(total["income"]["percent_change"], "8.36");
    assert_eq!(total["pairing"]["with_official"], 1_174);
    assert_eq!(total["pairing"]["without_official"], 0);
    assert_eq!(total["pairing"]["officials"], 587);
    assert_eq!(total["pairing"]["officials_above_two"], 0);
}

/// The official whose laptop this is, paired with its households.
fn pair(store: &mut Store, official: usize, households: &[(usize, String)]) {
    store
        .write(1_795_000_000_000, |s| {
            let key = s.create(
                Uuid::from_u128(0x4000_0000 + official as u128),
                &Official {
                    name: format!("เจ้าหน้าที่ {official}"),
                    position: "นักพัฒนาชุมชน".into(),
                    agency: "สำนักงานพัฒนาชุมชนอำเภอ".into(),
                },
            )?;
            for (n, _) in households {
                s.create(
                    Uuid::from_u128(0x5000_0000 + *n as u128),
                    &Pairing {
                        official: key.id,
                        household: faenban_core::RecordId(Uuid::from_u128(
                            0x1174_0000 + *n as u128,
                        )),
                    },
                )?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_khon_kaen_programme_planted_on_the_officials_laptops_is_reported_exactly_by_the_province() {
    let server = ServerProcess::start();
    let villages = villages();
    let mut by_district: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for n in 0..HOUSEHOLDS {
        let village = villages[n % villages.len()].clone();
        by_district
            .entry(village[..4].to_owned())
            .or_default()
            .push((n, village));
    }
    assert_eq!(by_district.len(), 26);
    let mut officials = 0;
    for (district, households) in &by_district {
        let team = server.account(&format!("ทีม {district}"), "team", district);
        for two in households.chunks(2) {
            let laptop = Laptop::new();
            {
                let mut store = Store::open(&laptop.db).unwrap();
                store
                    .init(
                        &format!("เจ้าหน้าที่ {officials}"),
                        &DeviceKey::generate().unwrap(),
                    )
                    .unwrap();
                for (n, village) in two {
                    plant(&mut store, *n, village);
                }
                pair(&mut store, officials, two);
            }
            officials += 1;
            laptop.login(&server, &team);
            let synced = laptop.sync();
            assert_eq!(synced["held_back"], 0, "{synced}");
            assert_eq!(laptop.unpushed(), 0);
        }
    }
    assert_eq!(officials, 587);
    let province = Laptop::initialized();
    let token = server.account("จังหวัด", "province", "");
    province.login(&server, &token);
    province.sync();
    let report = province.json(&["report", "--format", "json", "--level", "village"]);
    check(&report);
    assert_eq!(report["areas"].as_array().unwrap().len(), 577);
    let subdistricts = province.json(&["report", "--format", "json", "--level", "subdistrict"]);
    assert_eq!(subdistricts["areas"].as_array().unwrap().len(), 147);
    let districts = province.json(&["report", "--format", "json", "--level", "district"]);
    assert_eq!(districts["areas"].as_array().unwrap().len(), 26);
    // The server's report of the same programme, for the province's token.
    let answer = reqwest::blocking::Client::new()
        .get(format!("{}/v1/report?level=district", server.url()))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert!(answer.status().is_success());
    let from_server: Value = serde_json::from_str(&answer.text().unwrap()).unwrap();
    check(&from_server);
    assert_eq!(from_server, districts);
}
