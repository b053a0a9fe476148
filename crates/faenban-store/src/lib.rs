//! faenban-store: the laptop's (and later the server's) SQLite file: schema
//! migrations, device identity and clock, the change log, the outbox, and
//! the merged state of every record.
//!
//! Every command's writes happen in one transaction ([`Store::write`]): a
//! killed process or a full disk leaves the file as it was before the
//! command. The merge itself is the core's; this crate only loads a record's
//! state, hands the change to `faenban_core`, and saves the result.

/// The columns [`change_from_row`] reads, over `changes c` with
/// [`change_joins!`]: the log names devices, records and fields by number.
macro_rules! change_columns {
    () => {
        "c.wall_ms, c.counter, (SELECT device FROM device_numbers WHERE n = c.device), \
         rn.kind, rn.id, (SELECT name FROM field_numbers WHERE n = c.field), c.body"
    };
}

/// The join [`change_columns!`] reads the record's kind and id through.
macro_rules! change_joins {
    () => {
        "JOIN record_numbers rn ON rn.n = c.record"
    };
}

pub mod bundle;
mod error;
mod report;
mod schema;
pub mod server;
pub mod sync;

use std::collections::HashMap;
use std::path::Path;

use faenban_core::merge::Conflict;
use faenban_core::model::{fields_of, RecordType};
use faenban_core::replica::{archive, restore, set_field};
use faenban_core::{
    Change, Clock, DeviceId, Outcome, RecordId, RecordKey, RecordKind, RecordState, Stamp,
};
use faenban_keys::DeviceKey;
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use serde_json::Value;
use uuid::Uuid;

pub use error::{Error, RecordRefusal, Result};
pub use schema::SCHEMA_VERSION;

/// Where the device's signing key is kept in `meta`.
const DEVICE_KEY: &str = "device_key";

/// How many pages the write-ahead log grows to before a commit copies it
/// into the file: 8,192 pages of 4 KiB, 32 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 8_192;

/// How long a command waits for another faenban process before giving up.
const BUSY_TIMEOUT_MS: u64 = 2_000;

/// How many prepared statements a connection keeps for reuse.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// Who this database belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id, made once at `init`.
    pub id: DeviceId,
    /// The name the volunteer gave the device.
    pub name: String,
}

/// What `status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The device, if initialized.
    pub device: Option<DeviceInfo>,
    /// Changes made here and not yet acknowledged by the server.
    pub unpushed: u64,
    /// Changes the server refused, set aside here until a person sends
    /// them again (`faenban outbox`).
    pub held_back: u64,
    /// When the last sync finished (ms since the epoch), if ever.
    pub last_sync_ms: Option<u64>,
    /// Records known, all kinds.
    pub records: u64,
    /// Records with an open conflict.
    pub conflicts: u64,
}

