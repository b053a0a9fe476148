//! Schema migrations, applied in order and counted by `PRAGMA user_version`.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{Error, Result};

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
    include_str!("../../../schema/migrations/0008_compact_encoding.sql"),
];

/// The version whose migration also rewrites the stored JSON in the
/// compact form, which SQL cannot write.
const COMPACT_ENCODING: i64 = 8;

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
    // A migration that rebuilds a table others refer to (version 8 does)
    // needs foreign keys off while it runs: SQLite's own procedure, which
    // checks them again before the upgrade commits.
    connection.pragma_update(None, "foreign_keys", false)?;
    let migrated = migrate_in_one_transaction(connection, from, to);
    connection.pragma_update(None, "foreign_keys", true)?;
    migrated
}

fn migrate_in_one_transaction(connection: &mut Connection, from: i64, to: i64) -> Result<()> {
    let tx = connection.transaction()?;
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(to as usize)
        .skip(from as usize)
    {
        tx.execute_batch(sql)?;
        if index as i64 + 1 == COMPACT_ENCODING {
            rewrite_in_compact_form(&tx)?;
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    let broken: Option<String> = tx
        .prepare("PRAGMA foreign_key_check")?
        .query_row([], |row| row.get(0))
        .optional()?;
    if let Some(table) = broken {
        return Err(Error::Corrupt(format!(
            "the upgrade would leave rows of {table} pointing at nothing; the file was not changed"
        )));
    }
    tx.commit()?;
    Ok(())
}

/// How many rows the rewrite reads at a time.
const REWRITE_CHUNK: i64 = 10_000;

/// Rewrites every change body and record state still kept as JSON in the
/// core's compact form. A row that is not the JSON it should be stops the
/// upgrade, and the file stays as it was.
fn rewrite_in_compact_form(tx: &Transaction<'_>) -> Result<()> {
    rewrite_json_column(tx, "changes", "seq", "body", |json| {
        let change: faenban_core::Change = serde_json::from_str(json)
            .map_err(|error| Error::Corrupt(format!("a stored change: {error}")))?;
        Ok(faenban_core::codec::encode_change_body(&change))
    })?;
    rewrite_json_column(tx, "records", "rowid", "state", |json| {
        let state: faenban_core::RecordState = serde_json::from_str(json)
            .map_err(|error| Error::Corrupt(format!("a stored record state: {error}")))?;
        Ok(faenban_core::codec::encode_state(&state))
    })
}

/// Rewrites, [`REWRITE_CHUNK`] rows at a time in `key` order, every value
/// of `table.column` still kept as text with `encode`.
fn rewrite_json_column(
    tx: &Transaction<'_>,
    table: &str,
    key: &str,
    column: &str,
    encode: impl Fn(&str) -> Result<Vec<u8>>,
) -> Result<()> {
    let select = format!(
        "SELECT {key}, {column} FROM {table} WHERE {key} > ?1 AND typeof({column}) = 'text' \
         ORDER BY {key} LIMIT ?2"
    );
    let update = format!("UPDATE {table} SET {column} = ?1 WHERE {key} = ?2");
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, String)> = tx
            .prepare_cached(&select)?
            .query_map([after, REWRITE_CHUNK], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        after = *last;
        let mut statement = tx.prepare_cached(&update)?;
        for (key, json) in &rows {
            statement.execute(params![encode(json)?, key])?;
        }
    }
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
