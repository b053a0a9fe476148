//! The server's store behind a narrow interface: the HTTP layer speaks only
//! to [`Backend`], so that a PostgreSQL store can be added beside the
//! embedded SQLite one without touching the protocol.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use faenban_core::sync::Scope;
use faenban_core::DeviceId;
use faenban_core::RefusalCode;
use faenban_keys::{DeviceKey, PublicKey};
use faenban_store::server::{
    Account, BoundDevice, Hello, PulledPage, PushInput, PushOutcome, SignedPush,
};
use faenban_store::{Store, SCHEMA_VERSION};

use crate::group_commit::{GroupOutcome, WriteQueue};

/// What can go wrong in any backend, in the terms the HTTP layer answers
/// in: a refusal the client must act on, a store that cannot take the
/// request now (busy, read-only, full), or a failure inside. No store's
/// own error type crosses this line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The request was refused; nothing of it was stored.
    #[error("{message}")]
    Refused {
        /// Why, as a stable code.
        code: RefusalCode,
        /// What is wrong and what to do, in English.
        message: String,
    },
    /// A record an administrator named does not exist.
    #[error("no {kind} named {name}")]
    NotFound {
        /// `account` or `device`.
        kind: String,
        /// The name or id given.
        name: String,
    },
    /// Another writer holds the store; try again shortly.
    #[error("the store is in use by another process; close it or try again shortly")]
    Busy,
    /// The store cannot be written (read-only file, folder or replica).
    #[error("the store cannot be written (read-only)")]
    ReadOnly,
    /// The store cannot be reached now (a database restarting, a network
    /// between the server and it down); nothing was stored.
    #[error("the store cannot be reached: {0}")]
    Unavailable(String),
    /// The store's disk is full.
    #[error("the store's disk is full")]
    DiskFull,
    /// The store failed: damaged, or an I/O error.
    #[error("the store failed: {0}")]
    Storage(String),
    /// The program failed, not the store.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl From<faenban_store::Error> for BackendError {
    fn from(error: faenban_store::Error) -> BackendError {
        use faenban_store::Error as E;
        match error {
            E::Refused { code, message } => BackendError::Refused { code, message },
            E::RefusedRecords(refusals) => {
                let first = refusals.into_iter().next();
                BackendError::Refused {
                    code: first
                        .as_ref()
                        .map_or(RefusalCode::OutOfScope, |refusal| refusal.code),
                    message: first.map_or_else(String::new, |refusal| refusal.message),
                }
            }
            E::NotFound { kind, id } => BackendError::NotFound { kind, name: id },
            E::Locked => BackendError::Busy,
            E::ReadOnly => BackendError::ReadOnly,
            E::DiskFull => BackendError::DiskFull,
            E::Internal(what) => BackendError::Internal(what),
            other => BackendError::Storage(other.to_string()),
        }
    }
}

/// A backend's result.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// What the sync server needs from its store. Every method is blocking; the
/// HTTP layer calls them off the async runtime.
pub trait Backend: Send + Sync + 'static {
    /// The account whose token has this SHA-256, revoked or not.
    fn account_by_token(&self, token_hash: &[u8]) -> Result<Option<Account>>;
    /// Binds a device to an account at its first hello; how much of its
    /// outbox the server holds.
    fn hello(
        &self,
        account: &Account,
        device: DeviceId,
        name: &str,
        key: &PublicKey,
        now_ms: u64,
    ) -> Result<u64>;
    /// Applies a run of a device's outbox atomically and idempotently.
    fn push(&self, account: &Account, input: PushInput, now_ms: u64) -> Result<PushOutcome>;
    /// One page of the changes in scope after the cursor.
    fn pull(
        &self,
        scope: &Scope,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PulledPage>;
    /// Adds an account.
    fn add_account(
        &self,
        name: &str,
        scope: &Scope,
        token_hash: &[u8],
        now_ms: u64,
    ) -> Result<Account>;
    /// Adds several accounts, all or none.
    fn add_accounts(
        &self,
        accounts: &[(String, Scope, Vec<u8>)],
        now_ms: u64,
    ) -> Result<Vec<Account>>;
    /// Every account.
    fn accounts(&self) -> Result<Vec<Account>>;
    /// Revokes an account.
    fn revoke_account(&self, name: &str, now_ms: u64) -> Result<Account>;
    /// Changes what an account covers.
    fn edit_account(&self, name: &str, scope: &Scope) -> Result<Account>;
    /// Releases a device from its account and key; its next hello binds it.
    fn release_device(&self, device: DeviceId) -> Result<()>;
    /// Binds a device to an account by the administrator's choice,
    /// releasing its key.
    fn enroll_device(&self, device: DeviceId, account: &str) -> Result<()>;
    /// Every device bound to an account.
    fn devices(&self) -> Result<Vec<BoundDevice>>;
    /// The report (`docs/report.md`) of every household the server holds,
    /// as `options` asks.
    fn report(
        &self,
        areas: &faenban_core::areas::Areas,
        options: &faenban_core::report::ReportOptions,
    ) -> Result<faenban_core::report::Report>;
    /// A number that changes whenever a push may have changed a report.
    fn report_generation(&self) -> Result<u64>;
    /// The households of an area as the office lists them, with the names
    /// of their officials.
    fn household_rows(
        &self,
        area: &faenban_core::codes::AreaCode,
        options: &faenban_core::report::ReportOptions,
    ) -> Result<Vec<(faenban_core::report::HouseholdRow, Vec<String>)>>;
    /// How much of a device's outbox the server holds.
    fn held_through(&self, device: DeviceId) -> Result<u64>;
    /// The held-back sequences of a device's outbox in `from..=through`.
    fn refusals_between(
        &self,
        device: DeviceId,
        from: u64,
        through: u64,
    ) -> Result<Vec<faenban_core::sync::HeldBack>>;
    /// The account a device is bound to, and its bound key.
    fn device_binding(&self, device: DeviceId) -> Result<Option<(Account, Option<PublicKey>)>>;
    /// The store's schema version.
    fn schema_version(&self) -> i64;
    /// The server's own key, which signs acknowledgements.
    fn server_key(&self) -> &DeviceKey;
}

