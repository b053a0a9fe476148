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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};

use faenban_core::sync::{
    ChangeSet, DeviceName, HelloRequest, HelloResponse, PushRequest, PushResponse, RelayRequest,
    RunSigning, Scope, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, PROTOCOL_VERSION,
};
use faenban_core::{Change, DeviceId, RefusalCode};
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

    let signing = RunSigning::for_server(hello.run_signing);
    push_outbox(
        store,
        transport,
        token,
        signing,
        observer,
        now_ms,
        &mut summary,
    )?;
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
    signing: RunSigning,
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
        let response = match push_run(transport, &run, &key, signing) {
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

/// The pull: pages are gathered into batches of about [`APPLY_AT_ONCE`]
/// changes, each applied with its cursor in one transaction. A second thread
/// pulls the next batch while this one applies the last, so the network and
/// the disk work at once; at most one batch waits.
fn pull(
    store: &mut Store,
    transport: &impl Transport,
    observer: &mut dyn Observer,
    now_ms: &dyn Fn() -> u64,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let cursor = store.pull_cursor()?;
    let check = store.pull_check()?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|threads| {
        let (sender, batches) = mpsc::sync_channel(1);
        let stop = &stop;
        threads.spawn(move || pull_ahead(transport, cursor, check, &sender, stop));
        let applied = (|| -> Result<(), SyncError> {
            for batch in batches {
                let batch = batch?;
                store.remember_devices(&batch.devices)?;
                let count = batch.changes.len() as u64;
                let received = store.apply_pulled(
                    now_ms(),
                    batch.changes,
                    batch.cursor,
                    batch.check.as_deref(),
                )?;
                summary.pulled += received.new;
                summary.pulled_already_held += received.duplicates;
                observer.pulled(count);
            }
            Ok(())
        })();
        // The store failed (a full disk): the thread pulling ahead stops at
        // its next page instead of fetching the rest of the province.
        stop.store(true, Ordering::Relaxed);
        applied
    })?;
    observer.pulls_done();
    Ok(())
}

/// Pulled changes ready to apply, with the cursor that follows them.
struct PulledBatch {
    changes: Vec<Change>,
    devices: Vec<DeviceName>,
    cursor: u64,
    check: Option<String>,
}

