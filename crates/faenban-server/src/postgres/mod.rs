//! The server's store on PostgreSQL: the [`Backend`] for a region or a
//! country, where several server processes share one database.
//!
//! Every rule comes from the core ([`faenban_core::push`], the codec, the
//! report); this module moves rows. How the feed stays exact with several
//! writers, and how the tables are partitioned by province, is in
//! `docs/postgres.md`.

pub mod migrate;
mod pool;
mod pull;
mod push;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use faenban_core::report::{self, HouseholdDigest, Report, ReportOptions};
use faenban_core::sync::{HeldBack, Role, Scope};
use faenban_core::{Catalogues, DeviceId, Dimension, RecordKey, RefusalCode};
use faenban_keys::{device_id_of, DeviceKey, PublicKey};
use faenban_store::server::{Account, BoundDevice, PulledPage, PushInput, PushOutcome};
use postgres::error::SqlState;

use crate::backend::{Backend, BackendError, Result};
use crate::group_commit::{GroupOutcome, WriteQueue};
pub use pool::PoolOptions;
use pool::{Connection, Pool, Tx};

/// The schema version this build writes (`meta.schema_version`).
pub const POSTGRES_SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = include_str!("../../../../schema/postgres/0001_server.sql");

/// How many times a push or an administrator's write is tried again after
/// a deadlock, a serialization failure or a lost connection.
const ATTEMPTS: usize = 6;

/// How many groups of pushes one process applies at once: while one group
/// waits for its commit, the next is merged.
const WRITERS: usize = 2;

/// The store on PostgreSQL. Cheap to share: every call takes a connection
/// from the pool for its own length.
#[derive(Debug)]
pub struct PostgresBackend {
    pool: Pool,
    /// A streaming replica the office's reports are read from, if one was
    /// given ([`PostgresBackend::read_reports_from`]).
    reports: Option<Pool>,
    key: DeviceKey,
    device: DeviceId,
    /// The provinces whose partitions exist.
    provinces: Mutex<HashSet<i16>>,
    /// Field names by number and numbers by name, as the database gave them
    /// (they never change once given).
    fields: Mutex<Fields>,
    /// Pushes waiting for a writer.
    waiting: WriteQueue,
    /// The writers' slots.
    writers: [Mutex<()>; WRITERS],
    /// What this process has written to each province since it last
    /// analyzed its partitions.
    growth: Mutex<HashMap<i16, Growth>>,
}

/// Changes a process writes to a province before it analyzes the
/// province's partitions the first time.
const FIRST_ANALYZE_AFTER: u64 = 2_000;

/// A province's rows written by this process, counted for
/// [`PostgresBackend::analyze_grown`].
#[derive(Debug, Default)]
struct Growth {
    since_analyzed: u64,
    when_analyzed: u64,
}

#[derive(Debug, Default)]
struct Fields {
    by_name: HashMap<String, i32>,
    by_number: HashMap<i32, String>,
}

/// What went wrong in one attempt at a write: final, or worth another try.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Answer this.
    Final(BackendError),
    /// A deadlock, a serialization failure, a lost connection or a
    /// concurrent writer's unique key: nothing was committed; try again.
    Again(BackendError),
    /// A province's partitions do not exist yet: make them, then try again.
    NeedsProvince(i16),
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Failure {
        let transient = is_transient(&error);
        let error = backend_error(error);
        if transient {
            Failure::Again(error)
        } else {
            Failure::Final(error)
        }
    }
}

impl From<BackendError> for Failure {
    fn from(error: BackendError) -> Failure {
        Failure::Final(error)
    }
}

/// True for failures another attempt may not meet.
fn is_transient(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => [
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::UNIQUE_VIOLATION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code),
        // No answer from the server: the connection broke.
        None => true,
    }
}

/// A PostgreSQL failure in the terms the HTTP layer answers in.
pub(crate) fn backend_error(error: postgres::Error) -> BackendError {
    match error.code() {
        Some(code) if *code == SqlState::DISK_FULL => BackendError::DiskFull,
        Some(code) if *code == SqlState::READ_ONLY_SQL_TRANSACTION => BackendError::ReadOnly,
        Some(code)
            if [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code) =>
        {
            BackendError::Unavailable(format!(
                "the database is not taking requests: {}",
                with_cause(&error)
            ))
        }
        Some(code)
            if [
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::UNIQUE_VIOLATION,
            ]
            .contains(code) =>
        {
            tracing::debug!(error = %with_cause(&error), "the database asks for another try");
            BackendError::Busy
        }
        Some(_) => BackendError::Storage(error.to_string()),
        None => BackendError::Unavailable(with_cause(&error)),
    }
}

