//! What the router tests share: a server over a real SQLite store in a
//! scratch folder, accounts, requests, and devices that make changes.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use faenban_core::sync::{ChangeSet, PullPage, Role, Scope, PROTOCOL_VERSION};
use faenban_core::{Change, DeviceId, Dimension, RecordKey, RecordKind, Replica};
use faenban_server::backend::{Backend, SqliteBackend};
use faenban_server::token;
use faenban_store::{Store, SCHEMA_VERSION};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use uuid::Uuid;

pub const NOW: u64 = 1_795_000_000_000;

pub struct Server {
    pub _dir: tempfile::TempDir,
    pub backend: Arc<SqliteBackend>,
    pub app: Router,
}

impl Server {
    pub fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
        let app = faenban_server::app(backend.clone());
        Server {
            _dir: dir,
            backend,
            app,
        }
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
        self.backend
            .add_account(name, &scope, &token::hash(&token), NOW)
            .unwrap();
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

    pub async fn hello(&self, token: &str, device: DeviceId) -> (StatusCode, Value) {
        let body = json!({"protocol": PROTOCOL_VERSION, "device": device, "name": "laptop"});
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

    /// Nothing was stored: no feed entries, no arrivals for the device.
    pub fn assert_nothing_stored(&self, device: DeviceId) {
        let store = Store::open(self.backend.path()).unwrap();
        assert_eq!(store.feed_end().unwrap(), 0);
        assert_eq!(store.held_through(device).unwrap(), 0);
    }
}

pub fn push_body(device: DeviceId, first_sequence: u64, changes: &[Change], relay: bool) -> Value {
    json!({
        "protocol": PROTOCOL_VERSION,
        "schema": SCHEMA_VERSION,
        "device": device,
        "relay": relay,
        "first_sequence": first_sequence,
        "changes": ChangeSet::encode(changes),
    })
}

/// A device that made `households` households in `village`.
pub fn households(
    device: u128,
    village: &str,
    count: usize,
    wall_ms: u64,
) -> (Replica, Vec<Change>) {
    let mut replica = Replica::new(DeviceId::from_u128(device));
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
    let device = store.device().unwrap().unwrap().id;
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
