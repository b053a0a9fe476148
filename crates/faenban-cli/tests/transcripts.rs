//! Every command, in Thai and in English, run end to end on a fresh laptop
//! and compared with a reviewed transcript (insta snapshots in
//! `tests/snapshots/`). Ids, the device, today's date and clock times change
//! from run to run, so they are replaced by stable names before comparing.

mod support;

use std::collections::BTreeMap;

use faenban_store::Store;
use support::{hand_over, Laptop};

/// A session at the terminal: each command with what it printed.
struct Transcript<'a> {
    laptop: &'a Laptop,
    lang: &'static str,
    text: String,
}

impl Transcript<'_> {
    fn run(&mut self, args: &[&str]) {
        self.run_with_input(args, "");
    }

    fn run_with_input(&mut self, args: &[&str], input: &str) {
        let mut all = vec!["--lang", self.lang];
        all.extend_from_slice(args);
        let output = self
            .laptop
            .cmd(&all)
            .write_stdin(input.to_owned())
            .output()
            .unwrap();
        self.text
            .push_str(&format!("$ faenban {}\n", args.join(" ")));
        self.text
            .push_str(&String::from_utf8(output.stdout).unwrap());
        let stderr = String::from_utf8(output.stderr).unwrap();
        if !stderr.is_empty() {
            self.text.push_str("[stderr]\n");
            self.text.push_str(&stderr);
            if !stderr.ends_with('\n') {
                self.text.push('\n');
            }
        }
        let code = output.status.code().unwrap();
        if code != 0 {
            self.text.push_str(&format!("[exit {code}]\n"));
        }
        self.text.push('\n');
    }

    /// The transcript with run-to-run details replaced by stable names.
    fn redacted(&self, other_device: &Laptop) -> String {
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for (laptop, device_name) in [(self.laptop, "device"), (other_device, "other-device")] {
            let store = Store::open(&laptop.db).unwrap();
            if let Some(device) = store.device().unwrap() {
                names.insert(device.id.to_string(), format!("<{device_name}>"));
            }
            // Records are named by kind and by their content, which the
            // script fixes, rather than by their random ids.
            let mut by_kind: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            for (key, state) in store.all_records().unwrap() {
                let content = serde_json::to_string(&state.shown_values()).unwrap();
                by_kind
                    .entry(key.kind.to_string())
                    .or_default()
                    .push((content, key.id.to_string()));
            }
            for (kind, mut records) in by_kind {
                records.sort();
                for (n, (_, id)) in records.into_iter().enumerate() {
                    names
                        .entry(id)
                        .or_insert_with(|| format!("<{kind}-{}>", n + 1));
                }
            }
        }
        let folder = self.laptop.db.parent().unwrap().display().to_string();
        let mut text = self
            .text
            .replace(&self.laptop.db.display().to_string(), "<db>")
            .replace(&folder, "<folder>");
        for (id, name) in &names {
            text = text.replace(id.as_str(), name);
            text = text.replace(&id[id.len() - 8..], name);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let today = chrono::DateTime::from_timestamp_millis(now_ms + 7 * 3_600_000)
            .unwrap()
            .date_naive();
        text = text.replace(&today.to_string(), "<today>");
        text = text.replace(
            &faenban_core::dates::format_buddhist_short(today),
            "<today>",
        );
        redact_times(&text)
    }
}