/// A failure with what caused it (the client's own message leaves out why
/// a connection failed).
pub(crate) fn with_cause(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// The province a village or area code is in, as the partitions number it
/// (0 for none).
pub(crate) fn province_of(code: &str) -> i16 {
    match code.get(..2).and_then(|digits| digits.parse::<i16>().ok()) {
        Some(province) if (10..=99).contains(&province) && code.len() >= 2 => province,
        _ => 0,
    }
}

/// The one province every area of a scope is in, if there is one.
pub(crate) fn home_province(scope: &Scope) -> i16 {
    let mut provinces = scope.areas.iter().map(|area| province_of(area));
    match provinces.next() {
        Some(first) if provinces.all(|other| other == first) => first,
        _ => 0,
    }
}

/// Said at the start of every push and pull transaction. Their statements
/// look up a few rows each by index (a batch's records, a page's entries);
/// the planner, misled by the sizes it guesses for `unnest` and `ANY`
/// arrays, would otherwise hash-join them against whole tables, a cost
/// that grows with the province, or start parallel workers for them
/// (a few milliseconds each time, for a lookup of a fraction of one).
pub(crate) const INDEX_LOOKUPS_ONLY: &str =
    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL max_parallel_workers_per_gather = 0";

/// Said at the start of a pull, besides [`INDEX_LOOKUPS_ONLY`]: a page's
/// statement is planned for its own arrays (a scope's households) rather
/// than once for any, which PostgreSQL would otherwise settle on after a
/// few pages of one connection.
pub(crate) const PLANNED_FOR_EACH_PAGE: &str = "SET LOCAL plan_cache_mode = force_custom_plan";

/// The catalogues a digest's deprivation is assessed with.
fn catalogues() -> &'static Catalogues {
    static CATALOGUES: std::sync::OnceLock<Catalogues> = std::sync::OnceLock::new();
    CATALOGUES.get_or_init(Catalogues::builtin)
}

impl PostgresBackend {
    /// Connects to the database at `url` (a `postgres://` URL), making the
    /// schema and the server's key if the database is empty.
    pub fn open(url: &str) -> Result<PostgresBackend> {
        PostgresBackend::open_with(url, PoolOptions::default())
    }

    /// [`PostgresBackend::open`] with a pool of this shape.
    pub fn open_with(url: &str, options: PoolOptions) -> Result<PostgresBackend> {
        let pool = Pool::new(url, options)?;
        let mut connection = pool.get()?;
        let (key, device) = prepare_schema(&mut connection)?;
        let provinces = existing_provinces(&mut connection)?;
        drop(connection);
        Ok(PostgresBackend {
            pool,
            reports: None,
            device,
            key,
            provinces: Mutex::new(provinces),
            fields: Mutex::new(Fields::default()),
            waiting: WriteQueue::default(),
            writers: Default::default(),
            growth: Mutex::default(),
        })
    }

