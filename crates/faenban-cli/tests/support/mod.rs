//! What the CLI tests share: a laptop with its own database file, running
//! the real `faenban` binary, and moving changes between two such files.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use faenban_store::Store;
use serde_json::Value;

#[path = "../../../faenban-server/tests/support/postgres_support.rs"]
pub mod postgres_support;

/// Runs `work` on a thread of its own (the PostgreSQL helpers' way).
pub fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(work).join().unwrap())
}

/// Which store a test's server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    Sqlite,
    Postgres,
}

/// A test body run once on each store: `#[test]` functions named
/// `<name>::sqlite` and `<name>::postgres` from one body, which takes the
/// store to start its server on.
#[macro_export]
macro_rules! on_both_stores {
    ($(#[$attribute:meta])* fn $name:ident($backing:ident: Backing) $body:block) => {
        $(#[$attribute])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($backing: Backing) $body

            #[test]
            fn sqlite() {
                body(Backing::Sqlite)
            }

            #[test]
            fn postgres() {
                body(Backing::Postgres)
            }
        }
    };
}

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
    pub backing: Backing,
    /// The server's database when it runs on PostgreSQL.
    pub postgres: Option<postgres_support::ScratchDatabase>,
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
        ServerProcess::start_on(Backing::Sqlite)
    }

    /// A server on the store `backing` names (a scratch database of its
    /// own on the test cluster for PostgreSQL).
    pub fn start_on(backing: Backing) -> ServerProcess {
        let mut server = ServerProcess {
            data: tempfile::tempdir().unwrap(),
            child: None,
            port: 0,
            backing,
            postgres: (backing == Backing::Postgres).then(postgres_support::ScratchDatabase::new),
        };
        server.launch();
        server
    }

    /// A server on a PostgreSQL database made for it on the cluster at
    /// `cluster` (one a test stops and starts).
    pub fn start_on_cluster(cluster: &str) -> ServerProcess {
        let mut server = ServerProcess {
            data: tempfile::tempdir().unwrap(),
            child: None,
            port: 0,
            backing: Backing::Postgres,
            postgres: Some(postgres_support::ScratchDatabase::on(cluster)),
        };
        server.launch();
        server
    }

    /// Where the server's data is, as its commands take it.
    pub fn store_args(&self) -> Vec<std::ffi::OsString> {
        match &self.postgres {
            Some(database) => vec!["--postgres".into(), database.url.clone().into()],
            None => vec!["--data".into(), self.data.path().into()],
        }
    }

    /// One number the server's database answers `sql` with (the same
    /// tables on both stores).
    pub fn count(&self, sql: &str) -> i64 {
        match &self.postgres {
            Some(database) => {
                let url = database.url.clone();
                let sql = sql.to_owned();
                off_runtime(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    client
                        .query_one(&format!("SELECT ({sql})::bigint"), &[])
                        .unwrap()
                        .get(0)
                })
            }
            None => rusqlite::Connection::open(self.database())
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
        }
    }

    /// How many arrivals and first announcements the server holds, and
    /// how many changes were announced twice (none, ever).
    pub fn counts(&self) -> (i64, i64, i64) {
        (
            self.count("SELECT COALESCE(SUM(last_sequence - first_sequence + 1), 0) FROM arrivals"),
            self.count("SELECT COUNT(*) FROM feed WHERE announce = 0"),
            self.count(
                "SELECT COUNT(*) FROM (SELECT change_seq FROM feed WHERE announce = 0 \
                 GROUP BY change_seq HAVING COUNT(*) > 1) AS twice",
            ),
        )
    }

    /// Starts the process, on the port it had before if it had one.
    fn launch(&mut self) {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(server_binary())
            .arg("serve")
            .args(self.store_args())
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
            .args(["account", "add"])
            .args(self.store_args())
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
            .args(["account", "revoke"])
            .args(self.store_args())
            .args(["--name", name])
            .output()
            .unwrap()
            .status;
        assert!(status.success());
    }

    /// Runs `faenban-server GROUP VERB --data …|--postgres … ARGS…` (`account edit`,
    /// `device release`, …) and returns what it printed.
    pub fn admin(&self, group: &str, verb: &str, args: &[&str]) -> String {
        let output = std::process::Command::new(server_binary())
            .args([group, verb])
            .args(self.store_args())
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

    /// Stops this SQLite server, moves its data into a new PostgreSQL
    /// database with `faenban-server migrate`, and serves that on the same
    /// port: what a province office does to move onto PostgreSQL.
    pub fn move_to_postgres(&mut self) -> String {
        assert_eq!(self.backing, Backing::Sqlite, "only a SQLite server moves");
        self.kill();
        let database = postgres_support::ScratchDatabase::new();
        let output = std::process::Command::new(server_binary())
            .args(["migrate", "--from"])
            .arg(self.data.path())
            .args(["--to", &database.url])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.backing = Backing::Postgres;
        self.postgres = Some(database);
        self.launch();
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
