//! A hostile but legitimate account against the server's push: each test
//! reproduces one way a valid token was once able to destroy, hide or reach
//! another account's data, and shows it refused with a reason, nothing of
//! the batch applied, and the victim's work intact.

mod support;

use axum::http::StatusCode;
use faenban_core::model::Visit;
use faenban_core::sync::{ChangeSet, Letter, LetterRun, Role, PROTOCOL_VERSION};
use faenban_core::{Baht, Change, Dimension, Hlc, RecordKey, RecordKind, Replica, Stamp};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

const MINE: &str = "40010101";
const THEIRS: &str = "40010102";

/// A change with a stamp chosen by the caller.
fn forged(stamp: Stamp, record: &RecordKey, field: &str, value: Value) -> Change {
    Change {
        stamp,
        record: record.clone(),
        field: field.into(),
        value,
        supersedes: Default::default(),
        observed: Vec::new(),
        previous_stamps: Vec::new(),
    }
}

fn household(n: u128) -> RecordKey {
    RecordKey::new(RecordKind::Household, Uuid::from_u128(n))
}

/// A server with a volunteer in each of two villages, each with a
/// household pushed; returns the tokens and the replicas.
async fn two_villages(server: Server) -> (Server, String, String, Replica, Replica) {
    let victim = server.account("victim", Role::Volunteer, &[THEIRS], None);
    let attacker = server.account("attacker", Role::Volunteer, &[MINE], None);
    let (victim_replica, changes) = households(1, THEIRS, 1, NOW);
    assert_eq!(
        server.hello(&victim, victim_replica.device).await.0,
        StatusCode::OK
    );
    let (status, body) = server
        .push(&victim, victim_replica.device, 1, &changes)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (attacker_replica, changes) = households(2, MINE, 1, NOW);
    assert_eq!(
        server.hello(&attacker, attacker_replica.device).await.0,
        StatusCode::OK
    );
    let (status, body) = server
        .push(&attacker, attacker_replica.device, 1, &changes)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (server, victim, attacker, victim_replica, attacker_replica)
}

on_both_stores! {
#[tokio::test]
async fn filler_changes_under_another_devices_stamps_are_refused_and_its_work_still_lands(server: Server) {
    let (server, victim, attacker, mut victim_replica, attacker_replica) = two_villages(server).await;
    // The victim records a note offline; the attacker learned its stamp.
    let victims_home = household(1 << 64);
    let note = victim_replica.set(NOW + 10, &victims_home, "notes", json!("ไม่มีน้ำประปา"));
    // Filler in the attacker's own village, stamped as the victim's note,
    // with an earlier stamp of the attacker's first so that the old author
    // check (the first earlier stamp only) took it for the attacker's own.
    let mut filler = forged(note.stamp, &household(2 << 64), "notes", json!("x"));
    filler.previous_stamps = vec![Stamp::new(Hlc::at(NOW), attacker_replica.device)];
    let (status, body) = server
        .push(&attacker, attacker_replica.device, 3, &[filler])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_author"))
    );
    // Plainly stamped as the victim's device, too.
    let filler = forged(note.stamp, &household(2 << 64), "notes", json!("x"));
    let (status, body) = server
        .push(&attacker, attacker_replica.device, 3, &[filler])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_author"))
    );
    // The victim's note is new to the server, not "already held".
    let (status, body) = server
        .push(&victim, victim_replica.device, 3, &[note])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["applied"].as_u64(), body["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let (pulled, _) = server.pull_from(&victim, 0).await;
    assert!(pulled.iter().any(|c| c.value == json!("ไม่มีน้ำประปา")));
}
}

on_both_stores! {
#[tokio::test]
async fn no_outbox_may_claim_the_servers_own_device(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    // The server's device is the one its key makes (SQLite and PostgreSQL
    // servers made since keys existed).
    let own = server.backend.server_key().device_id();
    let (status, body) = server.hello(&province, own).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_device"))
    );
    let (_, changes) = households(9, MINE, 1, NOW);
    let claimed: Vec<Change> = changes
        .into_iter()
        .map(|mut c| {
            c.stamp.device = own;
            c
        })
        .collect();
    let body = push_body(own, 1, &claimed, true);
    let (status, body) = server.post("/v1/push", &province, body.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_device"))
    );
    server.assert_nothing_stored(own);
}
}