    fn connection(&self) -> Result<Connection<'_>> {
        self.pool.get()
    }

    /// Reads the office's reports (the report, its generation, an area's
    /// households) from a streaming replica of this database at `url`, so
    /// that the office's reading does not load the primary the laptops sync
    /// with. A replica out of reach or too busy is passed over for the
    /// primary, each time, with a warning. A replica that answers but holds
    /// another database is refused here.
    pub fn read_reports_from(mut self, url: &str) -> Result<PostgresBackend> {
        let reports = Pool::new(
            url,
            PoolOptions {
                size: 4,
                wait: Duration::from_secs(2),
                connect_timeout: Duration::from_secs(2),
            },
        )?;
        const WHOSE: &str = "SELECT md5(value) FROM meta WHERE key = 'server_key'";
        let ours: String = self
            .connection()?
            .client()
            .query_one(WHOSE, &[])
            .map_err(backend_error)?
            .get(0);
        match reports.get() {
            Ok(mut connection) => {
                let theirs: Option<String> = connection
                    .client()
                    .query_opt(WHOSE, &[])
                    .map_err(backend_error)?
                    .map(|row| row.get(0));
                if theirs.as_deref() != Some(ours.as_str()) {
                    return Err(BackendError::Storage(
                        "the reports' replica holds another server's database".into(),
                    ));
                }
            }
            Err(BackendError::Unavailable(reason)) => {
                tracing::warn!(%reason, "the reports' replica is out of reach for now");
            }
            Err(error) => return Err(error),
        }
        self.reports = Some(reports);
        Ok(self)
    }

    /// Runs a read of the office's reports on the replica, if there is one
    /// and it answers, else on the primary.
    fn reading_reports<T>(&self, read: impl Fn(&mut Connection<'_>) -> Result<T>) -> Result<T> {
        if let Some(reports) = &self.reports {
            match reports
                .get()
                .and_then(|mut connection| read(&mut connection))
            {
                Ok(value) => return Ok(value),
                Err(error @ (BackendError::Unavailable(_) | BackendError::Busy)) => {
                    tracing::warn!(%error, "the reports' replica did not answer; reading the primary");
                }
                Err(error) => return Err(error),
            }
        }
        read(&mut self.connection()?)
    }

    /// Runs a call, trying again after a transient failure (a pull can be
    /// chosen as a deadlock's victim too, beside a province's partitions
    /// being made) and after making a province's partitions.
    fn retrying<T>(
        &self,
        mut attempt: impl FnMut(&mut Connection<'_>) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut last = BackendError::Busy;
        for round in 0..ATTEMPTS {
            if round > 0 {
                std::thread::sleep(Duration::from_millis(5 << round.min(6)));
            }
            let mut connection = match self.connection() {
                Ok(connection) => connection,
                Err(error @ BackendError::Unavailable(_)) => {
                    last = error;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match attempt(&mut connection) {
                Ok(value) => return Ok(value),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Again(error)) => {
                    tracing::debug!(%error, "a write is tried again");
                    last = error;
                }
                Err(Failure::NeedsProvince(province)) => {
                    // Making the partitions locks the tables a push reads,
                    // so it can be a deadlock's victim too: then it is
                    // tried again like the write that asked for it.
                    match self.make_province(&mut connection, province) {
                        Ok(()) => {}
                        Err(error @ BackendError::Busy) => last = error,
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        Err(last)
    }

    /// A push in a transaction of its own.
    fn push_alone(&self, account: &Account, input: PushInput, now_ms: u64) -> Result<PushOutcome> {
        self.retrying(|connection| {
            push::push_once(self, connection, account, input.clone(), now_ms)
        })
    }

    /// A group of pushes in one transaction. A push the group left
    /// unanswered (a transient failure of its own), or every push of a
    /// group that failed for a reason other than the database being out of
    /// reach, is tried alone, so that one push's trouble is never another's.
    fn push_group(&self, pushes: Vec<(Account, PushInput)>, now_ms: u64) -> GroupOutcome {
        if let [(account, input)] = &pushes[..] {
            return Ok(vec![self.push_alone(account, input.clone(), now_ms)]);
        }
        let answers = match self
            .retrying(|connection| push::push_group(self, connection, &pushes, now_ms))
        {
            Ok(answers) => answers,
            Err(error @ (BackendError::Unavailable(_) | BackendError::Busy)) => return Err(error),
            Err(error) => {
                tracing::debug!(%error, "a group failed; its pushes are tried alone");
                vec![None; pushes.len()]
            }
        };
        Ok(answers
            .into_iter()
            .zip(pushes)
            .map(|(answer, (account, input))| {
                answer.unwrap_or_else(|| self.push_alone(&account, input, now_ms))
            })
            .collect())
    }

    /// Analyzes the partitions of the provinces a committed write has grown
    /// to four times what they held when they were last analyzed.
    ///
    /// A province's partitions are made empty, and a first import fills them
    /// faster than autovacuum's minute between rounds: planned from the
    /// statistics of an empty table, a lookup by index became a scan of the
    /// whole partition, 10 to 50 times slower (`docs/postgres.md`). Analyzing
    /// at 2,000 changes, 8,000, 32,000… costs a few ANALYZEs in a young
    /// province's first million changes, each of a bounded sample of rows
    /// (`record_numbers` among them while it is planned as smaller than the
    /// province's log); a process that finds a province already analyzed at
    /// its size counts from there, and leaves a grown province to autovacuum. A failure here
    /// is logged and left to autovacuum too: the write has committed.
    pub(crate) fn analyze_grown(&self, connection: &mut Connection<'_>, written: &[i16]) {
        let mut counts: HashMap<i16, u64> = HashMap::new();
        for province in written {
            *counts.entry(*province).or_default() += 1;
        }
        let unseen: Vec<i16> = {
            let growth = self.growth();
            counts
                .keys()
                .filter(|province| !growth.contains_key(province))
                .copied()
                .collect()
        };
        let mut first_sight = Vec::new();
        for province in unseen {
            let analyzed = connection.client().query_one(
                "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = $1::text::regclass",
                &[&format!("changes_p{province}")],
            );
            match analyzed {
                Ok(row) => first_sight.push((province, row.get::<_, i64>(0) as u64)),
                Err(error) => {
                    tracing::warn!(%error, province, "reading a province's statistics");
                    return;
                }
            }
        }
        let due: Vec<(i16, u64)> = {
            let mut growth = self.growth();
            for (province, rows) in first_sight {
                growth.entry(province).or_insert(Growth {
                    since_analyzed: 0,
                    when_analyzed: rows,
                });
            }
            counts
                .into_iter()
                .filter_map(|(province, count)| {
                    let grown = growth.get_mut(&province)?;
                    grown.since_analyzed += count;
                    if grown.since_analyzed < FIRST_ANALYZE_AFTER.max(3 * grown.when_analyzed) {
                        return None;
                    }
                    grown.when_analyzed += grown.since_analyzed;
                    grown.since_analyzed = 0;
                    Some((province, grown.when_analyzed))
                })
                .collect()
        };
        for (province, size) in due {
            let mut tables = ["records", "changes", "feed", "places", "report_digests"]
                .map(|table| format!("{table}_p{province}"))
                .join(", ");
            // The global table of record numbers too, while the planner
            // takes it for smaller than this province's log: in a database
            // of other provinces it is large and analyzed already, and
            // sampling it again read 34,601 blocks for nothing.
            let numbers: f32 = connection
                .client()
                .query_one(
                    "SELECT reltuples FROM pg_class WHERE oid = 'record_numbers'::regclass",
                    &[],
                )
                .map_or(0.0, |row| row.get(0));
            if f64::from(numbers) < size as f64 {
                tables.insert_str(0, "record_numbers, ");
            }
            tracing::debug!(province, "analyzing a grown province's partitions");
            if let Err(error) = connection
                .client()
                .batch_execute(&format!("ANALYZE {tables}"))
            {
                tracing::warn!(%error, province, "analyzing a grown province's partitions");
            }
        }
    }

    fn growth(&self) -> std::sync::MutexGuard<'_, HashMap<i16, Growth>> {
        self.growth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the partitions of a province (once, whichever process asks
    /// first).
    fn make_province(&self, connection: &mut Connection<'_>, province: i16) -> Result<()> {
        let mut tx = connection.client().transaction().map_err(backend_error)?;
        tx.execute("SELECT pg_advisory_xact_lock(7243, 0)", &[])
            .map_err(backend_error)?;
        for table in ["records", "changes", "feed", "places", "report_digests"] {
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table}_p{province} PARTITION OF {table} FOR VALUES IN ({province})"
            ))
            .map_err(backend_error)?;
        }
        tx.commit().map_err(backend_error)?;
        self.provinces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(province);
        Ok(())
    }

    /// Fails with [`Failure::NeedsProvince`] for the first of `provinces`
    /// whose partitions do not exist yet.
    pub(crate) fn require_provinces(
        &self,
        provinces: impl IntoIterator<Item = i16>,
    ) -> std::result::Result<(), Failure> {
        let known = self
            .provinces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for province in provinces {
            if !known.contains(&province) {
                return Err(Failure::NeedsProvince(province));
            }
        }
        Ok(())
    }

    /// The number a field name is logged by, given on first sight, in the
    /// caller's transaction: the caller remembers it
    /// ([`PostgresBackend::remember_fields`]) once that has committed.
    pub(crate) fn field_number(
        &self,
        client: &mut Tx<'_>,
        name: &str,
    ) -> std::result::Result<i32, Failure> {
        if let Some(number) = self.fields().by_name.get(name) {
            return Ok(*number);
        }
        client.execute(
            "INSERT INTO field_numbers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )?;
        Ok(client
            .query_one("SELECT n FROM field_numbers WHERE name = $1", &[&name])?
            .get(0))
    }

    /// Remembers field numbers a committed push read or gave.
    pub(crate) fn remember_fields(&self, numbered: HashMap<String, i32>) {
        let mut fields = self.fields();
        for (name, number) in numbered {
            fields.by_number.insert(number, name.clone());
            fields.by_name.insert(name, number);
        }
    }

    /// The field name a number stands for.
    pub(crate) fn field_name(
        &self,
        client: &mut Tx<'_>,
        number: i32,
    ) -> std::result::Result<String, BackendError> {
        if let Some(name) = self.fields().by_number.get(&number) {
            return Ok(name.clone());
        }
        let rows = client
            .query("SELECT n, name FROM field_numbers", &[])
            .map_err(backend_error)?;
        let mut fields = self.fields();
        for row in rows {
            let (n, name): (i32, String) = (row.get(0), row.get(1));
            fields.by_name.insert(name.clone(), n);
            fields.by_number.insert(n, name);
        }
        fields
            .by_number
            .get(&number)
            .cloned()
            .ok_or_else(|| BackendError::Storage(format!("no field numbered {number}")))
    }

    fn fields(&self) -> std::sync::MutexGuard<'_, Fields> {
        self.fields
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The server's own device id.
    pub(crate) fn device(&self) -> DeviceId {
        self.device
    }
}

/// Makes the schema in an empty database (once, whichever process comes
/// first) and returns the server's key and device id (the key's, unless
/// the server was moved from one made before keys existed).
fn prepare_schema(connection: &mut Connection<'_>) -> Result<(DeviceKey, DeviceId)> {
    let mut tx = connection.client().transaction().map_err(backend_error)?;
    tx.execute("SELECT pg_advisory_xact_lock(7243, 0)", &[])
        .map_err(backend_error)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .map_err(backend_error)?
        .get(0);
    if !exists {
        tx.batch_execute(SCHEMA).map_err(backend_error)?;
        let key = DeviceKey::generate()
            .map_err(|error| BackendError::Internal(format!("making the server's key: {error}")))?;
        let clock = serde_json::to_string(&faenban_core::Clock::new())
            .map_err(|error| BackendError::Internal(error.to_string()))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1), ('server_key', $2), ('clock', $3)",
            &[&POSTGRES_SCHEMA_VERSION.to_string(), &key.seed_hex(), &clock],
        )
        .map_err(backend_error)?;
    }
    let version: Option<String> = tx
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .map_err(backend_error)?
        .map(|row| row.get(0));
    let version: i64 = version.and_then(|v| v.parse().ok()).unwrap_or(0);
    if version != POSTGRES_SCHEMA_VERSION {
        return Err(BackendError::Storage(format!(
            "the database has schema version {version}; this faenban-server reads version {POSTGRES_SCHEMA_VERSION}"
        )));
    }
    let seed: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'server_key'", &[])
        .map_err(backend_error)?
        .get(0);
    let key = DeviceKey::from_seed_hex(&seed)
        .ok_or_else(|| BackendError::Storage("the server's key is not 64 hex digits".into()))?;
    let device = tx
        .query_opt("SELECT value FROM meta WHERE key = 'server_device'", &[])
        .map_err(backend_error)?
        .map(|row| row.get::<_, String>(0));
    let device =
        match device {
            Some(text) => DeviceId(uuid::Uuid::parse_str(&text).map_err(|error| {
                BackendError::Storage(format!("the server's device id: {error}"))
            })?),
            None => key.device_id(),
        };
    tx.commit().map_err(backend_error)?;
    Ok((key, device))
}

/// The provinces whose partitions exist.
fn existing_provinces(connection: &mut Connection<'_>) -> Result<HashSet<i16>> {
    let rows = connection
        .client()
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'report_digests'",
            &[],
        )
        .map_err(backend_error)?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            row.get::<_, String>(0)
                .strip_prefix("report_digests_p")
                .and_then(|number| number.parse().ok())
        })
        .collect())
}

