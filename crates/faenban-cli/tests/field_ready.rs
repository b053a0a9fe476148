//! What a volunteer in the field once got wrong without being told: the
//! same house or person recorded twice, amounts and dates that cannot be
//! true, cells a spreadsheet would run, text that reads backwards, a closed
//! pipe, a damaged file. Each test is named after what broke.

mod support;

use support::Laptop;

fn add_household(laptop: &Laptop, code: &str) -> (i32, String) {
    let output = laptop
        .cmd(&[
            "--lang",
            "en",
            "household",
            "add",
            "--house-code",
            code,
            "--village",
            "40010101",
            "--address",
            "12 หมู่ 1",
        ])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_house_code_already_recorded_is_refused_and_both_stay_reachable_if_synced_twice() {
    let laptop = Laptop::initialized();
    assert_eq!(add_household(&laptop, "4001-012345-6").0, 0);
    let (code, stderr) = add_household(&laptop, "4001-012345-6");
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("already recorded"), "{stderr}");
    let listed = laptop.json(&["household", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // Editing another household to that code is refused too.
    assert_eq!(add_household(&laptop, "4001-012346-4").0, 0);
    let (code, stderr) = laptop.fails(&[
        "--lang",
        "en",
        "household",
        "edit",
        "4001-012346-4",
        "--house-code",
        "4001-012345-6",
    ]);
    assert_eq!(code, 5, "{stderr}");

    // Two laptops that recorded the same house before either synced: both
    // households arrive, and the code names both rather than neither.
    let other = Laptop::initialized();
    assert_eq!(add_household(&other, "4001-012345-6").0, 0);
    support::hand_over(&other.db, &laptop.db, |_| {});
    let (code, stderr) = laptop.fails(&["--lang", "en", "household", "show", "4001-012345-6"]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("2 households"), "{stderr}");
    let listed = laptop.json(&["household", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
}

#[test]
fn a_national_id_already_recorded_for_another_person_is_refused() {
    let laptop = Laptop::initialized();
    add_household(&laptop, "4001-012345-6");
    let member = |first: &str| {
        laptop
            .cmd(&[
                "--lang",
                "en",
                "member",
                "add",
                "--household",
                "4001-012345-6",
                "--national-id",
                "1-9999-00000-01-3",
                "--first-name",
                first,
                "--last-name",
                "ตัวอย่าง",
                "--sex",
                "female",
                "--relation",
                "head",
            ])
            .output()
            .unwrap()
    };
    assert!(member("มาลี").status.success());
    let second = member("สมศรี");
    assert_eq!(second.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already recorded for another member"));
}

#[test]
fn the_same_official_twice_is_refused_but_a_namesake_elsewhere_is_not() {
    let laptop = Laptop::initialized();
    let add = |agency: &str| {
        laptop
            .cmd(&[
                "official",
                "add",
                "--name",
                "นายสมชาย ตัวอย่าง",
                "--position",
                "นักวิชาการเกษตร",
                "--agency",
                agency,
            ])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(add("เกษตรอำเภอเมือง"), Some(0));
    assert_eq!(add("เกษตรอำเภอเมือง"), Some(5));
    assert_eq!(add("เกษตรอำเภอบ้านฝาง"), Some(0));
    // Pairing by that name now lists both, with what tells them apart.
    add_household(&laptop, "4001-012345-6");
    let (code, stderr) =
        laptop.fails(&["--lang", "en", "pair", "นายสมชาย ตัวอย่าง", "4001-012345-6"]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("บ้านฝาง") && stderr.contains("use the id"),
        "{stderr}"
    );
}

fn assist(laptop: &Laptop, amount: &str, date: &str) -> (i32, String) {
    let output = laptop
        .cmd(&[
            "--lang",
            "en",
            "assist",
            "add",
            "--household",
            "4001-012345-6",
            "--dimension",
            "living",
            "--item",
            "house_repair",
            "--agency",
            "อบต.",
            "--amount",
            amount,
            "--date",
            date,
        ])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn amounts_with_stray_commas_or_past_the_ceiling_and_impossible_dates_are_refused() {
    let laptop = Laptop::initialized();
    add_household(&laptop, "4001-012345-6");
    for (amount, why) in [
        ("1,50", "thousands"),
        ("1,5,0,0", "thousands"),
        ("9,000,000,000,000,000", "more than 10,000,000.00"),
    ] {
        let (code, stderr) = assist(&laptop, amount, "01/11/2568");
        assert_eq!(code, 3, "{amount}: {stderr}");
        assert!(stderr.contains(why), "{amount}: {stderr}");
    }
    for date in ["01/01/2575", "01/01/1900", "01/01/2442"] {
        let (code, stderr) = assist(&laptop, "1500", date);
        assert_eq!(code, 3, "{date}: {stderr}");
    }
    // Thai digits and the Kedmanee ๅ are digits.
    let (code, stderr) = assist(&laptop, "ๅ,๕๐๐", "๐๑/๑๑/๒๕๖๘");
    assert_eq!(code, 0, "{stderr}");
    let shown = laptop.ok(&["--lang", "th", "household", "show", "4001-012345-6"]);
    assert!(shown.contains("1,500.00 บาท"), "{shown}");
    let exported = laptop.json(&["export"]);
    let assistance = exported["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["kind"] == "assistance")
        .count();
    assert_eq!(assistance, 1, "nothing refused was saved: {exported}");
}

#[test]
fn invisible_direction_controls_are_refused_in_names_and_notes() {
    let laptop = Laptop::initialized();
    add_household(&laptop, "4001-012345-6");
    let (code, stderr) = laptop.fails(&[
        "--lang",
        "en",
        "household",
        "edit",
        "4001-012345-6",
        "--notes",
        "ได้รับ \u{202E}0051 บาท",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("U+202E"), "{stderr}");
    assert!(!laptop.ok(&["export"]).contains('\u{202E}'));
}

#[test]
fn a_cell_a_spreadsheet_would_run_is_exported_as_text() {
    let laptop = Laptop::initialized();
    add_household(&laptop, "4001-012345-6");
    laptop.ok(&[
        "household",
        "edit",
        "4001-012345-6",
        "--notes",
        "=HYPERLINK(\"http://example.invalid\",\"คลิก\")",
    ]);
    laptop.ok(&[
        "household",
        "edit",
        "4001-012345-6",
        "--address",
        "@SUM(1+1)",
    ]);
    let csv = laptop.ok(&["export", "--format", "csv"]);
    assert!(csv.contains("\"'=HYPERLINK("), "{csv}");
    assert!(csv.contains(",'@SUM(1+1),"), "{csv}");
    assert!(!csv.contains(",=HYPERLINK") && !csv.contains(",\"=HYPERLINK"));
}

#[test]
fn a_damaged_file_is_noticed_and_nothing_is_sent_from_it() {
    let laptop = Laptop::initialized();
    for n in 0..400 {
        let code = format!("4001-{:06}-1", 10_000 + n);
        assert_eq!(add_household(&laptop, &code).0, 0);
    }
    assert!(laptop.ok(&["check"]).contains("sound"));
    // 8 KiB in the middle of the file overwritten.
    let mut bytes = std::fs::read(&laptop.db).unwrap();
    let middle = bytes.len() / 2 / 4096 * 4096;
    bytes[middle..middle + 8192].fill(0x5a);
    std::fs::write(&laptop.db, &bytes).unwrap();
    let (code, stderr) = laptop.fails(&["--lang", "en", "check"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("damaged") && stderr.contains("faenban export"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("out.bundle");
    let (code, stderr) =
        laptop.fails(&["--lang", "en", "bundle", "export", bundle.to_str().unwrap()]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!bundle.exists());
}

#[test]
fn an_empty_file_or_a_folder_is_not_taken_for_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let output = assert_cmd::Command::cargo_bin("faenban")
        .unwrap()
        .args(["--lang", "en", "--db"])
        .arg(&empty)
        .arg("export")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty (0 bytes)"));
    assert!(output.stdout.is_empty());
    let output = assert_cmd::Command::cargo_bin("faenban")
        .unwrap()
        .args(["--lang", "en", "--db"])
        .arg(dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is a folder"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let laptop = Laptop::initialized();
    for n in 0..50 {
        add_household(&laptop, &format!("4001-{:06}-1", 20_000 + n));
    }
    for args in [
        &["household", "list"][..],
        &["export"],
        &["status"],
        &["export", "--format", "csv"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("faenban"))
            .arg("--db")
            .arg(&laptop.db)
            .args(args)
            .stdout(writer)
            .status()
            .unwrap();
        assert_ne!(status.code(), Some(101), "{args:?} panicked");
    }
}

fn adult_household(laptop: &Laptop) {
    add_household(laptop, "4001-012345-6");
    laptop.ok(&[
        "member",
        "add",
        "--household",
        "4001-012345-6",
        "--first-name",
        "มาลี",
        "--sex",
        "female",
        "--relation",
        "head",
        "--birth-date",
        "15/01/2510",
    ]);
}

#[test]
fn a_computed_answer_or_one_for_an_indicator_that_does_not_apply_is_refused() {
    let laptop = Laptop::initialized();
    adult_household(&laptop);
    let (code, stderr) = laptop.fails(&[
        "--lang",
        "en",
        "survey",
        "4001-012345-6",
        "--income",
        "60,000",
        "--members",
        "1",
        "--answer",
        "22=fail",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("computed from the income"), "{stderr}");
    // No child in the household: the pre-school question does not apply.
    let (code, stderr) = laptop.fails(&[
        "--lang",
        "en",
        "survey",
        "4001-012345-6",
        "--income",
        "60,000",
        "--answer",
        "15=pass",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("does not concern this household"),
        "{stderr}"
    );
    // Nothing was saved by either.
    assert!(laptop
        .ok(&["--lang", "en", "household", "show", "4001-012345-6"])
        .contains("no finished survey yet"));
    laptop.ok(&[
        "survey",
        "4001-012345-6",
        "--income",
        "60,000",
        "--answer",
        "15=na",
    ]);
}

#[test]
fn a_child_added_while_a_survey_is_paused_is_asked_about_when_it_resumes() {
    let laptop = Laptop::initialized();
    adult_household(&laptop);
    // Income, the number of people (as recorded), one answer, then pause.
    let output = laptop
        .cmd(&["--lang", "en", "survey", "4001-012345-6"])
        .write_stdin("60000\n\n1\nq\n")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = laptop.ok(&["--lang", "en", "household", "show", "4001-012345-6"]);
    assert!(shown.contains("an unfinished survey of"), "{shown}");
    laptop.ok(&[
        "member",
        "add",
        "--household",
        "4001-012345-6",
        "--first-name",
        "ใบเตย",
        "--sex",
        "female",
        "--relation",
        "child",
        "--birth-date",
        "02/06/2565",
    ]);
    let output = laptop
        .cmd(&["--lang", "en", "survey", "4001-012345-6"])
        .write_stdin("q\n")
        .output()
        .unwrap();
    let prompts = String::from_utf8_lossy(&output.stderr);
    assert!(prompts.contains("indicators that apply now"), "{prompts}");
    assert!(prompts.contains("15"), "{prompts}");
}

#[test]
fn help_and_argument_errors_are_in_thai_under_lang_th() {
    let laptop = Laptop::initialized();
    let help = laptop.ok(&["--lang", "th", "--help"]);
    assert!(
        help.contains("การใช้งาน:") && help.contains("คำสั่ง:"),
        "{help}"
    );
    assert!(help.contains("ตั้งค่าเครื่องนี้"), "{help}");
    assert!(!help.contains("Set up this laptop"), "{help}");
    let help = laptop.ok(&["--lang", "th", "household", "add", "--help"]);
    assert!(help.contains("รหัสประจำบ้าน 11 หลัก"), "{help}");
    let (code, stderr) = laptop.fails(&["--lang", "th", "household", "ad"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ไม่รู้จักคำสั่ง `ad`"), "{stderr}");
    let (code, stderr) = laptop.fails(&["--lang", "th", "member", "add"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ยังขาด --household"), "{stderr}");
    let (code, stderr) = laptop.fails(&["--lang", "th", "export", "--format", "xls"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ใช้ได้: json, csv"), "{stderr}");
    // English stays English.
    let (code, stderr) = laptop.fails(&["--lang", "en", "household", "ad"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    assert!(laptop
        .ok(&["--lang", "en", "--help"])
        .contains("Set up this laptop"));
}

#[test]
fn a_bad_server_address_is_bad_input_in_thai() {
    let laptop = Laptop::initialized();
    let token = format!("fbn_{}", "ab".repeat(32));
    let (code, stderr) = laptop.fails(&[
        "--lang",
        "th",
        "login",
        "--server",
        "faenban.example",
        "--token",
        &token,
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("ไม่ใช่ที่อยู่เซิร์ฟเวอร์"), "{stderr}");
    let (code, _) = laptop.fails(&["login", "--server", "https://", "--token", &token]);
    assert_eq!(code, 3);
}

#[test]
fn an_imported_note_too_large_to_send_rejects_its_row_only() {
    let laptop = Laptop::initialized();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.csv");
    let note = "ก".repeat(30_000);
    std::fs::write(
        &list,
        format!(
            "รหัสประจำบ้าน,รหัสหมู่บ้าน,ที่อยู่,หมายเหตุ\n4001-012345-6,40010101,1 หมู่ 1,{note}\n4001-012346-4,40010101,2 หมู่ 1,ปกติ\n"
        ),
    )
    .unwrap();
    let (code, stderr) = laptop.fails(&["--lang", "en", "import", list.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    let listed = laptop.json(&["household", "list"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the good row went in: {listed}"
    );
    assert!(laptop.unpushed() > 0);
}

#[test]
fn a_file_that_is_not_there_is_said_in_thai() {
    let laptop = Laptop::initialized();
    let (code, stderr) =
        laptop.fails(&["--lang", "th", "bundle", "import", "/nonexistent/x.bundle"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("เปิดไฟล์ชุดข้อมูล /nonexistent/x.bundle: ไม่พบไฟล์หรือโฟลเดอร์นี้"),
        "{stderr}"
    );
    let (code, stderr) = laptop.fails(&["--lang", "th", "import", "/nonexistent/list.csv"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("ไม่พบไฟล์"), "{stderr}");
}

#[test]
fn thai_digits_and_the_kedmanee_one_answer_the_guided_survey() {
    let laptop = Laptop::initialized();
    adult_household(&laptop);
    // Income in Thai digits, the number of people as recorded, then ๅ (the
    // key of 1 on a Thai keyboard) for "pass", then pause.
    let output = laptop
        .cmd(&["--lang", "th", "survey", "4001-012345-6"])
        .write_stdin("๖๐,๐๐๐\n\nๅ\nq\n")
        .output()
        .unwrap();
    let prompts = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(output.status.success(), "{prompts}");
    assert!(prompts.contains("บันทึกคำตอบไว้ 1 ข้อ"), "{prompts}");
    assert!(!prompts.contains("ไม่เข้าใจคำตอบ"), "{prompts}");
    let exported = laptop.ok(&["export"]);
    assert!(
        exported.contains("\"income_per_year\": \"60000.00\""),
        "{exported}"
    );
}

/// Thai is the default: with no locale, or one that names no language
/// (`C.UTF-8`, common on servers and fresh installs), the binary speaks
/// Thai; a locale that names English gives English.
#[test]
fn thai_is_spoken_unless_the_locale_names_another_language() {
    let laptop = support::Laptop::initialized();
    for (locale, thai) in [
        (None, true),
        (Some("C.UTF-8"), true),
        (Some("POSIX"), true),
        (Some("th_TH.UTF-8"), true),
        (Some("en_US.UTF-8"), false),
    ] {
        let mut command = laptop.cmd(&["household", "show", "9999-999999-9"]);
        command.env_remove("LANG");
        if let Some(locale) = locale {
            command.env("LANG", locale);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.contains("ไม่พบ"), thai, "{locale:?}: {stderr}");
    }
}
