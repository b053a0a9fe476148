//! The server's side of the store: accounts, devices, atomic idempotent
//! pushes keyed (device, sequence), the numbered feed that pulls page
//! through, and where each household is, for scope.
//!
//! The server's database is a faenban database like a laptop's (the same
//! change log and merged records, merged by the same core), initialized with
//! the server's own device id, which stamps the changes it re-stamps.

use std::collections::HashMap;

use faenban_core::push::{self, Announce, Holdings as _};
use faenban_core::sync::{ChangeSetBuilder, HeldBack, HouseholdPlace, Role, Scope};
use faenban_core::{
    normalize_arrival, Change, DeviceId, Dimension, Outcome, RecordId, RecordKey, RecordKind,
    RefusalCode,
};
use faenban_keys::{device_id_of, PublicKey, Signature};
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::Value;

use crate::error::{refused, Error, Result};
use crate::{Session, Store};

/// An account, as the server keeps it (without its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Its number.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// What it covers.
    pub scope: Scope,
    /// When it was made.
    pub created_ms: u64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<u64>,
}

/// One device's outbox run, as pushed.
#[derive(Clone, Debug, PartialEq)]
pub struct PushInput {
    /// Whose outbox.
    pub device: DeviceId,
    /// Passed on from a bundle by another device.
    pub relay: bool,
    /// The sequence of the first change.
    pub first_sequence: u64,
    /// The changes, sequences `first_sequence`, `first_sequence + 1`, ….
    pub changes: Vec<Change>,
    /// The device's signature over exactly these changes.
    pub signature: Signature,
    /// The device's public key, sent with a relayed outbox of a device the
    /// server does not know.
    pub public_key: Option<PublicKey>,
}

/// A push on its way to the writer, with the key its signature was
/// already found good by, if it was. Checking a signature is the costliest
/// step of a small push that needs no database; done before the writer, it
/// runs beside the writer's work rather than inside it. The writer still
/// decides which key the run must be signed by, and checks the signature
/// again unless it was found good by that very key.
#[derive(Clone, Debug)]
pub struct SignedPush {
    input: PushInput,
    good_by: Option<PublicKey>,
}

impl SignedPush {
    /// Checks `input`'s signature by `key` (the key the writer is expected
    /// to name; see [`Store::expected_push_key`]). A signature that is not
    /// good by it is left for the writer to check and refuse.
    pub fn check(input: PushInput, key: Option<PublicKey>) -> SignedPush {
        let good_by = key.filter(|key| {
            key.verifies_run(
                input.device,
                input.first_sequence,
                &input.changes,
                &input.signature,
            )
        });
        SignedPush { input, good_by }
    }

    /// The push as sent.
    pub fn input(&self) -> &PushInput {
        &self.input
    }
}

/// A push not checked yet: the writer checks its signature.
impl From<PushInput> for SignedPush {
    fn from(input: PushInput) -> SignedPush {
        SignedPush {
            input,
            good_by: None,
        }
    }
}

/// A device's hello, as [`Store::hello_group`] takes it.
#[derive(Clone, Debug)]
pub struct Hello {
    /// The device.
    pub device: DeviceId,
    /// The name it gives itself.
    pub name: String,
    /// Its public key, its possession proved by the hello.
    pub key: PublicKey,
}

/// A device bound to an account, as `device list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundDevice {
    /// The device.
    pub device: DeviceId,
    /// The account's name.
    pub account: String,
    /// The name given at its first hello.
    pub name: String,
    /// Whether its key is bound yet.
    pub has_key: bool,
    /// When it first said hello.
    pub first_seen_ms: u64,
}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// The highest sequence of the device's outbox now held.
    pub held_through: u64,
    /// Changes new to the server.
    pub applied: u32,
    /// Changes it already held.
    pub duplicates: u32,
    /// Changes re-stamped because their clock was in the future.
    pub restamped: u32,
    /// Sequences up to `held_through` refused for what they say and not
    /// applied, with the reason.
    pub held_back: Vec<HeldBack>,
}

/// One page of a pull.
#[derive(Debug)]
pub struct PulledPage {
    /// Who the devices of the page's changes are.
    pub devices: Vec<faenban_core::sync::DeviceName>,
    /// The changes in scope, in feed order, in wire form.
    pub changes: faenban_core::sync::ChangeSet,
    /// The cursor to ask from next.
    pub next: u64,
    /// True when the feed goes on past `next`.
    pub more: bool,
    /// What identifies the entry at `next`, to send back with it.
    pub check: Option<String>,
}

/// A pull page stops once its changes pass about this many bytes (as
/// stored, with their columns): a page of a thousand large notes must not
/// hold the server's memory, whatever `limit` a client asks for.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// How many feed rows one pull page may read past, in scope or not, so that
/// a narrow scope on a large feed still answers promptly.
const SCAN_PER_PAGE: usize = 50_000;