on_both_stores! {
#[tokio::test]
async fn a_different_change_under_a_held_stamp_is_refused_not_counted_as_held(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let (replica, changes) = households(1, MINE, 1, NOW);
    server.hello(&token, replica.device).await;
    server.push(&token, replica.device, 1, &changes).await;
    // The same stamp as the address, another value, a new sequence.
    let mut other = changes[1].clone();
    other.value = json!("ที่อยู่อื่น");
    let (status, body) = server.push(&token, replica.device, 3, &[other]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("stamp_reused"))
    );
    // The very same change again under a new number is a duplicate.
    let (status, body) = server.push(&token, replica.device, 3, &changes[1..]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicates"], 1);
}
}

on_both_stores! {
#[tokio::test]
async fn a_household_set_twice_in_a_batch_cannot_move_a_member_into_another_village(server: Server) {
    let (server, _victim, attacker, _, mut attacker_replica) = two_villages(server).await;
    let device = attacker_replica.device;
    let own_home = household(2 << 64);
    let victims_home = household(1 << 64);
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(2 << 64 | 50));
    let name = attacker_replica.set(NOW + 1, &member, "first_name", json!("สมชาย"));
    let into_theirs = forged(
        Stamp::new(Hlc::at(NOW + 100), device),
        &member,
        "household",
        json!(victims_home.id.to_string()),
    );
    let into_mine = forged(
        Stamp::new(Hlc::at(NOW + 2), device),
        &member,
        "household",
        json!(own_home.id.to_string()),
    );
    // The merge keeps the highest stamp (the other village's household);
    // the old check looked only at the last one in the batch.
    let (status, body) = server
        .push(
            &attacker,
            device,
            3,
            &[name.clone(), into_theirs, into_mine.clone()],
        )
        .await;
    assert_held_back(status, &body, "out_of_scope", &[3, 4, 5]);
    // A visit with a crippling income, injected the same way: refused too.
    let visit = RecordKey::new(RecordKind::Visit, Uuid::from_u128(2 << 64 | 51));
    let injected = [
        forged(
            Stamp::new(Hlc::at(NOW + 3), device),
            &visit,
            "income_per_year",
            json!("1000.00"),
        ),
        forged(
            Stamp::new(Hlc::at(NOW + 200), device),
            &visit,
            "household",
            json!(victims_home.id.to_string()),
        ),
        forged(
            Stamp::new(Hlc::at(NOW + 4), device),
            &visit,
            "household",
            json!(own_home.id.to_string()),
        ),
    ];
    let (status, body) = server.push(&attacker, device, 6, &injected).await;
    assert_held_back(status, &body, "out_of_scope", &[6, 7, 8]);
    // Nothing of either reached the other village.
    let (pulled, _) = server.pull_from(&_victim, 0).await;
    assert!(pulled
        .iter()
        .all(|c| c.record != member && c.record != visit));
    // The attacker's honest member in its own village still goes through,
    // sent again under new sequences.
    let (status, body) = server.push(&attacker, device, 9, &[name, into_mine]).await;
    assert_held_back(status, &body, "", &[]);
    assert_eq!(body["applied"].as_u64(), Some(2), "{body}");
}
}

on_both_stores! {
#[tokio::test]
async fn a_household_that_is_not_an_id_is_refused_for_every_role(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    let mut replica = Replica::new(device(7));
    server.hello(&province, replica.device).await;
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(70));
    for (sequence, bad) in [
        json!("not-a-uuid"),
        json!(5),
        json!(null),
        json!("{00000000-0000-0000-0000-000000000046}"),
    ]
    .into_iter()
    .enumerate()
    {
        let sequence = sequence as u64 + 1;
        let change = replica.set(NOW, &member, "household", bad.clone());
        let (status, body) = server
            .push(&province, replica.device, sequence, &[change])
            .await;
        assert_held_back(status, &body, "bad_value", &[sequence]);
    }
    server.assert_nothing_applied();
}
}

