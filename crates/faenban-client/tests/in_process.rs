//! The sync driver run in process against the server's own router (no
//! sockets): two laptops converge, a laptop restored from a backup
//! realigns its outbox and loses nothing, a refused record is held back
//! while the rest goes and the pull still comes, a dead network leaves
//! the outbox as it was, and runs are signed in the form the server names.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request};
use faenban_client::{Observer, Realigned, Transport, TransportError};
use faenban_core::sync::{
    ErrorBody, HelloRequest, HelloResponse, PullPage, PushRequest, PushResponse, RelayRequest,
    RelayResponse, Role, RunSigning, Scope, PROTOCOL_VERSION,
};
use faenban_core::{RecordKey, RecordKind, RefusalCode};
use faenban_keys::DeviceKey;
use faenban_server::backend::Backend;
use faenban_server::{token, SqliteBackend};
use faenban_store::Store;
use http_body_util::BodyExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tower::ServiceExt as _;
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;

/// A transport that hands each request to the router in this process.
struct InProcess {
    app: axum::Router,
    runtime: tokio::runtime::Runtime,
    token: String,
}

impl InProcess {
    fn send<R: DeserializeOwned>(&self, request: Request<Body>) -> Result<R, TransportError> {
        let (status, bytes) = self.runtime.block_on(async {
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            (
                status,
                response.into_body().collect().await.unwrap().to_bytes(),
            )
        });
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|error| TransportError::BadAnswer(error.to_string()));
        }
        let body: ErrorBody = serde_json::from_slice(&bytes)
            .map_err(|error| TransportError::BadAnswer(error.to_string()))?;
        Err(TransportError::Refused {
            status: status.as_u16(),
            code: body.error,
            message: body.message,
        })
    }

    fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, TransportError> {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.send(request)
    }
}

impl Transport for InProcess {
    fn hello(&self, request: &HelloRequest) -> Result<HelloResponse, TransportError> {
        self.post("/v1/hello", request)
    }

    fn push(&self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        self.post("/v1/push", request)
    }

    fn relay(&self, request: &RelayRequest) -> Result<RelayResponse, TransportError> {
        self.post("/v1/relay", request)
    }

    fn pull(
        &self,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PullPage, TransportError> {
        let mut uri =
            format!("/v1/changes?since={since}&limit={limit}&protocol={PROTOCOL_VERSION}");
        if let Some(check) = check {
            uri.push_str(&format!("&check={check}"));
        }
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Body::empty())
            .unwrap();
        self.send(request)
    }
}

/// A transport whose network is down.
struct Offline;

impl Transport for Offline {
    fn hello(&self, _: &HelloRequest) -> Result<HelloResponse, TransportError> {
        Err(TransportError::Network("no signal".into()))
    }
    fn push(&self, _: &PushRequest) -> Result<PushResponse, TransportError> {
        Err(TransportError::Network("no signal".into()))
    }
    fn relay(&self, _: &RelayRequest) -> Result<RelayResponse, TransportError> {
        Err(TransportError::Network("no signal".into()))
    }
    fn pull(&self, _: u64, _: Option<&str>, _: usize) -> Result<PullPage, TransportError> {
        Err(TransportError::Network("no signal".into()))
    }
}

struct Server {
    _dir: tempfile::TempDir,
    backend: Arc<SqliteBackend>,
    app: axum::Router,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
        let app = faenban_server::app(backend.clone());
        Server {
            _dir: dir,
            backend,
            app,
        }
    }

    fn transport(&self, name: &str, role: Role, areas: &[&str]) -> InProcess {
        let token = token::generate().unwrap();
        let scope = Scope {
            role,
            areas: areas.iter().map(|area| (*area).to_owned()).collect(),
            dimension: None,
        };
        self.backend
            .add_account(name, &scope, &token::hash(&token), NOW)
            .unwrap();
        InProcess {
            app: self.app.clone(),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            token,
        }
    }
}

fn laptop(dir: &tempfile::TempDir, name: &str) -> Store {
    let mut store = Store::open(&dir.path().join(format!("{name}.db"))).unwrap();
    store.init(name, &DeviceKey::generate().unwrap()).unwrap();
    store
}

fn household(store: &mut Store, n: u128, village: &str) -> RecordKey {
    household_at(store, n, village, NOW)
}

fn household_at(store: &mut Store, n: u128, village: &str, wall_ms: u64) -> RecordKey {
    let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(0x100 + n));
    store
        .write(wall_ms, |session| {
            session.set(&key, "village", json!(village))?;
            session.set(&key, "address", json!(format!("{n} หมู่ 1")))
        })
        .unwrap();
    key
}

fn export(store: &Store) -> Vec<(RecordKey, serde_json::Map<String, serde_json::Value>)> {
    let mut records = Vec::new();
    store
        .for_each_record::<faenban_store::Error>(|key, state| {
            records.push((key, state.shown_values()));
            Ok(())
        })
        .unwrap();
    records
}