impl Store {
    /// Adds an account; `token_hash` is the SHA-256 of its token.
    pub fn add_account(
        &mut self,
        name: &str,
        scope: &Scope,
        token_hash: &[u8],
        now_ms: u64,
    ) -> Result<Account> {
        let name = name.trim();
        if name.is_empty() {
            return Err(refused(RefusalCode::BadAccount, "an account needs a name"));
        }
        check_scope_shape(scope)?;
        let exists: bool = self.connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE name = ?1)",
            [name],
            |row| row.get(0),
        )?;
        if exists {
            return Err(refused(
                RefusalCode::BadAccount,
                format!("an account named `{name}` already exists"),
            ));
        }
        self.connection.execute(
            "INSERT INTO accounts (name, role, areas, dimension, token_hash, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                scope.role.as_str(),
                scope.areas.join(" "),
                scope.dimension.map(Dimension::key),
                token_hash,
                now_ms as i64
            ],
        )?;
        Ok(Account {
            id: self.connection.last_insert_rowid(),
            name: name.to_owned(),
            scope: scope.clone(),
            created_ms: now_ms,
            revoked_ms: None,
        })
    }

    /// Adds several accounts, all or none (an office setting up a
    /// programme from one list).
    pub fn add_accounts(
        &mut self,
        accounts: &[(String, Scope, Vec<u8>)],
        now_ms: u64,
    ) -> Result<Vec<Account>> {
        self.connection.execute_batch("BEGIN IMMEDIATE")?;
        let mut added = Vec::with_capacity(accounts.len());
        for (name, scope, token_hash) in accounts {
            match self.add_account(name, scope, token_hash, now_ms) {
                Ok(account) => added.push(account),
                Err(error) => {
                    self.connection.execute_batch("ROLLBACK")?;
                    return Err(error);
                }
            }
        }
        self.connection.execute_batch("COMMIT")?;
        Ok(added)
    }

    /// Every account, in the order they were made.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"
        ))?;
        let rows = statement.query_map([], account_row)?;
        rows.map(|row| row.map_err(Error::from).and_then(|account| account))
            .collect()
    }

    /// The account with this token hash, revoked or not.
    pub fn account_by_token(&self, token_hash: &[u8]) -> Result<Option<Account>> {
        self.connection
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE token_hash = ?1"
            ))?
            .query_row([token_hash], account_row)
            .optional()?
            .transpose()
    }

    /// Revokes an account by name: its token stops working at once.
    pub fn revoke_account(&mut self, name: &str, now_ms: u64) -> Result<Account> {
        let changed = self.connection.execute(
            "UPDATE accounts SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE name = ?1",
            params![name, now_ms as i64],
        )?;
        if changed == 0 {
            return Err(Error::NotFound {
                kind: "account".into(),
                id: name.into(),
            });
        }
        let account = self.connection.query_row(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?1"),
            [name],
            account_row,
        )??;
        Ok(account)
    }

    /// A device introduces itself with the public key whose possession
    /// the caller has verified (the hello's proof). It is bound to the
    /// account at its first hello, with its key; from then on it is
    /// claimed only with that key and that account. A device bound before
    /// keys existed binds its key at its next hello, under the account it
    /// is bound to. Returns the highest sequence of its outbox the server
    /// holds.
    pub fn hello(
        &mut self,
        account: &Account,
        device: DeviceId,
        name: &str,
        key: &PublicKey,
        now_ms: u64,
    ) -> Result<u64> {
        let hello = Hello {
            device,
            name: name.to_owned(),
            key: *key,
        };
        let mut answers = self.hello_group(vec![(account.clone(), hello)], now_ms)?;
        answers
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a hello went unanswered".into())))
    }

    /// Several devices' hellos (see [`Store::hello`]) in one transaction
    /// and one commit, answered in the order given. A refused hello writes
    /// nothing and the others go on; a failure of the database fails them
    /// all, and nothing of the group is kept.
    pub fn hello_group(
        &mut self,
        hellos: Vec<(Account, Hello)>,
        now_ms: u64,
    ) -> Result<Vec<Result<u64>>> {
        let own = self.device()?.map(|own| own.id);
        let tx = self.connection.transaction()?;
        let mut answers = Vec::with_capacity(hellos.len());
        for (account, hello) in &hellos {
            // A refusal comes before any write of its hello, so the others'
            // writes are all the transaction holds.
            match hello_in(&tx, own, account, hello, now_ms) {
                Err(refusal @ Error::Refused { .. }) => answers.push(Err(refusal)),
                answer => answers.push(Ok(answer?)),
            }
        }
        tx.commit()?;
        Ok(answers)
    }

    /// A hello that writes nothing, answered from a reader: `Some` with
    /// the highest sequence held when the device is already bound to this
    /// account with this key (most hellos); `None` when the hello has a
    /// binding to make, which only [`Store::hello`] on the writer does. A
    /// hello the rule refuses is refused here as there.
    pub fn hello_if_known(
        &self,
        account: &Account,
        device: DeviceId,
        key: &PublicKey,
    ) -> Result<Option<u64>> {
        refuse_own_device(self.device()?.map(|own| own.id), device)?;
        let snapshot = self.connection.unchecked_transaction()?;
        Ok(match hello_binding(&snapshot, account, device, key)? {
            push::HelloBinding::Known => Some(held_through(&snapshot, device)?),
            push::HelloBinding::BindKey | push::HelloBinding::Bind => None,
        })
    }

    /// Binds a device to an account, by the administrator's deliberate
    /// choice (a laptop whose account was revoked and that goes to another
    /// person, say). Its key is released: the device's next hello under
    /// that account binds the key it proves.
    pub fn enroll_device(&mut self, device: DeviceId, account_name: &str) -> Result<()> {
        let tx = self.connection.transaction()?;
        let account: Option<i64> = tx
            .prepare_cached("SELECT id FROM accounts WHERE name = ?1 AND revoked_ms IS NULL")?
            .query_row([account_name], |row| row.get(0))
            .optional()?;
        let Some(account) = account else {
            return Err(Error::NotFound {
                kind: "active account".into(),
                id: account_name.into(),
            });
        };
        let changed = tx.execute(
            "UPDATE devices SET account = ?2, public_key = NULL WHERE device = ?1",
            params![device.to_string(), account],
        )?;
        if changed == 0 {
            tx.execute(
                "INSERT INTO devices (device, account, name, first_seen_ms) VALUES (?1, ?2, '', 0)",
                params![device.to_string(), account],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Changes what an account covers (its role, areas and dimension):
    /// from its next push and pull on. What its devices set aside can then
    /// be sent again (`faenban outbox retry`).
    pub fn edit_account(&mut self, name: &str, scope: &Scope) -> Result<Account> {
        check_scope_shape(scope)?;
        let changed = self.connection.execute(
            "UPDATE accounts SET role = ?2, areas = ?3, dimension = ?4 WHERE name = ?1",
            params![
                name,
                scope.role.as_str(),
                scope.areas.join(" "),
                scope.dimension.map(Dimension::key)
            ],
        )?;
        if changed == 0 {
            return Err(Error::NotFound {
                kind: "account".into(),
                id: name.into(),
            });
        }
        self.connection.query_row(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?1"),
            [name],
            account_row,
        )?
    }

    /// Releases a device from its account and its key: its next hello
    /// binds it again, under whichever account's token it says hello
    /// with. What the server holds of its outbox stays, so the device goes
    /// on where it was and loses nothing.
    pub fn release_device(&mut self, device: DeviceId) -> Result<()> {
        let changed = self.connection.execute(
            "DELETE FROM devices WHERE device = ?1",
            [device.to_string()],
        )?;
        if changed == 0 {
            return Err(Error::NotFound {
                kind: "device".into(),
                id: device.to_string(),
            });
        }
        Ok(())
    }

    /// Every device bound to an account.
    pub fn devices(&self) -> Result<Vec<BoundDevice>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT d.device, a.name, d.name, d.public_key IS NOT NULL, d.first_seen_ms \
             FROM devices d JOIN accounts a ON a.id = d.account ORDER BY a.name, d.first_seen_ms",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (device, account, name, has_key, first_seen_ms) = row?;
            Ok(BoundDevice {
                device: crate::sync::parse_device(&device)?,
                account,
                name,
                has_key,
                first_seen_ms: first_seen_ms as u64,
            })
        })
        .collect()
    }

    /// The account a device is bound to, and the key it bound (none for a
    /// device bound before keys that has not said hello since).
    pub fn device_binding(&self, device: DeviceId) -> Result<Option<(Account, Option<PublicKey>)>> {
        let Some(owner) = device_owner(&self.connection, device)? else {
            return Ok(None);
        };
        let account = self
            .connection
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
            ))?
            .query_row([owner.account], account_row)??;
        Ok(Some((account, owner.key)))
    }

    /// The sequences of a device's outbox from `from` through `through`
    /// that the server held back, with their reasons.
    pub fn refusals_between(
        &self,
        device: DeviceId,
        from: u64,
        through: u64,
    ) -> Result<Vec<HeldBack>> {
        refusals_between(&self.connection, device, from, through)
    }

    /// How much of a device's outbox the server holds.
    pub fn held_through(&self, device: DeviceId) -> Result<u64> {
        held_through(&self.connection, device)
    }

    /// Takes runs of devices' outboxes (one push each), each all or nothing:
    /// every change of a push is checked (device, author, sequence, scope)
    /// before any is applied, and a refused push is rolled back to where it
    /// began while the others go on. Changes the server already holds are
    /// recognized by (device, sequence) and skipped. All go in one
    /// transaction: one commit, and one `fsync`, serve them all. The results
    /// are in the order of `pushes`.
    pub fn push_group(
        &mut self,
        pushes: Vec<(Account, impl Into<SignedPush>)>,
        server_wall_ms: u64,
    ) -> Result<Vec<Result<PushOutcome>>> {
        self.write_group(server_wall_ms, pushes, |session, (account, push)| {
            push_in(session, &account, push.into(), server_wall_ms)
        })
    }

    /// The key a push of `input` by `account` must be signed by, as this
    /// connection sees the devices now; `None` when the push would be
    /// refused (the writer refuses it, with the reason). For
    /// [`SignedPush::check`], on a reader.
    pub fn expected_push_key(
        &self,
        account: &Account,
        input: &PushInput,
    ) -> Result<Option<PublicKey>> {
        let snapshot = self.connection.unchecked_transaction()?;
        match push_key_and_scope(&snapshot, account, input) {
            Ok((key, _)) => Ok(Some(key)),
            Err(Error::Refused { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The number of the feed's last entry (0 when empty): every push that
    /// changes a record adds to the feed, so a report computed at one head
    /// holds until the head moves.
    pub fn feed_head(&self) -> Result<u64> {
        let last: Option<i64> = self
            .connection
            .prepare_cached("SELECT MAX(seq) FROM feed")?
            .query_row([], |row| row.get(0))?;
        Ok(last.unwrap_or(0) as u64)
    }

    /// One page of the changes in `scope` after `since`, at most `limit`,
    /// read from one snapshot of the database.
    ///
    /// `check` is what the previous page said of its cursor: if the entry
    /// at `since` is not the one it was (the server was restored from a
    /// backup and numbered other changes since), the pull is refused as
    /// `cursor_ahead` rather than skipping what was numbered again.
    pub fn pull(
        &self,
        scope: &Scope,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PulledPage> {
        let snapshot = self.connection.unchecked_transaction()?;
        let last: Option<i64> = snapshot
            .prepare_cached("SELECT MAX(seq) FROM feed")?
            .query_row([], |row| row.get(0))?;
        let last = last.unwrap_or(0) as u64;
        if since > last {
            // The server's feed is shorter than the laptop remembers: it was
            // restored from a backup, or this is another server at the same
            // address. Pulling on from there would skip what is numbered again.
            return Err(refused(
                RefusalCode::CursorAhead,
                format!(
                    "this server's changes end at {last}, before the laptop's cursor {since}; pull again from 0"
                ),
            ));
        }
        if let Some(check) = check.filter(|_| since > 0) {
            if fingerprint(&snapshot, since)?.as_deref() != Some(check) {
                return Err(refused(
                    RefusalCode::CursorAhead,
                    format!(
                        "entry {since} of this server's changes is not the one the laptop pulled last; pull again from 0"
                    ),
                ));
            }
        }
        let narrow = if scope.is_everything() {
            None
        } else {
            households_in_scope(&snapshot, scope)?
        };
        let mut page = match narrow {
            Some(households) => pull_households(&snapshot, scope, &households, since, limit, last)?,
            None => pull_by_scanning(&snapshot, scope, since, limit, last)?,
        };
        page.check = fingerprint(&snapshot, page.next)?;
        page.devices = device_names(&snapshot, &page.changes.devices)?;
        Ok(page)
    }

    /// The latest server sequence number.
    pub fn feed_end(&self) -> Result<u64> {
        let last: Option<i64> =
            self.connection
                .query_row("SELECT MAX(seq) FROM feed", [], |row| row.get(0))?;
        Ok(last.unwrap_or(0) as u64)
    }
}

/// One push inside a group (see [`Store::push_group`]): the core's plan
/// ([`faenban_core::push`]) executed in the group's transaction.
fn push_in(
    session: &mut Session<'_>,
    account: &Account,
    push: SignedPush,
    server_wall_ms: u64,
) -> Result<PushOutcome> {
    let SignedPush { input, good_by } = push;
    push::check_claim(session.device, input.device, input.first_sequence)?;
    let scope = check_device(&session.tx, account, &input, good_by.as_ref())?;
    let device = input.device;
    let batch = push::Batch {
        device,
        relay: input.relay,
        first_sequence: input.first_sequence,
        changes: input.changes,
    };
    let server_device = session.device;
    let push::Admission {
        held,
        resent,
        fresh,
        mut set_aside,
    } = push::admit(server_device, batch, &mut SessionHoldings::new(session))?;
    let mut outcome = PushOutcome {
        held_through: held,
        ..PushOutcome::default()
    };
    // A batch sent again (its answer lost): what was held back then is
    // answered as held back again, the rest as held.
    let refused_before = refusals_among(&session.tx, device, &resent)?;
    outcome.duplicates += (resent.len() - refused_before.len()) as u32;
    outcome.held_back = refused_before;
    if fresh.is_empty() {
        return Ok(outcome);
    }
    // The stamps of every fresh sequence, held back or not: the server
    // holds the sequence either way, and knows it again when it is resent.
    let stamps = push::arrival_stamps(fresh.iter().map(|(_, change)| change));
    let (first_fresh, last_fresh) = (fresh[0].0, fresh[fresh.len() - 1].0);
    let mut round = 0;
    let applied = loop {
        round += 1;
        let clock = session.clock;
        session.tx.execute_batch("SAVEPOINT records")?;
        let applying: Vec<(u64, Change)> = fresh
            .iter()
            .filter(|(_, change)| !set_aside.contains_key(&change.record))
            .cloned()
            .collect();
        match apply_fresh(session, &scope, device, applying, server_wall_ms) {
            Ok(applied) => {
                session.tx.execute_batch("RELEASE records")?;
                break applied;
            }
            Err(Error::RefusedRecords(refusals)) => {
                // Nothing of this round stays: not its rows, not the states
                // it had in memory, not its clock readings.
                session.forget_since(clock);
                session
                    .tx
                    .execute_batch("ROLLBACK TO records; RELEASE records")?;
                if round == push::SET_ASIDE_ROUNDS {
                    let first = refusals.into_iter().next();
                    return Err(refused(
                        first
                            .as_ref()
                            .map_or(RefusalCode::OutOfScope, |refusal| refusal.code),
                        format!(
                            "{}; nothing of this batch was applied",
                            first.map_or(String::new(), |refusal| refusal.message)
                        ),
                    ));
                }
                for refusal in refusals {
                    set_aside.entry(refusal.record.clone()).or_insert(refusal);
                }
            }
            Err(other) => return Err(other),
        }
    };
    outcome.applied += applied.applied;
    outcome.duplicates += applied.duplicates;
    outcome.restamped += applied.restamped;
    outcome.held_through = last_fresh;
    session
        .tx
        .prepare_cached(
            "INSERT INTO arrivals (device, first_sequence, last_sequence, stamps) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            device.to_string(),
            first_fresh as i64,
            last_fresh as i64,
            stamps
        ])?;
    for (sequence, change) in &fresh {
        if let Some(refusal) = set_aside.get(&change.record) {
            session
                .tx
                .prepare_cached(
                    "INSERT INTO refusals (device, sequence, code, message, refused_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    device.to_string(),
                    *sequence as i64,
                    refusal.code.as_str(),
                    refusal.message,
                    server_wall_ms as i64
                ])?;
            outcome.held_back.push(HeldBack {
                sequence: *sequence,
                error: refusal.code.as_str().to_owned(),
                message: refusal.message.clone(),
            });
        }
    }
    Ok(outcome)
}

/// What applying the accepted changes of a push did.
#[derive(Default)]
struct Applied {
    applied: u32,
    duplicates: u32,
    restamped: u32,
}

/// The held-back answers of sequences a push sends again (they follow one
/// another, so the first and last bound them).
fn refusals_among(
    tx: &Transaction<'_>,
    device: DeviceId,
    sequences: &[u64],
) -> Result<Vec<HeldBack>> {
    match (sequences.first(), sequences.last()) {
        (Some(first), Some(last)) => refusals_between(tx, device, *first, *last),
        _ => Ok(Vec::new()),
    }
}

/// The sequences of `device`'s outbox in `from..=through` that were held
/// back, with their reasons.
fn refusals_between(
    connection: &rusqlite::Connection,
    device: DeviceId,
    from: u64,
    through: u64,
) -> Result<Vec<HeldBack>> {
    if from > through {
        return Ok(Vec::new());
    }
    let bound = |sequence: u64| i64::try_from(sequence).unwrap_or(i64::MAX);
    let mut statement = connection.prepare_cached(
        "SELECT sequence, code, message FROM refusals \
         WHERE device = ?1 AND sequence BETWEEN ?2 AND ?3 ORDER BY sequence",
    )?;
    let rows = statement.query_map(
        params![device.to_string(), bound(from), bound(through)],
        |row| {
            Ok(HeldBack {
                sequence: row.get::<_, i64>(0)? as u64,
                error: row.get(1)?,
                message: row.get(2)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Applies the changes of a push that are not set aside, as the core's
/// plan says: checks their scope, merges them, checks the merged records,
/// files them in the feed and places the households they moved. A refusal
/// of some records' changes comes back as [`Error::RefusedRecords`], for
/// the caller to set them aside and try the rest again.
fn apply_fresh(
    session: &mut Session<'_>,
    scope: &Scope,
    device: DeviceId,
    fresh: Vec<(u64, Change)>,
    server_wall_ms: u64,
) -> Result<Applied> {
    let mut outcome = Applied::default();
    let checked = push::check_scope(scope, &fresh, &mut SessionHoldings::new(session))?;
    let mut logged: Vec<(i64, RecordKey)> = Vec::with_capacity(fresh.len());
    let mut records: Vec<RecordKey> = fresh.iter().map(|(_, c)| c.record.clone()).collect();
    records.sort_unstable();
    records.dedup();
    session.refuse_reused_stamps = true;
    for (_, change) in fresh {
        let record = change.record.clone();
        let arrival = normalize_arrival(change, &mut session.clock, session.device, server_wall_ms);
        outcome.restamped += u32::from(arrival.restamped);
        let (result, log_seq) = session.apply_logged(arrival.change, false)?;
        logged.extend(log_seq.map(|log_seq| (log_seq, record)));
        if result != Outcome::Duplicate {
            outcome.applied += 1;
        } else {
            outcome.duplicates += 1;
        }
    }
    let mut refusals = Vec::new();
    for key in &records {
        let Some(state) = session.current(key)? else {
            continue;
        };
        let state = state.into_owned();
        let verdict = push::check_merged(
            scope,
            device,
            key,
            &state,
            &mut SessionHoldings::new(session),
        )?;
        refusals.extend(verdict.err());
    }
    if !refusals.is_empty() {
        return Err(Error::RefusedRecords(refusals));
    }
    // Filed under the household each record belongs to once merged.
    let mut merged_household: HashMap<RecordKey, Option<RecordId>> = HashMap::new();
    let mut holdings = SessionHoldings::new(session);
    let mut filings = Vec::with_capacity(logged.len());
    for (log_seq, record) in &logged {
        let household = match merged_household.get(record) {
            Some(household) => *household,
            None => {
                let household = holdings.household_of(record)?;
                merged_household.insert(record.clone(), household);
                household
            }
        };
        filings.push((*log_seq, push::filed_under(&record.kind, household)));
    }
    let moves: Vec<(RecordKey, RecordId)> = checked
        .leaving
        .iter()
        .filter_map(|(record, left)| {
            let now = merged_household.get(record).copied().flatten();
            push::moved_to(*left, now).map(|now| (record.clone(), now))
        })
        .collect();
    session.flush()?;
    let filings = filings
        .into_iter()
        .map(|(log_seq, filed)| Ok((log_seq, filed_column(session, filed)?)))
        .collect::<Result<Vec<_>>>()?;
    // One statement for all the entries: taken from the cache once, not
    // once per change.
    let mut file = session
        .tx
        .prepare_cached("INSERT INTO feed (change_seq, household) VALUES (?1, ?2)")?;
    for (log_seq, filed) in filings {
        file.execute(params![log_seq, filed])?;
    }
    drop(file);
    let first_logged = logged.first().map(|(log_seq, _)| *log_seq);
    for household in &checked.to_place {
        place_household(session, *household, first_logged)?;
    }
    for (record, now) in moves {
        announce_moved_record(session, &record, now)?;
    }
    Ok(outcome)
}

/// The server's holdings as one push's session sees them: what it has
/// merged so far included.
struct SessionHoldings<'s, 'c> {
    session: &'s Session<'c>,
    /// The last run of arrivals read, so that a re-sent batch is checked
    /// without a lookup per change.
    run: Option<push::KeptRun>,
}

impl<'s, 'c> SessionHoldings<'s, 'c> {
    fn new(session: &'s Session<'c>) -> Self {
        SessionHoldings { session, run: None }
    }
}

impl push::Holdings for SessionHoldings<'_, '_> {
    type Error = Error;

    fn held_through(&mut self, device: DeviceId) -> Result<u64> {
        held_through(&self.session.tx, device)
    }

    fn held_arrival(
        &mut self,
        device: DeviceId,
        sequence: u64,
    ) -> Result<Option<push::HeldArrival>> {
        let covers = |run: &push::KeptRun| run.first() <= sequence && sequence <= run.last();
        if !self.run.as_ref().is_some_and(covers) {
            self.run = self
                .session
                .tx
                .prepare_cached(
                    "SELECT first_sequence, last_sequence, stamps FROM arrivals \
                     WHERE device = ?1 AND first_sequence <= ?2 \
                     ORDER BY first_sequence DESC LIMIT 1",
                )?
                .query_row(params![device.to_string(), sequence as i64], |row| {
                    Ok(push::KeptRun::read(
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, i64>(1)? as u64,
                        row.get_ref(2)?.as_blob()?,
                    ))
                })
                .optional()?
                .flatten();
        }
        Ok(self.run.as_ref().and_then(|run| run.get(sequence)))
    }

    fn household_of(&mut self, record: &RecordKey) -> Result<Option<RecordId>> {
        if record.kind == RecordKind::Household {
            return Ok(Some(record.id));
        }
        match self.session.touched_state(record) {
            // The household as the store files it: named by its id in
            // canonical form ([`push::household_value_of`]).
            Some(state) => Ok(push::household_value_of(state)),
            None => stored_household(&self.session.tx, record),
        }
    }

    fn place(&mut self, household: RecordId) -> Result<Option<HouseholdPlace>> {
        stored_place(&self.session.tx, household)
    }

    fn merged_village(&mut self, household: RecordId) -> Result<Option<String>> {
        let key = RecordKey {
            kind: RecordKind::Household,
            id: household,
        };
        Ok(self.session.current(&key)?.and_then(|state| {
            state
                .shown("village")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }))
    }

    fn household_exists(&mut self, household: RecordId) -> Result<bool> {
        Ok(self
            .session
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM record_numbers rn JOIN records r ON r.n = rn.n \
                 WHERE rn.kind = 'household' AND rn.id = ?1)",
            )?
            .query_row([household.to_string()], |row| row.get(0))?)
    }
}

/// An account's scope is one it can have ([`Scope::check_shape`]).
fn check_scope_shape(scope: &Scope) -> Result<()> {
    scope
        .check_shape()
        .map_err(|message| refused(RefusalCode::BadAccount, message))
}

const ACCOUNT_COLUMNS: &str = "id, name, role, areas, dimension, created_ms, revoked_ms";

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Account>> {
    let role: String = row.get(2)?;
    let areas: String = row.get(3)?;
    let dimension: Option<String> = row.get(4)?;
    let revoked: Option<i64> = row.get(6)?;
    let Some(role) = Role::from_name(&role) else {
        return Ok(Err(Error::Corrupt(format!("account role {role}"))));
    };
    Ok(Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        scope: Scope {
            role,
            areas: areas.split_whitespace().map(str::to_owned).collect(),
            dimension: dimension.as_deref().and_then(Dimension::from_key),
        },
        created_ms: row.get::<_, i64>(5)? as u64,
        revoked_ms: revoked.map(|ms| ms as u64),
    }))
}

/// A device's binding: its account, whether that account is revoked, and
/// its key once bound.
struct DeviceOwner {
    account: i64,
    revoked: bool,
    key: Option<PublicKey>,
}

/// The names of those of `devices` bound to an account, and their accounts'.
fn device_names(
    connection: &rusqlite::Connection,
    devices: &[DeviceId],
) -> Result<Vec<faenban_core::sync::DeviceName>> {
    let mut statement = connection.prepare_cached(
        "SELECT d.name, a.name FROM devices d JOIN accounts a ON a.id = d.account WHERE d.device = ?1",
    )?;
    let mut names = Vec::new();
    for device in devices {
        let row: Option<(String, String)> = statement
            .query_row([device.to_string()], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((name, account)) = row {
            names.push(faenban_core::sync::DeviceName {
                device: *device,
                name,
                account,
            });
        }
    }
    Ok(names)
}

fn device_owner(tx: &rusqlite::Connection, device: DeviceId) -> Result<Option<DeviceOwner>> {
    let row: Option<(i64, bool, Option<Vec<u8>>)> = tx
        .prepare_cached(
            "SELECT d.account, a.revoked_ms IS NOT NULL, d.public_key FROM devices d \
             JOIN accounts a ON a.id = d.account WHERE d.device = ?1",
        )?
        .query_row([device.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    row.map(|(account, revoked, key)| {
        let key = key
            .map(|bytes| {
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map(PublicKey)
                    .map_err(|_| Error::Corrupt(format!("the key of device {device}")))
            })
            .transpose()?;
        Ok(DeviceOwner {
            account,
            revoked,
            key,
        })
    })
    .transpose()
}

/// One hello of [`Store::hello_group`], with what [`Store::hello`]
/// takes: nothing is written unless the rule allows it.
fn hello_in(
    tx: &rusqlite::Connection,
    own: Option<DeviceId>,
    account: &Account,
    hello: &Hello,
    now_ms: u64,
) -> Result<u64> {
    let Hello { device, name, key } = hello;
    let device = *device;
    refuse_own_device(own, device)?;
    match hello_binding(tx, account, device, key)? {
        push::HelloBinding::Known => {}
        push::HelloBinding::BindKey => {
            tx.prepare_cached("UPDATE devices SET public_key = ?2 WHERE device = ?1")?
                .execute(params![device.to_string(), key.0.as_slice()])?;
        }
        push::HelloBinding::Bind => {
            tx.prepare_cached(
                "INSERT INTO devices (device, account, name, first_seen_ms, public_key) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                device.to_string(),
                account.id,
                name,
                now_ms as i64,
                key.0.as_slice()
            ])?;
        }
    }
    held_through(tx, device)
}

/// No laptop may take the server's own device id (`own`).
fn refuse_own_device(own: Option<DeviceId>, device: DeviceId) -> Result<()> {
    if own == Some(device) {
        return Err(refused(
            RefusalCode::WrongDevice,
            "no laptop may claim the server's own device id",
        ));
    }
    Ok(())
}

/// What a hello of `device` with `key` under `account` must do, by the
/// core's rule (`push::hello_binding`) over what `connection` holds.
fn hello_binding(
    connection: &rusqlite::Connection,
    account: &Account,
    device: DeviceId,
    key: &PublicKey,
) -> Result<push::HelloBinding> {
    let owner = device_owner(connection, device)?;
    let key_makes_id = device_id_of(key) == device;
    let seen = owner.is_none() && !key_makes_id && device_seen(connection, device)?;
    let bound = owner.as_ref().map(|owner| push::Bound {
        same_account: owner.account == account.id,
        revoked: owner.revoked,
        key_matches: owner.key.map(|bound| bound == *key),
    });
    push::hello_binding(device, bound, key_makes_id, seen)
        .map_err(|(code, message)| refused(code, message))
}

/// True when any change of the device has reached the server.
fn device_seen(tx: &rusqlite::Connection, device: DeviceId) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM arrivals WHERE device = ?1)")?
        .query_row([device.to_string()], |row| row.get(0))?)
}

/// Checks who may push this outbox and that the run is the device's own,
/// signed by its key (unless it was found `good_by` that key already).
/// Returns the scope the run is checked against: the device's own
/// account's (a relay of a bound device is that device's work, whoever
/// carries it), or, for a relay of a device that never said hello, the
/// relaying account's.
fn check_device(
    tx: &rusqlite::Connection,
    account: &Account,
    input: &PushInput,
    good_by: Option<&PublicKey>,
) -> Result<Scope> {
    let device = input.device;
    let (key, scope) = push_key_and_scope(tx, account, input)?;
    if good_by != Some(&key)
        && !key.verifies_run(
            device,
            input.first_sequence,
            &input.changes,
            &input.signature,
        )
    {
        let (code, message) = push::bad_signature(device);
        return Err(refused(code, message));
    }
    Ok(scope)
}

/// Who may push this outbox, by the core's rule: the key its run must be
/// signed by and the scope it is checked against (see [`check_device`]).
fn push_key_and_scope(
    tx: &rusqlite::Connection,
    account: &Account,
    input: &PushInput,
) -> Result<(PublicKey, Scope)> {
    let device = input.device;
    let owner = device_owner(tx, device)?;
    let carried = input.public_key.filter(|key| device_id_of(key) == device);
    let bound = owner.as_ref().map(|owner| push::Bound {
        same_account: owner.account == account.id,
        revoked: owner.revoked,
        key_matches: owner.key.map(|_| true),
    });
    let pusher = push::pusher(device, bound, input.relay, carried.is_some())
        .map_err(|(code, message)| refused(code, message))?;
    let bound_key = || {
        owner
            .as_ref()
            .and_then(|owner| owner.key)
            .ok_or_else(|| Error::Internal(format!("device {device} has no bound key")))
    };
    let (key, scope) = match pusher {
        push::Pusher::Own => (bound_key()?, account.scope.clone()),
        push::Pusher::RelayOfBound => {
            let owner_account = owner.as_ref().map_or(account.id, |owner| owner.account);
            (bound_key()?, account_scope(tx, owner_account)?)
        }
        push::Pusher::RelayOfUnknown => (
            carried.ok_or_else(|| Error::Internal("a relay without its key".into()))?,
            account.scope.clone(),
        ),
    };
    Ok((key, scope))
}

fn account_scope(tx: &rusqlite::Connection, account: i64) -> Result<Scope> {
    tx.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
    ))?
    .query_row([account], account_row)?
    .map(|account| account.scope)
}