const ACCOUNT_COLUMNS: &str = "id, name, role, areas, dimension, created_ms, revoked_ms";

fn account_row(row: &postgres::Row) -> Result<Account> {
    let role: String = row.get(2);
    let areas: String = row.get(3);
    let dimension: Option<String> = row.get(4);
    let revoked: Option<i64> = row.get(6);
    let role = Role::from_name(&role)
        .ok_or_else(|| BackendError::Storage(format!("account role {role}")))?;
    Ok(Account {
        id: row.get(0),
        name: row.get(1),
        scope: Scope {
            role,
            areas: areas.split_whitespace().map(str::to_owned).collect(),
            dimension: dimension.as_deref().and_then(Dimension::from_key),
        },
        created_ms: row.get::<_, i64>(5) as u64,
        revoked_ms: revoked.map(|ms| ms as u64),
    })
}

fn refused(code: RefusalCode, message: impl Into<String>) -> BackendError {
    BackendError::Refused {
        code,
        message: message.into(),
    }
}

fn not_found(kind: &str, name: impl Into<String>) -> BackendError {
    BackendError::NotFound {
        kind: kind.into(),
        name: name.into(),
    }
}

/// An account's scope is one it can have ([`Scope::check_shape`]).
fn check_scope_shape(scope: &Scope) -> Result<()> {
    scope
        .check_shape()
        .map_err(|message| refused(RefusalCode::BadAccount, message))
}

