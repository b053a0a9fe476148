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
    include_str!("../../../schema/migrations/0009_records_by_number.sql"),
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
    fn a_schema_7_server_keeps_its_log_feed_records_places_and_search_terms_through_version_9() {
        use faenban_core::{DeviceId, RecordKey, RecordKind, RecordState};
        let mut old = Connection::open_in_memory().unwrap();
        migrate_to(&mut old, 0, 7).unwrap();
        let device = DeviceId::from_u128(7);
        let household = RecordKey::new(RecordKind::Household, uuid::Uuid::from_u128(1));
        let member = RecordKey::new(RecordKind::Member, uuid::Uuid::from_u128(2));
        let mut changes = Vec::new();
        let mut state = RecordState::default();
        for (n, (record, field, value)) in [
            (&household, "address", serde_json::json!("12 หมู่ 1")),
            (
                &member,
                "household",
                serde_json::json!(household.id.to_string()),
            ),
            (&member, "first_name", serde_json::json!("สมหญิง")),
        ]
        .into_iter()
        .enumerate()
        {
            let stamp = faenban_core::Stamp::new(
                faenban_core::Hlc {
                    wall_ms: 1_000 + n as u64,
                    counter: 0,
                },
                device,
            );
            let change = faenban_core::replica::set_field(record, None, field, value, stamp);
            if record == &member {
                state.apply(change.clone());
            }
            old.execute(
                "INSERT INTO changes (wall_ms, counter, device, kind, record, field, body) \
                 VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6)",
                params![
                    1_000 + n as i64,
                    device.to_string(),
                    record.kind.as_str(),
                    record.id.to_string(),
                    field,
                    serde_json::to_string(&change).unwrap()
                ],
            )
            .unwrap();
            changes.push(change);
        }
        old.execute(
            "INSERT INTO records (kind, id, state, household, archived, in_conflict) \
             VALUES ('member', ?1, ?2, ?3, 0, 0)",
            params![
                member.id.to_string(),
                serde_json::to_string(&state).unwrap(),
                household.id.to_string()
            ],
        )
        .unwrap();
        // A record naming its household in no form a store files under.
        let stray = RecordKey::new(RecordKind::Visit, uuid::Uuid::from_u128(3));
        old.execute(
            "INSERT INTO records (kind, id, state, household, archived, in_conflict) \
             VALUES ('visit', ?1, ?2, 'not-a-household', 0, 0)",
            params![
                stray.id.to_string(),
                serde_json::to_string(&RecordState::default()).unwrap()
            ],
        )
        .unwrap();
        old.execute(
            "INSERT INTO places (household, village, deprived) VALUES (?1, '40010101', 5)",
            [household.id.to_string()],
        )
        .unwrap();
        old.execute(
            "INSERT INTO report_digests (household, village, digest) VALUES (?1, '40010101', '{}')",
            [household.id.to_string()],
        )
        .unwrap();
        old.execute(
            "INSERT INTO search_terms (term, kind, id) VALUES ('สมหญิง', 'member', ?1)",
            [member.id.to_string()],
        )
        .unwrap();
        // Filed under the household, under no known household, for everyone.
        old.execute_batch(&format!(
            "INSERT INTO feed (change_seq, household, announce) VALUES \
             (1, '{h}', 0), (2, '{h}', 0), (3, '', 0), (3, NULL, 0), (2, '{h}', 1);",
            h = household.id
        ))
        .unwrap();

        migrate(&mut old, 7).unwrap();
        let logged: Vec<(String, String, String, Vec<u8>)> = old
            .prepare(
                "SELECT rn.kind, rn.id, f.name, c.body FROM changes c \
                 JOIN record_numbers rn ON rn.n = c.record \
                 JOIN field_numbers f ON f.n = c.field ORDER BY c.seq",
            )
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(logged.len(), changes.len());
        for ((kind, id, field, body), change) in logged.iter().zip(&changes) {
            assert_eq!(field, change.field.as_str());
            assert_eq!(
                (kind.as_str(), id.as_str()),
                (
                    change.record.kind.as_str(),
                    change.record.id.to_string().as_str()
                )
            );
            let read = faenban_core::codec::decode_change(
                change.stamp,
                change.record.clone(),
                change.field.clone(),
                body,
            )
            .unwrap();
            assert_eq!(&read, change);
        }
        let feed: Vec<(i64, Option<String>, Option<i64>, i64)> = old
            .prepare(
                "SELECT f.change_seq, h.id, f.household, f.announce FROM feed f \
                 LEFT JOIN record_numbers h ON h.n = f.household ORDER BY f.seq",
            )
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let filed_household = feed[0].2;
        let h = Some(household.id.to_string());
        assert_eq!(
            feed,
            vec![
                (1, h.clone(), filed_household, 0),
                (2, h.clone(), filed_household, 0),
                (3, None, Some(0), 0),
                (3, None, None, 0),
                (2, h, filed_household, 1),
            ]
        );
        let term: (String, String) = old
            .query_row(
                "SELECT t.term, rn.id FROM search_terms t JOIN record_numbers rn ON rn.n = t.record",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(term, ("สมหญิง".to_owned(), member.id.to_string()));
        let number = |key: &RecordKey| -> i64 {
            old.query_row(
                "SELECT n FROM record_numbers WHERE kind = ?1 AND id = ?2",
                params![key.kind.as_str(), key.id.to_string()],
                |row| row.get(0),
            )
            .unwrap()
        };
        let (member_n, household_n, stray_n) =
            (number(&member), number(&household), number(&stray));
        let stored: (Vec<u8>, Option<i64>) = old
            .query_row(
                "SELECT state, household FROM records WHERE n = ?1",
                [member_n],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(faenban_core::codec::decode_state(&stored.0).unwrap(), state);
        assert_eq!(stored.1, Some(household_n));
        let stray_household: Option<i64> = old
            .query_row(
                "SELECT household FROM records WHERE n = ?1",
                [stray_n],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(stray_household, None);
        let place: (i64, String, i64) = old
            .query_row(
                "SELECT household, village, deprived FROM places",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(place, (household_n, "40010101".to_owned(), 5));
        let digest: (i64, String, String) = old
            .query_row(
                "SELECT household, village, digest FROM report_digests",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            digest,
            (household_n, "40010101".to_owned(), "{}".to_owned())
        );
        let counted: String = old
            .query_row(
                "SELECT value FROM meta WHERE key = 'record_count'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(counted, "2");
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