fn held_through(connection: &rusqlite::Connection, device: DeviceId) -> Result<u64> {
    let held: Option<i64> = connection
        // Runs follow one another, so the newest run ends highest; reading
        // it alone keeps this one index step however many runs there are.
        .prepare_cached(
            "SELECT last_sequence FROM arrivals WHERE device = ?1 \
             ORDER BY first_sequence DESC LIMIT 1",
        )?
        .query_row([device.to_string()], |row| row.get(0))
        .optional()?;
    Ok(held.unwrap_or(0) as u64)
}

/// How the feed's `household` column keeps where an entry is filed: the
/// household's record number, NULL for everyone, 0 (which no record has)
/// for no known household.
fn filed_column(session: &mut Session<'_>, filed: push::FiledUnder) -> Result<Option<i64>> {
    Ok(match filed {
        push::FiledUnder::Household(household) => Some(household_number(session, household)?),
        push::FiledUnder::Everyone => None,
        push::FiledUnder::NoKnownHousehold => Some(0),
    })
}

/// The record number of a household, given on first sight (a member may be
/// filed under a household the server has not seen yet).
fn household_number(session: &mut Session<'_>, household: RecordId) -> Result<i64> {
    session.record_number(&RecordKey {
        kind: RecordKind::Household,
        id: household,
    })
}