/// An open faenban database.
#[derive(Debug)]
pub struct Store {
    connection: Connection,
    /// Whether records get search terms (a laptop searches; the server does not).
    search_index: bool,
    /// Keep the report's household digests current with every write.
    report_digests: bool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date. A file from a newer faenban is refused untouched.
    ///
    /// A file marked read-only is opened for reading only, even by an
    /// administrator whom the operating system would let write: reads work
    /// and every write fails with [`Error::ReadOnly`], leaving it as it was.
    pub fn open(path: &Path) -> Result<Store> {
        let read_only = std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly());
        let access = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        let connection =
            Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        if read_only {
            // An older file needs its migrations written before it can be read.
            let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if (1..SCHEMA_VERSION).contains(&version) {
                return Err(Error::OlderReadOnly);
            }
        }
        Store::prepare(connection, true)
    }

    /// A database in memory, for tests and simulations.
    pub fn open_in_memory() -> Result<Store> {
        Store::prepare(Connection::open_in_memory()?, false)
    }

    fn prepare(connection: Connection, on_disk: bool) -> Result<Store> {
        connection.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
        // Reading the version first both checks that this is a database at
        // all and refuses a newer one before anything is written.
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if on_disk {
            let mode: String =
                connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::ReadOnly);
            }
            // In WAL mode NORMAL keeps the database consistent through a
            // crash; a power cut may lose the last commit, never corrupt.
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            // SQLite copies the log into the file every 1,000 pages by
            // default, in the committing command; one pulled page of
            // changes writes thousands, most of them the same hot index
            // pages again, so copying less often copies each fewer times.
            connection.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        }
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Without the planner's stability guarantee SQLite re-parses a
        // cached statement each time a parameter is bound to a new value
        // whenever that parameter might decide whether a partial index
        // (such as `records_by_household … WHERE household IS NOT NULL`)
        // applies: every record read by kind and id did, once per call.
        // The plans do not depend on the values bound here.
        connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        // A push alone uses more distinct statements than rusqlite's default
        // cache of 16 holds; an evicted one is parsed again at its next use.
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        // SQLite's default page cache is 2 MiB; with 100,000 households the
        // indexes alone are larger, and every miss is a read from the file.
        connection.pragma_update(None, "cache_size", -32_768)?;
        let mut store = Store {
            connection,
            search_index: true,
            report_digests: true,
        };
        schema::migrate(&mut store.connection, version)?;
        if !store.connection.is_readonly(rusqlite::MAIN_DB)? {
            store.ensure_device_key()?;
            // A file whose digests cannot be made now (a damaged record,
            // a full disk) still opens: its reports are then computed from
            // the records, and the next open tries again.
            let _ = report::make_if_stale(&mut store.connection);
        }
        Ok(store)
    }

    /// Stops keeping search terms for records changed from now on. The
    /// server never searches, and keeping them is a tenth of its merge time.
    pub fn without_search_index(mut self) -> Store {
        self.search_index = false;
        self
    }

    /// Whether writes keep the report's household digests current (the
    /// default). Without, a write that touches a household marks them all
    /// to be made again at the next open: for measuring what keeping them
    /// costs, never a report that is wrong.
    pub fn keep_report_digests(&mut self, keep: bool) {
        self.report_digests = keep;
    }

    /// Sets a connection pragma (the server tunes its cache and checkpoints).
    pub fn pragma(&self, name: &str, value: i64) -> Result<()> {
        self.connection.pragma_update(None, name, value)?;
        Ok(())
    }

    /// Gives back the memory this connection's page cache holds (SQLite's
    /// `shrink_memory`); the cache fills again as it is used.
    pub fn release_memory(&self) -> Result<()> {
        self.connection.execute_batch("PRAGMA shrink_memory")?;
        Ok(())
    }

    /// The bytes each table and index of the file takes, largest first:
    /// what a size figure is made of.
    pub fn space_by_table(&self) -> Result<Vec<(String, u64)>> {
        let mut statement = self
            .connection
            .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC, 1")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Copies the write-ahead log into the database file as far as readers
    /// allow, without waiting for them (a server runs this in the
    /// background instead of at the end of some unlucky push). When the log
    /// has grown past `max_log_pages` under a steady stream of writes, it
    /// waits for a gap between them to copy everything and truncate the log.
    pub fn checkpoint(&self, max_log_pages: i64) -> Result<()> {
        let log_pages: i64 =
            self.connection
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
        if log_pages > max_log_pages {
            self.connection
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Makes this database a device, once: its id is the one `key` makes,
    /// and the key signs everything it sends.
    pub fn init(&mut self, name: &str, key: &DeviceKey) -> Result<DeviceInfo> {
        let device = key.device_id();
        let tx = self.connection.transaction()?;
        if let Some(existing) = read_meta(&tx, "device_name")? {
            return Err(Error::AlreadyInitialized(existing));
        }
        write_meta(&tx, "device_id", &device.to_string())?;
        write_meta(&tx, "device_name", name)?;
        write_meta(&tx, DEVICE_KEY, &key.seed_hex())?;
        write_meta(&tx, "clock", &serde_json::to_string(&Clock::new())?)?;
        tx.commit()?;
        Ok(DeviceInfo {
            id: device,
            name: name.to_owned(),
        })
    }

    /// The key this device signs with, if initialized.
    pub fn device_key(&self) -> Result<Option<DeviceKey>> {
        read_meta(&self.connection, DEVICE_KEY)?
            .map(|hex| {
                DeviceKey::from_seed_hex(&hex)
                    .ok_or_else(|| Error::Corrupt("the device key is not 64 hex digits".into()))
            })
            .transpose()
    }

    /// Gives a device made before keys existed its key (its id stays as it
    /// was; the key is bound to it at its next hello).
    fn ensure_device_key(&mut self) -> Result<()> {
        if self.device()?.is_none() || read_meta(&self.connection, DEVICE_KEY)?.is_some() {
            return Ok(());
        }
        let key = DeviceKey::generate()
            .map_err(|error| Error::Internal(format!("making the device key: {error}")))?;
        write_meta(&self.connection, DEVICE_KEY, &key.seed_hex())
    }

    /// The device this database belongs to, if initialized.
    pub fn device(&self) -> Result<Option<DeviceInfo>> {
        device_of(&self.connection)
    }

    /// Runs one command's writes in one transaction. If `work` fails, nothing
    /// it did is kept. `local_wall_ms` is the laptop's clock now.
    pub fn write<T>(
        &mut self,
        local_wall_ms: u64,
        work: impl FnOnce(&mut Session<'_>) -> Result<T>,
    ) -> Result<T> {
        let scope = self.account_scope()?;
        let mut session = self.begin(local_wall_ms)?;
        let result = work(&mut session)?;
        if let Some(scope) = scope {
            session.check_recorded_here(&scope)?;
        }
        session.commit()?;
        Ok(result)
    }

    /// The scope of the account this laptop syncs with, as the server gave
    /// it at the last hello; `None` before the first login.
    pub fn account_scope(&self) -> Result<Option<faenban_core::sync::Scope>> {
        match read_meta(&self.connection, ACCOUNT_SCOPE)? {
            Some(json) => Ok(serde_json::from_str(&json).ok()),
            None => Ok(None),
        }
    }

    /// Keeps the account's scope from a hello (`None`: logged in to no server).
    pub fn set_account_scope(&mut self, scope: Option<&faenban_core::sync::Scope>) -> Result<()> {
        match scope {
            Some(scope) => write_meta(
                &self.connection,
                ACCOUNT_SCOPE,
                &serde_json::to_string(scope)?,
            ),
            None => {
                self.connection
                    .execute("DELETE FROM meta WHERE key = ?1", [ACCOUNT_SCOPE])?;
                Ok(())
            }
        }
    }

    /// Runs `work` once per item, all in one transaction committed once;
    /// each item's writes are all or nothing on their own (a savepoint
    /// each). An item whose work fails leaves nothing behind and the others
    /// go on; its error is in its place among the results. Fails as a whole
    /// only if the transaction itself cannot begin or commit. (For the
    /// server's pushes: an item must not make changes of its own device.)
    pub fn write_group<I, T>(
        &mut self,
        local_wall_ms: u64,
        items: Vec<I>,
        mut work: impl FnMut(&mut Session<'_>, I) -> Result<T>,
    ) -> Result<Vec<Result<T>>> {
        let mut session = self.begin(local_wall_ms)?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let item_clock = session.clock;
            session.tx.execute_batch("SAVEPOINT item")?;
            // A panic in one item (a bug) fails that item alone.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                work(&mut session, item).and_then(|value| {
                    session.flush()?;
                    Ok(value)
                })
            }))
            .unwrap_or_else(|_| Err(Error::Internal("the server failed on this batch".into())));
            match result {
                Ok(value) => {
                    session.tx.execute_batch("RELEASE item")?;
                    results.push(Ok(value));
                }
                Err(error) => {
                    // Nothing of this item stays: not its rows, not the
                    // states it had in memory, not its clock readings.
                    session.forget_since(item_clock);
                    session.tx.execute_batch("ROLLBACK TO item; RELEASE item")?;
                    results.push(Err(error));
                }
            }
        }
        session.commit()?;
        Ok(results)
    }

    /// Opens the one transaction of a write, with the clock as stored.
    fn begin(&mut self, local_wall_ms: u64) -> Result<Session<'_>> {
        let device = self.device()?.ok_or(Error::NotInitialized)?.id;
        // The store's `&mut self` makes this the connection's only
        // transaction; opened on a shared borrow so that the session can
        // hold statements of the same connection beside it.
        let connection = &self.connection;
        let tx = Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)?;
        let clock: Clock = match read_meta(&tx, "clock")? {
            Some(json) => serde_json::from_str(&json)?,
            None => Clock::new(),
        };
        Ok(Session {
            tx,
            statements: Statements {
                connection,
                held: Vec::new(),
            },
            device,
            clock,
            clock_before: clock,
            local_wall_ms,
            touched: HashMap::new(),
            device_numbers: HashMap::new(),
            record_numbers: HashMap::new(),
            field_numbers: HashMap::new(),
            next_outbox: None,
            search_index: self.search_index,
            refuse_reused_stamps: false,
            recorded_here: Vec::new(),
            digests_due: report::DigestsDue::default(),
            report_digests: self.report_digests,
        })
    }

    /// One record's merged state.
    pub fn record(&self, key: &RecordKey) -> Result<Option<RecordState>> {
        load_state(&self.connection, key)
    }

    /// Every record of a kind, archived ones included, in id order.
    pub fn records(&self, kind: &RecordKind) -> Result<Vec<(RecordKey, RecordState)>> {
        let mut records = Vec::new();
        self.for_each_record_of::<Error>(kind, |key, state| {
            records.push((key, state));
            Ok(())
        })?;
        Ok(records)
    }

    /// Every record of every kind, in (kind, id) order: what an export holds.
    pub fn all_records(&self) -> Result<Vec<(RecordKey, RecordState)>> {
        self.query_records(
            "SELECT rn.kind, rn.id, r.state FROM record_numbers rn JOIN records r ON r.n = rn.n \
             ORDER BY rn.kind, rn.id",
            [],
        )
    }

    /// Calls `visit` with every record, in (kind, id) order, one at a time:
    /// an export of a province need not hold every record in memory.
    pub fn for_each_record<E: From<Error>>(
        &self,
        visit: impl FnMut(RecordKey, RecordState) -> Result<(), E>,
    ) -> Result<(), E> {
        self.visit_records(
            "SELECT rn.kind, rn.id, r.state FROM record_numbers rn \
             JOIN records r ON r.n = rn.n ORDER BY rn.kind, rn.id",
            [],
            visit,
        )
    }

    /// Calls `visit` with every record of a kind, archived ones included,
    /// in id order, one at a time ([`Store::records`] without holding
    /// them all).
    pub fn for_each_record_of<E: From<Error>>(
        &self,
        kind: &RecordKind,
        visit: impl FnMut(RecordKey, RecordState) -> Result<(), E>,
    ) -> Result<(), E> {
        self.visit_records(
            "SELECT rn.kind, rn.id, r.state FROM record_numbers rn JOIN records r ON r.n = rn.n \
             WHERE rn.kind = ?1 ORDER BY rn.id",
            params![kind.as_str()],
            visit,
        )
    }

    fn visit_records<E: From<Error>>(
        &self,
        sql: &str,
        parameters: impl rusqlite::Params,
        mut visit: impl FnMut(RecordKey, RecordState) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut statement = self.connection.prepare_cached(sql).map_err(Error::from)?;
        let mut rows = statement.query(parameters).map_err(Error::from)?;
        while let Some(row) = rows.next().map_err(Error::from)? {
            let kind: String = row.get(0).map_err(Error::from)?;
            let id: String = row.get(1).map_err(Error::from)?;
            let key = record_key(RecordKind::from_name(&kind), &id)?;
            let state = state_from_blob(row.get_ref(2).map_err(Error::from)?)?;
            visit(key, state)?;
        }
        Ok(())
    }

    /// The households whose village code starts with `area` (a province,
    /// district, subdistrict or village code), found through their search
    /// terms rather than by reading every household.
    pub fn households_in_area(&self, area: &str) -> Result<Vec<(RecordKey, RecordState)>> {
        self.query_records(
            // CROSS JOIN keeps the terms as the outer loop: without
            // statistics SQLite would rather scan every household.
            "SELECT rn.kind, rn.id, r.state FROM search_terms t \
             CROSS JOIN record_numbers rn ON rn.n = t.record \
             CROSS JOIN records r ON r.n = rn.n \
             WHERE rn.kind = 'household' AND t.term >= ?1 AND t.term < ?1 || x'f48fbfbf' \
             AND length(t.term) = 8 ORDER BY rn.id",
            params![area],
        )
    }

    /// The records of a kind that belong to a household.
    pub fn records_of_household(
        &self,
        kind: &RecordKind,
        household: RecordId,
    ) -> Result<Vec<(RecordKey, RecordState)>> {
        self.query_records(
            "SELECT rn.kind, rn.id, r.state FROM records r JOIN record_numbers rn ON rn.n = r.n \
             WHERE r.household = \
             (SELECT n FROM record_numbers WHERE kind = 'household' AND id = ?1) \
             AND rn.kind = ?2 ORDER BY rn.id",
            params![household.to_string(), kind.as_str()],
        )
    }

    /// Runs a query returning (kind, id, state) rows.
    fn query_records(
        &self,
        sql: &str,
        parameters: impl rusqlite::Params,
    ) -> Result<Vec<(RecordKey, RecordState)>> {
        query_records_on(&self.connection, sql, parameters)
    }

    /// Records found by a word: a house code, village code, national ID, or
    /// a name (or its beginning). Returns keys, households first.
    pub fn search(&self, text: &str) -> Result<Vec<RecordKey>> {
        let term = normalize_term(text);
        if term.is_empty() {
            return Ok(Vec::new());
        }
        let mut statement = self.connection.prepare_cached(
            "SELECT DISTINCT rn.kind, rn.id FROM search_terms t \
             JOIN record_numbers rn ON rn.n = t.record \
             WHERE t.term >= ?1 AND t.term < ?1 || x'f48fbfbf' \
             ORDER BY rn.kind = 'household' DESC, rn.kind, rn.id LIMIT 500",
        )?;
        let rows = statement.query_map([term], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (kind, id) = row?;
            record_key(RecordKind::from_name(&kind), &id)
        })
        .collect()
    }

    /// Records of a kind whose id ends with `suffix` (what people type when
    /// a full id is too long), at most 10.
    pub fn find_by_id_suffix(&self, kind: &RecordKind, suffix: &str) -> Result<Vec<RecordKey>> {
        let suffix = suffix.trim().to_lowercase();
        if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Ok(Vec::new());
        }
        let mut statement = self.connection.prepare_cached(
            "SELECT rn.id FROM record_numbers rn JOIN records r ON r.n = rn.n \
             WHERE rn.kind = ?1 AND rn.id LIKE '%' || ?2 ORDER BY rn.id LIMIT 10",
        )?;
        let rows = statement.query_map(params![kind.as_str(), suffix], |row| {
            row.get::<_, String>(0)
        })?;
        rows.map(|row| record_key(kind.clone(), &row?)).collect()
    }

    /// Every change known for a record, oldest first as they arrived here.
    pub fn history(&self, key: &RecordKey) -> Result<Vec<Change>> {
        let mut statement = self.connection.prepare_cached(concat!(
            "SELECT ",
            change_columns!(),
            " FROM changes c JOIN record_numbers rn ON rn.n = c.record \
             WHERE rn.kind = ?1 AND rn.id = ?2 ORDER BY c.seq"
        ))?;
        let mut rows = statement.query(params![key.kind.as_str(), key.id.to_string()])?;
        let mut changes = Vec::new();
        while let Some(row) = rows.next()? {
            changes.push(change_from_row(row, 0)?);
        }
        Ok(changes)
    }

    /// Every open conflict, in record order.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT rn.kind, rn.id, r.state FROM records r JOIN record_numbers rn ON rn.n = r.n \
             WHERE r.in_conflict = 1 ORDER BY rn.kind, rn.id",
        )?;
        let mut rows = statement.query([])?;
        let mut conflicts = Vec::new();
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let id: String = row.get(1)?;
            let key = record_key(RecordKind::from_name(&kind), &id)?;
            let state = state_from_blob(row.get_ref(2)?)?;
            conflicts.extend(state.conflicts(&key));
        }
        Ok(conflicts)
    }

    /// The changes made here that the server has not acknowledged, oldest
    /// first, with their device sequence numbers.
    pub fn outbox(&self) -> Result<Vec<(u64, Change)>> {
        let mut statement = self.connection.prepare_cached(concat!(
            "SELECT outbox.sequence, ",
            change_columns!(),
            " FROM outbox JOIN changes c ON c.seq = outbox.change_seq ",
            change_joins!(),
            " ORDER BY outbox.sequence"
        ))?;
        let mut rows = statement.query([])?;
        let mut outbox = Vec::new();
        while let Some(row) = rows.next()? {
            outbox.push((row.get::<_, i64>(0)? as u64, change_from_row(row, 1)?));
        }
        Ok(outbox)
    }

    /// What `status` shows.
    pub fn status(&self) -> Result<Status> {
        let count = |sql: &str| -> Result<u64> {
            Ok(self
                .connection
                .query_row(sql, [], |row| row.get::<_, i64>(0))? as u64)
        };
        Ok(Status {
            device: self.device()?,
            // Counting rows would read every page of a large outbox; these
            // read two index leaves, so `status` answers at once at any size.
            // The outbox is one unbroken run of sequences (acknowledgements
            // remove a prefix), so its ends give its count; records are
            // counted as they are first written.
            unpushed: count(
                "SELECT COALESCE((SELECT MAX(sequence) FROM outbox) \
                 - (SELECT MIN(sequence) FROM outbox) + 1, 0)",
            )?,
            held_back: count("SELECT COUNT(*) FROM held_back")?,
            last_sync_ms: read_meta(&self.connection, "last_sync_ms")?
                .and_then(|value| value.parse().ok()),
            records: read_meta(&self.connection, "record_count")?
                .and_then(|count| count.parse().ok())
                .unwrap_or(0),
            conflicts: count("SELECT COUNT(*) FROM records WHERE in_conflict = 1")?,
        })
    }

    /// SQLite's check of the whole file (`quick`: its faster check, which
    /// skips comparing indexes with their tables). Empty when the file is
    /// sound; otherwise what SQLite found, at most a hundred lines.
    pub fn damage(&self, quick: bool) -> Result<Vec<String>> {
        let pragma = if quick {
            "PRAGMA quick_check(100)"
        } else {
            "PRAGMA integrity_check(100)"
        };
        let mut statement = self.connection.prepare(pragma)?;
        let lines: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(if lines == ["ok"] { Vec::new() } else { lines })
    }

    /// The SQL of every table and index, for comparing schemas in tests.
    pub fn schema_sql(&self) -> Result<Vec<String>> {
        let mut statement = self.connection.prepare(
            "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One command's writes: everything happens in one transaction, committed by
/// [`Store::write`] when the command succeeds.
///
/// The merged state of each record the command touches is kept in memory
/// and written once, when the command ends (or when many records are
/// pending), instead of being read and rewritten for every field: a new
/// household is a dozen field changes but one `records` row.
#[derive(Debug)]
pub struct Session<'a> {
    tx: Transaction<'a>,
    /// The statements run for each change or record, held for the
    /// session's life.
    statements: Statements<'a>,
    device: DeviceId,
    clock: Clock,
    local_wall_ms: u64,
    touched: HashMap<RecordKey, Touched>,
    /// The numbers the change log knows devices by, as this command has
    /// read or given them (forgotten with whatever rolls back).
    device_numbers: HashMap<DeviceId, i64>,
    /// The same for records.
    record_numbers: HashMap<RecordKey, i64>,
    /// The same for field names.
    field_numbers: HashMap<faenban_core::FieldName, i64>,
    next_outbox: Option<i64>,
    search_index: bool,
    /// The clock as the transaction found it.
    clock_before: Clock,
    /// A change whose stamp the log holds with other content is refused
    /// rather than taken as a duplicate (the server's pushes: a stamp is a
    /// change's identity, and a second content under it would be lost).
    pub(crate) refuse_reused_stamps: bool,
    /// Records this command changed on this laptop, checked at the end
    /// against the account's scope (when the laptop knows it).
    recorded_here: Vec<RecordKey>,
    /// Households whose report digest this command must make again.
    digests_due: report::DigestsDue,
    /// Whether to make them ([`Store::keep_report_digests`]).
    report_digests: bool,
}

/// Where the account's scope, as the server gave it at the last hello, is
/// kept in `meta`.
const ACCOUNT_SCOPE: &str = "account_scope";

/// A record of a kind, in a village, that the account this laptop syncs
/// with may never send: refused as it is typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotForThisAccount {
    /// The record's kind.
    pub kind: faenban_core::RecordKind,
    /// The village of its household, as this laptop has it.
    pub village: Option<String>,
    /// Why.
    pub refusal: faenban_core::sync::Refusal,
    /// The account's scope.
    pub scope: faenban_core::sync::Scope,
}