on_both_stores! {
#[tokio::test]
async fn a_village_that_is_not_a_village_code_is_refused(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    let mut replica = Replica::new(device(7));
    server.hello(&province, replica.device).await;
    for (sequence, bad) in ["40010101zz", "4001", "99010101", "40990101", ""]
        .into_iter()
        .enumerate()
    {
        let sequence = sequence as u64 + 1;
        let change = replica.set(NOW, &household(70), "village", json!(bad));
        let (status, body) = server
            .push(&province, replica.device, sequence, &[change])
            .await;
        assert_held_back(status, &body, "bad_value", &[sequence]);
    }
    server.assert_nothing_applied();
}
}

on_both_stores! {
#[tokio::test]
async fn a_deeply_nested_value_is_refused_and_the_household_stays_readable(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let (mut replica, changes) = households(1, MINE, 1, NOW);
    server.hello(&token, replica.device).await;
    server.push(&token, replica.device, 1, &changes).await;
    let home = changes[0].record.clone();
    let mut poison = json!(1);
    for _ in 0..123 {
        poison = Value::Array(vec![poison]);
    }
    let change = replica.set(NOW + 1, &home, "notes", poison);
    let (status, body) = server.push(&token, replica.device, 3, &[change]).await;
    assert_held_back(status, &body, "limit_exceeded", &[3]);
    // Later pushes to the household go through, and it pulls and decodes.
    let mut replica = Replica::new(replica.device);
    for change in &changes {
        replica.receive(change.clone(), NOW);
    }
    let note = replica.set(NOW + 2, &home, "notes", json!("ปกติ"));
    let (status, body) = server.push(&token, replica.device, 4, &[note]).await;
    assert_held_back(status, &body, "", &[]);
    let (pulled, _) = server.pull_from(&token, 0).await;
    assert_eq!(pulled.len(), 3);
    assert!(pulled.iter().any(|change| change.record == home));
}
}

on_both_stores! {
#[tokio::test]
async fn a_field_flooded_with_values_that_supersede_nothing_is_refused(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let (replica, changes) = households(1, MINE, 1, NOW);
    server.hello(&token, replica.device).await;
    server.push(&token, replica.device, 1, &changes).await;
    let home = changes[0].record.clone();
    let flood: Vec<Change> = (0..1000)
        .map(|n| {
            forged(
                Stamp::new(
                    Hlc {
                        wall_ms: NOW + 5,
                        counter: n,
                    },
                    replica.device,
                ),
                &home,
                "notes",
                json!(n),
            )
        })
        .collect();
    let (status, body) = server.push(&token, replica.device, 3, &flood).await;
    let sequences: Vec<u64> = (3..1003).collect();
    assert_held_back(status, &body, "limit_exceeded", &sequences);
    // So are a thousand new fields, and a 1 MB field name.
    let fields: Vec<Change> = (0..300)
        .map(|n| {
            forged(
                Stamp::new(
                    Hlc {
                        wall_ms: NOW + 6,
                        counter: n,
                    },
                    replica.device,
                ),
                &home,
                &format!("extra_{n}"),
                json!(n),
            )
        })
        .collect();
    let (status, body) = server.push(&token, replica.device, 1003, &fields).await;
    let sequences: Vec<u64> = (1003..1303).collect();
    assert_held_back(status, &body, "limit_exceeded", &sequences);
    let long = forged(
        Stamp::new(Hlc::at(NOW + 7), replica.device),
        &home,
        &"f".repeat(1 << 20),
        json!(1),
    );
    let (status, body) = server.push(&token, replica.device, 1303, &[long]).await;
    assert_held_back(status, &body, "limit_exceeded", &[1303]);
    // A laptop restored from a backup leaves one more value of its own: fine.
    let restored = forged(
        Stamp::new(Hlc::at(NOW + 8), replica.device),
        &home,
        "address",
        json!("กู้คืน"),
    );
    let (status, body) = server.push(&token, replica.device, 1304, &[restored]).await;
    assert_held_back(status, &body, "", &[]);
    assert_eq!(body["applied"].as_u64(), Some(1));
}
}

