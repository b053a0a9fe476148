//! What the router tests share: a server over a real store (SQLite in a
//! scratch folder, or a scratch database on a real PostgreSQL), accounts,
//! requests, and devices that make changes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use faenban_core::sync::{
    ChangeSet, Letter, LetterRun, PullFrom, PullPage, Reply, Role, Scope, PROTOCOL_VERSION,
};
use faenban_core::{Change, DeviceId, Dimension, RecordKey, RecordKind, Replica};
use faenban_keys::DeviceKey;
use faenban_server::backend::{Backend, SqliteBackend};
use faenban_server::postgres::PostgresBackend;
use faenban_server::token;
use faenban_store::server::{Account, PushInput};
use faenban_store::{Store, SCHEMA_VERSION};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use uuid::Uuid;

pub const NOW: u64 = 1_795_000_000_000;

pub mod postgres_support;

/// Runs `work` on a thread of its own, outside any async runtime.
pub fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(work).join().unwrap())
}

/// A test body run once on each store: `#[tokio::test]` functions named
/// `<name>::sqlite` and `<name>::postgres` from one body.
#[macro_export]
macro_rules! on_both_stores {
    ($(#[$attribute:meta])* async fn $name:ident($server:ident: Server) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($server: Server) $body

            $(#[$attribute])*
            async fn sqlite() {
                body(Server::on(Kind::Sqlite)).await
            }

            $(#[$attribute])*
            async fn postgres() {
                body(Server::on(Kind::Postgres)).await
            }
        }
    };
}

/// Which store a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct Server {
    pub backend: Arc<dyn Backend>,
    pub app: Router,
    pub kind: Kind,
    /// The SQLite backend, when it is one (for what only it can show).
    pub sqlite: Option<Arc<SqliteBackend>>,
    pub _dir: tempfile::TempDir,
    /// Dropped last: the scratch database outlives the connections to it.
    pub _database: Option<postgres_support::ScratchDatabase>,
}

impl Server {
    /// A server on SQLite.
    pub fn new() -> Server {
        Server::on(Kind::Sqlite)
    }

    /// A server on the store `kind` names: a PostgreSQL one gets a
    /// database of its own on the test cluster (`postgres_support`).
    pub fn on(kind: Kind) -> Server {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Sqlite => {
                let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
                Server {
                    app: faenban_server::app(backend.clone()),
                    backend: backend.clone(),
                    kind,
                    sqlite: Some(backend),
                    _dir: dir,
                    _database: None,
                }
            }
            Kind::Postgres => {
                let database = postgres_support::ScratchDatabase::new();
                let url = database.url.clone();
                let backend: Arc<dyn Backend> = off_runtime(move || {
                    Arc::new(PostgresBackend::open(&url).unwrap()) as Arc<dyn Backend>
                });
                Server {
                    app: faenban_server::app(backend.clone()),
                    backend,
                    kind,
                    sqlite: None,
                    _dir: dir,
                    _database: Some(database),
                }
            }
        }
    }

    /// Runs a call of the backend's as the HTTP layer does: off the async
    /// runtime (PostgreSQL's client blocks on a runtime of its own).
    pub fn call<T: Send>(&self, work: impl FnOnce(&dyn Backend) -> T + Send) -> T {
        let backend = self.backend.clone();
        off_runtime(move || work(&*backend))
    }

    /// The number of the feed's last entry.
    pub fn feed_end(&self) -> u64 {
        self.call(|backend| backend.report_generation().unwrap())
    }

    /// Adds an account and returns its token.
    pub fn account(
        &self,
        name: &str,
        role: Role,
        areas: &[&str],
        dimension: Option<Dimension>,
    ) -> String {
        let token = token::generate().unwrap();
        let scope = Scope {
            role,
            areas: areas.iter().map(|a| a.to_string()).collect(),
            dimension,
        };
        self.call(|backend| {
            backend
                .add_account(name, &scope, &token::hash(&token), NOW)
                .unwrap()
        });
        token
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    /// A hello of `device`, proven with its key.
    pub async fn hello(&self, token: &str, device: DeviceId) -> (StatusCode, Value) {
        let key = key_of(device);
        let body = json!({
            "protocol": PROTOCOL_VERSION,
            "device": device,
            "name": "laptop",
            "public_key": key.public().to_string(),
            "proof": key.sign_hello(device, token).to_string(),
        });
        self.post("/v1/hello", token, body.to_string()).await
    }

    pub async fn push(
        &self,
        token: &str,
        device: DeviceId,
        first_sequence: u64,
        changes: &[Change],
    ) -> (StatusCode, Value) {
        let body = push_body(device, first_sequence, changes, false);
        self.post("/v1/push", token, body.to_string()).await
    }

    /// An authorized GET.
    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    pub async fn pull_all(&self, token: &str) -> Vec<Change> {
        self.pull_from(token, 0).await.0
    }

    /// Every change a pull from `since` returns (in pages of 700), and the
    /// cursor after it.
    pub async fn pull_from(&self, token: &str, since: u64) -> (Vec<Change>, u64) {
        let mut since = since;
        let mut changes = Vec::new();
        loop {
            let (status, body) = self
                .get(&format!("/v1/changes?since={since}&limit=700"), token)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let page: PullPage = serde_json::from_value(body).unwrap();
            changes.extend(page.changes.decode().unwrap());
            since = page.next;
            if !page.more {
                return (changes, since);
            }
        }
    }

    /// Nothing was applied: no feed entries (held-back sequences may be held).
    pub fn assert_nothing_applied(&self) {
        assert_eq!(self.feed_end(), 0);
    }

    /// Nothing was stored: no feed entries, no arrivals for the device.
    pub fn assert_nothing_stored(&self, device: DeviceId) {
        assert_eq!(self.feed_end(), 0);
        assert_eq!(
            self.call(|backend| backend.held_through(device).unwrap()),
            0
        );
    }
}

/// A push of `device`'s outbox, signed with its key; a relay carries the
/// public key too.
pub fn push_body(device: DeviceId, first_sequence: u64, changes: &[Change], relay: bool) -> Value {
    let key = key_of(device);
    let mut body = json!({
        "protocol": PROTOCOL_VERSION,
        "schema": SCHEMA_VERSION,
        "device": device,
        "relay": relay,
        "first_sequence": first_sequence,
        "changes": ChangeSet::encode(changes),
        "signature": key.sign_run(device, first_sequence, changes).to_string(),
    });
    if relay {
        body["public_key"] = json!(key.public().to_string());
    }
    body
}

/// A push of `device`'s outbox as a backend takes it, signed with its key.
pub fn push_input(device: DeviceId, first_sequence: u64, changes: &[Change]) -> PushInput {
    PushInput {
        device,
        relay: false,
        first_sequence,
        signature: key_of(device).sign_run(device, first_sequence, changes),
        changes: changes.to_vec(),
        public_key: None,
    }
}

/// The province office's laptop, pushing whole households of village
/// 40010101 straight to a backend.
pub struct OfficeLaptop {
    pub account: Account,
    pub device: DeviceId,
    replica: Replica,
    sequence: u64,
    made: u128,
}

impl OfficeLaptop {
    /// Device `n` of a new province account, bound to it.
    pub fn enroll(backend: &dyn Backend, n: u128) -> OfficeLaptop {
        let scope = Scope {
            role: Role::Province,
            areas: Vec::new(),
            dimension: None,
        };
        let hash = token::hash(&token::generate().unwrap());
        let account = backend.add_account("office", &scope, &hash, NOW).unwrap();
        let device = device(n);
        backend
            .hello(&account, device, "laptop", &key_of(device).public(), NOW)
            .unwrap();
        OfficeLaptop {
            account,
            device,
            replica: Replica::new(device),
            sequence: 1,
            made: 0,
        }
    }

    /// Records `count` more households (six field changes each) and pushes
    /// them.
    pub fn push_households(&mut self, backend: &dyn Backend, count: u128) {
        let mut changes = Vec::new();
        for _ in 0..count {
            self.made += 1;
            let made = self.made;
            let record = RecordKey::new(RecordKind::Household, Uuid::from_u128(made));
            for (field, value) in [
                ("house_code", json!(format!("4001{made:07}"))),
                ("village", json!("40010101")),
                ("address", json!(format!("{made} หมู่ 1"))),
                ("entry", json!("tpmap_target")),
                ("status", json!("active")),
                ("welfare_card", json!(false)),
            ] {
                changes.push(self.replica.set(NOW, &record, field, value));
            }
        }
        let input = push_input(self.device, self.sequence, &changes);
        let outcome = backend.push(&self.account, input, NOW).unwrap();
        assert_eq!(outcome.applied as usize, changes.len(), "{outcome:?}");
        self.sequence += changes.len() as u64;
    }
}

/// A relay of `device`'s letter (its run from `first_sequence`, and a pull
/// from `pull_from` when given), sealed to the server's key.
pub fn relay_body(
    server: &Server,
    device: DeviceId,
    first_sequence: u64,
    changes: &[Change],
    pull_from: Option<u64>,
) -> Value {
    relay_body_from(
        server,
        device,
        first_sequence,
        first_sequence,
        changes,
        pull_from,
    )
}

/// [`relay_body`] of a letter from a bundle whose outbox started at `outbox_from`.
pub fn relay_body_from(
    server: &Server,
    device: DeviceId,
    outbox_from: u64,
    first_sequence: u64,
    changes: &[Change],
    pull_from: Option<u64>,
) -> Value {
    let key = key_of(device);
    let letter = Letter {
        device,
        created_ms: NOW,
        outbox_from,
        run: (!changes.is_empty()).then(|| LetterRun {
            first_sequence,
            changes: ChangeSet::encode(changes),
            signature: key.sign_run(device, first_sequence, changes).to_string(),
        }),
        pull: pull_from.map(|since| PullFrom { since, check: None }),
    };
    let sealed =
        faenban_store::bundle::seal_letter(&key, &server.backend.server_key().public(), &letter)
            .unwrap();
    json!({
        "protocol": PROTOCOL_VERSION,
        "device": device,
        "letter": faenban_keys::hex(&sealed),
    })
}

/// The server's answer to a relay, opened with the key of the device it is for.
pub fn open_reply(server: &Server, device: DeviceId, answer: &Value) -> Reply {
    let sealed = faenban_keys::unhex_vec(answer["reply"].as_str().unwrap()).unwrap();
    faenban_store::bundle::open_reply(
        &key_of(device),
        device,
        &server.backend.server_key().public(),
        &sealed,
    )
    .unwrap()
}

/// The push was taken, with exactly `sequences` held back for `code`: set
/// aside, not applied.
#[track_caller]
pub fn assert_held_back(status: StatusCode, body: &Value, code: &str, sequences: &[u64]) {
    assert_eq!(status, StatusCode::OK, "{body}");
    let held: Vec<(u64, String)> = body["held_back"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|held| {
            (
                held["sequence"].as_u64().unwrap(),
                held["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = sequences.iter().map(|s| (*s, code.to_owned())).collect();
    assert_eq!(held, expected, "{body}");
}

/// The keys of the devices tests made, by device id.
static KEYS: Mutex<BTreeMap<DeviceId, String>> = Mutex::new(BTreeMap::new());

/// Test device `n`: its key (made from `n`) is remembered, and its id is
/// the one the key makes.
pub fn device(n: u128) -> DeviceId {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&n.to_le_bytes());
    seed[16] = 0xfa;
    remember(DeviceKey::from_seed(seed))
}

/// Remembers a key; returns its device id.
pub fn remember(key: DeviceKey) -> DeviceId {
    let device = key.device_id();
    KEYS.lock().unwrap().insert(device, key.seed_hex());
    device
}

/// The key of a device made by [`device`] or [`remember`]ed; for any other
/// device (one a test forges), a key that is not its.
pub fn key_of(device: DeviceId) -> DeviceKey {
    let seed = KEYS.lock().unwrap().get(&device).cloned();
    seed.and_then(|seed| DeviceKey::from_seed_hex(&seed))
        .unwrap_or_else(|| DeviceKey::from_seed([0xee; 32]))
}

/// A device that made `households` households in `village`.
pub fn households(
    device: u128,
    village: &str,
    count: usize,
    wall_ms: u64,
) -> (Replica, Vec<Change>) {
    let mut replica = Replica::new(self::device(device));
    let mut changes = Vec::new();
    for n in 0..count {
        let key = RecordKey::new(
            RecordKind::Household,
            Uuid::from_u128(device << 64 | n as u128),
        );
        changes.push(replica.set(wall_ms, &key, "village", json!(village)));
        changes.push(replica.set(wall_ms, &key, "address", json!(format!("{n} หมู่ 3"))));
    }
    (replica, changes)
}

pub async fn push_store(server: &Server, token: &str, store: &Store) {
    let device = remember(store.device_key().unwrap().unwrap());
    assert_eq!(server.hello(token, device).await.0, StatusCode::OK);
    let outbox = store.outbox().unwrap();
    for chunk in outbox.chunks(1000) {
        let changes: Vec<Change> = chunk.iter().map(|(_, c)| c.clone()).collect();
        let (status, body) = server.push(token, device, chunk[0].0, &changes).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

pub fn households_in(changes: &[Change]) -> std::collections::BTreeSet<Uuid> {
    changes
        .iter()
        .filter(|c| c.record.kind == RecordKind::Household)
        .map(|c| c.record.id.0)
        .collect()
}