/// The embedded store: one SQLite file, one writer and a few readers (WAL
/// lets pulls read while a push writes).
#[derive(Debug)]
pub struct SqliteBackend {
    writer: Arc<Mutex<Store>>,
    readers: Arc<Vec<Mutex<Store>>>,
    /// Counts store calls, so that the background thread can tell the
    /// server has gone quiet.
    calls: Arc<AtomicUsize>,
    next_reader: AtomicUsize,
    path: PathBuf,
    /// Groups committed, for the log-length check.
    pushes: AtomicUsize,
    /// Pushes waiting for the writer, their signatures checked.
    waiting: WriteQueue<SignedPush>,
    /// Hellos with a binding to make, waiting for the writer.
    hellos: WriteQueue<Hello, u64>,
    key: DeviceKey,
    _checkpointer: Checkpointer,
}

/// Applies a group of pushes with the writer, then now and then truncates
/// a long write-ahead log.
fn apply_group(
    backend: &SqliteBackend,
    mut writer: std::sync::MutexGuard<'_, Store>,
    pushes: Vec<(Account, SignedPush)>,
    now_ms: u64,
) -> GroupOutcome {
    let outcome = writer
        .push_group(pushes, now_ms)
        .map(answers_from_store)
        .map_err(BackendError::from);
    let before = backend.pushes.fetch_add(1, Ordering::Relaxed);
    if before.is_multiple_of(PUSHES_PER_LOG_CHECK) {
        if let Err(error) = writer.checkpoint(MAX_LOG_PAGES) {
            // A reader in the way: the next check tries again.
            tracing::debug!(%error, "log not truncated this time");
        }
    }
    outcome
}

/// A group's answers, each in the backend's terms.
fn answers_from_store<A>(answers: Vec<faenban_store::Result<A>>) -> Vec<Result<A>> {
    answers
        .into_iter()
        .map(|answer| answer.map_err(BackendError::from))
        .collect()
}

/// Gives back the connections' cache memory once the server is quiet: a
/// burst of syncs warms the caches up to their bounds, and without this the
/// process would keep that memory until the next burst.
struct IdleRelease {
    writer: Arc<Mutex<Store>>,
    readers: Arc<Vec<Mutex<Store>>>,
    calls: Arc<AtomicUsize>,
}

impl IdleRelease {
    /// `seen`: the call count last seen, since when, and whether the
    /// memory was already given back for it.
    fn release_when_quiet(&self, seen: &mut (usize, std::time::Instant, bool)) {
        let calls = self.calls.load(Ordering::Relaxed);
        if calls != seen.0 {
            *seen = (calls, std::time::Instant::now(), false);
            return;
        }
        if seen.2 || seen.1.elapsed() < IDLE_BEFORE_RELEASE {
            return;
        }
        // Only connections nobody holds: a call that starts meanwhile is
        // never kept waiting for this.
        let stores = std::iter::once(&*self.writer).chain(self.readers.iter());
        for store in stores {
            if let Ok(store) = store.try_lock() {
                if let Err(error) = store.release_memory() {
                    tracing::debug!(%error, "cache memory not given back this time");
                }
            }
        }
        // What SQLite and the requests freed stays in the allocator's arenas
        // until it is asked for.
        let given_back = crate::memory::give_back_freed();
        tracing::debug!(given_back, "memory given back after a quiet spell");
        seen.2 = true;
    }
}