fn insert_account(
    client: &mut Tx<'_>,
    name: &str,
    scope: &Scope,
    token_hash: &[u8],
    now_ms: u64,
) -> std::result::Result<Account, Failure> {
    let name = name.trim();
    if name.is_empty() {
        return Err(refused(RefusalCode::BadAccount, "an account needs a name").into());
    }
    check_scope_shape(scope)?;
    let row = client.query_opt(
        "INSERT INTO accounts (name, role, areas, dimension, token_hash, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id",
        &[
            &name,
            &scope.role.as_str(),
            &scope.areas.join(" "),
            &scope.dimension.map(Dimension::key),
            &token_hash,
            &(now_ms as i64),
        ],
    )?;
    let Some(row) = row else {
        return Err(refused(
            RefusalCode::BadAccount,
            format!("an account named `{name}` already exists"),
        )
        .into());
    };
    Ok(Account {
        id: row.get(0),
        name: name.to_owned(),
        scope: scope.clone(),
        created_ms: now_ms,
        revoked_ms: None,
    })
}

/// A device's binding: its account, whether that account is revoked, and
/// its key once bound.
pub(crate) struct DeviceOwner {
    pub(crate) account: i64,
    pub(crate) revoked: bool,
    pub(crate) key: Option<PublicKey>,
}

