//! A young province's partitions on PostgreSQL are analyzed by the server
//! as they grow, so that a first import is not planned from the statistics
//! of empty tables while autovacuum has yet to come round.

mod support;

use faenban_server::postgres::PostgresBackend;
use support::postgres_support::ScratchDatabase;
use support::OfficeLaptop;

/// What the planner knows of a table: `reltuples`, −1 until it is first
/// analyzed.
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
    let mut laptop = OfficeLaptop::enroll(&backend, 7);
    let mut admin = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();

    // A first batch makes the province's partitions; too few rows yet to
    // analyze (600 changes), so the planner knows nothing of them.
    laptop.push_households(&backend, 100);
    assert_eq!(planned_rows(&mut admin, "changes_p40"), -1.0);

    // Past the first threshold, the server has analyzed them itself.
    for _ in 0..5 {
        laptop.push_households(&backend, 100);
    }
    let analyzed = planned_rows(&mut admin, "changes_p40");
    assert!(
        analyzed >= 2_000.0,
        "changes_p40 planned as {analyzed} rows after 3,600 changes"
    );
    assert!(planned_rows(&mut admin, "records_p40") > 0.0);
    assert!(planned_rows(&mut admin, "places_p40") > 0.0);
    // The record numbers too: in this database they are the province's.
    assert!(planned_rows(&mut admin, "record_numbers") > 0.0);
}
