//! A laptop file written by an earlier faenban opens in this one with
//! nothing lost: `fixtures/upgrade/laptop-schema-7.db` (made by
//! `fixtures/upgrade/make-laptop.sh` with the schema-7 binaries) holds an
//! unpushed outbox, changes the server held back, an open conflict and a
//! paused survey; after the upgrade it exports, lists and shows exactly
//! what it did before.

mod support;

use serde_json::Value;
use support::Laptop;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/upgrade/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURE}{name}")).unwrap()
}

fn upgraded() -> Laptop {
    let laptop = Laptop::new();
    std::fs::copy(format!("{FIXTURE}laptop-schema-7.db"), &laptop.db).unwrap_or_else(|error| {
        panic!("fixtures/upgrade/laptop-schema-7.db: {error}; it is committed, and made again by fixtures/upgrade/make-laptop.sh")
    });
    laptop
}

#[test]
fn a_schema_7_laptop_keeps_its_records_outbox_held_back_changes_and_conflicts() {
    let laptop = upgraded();
    assert_eq!(
        laptop.ok(&["export", "--format", "json"]),
        fixture("laptop-schema-7.export.json")
    );
    let outbox: Value = serde_json::from_str(&fixture("laptop-schema-7.outbox.json")).unwrap();
    assert_eq!(laptop.json(&["outbox", "list"]), outbox);
    let conflicts: Value =
        serde_json::from_str(&fixture("laptop-schema-7.conflicts.json")).unwrap();
    assert_eq!(laptop.json(&["conflicts", "list"]), conflicts);
    let status = laptop.json(&["status"]);
    assert_eq!(status["unpushed_changes"], 29, "{status}");
    assert_eq!(status["held_back_changes"], 5, "{status}");
    assert_eq!(status["conflicts"], 1, "{status}");
    laptop.ok(&["check"]);
}

#[test]
fn a_survey_paused_before_the_upgrade_resumes_after_it() {
    let laptop = upgraded();
    let shown = laptop.ok(&["--lang", "en", "household", "show", "4001-000789-1"]);
    assert!(shown.contains("an unfinished survey of"), "{shown}");
    let output = laptop
        .cmd(&["--lang", "en", "survey", "4001-000789-1"])
        .write_stdin("q\n")
        .output()
        .unwrap();
    let prompts = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{prompts}");
    assert!(
        prompts.contains("resuming where it stopped (1 of 20 answered)"),
        "{prompts}"
    );
}