pub(crate) fn device_owner(
    client: &mut Tx<'_>,
    device: DeviceId,
) -> std::result::Result<Option<DeviceOwner>, Failure> {
    let row = client.query_opt(
        "SELECT d.account, a.revoked_ms IS NOT NULL, d.public_key FROM devices d \
         JOIN accounts a ON a.id = d.account WHERE d.device = $1",
        &[&device.0],
    )?;
    row.map(|row| {
        let key: Option<Vec<u8>> = row.get(2);
        let key = key
            .map(|bytes| {
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map(PublicKey)
                    .map_err(|_| BackendError::Storage(format!("the key of device {device}")))
            })
            .transpose()?;
        Ok(DeviceOwner {
            account: row.get(0),
            revoked: row.get(1),
            key,
        })
    })
    .transpose()
}

pub(crate) fn held_through(
    client: &mut Tx<'_>,
    device: DeviceId,
) -> std::result::Result<u64, postgres::Error> {
    let row = client.query_opt(
        "SELECT last_sequence FROM arrivals WHERE device = $1 \
         ORDER BY first_sequence DESC LIMIT 1",
        &[&device.0],
    )?;
    Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
}

pub(crate) fn refusals_between(
    client: &mut Tx<'_>,
    device: DeviceId,
    from: u64,
    through: u64,
) -> std::result::Result<Vec<HeldBack>, postgres::Error> {
    if from > through {
        return Ok(Vec::new());
    }
    let bound = |sequence: u64| i64::try_from(sequence).unwrap_or(i64::MAX);
    let rows = client.query(
        "SELECT sequence, code, message FROM refusals \
         WHERE device = $1 AND sequence BETWEEN $2 AND $3 ORDER BY sequence",
        &[&device.0, &bound(from), &bound(through)],
    )?;
    Ok(rows
        .iter()
        .map(|row| HeldBack {
            sequence: row.get::<_, i64>(0) as u64,
            error: row.get(1),
            message: row.get(2),
        })
        .collect())
}

/// The merged state of a record, if the database holds it.
pub(crate) fn stored_state(
    client: &mut Tx<'_>,
    key: &RecordKey,
) -> std::result::Result<Option<faenban_core::RecordState>, BackendError> {
    let row = client
        .query_opt(
            "SELECT r.state FROM record_numbers rn \
             JOIN records r ON r.n = rn.n AND r.province = rn.province \
             WHERE rn.kind = $1 AND rn.id = $2",
            &[&key.kind.as_str(), &key.id.0],
        )
        .map_err(backend_error)?;
    row.map(|row| decode_state(row.get(0))).transpose()
}

pub(crate) fn decode_state(bytes: &[u8]) -> Result<faenban_core::RecordState> {
    faenban_core::codec::decode_state(bytes)
        .map_err(|error| BackendError::Storage(format!("a record's state: {error}")))
}

