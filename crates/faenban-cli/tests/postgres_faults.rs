//! The server on PostgreSQL when the database fails under it: stopped with
//! `pg_ctl -m immediate` in the middle of pushes and started again. The
//! server answers 503 with a reason and Retry-After meanwhile, the laptop
//! tries again, the server reconnects by itself, and nothing acknowledged
//! is lost or applied twice.

mod support;

use std::time::Duration;

use faenban_store::Store;
use support::postgres_support::OwnCluster;
use support::{Laptop, ServerProcess};

#[test]
fn a_database_stopped_mid_push_and_started_again_loses_nothing_and_doubles_nothing() {
    let cluster = OwnCluster::start();
    let server = ServerProcess::start_on_cluster(&cluster.url);
    let token = server.account("จังหวัด", "province", "");
    let laptop = Laptop::new();
    laptop.ok(&["init", "--name", "generated"]);
    let mut store = Store::open(&laptop.db).unwrap();
    faenban_fixtures::populate(&mut store, &faenban_fixtures::Spec::khon_kaen(3, 400)).unwrap();
    drop(store);
    let total = laptop.unpushed();
    laptop.login(&server, &token);

    let mut sync = laptop.cmd(&["sync", "--retries", "12"]);
    sync.timeout(Duration::from_secs(300));
    let syncing = std::thread::spawn(move || sync.output().unwrap());
    for _ in 0..4000 {
        if server.count("SELECT COUNT(*) FROM arrivals") > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.pg_ctl(&["-m", "immediate", "stop"]);
    // Meanwhile the server says it cannot take requests, and when to come
    // back.
    let answer = reqwest::blocking::Client::new()
        .get(format!("{}/v1/changes?since=0", server.url()))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key(reqwest::header::RETRY_AFTER));
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().unwrap()).unwrap();
    assert_eq!(body["error"], "busy", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("database"),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.pg_ctl(&["start"]);

    let output = syncing.join().unwrap();
    if !output.status.success() {
        // Out of tries while the database was down: the outbox is kept.
        assert_eq!(output.status.code(), Some(7), "network failure exit code");
    }
    laptop.sync();
    assert_eq!(laptop.unpushed(), 0);
    let (arrived, announced, twice) = server.counts();
    assert_eq!(arrived as u64, total);
    assert_eq!(announced as u64, total);
    assert_eq!(twice, 0);
    let office = Laptop::new();
    office.ok(&["init", "--name", "office"]);
    office.login(&server, &server.account("จังหวัด 2", "province", ""));
    office.sync();
    assert!(office.ok(&["export"]) == laptop.ok(&["export"]));
}