#[derive(Default)]
struct Counted {
    pushed: u64,
    pulled: u64,
    realigned: Vec<(Realigned, u64)>,
    finished: u32,
}

impl Observer for Counted {
    fn pushed(&mut self, changes: u64) {
        self.pushed += changes;
    }
    fn pulled(&mut self, changes: u64) {
        self.pulled += changes;
    }
    fn realigned(&mut self, how: Realigned, count: u64) {
        self.realigned.push((how, count));
    }
    fn pushes_done(&mut self) {
        self.finished += 1;
    }
    fn pulls_done(&mut self) {
        self.finished += 1;
    }
}

fn now() -> u64 {
    NOW
}

#[test]
fn two_laptops_converge_through_the_driver() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (laptop(&dir, "a"), laptop(&dir, "b"));
    let to_a = server.transport("a", Role::Volunteer, &["40010101"]);
    let to_b = server.transport("b", Role::Volunteer, &["40010101"]);
    for n in 0..3 {
        household(&mut a, n, "40010101");
    }
    let mut seen = Counted::default();
    let summary = faenban_client::sync(&mut a, &to_a, &to_a.token, &mut seen, &now).unwrap();
    assert_eq!((summary.pushed, summary.unpushed), (6, 0));
    assert_eq!((seen.pushed, seen.finished), (6, 2));
    let summary =
        faenban_client::sync(&mut b, &to_b, &to_b.token, &mut faenban_client::Quiet, &now).unwrap();
    assert_eq!(summary.pulled, 6);
    // B edits, A edits the same field unseen: both end with the conflict.
    let first = RecordKey::new(RecordKind::Household, Uuid::from_u128(0x100));
    b.write(NOW + 1, |s| s.set(&first, "address", json!("1/1 หมู่ 1")))
        .unwrap();
    a.write(NOW + 2, |s| s.set(&first, "address", json!("1/2 หมู่ 1")))
        .unwrap();
    for _ in 0..2 {
        faenban_client::sync(&mut a, &to_a, &to_a.token, &mut faenban_client::Quiet, &now).unwrap();
        faenban_client::sync(&mut b, &to_b, &to_b.token, &mut faenban_client::Quiet, &now).unwrap();
    }
    assert_eq!(export(&a), export(&b));
    assert_eq!(a.status().unwrap().conflicts, 1);
    assert_eq!(b.status().unwrap().conflicts, 1);
}

/// A laptop file with nothing recorded, kept aside; the laptop records and
/// syncs; then the file is restored from the copy. Returns the store and
/// the server's transport.
fn restored_laptop(server: &Server, dir: &tempfile::TempDir) -> (Store, InProcess) {
    let path = dir.path().join("restored.db");
    drop(laptop(dir, "restored"));
    let backup = dir.path().join("backup.db");
    std::fs::copy(&path, &backup).unwrap();
    let transport = server.transport("v", Role::Volunteer, &["40010101"]);
    let mut store = Store::open(&path).unwrap();
    for n in 0..3 {
        household(&mut store, n, "40010101");
    }
    faenban_client::sync(
        &mut store,
        &transport,
        &transport.token,
        &mut faenban_client::Quiet,
        &now,
    )
    .unwrap();
    drop(store);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(&backup, &path).unwrap();
    (Store::open(&path).unwrap(), transport)
}

#[test]
fn a_laptop_restored_from_a_backup_renumbers_its_outbox_and_loses_nothing() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut store, transport) = restored_laptop(&server, &dir);
    // Work recorded on the restored file, an hour on, reuses sequences 1
    // and 2 for other changes.
    let redone = household_at(&mut store, 9, "40010101", NOW + 3_600_000);
    let mut seen = Counted::default();
    let summary =
        faenban_client::sync(&mut store, &transport, &transport.token, &mut seen, &now).unwrap();
    assert_eq!(seen.realigned, vec![(Realigned::Renumbered, 2)]);
    assert_eq!((summary.pushed, summary.unpushed), (2, 0));
    // Everything: the three households pulled back, and the one redone.
    let keys: Vec<RecordKey> = export(&store).into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.contains(&redone));
}

/// The restored laptop's clock gives the very readings it gave before (a
/// clock behind its last reading ticks on from it): the server holds other
/// changes under those stamps and sequences. They are not taken for the
/// ones it holds: the push is refused and the laptop keeps them.
#[test]
fn changes_under_stamps_the_server_holds_for_other_changes_are_never_taken_as_held() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut store, transport) = restored_laptop(&server, &dir);
    household(&mut store, 9, "40010101");
    let waiting = store.outbox().unwrap();
    let summary = faenban_client::sync(
        &mut store,
        &transport,
        &transport.token,
        &mut faenban_client::Quiet,
        &now,
    )
    .unwrap();
    let refusal = summary.refusal.as_ref().and_then(TransportError::refusal);
    assert_eq!(refusal, Some(RefusalCode::StampReused), "{summary:?}");
    assert_eq!(summary.already_on_server, 0, "never acknowledged as held");
    let still: Vec<_> = store
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(_, change)| change)
        .collect();
    let before: Vec<_> = waiting.into_iter().map(|(_, change)| change).collect();
    assert_eq!(still, before, "the laptop keeps them");
}