/// A record's state as this command has left it, not yet written.
#[derive(Debug)]
struct Touched {
    state: RecordState,
    /// The household it named when this command loaded it.
    household_before: Option<faenban_core::RecordId>,
    /// A searchable field changed: its search terms must be rewritten.
    search: bool,
}

/// How many records a command keeps in memory before writing them out.
const TOUCHED_LIMIT: usize = 4096;

impl Session<'_> {
    /// This device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// One record's merged state, as this command has left it so far.
    pub fn record(&self, key: &RecordKey) -> Result<Option<RecordState>> {
        match self.touched.get(key) {
            Some(touched) => Ok(Some(touched.state.clone())),
            None => load_state(&self.tx, key),
        }
    }

    /// One record's merged state as this command has left it, borrowed
    /// when the command holds it in memory.
    pub(crate) fn current(
        &self,
        key: &RecordKey,
    ) -> Result<Option<std::borrow::Cow<'_, RecordState>>> {
        match self.touched.get(key) {
            Some(touched) => Ok(Some(std::borrow::Cow::Borrowed(&touched.state))),
            None => Ok(load_state(&self.tx, key)?.map(std::borrow::Cow::Owned)),
        }
    }

    /// [`Session::current`], also taking a state this command has already
    /// written from what it keeps for the report's digests, rather than
    /// reading it back and decoding it again.
    pub(crate) fn current_or_written(
        &self,
        key: &RecordKey,
    ) -> Result<Option<std::borrow::Cow<'_, RecordState>>> {
        match self.digests_due.states().get(key) {
            Some(state) if !self.touched.contains_key(key) => {
                Ok(Some(std::borrow::Cow::Borrowed(state)))
            }
            _ => self.current(key),
        }
    }

    /// A record's merged state if this command holds it in memory.
    pub(crate) fn touched_state(&self, key: &RecordKey) -> Option<&RecordState> {
        self.touched.get(key).map(|touched| &touched.state)
    }

    /// The state of a record this command is changing (known by the
    /// number `record`), loaded once.
    fn touch(&mut self, key: &RecordKey, record: i64) -> Result<&mut Touched> {
        if !self.touched.contains_key(key) {
            // By its number: one probe of the records' own key, rather than
            // the kind and id's index and then that key.
            let mut rows = self.statements.get(STATE_OF_NUMBER)?.query([record])?;
            let state = match rows.next()? {
                Some(row) => state_from_blob(row.get_ref(0)?)?,
                None => RecordState::default(),
            };
            drop(rows);
            self.remember(key, state)?;
        }
        Ok(self.touched.get_mut(key).expect("remembered"))
    }

    fn remember(&mut self, key: &RecordKey, state: RecordState) -> Result<()> {
        if self.touched.len() >= TOUCHED_LIMIT {
            self.flush()?;
        }
        let search = false;
        let household_before = faenban_core::report::household_of(&state);
        self.touched.insert(
            key.clone(),
            Touched {
                state,
                household_before,
                search,
            },
        );
        Ok(())
    }

    /// Writes what is still in memory and commits.
    /// Refuses the command when a record it changed is one the account may
    /// never send (the core's [`Scope::may_record`] with what this laptop
    /// holds): better said as it is typed than set aside at the next sync.
    ///
    /// [`Scope::may_record`]: faenban_core::sync::Scope::may_record
    fn check_recorded_here(&self, scope: &faenban_core::sync::Scope) -> Result<()> {
        let mut records = self.recorded_here.clone();
        records.sort_unstable();
        records.dedup();
        for key in records {
            let Some(state) = self.current(&key)? else {
                continue;
            };
            let shown = |field: &str| {
                state
                    .shown(field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let village = if key.kind == RecordKind::Household {
                shown("village")
            } else {
                match shown("household").and_then(|id| Uuid::parse_str(&id).ok()) {
                    Some(household) => {
                        let household = RecordKey::new(RecordKind::Household, household);
                        self.current(&household)?.and_then(|state| {
                            state
                                .shown("village")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                    }
                    None => None,
                }
            };
            let dimension = shown("dimension");
            if let Err(refusal) =
                scope.may_record(&key.kind, village.as_deref(), dimension.as_deref())
            {
                return Err(Error::NotForThisAccount(Box::new(NotForThisAccount {
                    kind: key.kind,
                    village,
                    refusal,
                    scope: scope.clone(),
                })));
            }
        }
        Ok(())
    }

    fn commit(mut self) -> Result<()> {
        self.flush()?;
        let due = self.digests_due.take();
        if self.report_digests {
            report::refresh(
                &self.tx,
                due,
                self.digests_due.states(),
                &self.record_numbers,
            )?;
        } else if !due.is_empty() {
            report::mark_stale(&self.tx)?;
        }
        // A write that changed nothing (a re-sent push) writes nothing, and
        // its commit costs no disk write.
        if self.clock != self.clock_before {
            write_meta(&self.tx, "clock", &serde_json::to_string(&self.clock)?)?;
        }
        if let Some(next) = self.next_outbox {
            write_meta(&self.tx, "next_outbox_sequence", &next.to_string())?;
        }
        self.tx.commit()?;
        Ok(())
    }

    /// Forgets what this command held in memory (states, kept states for
    /// the digests, clock readings since `clock`) when a savepoint it took
    /// is rolled back.
    pub(crate) fn forget_since(&mut self, clock: Clock) {
        self.touched.clear();
        self.device_numbers.clear();
        self.record_numbers.clear();
        self.field_numbers.clear();
        self.digests_due.forget_states();
        self.clock = clock;
    }

    /// Writes every touched record's state (and search terms).
    fn flush(&mut self) -> Result<()> {
        let mut new_records = 0;
        for (key, touched) in std::mem::take(&mut self.touched) {
            let record = self.record_number(&key)?;
            let household = match faenban_core::push::household_value_of(&touched.state) {
                Some(household) => Some(self.record_number(&RecordKey {
                    kind: RecordKind::Household,
                    id: household,
                })?),
                None => None,
            };
            if save_state(&mut self.statements, record, household, &touched.state)? {
                new_records += 1;
            }
            self.digests_due.note(&key, touched.household_before);
            self.digests_due
                .note(&key, faenban_core::report::household_of(&touched.state));
            if touched.search {
                save_search_terms(&self.tx, record, &key, &touched.state)?;
            }
            if self.report_digests {
                self.digests_due.keep_state(key, touched.state);
            }
        }
        if new_records > 0 {
            // Counted as they are written, in this transaction, so that
            // `status` need not read every record to count them.
            self.tx
                .prepare_cached(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + ?1 WHERE key = 'record_count'",
                )?
                .execute([new_records])?;
        }
        Ok(())
    }

    fn next_stamp(&mut self) -> Stamp {
        Stamp::new(self.clock.tick(self.local_wall_ms), self.device)
    }

    /// Sets a field; returns the change. Resolves a conflict on the field,
    /// since the person saw every value.
    pub fn set(&mut self, key: &RecordKey, field: &str, value: Value) -> Result<Change> {
        let stamp = self.next_stamp();
        if !self.touched.contains_key(key) {
            if let Some(state) = load_state(&self.tx, key)? {
                self.remember(key, state)?;
            }
        }
        let current = self.touched.get(key).map(|touched| &touched.state);
        let change = set_field(key, current, field, value, stamp);
        self.record_local(change)
    }

    /// Creates a record; returns its key.
    pub fn create<T: RecordType>(&mut self, id: Uuid, record: &T) -> Result<RecordKey> {
        let key = RecordKey::new(T::kind(), id);
        for (field, value) in fields_of(record)? {
            self.set(&key, &field, value)?;
        }
        Ok(key)
    }

    /// Archives a record.
    pub fn archive(&mut self, key: &RecordKey) -> Result<Change> {
        let current = self.require(key)?;
        let stamp = self.next_stamp();
        let change = archive(key, Some(&current), stamp);
        self.record_local(change)
    }

    /// Restores an archived record.
    pub fn restore(&mut self, key: &RecordKey) -> Result<Change> {
        let current = self.require(key)?;
        let stamp = self.next_stamp();
        let change = restore(key, Some(&current), stamp);
        self.record_local(change)
    }

    /// The record's state, or a not-found error naming it.
    pub fn require(&self, key: &RecordKey) -> Result<RecordState> {
        self.record(key)?.ok_or_else(|| Error::NotFound {
            kind: key.kind.to_string(),
            id: key.id.to_string(),
        })
    }

    /// Takes in a change made elsewhere (pulled, or from a bundle).
    pub fn receive(&mut self, change: Change) -> Result<Outcome> {
        self.clock.observe(change.stamp.hlc, self.local_wall_ms);
        self.apply(change, false)
    }

    fn record_local(&mut self, change: Change) -> Result<Change> {
        // What the server would refuse is refused here, as it is typed: a
        // change it cannot take would only be set aside there.
        faenban_core::limits::check_change(&change).map_err(|exceeded| exceeded.as_invalid())?;
        faenban_core::model::check_text(&change)?;
        if self.recorded_here.last() != Some(&change.record) {
            self.recorded_here.push(change.record.clone());
        }
        Ok(self.apply_own(change, true)?.0)
    }

    /// Applies a change this device stamped, as a new change: a stamp the
    /// log already holds means the device handed out that reading before
    /// (its clock went back after a correction), and a change of its own
    /// is never a duplicate, so it takes the next reading until its stamp
    /// is new. Returns the change as logged, and its place in the log.
    pub(crate) fn apply_own(&mut self, mut change: Change, local: bool) -> Result<(Change, i64)> {
        loop {
            if let (_, Some(log_seq)) = self.apply_logged(change.clone(), local)? {
                return Ok((change, log_seq));
            }
            // The reading that collided was never logged: it is replaced,
            // not kept among the previous stamps.
            change.stamp = self.next_stamp();
        }
    }

    /// The next outbox sequence. It never goes back, even after the outbox
    /// is emptied by an acknowledgement: it is kept in meta, written when
    /// the command ends.
    fn next_outbox_sequence(&mut self) -> Result<i64> {
        let next = match self.next_outbox {
            Some(next) => next,
            None => read_meta(&self.tx, "next_outbox_sequence")?
                .and_then(|value| value.parse().ok())
                .unwrap_or(1),
        };
        self.next_outbox = Some(next + 1);
        Ok(next)
    }

    /// Takes one change: the log, (for a change made here) the outbox, and
    /// the record's merged state in memory. A change already known changes
    /// nothing.
    fn apply(&mut self, change: Change, local: bool) -> Result<Outcome> {
        Ok(self.apply_logged(change, local)?.0)
    }

    /// [`Session::apply`], also returning the change's place in the log
    /// (`None` for a change the log already held).
    fn apply_logged(&mut self, change: Change, local: bool) -> Result<(Outcome, Option<i64>)> {
        let device = self.device_number(change.stamp.device)?;
        let record = self.record_number(&change.record)?;
        let field = self.field_number(&change.field)?;
        let Some(change_seq) = log_change(&mut self.statements, &change, [device, record, field])?
        else {
            if self.refuse_reused_stamps
                && logged_body(&self.tx, &change)?.as_ref() != Some(&change)
            {
                return Err(error::refused(
                    faenban_core::RefusalCode::StampReused,
                    format!(
                        "the server already holds a different change under the stamp of a change to {} {} (field {}); nothing of this batch was applied",
                        change.record.kind, change.record.id, change.field
                    ),
                ));
            }
            return Ok((Outcome::Duplicate, None));
        };
        if local {
            let sequence = self.next_outbox_sequence()?;
            self.tx
                .prepare_cached("INSERT INTO outbox (sequence, change_seq) VALUES (?1, ?2)")?
                .execute(params![sequence, change_seq])?;
        }
        // Search terms come from a few fields only; most changes leave them be.
        let search = self.search_index
            && searchable_fields(&change.record.kind).contains(&change.field.as_str());
        let key = change.record.clone();
        let touched = self.touch(&key, record)?;
        touched.search |= search;
        Ok((touched.state.apply(change), Some(change_seq)))
    }
}

impl Session<'_> {
    /// The number the change log knows `device` by, given on first sight.
    fn device_number(&mut self, device: DeviceId) -> Result<i64> {
        if let Some(number) = self.device_numbers.get(&device) {
            return Ok(*number);
        }
        let text = device.to_string();
        let inserted = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO device_numbers (device) VALUES (?1)")?
            .execute([&text])?;
        let number: i64 = if inserted == 1 {
            self.tx.last_insert_rowid()
        } else {
            self.tx
                .prepare_cached("SELECT n FROM device_numbers WHERE device = ?1")?
                .query_row([&text], |row| row.get(0))?
        };
        self.device_numbers.insert(device, number);
        Ok(number)
    }

    /// The number the change log and the search terms know `record` by,
    /// given on first sight.
    fn record_number(&mut self, record: &RecordKey) -> Result<i64> {
        if let Some(number) = self.record_numbers.get(record) {
            return Ok(*number);
        }
        let (kind, id) = (record.kind.as_str(), record.id.to_string());
        // A record seen for the first time (most, in a push of new work)
        // takes its number from the insert; only a known one is looked up.
        let inserted = self
            .statements
            .get("INSERT OR IGNORE INTO record_numbers (kind, id) VALUES (?1, ?2)")?
            .execute(params![kind, id])?;
        let number: i64 = if inserted == 1 {
            self.statements.last_insert_rowid()
        } else {
            self.statements
                .get("SELECT n FROM record_numbers WHERE kind = ?1 AND id = ?2")?
                .query_row(params![kind, id], |row| row.get(0))?
        };
        self.record_numbers.insert(record.clone(), number);
        Ok(number)
    }

    /// The number the change log knows a field name by, given on first
    /// sight.
    fn field_number(&mut self, field: &faenban_core::FieldName) -> Result<i64> {
        if let Some(number) = self.field_numbers.get(field) {
            return Ok(*number);
        }
        let inserted = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO field_numbers (name) VALUES (?1)")?
            .execute([field.as_str()])?;
        let number: i64 = if inserted == 1 {
            self.tx.last_insert_rowid()
        } else {
            self.tx
                .prepare_cached("SELECT n FROM field_numbers WHERE name = ?1")?
                .query_row([field.as_str()], |row| row.get(0))?
        };
        self.field_numbers.insert(field.clone(), number);
        Ok(number)
    }
}

/// The statements a write session runs for each change or record, each
/// taken from the connection's statement cache once and held: a take
/// hashes the statement's text and allocates its key, which at every
/// change came to a tenth of a push's merge.
struct Statements<'a> {
    /// The connection the session's transaction is open on.
    connection: &'a Connection,
    held: Vec<(&'static str, rusqlite::CachedStatement<'a>)>,
}

impl<'a> Statements<'a> {
    /// The statement for `sql`, prepared (or taken from the cache) at its
    /// first use in this session.
    fn get(&mut self, sql: &'static str) -> Result<&mut rusqlite::Statement<'a>> {
        // A few statements, each named by one constant: its address finds it.
        let at = match self
            .held
            .iter()
            .position(|(held, _)| std::ptr::eq(held.as_ptr(), sql.as_ptr()) || *held == sql)
        {
            Some(at) => at,
            None => {
                self.held.push((sql, self.connection.prepare_cached(sql)?));
                self.held.len() - 1
            }
        };
        Ok(&mut self.held[at].1)
    }

    fn last_insert_rowid(&self) -> i64 {
        self.connection.last_insert_rowid()
    }
}

impl std::fmt::Debug for Statements<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the statements' bindings: they may hold a person's data.
        f.debug_struct("Statements")
            .field("held", &self.held.len())
            .finish()
    }
}

