//! A young province's partitions on PostgreSQL are analyzed by the server
//! as they grow, so that a first import is not planned from the statistics
//! of empty tables while autovacuum has yet to come round.

mod support;

use faenban_core::sync::{Role, Scope};
use faenban_core::{RecordKey, RecordKind, Replica};
use faenban_server::backend::Backend as _;
use faenban_server::postgres::PostgresBackend;
use faenban_server::token;
use faenban_store::server::PushInput;
use serde_json::json;
use support::postgres_support::ScratchDatabase;
use support::{device, key_of, NOW};
use uuid::Uuid;

/// What the planner knows of a partition: `reltuples`, −1 until it is
/// first analyzed.
fn planned_rows(admin: &mut postgres::Client, table: &str) -> f32 {
    admin
        .query_one(
            "SELECT reltuples FROM pg_class WHERE oid = $1::text::regclass",
            &[&table],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_young_provinces_partitions_are_analyzed_as_its_first_import_grows() {
    let database = ScratchDatabase::new();
    let backend = PostgresBackend::open(&database.url).unwrap();
    let scope = Scope {
        role: Role::Province,
        areas: vec!["40".into()],
        dimension: None,
    };
    let account = backend
        .add_account(
            "office",
            &scope,
            &token::hash(&token::generate().unwrap()),
            NOW,
        )
        .unwrap();
    let device = device(7);
    let key = key_of(device);
    backend
        .hello(&account, device, "laptop", &key.public(), NOW)
        .unwrap();
    let mut replica = Replica::new(device);
    let mut sequence = 1;
    let mut made: u128 = 0;
    let mut push = |households: u128| {
        let mut changes = Vec::new();
        for _ in 0..households {
            made += 1;
            let record = RecordKey::new(RecordKind::Household, Uuid::from_u128(made));
            changes.push(replica.set(NOW, &record, "village", json!("40010101")));
            changes.push(replica.set(NOW, &record, "address", json!("1 หมู่ 1")));
        }
        let input = PushInput {
            device,
            relay: false,
            first_sequence: sequence,
            signature: key.sign_run(device, sequence, &changes),
            changes: changes.clone(),
            public_key: None,
        };
        let outcome = backend.push(&account, input, NOW).unwrap();
        assert_eq!(outcome.applied as usize, changes.len());
        sequence += changes.len() as u64;
    };
    let mut admin = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();

    // A first batch makes the province's partitions; too few rows yet to
    // analyze, so the planner knows nothing of them.
    push(100);
    assert_eq!(planned_rows(&mut admin, "changes_p40"), -1.0);

    // Past the first threshold, the server has analyzed them itself.
    for _ in 0..5 {
        push(500);
    }
    let analyzed = planned_rows(&mut admin, "changes_p40");
    assert!(
        analyzed >= 2_000.0,
        "changes_p40 planned as {analyzed} rows after 5,200 changes"
    );
    assert!(planned_rows(&mut admin, "records_p40") > 0.0);
    assert!(planned_rows(&mut admin, "places_p40") > 0.0);
    // The record numbers too: in this database they are the province's.
    assert!(planned_rows(&mut admin, "record_numbers") > 0.0);
}