/// Copies the write-ahead log into the database in the background, so that
/// no push pays for it.
#[derive(Debug)]
struct Checkpointer {
    /// Dropped to stop the thread at once (not at its next tick: an
    /// `account add` would otherwise wait for it).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long the write-ahead log may grow (in 4 KiB pages, 256 MiB) before
/// the writer, between two pushes, copies the rest of it into the database
/// and truncates it. The background checkpoint has copied most of it by
/// then, so the pause is short.
const MAX_LOG_PAGES: i64 = 65_536;

/// The writer looks at the log's length after this many commits.
const PUSHES_PER_LOG_CHECK: usize = 32;

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The database file inside the server's data folder.
pub const DATABASE_FILE: &str = "faenban-server.db";

/// How long the server must have had no store call before it gives back
/// the memory its connections' page caches hold (after a burst of syncs,
/// say); the next burst warms them again.
const IDLE_BEFORE_RELEASE: Duration = Duration::from_secs(5);

/// How many read connections serve pulls.
const READERS: usize = 4;

impl SqliteBackend {
    /// Opens (creating if needed) the server's store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteBackend> {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| BackendError::Internal(format!("data folder: {error}")))?;
        let path = data_dir.join(DATABASE_FILE);
        let mut writer = Store::open(&path)?.without_search_index();
        if writer.device()?.is_none() {
            let key = DeviceKey::generate().map_err(|error| {
                BackendError::Internal(format!("making the server's key: {error}"))
            })?;
            writer.init("server", &key)?;
        }
        let key = writer
            .device_key()?
            .ok_or_else(|| BackendError::Storage("the server has no key".into()))?;
        // The writer keeps the pages it merges into hot; checkpoints happen
        // on their own thread.
        writer.pragma("cache_size", -65_536)?;
        writer.pragma("wal_autocheckpoint", 0)?;
        // A push the server acknowledged must survive a power cut: the
        // laptop drops its copy on the acknowledgement.
        writer.pragma("synchronous", 2)?;
        // Each push runs under savepoints, which copy every page they change
        // first to a statement journal; past 64 KiB SQLite spills that
        // journal to a temporary file, written at every push. Kept in
        // memory it is bounded by the pages one push changes.
        writer.pragma("temp_store", 2)?;
        let readers: Arc<Vec<Mutex<Store>>> = Arc::new(
            (0..READERS)
                .map(|_| {
                    let reader = Store::open(&path)?;
                    reader.pragma("cache_size", -8_192)?;
                    Ok(Mutex::new(reader))
                })
                .collect::<Result<_>>()?,
        );
        let writer = Arc::new(Mutex::new(writer));
        let calls = Arc::new(AtomicUsize::new(0));
        let idle = IdleRelease {
            writer: writer.clone(),
            readers: readers.clone(),
            calls: calls.clone(),
        };
        let checkpoints = Store::open(&path)?;
        checkpoints.pragma("cache_size", -1_024)?;
        let (stop, stopping) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let mut seen = (usize::MAX, std::time::Instant::now(), false);
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopping.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(error) = checkpoints.checkpoint(i64::MAX) {
                        tracing::warn!(%error, "checkpoint failed; will retry");
                    }
                    idle.release_when_quiet(&mut seen);
                }
                let _ = checkpoints.checkpoint(i64::MAX);
            })
            .map_err(|error| BackendError::Internal(format!("checkpoint thread: {error}")))?;
        Ok(SqliteBackend {
            writer,
            readers,
            calls,
            next_reader: AtomicUsize::new(0),
            path,
            pushes: AtomicUsize::new(0),
            waiting: WriteQueue::default(),
            hellos: WriteQueue::default(),
            key,
            _checkpointer: Checkpointer {
                stop: Some(stop),
                thread: Some(thread),
            },
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether pushes keep the report's household digests current (the
    /// default; see [`Store::keep_report_digests`]).
    pub fn keep_report_digests(&self, keep: bool) {
        self.writer().keep_report_digests(keep);
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Store> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // A panic while holding the lock left no transaction open (rusqlite
        // rolls back on drop), so the store is still sound.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer, if no one holds it.
    fn try_writer(&self) -> Option<std::sync::MutexGuard<'_, Store>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            // As in `writer`: a panic left no transaction open.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Store> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.readers.len() {
            let reader = &self.readers[(start + offset) % self.readers.len()];
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        let reader = &self.readers[start % self.readers.len()];
        reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Backend for SqliteBackend {
    fn account_by_token(&self, token_hash: &[u8]) -> Result<Option<Account>> {
        Ok(self.reader().account_by_token(token_hash)?)
    }

    fn hello(
        &self,
        account: &Account,
        device: DeviceId,
        name: &str,
        key: &PublicKey,
        now_ms: u64,
    ) -> Result<u64> {
        // Most hellos are of devices bound long ago: they are answered by
        // a reader, and only a binding waits for the writer and its commit.
        if let Some(held) = self.reader().hello_if_known(account, device, key)? {
            return Ok(held);
        }
        let hello = Hello {
            device,
            name: name.to_owned(),
            key: *key,
        };
        self.hellos.write(
            account,
            hello,
            || self.try_writer(),
            |mut writer, hellos| {
                writer
                    .hello_group(hellos, now_ms)
                    .map(answers_from_store)
                    .map_err(BackendError::from)
            },
        )
    }

    fn push(&self, account: &Account, input: PushInput, now_ms: u64) -> Result<PushOutcome> {
        // The signature is checked here, on this request's thread, so that
        // the writer, which all pushes wait for, spends no time on it.
        let key = self.reader().expected_push_key(account, &input)?;
        let push = SignedPush::check(input, key);
        self.waiting.write(
            account,
            push,
            || self.try_writer(),
            |writer, pushes| apply_group(self, writer, pushes, now_ms),
        )
    }

    fn pull(
        &self,
        scope: &Scope,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PulledPage> {
        Ok(self.reader().pull(scope, since, check, limit)?)
    }

    fn add_account(
        &self,
        name: &str,
        scope: &Scope,
        token_hash: &[u8],
        now_ms: u64,
    ) -> Result<Account> {
        Ok(self.writer().add_account(name, scope, token_hash, now_ms)?)
    }

    fn add_accounts(
        &self,
        accounts: &[(String, Scope, Vec<u8>)],
        now_ms: u64,
    ) -> Result<Vec<Account>> {
        Ok(self.writer().add_accounts(accounts, now_ms)?)
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.reader().accounts()?)
    }

    fn revoke_account(&self, name: &str, now_ms: u64) -> Result<Account> {
        Ok(self.writer().revoke_account(name, now_ms)?)
    }

    fn edit_account(&self, name: &str, scope: &Scope) -> Result<Account> {
        Ok(self.writer().edit_account(name, scope)?)
    }

    fn release_device(&self, device: DeviceId) -> Result<()> {
        Ok(self.writer().release_device(device)?)
    }

    fn enroll_device(&self, device: DeviceId, account: &str) -> Result<()> {
        Ok(self.writer().enroll_device(device, account)?)
    }

    fn devices(&self) -> Result<Vec<BoundDevice>> {
        Ok(self.reader().devices()?)
    }

    fn report(
        &self,
        areas: &faenban_core::areas::Areas,
        options: &faenban_core::report::ReportOptions,
    ) -> Result<faenban_core::report::Report> {
        Ok(self.reader().report(areas, options)?)
    }

    fn report_generation(&self) -> Result<u64> {
        Ok(self.reader().feed_head()?)
    }

    fn household_rows(
        &self,
        area: &faenban_core::codes::AreaCode,
        options: &faenban_core::report::ReportOptions,
    ) -> Result<Vec<(faenban_core::report::HouseholdRow, Vec<String>)>> {
        Ok(self.reader().household_rows(area, options)?)
    }

    fn held_through(&self, device: DeviceId) -> Result<u64> {
        Ok(self.reader().held_through(device)?)
    }

    fn refusals_between(
        &self,
        device: DeviceId,
        from: u64,
        through: u64,
    ) -> Result<Vec<faenban_core::sync::HeldBack>> {
        Ok(self.reader().refusals_between(device, from, through)?)
    }

    fn device_binding(&self, device: DeviceId) -> Result<Option<(Account, Option<PublicKey>)>> {
        Ok(self.reader().device_binding(device)?)
    }

    fn schema_version(&self) -> i64 {
        SCHEMA_VERSION
    }

    fn server_key(&self) -> &DeviceKey {
        &self.key
    }
}
