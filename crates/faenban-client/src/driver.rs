//! The sync of a device's store with a server, over any [`Transport`]:
//! hello (the clock corrected, the account's scope kept), the outbox pushed
//! run by run with the recovery policy for a restored laptop or server, the
//! letters carried in from bundles passed on, and the pull applied page by
//! page with its cursor.
//!
//! Each step commits on its own, so a sync stopped at any point is simply
//! run again: pushes the server holds are recognized, and the pull resumes
//! from the last page kept. What happens is reported to an [`Observer`];
//! nothing here prints.

use faenban_core::sync::{
    ChangeSet, HelloRequest, HelloResponse, PushRequest, PushResponse, RelayRequest, Scope,
    MAX_BATCH_BYTES, MAX_BATCH_CHANGES, PROTOCOL_VERSION,
};
use faenban_core::{DeviceId, RefusalCode};
use faenban_keys::DeviceKey;
use faenban_store::bundle::SealedBytes;
use faenban_store::sync::OutboxRun;
use faenban_store::{DeviceInfo, Store, SCHEMA_VERSION};
use serde::Serialize;

use crate::transport::{Transport, TransportError};

/// How many changes a pull asks for per page.
const PULL_PAGE: usize = 1000;

/// How many pulled changes are applied in one transaction: a few of the
/// server's pages, so that the index pages every page touches are written
/// once for all of them. A sync killed in the middle pulls them again.
const APPLY_AT_ONCE: usize = 20_000;

/// How a sync realigned this device's outbox with what the server holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Realigned {
    /// The file reused sequence numbers the server holds for other changes
    /// (restored from a backup, or copied): the outbox moved after them.
    Renumbered,
    /// The server lacked changes it had acknowledged (restored from a
    /// backup): everything this device ever recorded was queued again.
    Requeued,
}

/// What a sync reports as it goes. Every method has a default that does
/// nothing.
pub trait Observer {
    /// The push starts with this many changes waiting.
    fn pushing(&mut self, _waiting: u64) {}
    /// A run of this many changes was pushed and answered.
    fn pushed(&mut self, _changes: u64) {}
    /// The outbox was realigned; `count` changes were renumbered or queued.
    fn realigned(&mut self, _how: Realigned, _count: u64) {}
    /// The push is over.
    fn pushes_done(&mut self) {}
    /// The server will never take a letter carried for `device` (`code`).
    fn letter_dropped(&mut self, _device: DeviceId, _code: &str) {}
    /// A page of this many changes was pulled and applied.
    fn pulled(&mut self, _changes: u64) {}
    /// The pull is over.
    fn pulls_done(&mut self) {}
}

/// An observer that reports nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// What one sync did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Changes of this device the server took new.
    pub pushed: u64,
    /// Changes it already held.
    pub already_on_server: u64,
    /// Letters carried for other devices that the server answered.
    pub letters_passed_on: u64,
    /// Letters carried for other devices that the server will never take.
    pub letters_dropped: u64,
    /// Changes the server held back in this sync.
    pub held_back_now: u64,
    /// Changes held back on this device in all.
    pub held_back: u64,
    /// Changes the server re-stamped (their clock was in the future).
    pub restamped_by_server: u64,
    /// Changes pulled new.
    pub pulled: u64,
    /// Changes pulled that were already here.
    pub pulled_already_held: u64,
    /// Conflicts the sync brought.
    pub new_conflicts: u64,
    /// How far the device's clock was corrected.
    pub clock_moved_ms: i64,
    /// Changes re-stamped here after the correction.
    pub restamped_here: u64,
    /// Changes still waiting to be pushed.
    pub unpushed: u64,
    /// The refusal that stopped the push (the pull went on after it).
    #[serde(skip)]
    pub refusal: Option<TransportError>,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server could not be reached, or refused what no retry gets past.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device's own store failed.
    #[error(transparent)]
    Store(#[from] faenban_store::Error),
    /// The server answered against the protocol.
    #[error("{0}")]
    Protocol(String),
}

/// Says hello for `store`'s device with `token`, and keeps what the server
/// answers (its key, the account's scope). The first step of a login.
pub fn login(
    store: &mut Store,
    transport: &impl Transport,
    token: &str,
) -> Result<HelloResponse, SyncError> {
    let (device, key) = device_and_key(store)?;
    let hello = say_hello(transport, &device, &key, token)?;
    store.set_server_key(&hello.server_key)?;
    store.set_account_scope(Some(&scope_of(&hello)))?;
    Ok(hello)
}