fn stored_household(tx: &Transaction<'_>, key: &RecordKey) -> Result<Option<RecordId>> {
    let household: Option<Option<String>> = tx
        .prepare_cached(
            "SELECT h.id FROM record_numbers rn JOIN records r ON r.n = rn.n \
             LEFT JOIN record_numbers h ON h.n = r.household \
             WHERE rn.kind = ?1 AND rn.id = ?2",
        )?
        .query_row(params![key.kind.as_str(), key.id.to_string()], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(household
        .flatten()
        .and_then(|id| id.parse().ok())
        .map(RecordId))
}

fn stored_place(tx: &Transaction<'_>, household: RecordId) -> Result<Option<HouseholdPlace>> {
    Ok(tx
        .prepare_cached(
            "SELECT p.village, p.deprived FROM record_numbers h \
             JOIN places p ON p.household = h.n WHERE h.kind = 'household' AND h.id = ?1",
        )?
        .query_row([household.to_string()], |row| {
            Ok(HouseholdPlace {
                village: row.get(0)?,
                deprived: row.get::<_, i64>(1)? as u8,
            })
        })
        .optional()?)
}

/// A record that now belongs to another household has its changes
/// announced again under the new one ([`push::moved_to`]), so that the
/// accounts of the new household's village receive its whole history.
fn announce_moved_record(
    session: &mut Session<'_>,
    record: &RecordKey,
    now: RecordId,
) -> Result<()> {
    let now = household_number(session, now)?;
    session
        .tx
        .prepare_cached(
            "INSERT INTO feed (change_seq, household, announce) \
         SELECT c.seq, ?1, ?2 FROM changes c JOIN record_numbers rn ON rn.n = c.record \
         WHERE rn.kind = ?3 AND rn.id = ?4 ORDER BY c.seq",
        )?
        .execute(params![
            now,
            Announce::Moved.as_i64(),
            record.kind.as_str(),
            record.id.to_string()
        ])?;
    Ok(())
}

/// Places a household again ([`push::place_of`]) and announces its
/// records' changes as [`push::placement`] says.
fn place_household(
    session: &mut Session<'_>,
    household: RecordId,
    first_logged: Option<i64>,
) -> Result<()> {
    let key = RecordKey {
        kind: RecordKind::Household,
        id: household,
    };
    if session.current_or_written(&key)?.is_none() {
        return Ok(());
    }
    let number = household_number(session, household)?;
    // Read again past the numbering (which needs the session to itself);
    // a state this push wrote is taken from memory both times.
    let Some(state) = session.current_or_written(&key)? else {
        return Ok(());
    };
    let visits = crate::query_records_on(
        &session.tx,
        "SELECT rn.kind, rn.id, r.state FROM records r JOIN record_numbers rn ON rn.n = r.n \
         WHERE r.household = ?1 AND rn.kind = 'visit'",
        params![number],
    )?;
    let place = push::place_of(household, &state, visits);
    drop(state);
    let before = stored_place(&session.tx, household)?;
    let placement = push::placement(before.as_ref(), &place);
    if placement == push::Placement::Unchanged {
        return Ok(());
    }
    session
        .tx
        .prepare_cached(
            "INSERT INTO places (household, village, deprived) VALUES (?1, ?2, ?3) \
             ON CONFLICT (household) DO UPDATE SET village = excluded.village, \
             deprived = excluded.deprived",
        )?
        .execute(params![number, place.village, place.deprived])?;
    match placement {
        push::Placement::First => {
            if let Some(first_logged) = first_logged {
                session
                    .tx
                    .prepare_cached(
                        "INSERT INTO feed (change_seq, household, announce) \
                         SELECT c.seq, ?1, ?2 FROM changes c WHERE c.record = ?1 AND c.seq < ?3 \
                         UNION ALL SELECT c.seq, ?1, ?2 FROM records r \
                         JOIN changes c ON c.record = r.n \
                         WHERE r.household = ?1 AND c.seq < ?3 ORDER BY 1",
                    )?
                    .execute(params![number, Announce::Moved.as_i64(), first_logged])?;
            }
        }
        push::Placement::AnnounceAll(announce) => {
            session
                .tx
                .prepare_cached(
                    "INSERT INTO feed (change_seq, household, announce) \
                     SELECT c.seq, ?1, ?2 FROM changes c WHERE c.record = ?1 \
                     UNION ALL SELECT c.seq, ?1, ?2 FROM records r \
                     JOIN changes c ON c.record = r.n WHERE r.household = ?1 \
                     ORDER BY 1",
                )?
                .execute(params![number, announce.as_i64()])?;
        }
        push::Placement::Quiet | push::Placement::Unchanged => {}
    }
    Ok(())
}

/// What identifies the feed entry at `seq`: the stamp of its change.
fn fingerprint(connection: &rusqlite::Connection, seq: u64) -> Result<Option<String>> {
    if seq == 0 {
        return Ok(None);
    }
    Ok(connection
        .prepare_cached(
            "SELECT c.wall_ms, c.counter, (SELECT device FROM device_numbers WHERE n = c.device) FROM feed f \
             JOIN changes c ON c.seq = f.change_seq WHERE f.seq = ?1",
        )?
        .query_row([seq as i64], |row| {
            Ok(format!(
                "{}.{}.{}",
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?
            ))
        })
        .optional()?)
}

/// Above this many households in scope, a pull reads the feed in order and
/// filters it; below, it reads each household's feed entries by index.
const INDEXED_PULL_HOUSEHOLDS: usize = 5_000;

/// True when a feed entry for this stored reason is for this scope.
fn announced_for(scope: &Scope, announce: i64) -> bool {
    Announce::from_i64(announce).is_some_and(|announce| announce.reaches(scope))
}

/// A household's record number and, when it is one, its id.
type NumberedHousehold = (i64, Option<RecordId>);

/// The households an area-scoped account may read, if there are few
/// enough of them to read by index.
fn households_in_scope(
    connection: &rusqlite::Connection,
    scope: &Scope,
) -> Result<Option<Vec<NumberedHousehold>>> {
    let mut households = Vec::new();
    let mut statement = connection.prepare_cached(
        "SELECT p.household, h.id, p.village, p.deprived FROM places p \
         JOIN record_numbers h ON h.n = p.household \
         WHERE p.village >= ?1 AND p.village < ?1 || x'f48fbfbf'",
    )?;
    for area in &scope.areas {
        let mut rows = statement.query([area])?;
        while let Some(row) = rows.next()? {
            let place = HouseholdPlace {
                village: row.get(2)?,
                deprived: row.get::<_, i64>(3)? as u8,
            };
            if scope.may_read(Some(&place)) {
                let id: String = row.get(1)?;
                households.push((row.get(0)?, id.parse().ok().map(RecordId)));
                if households.len() > INDEXED_PULL_HOUSEHOLDS {
                    return Ok(None);
                }
            }
        }
    }
    households.sort_unstable();
    households.dedup();
    Ok(Some(households))
}

/// A pull for a narrow scope: each household's feed entries by index, and
/// the records of no household, merged in server order.
fn pull_households(
    connection: &rusqlite::Connection,
    scope: &Scope,
    households: &[NumberedHousehold],
    since: u64,
    limit: usize,
    last: u64,
) -> Result<PulledPage> {
    let mut entries: Vec<(i64, i64, Option<RecordId>)> = Vec::new();
    let mut collect = |rows: &mut rusqlite::Rows<'_>, household: Option<RecordId>| -> Result<()> {
        while let Some(row) = rows.next()? {
            if announced_for(scope, row.get(2)?) {
                entries.push((row.get(0)?, row.get(1)?, household));
            }
        }
        Ok(())
    };
    let mut by_household = connection.prepare_cached(
        "SELECT seq, change_seq, announce FROM feed WHERE household = ?1 AND seq > ?2 \
         AND announce <= ?4 ORDER BY seq LIMIT ?3",
    )?;
    // Filtered here, not after the limit, so that no entry for this scope is
    // left behind a limit filled with entries that are not.
    let announces = Announce::widest_for(scope)
        .as_i64()
        .max(Announce::Moved.as_i64());
    // Each source's first `limit + 1` entries hold the page's: a later page
    // starts after the last one returned.
    let take = limit as i64 + 1;
    for (number, id) in households {
        collect(
            &mut by_household.query(params![number, since as i64, take, announces])?,
            *id,
        )?;
    }
    let mut of_no_household = connection.prepare_cached(
        "SELECT seq, change_seq, announce FROM feed WHERE household IS NULL AND seq > ?1 \
         AND announce = 0 ORDER BY seq LIMIT ?2",
    )?;
    collect(
        &mut of_no_household.query(params![since as i64, take])?,
        None,
    )?;
    entries.sort_unstable();
    let mut more = entries.len() > limit;
    entries.truncate(limit);
    // With the household the change's record belongs to now: entries of a
    // record that has left the household are not for its scopes.
    let mut body = connection.prepare_cached(concat!(
        "SELECT ",
        change_columns!(),
        ", rh.id FROM changes c ",
        change_joins!(),
        " LEFT JOIN records r ON r.n = c.record \
         LEFT JOIN record_numbers rh ON rh.n = r.household WHERE c.seq = ?1"
    ))?;
    let mut builder = ChangeSetBuilder::new();
    let mut bytes = 0;
    let mut taken = 0;
    for (_, change_seq, filed) in &entries {
        if bytes >= MAX_PAGE_BYTES {
            more = true;
            break;
        }
        taken += 1;
        let mut rows = body.query([change_seq])?;
        let Some(row) = rows.next()? else {
            return Err(Error::Corrupt(format!(
                "feed entry for change {change_seq}, which the log does not hold"
            )));
        };
        let filed = match filed {
            Some(household) => push::FiledUnder::Household(*household),
            None => push::FiledUnder::Everyone,
        };
        // Every household read here is in scope (`households_in_scope`).
        let record_now = record_household_now(row.get_ref(3)?, row.get_ref(4)?, row.get_ref(7)?)?;
        if !push::still_filed_right(filed, record_now) {
            continue;
        }
        let change = crate::change_from_row(row, 0)?;
        bytes += stored_size(row, 0)?;
        builder.push(&change);
    }
    entries.truncate(taken);
    let next = match entries.last() {
        Some((seq, _, _)) if more => *seq as u64,
        // Everything in scope up to the end of the feed in this snapshot.
        _ => last.max(since),
    };
    Ok(PulledPage {
        devices: Vec::new(),
        changes: builder.finish(),
        next,
        more,
        check: None,
    })
}

