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
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var(CLUSTER_URL) {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/postgres");
        let output = std::process::Command::new("bash")
            .args([
                script,
                "start",
                "--until-exit-of",
                &std::process::id().to_string(),
            ])
            .output()
            .expect("running .ci/postgres");
        assert!(
            output.status.success(),
            "\n\n*** These tests need a real PostgreSQL and found none. ***\n\
             Install Debian's `postgresql` (bash .ci/run does), or set {CLUSTER_URL} to a \
             postgres:// URL of a server where the user may create databases.\n\
             .ci/postgres said: {}\n",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("export {CLUSTER_URL}='")))
            .and_then(|rest| rest.strip_suffix('\''))
            .expect(".ci/postgres prints the cluster's URL")
            .to_owned()
    })
}

/// A database made for one test, dropped with it.
#[derive(Debug)]
pub struct ScratchDatabase {
    pub name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub fn new() -> ScratchDatabase {
        let cluster = cluster_url();
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
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        super::off_runtime(|| {
            if let Ok(mut admin) = postgres::Client::connect(cluster_url(), postgres::NoTls) {
                let _ = admin.batch_execute(&statement);
            }
        });
    }
}