impl Backend for PostgresBackend {
    fn account_by_token(&self, token_hash: &[u8]) -> Result<Option<Account>> {
        let mut connection = self.connection()?;
        let row = connection
            .client()
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE token_hash = $1"),
                &[&token_hash],
            )
            .map_err(backend_error)?;
        row.as_ref().map(account_row).transpose()
    }

    fn hello(
        &self,
        account: &Account,
        device: DeviceId,
        name: &str,
        key: &PublicKey,
        now_ms: u64,
    ) -> Result<u64> {
        if device == self.device {
            return Err(refused(
                RefusalCode::WrongDevice,
                "no laptop may claim the server's own device id",
            ));
        }
        self.retrying(|connection| {
            let mut tx = connection.transaction()?;
            let owner = device_owner(&mut tx, device)?;
            let key_makes_id = device_id_of(key) == device;
            let seen = owner.is_none()
                && !key_makes_id
                && tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM arrivals WHERE device = $1)",
                        &[&device.0],
                    )?
                    .get::<_, bool>(0);
            let bound = owner.as_ref().map(|owner| faenban_core::push::Bound {
                same_account: owner.account == account.id,
                revoked: owner.revoked,
                key_matches: owner.key.map(|bound| bound == *key),
            });
            let binding = faenban_core::push::hello_binding(device, bound, key_makes_id, seen)
                .map_err(|(code, message)| Failure::Final(refused(code, message)))?;
            match binding {
                faenban_core::push::HelloBinding::Known => {}
                faenban_core::push::HelloBinding::BindKey => {
                    tx.execute(
                        "UPDATE devices SET public_key = $2 WHERE device = $1",
                        &[&device.0, &key.0.as_slice()],
                    )?;
                }
                faenban_core::push::HelloBinding::Bind => {
                    tx.execute(
                        "INSERT INTO devices (device, account, name, first_seen_ms, public_key) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &device.0,
                            &account.id,
                            &name,
                            &(now_ms as i64),
                            &key.0.as_slice(),
                        ],
                    )?;
                }
            }
            let held = held_through(&mut tx, device)?;
            tx.commit()?;
            Ok(held)
        })
    }

    fn push(&self, account: &Account, input: PushInput, now_ms: u64) -> Result<PushOutcome> {
        self.waiting.write(
            account,
            input,
            || self.writers.iter().find_map(|slot| slot.try_lock().ok()),
            |_writer, pushes| self.push_group(pushes, now_ms),
        )
    }

    fn pull(
        &self,
        scope: &Scope,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PulledPage> {
        self.retrying(|connection| pull::pull(self, connection, scope, since, check, limit))
    }

    fn add_account(
        &self,
        name: &str,
        scope: &Scope,
        token_hash: &[u8],
        now_ms: u64,
    ) -> Result<Account> {
        self.retrying(|connection| {
            let mut tx = connection.transaction()?;
            let account = insert_account(&mut tx, name, scope, token_hash, now_ms)?;
            tx.commit()?;
            Ok(account)
        })
    }

    fn add_accounts(
        &self,
        accounts: &[(String, Scope, Vec<u8>)],
        now_ms: u64,
    ) -> Result<Vec<Account>> {
        self.retrying(|connection| {
            let mut tx = connection.transaction()?;
            let mut added = Vec::with_capacity(accounts.len());
            for (name, scope, token_hash) in accounts {
                added.push(insert_account(&mut tx, name, scope, token_hash, now_ms)?);
            }
            tx.commit()?;
            Ok(added)
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        let mut connection = self.connection()?;
        let rows = connection
            .client()
            .query(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"),
                &[],
            )
            .map_err(backend_error)?;
        rows.iter().map(account_row).collect()
    }

    fn revoke_account(&self, name: &str, now_ms: u64) -> Result<Account> {
        self.retrying(|connection| {
            let row = connection.client().query_opt(
                &format!(
                    "UPDATE accounts SET revoked_ms = COALESCE(revoked_ms, $2) WHERE name = $1 \
                     RETURNING {ACCOUNT_COLUMNS}"
                ),
                &[&name, &(now_ms as i64)],
            )?;
            let row = row.ok_or_else(|| not_found("account", name))?;
            Ok(account_row(&row)?)
        })
    }

    fn edit_account(&self, name: &str, scope: &Scope) -> Result<Account> {
        check_scope_shape(scope)?;
        self.retrying(|connection| {
            let row = connection.client().query_opt(
                &format!(
                    "UPDATE accounts SET role = $2, areas = $3, dimension = $4 WHERE name = $1 \
                     RETURNING {ACCOUNT_COLUMNS}"
                ),
                &[
                    &name,
                    &scope.role.as_str(),
                    &scope.areas.join(" "),
                    &scope.dimension.map(Dimension::key),
                ],
            )?;
            let row = row.ok_or_else(|| not_found("account", name))?;
            Ok(account_row(&row)?)
        })
    }

    fn release_device(&self, device: DeviceId) -> Result<()> {
        self.retrying(|connection| {
            let changed = connection
                .client()
                .execute("DELETE FROM devices WHERE device = $1", &[&device.0])?;
            if changed == 0 {
                return Err(not_found("device", device.to_string()).into());
            }
            Ok(())
        })
    }

    fn enroll_device(&self, device: DeviceId, account: &str) -> Result<()> {
        self.retrying(|connection| {
            let mut tx = connection.client().transaction()?;
            let id: i64 = tx
                .query_opt(
                    "SELECT id FROM accounts WHERE name = $1 AND revoked_ms IS NULL",
                    &[&account],
                )?
                .ok_or_else(|| not_found("active account", account))?
                .get(0);
            tx.execute(
                "INSERT INTO devices (device, account, name, first_seen_ms) VALUES ($1, $2, '', 0) \
                 ON CONFLICT (device) DO UPDATE SET account = excluded.account, public_key = NULL",
                &[&device.0, &id],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn devices(&self) -> Result<Vec<BoundDevice>> {
        let mut connection = self.connection()?;
        let rows = connection
            .client()
            .query(
                "SELECT d.device, a.name, d.name, d.public_key IS NOT NULL, d.first_seen_ms \
                 FROM devices d JOIN accounts a ON a.id = d.account ORDER BY a.name, d.first_seen_ms",
                &[],
            )
            .map_err(backend_error)?;
        Ok(rows
            .iter()
            .map(|row| BoundDevice {
                device: DeviceId(row.get(0)),
                account: row.get(1),
                name: row.get(2),
                has_key: row.get(3),
                first_seen_ms: row.get::<_, i64>(4) as u64,
            })
            .collect())
    }

    fn report(
        &self,
        areas: &faenban_core::areas::Areas,
        options: &ReportOptions,
    ) -> Result<Report> {
        self.reading_reports(|connection| {
            let mut tx = connection.snapshot().map_err(backend_error)?;
            // Only the area's digests are read (the core's report keeps only
            // them anyway): a province's report costs the same however many
            // provinces the database holds.
            let area = options.area.as_ref().map(|area| area.as_str());
            let digests = read_digests(&mut tx, area)?;
            Ok(report::build_from_digests(digests, areas, options))
        })
    }

    fn report_generation(&self) -> Result<u64> {
        self.reading_reports(|connection| {
            let last: i64 = connection
                .client()
                .query_one("SELECT last FROM feed_head", &[])
                .map_err(backend_error)?
                .get(0);
            Ok(last as u64)
        })
    }

    fn household_rows(
        &self,
        area: &faenban_core::codes::AreaCode,
        options: &ReportOptions,
    ) -> Result<Vec<(report::HouseholdRow, Vec<String>)>> {
        self.reading_reports(|connection| {
            let mut tx = connection.snapshot().map_err(backend_error)?;
            let digests = read_digests(&mut tx, Some(area.as_str()))?;
            let rows = report::household_rows(digests, area, options);
            report::with_official_names(rows, |key| stored_state(&mut tx, key))
        })
    }

    fn held_through(&self, device: DeviceId) -> Result<u64> {
        let mut connection = self.connection()?;
        let mut tx = connection.snapshot().map_err(backend_error)?;
        held_through(&mut tx, device).map_err(backend_error)
    }

    fn refusals_between(&self, device: DeviceId, from: u64, through: u64) -> Result<Vec<HeldBack>> {
        let mut connection = self.connection()?;
        let mut tx = connection.snapshot().map_err(backend_error)?;
        refusals_between(&mut tx, device, from, through).map_err(backend_error)
    }

    fn device_binding(&self, device: DeviceId) -> Result<Option<(Account, Option<PublicKey>)>> {
        let mut connection = self.connection()?;
        let mut tx = connection.snapshot().map_err(backend_error)?;
        let owner = match device_owner(&mut tx, device) {
            Ok(owner) => owner,
            Err(Failure::Final(error) | Failure::Again(error)) => return Err(error),
            Err(Failure::NeedsProvince(_)) => return Err(BackendError::Busy),
        };
        let Some(owner) = owner else {
            return Ok(None);
        };
        let row = tx
            .query_one(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
                &[&owner.account],
            )
            .map_err(backend_error)?;
        Ok(Some((account_row(&row)?, owner.key)))
    }

    fn schema_version(&self) -> i64 {
        faenban_store::SCHEMA_VERSION
    }

    fn server_key(&self) -> &DeviceKey {
        &self.key
    }
}

/// The digests of every household, or of those whose village starts with
/// `area`.
fn read_digests(client: &mut Tx<'_>, area: Option<&str>) -> Result<Vec<HouseholdDigest>> {
    let rows = match area {
        None => client.query("SELECT digest FROM report_digests", &[]),
        Some(area) => client.query(
            "SELECT digest FROM report_digests WHERE village LIKE $1 || '%'",
            &[&area],
        ),
    }
    .map_err(backend_error)?;
    rows.iter()
        .map(|row| {
            serde_json::from_str::<HouseholdDigest>(row.get(0))
                .map_err(|error| BackendError::Storage(format!("a report digest: {error}")))
        })
        .collect()
}