const LOG_INSERT: &str =
    "INSERT OR IGNORE INTO changes (wall_ms, counter, device, record, field, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Appends a change to the log, its device, record and field known by the
/// numbers `[device, record, field]`; its log sequence, or `None` if the log
/// already holds it.
fn log_change(
    statements: &mut Statements<'_>,
    change: &Change,
    [device, record, field]: [i64; 3],
) -> Result<Option<i64>> {
    let body = faenban_core::codec::encode_change_body(change);
    let inserted = statements.get(LOG_INSERT)?.execute(params![
        change.stamp.hlc.wall_ms as i64,
        change.stamp.hlc.counter,
        device,
        record,
        field,
        body,
    ])?;
    Ok((inserted > 0).then(|| statements.last_insert_rowid()))
}

/// The change the log holds under this change's stamp.
fn logged_body(tx: &Transaction<'_>, change: &Change) -> Result<Option<Change>> {
    let mut statement = tx.prepare_cached(concat!(
        "SELECT ",
        change_columns!(),
        " FROM changes c ",
        change_joins!(),
        " WHERE c.wall_ms = ?1 AND c.counter = ?2 \
         AND c.device = (SELECT n FROM device_numbers WHERE device = ?3)"
    ))?;
    let mut rows = statement.query(params![
        change.stamp.hlc.wall_ms as i64,
        change.stamp.hlc.counter,
        change.stamp.device.to_string()
    ])?;
    rows.next()?.map(|row| change_from_row(row, 0)).transpose()
}

