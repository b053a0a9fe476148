//! Faults in the field: a process killed in the middle of a write, a file
//! held by another process or marked read-only, and a household list with
//! broken rows. Nothing already recorded may be lost, nothing half-written.

mod support;

use std::time::Duration;

use support::{file_bytes, Laptop};

/// A target list of `rows` good households for `import`.
fn target_list(rows: usize) -> String {
    faenban_fixtures::target_list_csv(11, rows)
}

fn households(laptop: &Laptop) -> usize {
    laptop
        .json(&["household", "list"])
        .as_array()
        .unwrap()
        .len()
}

fn integrity(laptop: &Laptop) -> String {
    let connection = rusqlite::Connection::open(&laptop.db).unwrap();
    connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

/// True while another process holds the database's write lock, i.e. is in
/// the middle of a write transaction.
fn holds_write_lock(laptop: &Laptop) -> bool {
    let probe = rusqlite::Connection::open(&laptop.db).unwrap();
    probe.busy_timeout(Duration::ZERO).unwrap();
    match probe.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => {
            probe.execute_batch("ROLLBACK").unwrap();
            false
        }
        Err(_) => true,
    }
}

#[test]
fn a_killed_import_leaves_the_file_whole_and_earlier_work_intact() {
    let laptop = Laptop::initialized();
    laptop.add_household();
    // 2,500 households and their heads: more records than the store keeps
    // in memory, so the kills also land after a mid-command flush.
    let list = laptop.db.with_file_name("list.csv");
    std::fs::write(&list, target_list(2_500)).unwrap();
    let import = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_faenban"))
            .arg("--db")
            .arg(&laptop.db)
            .arg("import")
            .arg(&list)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut killed_in_transaction = 0;
    for extra_ms in [0, 30, 150] {
        let mut child = import();
        // Wait until the import is inside its write transaction.
        let mut in_transaction = false;
        for _ in 0..2_000 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if holds_write_lock(&laptop) {
                in_transaction = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        let still_writing = in_transaction && holds_write_lock(&laptop);
        child.kill().ok(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        assert_eq!(integrity(&laptop), "ok");
        let after = households(&laptop);
        if still_writing {
            // Killed mid-transaction: nothing of it is in the file.
            killed_in_transaction += 1;
            assert_eq!(after, 1, "a kill {extra_ms} ms into the write");
        } else {
            assert!(after == 1 || after == 2_501, "{after} households");
            if after == 2_501 {
                break;
            }
        }
    }
    assert!(
        killed_in_transaction >= 1,
        "no kill landed inside the write"
    );
    // The import then runs to the end, and earlier work is intact.
    let finished = import().wait().unwrap();
    assert!(finished.code() == Some(0) || households(&laptop) == 2_501);
    assert_eq!(households(&laptop), 2_501);
    let shown = laptop.ok(&["household", "show", "4001-012345-6"]);
    assert!(shown.contains("12 หมู่ 1"), "{shown}");
}

#[test]
fn a_killed_guided_survey_keeps_every_answer_given_and_resumes() {
    use std::io::Write;
    let laptop = Laptop::initialized();
    laptop.add_household();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faenban"))
        .args(["--lang", "th", "--db"])
        .arg(&laptop.db)
        .args([
            "survey",
            "4001-012345-6",
            "--income",
            "60000",
            "--members",
            "3",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for answer in ["1", "2", "1"] {
        writeln!(stdin, "{answer}").unwrap();
    }
    stdin.flush().unwrap();
    // Wait until the third answer is on disk, then pull the plug.
    let mut saved = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(25));
        let store = faenban_store::Store::open(&laptop.db).unwrap();
        let visits = store.records(&faenban_core::RecordKind::Visit).unwrap();
        saved = visits.first().map_or(0, |(_, state)| {
            faenban_core::model::visit_answers(state).len()
        });
        drop(store);
        // No members are recorded, so no indicator was ruled out as not
        // applicable: the answers saved are exactly the ones typed.
        if saved >= 3 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(integrity(&laptop), "ok");
    assert_eq!(saved, 3);

    // The same command resumes at the fourth question and finishes.
    let output = laptop
        .cmd(&["--lang", "th", "survey", "4001-012345-6"])
        .write_stdin("1\n".repeat(60))
        .output()
        .unwrap();
    assert!(output.status.success());
    let prompts = String::from_utf8(output.stderr).unwrap();
    assert!(prompts.contains("ทำต่อจากที่ค้างไว้ (ตอบแล้ว 3 จาก"), "{prompts}");
    let shown = laptop.ok(&["household", "show", "4001-012345-6"]);
    // The second answer (fail) survived the kill: the household lacks
    // something in the dimension of the second question asked.
    assert!(shown.contains("latest survey"), "{shown}");
    assert!(!shown.contains("deprived in: none"), "{shown}");
    let visits = laptop.json(&["export"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "visit")
        .count();
    assert_eq!(visits, 1, "the resumed survey is the same visit");
}

#[test]
fn a_database_in_use_by_another_process_is_reported_and_nothing_is_lost() {
    let laptop = Laptop::initialized();
    laptop.add_household();
    // Another program holds a write lock for longer than faenban waits.
    let holder = rusqlite::Connection::open(&laptop.db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (code, stderr) = laptop.fails(&["household", "edit", "4001-012345-6", "--notes", "x"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("in use by another"), "{stderr}");
    let (_, stderr) = laptop.fails(&[
        "--lang",
        "th",
        "household",
        "edit",
        "4001-012345-6",
        "--notes",
        "x",
    ]);
    assert!(stderr.contains("กำลังถูกใช้"), "{stderr}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // Once it is free, the same command works.
    laptop.ok(&["household", "edit", "4001-012345-6", "--notes", "x"]);
}

#[test]
fn a_read_only_file_can_be_read_but_not_changed() {
    let laptop = Laptop::initialized();
    laptop.add_household();
    let before = laptop.ok(&["export"]);
    let mut permissions = std::fs::metadata(&laptop.db).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&laptop.db, permissions).unwrap();
    let bytes = file_bytes(&laptop.db);

    let (code, stderr) = laptop.fails(&["household", "archive", "4001-012345-6"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
    let (_, stderr) = laptop.fails(&["--lang", "th", "household", "archive", "4001-012345-6"]);
    assert!(stderr.contains("อ่านอย่างเดียว"), "{stderr}");
    assert_eq!(file_bytes(&laptop.db), bytes);
    // Reading still works, and shows what was there.
    assert_eq!(laptop.ok(&["export"]), before);
    laptop.ok(&["status"]);
}

#[test]
fn an_import_with_broken_rows_takes_the_good_rows_and_reports_every_bad_one() {
    let laptop = Laptop::initialized();
    let good = target_list(3);
    let mut lines: Vec<&str> = good.lines().collect();
    let broken = [
        // Line 5: a wrong check digit in the national ID.
        "4001-000010-1,40010102,5 หมู่ 2,นาง,มาลี,ศรีสุข,female,01/02/2510,1999900000001,มี",
        // Line 6: a village that does not exist.
        "4001-000011-1,40990102,6 หมู่ 2,นาย,สมชาย,ใจดี,male,01/02/2510,,มี",
        // Line 7: an unclosed quote.
        "4001-000012-1,40010102,\"7 หมู่ 2,นาย,สมชาย,ใจดี,male,,,",
        // Line 8: too many cells.
        "4001-000013-1,40010102,8 หมู่ 2,นาย,สมชาย,ใจดี,male,,,,,extra",
        // Line 9: the same house code as line 2.
        "",
        // Line 10: an impossible birth date.
        "4001-000014-1,40010102,9 หมู่ 2,นาย,สมชาย,ใจดี,male,31/02/2510,,มี",
    ];
    let duplicate = format!(
        "{},40010102,10 หมู่ 2,,,,,,,",
        lines[1].split(',').next().unwrap()
    );
    let mut rows: Vec<String> = broken.iter().map(|s| (*s).to_owned()).collect();
    rows[4] = duplicate;
    lines.extend(rows.iter().map(String::as_str));
    let list = laptop.db.with_file_name("list.csv");
    std::fs::write(&list, lines.join("\n")).unwrap();
    let rejects = laptop.db.with_file_name("rejects.csv");

    let output = laptop
        .cmd(&[
            "import",
            list.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let report = String::from_utf8(output.stdout).unwrap();
    for (line, reason) in [
        (5, "check digit"),
        (6, "district 4099"),
        (7, "never closed"),
        (8, "has 12 cells but the header has 10"),
        (9, "same house code as line 2"),
        (10, "day 31 of month 2"),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("line {line}: ")) && l.contains(reason)),
            "line {line} ({reason}) missing from:\n{report}"
        );
    }
    assert!(report.contains("imported 3"), "{report}");
    assert_eq!(households(&laptop), 3);
    // Each good row brought its head of household.
    let members = laptop.json(&["export"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "member" && r["fields"]["relation"] == "head")
        .count();
    assert_eq!(members, 3);
    // The rejects file holds the six bad rows with their reasons, to fix
    // in Excel and import again.
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert!(rejected.starts_with("\u{feff}line,reason,"), "{rejected}");
    assert_eq!(rejected.lines().count(), 1 + 6, "{rejected}");

    // Importing the same list again adds nothing and says so.
    let again = laptop
        .cmd(&["--lang", "th", "import", list.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8(again.stdout).unwrap();
    assert!(report.contains("บันทึกไว้แล้ว ข้าม"), "{report}");
    assert_eq!(households(&laptop), 3);
}

#[test]
fn a_file_that_is_not_csv_text_is_refused() {
    let laptop = Laptop::initialized();
    let list = laptop.db.with_file_name("list.xlsx");
    std::fs::write(&list, b"PK\x03\x04\xff\xfe\x00binary").unwrap();
    let (code, stderr) = laptop.fails(&["import", list.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(stderr.contains("CSV UTF-8"), "{stderr}");
    assert_eq!(households(&laptop), 0);
}