on_both_stores! {
#[tokio::test]
async fn a_huge_device_name_and_a_negative_schema_are_refused(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let device = device(3);
    let key = key_of(device);
    let body = json!({
        "protocol": faenban_core::sync::PROTOCOL_VERSION,
        "device": device,
        "name": "ก".repeat(600_000),
        "public_key": key.public().to_string(),
        "proof": key.sign_hello(device, &token).to_string(),
    });
    let (status, body) = server.post("/v1/hello", &token, body.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_value"))
    );
    server.hello(&token, device).await;
    let (_, changes) = households(3, MINE, 1, NOW);
    let mut body = push_body(device, 1, &changes, false);
    body["schema"] = json!(-5);
    let (status, body) = server.post("/v1/push", &token, body.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("schema_version"))
    );
    server.assert_nothing_stored(device);
}
}

on_both_stores! {
#[tokio::test]
async fn a_household_with_no_village_cannot_be_claimed_by_a_volunteer(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    let volunteer = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let mut office = Replica::new(device(1));
    server.hello(&province, office.device).await;
    let unplaced = household(500);
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(501));
    let changes = [
        office.set(NOW, &unplaced, "address", json!("ไม่ทราบหมู่บ้าน")),
        office.set(NOW, &member, "household", json!(unplaced.id.to_string())),
        office.set(NOW, &member, "national_id", json!("1999900000007")),
    ];
    let (status, body) = server.push(&province, office.device, 1, &changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut laptop = Replica::new(device(2));
    server.hello(&volunteer, laptop.device).await;
    let claim = laptop.set(NOW + 1, &unplaced, "village", json!(MINE));
    let (status, body) = server.push(&volunteer, laptop.device, 1, &[claim]).await;
    assert_held_back(status, &body, "out_of_scope", &[1]);
    let (pulled, _) = server.pull_from(&volunteer, 0).await;
    assert!(pulled.is_empty(), "{pulled:?}");
}
}

