//! `faenban-server migrate`: a SQLite server's data moved into PostgreSQL
//! answers as the SQLite server did: the same logins, the same outboxes
//! held and held back, the same feed under the same numbers and checks.

mod support;

use std::sync::Arc;

use faenban_core::sync::{PullPage, Role};
use faenban_core::{RecordKey, RecordKind};
use faenban_server::postgres::{migrate::migrate, PostgresBackend};
use serde_json::json;
use support::postgres_support::ScratchDatabase;
use support::*;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_server_holds_what_the_sqlite_one_held_and_answers_its_laptops_the_same() {
    let before = Server::new();
    let token = before.account("มาลี", Role::Volunteer, &["40010203"], None);
    let province = before.account("จังหวัด", Role::Province, &[], None);
    let device = device(1);
    before.hello(&token, device).await;
    let (mut replica, mut changes) = households(1, "40010203", 3, NOW);
    let outside = RecordKey::new(RecordKind::Household, Uuid::from_u128(99));
    changes.push(replica.set(NOW, &outside, "village", json!("40020101")));
    let (status, body) = before.push(&token, device, 1, &changes).await;
    assert_held_back(status, &body, "out_of_scope", &[7]);
    let (pulled_before, cursor) = before.pull_from(&province, 0).await;
    let page = before.get("/v1/changes?since=0&limit=3", &province).await.1;
    let page: PullPage = serde_json::from_value(page).unwrap();

    let database = ScratchDatabase::new();
    let data = before._dir.path().to_owned();
    let url = database.url.clone();
    let moved = off_runtime(move || migrate(&data, &url).unwrap());
    assert_eq!((moved.accounts, moved.devices), (2, 1));
    let url = database.url.clone();
    let backend = off_runtime(move || Arc::new(PostgresBackend::open(&url).unwrap()));
    let after = Server {
        app: faenban_server::app(backend.clone()),
        backend: backend.clone(),
        kind: Kind::Postgres,
        sqlite: None,
        _dir: tempfile::tempdir().unwrap(),
        _database: Some(database),
    };
    // The same server key, so acknowledgements verify as before.
    assert_eq!(
        after.backend.server_key().public(),
        before.backend.server_key().public()
    );
    // The same outbox held and held back; resent, it is answered the same.
    assert_eq!(after.call(|b| b.held_through(device).unwrap()), 7);
    assert_eq!(
        after.call(|b| b.refusals_between(device, 1, 7).unwrap()),
        before.call(|b| b.refusals_between(device, 1, 7).unwrap())
    );
    let (status, body) = after.push(&token, device, 1, &changes).await;
    assert_held_back(status, &body, "out_of_scope", &[7]);
    assert_eq!(body["duplicates"], 6);
    // The same feed: from scratch, and on from a cursor and its check.
    assert_eq!(after.pull_from(&province, 0).await, (pulled_before, cursor));
    let check = page.check.clone().unwrap();
    let (status, rest) = after
        .get(
            &format!("/v1/changes?since={}&check={check}&limit=700", page.next),
            &province,
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{rest}");
    let rest: PullPage = serde_json::from_value(rest).unwrap();
    let mut whole = page.changes.decode().unwrap();
    whole.extend(rest.changes.decode().unwrap());
    assert_eq!(whole, after.pull_all(&province).await);
    // And the laptop goes on where it was.
    let note = replica.set(NOW + 1, &changes[0].record, "notes", json!("ย้ายแล้ว"));
    let (status, body) = after.push(&token, device, 8, &[note]).await;
    assert_held_back(status, &body, "", &[]);
    assert_eq!(body["applied"], 1);
}
