//! The PostgreSQL backend's pool when every connection is in use: a request
//! waits a bounded time, then is answered 503 with Retry-After, and the
//! server goes on once a connection is free; nothing hangs.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use faenban_core::sync::{Role, Scope};
use faenban_server::backend::Backend as _;
use faenban_server::postgres::{PoolOptions, PostgresBackend};
use faenban_server::token;
use http_body_util::BodyExt as _;
use support::postgres_support::ScratchDatabase;
use support::{households, key_of, off_runtime, push_body, NOW};
use tower::ServiceExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_busy_after_a_bounded_wait_and_recovers() {
    let database = ScratchDatabase::new();
    let url = database.url.clone();
    let backend = off_runtime(move || {
        Arc::new(
            PostgresBackend::open_with(
                &url,
                PoolOptions {
                    size: 1,
                    wait: Duration::from_millis(300),
                    ..PoolOptions::default()
                },
            )
            .unwrap(),
        )
    });
    let app = faenban_server::app(backend.clone());
    let token = token::generate().unwrap();
    let (replica, changes) = households(1, "40010101", 3, NOW);
    let device = replica.device;
    {
        let backend = backend.clone();
        let hash = token::hash(&token);
        off_runtime(move || {
            let scope = Scope {
                role: Role::Province,
                areas: Vec::new(),
                dimension: None,
            };
            let account = backend.add_account("office", &scope, &hash, NOW).unwrap();
            backend
                .hello(&account, device, "laptop", &key_of(device).public(), NOW)
                .unwrap();
        });
    }
    // Another client of the database holds what a push needs last: the
    // push takes the pool's only connection and waits.
    let admin_url = database.url.clone();
    let (locked, is_locked) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
        let mut tx = admin.transaction().unwrap();
        tx.batch_execute("LOCK TABLE feed_head IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        locked.send(()).unwrap();
        // Until the test lets go (drops its sender).
        let _ = released.recv();
        tx.rollback().unwrap();
    });
    let request = |path: &str, body: Option<String>| {
        let builder = match &body {
            Some(_) => Request::post(path).header(header::CONTENT_TYPE, "application/json"),
            None => Request::get(path),
        };
        builder
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap()
    };
    tokio::task::spawn_blocking(move || is_locked.recv().unwrap())
        .await
        .unwrap();
    let push = tokio::spawn(app.clone().oneshot(request(
        "/v1/push",
        Some(push_body(device, 1, &changes, false).to_string()),
    )));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A pull meanwhile finds no connection free.
    let pulled = tokio::time::timeout(
        Duration::from_secs(60),
        app.clone().oneshot(request("/v1/changes?since=0", None)),
    )
    .await
    .expect("a request waiting for the pool must not hang")
    .unwrap();
    assert_eq!(pulled.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        pulled
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    let body = pulled.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "busy", "{body}");
    // Once the database lets the push go, it completes and the pool serves
    // again.
    drop(release);
    let pushed = push.await.unwrap().unwrap();
    assert_eq!(pushed.status(), StatusCode::OK);
    let pulled = app
        .oneshot(request("/v1/changes?since=0", None))
        .await
        .unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    let body = pulled.into_body().collect().await.unwrap().to_bytes();
    let page: faenban_core::sync::PullPage = serde_json::from_slice(&body).unwrap();
    assert_eq!(page.changes.decode().unwrap(), changes);
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
}