on_both_stores! {
#[tokio::test]
async fn a_working_group_records_assistance_only_in_its_own_dimension(server: Server) {
    let province = server.account("province", Role::Province, &[], None);
    let group = server.account(
        "income",
        Role::Dimension,
        &["4001"],
        Some(Dimension::Income),
    );
    let mut office = Replica::new(device(1));
    server.hello(&province, office.device).await;
    let home = household(600);
    let mut changes = vec![office.set(NOW, &home, "village", json!(MINE))];
    let visit = Visit {
        household: home.id,
        date: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        surveyor: "อสม.".into(),
        edition: "bmn-2560-2564".into(),
        income_per_year: Some(Baht::parse("1000").unwrap()),
        members: Some(1),
        in_progress: false,
    };
    changes.extend(office.create(NOW, Uuid::from_u128(601), &visit).unwrap().1);
    let (status, body) = server.push(&province, office.device, 1, &changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut laptop = Replica::new(device(2));
    server.hello(&group, laptop.device).await;
    let assistance = RecordKey::new(RecordKind::Assistance, Uuid::from_u128(602));
    let help = |laptop: &mut Replica, dimension: &str| {
        vec![
            laptop.set(
                NOW + 1,
                &assistance,
                "household",
                json!(home.id.to_string()),
            ),
            laptop.set(NOW + 1, &assistance, "dimension", json!(dimension)),
            laptop.set(NOW + 1, &assistance, "item", json!("job_training")),
        ]
    };
    let (status, body) = server
        .push(&group, laptop.device, 1, &help(&mut laptop, "health"))
        .await;
    assert_held_back(status, &body, "out_of_scope", &[1, 2, 3]);
    assert!(
        body["held_back"][0]["message"]
            .as_str()
            .unwrap()
            .contains("own dimension"),
        "{body}"
    );
    let (status, body) = server
        .push(&group, laptop.device, 4, &help(&mut laptop, "income"))
        .await;
    assert_held_back(status, &body, "", &[]);
}
}

on_both_stores! {
#[tokio::test]
async fn a_relays_sequence_gap_tells_nothing_of_how_far_the_device_is_held(server: Server) {
    let (server, _, attacker, victim_replica, _) = two_villages(server).await;
    let (_, changes) = households(1, MINE, 1, NOW + 50);
    let body = push_body(victim_replica.device, 40, &changes, true);
    let (status, body) = server.post("/v1/push", &attacker, body.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains('2') && !message.contains('3'),
        "{message}"
    );
}
}

on_both_stores! {
#[tokio::test]
async fn a_relay_in_another_devices_name_without_its_key_is_refused_and_its_work_still_lands(server: Server) {
    let (server, victim, attacker, mut victim_replica, _) = two_villages(server).await;
    let victims_home = household(1 << 64);
    let note = victim_replica.set(NOW + 10, &victims_home, "notes", json!("บันทึกจริง"));
    // Filler under the victim's next stamp and sequence, signed with a key
    // that is not the victim's, offered as a relay from a bundle.
    let filler = forged(note.stamp, &household(1 << 64), "notes", json!("x"));
    let impostor = faenban_keys::DeviceKey::from_seed([0x66; 32]);
    let mut body = push_body(victim_replica.device, 3, &[filler], true);
    body["signature"] = json!(impostor
        .sign_run(
            victim_replica.device,
            3,
            &[forged(note.stamp, &household(1 << 64), "notes", json!("x"))]
        )
        .to_string());
    body["public_key"] = json!(impostor.public().to_string());
    let (status, body) = server.post("/v1/push", &attacker, body.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("bad_signature"))
    );
    // A run the victim did sign, changed on the way, is refused too.
    let mut tampered = push_body(victim_replica.device, 3, std::slice::from_ref(&note), true);
    tampered["changes"]["changes"][0]["v"] = json!("x");
    let (status, _) = server
        .post("/v1/push", &attacker, tampered.to_string())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = server
        .push(&victim, victim_replica.device, 3, &[note])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["applied"].as_u64(), body["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
}
}

on_both_stores! {
#[tokio::test]
async fn a_device_id_read_from_a_bundle_cannot_be_claimed_by_another_account(server: Server) {
    let owner = server.account("owner", Role::Volunteer, &[MINE], None);
    let stranger = server.account("stranger", Role::Volunteer, &[THEIRS], None);
    let laptop = device(40);
    // The stranger knows the id (and even the public key) but not the key.
    let impostor = faenban_keys::DeviceKey::from_seed([0x67; 32]);
    let claim = |key: &faenban_keys::DeviceKey| {
        json!({
            "protocol": faenban_core::sync::PROTOCOL_VERSION,
            "device": laptop,
            "name": "laptop",
            "public_key": key.public().to_string(),
            "proof": key.sign_hello(laptop, &stranger).to_string(),
        })
    };
    let (status, body) = server
        .post("/v1/hello", &stranger, claim(&impostor).to_string())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_key"))
    );
    let mut replayed = claim(&impostor);
    replayed["public_key"] = json!(key_of(laptop).public().to_string());
    let (status, body) = server
        .post("/v1/hello", &stranger, replayed.to_string())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("bad_signature"))
    );
    // The real laptop is not locked out.
    assert_eq!(server.hello(&owner, laptop).await.0, StatusCode::OK);
    // And once bound, its own key is needed, under its own account only.
    assert_eq!(
        server.hello(&stranger, laptop).await.1["error"],
        "wrong_device"
    );
}
}

on_both_stores! {
#[tokio::test]
async fn a_device_bound_before_keys_binds_its_key_under_its_own_account_only(server: Server) {
    let owner = server.account("owner", Role::Volunteer, &[MINE], None);
    let stranger = server.account("stranger", Role::Volunteer, &[MINE], None);
    // A laptop made before keys: an id of version 7, bound without a key.
    let legacy = faenban_core::DeviceId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001));
    server.call(|backend| backend.enroll_device(legacy, "owner").unwrap());
    let key = faenban_keys::DeviceKey::from_seed([0x68; 32]);
    let hello = |token: &str, key: &faenban_keys::DeviceKey| {
        json!({
            "protocol": faenban_core::sync::PROTOCOL_VERSION,
            "device": legacy,
            "name": "old laptop",
            "public_key": key.public().to_string(),
            "proof": key.sign_hello(legacy, token).to_string(),
        })
        .to_string()
    };
    let (status, body) = server
        .post("/v1/hello", &stranger, hello(&stranger, &key))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_device"))
    );
    let (status, body) = server.post("/v1/hello", &owner, hello(&owner, &key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other = faenban_keys::DeviceKey::from_seed([0x69; 32]);
    let (status, body) = server
        .post("/v1/hello", &owner, hello(&owner, &other))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_key"))
    );
}
}