/// A pull for a wide scope: the feed in server order, filtered by scope,
/// reading at most [`SCAN_PER_PAGE`] entries past the cursor.
fn pull_by_scanning(
    connection: &rusqlite::Connection,
    scope: &Scope,
    since: u64,
    limit: usize,
    last: u64,
) -> Result<PulledPage> {
    // The province's scope reads every entry: no join to places or records.
    let mut statement = if scope.is_everything() {
        connection.prepare_cached(concat!(
            "SELECT f.seq, NULL, NULL, NULL, f.announce, NULL, ",
            change_columns!(),
            " FROM feed f JOIN changes c ON c.seq = f.change_seq ",
            change_joins!(),
            " WHERE f.seq > ?1 ORDER BY f.seq LIMIT ?2"
        ))?
    } else {
        connection.prepare_cached(concat!(
            "SELECT f.seq, CASE WHEN f.household = 0 THEN '' ELSE fh.id END, \
             p.village, p.deprived, f.announce, rh.id, ",
            change_columns!(),
            " FROM feed f JOIN changes c ON c.seq = f.change_seq ",
            change_joins!(),
            " LEFT JOIN record_numbers fh ON fh.n = f.household \
             LEFT JOIN places p ON p.household = f.household \
             LEFT JOIN records r ON r.n = c.record \
             LEFT JOIN record_numbers rh ON rh.n = r.household \
             WHERE f.seq > ?1 ORDER BY f.seq LIMIT ?2"
        ))?
    };
    let scan = if scope.is_everything() {
        limit
    } else {
        SCAN_PER_PAGE.max(limit)
    };
    let mut rows = statement.query(params![since as i64, scan as i64])?;
    let mut builder = ChangeSetBuilder::new();
    let mut next = since;
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        next = row.get::<_, i64>(0)? as u64;
        let Some(announce) = Announce::from_i64(row.get(4)?) else {
            continue;
        };
        // The province's rows carry no household, place or record: its
        // scope reads every place.
        let filed = match row.get::<_, Option<String>>(1)? {
            None => push::FiledUnder::Everyone,
            Some(household) => match household.parse() {
                Ok(id) => push::FiledUnder::Household(RecordId(id)),
                Err(_) => push::FiledUnder::NoKnownHousehold,
            },
        };
        let place = match row.get::<_, Option<String>>(2)? {
            Some(village) => Some(HouseholdPlace {
                village,
                deprived: row.get::<_, Option<i64>>(3)?.unwrap_or(0) as u8,
            }),
            None => None,
        };
        let record_now = record_household_now(row.get_ref(9)?, row.get_ref(10)?, row.get_ref(5)?)?;
        let in_scope = push::reads_entry(scope, announce, filed, place.as_ref(), record_now);
        if in_scope {
            let change = crate::change_from_row(row, 6)?;
            bytes += stored_size(row, 6)?;
            builder.push(&change);
            if builder.len() >= limit || bytes >= MAX_PAGE_BYTES {
                break;
            }
        }
    }
    Ok(PulledPage {
        devices: Vec::new(),
        changes: builder.finish(),
        next,
        more: last > next,
        check: None,
    })
}

/// About how many bytes a change read from row columns `first..first + 7`
/// takes: its body (which holds the value, what can make a change large)
/// and its fixed columns.
fn stored_size(row: &rusqlite::Row<'_>, first: usize) -> Result<usize> {
    const COLUMNS: usize = 100;
    Ok(COLUMNS + row.get_ref(first + 6)?.as_bytes().map_or(0, <[u8]>::len))
}

/// The household a change's record belongs to now, from the change's kind
/// and record and the record's `household` column (a household's record
/// belongs to itself).
fn record_household_now(
    kind: rusqlite::types::ValueRef<'_>,
    record: rusqlite::types::ValueRef<'_>,
    household: rusqlite::types::ValueRef<'_>,
) -> Result<Option<RecordId>> {
    let text = |value: rusqlite::types::ValueRef<'_>| -> Result<Option<RecordId>> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            value => Ok(value
                .as_str()
                .map_err(rusqlite::Error::from)?
                .parse()
                .ok()
                .map(RecordId)),
        }
    };
    if kind == rusqlite::types::ValueRef::Null {
        return Ok(None);
    }
    if kind.as_str().map_err(rusqlite::Error::from)? == RecordKind::Household.as_str() {
        text(record)
    } else {
        text(household)
    }
}
