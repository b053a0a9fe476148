//! Schema migrations, applied in order and counted by `PRAGMA user_version`.

use rusqlite::Connection;

use crate::error::Result;

/// The migrations, oldest first; migration `i` brings the schema from
/// version `i` to `i + 1`. They live in `schema/migrations/` as plain SQL.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../../../schema/migrations/0001_initial.sql"),
    include_str!("../../../schema/migrations/0002_records_rowid.sql"),
    include_str!("../../../schema/migrations/0003_sync.sql"),
    include_str!("../../../schema/migrations/0004_device_keys.sql"),
    include_str!("../../../schema/migrations/0005_sealed_bundles.sql"),
    include_str!("../../../schema/migrations/0006_held_back.sql"),
    include_str!("../../../schema/migrations/0007_report_digests.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings a database at `from` up to [`SCHEMA_VERSION`], all in one
/// transaction: a crash mid-upgrade leaves the old version intact.
pub(crate) fn migrate(connection: &mut Connection, from: i64) -> Result<()> {
    migrate_to(connection, from, SCHEMA_VERSION)
}

/// Brings a database at `from` up to `to`; tests use it to build every
/// earlier version.
pub(crate) fn migrate_to(connection: &mut Connection, from: i64, to: i64) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let tx = connection.transaction()?;
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(to as usize)
        .skip(from as usize)
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(connection: &Connection) -> Vec<String> {
        let mut statement = connection
            .prepare(
                "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master \
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .unwrap();
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_database_upgraded_from_every_earlier_version_equals_a_fresh_one() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh, 0).unwrap();
        let expected = schema_of(&fresh);
        assert!(expected.iter().any(|s| s.starts_with("table records")));
        for start in 0..=SCHEMA_VERSION {
            let mut old = Connection::open_in_memory().unwrap();
            migrate_to(&mut old, 0, start).unwrap();
            let version: i64 = old
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, start);
            migrate(&mut old, start).unwrap();
            assert_eq!(schema_of(&old), expected, "upgrade from version {start}");
            let version: i64 = old
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
    }
}