on_both_stores! {
#[tokio::test]
async fn a_laptop_on_the_old_protocol_is_told_to_upgrade_and_served_nothing(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let old = json!({"protocol": 1, "device": device(41), "name": "laptop"});
    let (status, body) = server.post("/v1/hello", &token, old.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("protocol_version"))
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("update faenban on the laptop"));
    let (_, changes) = households(41, MINE, 1, NOW);
    let mut push = push_body(device(41), 1, &changes, false);
    push["protocol"] = json!(1);
    push.as_object_mut().unwrap().remove("signature");
    let (status, body) = server.post("/v1/push", &token, push.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("protocol_version"))
    );
    server.assert_nothing_stored(device(41));
    let (status, body) = server.get("/v1/changes?since=0&protocol=1", &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("protocol_version"))
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("update faenban on the laptop"));
}
}

/// A SQLite-backed server listening on loopback with these limits: its
/// folder, address, stop signal and task.
async fn serve_with(
    limits: faenban_server::Limits,
) -> (
    tempfile::TempDir,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let backend = std::sync::Arc::new(faenban_server::SqliteBackend::open(dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(faenban_server::run_with(
        listener,
        backend,
        async {
            let _ = stopped.await;
        },
        limits,
    ));
    (dir, address, stop, server)
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_do_not_lock_out_health() {
    let limits = faenban_server::Limits {
        max_connections: 40,
        header_read_timeout: std::time::Duration::from_millis(300),
    };
    let (_dir, address, stop, server) = serve_with(limits).await;
    // Twice as many connections as the cap, each sending half a header.
    let mut slow = Vec::new();
    for _ in 0..80 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /health HTTP/1.1\r\nHost: x")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Health answers again once the slow ones are cut off; it is tried a
    // bounded number of times.
    let client = reqwest::Client::new();
    let mut answered = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("http://{address}/health")).send().await {
            if response.status() == StatusCode::OK {
                answered = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(answered, "/health never answered");
    // The slow connections were closed by the server.
    for mut stream in slow {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        .expect("the server closes a connection that never finishes its headers");
        // Closed outright, or answered with an error: never kept open.
        assert!(read.map_or(true, |n| n == 0 || buffer.starts_with(b"HTTP/1.1 4")));
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed_for_the_laptops_waiting_behind_them() {
    // A header timeout of an hour: only closing idle connections can let
    // the last laptop in.
    let limits = faenban_server::Limits {
        max_connections: 8,
        header_read_timeout: std::time::Duration::from_secs(3600),
    };
    let (_dir, address, stop, server) = serve_with(limits).await;
    // Laptops that synced and keep their connections open, idle.
    let mut idle = Vec::new();
    for _ in 0..limits.max_connections {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buffer = [0u8; 512];
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer)
            .await
            .unwrap();
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
        idle.push(stream);
    }
    // The next laptop is answered (the guard only keeps a failing test
    // from hanging: the header timeout is an hour).
    let answered = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        reqwest::get(format!("http://{address}/health")).await
    })
    .await
    .expect("a laptop waited behind idle connections")
    .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    // The connections that were idle when the server got crowded (all but
    // the last quarter of the cap, still being opened then) were closed by
    // the server.
    let crowded_at = limits.max_connections - limits.max_connections / 4;
    for mut stream in idle.into_iter().take(crowded_at - 1) {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        .expect("an idle connection was kept open");
        assert_eq!(read.unwrap_or(0), 0);
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

on_both_stores! {
#[tokio::test]
async fn a_pull_page_of_large_values_is_bounded_by_bytes_and_loses_nothing(server: Server) {
    let token = server.account("มาลี", Role::Volunteer, &[MINE], None);
    let (mut replica, mut changes) = households(1, MINE, 8, NOW);
    let homes: Vec<RecordKey> = changes
        .iter()
        .step_by(2)
        .map(|c| c.record.clone())
        .collect();
    let note = "ก".repeat(20_000);
    for (h, home) in homes.iter().enumerate() {
        for n in 0..10u64 {
            changes.push(replica.set(NOW + n, home, &format!("note_{h}_{n}"), json!(note)));
        }
    }
    server.hello(&token, replica.device).await;
    for (start, chunk) in changes.chunks(20).enumerate() {
        let (status, body) = server
            .push(&token, replica.device, 1 + 20 * start as u64, chunk)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, page) = server.get("/v1/changes?since=0&limit=5000", &token).await;
    assert_eq!(status, StatusCode::OK);
    let first: faenban_core::sync::PullPage = serde_json::from_value(page).unwrap();
    let held = first.changes.len();
    assert!(
        first.more && held < changes.len(),
        "{held} of {}",
        changes.len()
    );
    let bytes = serde_json::to_vec(&first.changes).unwrap().len();
    assert!(
        bytes < faenban_store::server::MAX_PAGE_BYTES + 100_000,
        "{bytes}"
    );
    let (all, _) = server.pull_from(&token, 0).await;
    assert_eq!(all.len(), changes.len());
}
}

on_both_stores! {
#[tokio::test]
async fn a_sealed_letter_carried_by_another_village_lands_in_its_own_scope_and_the_carrier_reads_nothing(server: Server) {
    let (server, victim, attacker, mut victim_replica, _) = two_villages(server).await;
    let victims_home = household(1 << 64);
    let note = victim_replica.set(NOW + 10, &victims_home, "notes", json!("บันทึกบนดอย"));
    // The attacker's laptop carried the victim's bundle: it hands the
    // letter on. The run is checked against the victim's own account, so
    // it lands although the carrier may not write there.
    let body = relay_body(
        &server,
        victim_replica.device,
        3,
        std::slice::from_ref(&note),
        Some(0),
    );
    let (status, answer) = server.post("/v1/relay", &attacker, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // What comes back is sealed to the victim: the carrier's key opens
    // nothing, and nothing in it is readable.
    let text = answer.to_string();
    assert!(
        !text.contains("บันทึกบนดอย") && !text.contains(THEIRS),
        "{text}"
    );
    let sealed = faenban_keys::unhex_vec(answer["reply"].as_str().unwrap()).unwrap();
    let attackers_key = key_of(device(2));
    assert!(faenban_store::bundle::open_reply(
        &attackers_key,
        victim_replica.device,
        &server.backend.server_key().public(),
        &sealed
    )
    .is_err());
    let reply = open_reply(&server, victim_replica.device, &answer);
    assert_eq!(reply.held_through, 3);
    assert!(reply.refused.is_none());
    assert!(reply.ack.is_some());
    // The reply brings the victim its village, the note included.
    let pulled = reply.pulled.unwrap();
    let changes: Vec<Change> = pulled
        .pages
        .iter()
        .flat_map(|page| page.changes.decode().unwrap())
        .collect();
    assert!(changes.iter().any(|change| change.stamp == note.stamp));
    assert!(
        changes
            .iter()
            .all(|change| change.record.id.0.as_u128() >> 64 == 1),
        "only the victim's village"
    );
    // The carrier's own pull never shows the victim's note.
    assert!(server
        .pull_all(&attacker)
        .await
        .iter()
        .all(|change| change.stamp != note.stamp));
    assert!(server
        .pull_all(&victim)
        .await
        .iter()
        .any(|change| change.stamp == note.stamp));
}
}

on_both_stores! {
#[tokio::test]
async fn a_letter_changed_forged_or_of_an_unknown_device_is_refused_and_its_work_still_lands(server: Server) {
    let (server, victim, attacker, mut victim_replica, _) = two_villages(server).await;
    let note = victim_replica.set(NOW + 10, &household(1 << 64), "notes", json!("จริง"));
    let genuine = relay_body(
        &server,
        victim_replica.device,
        3,
        std::slice::from_ref(&note),
        None,
    );
    // One byte of the sealed letter changed on the way.
    let mut changed = genuine.clone();
    let mut hex = changed["letter"].as_str().unwrap().to_owned();
    let flipped = if hex.ends_with('0') { '1' } else { '0' };
    hex.pop();
    hex.push(flipped);
    changed["letter"] = json!(hex);
    let (status, body) = server
        .post("/v1/relay", &attacker, changed.to_string())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_letter")),
        "{body}"
    );
    // The carrier writes its own letter in the victim's name, with filler
    // under the victim's next stamp: it is not signed by the victim's key.
    let filler = forged(note.stamp, &household(1 << 64), "notes", json!("x"));
    let impostor = faenban_keys::DeviceKey::from_seed([0x66; 32]);
    let letter = Letter {
        device: victim_replica.device,
        created_ms: NOW,
        outbox_from: 3,
        run: Some(LetterRun {
            first_sequence: 3,
            changes: ChangeSet::encode(std::slice::from_ref(&filler)),
            signature: impostor
                .sign_run(victim_replica.device, 3, std::slice::from_ref(&filler))
                .to_string(),
        }),
        pull: None,
    };
    let sealed = faenban_store::bundle::seal_letter(
        &impostor,
        &server.backend.server_key().public(),
        &letter,
    )
    .unwrap();
    let forged_body = json!({
        "protocol": PROTOCOL_VERSION,
        "device": victim_replica.device,
        "letter": faenban_keys::hex(&sealed),
    });
    let (status, body) = server
        .post("/v1/relay", &attacker, forged_body.to_string())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_letter")),
        "{body}"
    );
    // A letter of a device that never said hello cannot be checked.
    let (_, stray) = households(9, MINE, 1, NOW);
    let body = relay_body(&server, device(9), 1, &stray, None);
    let (status, body) = server.post("/v1/relay", &attacker, body.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("unknown_device")),
        "{body}"
    );
    // The genuine letter still lands, whoever carries it.
    let (status, answer) = server
        .post("/v1/relay", &attacker, genuine.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        open_reply(&server, victim_replica.device, &answer).held_through,
        3
    );
    let (status, body) = server
        .push(&victim, victim_replica.device, 3, &[note])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicates"].as_u64(), Some(1));
}
}

on_both_stores! {
#[tokio::test]
async fn a_letter_that_reaches_outside_its_devices_scope_is_held_back_in_its_sealed_reply(server: Server) {
    let (server, _, attacker, mut victim_replica, _) = two_villages(server).await;
    // The victim's own run reaches into the attacker's village (a mistake,
    // or a hostile device): the carrier's wider scope does not let it in.
    let wide = server.account("team", Role::Team, &["4001"], None);
    let intrusion = victim_replica.set(NOW + 10, &household(2 << 64), "notes", json!("x"));
    let body = relay_body(&server, victim_replica.device, 3, &[intrusion], Some(0));
    let (status, answer) = server.post("/v1/relay", &wide, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let reply = open_reply(&server, victim_replica.device, &answer);
    assert!(reply.refused.is_none());
    assert_eq!(
        reply
            .held_back
            .iter()
            .map(|held| (held.sequence, held.error.as_str()))
            .collect::<Vec<_>>(),
        [(3, "out_of_scope")]
    );
    // Held (so the device's outbox moves on), but not applied.
    assert_eq!(reply.held_through, 3);
    assert!(reply.ack.is_some());
    // The attacker's household is untouched.
    assert!(server
        .pull_all(&attacker)
        .await
        .iter()
        .all(|change| change.field != "notes"));
}
}

on_both_stores! {
#[tokio::test]
async fn a_reply_answers_every_change_held_back_since_the_outbox_start_whichever_letter_carried_it(server: Server) {
    let (server, _, attacker, mut victim_replica, _) = two_villages(server).await;
    // Letter 1 (sequence 3) reaches into another village: held back. Its
    // reply is lost on the way; letter 2 (sequence 4) is fine.
    let intrusion = victim_replica.set(NOW + 10, &household(2 << 64), "notes", json!("x"));
    let first = relay_body(&server, victim_replica.device, 3, &[intrusion], None);
    let (status, _) = server.post("/v1/relay", &attacker, first.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let note = victim_replica.set(NOW + 11, &household(1 << 64), "notes", json!("ok"));
    // Both letters of one bundle start from the same outbox sequence.
    let second = relay_body_from(&server, victim_replica.device, 3, 4, &[note], Some(0));
    let (status, answer) = server
        .post("/v1/relay", &attacker, second.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let reply = open_reply(&server, victim_replica.device, &answer);
    assert_eq!(reply.held_through, 4);
    assert_eq!(
        reply
            .held_back
            .iter()
            .map(|held| held.sequence)
            .collect::<Vec<_>>(),
        [3],
        "letter 1's held-back change is answered in letter 2's reply"
    );
}
}
