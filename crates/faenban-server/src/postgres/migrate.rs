//! Moving a province: copies a SQLite server's data into an empty
//! PostgreSQL database so that every laptop's login, cursor and outbox stay
//! valid — the same accounts and token hashes, devices and keys, the same
//! server key, the change log and the feed under the same numbers, states,
//! places, report digests and held-back refusals.

use std::collections::HashMap;
use std::path::Path;

use faenban_core::RecordKind;
use rusqlite::OpenFlags;
use uuid::Uuid;

use super::{backend_error, decode_state, province_of, PostgresBackend};
use crate::backend::{BackendError, Result, DATABASE_FILE};

/// How many rows go in one statement.
const ROWS_AT_ONCE: usize = 10_000;

/// What a move copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Accounts.
    pub accounts: u64,
    /// Devices.
    pub devices: u64,
    /// Logged changes.
    pub changes: u64,
    /// Feed entries.
    pub feed: u64,
    /// Records.
    pub records: u64,
}

fn sqlite(error: rusqlite::Error) -> BackendError {
    BackendError::Storage(format!("reading the SQLite server: {error}"))
}

fn uuid_of(text: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|error| BackendError::Storage(format!("{what} {text:?}: {error}")))
}

/// Copies the SQLite server in `data_dir` into the PostgreSQL database at
/// `url`, which must hold no accounts, devices or changes yet. All of it is
/// copied in one transaction: a move that fails leaves the database as it
/// was.
pub fn migrate(data_dir: &Path, url: &str) -> Result<Moved> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Err(BackendError::NotFound {
            kind: "SQLite server database".into(),
            name: path.display().to_string(),
        });
    }
    // Opened once as the server opens it, so that an older file is
    // upgraded and its report digests are current.
    drop(crate::backend::SqliteBackend::open(data_dir)?);
    let from = rusqlite::Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite)?;
    let from = Source(from);
    let backend = PostgresBackend::open(url)?;
    let mut connection = backend.connection()?;
    let empty: bool = connection
        .client()
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM accounts) AND NOT EXISTS (SELECT 1 FROM devices) \
             AND (SELECT last FROM feed_head) = 0 AND NOT EXISTS (SELECT 1 FROM record_numbers)",
            &[],
        )
        .map_err(backend_error)?
        .get(0);
    if !empty {
        return Err(BackendError::Refused {
            code: faenban_core::RefusalCode::BadAccount,
            message:
                "the PostgreSQL database already holds a server's data; move into an empty one"
                    .into(),
        });
    }
    // Every record's home province, from its household's village.
    let homes = from.homes()?;
    let mut provinces: Vec<i16> = homes.by_number.values().copied().collect();
    provinces.extend(homes.places.values().map(|village| province_of(village)));
    provinces.sort_unstable();
    provinces.dedup();
    for province in provinces {
        if province != 0 {
            backend.make_province(&mut connection, province)?;
        }
    }
    let mut moved = Moved::default();
    let mut tx = connection.client().transaction().map_err(backend_error)?;
    let pg = |error: postgres::Error| backend_error(error);
    // The server's key and clock: acknowledgements verify as before, and
    // stamps it gave stay its own.
    let seed = from
        .meta("device_key")?
        .ok_or_else(|| BackendError::Storage("the SQLite server has no key".into()))?;
    let device = from
        .meta("device_id")?
        .ok_or_else(|| BackendError::Storage("the SQLite server has no device id".into()))?;
    let clock = from
        .meta("clock")?
        .unwrap_or_else(|| serde_json::to_string(&faenban_core::Clock::new()).unwrap_or_default());
    tx.execute(
        "UPDATE meta SET value = $1 WHERE key = 'server_key'",
        &[&seed],
    )
    .map_err(pg)?;
    tx.execute("UPDATE meta SET value = $1 WHERE key = 'clock'", &[&clock])
        .map_err(pg)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('server_device', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&device],
    )
    .map_err(pg)?;

    // Accounts and devices, under the same numbers.
    let mut statement = from
        .0
        .prepare("SELECT id, name, role, areas, dimension, token_hash, created_ms, revoked_ms FROM accounts ORDER BY id")
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let id: i64 = row.get(0).map_err(sqlite)?;
        let name: String = row.get(1).map_err(sqlite)?;
        let role: String = row.get(2).map_err(sqlite)?;
        let areas: String = row.get(3).map_err(sqlite)?;
        let dimension: Option<String> = row.get(4).map_err(sqlite)?;
        let token_hash: Vec<u8> = row.get(5).map_err(sqlite)?;
        let created: i64 = row.get(6).map_err(sqlite)?;
        let revoked: Option<i64> = row.get(7).map_err(sqlite)?;
        tx.execute(
            "INSERT INTO accounts (id, name, role, areas, dimension, token_hash, created_ms, revoked_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&id, &name, &role, &areas, &dimension, &token_hash, &created, &revoked],
        )
        .map_err(pg)?;
        moved.accounts += 1;
    }
    drop(rows);
    drop(statement);
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('accounts', 'id'), COALESCE((SELECT MAX(id) FROM accounts), 0) + 1, false)",
    )
    .map_err(pg)?;
    let mut statement = from
        .0
        .prepare("SELECT device, account, name, first_seen_ms, public_key FROM devices")
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let device = uuid_of(&row.get::<_, String>(0).map_err(sqlite)?, "device")?;
        let account: i64 = row.get(1).map_err(sqlite)?;
        let name: String = row.get(2).map_err(sqlite)?;
        let first_seen: i64 = row.get(3).map_err(sqlite)?;
        let key: Option<Vec<u8>> = row.get(4).map_err(sqlite)?;
        tx.execute(
            "INSERT INTO devices (device, account, name, first_seen_ms, public_key) VALUES ($1, $2, $3, $4, $5)",
            &[&device, &account, &name, &first_seen, &key],
        )
        .map_err(pg)?;
        moved.devices += 1;
    }
    drop(rows);
    drop(statement);

    // What the server holds of each outbox, and what it held back.
    let mut statement = from
        .0
        .prepare("SELECT device, first_sequence, last_sequence, stamps FROM arrivals")
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let device = uuid_of(&row.get::<_, String>(0).map_err(sqlite)?, "device")?;
        let first: i64 = row.get(1).map_err(sqlite)?;
        let last: i64 = row.get(2).map_err(sqlite)?;
        let stamps: Vec<u8> = row.get(3).map_err(sqlite)?;
        tx.execute(
            "INSERT INTO arrivals (device, first_sequence, last_sequence, stamps) VALUES ($1, $2, $3, $4)",
            &[&device, &first, &last, &stamps],
        )
        .map_err(pg)?;
    }
    drop(rows);
    drop(statement);
    let mut statement = from
        .0
        .prepare("SELECT device, sequence, code, message, refused_ms FROM refusals")
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let device = uuid_of(&row.get::<_, String>(0).map_err(sqlite)?, "device")?;
        let sequence: i64 = row.get(1).map_err(sqlite)?;
        let code: String = row.get(2).map_err(sqlite)?;
        let message: String = row.get(3).map_err(sqlite)?;
        let refused: i64 = row.get(4).map_err(sqlite)?;
        tx.execute(
            "INSERT INTO refusals (device, sequence, code, message, refused_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&device, &sequence, &code, &message, &refused],
        )
        .map_err(pg)?;
    }
    drop(rows);
    drop(statement);

    // Field and record numbers, under the same numbers.
    let mut statement = from
        .0
        .prepare("SELECT n, name FROM field_numbers")
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let n: i64 = row.get(0).map_err(sqlite)?;
        let name: String = row.get(1).map_err(sqlite)?;
        tx.execute(
            "INSERT INTO field_numbers (n, name) VALUES ($1, $2)",
            &[&(n as i32), &name],
        )
        .map_err(pg)?;
    }
    drop(rows);
    drop(statement);
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('field_numbers', 'n'), COALESCE((SELECT MAX(n) FROM field_numbers), 0) + 1, false)",
    )
    .map_err(pg)?;
    {
        let (mut numbers, mut kinds, mut ids, mut homes_of) = (vec![], vec![], vec![], vec![]);
        for (n, (kind, id)) in &homes.keys {
            numbers.push(*n);
            kinds.push(kind.as_str().to_owned());
            ids.push(*id);
            homes_of.push(homes.by_number.get(n).copied().unwrap_or(0));
            if numbers.len() == ROWS_AT_ONCE {
                insert_record_numbers(&mut tx, &numbers, &kinds, &ids, &homes_of)?;
                (numbers, kinds, ids, homes_of) = (vec![], vec![], vec![], vec![]);
            }
        }
        insert_record_numbers(&mut tx, &numbers, &kinds, &ids, &homes_of)?;
    }
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('record_numbers', 'n'), COALESCE((SELECT MAX(n) FROM record_numbers), 0) + 1, false)",
    )
    .map_err(pg)?;

    // States.
    let number_of: HashMap<(RecordKind, Uuid), i64> = homes
        .keys
        .iter()
        .map(|(n, key)| (key.clone(), *n))
        .collect();
    let mut statement = from
        .0
        .prepare(
            "SELECT rn.kind, rn.id, r.state, h.id FROM records r \
             JOIN record_numbers rn ON rn.n = r.n LEFT JOIN record_numbers h ON h.n = r.household",
        )
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    let mut batch = RecordRows::default();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let kind = RecordKind::from_name(&row.get::<_, String>(0).map_err(sqlite)?);
        let id = uuid_of(&row.get::<_, String>(1).map_err(sqlite)?, "record")?;
        let state: Vec<u8> = row.get(2).map_err(sqlite)?;
        let household: Option<String> = row.get(3).map_err(sqlite)?;
        let Some(n) = number_of.get(&(kind, id)).copied() else {
            return Err(BackendError::Storage(format!(
                "record {id} has no record number"
            )));
        };
        batch
            .provinces
            .push(homes.by_number.get(&n).copied().unwrap_or(0));
        batch.numbers.push(n);
        batch.states.push(state);
        batch
            .households
            .push(household.and_then(|text| Uuid::parse_str(&text).ok()));
        moved.records += 1;
        if batch.numbers.len() == ROWS_AT_ONCE {
            std::mem::take(&mut batch).insert(&mut tx)?;
        }
    }
    batch.insert(&mut tx)?;
    drop(rows);
    drop(statement);

    // The change log, under the same numbers.
    let mut statement = from
        .0
        .prepare(
            "SELECT c.seq, d.device, c.wall_ms, c.counter, c.record, c.field, c.body FROM changes c \
             JOIN device_numbers d ON d.n = c.device ORDER BY c.seq",
        )
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    let mut batch = ChangeRows::default();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let record: i64 = row.get(4).map_err(sqlite)?;
        batch
            .provinces
            .push(homes.by_number.get(&record).copied().unwrap_or(0));
        batch.seqs.push(row.get(0).map_err(sqlite)?);
        batch.devices.push(uuid_of(
            &row.get::<_, String>(1).map_err(sqlite)?,
            "device",
        )?);
        batch.walls.push(row.get(2).map_err(sqlite)?);
        batch.counters.push(row.get(3).map_err(sqlite)?);
        batch.records.push(record);
        batch
            .fields
            .push(row.get::<_, i64>(5).map_err(sqlite)? as i32);
        batch.bodies.push(row.get(6).map_err(sqlite)?);
        moved.changes += 1;
        if batch.seqs.len() == ROWS_AT_ONCE {
            std::mem::take(&mut batch).insert(&mut tx)?;
        }
    }
    batch.insert(&mut tx)?;
    drop(rows);
    drop(statement);
    tx.batch_execute(
        "SELECT setval('change_numbers', COALESCE((SELECT MAX(seq) FROM changes), 0) + 1, false)",
    )
    .map_err(pg)?;

    // Places and digests, in their household's home province.
    for (household, village) in &homes.places {
        let home = homes.household_home(*household);
        let deprived = homes.deprived.get(household).copied().unwrap_or(0);
        tx.execute(
            "INSERT INTO places (province, household, village, deprived) VALUES ($1, $2, $3, $4)",
            &[&home, household, village, &deprived],
        )
        .map_err(pg)?;
    }
    let mut statement = from
        .0
        .prepare(
            "SELECT h.id, d.village, d.digest FROM report_digests d \
                  JOIN record_numbers h ON h.n = d.household",
        )
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let household = uuid_of(&row.get::<_, String>(0).map_err(sqlite)?, "household")?;
        let village: String = row.get(1).map_err(sqlite)?;
        let digest: String = row.get(2).map_err(sqlite)?;
        tx.execute(
            "INSERT INTO report_digests (province, household, village, digest) VALUES ($1, $2, $3, $4)",
            &[&homes.household_home(household), &household, &village, &digest],
        )
        .map_err(pg)?;
    }
    drop(rows);
    drop(statement);

    // The feed, under the same numbers: a laptop's cursor and the check
    // it sends with it (the stamp of the entry's change) hold as before.
    let mut statement = from
        .0
        .prepare(
            "SELECT f.seq, f.change_seq, f.household, f.announce, c.record FROM feed f \
             JOIN changes c ON c.seq = f.change_seq ORDER BY f.seq",
        )
        .map_err(sqlite)?;
    let mut rows = statement.query([]).map_err(sqlite)?;
    let mut batch = FeedRows::default();
    let mut last = 0i64;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let seq: i64 = row.get(0).map_err(sqlite)?;
        let household: Option<i64> = row.get(2).map_err(sqlite)?;
        let record: i64 = row.get(4).map_err(sqlite)?;
        let province = match household {
            None | Some(0) => 0,
            Some(n) => homes
                .keys
                .get(&n)
                .and_then(|(_, id)| homes.places.get(id))
                .map_or(0, |village| province_of(village)),
        };
        batch.provinces.push(province);
        batch.seqs.push(seq);
        batch
            .change_provinces
            .push(homes.by_number.get(&record).copied().unwrap_or(0));
        batch.change_seqs.push(row.get(1).map_err(sqlite)?);
        batch.households.push(household);
        batch
            .announces
            .push(row.get::<_, i64>(3).map_err(sqlite)? as i16);
        last = last.max(seq);
        moved.feed += 1;
        if batch.seqs.len() == ROWS_AT_ONCE {
            std::mem::take(&mut batch).insert(&mut tx)?;
        }
    }
    batch.insert(&mut tx)?;
    drop(rows);
    drop(statement);
    tx.execute("UPDATE feed_head SET last = $1", &[&last])
        .map_err(pg)?;
    tx.commit().map_err(pg)?;
    Ok(moved)
}