/// The change a row holds in the columns [`change_columns!`] names, from
/// `first` on.
pub(crate) fn change_from_row(row: &rusqlite::Row<'_>, first: usize) -> Result<Change> {
    let wall_ms: i64 = row.get(first)?;
    let counter: u32 = row.get(first + 1)?;
    let device: String = row.get(first + 2)?;
    let kind: String = row.get(first + 3)?;
    let record: String = row.get(first + 4)?;
    let field: String = row.get(first + 5)?;
    let device = Uuid::parse_str(&device)
        .map_err(|error| Error::Corrupt(format!("the device of a change: {error}")))?;
    let stamp = faenban_core::Stamp::new(
        faenban_core::Hlc {
            wall_ms: wall_ms as u64,
            counter,
        },
        DeviceId(device),
    );
    let record = record_key(RecordKind::from_name(&kind), &record)?;
    let body = match row.get_ref(first + 6)? {
        rusqlite::types::ValueRef::Blob(bytes) => bytes,
        _ => return Err(Error::Corrupt("a change body that is not a blob".into())),
    };
    faenban_core::codec::decode_change(stamp, record, field.into(), body)
        .map_err(|error| Error::Corrupt(error.to_string()))
}

/// A record's state as the `records` table keeps it.
pub(crate) fn state_from_blob(value: rusqlite::types::ValueRef<'_>) -> Result<RecordState> {
    match value {
        rusqlite::types::ValueRef::Blob(bytes) => faenban_core::codec::decode_state(bytes)
            .map_err(|error| Error::Corrupt(error.to_string())),
        _ => Err(Error::Corrupt("a record state that is not a blob".into())),
    }
}

