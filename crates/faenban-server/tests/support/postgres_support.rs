//! A real PostgreSQL for the tests: the cluster `FAENBAN_TEST_POSTGRES`
//! points at (`.ci/run` starts one), or else one this test process starts
//! with `.ci/postgres` and that stops when the process ends; each test
//! server gets a scratch database of its own on it.
//!
//! No PostgreSQL means a failing test that says how to get one, never a
//! test skipped and counted as passed.

use std::sync::OnceLock;

/// The environment variable naming the test cluster (a `postgres://` URL
/// of a user who may create databases).
pub const CLUSTER_URL: &str = "FAENBAN_TEST_POSTGRES";

/// The URL of the cluster the tests use.
pub fn cluster_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| std::env::var(CLUSTER_URL).unwrap_or_else(|_| OwnCluster::start().url))
}

/// A cluster of a test's own (to stop and start it), removed when the test
/// process ends.
#[derive(Debug)]
pub struct OwnCluster {
    pub url: String,
    pub data: String,
}

impl OwnCluster {
    pub fn start() -> OwnCluster {
        let (output, printed) = ci_postgres(&["start"]);
        assert!(
            output.status.success(),
            "\n\n*** These tests need a real PostgreSQL and found none. ***\n\
             Install Debian's `postgresql` (bash .ci/run does), or set {CLUSTER_URL} to a \
             postgres:// URL of a server where the user may create databases.\n\
             .ci/postgres said: {}\n",
            String::from_utf8_lossy(&output.stderr)
        );
        OwnCluster {
            url: printed(CLUSTER_URL),
            data: printed("FAENBAN_TEST_POSTGRES_DATA"),
        }
    }

    /// A hot standby streaming from this cluster (`.ci/postgres replica`),
    /// removed when the test process ends.
    pub fn replica(&self) -> OwnCluster {
        let (output, printed) = ci_postgres(&["replica", &self.data]);
        assert!(
            output.status.success(),
            ".ci/postgres replica said: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        OwnCluster {
            url: printed("FAENBAN_TEST_POSTGRES_REPLICA"),
            data: printed("FAENBAN_TEST_POSTGRES_REPLICA_DATA"),
        }
    }

    /// Runs `pg_ctl -D DATA ARGS…` as the cluster's owner.
    pub fn pg_ctl(&self, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/postgres");
        let log = format!("{}/../server.log", self.data);
        let status = std::process::Command::new("bash")
            .args([script, "pg_ctl", "-D", &self.data, "-l", &log, "-w"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running pg_ctl");
        assert!(status.success(), "pg_ctl {args:?}");
    }
}

/// Runs `.ci/postgres ARGS… --until-exit-of <this process>`; its output,
/// and what it printed as `export NAME='value'` by name.
fn ci_postgres(args: &[&str]) -> (std::process::Output, impl Fn(&str) -> String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/postgres");
    let output = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .args(["--until-exit-of", &std::process::id().to_string()])
        .output()
        .expect("running .ci/postgres");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let printed = move |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("export {name}='")))
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap_or_else(|| panic!(".ci/postgres prints {name}"))
            .to_owned()
    };
    (output, printed)
}

/// A database made for one test, dropped with it.
#[derive(Debug)]
pub struct ScratchDatabase {
    pub name: String,
    pub url: String,
    cluster: String,
}

impl ScratchDatabase {
    /// A database on the tests' cluster.
    pub fn new() -> ScratchDatabase {
        ScratchDatabase::on(cluster_url())
    }

    /// A database on the cluster at `cluster`.
    pub fn on(cluster: &str) -> ScratchDatabase {
        let name = format!("faenban_test_{}", uuid::Uuid::now_v7().simple());
        let statement = format!("CREATE DATABASE {name}");
        super::off_runtime(|| {
            let mut admin = postgres::Client::connect(cluster, postgres::NoTls)
                .unwrap_or_else(|error| panic!("connecting to {cluster}: {error}"));
            admin.batch_execute(&statement).unwrap();
        });
        let base = cluster.rsplit_once('/').map_or(cluster, |(base, _)| base);
        ScratchDatabase {
            url: format!("{base}/{name}"),
            name,
            cluster: cluster.to_owned(),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        super::off_runtime(|| {
            if let Ok(mut admin) = postgres::Client::connect(&self.cluster, postgres::NoTls) {
                let _ = admin.batch_execute(&statement);
            }
        });
    }
}