/// Pulls pages from `cursor` on and hands them to the applying thread in
/// batches, until the server has no more, a request fails for good (the
/// error is handed on), or the applying side stops.
fn pull_ahead(
    transport: &impl Transport,
    mut cursor: u64,
    mut check: Option<String>,
    batches: &SyncSender<Result<PulledBatch, SyncError>>,
    stop: &AtomicBool,
) {
    let mut more = true;
    while more {
        let mut changes = Vec::new();
        let mut devices = Vec::new();
        while more && changes.len() < APPLY_AT_ONCE {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let page = match transport.pull(cursor, check.as_deref(), PULL_PAGE) {
                Ok(page) => page,
                Err(error) if error.refusal() == Some(RefusalCode::CursorAhead) && cursor > 0 => {
                    // The server was restored from a backup: pull everything
                    // again; what is already here counts as duplicates.
                    cursor = 0;
                    check = None;
                    changes.clear();
                    continue;
                }
                Err(error) => {
                    let _ = batches.send(Err(error.into()));
                    return;
                }
            };
            match page.changes.decode() {
                Ok(decoded) => changes.extend(decoded),
                Err(error) => {
                    let _ = batches.send(Err(TransportError::BadAnswer(error.to_string()).into()));
                    return;
                }
            }
            devices.extend(page.devices);
            cursor = page.next;
            check = page.check;
            more = page.more;
        }
        let batch = PulledBatch {
            changes,
            devices,
            cursor,
            check: check.clone(),
        };
        if batches.send(Ok(batch)).is_err() {
            // The applying side has stopped.
            return;
        }
    }
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

/// Pushes a run of the device's outbox, signed with `key` in the form the
/// server named at hello.
fn push_run(
    transport: &impl Transport,
    run: &OutboxRun,
    key: &DeviceKey,
    signing: RunSigning,
) -> Result<PushResponse, TransportError> {
    transport.push(&PushRequest {
        protocol: PROTOCOL_VERSION,
        schema: SCHEMA_VERSION,
        device: run.device,
        relay: false,
        first_sequence: run.first_sequence,
        changes: ChangeSet::encode(&run.changes),
        signature: key
            .sign_run_as(signing, run.device, run.first_sequence, &run.changes)
            .to_string(),
        public_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faenban_core::sync::{PullPage, RelayResponse};
    use faenban_core::{Hlc, RecordKey, RecordKind, Stamp};
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// A server that serves `pages` pages of new households, failing every
    /// request from `fails_at` on; it keeps the `since` of every pull.
    struct Pages {
        pages: u64,
        fails_at: u64,
        asked: Mutex<Vec<u64>>,
        pulls: AtomicU64,
    }

    impl Pages {
        fn new(pages: u64, fails_at: u64) -> Pages {
            Pages {
                pages,
                fails_at,
                asked: Mutex::new(Vec::new()),
                pulls: AtomicU64::new(0),
            }
        }
    }

    fn unused<T>() -> Result<T, TransportError> {
        Err(TransportError::Network("not asked in this test".into()))
    }

    impl Transport for Pages {
        fn hello(&self, _: &HelloRequest) -> Result<HelloResponse, TransportError> {
            unused()
        }
        fn push(&self, _: &PushRequest) -> Result<PushResponse, TransportError> {
            unused()
        }
        fn relay(&self, _: &RelayRequest) -> Result<RelayResponse, TransportError> {
            unused()
        }
        fn pull(
            &self,
            since: u64,
            _: Option<&str>,
            limit: usize,
        ) -> Result<PullPage, TransportError> {
            self.pulls.fetch_add(1, Ordering::Relaxed);
            self.asked.lock().unwrap().push(since);
            let page = since / limit as u64;
            if page >= self.fails_at {
                return Err(TransportError::Network("no signal".into()));
            }
            let device = DeviceId::from_u128(0xd);
            let changes: Vec<Change> = (since..since + limit as u64)
                .map(|n| Change {
                    stamp: Stamp::new(Hlc::at(1_790_000_000_000 + n), device),
                    record: RecordKey::new(RecordKind::Household, uuid_of(n)),
                    field: "address".into(),
                    value: serde_json::json!(format!("{n} หมู่ 1")),
                    supersedes: Default::default(),
                    observed: Vec::new(),
                    previous_stamps: Vec::new(),
                })
                .collect();
            Ok(PullPage {
                protocol: PROTOCOL_VERSION,
                changes: ChangeSet::encode(&changes),
                next: since + limit as u64,
                more: page + 1 < self.pages,
                check: None,
                server_time_ms: 1_790_000_000_000,
                devices: Vec::new(),
            })
        }
    }

    fn uuid_of(n: u64) -> uuid::Uuid {
        uuid::Uuid::from_u128(0x1000_0000 + u128::from(n))
    }

    #[test]
    fn a_pull_that_fails_ahead_keeps_the_batches_before_and_resumes_after_them() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .init("laptop", &DeviceKey::generate().unwrap())
            .unwrap();
        let batch_pages = (APPLY_AT_ONCE / PULL_PAGE) as u64;
        // The network goes after a batch and a few pages more.
        let failing = Pages::new(batch_pages + 10, batch_pages + 3);
        let mut summary = Summary::default();
        let error = pull(
            &mut store,
            &failing,
            &mut Quiet,
            &|| 1_790_000_000_000,
            &mut summary,
        )
        .unwrap_err();
        assert!(
            matches!(error, SyncError::Transport(TransportError::Network(_))),
            "{error:?}"
        );
        // The whole first batch is kept with its cursor; the pages pulled
        // ahead of the failure are pulled again next time.
        assert_eq!(summary.pulled, APPLY_AT_ONCE as u64);
        assert_eq!(store.pull_cursor().unwrap(), APPLY_AT_ONCE as u64);
        // The thread pulling ahead stopped at the failure.
        assert_eq!(failing.pulls.load(Ordering::Relaxed), batch_pages + 4);

        let working = Pages::new(batch_pages + 10, u64::MAX);
        let mut summary = Summary::default();
        pull(
            &mut store,
            &working,
            &mut Quiet,
            &|| 1_790_000_000_000,
            &mut summary,
        )
        .unwrap();
        assert_eq!(working.asked.lock().unwrap()[0], APPLY_AT_ONCE as u64);
        assert_eq!(summary.pulled, 10 * PULL_PAGE as u64);
        assert_eq!(summary.pulled_already_held, 0);
        assert_eq!(
            store.pull_cursor().unwrap(),
            (batch_pages + 10) * PULL_PAGE as u64
        );
        assert_eq!(
            store.status().unwrap().records,
            (batch_pages + 10) * PULL_PAGE as u64
        );
    }
}