fn insert_record_numbers(
    tx: &mut postgres::Transaction<'_>,
    numbers: &[i64],
    kinds: &[String],
    ids: &[Uuid],
    provinces: &[i16],
) -> Result<()> {
    if numbers.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO record_numbers (n, kind, id, province) \
         SELECT * FROM unnest($1::int8[], $2::text[], $3::uuid[], $4::int2[])",
        &[&numbers, &kinds, &ids, &provinces],
    )
    .map_err(backend_error)?;
    Ok(())
}

#[derive(Default)]
struct RecordRows {
    provinces: Vec<i16>,
    numbers: Vec<i64>,
    states: Vec<Vec<u8>>,
    households: Vec<Option<Uuid>>,
}

impl RecordRows {
    fn insert(self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
        if self.numbers.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO records (province, n, state, household) \
             SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[], $4::uuid[])",
            &[
                &self.provinces,
                &self.numbers,
                &self.states,
                &self.households,
            ],
        )
        .map_err(backend_error)?;
        Ok(())
    }
}

#[derive(Default)]
struct ChangeRows {
    provinces: Vec<i16>,
    seqs: Vec<i64>,
    devices: Vec<Uuid>,
    walls: Vec<i64>,
    counters: Vec<i64>,
    records: Vec<i64>,
    fields: Vec<i32>,
    bodies: Vec<Vec<u8>>,
}