/// Syncs `store` with the server `transport` reaches, under `token`.
/// `now_ms` is the device's wall clock.
pub fn sync(
    store: &mut Store,
    transport: &impl Transport,
    token: &str,
    observer: &mut dyn Observer,
    now_ms: &dyn Fn() -> u64,
) -> Result<Summary, SyncError> {
    let (device, key) = device_and_key(store)?;
    let mut summary = Summary::default();
    let conflicts_before = store.status()?.conflicts;

    // Hello: the server's time (to correct the clock) and how much of the
    // outbox it already holds (an answer lost last time).
    let asked_at = now_ms();
    let hello = say_hello(transport, &device, &key, token)?;
    let answered_at = now_ms();
    let local_midpoint = asked_at + answered_at.saturating_sub(asked_at) / 2;
    store.set_server_key(&hello.server_key)?;
    // What the account may record, for the device to say so as it is typed.
    store.set_account_scope(Some(&scope_of(&hello)))?;
    let correction = store.correct_clock(hello.server_time_ms, local_midpoint)?;
    summary.clock_moved_ms = correction.moved_ms;
    summary.restamped_here = correction.restamped;

    push_outbox(store, transport, token, observer, now_ms, &mut summary)?;
    pass_on_letters(store, transport, observer, now_ms, &mut summary)?;
    pull(store, transport, observer, now_ms, &mut summary)?;

    store.finish_sync(now_ms())?;
    let status = store.status()?;
    summary.new_conflicts = status.conflicts.saturating_sub(conflicts_before);
    summary.unpushed = status.unpushed;
    summary.held_back = status.held_back;
    Ok(summary)
}

/// The outbox, run by run. The server recognizes what it already holds,
/// so the outbox is sent from its start. A refusal stops the push (and is
/// kept in the summary); the sync goes on to pull.
fn push_outbox(
    store: &mut Store,
    transport: &impl Transport,
    token: &str,
    observer: &mut dyn Observer,
    now_ms: &dyn Fn() -> u64,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let (device, key) = device_and_key(store)?;
    observer.pushing(store.status()?.unpushed);
    let mut realigned = Vec::new();
    while let Some(run) = store.outbox_run(MAX_BATCH_CHANGES)? {
        let run = run.fit(MAX_BATCH_CHANGES, MAX_BATCH_BYTES);
        let last = run.last_sequence();
        store.mark_shared(last)?;
        let response = match push_run(transport, &run, &key) {
            Ok(response) => response,
            Err(error) => match recovery(&error, &realigned) {
                Some(how) => {
                    // The outbox's numbering disagrees with the server's,
                    // each way at most once per sync.
                    realigned.push(how);
                    let held = say_hello(transport, &device, &key, token)?.held_through;
                    let count = match how {
                        Realigned::Renumbered => store.renumber_outbox_after(held)?,
                        Realigned::Requeued => store.requeue_own_changes_after(held)?,
                    };
                    observer.realigned(how, count);
                    continue;
                }
                None if matches!(error, TransportError::Refused { .. }) => {
                    summary.refusal = Some(error);
                    break;
                }
                None => return Err(error.into()),
            },
        };
        take_answer(store, &response, last, now_ms, summary)?;
        observer.pushed(run.changes.len() as u64);
        if response.held_through < last {
            return Err(SyncError::Protocol(format!(
                "the server kept this device's outbox only through {}, not {last}",
                response.held_through
            )));
        }
    }
    observer.pushes_done();
    Ok(())
}

/// The recovery policy: which realignment a refused push calls for, if it
/// has not been tried in this sync.
fn recovery(error: &TransportError, tried: &[Realigned]) -> Option<Realigned> {
    let how = match error.refusal()? {
        RefusalCode::SequenceReused => Realigned::Renumbered,
        RefusalCode::SequenceGap => Realigned::Requeued,
        _ => return None,
    };
    (!tried.contains(&how)).then_some(how)
}

/// Takes a push's answer: drops what the server holds, sets aside what it
/// held back.
fn take_answer(
    store: &mut Store,
    response: &PushResponse,
    last: u64,
    now_ms: &dyn Fn() -> u64,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    summary.pushed += u64::from(response.applied);
    summary.already_on_server += u64::from(response.duplicates);
    summary.restamped_by_server += u64::from(response.restamped);
    // Only what this run covered: the server's highest held sequence may be
    // above it (a file restored from a backup), and changes beyond this run
    // have not been compared with what it holds.
    let held_through = response.held_through.min(last);
    summary.held_back_now += response
        .held_back
        .iter()
        .filter(|held| held.sequence <= held_through)
        .count() as u64;
    store.acknowledge(now_ms(), held_through, None, &response.held_back)?;
    Ok(())
}