/// Writes the state of the record numbered `record`, filed under the
/// household numbered `household`; true when the record is new here.
fn save_state(
    statements: &mut Statements<'_>,
    record: i64,
    household: Option<i64>,
    state: &RecordState,
) -> Result<bool> {
    let encoded = faenban_core::codec::encode_state(state);
    let columns = params![
        record,
        encoded,
        household,
        state.is_archived(),
        state.has_conflict(),
    ];
    let updated = statements
        .get(
            "UPDATE records SET state = ?2, household = ?3, archived = ?4, in_conflict = ?5 \
             WHERE n = ?1",
        )?
        .execute(columns)?;
    if updated > 0 {
        return Ok(false);
    }
    statements
        .get(
            "INSERT INTO records (n, state, household, archived, in_conflict) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(columns)?;
    Ok(true)
}

/// Saves the terms `key` (known by the number `record`) is found by.
fn save_search_terms(
    tx: &Transaction<'_>,
    record: i64,
    key: &RecordKey,
    state: &RecordState,
) -> Result<()> {
    tx.prepare_cached("DELETE FROM search_terms WHERE record = ?1")?
        .execute([record])?;
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO search_terms (term, record) VALUES (?1, ?2)")?;
    for term in search_terms(key, state) {
        insert.execute(params![term, record])?;
    }
    Ok(())
}

/// The fields whose values a record of this kind is found by.
fn searchable_fields(kind: &RecordKind) -> &'static [&'static str] {
    match kind {
        RecordKind::Household => &["house_code", "village"],
        RecordKind::Member => &["national_id", "first_name", "last_name"],
        RecordKind::Official => &["name"],
        _ => &[],
    }
}