impl ChangeRows {
    fn insert(self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO changes (province, seq, device, wall_ms, counter, record, field, body) \
             SELECT * FROM unnest($1::int2[], $2::int8[], $3::uuid[], $4::int8[], $5::int8[], $6::int8[], $7::int4[], $8::bytea[])",
            &[
                &self.provinces,
                &self.seqs,
                &self.devices,
                &self.walls,
                &self.counters,
                &self.records,
                &self.fields,
                &self.bodies,
            ],
        )
        .map_err(backend_error)?;
        Ok(())
    }
}

#[derive(Default)]
struct FeedRows {
    provinces: Vec<i16>,
    seqs: Vec<i64>,
    change_provinces: Vec<i16>,
    change_seqs: Vec<i64>,
    households: Vec<Option<i64>>,
    announces: Vec<i16>,
}

impl FeedRows {
    fn insert(self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO feed (province, seq, change_province, change_seq, household, announce) \
             SELECT * FROM unnest($1::int2[], $2::int8[], $3::int2[], $4::int8[], $5::int8[], $6::int2[])",
            &[
                &self.provinces,
                &self.seqs,
                &self.change_provinces,
                &self.change_seqs,
                &self.households,
                &self.announces,
            ],
        )
        .map_err(backend_error)?;
        Ok(())
    }
}

