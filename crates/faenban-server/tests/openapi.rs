//! `docs/openapi.yaml` is what the server does: schemathesis (PyPI;
//! `.ci/run` installs it) generates requests for every operation from the
//! description and sends them to a real `faenban-server` process, checking
//! that none gets a 5xx, that every status, content type, header and body
//! is one the description gives (so every refusal code is listed), that
//! authentication is enforced where it is described, and that a wrong
//! method is answered with its `Allow` header.
//!
//! It runs against a server on each store: SQLite (`--data DIR`) and
//! PostgreSQL (`--postgres URL`, a scratch database on the tests' cluster).
//!
//! It does not check that every schema-valid request is accepted: a device
//! key must be a real Ed25519 point and a batch's indexes must agree, which
//! a schema cannot say.

mod support;

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use support::postgres_support::ScratchDatabase;

#[test]
fn the_openapi_description_is_what_the_server_does_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let store = ["--data".to_owned(), data.path().display().to_string()];
    check_the_description(&store, data.path());
}

#[test]
fn the_openapi_description_is_what_the_server_does_on_postgres() {
    let database = ScratchDatabase::new();
    let scratch = tempfile::tempdir().unwrap();
    let store = ["--postgres".to_owned(), database.url.clone()];
    check_the_description(&store, scratch.path());
}

/// Runs schemathesis against a server on `store` (its command-line
/// arguments); `scratch` holds schemathesis's cache.
fn check_the_description(store: &[String], scratch: &std::path::Path) {
    let python = "python3";
    let found = Command::new(python)
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "schemathesis is missing: `python3 -m pip install schemathesis` (`.ci/run` does) \
         to check docs/openapi.yaml against the server"
    );
    let server = env!("CARGO_BIN_EXE_faenban-server");
    let added = Command::new(server)
        .args(["account", "add"])
        .args(store)
        .args(["--name", "province", "--role", "province"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let token = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    let mut serving = Command::new(server)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(serving.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    // Its cache goes in the scratch folder, not the work tree.
    let run = Command::new(python)
        .current_dir(scratch)
        .args(["-m", "schemathesis.cli", "run", spec, "--url", &url])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,\
             missing_required_header,unsupported_method,allow_header_conformance,ignored_auth",
            "--max-examples",
            "100",
            "--seed",
            "2569",
            "--no-color",
        ])
        .output()
        .unwrap();
    let _ = serving.kill();
    let _ = serving.wait();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found the server and docs/openapi.yaml apart:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // It ran every operation the description has, not none.
    let figure = |label: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_default()
    };
    let tested = figure("Tested:");
    assert!(tested.parse::<u32>().is_ok_and(|n| n > 10), "{report}");
    assert_eq!(
        figure("Selected:"),
        format!("{tested}/{tested}"),
        "{report}"
    );
}

/// The description lists exactly the refusal codes the server can send:
/// a mobile client written from it can handle every one.
#[test]
fn the_openapi_description_lists_every_refusal_code() {
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .expect("docs/openapi.yaml");
    let error_body = &spec[spec.find("    ErrorBody:").expect("an ErrorBody schema")..];
    let listed = &error_body[error_body.find("enum:").expect("an enum of codes")..];
    let listed: std::collections::BTreeSet<&str> = listed
        .lines()
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- "))
        .collect();
    let sent: std::collections::BTreeSet<&str> = faenban_core::RefusalCode::ALL
        .iter()
        .filter(|code| **code != faenban_core::RefusalCode::BadAccount)
        .map(|code| code.as_str())
        .collect();
    assert_eq!(listed, sent, "docs/openapi.yaml's ErrorBody codes");
}
