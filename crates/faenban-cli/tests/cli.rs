//! End-to-end tests of the `faenban` binary: a survey round, and every bad
//! input it must refuse with a clear message and a documented exit code.

use std::path::Path;

use serde_json::Value;

mod support;

use support::{file_bytes, Laptop};

#[test]
fn a_survey_round_records_a_household_its_members_and_their_deprivation() {
    let laptop = Laptop::initialized();
    let household = laptop.add_household();
    laptop.ok(&[
        "member",
        "add",
        "--household",
        "4001-012345-6",
        "--first-name",
        "สมศรี",
        "--last-name",
        "ใจดี",
        "--sex",
        "female",
        "--relation",
        "head",
        "--national-id",
        "1-1017-00230-70-8",
        "--birth-date",
        "15/01/2520",
    ]);
    laptop.ok(&[
        "member",
        "add",
        "--household",
        &household,
        "--first-name",
        "สมชาย",
        "--sex",
        "male",
        "--relation",
        "child",
        "--birth-date",
        "2021-03-01",
    ]);
    let survey = laptop.json(&[
        "survey",
        "4001-012345-6",
        "--date",
        "05/01/2569",
        "--income",
        "70,000",
        "--answer",
        "8=fail",
        "--answer",
        "15=pass",
        "--answer",
        "4=ผ่าน",
    ]);
    let deprived: Vec<&str> = survey["assessment"]["deprived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    // 70,000 baht for 2 people = 35,000 each, below the 38,000 line.
    assert_eq!(deprived, ["living", "income"]);
    assert_eq!(survey["assessment"]["target_poor"], true);
    assert_eq!(
        survey["assessment"]["income_per_person_per_year"],
        "35000.00"
    );
    // A child of 4 is in the household, so the pre-school question applies.
    let skipped = survey["not_applicable_to_household"].as_array().unwrap();
    assert!(!skipped.iter().any(|c| c == "15"));
    assert!(
        skipped.iter().any(|c| c == "28"),
        "no member with a disability"
    );

    let shown = laptop.json(&["household", "show", &household[household.len() - 8..]]);
    assert_eq!(shown["members"].as_array().unwrap().len(), 2);
    assert_eq!(shown["latest_assessment"]["date"], "2026-01-05");
    let text = laptop.ok(&["--lang", "th", "household", "show", "4001-012345-6"]);
    assert!(
        text.contains("ขาดแคลนด้าน: ด้านความเป็นอยู่, ด้านรายได้"),
        "{text}"
    );

    laptop.ok(&[
        "assist",
        "add",
        "--household",
        &household,
        "--dimension",
        "living",
        "--item",
        "house_repair",
        "--agency",
        "อบต.ในเมือง",
        "--amount",
        "15000",
        "--date",
        "2569-02-01",
    ]);
    let help = laptop.json(&["assist", "list", "--household", &household]);
    assert_eq!(help[0]["assistance"]["amount"], "15000.00");
    assert_eq!(help[0]["assistance"]["date"], "2026-02-01");

    let status = laptop.json(&["status"]);
    assert_eq!(status["device_name"], "อสม. มาลี");
    assert!(status["unpushed_changes"].as_u64().unwrap() > 20);
    assert_eq!(status["conflicts"], 0);
}

#[test]
fn households_are_found_by_code_village_and_member_name() {
    let laptop = Laptop::initialized();
    let household = laptop.add_household();
    laptop.ok(&[
        "member",
        "add",
        "--household",
        &household,
        "--first-name",
        "สมศรี",
        "--last-name",
        "ใจดี",
        "--sex",
        "female",
        "--relation",
        "head",
    ]);
    for text in ["4001-012345-6", "40010101", "สมศรี", "สมศรี ใจดี"] {
        let found = laptop.json(&["household", "search", text]);
        assert_eq!(found.as_array().unwrap().len(), 1, "searching {text}");
        assert_eq!(found[0]["id"], household.as_str());
    }
    assert!(laptop
        .json(&["household", "search", "มานี"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn edits_archive_and_restore_show_in_history_and_list() {
    let laptop = Laptop::initialized();
    let household = laptop.add_household();
    laptop.ok(&[
        "household",
        "edit",
        &household,
        "--notes",
        "หลังคารั่ว",
        "--status",
        "moved",
    ]);
    laptop.ok(&["household", "archive", &household]);
    assert!(laptop
        .json(&["household", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    let archived = laptop.json(&["household", "list", "--archived"]);
    assert_eq!(archived[0]["status"], "archived");
    laptop.ok(&["household", "restore", &household]);
    assert_eq!(laptop.json(&["household", "list"])[0]["status"], "moved");
    let history = laptop.json(&["history", &household]);
    let fields: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.iter().filter(|f| **f == "archived").count(), 2);
    assert!(fields.contains(&"notes"));
}

#[test]
fn the_json_export_is_stable() {
    let laptop = Laptop::initialized();
    laptop.add_household();
    let first = laptop.ok(&["export", "--format", "json"]);
    let second = laptop.ok(&["export"]);
    assert_eq!(first, second);
    let parsed: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(parsed["records"][0]["fields"]["house_code"], "40010123456");
    let csv = laptop.ok(&["export", "--format", "csv"]);
    assert!(
        csv.starts_with('\u{feff}'),
        "a byte-order mark lets Excel read Thai"
    );
    assert!(
        csv.contains("4001-012345-6,40010101,12 หมู่ 1,active"),
        "{csv}"
    );
}

#[test]
fn bad_values_are_refused_in_the_users_language_and_nothing_is_written() {
    let laptop = Laptop::initialized();
    let household = laptop.add_household();
    let before = laptop.json(&["status"])["unpushed_changes"].clone();
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "member",
                "add",
                "--household",
                "4001-012345-6",
                "--first-name",
                "x",
                "--sex",
                "female",
                "--relation",
                "child",
                "--national-id",
                "1101700230709",
            ],
            "national_id",
            "เลขประจำตัวประชาชน",
        ),
        (
            &[
                "household",
                "add",
                "--house-code",
                "4001-01234",
                "--village",
                "40010101",
                "--address",
                "x",
            ],
            "house_code",
            "รหัสประจำบ้าน",
        ),
        (
            &[
                "household",
                "add",
                "--house-code",
                "4001-012345-7",
                "--village",
                "400101",
                "--address",
                "x",
            ],
            "village_code",
            "รหัสหมู่บ้าน",
        ),
        (
            &[
                "household",
                "add",
                "--house-code",
                "4001-012345-7",
                "--village",
                "40990101",
                "--address",
                "x",
            ],
            "district 4099, which does not exist in Khon Kaen",
            "ไม่มีอำเภอรหัส 4099 ในจังหวัดขอนแก่น",
        ),
        (
            &[
                "household",
                "add",
                "--house-code",
                "4001-012345-7",
                "--village",
                "99010101",
                "--address",
                "x",
            ],
            "not a province code",
            "ไม่ใช่รหัสจังหวัด",
        ),
        (
            &[
                "member",
                "add",
                "--household",
                "4001-012345-6",
                "--first-name",
                "x",
                "--sex",
                "female",
                "--relation",
                "child",
                "--birth-date",
                "last week",
            ],
            "not written as a date",
            "ไม่ได้เขียนเป็นวันที่",
        ),
        (
            &[
                "member",
                "add",
                "--household",
                "4001-012345-6",
                "--first-name",
                "x",
                "--sex",
                "female",
                "--relation",
                "child",
                "--birth-date",
                "30/02/2568",
            ],
            "does not exist",
            "วันที่",
        ),
        (
            &[
                "assist",
                "add",
                "--household",
                "4001-012345-6",
                "--dimension",
                "living",
                "--item",
                "x",
                "--agency",
                "y",
                "--amount",
                "-500",
            ],
            "negative",
            "จำนวนเงิน",
        ),
        (
            &["survey", "4001-012345-6", "--answer", "99=fail"],
            "indicator `99`",
            "ไม่มีตัวชี้วัด 99",
        ),
        (
            &["survey", "4001-012345-6", "--answer", "8=maybe"],
            "not pass, fail or na",
            "ต้องเป็น pass",
        ),
        (
            &["household", "edit", "4001-012345-6", "--entry", "lottery"],
            "entry",
            "lottery",
        ),
    ];
    for (args, english, thai) in cases {
        let (code, stderr) = laptop.fails(args);
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stderr.contains(english), "{args:?}: {stderr}");
        let mut in_thai = vec!["--lang", "th"];
        in_thai.extend_from_slice(args);
        let (code, stderr) = laptop.fails(&in_thai);
        assert_eq!(code, 3);
        assert!(
            stderr.contains("ผิดพลาด") && stderr.contains(thai),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(laptop.json(&["status"])["unpushed_changes"], before);
    assert_eq!(
        laptop
            .json(&["history", &household])
            .as_array()
            .unwrap()
            .len() as u64,
        before.as_u64().unwrap()
    );
}

#[test]
fn an_unknown_id_is_not_found() {
    let laptop = Laptop::initialized();
    let (code, stderr) = laptop.fails(&["household", "show", "9999-999999-9"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("no household"), "{stderr}");
    let (code, stderr) = laptop.fails(&["--lang", "th", "member", "remove", "abcdef12"]);
    assert_eq!(code, 4);
    assert!(stderr.contains("ไม่พบ"), "{stderr}");
}

#[test]
fn a_database_that_cannot_be_used_is_refused_untouched() {
    // Not set up yet.
    let laptop = Laptop::new();
    let (code, stderr) = laptop.fails(&[
        "household",
        "add",
        "--house-code",
        "4001-012345-6",
        "--village",
        "40010101",
        "--address",
        "x",
    ]);
    assert_eq!(code, 6);
    assert!(stderr.contains("faenban init"), "{stderr}");

    // From a newer version.
    let newer = Laptop::new();
    newer_database(&newer.db);
    let before = file_bytes(&newer.db);
    let (code, stderr) = newer.fails(&["status"]);
    assert_eq!(code, 6);
    assert!(stderr.contains("newer faenban"), "{stderr}");
    let (_, stderr) = newer.fails(&["--lang", "th", "status"]);
    assert!(stderr.contains("รุ่นใหม่กว่า"), "{stderr}");
    assert_eq!(file_bytes(&newer.db), before);

    // Not a database at all.
    let corrupt = Laptop::new();
    std::fs::write(
        &corrupt.db,
        b"PK\x03\x04 this is a zip file, not a database".repeat(100),
    )
    .unwrap();
    let before = file_bytes(&corrupt.db);
    let (code, stderr) = corrupt.fails(&["status"]);
    assert_eq!(code, 6);
    assert!(stderr.contains("damaged"), "{stderr}");
    assert_eq!(file_bytes(&corrupt.db), before);
}

/// Makes `path` a faenban database that says a newer faenban wrote it.
fn newer_database(path: &Path) {
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_faenban"))
        .arg("--db")
        .arg(path)
        .args(["init", "--name", "x"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
}