#[test]
fn a_refused_record_is_held_back_the_rest_goes_and_the_pull_comes() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let office = server.transport("office", Role::Province, &[]);
    let mut at_office = laptop(&dir, "office");
    household(&mut at_office, 7, "40010101");
    faenban_client::sync(
        &mut at_office,
        &office,
        &office.token,
        &mut faenban_client::Quiet,
        &now,
    )
    .unwrap();

    let volunteer = server.transport("v", Role::Volunteer, &["40010101"]);
    let mut store = laptop(&dir, "volunteer");
    // Outside the account's village: the laptop does not know the scope
    // yet (no hello), so the server is the one to refuse it.
    household(&mut store, 1, "40010203");
    household(&mut store, 2, "40010101");
    let summary = faenban_client::sync(
        &mut store,
        &volunteer,
        &volunteer.token,
        &mut faenban_client::Quiet,
        &now,
    )
    .unwrap();
    assert_eq!(summary.held_back_now, 2, "{summary:?}");
    assert_eq!(summary.pushed, 2);
    assert_eq!(summary.unpushed, 0);
    assert!(summary.refusal.is_none());
    assert_eq!(summary.pulled, 2, "the office's household came");
    let held = store.held_back().unwrap();
    assert!(held
        .iter()
        .all(|held| RefusalCode::from_name(&held.code) == Some(RefusalCode::OutOfScope)));
}

#[test]
fn a_dead_network_leaves_the_outbox_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = laptop(&dir, "offline");
    household(&mut store, 1, "40010101");
    let before = store.outbox().unwrap();
    let error = faenban_client::sync(
        &mut store,
        &Offline,
        "token",
        &mut faenban_client::Quiet,
        &now,
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            faenban_client::SyncError::Transport(TransportError::Network(_))
        ),
        "{error}"
    );
    assert_eq!(store.outbox().unwrap(), before);
}

/// The server, keeping every push it passes on; with `names_form` false,
/// its hello answers as a server from before run signing form 3 (naming
/// no form).
struct Recording<'a> {
    server: &'a InProcess,
    names_form: bool,
    pushes: std::sync::Mutex<Vec<PushRequest>>,
}

impl Transport for Recording<'_> {
    fn hello(&self, request: &HelloRequest) -> Result<HelloResponse, TransportError> {
        let answer = self.server.hello(request)?;
        if self.names_form {
            return Ok(answer);
        }
        let mut answer = serde_json::to_value(answer).unwrap();
        let fields = answer.as_object_mut().unwrap();
        fields
            .remove("run_signing")
            .expect("this server names a form");
        Ok(serde_json::from_value(answer).unwrap())
    }
    fn push(&self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        self.pushes.lock().unwrap().push(request.clone());
        self.server.push(request)
    }
    fn relay(&self, request: &RelayRequest) -> Result<RelayResponse, TransportError> {
        self.server.relay(request)
    }
    fn pull(
        &self,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PullPage, TransportError> {
        self.server.pull(since, check, limit)
    }
}

#[test]
fn a_laptop_signs_in_the_form_its_server_names_and_an_older_servers_form_when_it_names_none() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let mut store = laptop(&dir, "a");
    let key = store.device_key().unwrap().unwrap();
    let to_server = server.transport("a", Role::Volunteer, &["40010101"]);
    let signed_as = |push: &PushRequest| {
        let changes = push.changes.decode().unwrap();
        [RunSigning::Json, RunSigning::Compact]
            .into_iter()
            .filter(|form| {
                key.sign_run_as(*form, push.device, push.first_sequence, &changes)
                    .to_string()
                    == push.signature
            })
            .collect::<Vec<_>>()
    };
    for (n, names_form, form) in [(1, false, RunSigning::Json), (2, true, RunSigning::Compact)] {
        household(&mut store, n, "40010101");
        let transport = Recording {
            server: &to_server,
            names_form,
            pushes: Default::default(),
        };
        let summary = faenban_client::sync(
            &mut store,
            &transport,
            &to_server.token,
            &mut faenban_client::Quiet,
            &now,
        )
        .unwrap();
        // The server verified the run in either form and took it.
        assert_eq!((summary.pushed, summary.unpushed), (2, 0));
        let pushes = transport.pushes.into_inner().unwrap();
        assert_eq!(pushes.len(), 1);
        assert_eq!(signed_as(&pushes[0]), [form]);
    }
}