/// The SQLite server, read.
struct Source(rusqlite::Connection);

/// Where every record lives: its number and key, its home province, and
/// each household's place.
#[derive(Default)]
struct Homes {
    keys: HashMap<i64, (RecordKind, Uuid)>,
    by_number: HashMap<i64, i16>,
    households: HashMap<Uuid, i64>,
    places: HashMap<Uuid, String>,
    deprived: HashMap<Uuid, i16>,
}

impl Homes {
    fn household_home(&self, household: Uuid) -> i16 {
        self.households
            .get(&household)
            .and_then(|n| self.by_number.get(n))
            .copied()
            .unwrap_or(0)
    }
}

impl Source {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension as _;
        self.0
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sqlite)
    }

    /// Every record's home province: a household's from its village as
    /// merged (else its place), another record's from its household's.
    fn homes(&self) -> Result<Homes> {
        let mut homes = Homes::default();
        let mut statement = self
            .0
            .prepare("SELECT n, kind, id FROM record_numbers")
            .map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let n: i64 = row.get(0).map_err(sqlite)?;
            let kind = RecordKind::from_name(&row.get::<_, String>(1).map_err(sqlite)?);
            let id = uuid_of(&row.get::<_, String>(2).map_err(sqlite)?, "record")?;
            if kind == RecordKind::Household {
                homes.households.insert(id, n);
            }
            homes.keys.insert(n, (kind, id));
        }
        drop(rows);
        drop(statement);
        let mut statement = self
            .0
            .prepare(
                "SELECT h.id, p.village, p.deprived FROM places p \
                 JOIN record_numbers h ON h.n = p.household",
            )
            .map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let household = uuid_of(&row.get::<_, String>(0).map_err(sqlite)?, "household")?;
            homes.places.insert(household, row.get(1).map_err(sqlite)?);
            homes
                .deprived
                .insert(household, row.get::<_, i64>(2).map_err(sqlite)? as i16);
        }
        drop(rows);
        drop(statement);
        // Households first: the others take their household's.
        let mut statement = self
            .0
            .prepare(
                "SELECT rn.id, r.state FROM records r JOIN record_numbers rn ON rn.n = r.n \
                 WHERE rn.kind = 'household'",
            )
            .map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let id = uuid_of(&row.get::<_, String>(0).map_err(sqlite)?, "household")?;
            let state = decode_state(&row.get::<_, Vec<u8>>(1).map_err(sqlite)?)?;
            let village = state
                .shown("village")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .or_else(|| homes.places.get(&id).cloned());
            if let Some(n) = homes.households.get(&id) {
                homes
                    .by_number
                    .insert(*n, village.as_deref().map_or(0, province_of));
            }
        }
        drop(rows);
        drop(statement);
        let mut statement = self
            .0
            .prepare(
                "SELECT rn.kind, rn.id, h.id FROM records r JOIN record_numbers rn ON rn.n = r.n \
                 LEFT JOIN record_numbers h ON h.n = r.household WHERE rn.kind <> 'household'",
            )
            .map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        let number_of: HashMap<(RecordKind, Uuid), i64> = homes
            .keys
            .iter()
            .map(|(n, key)| (key.clone(), *n))
            .collect();
        while let Some(row) = rows.next().map_err(sqlite)? {
            let kind = RecordKind::from_name(&row.get::<_, String>(0).map_err(sqlite)?);
            let id = uuid_of(&row.get::<_, String>(1).map_err(sqlite)?, "record")?;
            let household: Option<String> = row.get(2).map_err(sqlite)?;
            let home = household
                .and_then(|text| Uuid::parse_str(&text).ok())
                .map_or(0, |household| homes.household_home(household));
            if let Some(n) = number_of.get(&(kind, id)) {
                homes.by_number.insert(*n, home);
            }
        }
        Ok(homes)
    }
}
