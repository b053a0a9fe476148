//! A small pool of PostgreSQL connections: a request waits a bounded time
//! for one, then is answered "busy" instead of hanging; a connection that
//! broke (the database restarted) is dropped and a new one made.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, Result};

/// The pool's shape.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// At most this many connections.
    pub size: usize,
    /// How long a request waits for a connection before it is answered
    /// "busy".
    pub wait: Duration,
    /// How long making a connection may take.
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            size: 8,
            wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The connections, idle or lent.
pub(crate) struct Pool {
    config: postgres::Config,
    options: PoolOptions,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Pool")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct PoolState {
    idle: Vec<(postgres::Client, Statements)>,
    /// Connections lent or being made.
    lent: usize,
}

/// A connection lent by the pool, given back when dropped (unless it
/// broke).
pub(crate) struct Connection<'p> {
    client: Option<postgres::Client>,
    statements: Statements,
    pool: &'p Pool,
}

/// The statements a connection has prepared, by their text: each is parsed
/// and planned once per connection, not at every call.
#[derive(Default)]
pub(crate) struct Statements(std::collections::HashMap<String, postgres::Statement>);

impl Statements {
    fn get(
        &mut self,
        client: &mut impl postgres::GenericClient,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

/// A transaction on a lent connection, whose statements are prepared once
/// per connection.
pub(crate) struct Tx<'c> {
    tx: postgres::Transaction<'c>,
    statements: &'c mut Statements,
}

impl Tx<'_> {
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let statement = self.statements.get(&mut self.tx, sql)?;
        self.tx.query(&statement, params)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<postgres::Row, postgres::Error> {
        let statement = self.statements.get(&mut self.tx, sql)?;
        self.tx.query_one(&statement, params)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<postgres::Row>, postgres::Error> {
        let statement = self.statements.get(&mut self.tx, sql)?;
        self.tx.query_opt(&statement, params)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.statements.get(&mut self.tx, sql)?;
        self.tx.execute(&statement, params)
    }

    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }

    pub(crate) fn savepoint(&mut self, name: &str) -> Result<Tx<'_>, postgres::Error> {
        Ok(Tx {
            tx: self.tx.savepoint(name)?,
            statements: &mut *self.statements,
        })
    }

    pub(crate) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }

    pub(crate) fn rollback(self) -> Result<(), postgres::Error> {
        self.tx.rollback()
    }
}

impl Connection<'_> {
    /// The connection's client.
    pub(crate) fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("a lent connection holds its client")
    }

    /// A transaction (read committed).
    pub(crate) fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let client = self
            .client
            .as_mut()
            .expect("a lent connection holds its client");
        Ok(Tx {
            tx: client.transaction()?,
            statements: &mut self.statements,
        })
    }

    /// A read-only transaction on one snapshot.
    pub(crate) fn snapshot(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let client = self
            .client
            .as_mut()
            .expect("a lent connection holds its client");
        Ok(Tx {
            tx: client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?,
            statements: &mut self.statements,
        })
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let client = self.client.take();
        let statements = std::mem::take(&mut self.statements);
        let mut state = self.pool.lock();
        state.lent -= 1;
        state.idle.extend(
            client
                .filter(|client| !client.is_closed())
                .map(|client| (client, statements)),
        );
        drop(state);
        self.pool.returned.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing a client blocks on the client's own runtime, which must
        // not happen on a thread that drives async tasks (a backend may be
        // dropped at the end of an async `main` or test).
        let idle = std::mem::take(&mut self.lock().idle);
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

impl Pool {
    pub(crate) fn new(url: &str, options: PoolOptions) -> Result<Pool> {
        let mut config: postgres::Config = url.parse().map_err(|error| {
            BackendError::Internal(format!(
                "the PostgreSQL address {url:?} does not read: {error}"
            ))
        })?;
        config.connect_timeout(options.connect_timeout);
        config.application_name("faenban-server");
        Ok(Pool {
            config,
            options,
            state: Mutex::new(PoolState::default()),
            returned: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection: an idle one, a new one if the pool has room, or the
    /// first given back within [`PoolOptions::wait`].
    pub(crate) fn get(&self) -> Result<Connection<'_>> {
        let deadline = Instant::now() + self.options.wait;
        let mut state = self.lock();
        loop {
            while let Some((client, statements)) = state.idle.pop() {
                if !client.is_closed() {
                    state.lent += 1;
                    return Ok(Connection {
                        client: Some(client),
                        statements,
                        pool: self,
                    });
                }
            }
            if state.lent < self.options.size {
                state.lent += 1;
                drop(state);
                return match self.config.connect(postgres::NoTls) {
                    Ok(client) => Ok(Connection {
                        client: Some(client),
                        statements: Statements::default(),
                        pool: self,
                    }),
                    Err(error) => {
                        self.lock().lent -= 1;
                        self.returned.notify_one();
                        Err(BackendError::Unavailable(super::with_cause(&error)))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BackendError::Busy);
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}
