//! What the CLI tests share: a laptop with its own database file, running
//! the real `faenban` binary, and moving changes between two such files.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use faenban_store::Store;
use serde_json::Value;

/// A laptop: a scratch folder with one faenban database.
pub struct Laptop {
    _dir: tempfile::TempDir,
    /// The database file.
    pub db: PathBuf,
}

impl Laptop {
    pub fn new() -> Laptop {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("faenban.db");
        Laptop { _dir: dir, db }
    }

    pub fn initialized() -> Laptop {
        let laptop = Laptop::new();
        laptop.ok(&["init", "--name", "อสม. มาลี"]);
        laptop
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("faenban").unwrap();
        command
            .env_remove("LANG")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES");
        command.arg("--db").arg(&self.db).args(args);
        command
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cmd(args).output().unwrap();
        assert!(
            output.status.success(),
            "faenban {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs a command that must fail; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let output = self.cmd(args).output().unwrap();
        assert!(
            !output.status.success(),
            "faenban {args:?} should have failed"
        );
        (
            output.status.code().unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    pub fn add_household(&self) -> String {
        let added = self.json(&[
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
        ]);
        added["id"].as_str().unwrap().to_owned()
    }
}

/// The whole file, to check that a refused command left it untouched.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Hands every change made on `from` to `to`, in the order given by
/// `order` (applied to the list of changes), as a sync or bundle would.
pub fn hand_over(from: &Path, to: &Path, order: impl FnOnce(&mut Vec<faenban_core::Change>)) {
    let source = Store::open(from).unwrap();
    let mut changes: Vec<_> = source
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(_, change)| change)
        .collect();
    drop(source);
    order(&mut changes);
    let mut target = Store::open(to).unwrap();
    target
        .write(1_900_000_000_000, |s| {
            for change in changes {
                s.receive(change)?;
            }
            Ok(())
        })
        .unwrap();
}