/// The words a record is found by.
fn search_terms(key: &RecordKey, state: &RecordState) -> Vec<String> {
    let mut terms: Vec<String> = searchable_fields(&key.kind)
        .iter()
        .filter_map(|field| state.shown(field)?.as_str())
        .map(normalize_term)
        .filter(|term| !term.is_empty())
        .collect();
    if key.kind == RecordKind::Member {
        let name = |field| state.shown(field).and_then(Value::as_str).unwrap_or("");
        let full = normalize_term(&format!("{} {}", name("first_name"), name("last_name")));
        if !full.is_empty() {
            terms.push(full);
        }
    }
    terms
}

/// Lowercase, with the separators people type in codes removed.
fn normalize_term(text: &str) -> String {
    let trimmed = text.trim().to_lowercase();
    if trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == ' ')
    {
        trimmed.chars().filter(char::is_ascii_digit).collect()
    } else {
        trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// A record's state by its number.
const STATE_OF_NUMBER: &str = "SELECT state FROM records WHERE n = ?1";

/// A record's state by its kind and id.
const STATE_OF_RECORD: &str = "SELECT r.state FROM record_numbers rn JOIN records r ON r.n = rn.n \
     WHERE rn.kind = ?1 AND rn.id = ?2";

fn load_state(connection: &Connection, key: &RecordKey) -> Result<Option<RecordState>> {
    load_state_with(&mut *connection.prepare_cached(STATE_OF_RECORD)?, key)
}

/// [`load_state`] with the statement of [`STATE_OF_RECORD`] at hand.
fn load_state_with(
    statement: &mut rusqlite::Statement<'_>,
    key: &RecordKey,
) -> Result<Option<RecordState>> {
    let mut rows = statement.query(params![key.kind.as_str(), key.id.to_string()])?;
    rows.next()?
        .map(|row| state_from_blob(row.get_ref(0)?))
        .transpose()
}

fn record_key(kind: RecordKind, id: &str) -> Result<RecordKey> {
    let id =
        Uuid::parse_str(id).map_err(|error| Error::Corrupt(format!("record id {id}: {error}")))?;
    Ok(RecordKey::new(kind, id))
}

fn device_of(connection: &Connection) -> Result<Option<DeviceInfo>> {
    let (Some(id), Some(name)) = (
        read_meta(connection, "device_id")?,
        read_meta(connection, "device_name")?,
    ) else {
        return Ok(None);
    };
    let id = Uuid::parse_str(&id).map_err(|error| Error::Corrupt(format!("device id: {error}")))?;
    Ok(Some(DeviceInfo {
        id: DeviceId(id),
        name,
    }))
}

fn read_meta(connection: &Connection, key: &str) -> Result<Option<String>> {
    Ok(connection
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

fn write_meta(connection: &Connection, key: &str, value: &str) -> Result<()> {
    connection
        .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute([key, value])?;
    Ok(())
}

/// Runs a query returning (kind, id, state) rows.
fn query_records_on(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> Result<Vec<(RecordKey, RecordState)>> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(parameters)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        let id: String = row.get(1)?;
        records.push((
            record_key(RecordKind::from_name(&kind), &id)?,
            state_from_blob(row.get_ref(2)?)?,
        ));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faenban_keys::DeviceKey;
    use rusqlite::StatementStatus;

    /// Reading records of changing kinds and ids reuses one parsed
    /// statement: a re-parse per read was a fifth of a push's time.
    #[test]
    fn reading_records_by_key_does_not_parse_the_statement_again() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .init("laptop", &DeviceKey::from_seed([3; 32]))
            .unwrap();
        let keys: Vec<RecordKey> = (0..20u128)
            .flat_map(|n| {
                [RecordKind::Household, RecordKind::Member, RecordKind::Visit]
                    .map(|kind| RecordKey::new(kind, Uuid::from_u128(n + 1)))
            })
            .collect();
        for key in &keys {
            assert!(store.record(key).unwrap().is_none());
        }
        let statement = store.connection.prepare_cached(STATE_OF_RECORD).unwrap();
        assert_eq!(
            statement.get_status(StatementStatus::Run),
            keys.len() as i32
        );
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }
}
