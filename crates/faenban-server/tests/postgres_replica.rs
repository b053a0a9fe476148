//! The office's reports read from a streaming replica of the server's
//! PostgreSQL database: what the replica has replayed is what the report
//! shows, laptops' syncs stay on the primary, and a replica out of reach is
//! passed over for the primary.

mod support;

use std::time::{Duration, Instant};

use faenban_core::areas::Areas;
use faenban_core::report::ReportOptions;
use faenban_core::sync::{Role, Scope};
use faenban_server::backend::Backend as _;
use faenban_server::postgres::PostgresBackend;
use support::postgres_support::{OwnCluster, ScratchDatabase};
use support::OfficeLaptop;

fn households_reported(backend: &PostgresBackend) -> u64 {
    backend
        .report(&Areas::builtin(), &ReportOptions::default())
        .unwrap()
        .total
        .households
}

/// Waits until the replica has replayed everything the primary has
/// committed so far.
fn caught_up(primary: &mut postgres::Client, replica: &mut postgres::Client) {
    let target: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replayed: bool = replica
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .unwrap()
            .get(0);
        if replayed {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_office_reads_its_report_from_the_replica_and_the_primary_when_it_is_gone() {
    let cluster = OwnCluster::start();
    let standby = cluster.replica();
    let database = ScratchDatabase::on(&cluster.url);
    let backend = PostgresBackend::open(&database.url).unwrap();
    let replica_url = {
        let base = standby.url.rsplit_once('/').unwrap().0;
        format!("{base}/{}", database.name)
    };
    let mut primary = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    let mut replica = postgres::Client::connect(&replica_url, postgres::NoTls).unwrap();
    caught_up(&mut primary, &mut replica);
    let backend = backend.read_reports_from(&replica_url).unwrap();
    let mut laptop = OfficeLaptop::enroll(&backend, 9);
    let scope = Scope {
        role: Role::Province,
        areas: Vec::new(),
        dimension: None,
    };
    let mut push = |households: u128| laptop.push_households(&backend, households);

    push(10);
    caught_up(&mut primary, &mut replica);
    assert_eq!(households_reported(&backend), 10);

    // The replica stops replaying: the report shows what it holds, while
    // pushes and pulls go on against the primary.
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    push(5);
    assert_eq!(
        households_reported(&backend),
        10,
        "the report is read from the replica, which has not replayed the last push"
    );
    let pulled = backend.pull(&scope, 0, None, 1_000).unwrap();
    assert_eq!(pulled.changes.len(), 15 * 6, "the pull reads the primary");
    let generation_then = backend.report_generation().unwrap();

    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    caught_up(&mut primary, &mut replica);
    assert_eq!(households_reported(&backend), 15);
    assert!(backend.report_generation().unwrap() > generation_then);

    // The replica gone: the report is read from the primary.
    drop(replica);
    standby.pg_ctl(&["-m", "immediate", "stop"]);
    push(1);
    assert_eq!(households_reported(&backend), 16);
}

#[test]
fn a_replica_of_another_database_is_refused() {
    let cluster = OwnCluster::start();
    let standby = cluster.replica();
    let ours = ScratchDatabase::on(&cluster.url);
    let theirs = ScratchDatabase::on(&cluster.url);
    let backend = PostgresBackend::open(&ours.url).unwrap();
    drop(PostgresBackend::open(&theirs.url).unwrap());
    let base = standby.url.rsplit_once('/').unwrap().0;
    let other = format!("{base}/{}", theirs.name);
    // Until the standby has replayed the other server's schema.
    let deadline = Instant::now() + Duration::from_secs(60);
    while postgres::Client::connect(&other, postgres::NoTls)
        .and_then(|mut client| client.query_one("SELECT count(*) FROM meta", &[]))
        .is_err()
    {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = backend.read_reports_from(&other).unwrap_err();
    assert!(
        error.to_string().contains("another server's database"),
        "{error}"
    );
}
