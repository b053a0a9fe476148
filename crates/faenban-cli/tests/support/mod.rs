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
        // Tests read English unless they ask for Thai (`--lang th`); with
        // no locale the binary speaks Thai (`tests/field_ready.rs`).
        command
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env("LANG", "en_US.UTF-8");
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

    /// A member of the household `add_household` made.
    pub fn add_member(&self, first_name: &str, sex: &str, relation: &str) {
        self.ok(&[
            "member",
            "add",
            "--household",
            "4001-012345-6",
            "--first-name",
            first_name,
            "--sex",
            sex,
            "--relation",
            relation,
        ]);
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

/// A real `faenban-server` process with its own data folder, on a free
/// port of loopback.
pub struct ServerProcess {
    pub data: tempfile::TempDir,
    child: Option<std::process::Child>,
    pub port: u16,
}

/// The server binary, built if this test run did not build it already.
/// `cargo test --workspace` builds it; `cargo test -p faenban-cli` alone
/// does not, and uses the last one built (run `cargo build -p
/// faenban-server` first after changing the server).
fn server_binary() -> PathBuf {
    let path = assert_cmd::cargo::cargo_bin("faenban-server");
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "faenban-server", "--bin", "faenban-server"])
            .status()
            .unwrap();
        assert!(status.success(), "building faenban-server failed");
    }
    path
}

impl ServerProcess {
    pub fn start() -> ServerProcess {
        let mut server = ServerProcess {
            data: tempfile::tempdir().unwrap(),
            child: None,
            port: 0,
        };
        server.launch();
        server
    }

    /// Starts the process, on the port it had before if it had one.
    fn launch(&mut self) {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(server_binary())
            .arg("serve")
            .arg("--data")
            .arg(self.data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the server did not say where it listens: {line:?}"));
        self.port = port;
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds an account through the server's own command; returns the token.
    pub fn account(&self, name: &str, role: &str, area: &str) -> String {
        let output = std::process::Command::new(server_binary())
            .args(["account", "add", "--data"])
            .arg(self.data.path())
            .args(["--name", name, "--role", role, "--area", area])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "account add: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    pub fn revoke(&self, name: &str) {
        let status = std::process::Command::new(server_binary())
            .args(["account", "revoke", "--data"])
            .arg(self.data.path())
            .args(["--name", name])
            .output()
            .unwrap()
            .status;
        assert!(status.success());
    }

    /// Runs `faenban-server GROUP VERB --data … ARGS…` (`account edit`,
    /// `device release`, …) and returns what it printed.
    pub fn admin(&self, group: &str, verb: &str, args: &[&str]) -> String {
        let output = std::process::Command::new(server_binary())
            .args([group, verb, "--data"])
            .arg(self.data.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts again on the same data and port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The server's database, for checks a client cannot make.
    pub fn database(&self) -> PathBuf {
        self.data.path().join("faenban-server.db")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Laptop {
    /// `faenban login` with a token.
    pub fn login(&self, server: &ServerProcess, token: &str) {
        self.ok(&["login", "--server", &server.url(), "--token", token]);
    }

    /// `faenban sync --json`, which must succeed; its summary.
    pub fn sync(&self) -> Value {
        self.json(&["sync", "--retries", "2"])
    }

    pub fn unpushed(&self) -> u64 {
        self.json(&["status"])["unpushed_changes"].as_u64().unwrap()
    }
}