/// Replaces clock times (`14:03:59`) with `<time>`.
fn redact_times(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let window = &chars[i..(i + 8).min(chars.len())];
        let is_time = window.len() == 8
            && window.iter().enumerate().all(|(n, c)| {
                if n == 2 || n == 5 {
                    *c == ':'
                } else {
                    c.is_ascii_digit()
                }
            });
        if is_time {
            out.push_str("<time>");
            i += 8;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// A volunteer's first round, then a conflict with another laptop.
fn field_round(lang: &'static str) -> String {
    let laptop = Laptop::new();
    let other = Laptop::new();
    let mut t = Transcript {
        laptop: &laptop,
        lang,
        text: String::new(),
    };
    t.run(&["status"]);
    t.run(&["init", "--name", "อสม. มาลี บ้านโนนสูง"]);
    t.run(&[
        "household",
        "add",
        "--house-code",
        "4001-012345-6",
        "--village",
        "40010101",
        "--address",
        "12 หมู่ 1",
        "--welfare-card",
        "yes",
        "--livelihood",
        "farmer",
    ]);
    t.run(&[
        "household",
        "add",
        "--house-code",
        "4001-012346-4",
        "--village",
        "40010102",
        "--address",
        "7 หมู่ 2",
    ]);
    t.run(&[
        "household",
        "add",
        "--house-code",
        "4001-01234",
        "--village",
        "40990101",
        "--address",
        "x",
    ]);
    t.run(&[
        "member",
        "add",
        "--household",
        "4001-012345-6",
        "--national-id",
        "1-9999-00000-01-3",
        "--title",
        "นาง",
        "--first-name",
        "มาลี",
        "--last-name",
        "ศรีสุข",
        "--sex",
        "female",
        "--birth-date",
        "15/03/2510",
        "--relation",
        "head",
        "--income",
        "48,000",
    ]);
    t.run(&[
        "member",
        "add",
        "--household",
        "4001-012345-6",
        "--first-name",
        "ด.ญ. ฝน",
        "--sex",
        "female",
        "--birth-date",
        "2021-06-01",
        "--relation",
        "grandchild",
    ]);
    t.run(&[
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
        "1999900000017",
    ]);
    let shown = laptop.json(&["household", "show", "4001-012345-6"]);
    let head = shown["members"][0]["id"].as_str().unwrap().to_owned();
    t.run(&[
        "member",
        "edit",
        &head,
        "--occupation",
        "ทำนา",
        "--chronic-illness",
        "yes",
    ]);
    t.run(&["member", "edit", &head, "--birth-date", "01/01/2600"]);
    t.run(&["household", "search", "มาลี"]);
    t.run(&["household", "search", "1999900000013"]);
    t.run(&["household", "list"]);
    t.run(&["household", "list", "--area", "4001010"]);
    t.run(&["household", "list", "--area", "40010102"]);
    t.run(&["household", "list", "--area", "4002"]);
    t.run_with_input(
        &["survey", "4001-012345-6", "--date", "2568-11-20"],
        "60000\n\n1\n1\n2\nb\n1\nq\n",
    );
    t.run_with_input(&["survey", "4001-012345-6"], &"1\n".repeat(40));
    t.run(&[
        "survey",
        "4001-012346-4",
        "--date",
        "20/11/2568",
        "--income",
        "30000",
        "--members",
        "2",
        "--answer",
        "8=fail",
        "--answer",
        "9=pass",
    ]);
    t.run(&["survey", "4001-012346-4", "--answer", "99=fail"]);
    t.run(&[
        "assist",
        "add",
        "--household",
        "4001-012346-4",
        "--dimension",
        "living",
        "--item",
        "house_repair",
        "--agency",
        "อบต.ในเมือง",
        "--amount",
        "15,000",
        "--date",
        "25/11/2568",
        "--status",
        "in_progress",
    ]);
    t.run(&[
        "assist",
        "add",
        "--household",
        "4001-012346-4",
        "--dimension",
        "living",
        "--item",
        "x",
        "--agency",
        "y",
        "--amount",
        "-1",
    ]);
    let assistance = laptop.json(&["assist", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.run(&[
        "assist",
        "update",
        &assistance,
        "--status",
        "done",
        "--outcome",
        "ซ่อมหลังคาเสร็จ",
    ]);
    t.run(&["assist", "list"]);
    t.run(&[
        "official",
        "add",
        "--name",
        "นายสมชาย ใจดี",
        "--position",
        "นักวิชาการเกษตร",
        "--agency",
        "สำนักงานเกษตรอำเภอเมืองขอนแก่น",
    ]);
    t.run(&["official", "list"]);
    t.run(&["pair", "นายสมชาย ใจดี", "4001-012345-6", "4001-012346-4"]);
    t.run(&["pairs"]);
    t.run(&["household", "show", "4001-012345-6"]);
    t.run(&["household", "show", "4001-012346-4"]);

    // Another laptop, set up with the same households, changes the same
    // field while this one does too: neither saw the other's value.
    other.ok(&["init", "--name", "ทีมตำบล"]);
    hand_over(&laptop.db, &other.db, |_| {});
    other.ok(&[
        "household",
        "edit",
        "4001-012346-4",
        "--address",
        "7/1 หมู่ 2",
    ]);
    t.run(&[
        "household",
        "edit",
        "4001-012346-4",
        "--address",
        "7 หมู่ 2 (ท้ายซอย)",
    ]);
    hand_over(&other.db, &laptop.db, |_| {});
    t.run(&["conflicts", "list"]);
    t.run(&["conflicts", "show", "4001-012346-4"]);
    t.run(&["conflicts", "resolve", "4001-012346-4", "--keep", "1"]);
    t.run(&["conflicts", "list"]);
    t.run(&["history", "4001-012346-4"]);
    t.run(&["pair", "นายสมชาย ใจดี", "4001-012346-4", "--end"]);
    t.run(&["member", "remove", "9999-999999-9"]);
    t.run(&["household", "archive", "4001-012346-4"]);
    t.run(&["household", "list", "--archived"]);
    t.run(&["household", "restore", "4001-012346-4"]);
    t.run(&["household", "show", "1234567890"]);
    // A district's list: two good rows, one with a wrong check digit, one
    // already recorded, and a blank spreadsheet row.
    let list = laptop.db.with_file_name("list.csv");
    std::fs::write(
        &list,
        "รหัสประจำบ้าน,รหัสหมู่บ้าน,บ้านเลขที่,คำนำหน้า,ชื่อ,นามสกุล,เพศ,วันเกิด,เลขประจำตัวประชาชน\n\
         4001-012350-1,40010103,3 หมู่ 3,นาย,บุญมี,ใจงาม,ชาย,01/02/2505,1999900000021\n\
         4001-012351-1,40010103,4 หมู่ 3,นาง,คำปุน,ใจงาม,หญิง,,1999900000022\n\
         ,,,,,,,,\n\
         4001-012345-6,40010101,12 หมู่ 1,,,,,,\n\
         4001-012352-1,40010103,5 หมู่ 3,นาง,ทองใบ,ศรีสุข,หญิง,,\n",
    )
    .unwrap();
    let list = list.display().to_string();
    t.run(&["import", &list, "--dry-run"]);
    t.run(&["import", &list]);
    t.run(&["household", "list", "--area", "40010103"]);
    t.run(&["status"]);
    t.run(&["export", "--format", "csv"]);
    t.run(&[
        "export",
        "--output",
        &laptop.db.with_file_name("all.json").display().to_string(),
    ]);
    t.redacted(&other)
}

#[test]
fn every_command_in_thai() {
    insta::assert_snapshot!(field_round("th"));
}

#[test]
fn every_command_in_english() {
    insta::assert_snapshot!(field_round("en"));
}

#[test]
fn clock_times_are_redacted_and_nothing_else() {
    assert_eq!(
        redact_times("at 14:03:59, 1:2:3 and 99:99:99x"),
        "at <time>, 1:2:3 and <time>x"
    );
}