/// Letters other devices sealed to the server, carried here in bundles. An
/// answered letter goes, and its sealed reply is kept to take back.
fn pass_on_letters(
    store: &mut Store,
    transport: &impl Transport,
    observer: &mut dyn Observer,
    now_ms: &dyn Fn() -> u64,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    for carried in store.carried_letters()? {
        let device = carried.item.device;
        let request = RelayRequest {
            protocol: PROTOCOL_VERSION,
            device,
            letter: faenban_keys::hex(&carried.item.body),
        };
        match transport.relay(&request) {
            Ok(response) => {
                let body = faenban_keys::unhex_vec(&response.reply)
                    .filter(|_| response.device == device)
                    .ok_or_else(|| {
                        TransportError::BadAnswer("a relay's reply is not sealed bytes".into())
                    })?;
                store.letter_answered(now_ms(), carried.id, Some(SealedBytes { device, body }))?;
                summary.letters_passed_on += 1;
            }
            // Refused for this account (its token), not for the letter: the
            // letter stays, to try again.
            Err(error @ TransportError::Refused { status: 401, .. }) => {
                summary.refusal.get_or_insert(error);
                break;
            }
            Err(TransportError::Refused { code, .. }) => {
                // The server will never take this letter (damaged, or of a
                // device it does not know). Nothing is lost: that device
                // keeps its outbox until a reply says the server holds it.
                store.letter_answered(now_ms(), carried.id, None)?;
                summary.letters_dropped += 1;
                observer.letter_dropped(device, &code);
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The pull: each page is applied with its cursor in one transaction.
fn pull(
    store: &mut Store,
    transport: &impl Transport,
    observer: &mut dyn Observer,
    now_ms: &dyn Fn() -> u64,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let mut cursor = store.pull_cursor()?;
    let mut check = store.pull_check()?;
    let mut more = true;
    while more {
        // Pages are pulled until about APPLY_AT_ONCE changes wait, then
        // applied with the cursor in one transaction.
        let mut batch = Vec::new();
        while more && batch.len() < APPLY_AT_ONCE {
            let page = match transport.pull(cursor, check.as_deref(), PULL_PAGE) {
                Ok(page) => page,
                Err(error) if error.refusal() == Some(RefusalCode::CursorAhead) && cursor > 0 => {
                    // The server was restored from a backup: pull everything
                    // again; what is already here counts as duplicates.
                    cursor = 0;
                    check = None;
                    batch.clear();
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let changes = page
                .changes
                .decode()
                .map_err(|error| TransportError::BadAnswer(error.to_string()))?;
            store.remember_devices(&page.devices)?;
            batch.extend(changes);
            cursor = page.next;
            check = page.check;
            more = page.more;
        }
        let count = batch.len() as u64;
        let received = store.apply_pulled(now_ms(), batch, cursor, check.as_deref())?;
        summary.pulled += received.new;
        summary.pulled_already_held += received.duplicates;
        observer.pulled(count);
    }
    observer.pulls_done();
    Ok(())
}

fn device_and_key(store: &Store) -> Result<(DeviceInfo, DeviceKey), SyncError> {
    let device = store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let key = store
        .device_key()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    Ok((device, key))
}

/// The account's scope, as a hello answers it.
fn scope_of(hello: &HelloResponse) -> Scope {
    Scope {
        role: hello.role,
        areas: hello.areas.clone(),
        dimension: hello.dimension,
    }
}

/// Introduces the device to the server, proving that it holds its key.
fn say_hello(
    transport: &impl Transport,
    device: &DeviceInfo,
    key: &DeviceKey,
    token: &str,
) -> Result<HelloResponse, TransportError> {
    transport.hello(&HelloRequest {
        protocol: PROTOCOL_VERSION,
        device: device.id,
        name: device.name.clone(),
        public_key: key.public().to_string(),
        proof: key.sign_hello(device.id, token).to_string(),
    })
}

/// Pushes a run of the device's outbox, signed with `key`.
fn push_run(
    transport: &impl Transport,
    run: &OutboxRun,
    key: &DeviceKey,
) -> Result<PushResponse, TransportError> {
    transport.push(&PushRequest {
        protocol: PROTOCOL_VERSION,
        schema: SCHEMA_VERSION,
        device: run.device,
        relay: false,
        first_sequence: run.first_sequence,
        changes: ChangeSet::encode(&run.changes),
        signature: key
            .sign_run(run.device, run.first_sequence, &run.changes)
            .to_string(),
        public_key: None,
    })
}
