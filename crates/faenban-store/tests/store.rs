//! The local store: persistence, one transaction per command, and refusing
//! files it must not touch.

use faenban_core::codes::AreaCode;
use faenban_core::merge::Conflict;
use faenban_core::model::{decode, Household, HouseholdStatus, ProgrammeEntry};
use faenban_core::{RecordKey, RecordKind};
use faenban_keys::DeviceKey;
use faenban_store::{Error, Store, SCHEMA_VERSION};
use serde_json::json;
use uuid::Uuid;

const NOW: u64 = 1_767_571_200_000;

fn household(code: &str) -> Household {
    Household {
        house_code: code.parse().unwrap(),
        village: AreaCode::parse_village("40010101").unwrap(),
        address: "1 หมู่ 1".into(),
        location: None,
        head: None,
        status: HouseholdStatus::Active,
        entry: ProgrammeEntry::TpmapTarget,
        classification: None,
        livelihood: None,
        welfare_card: true,
        notes: String::new(),
    }
}

fn device(store: &mut Store, n: u128) {
    store
        .init(&format!("laptop {n}"), &DeviceKey::from_seed([n as u8; 32]))
        .unwrap();
}

#[test]
fn a_household_written_to_a_file_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faenban.db");
    let key = {
        let mut store = Store::open(&path).unwrap();
        device(&mut store, 1);
        store
            .write(NOW, |s| {
                s.create(Uuid::from_u128(10), &household("4001-012345-6"))
            })
            .unwrap()
    };
    let store = Store::open(&path).unwrap();
    let state = store.record(&key).unwrap().unwrap();
    let view = decode::<Household>(&key, &state).unwrap();
    assert_eq!(view.value, household("4001-012345-6"));
    let status = store.status().unwrap();
    assert_eq!(status.device.unwrap().name, "laptop 1");
    assert_eq!(status.unpushed as usize, store.outbox().unwrap().len());
    assert_eq!(status.records as usize, store.all_records().unwrap().len());
    assert!(status.unpushed >= 5);
    assert_eq!(store.history(&key).unwrap().len() as u64, status.unpushed);
}

#[test]
fn the_clock_persists_and_never_goes_back_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faenban.db");
    let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
    let first = {
        let mut store = Store::open(&path).unwrap();
        device(&mut store, 1);
        store
            .write(NOW, |s| s.set(&key, "notes", json!("a")))
            .unwrap()
    };
    let mut store = Store::open(&path).unwrap();
    // The laptop's clock was set back an hour in between.
    let second = store
        .write(NOW - 3_600_000, |s| s.set(&key, "notes", json!("b")))
        .unwrap();
    assert!(second.stamp > first.stamp);
    assert_eq!(second.supersedes.as_slice(), [first.stamp]);
    let (sequences, _): (Vec<u64>, Vec<_>) = store.outbox().unwrap().into_iter().unzip();
    assert_eq!(sequences, vec![1, 2]);
}

#[test]
fn a_failed_command_leaves_nothing_behind() {
    let mut store = Store::open_in_memory().unwrap();
    device(&mut store, 1);
    let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
    let before = store.status().unwrap();
    let result: Result<(), Error> = store.write(NOW, |s| {
        s.set(&key, "notes", json!("half"))?;
        s.set(&key, "address", json!("written"))?;
        Err(Error::NotFound {
            kind: "member".into(),
            id: "x".into(),
        })
    });
    assert!(matches!(result, Err(Error::NotFound { .. })));
    assert_eq!(store.status().unwrap(), before);
    assert!(store.record(&key).unwrap().is_none());
    assert!(store.history(&key).unwrap().is_empty());
    // The clock did not advance either: the next change is the first.
    store
        .write(NOW, |s| s.set(&key, "notes", json!("whole")))
        .unwrap();
    assert_eq!(store.outbox().unwrap()[0].0, 1);
}

#[test]
fn writing_before_init_is_refused() {
    let mut store = Store::open_in_memory().unwrap();
    let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
    let error = store
        .write(NOW, |s| s.set(&key, "notes", json!("x")))
        .unwrap_err();
    assert!(matches!(error, Error::NotInitialized), "{error}");
    device(&mut store, 1);
    assert!(matches!(
        store.init("again", &DeviceKey::from_seed([2; 32])),
        Err(Error::AlreadyInitialized(name)) if name == "laptop 1"
    ));
}

#[test]
fn archiving_a_record_that_does_not_exist_names_it() {
    let mut store = Store::open_in_memory().unwrap();
    device(&mut store, 1);
    let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(99));
    let error = store.write(NOW, |s| s.archive(&key)).unwrap_err();
    assert!(
        error.to_string().contains("no household with id"),
        "{error}"
    );
}

#[test]
fn two_laptops_exchange_changes_and_agree_with_the_conflict_recorded() {
    let mut a = Store::open_in_memory().unwrap();
    let mut b = Store::open_in_memory().unwrap();
    device(&mut a, 1);
    device(&mut b, 2);
    let key = a
        .write(NOW, |s| {
            s.create(Uuid::from_u128(10), &household("4001-012345-6"))
        })
        .unwrap();
    let created: Vec<_> = a.outbox().unwrap().into_iter().map(|(_, c)| c).collect();
    b.write(NOW, |s| {
        created.into_iter().try_for_each(|c| s.receive(c).map(drop))
    })
    .unwrap();
    let from_a = a
        .write(NOW + 1, |s| s.set(&key, "notes", json!("หลังคารั่ว")))
        .unwrap();
    let from_b = b
        .write(NOW + 2, |s| s.set(&key, "notes", json!("ถังน้ำ")))
        .unwrap();
    a.write(NOW + 3, |s| s.receive(from_b.clone())).unwrap();
    b.write(NOW + 3, |s| s.receive(from_a.clone())).unwrap();
    // Receiving the same change again changes nothing.
    let again = b.write(NOW + 4, |s| s.receive(from_a.clone())).unwrap();
    assert_eq!(again, faenban_core::Outcome::Duplicate);

    let state_a = a.record(&key).unwrap().unwrap();
    let state_b = b.record(&key).unwrap().unwrap();
    assert_eq!(state_a, state_b);
    for store in [&a, &b] {
        let conflicts = store.conflicts().unwrap();
        assert!(
            matches!(conflicts.as_slice(), [Conflict::Values { field, .. }] if field == "notes")
        );
        assert_eq!(store.status().unwrap().conflicts, 1);
    }
    // Resolving is a change that clears the conflict.
    a.write(NOW + 5, |s| s.set(&key, "notes", json!("หลังคารั่ว, ถังน้ำ")))
        .unwrap();
    assert!(a.conflicts().unwrap().is_empty());
}

#[test]
fn households_are_found_by_house_code_and_village() {
    let mut store = Store::open_in_memory().unwrap();
    device(&mut store, 1);
    let key = store
        .write(NOW, |s| {
            s.create(Uuid::from_u128(10), &household("4001-012345-6"))
        })
        .unwrap();
    store
        .write(NOW, |s| {
            s.create(Uuid::from_u128(11), &household("4001-999999-1"))
        })
        .unwrap();
    assert_eq!(store.search("4001-012345-6").unwrap(), vec![key.clone()]);
    assert_eq!(store.search("40010123").unwrap(), vec![key]);
    assert_eq!(store.search("40010101").unwrap().len(), 2);
    assert!(store.search("5001").unwrap().is_empty());
    assert!(store.search("  ").unwrap().is_empty());
}

#[test]
fn a_file_from_a_newer_faenban_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faenban.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(
        matches!(error, Error::NewerSchema { found: 99, supported } if supported == SCHEMA_VERSION)
    );
    assert!(error.to_string().contains("newer faenban"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("faenban.db-wal").exists());
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faenban.db");
    let garbage = b"this is a spreadsheet, not a database".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_database_locked_by_another_process_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faenban.db");
    let mut store = Store::open(&path).unwrap();
    device(&mut store, 1);
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO meta VALUES ('x', 'y');")
        .unwrap();
    let key = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
    let error = store
        .write(NOW, |s| s.set(&key, "notes", json!("x")))
        .unwrap_err();
    assert!(matches!(error, Error::Locked), "{error}");
    other.execute_batch("ROLLBACK").unwrap();
    store
        .write(NOW, |s| s.set(&key, "notes", json!("x")))
        .unwrap();
}

#[test]
fn a_command_touching_more_records_than_it_keeps_in_memory_saves_them_all() {
    let mut store = Store::open_in_memory().unwrap();
    device(&mut store, 1);
    let count: u128 = 5_000;
    let first = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
    store
        .write(NOW, |s| {
            for n in 1..=count {
                s.create(
                    Uuid::from_u128(n),
                    &household(&format!("4001{:06}{}", n % 1_000_000, n % 10)),
                )?;
            }
            // The first household was written out long ago in this command;
            // changing it again must start from what was written.
            s.set(&first, "house_code", json!("99990000011"))?;
            s.set(&first, "notes", json!("again"))
        })
        .unwrap();
    let all = store.all_records().unwrap();
    assert_eq!(all.len() as u128, count);
    let state = store.record(&first).unwrap().unwrap();
    assert_eq!(state.shown("notes"), Some(&json!("again")));
    assert_eq!(state.shown("address"), Some(&json!("1 หมู่ 1")));
    assert_eq!(store.search("99990000011").unwrap(), vec![first.clone()]);
    let status = store.status().unwrap();
    assert_eq!(status.records as usize, all.len());
    assert_eq!(status.unpushed as usize, store.outbox().unwrap().len());
    assert_eq!(
        store.households_in_area("40010101").unwrap().len() as u128,
        count
    );
    assert!(store.households_in_area("400102").unwrap().is_empty());
}

#[test]
fn a_laptop_made_before_keys_gets_a_key_and_keeps_its_id_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A version 3 file with a device, as faenban wrote it before keys.
        let connection = rusqlite::Connection::open(&path).unwrap();
        let migrations = [
            include_str!("../../../schema/migrations/0001_initial.sql"),
            include_str!("../../../schema/migrations/0002_records_rowid.sql"),
            include_str!("../../../schema/migrations/0003_sync.sql"),
        ];
        for sql in migrations {
            connection.execute_batch(sql).unwrap();
        }
        connection
            .execute_batch(
                "PRAGMA user_version = 3; \
                 INSERT INTO meta VALUES ('device_id', '01900000-0000-7000-8000-000000000001'); \
                 INSERT INTO meta VALUES ('device_name', 'old laptop');",
            )
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let device = store.device().unwrap().unwrap();
    assert_eq!(
        device.id.to_string(),
        "01900000-0000-7000-8000-000000000001"
    );
    let key = store.device_key().unwrap().expect("a key was made");
    drop(store);
    // The same key every time after.
    let again = Store::open(&path).unwrap().device_key().unwrap().unwrap();
    assert_eq!(again.public(), key.public());
}

#[test]
fn a_forged_acknowledgement_in_a_reply_drops_nothing() {
    use faenban_core::sync::Reply;
    struct Ack {
        device: faenban_core::DeviceId,
        held_through: u64,
        signature: Option<String>,
    }
    let reply = |ack: Ack| Reply {
        device: ack.device,
        server_time_ms: 1_795_000_000_001,
        held_through: ack.held_through,
        ack: ack.signature,
        refused: None,
        held_back: Vec::new(),
        pulled: None,
    };
    let mut laptop = Store::open_in_memory().unwrap();
    laptop
        .init("laptop", &DeviceKey::from_seed([7; 32]))
        .unwrap();
    let own = laptop.device().unwrap().unwrap().id;
    laptop
        .write(1_795_000_000_000, |session| {
            session.create(uuid::Uuid::from_u128(1), &household("4001-012345-6"))?;
            Ok(())
        })
        .unwrap();
    let waiting = laptop.status().unwrap().unpushed;
    assert!(waiting > 0);
    let server = DeviceKey::from_seed([8; 32]);
    laptop.set_server_key(&server.public().to_string()).unwrap();
    let outbox = laptop.outbox().unwrap();
    let (last, change) = outbox.last().unwrap().clone();
    let forged = [
        Ack {
            device: own,
            held_through: last,
            signature: None,
        },
        Ack {
            device: own,
            held_through: last,
            signature: Some("00".repeat(64)),
        },
        // Signed by another key than the server's.
        Ack {
            device: own,
            held_through: last,
            signature: Some(
                DeviceKey::from_seed([9; 32])
                    .sign_ack(own, last, &change.stamp)
                    .to_string(),
            ),
        },
        // The server's signature, but for another change at that number.
        Ack {
            device: own,
            held_through: last,
            signature: Some(server.sign_ack(own, last, &outbox[0].1.stamp).to_string()),
        },
    ];
    for ack in forged {
        let taken = laptop.take_reply(1_795_000_000_001, reply(ack)).unwrap();
        assert_eq!(taken.acknowledged, None);
        assert_eq!(laptop.status().unwrap().unpushed, waiting);
    }
    let genuine = Ack {
        device: own,
        held_through: last,
        signature: Some(server.sign_ack(own, last, &change.stamp).to_string()),
    };
    let taken = laptop
        .take_reply(1_795_000_000_002, reply(genuine))
        .unwrap();
    assert_eq!(taken.acknowledged, Some(last));
    assert_eq!(laptop.status().unwrap().unpushed, 0);
}

#[test]
fn a_value_the_server_would_refuse_is_refused_as_it_is_typed_and_nothing_is_saved() {
    let mut laptop = Store::open_in_memory().unwrap();
    laptop
        .init("laptop", &DeviceKey::from_seed([7; 32]))
        .unwrap();
    let key = laptop
        .write(1_795_000_000_000, |session| {
            session.create(uuid::Uuid::from_u128(1), &household("4001-012345-6"))
        })
        .unwrap();
    let before = laptop.status().unwrap().unpushed;
    let long = "ก".repeat(30_000);
    let error = laptop
        .write(1_795_000_000_001, |session| {
            session.set(&key, "notes", serde_json::json!(long))
        })
        .unwrap_err();
    assert!(error.to_string().contains("64 KiB"), "{error}");
    assert_eq!(laptop.status().unwrap().unpushed, before);
}

#[test]
fn a_held_back_change_stays_aside_once_when_the_outbox_is_numbered_anew() {
    use faenban_core::sync::HeldBack;
    let mut laptop = Store::open_in_memory().unwrap();
    laptop
        .init("laptop", &DeviceKey::from_seed([7; 32]))
        .unwrap();
    for n in 1..=2 {
        laptop
            .write(1_795_000_000_000 + n, |session| {
                session.create(
                    uuid::Uuid::from_u128(n.into()),
                    &household(&format!("4001-01234{n}-6")),
                )?;
                Ok(())
            })
            .unwrap();
    }
    let outbox = laptop.outbox().unwrap();
    let (first, last) = (outbox[0].0, outbox.last().unwrap().0);
    // The server held everything, the first change back.
    let refused = HeldBack {
        sequence: first,
        error: "out_of_scope".into(),
        message: "x".into(),
    };
    laptop
        .acknowledge(
            1_795_000_000_010,
            last,
            None,
            std::slice::from_ref(&refused),
        )
        .unwrap();
    assert_eq!(laptop.held_back().unwrap().len(), 1);
    assert_eq!(laptop.status().unwrap().unpushed, 0);
    // A restored server: every change of this laptop goes again, except
    // the one set aside, which a person sends again.
    let requeued = laptop.requeue_own_changes_after(0).unwrap();
    assert_eq!(requeued as usize, outbox.len() - 1);
    // The outbox numbers anew from 1: the same sequence refused again for
    // another change is kept aside beside the first, not dropped.
    let renumbered = laptop.outbox().unwrap();
    let again = HeldBack {
        sequence: renumbered[0].0,
        ..refused.clone()
    };
    assert_eq!(again.sequence, first, "the same number, another change");
    laptop
        .acknowledge(1_795_000_000_020, renumbered[0].0, None, &[again])
        .unwrap();
    assert_eq!(laptop.held_back().unwrap().len(), 2);
    // Retrying queues each once.
    assert_eq!(laptop.retry_held_back(None).unwrap(), 2);
    assert!(laptop.held_back().unwrap().is_empty());
    assert_eq!(laptop.retry_held_back(None).unwrap(), 0);
}

#[test]
fn a_version_4_laptop_keeps_its_outbox_through_the_sealed_bundle_and_held_back_upgrades() {
    use faenban_core::{DeviceId, Replica};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let own = DeviceKey::from_seed([4; 32]);
    let other = DeviceId::from_u128(77);
    let mut replica = Replica::new(own.device_id());
    let home = RecordKey::new(RecordKind::Household, Uuid::from_u128(1));
    let waiting = [
        replica.set(1_795_000_000_000, &home, "village", json!("40010101")),
        replica.set(1_795_000_000_000, &home, "address", json!("1 หมู่ 1")),
    ];
    {
        // A version 4 file: two changes waiting in the outbox, another
        // laptop's run carried readable for relay, and acknowledgements
        // heard for both devices.
        let connection = rusqlite::Connection::open(&path).unwrap();
        for sql in [
            include_str!("../../../schema/migrations/0001_initial.sql"),
            include_str!("../../../schema/migrations/0002_records_rowid.sql"),
            include_str!("../../../schema/migrations/0003_sync.sql"),
            include_str!("../../../schema/migrations/0004_device_keys.sql"),
        ] {
            connection.execute_batch(sql).unwrap();
        }
        connection
            .execute(
                "INSERT INTO meta VALUES ('device_id', ?1), ('device_name', 'v4'), ('device_key', ?2)",
                rusqlite::params![own.device_id().to_string(), own.seed_hex()],
            )
            .unwrap();
        for (n, change) in waiting.iter().enumerate() {
            connection
                .execute(
                    "INSERT INTO changes (seq, wall_ms, counter, device, kind, record, field, body) \
                     VALUES (?1, ?2, ?3, ?4, 'household', ?5, ?6, ?7)",
                    rusqlite::params![
                        n as i64 + 1,
                        change.stamp.hlc.wall_ms as i64,
                        change.stamp.hlc.counter,
                        own.device_id().to_string(),
                        home.id.to_string(),
                        change.field.as_str(),
                        serde_json::to_string(change).unwrap()
                    ],
                )
                .unwrap();
            connection
                .execute(
                    "INSERT INTO outbox (sequence, change_seq, shared) VALUES (?1, ?1, 0)",
                    [n as i64 + 1],
                )
                .unwrap();
        }
        connection
            .execute_batch(&format!(
                "INSERT INTO relay_runs VALUES ('{other}', 1, 5, '{sig}', NULL); \
                 INSERT INTO acks (device, held_through) VALUES ('{own_id}', 0), ('{other}', 4); \
                 PRAGMA user_version = 4;",
                sig = "ab".repeat(64),
                own_id = own.device_id(),
            ))
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.status().unwrap().unpushed, 2, "the outbox is whole");
    let run = store.outbox_run(1000).unwrap().unwrap();
    assert_eq!(run.changes, waiting);
    assert!(store.held_back().unwrap().is_empty());
    assert!(store.carried_letters().unwrap().is_empty());
    let acks = store.acks().unwrap();
    assert_eq!(
        acks.iter().map(|ack| ack.device).collect::<Vec<_>>(),
        [own.device_id()],
        "only this laptop's own acknowledgement is kept"
    );
    let tables = store.schema_sql().unwrap().join("\n");
    assert!(!tables.contains("table relay"), "{tables}");
}

#[test]
fn the_space_by_table_adds_up_to_the_file_and_names_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faenban.db");
    let mut store = Store::open(&path).unwrap();
    device(&mut store, 1);
    for n in 0..200u128 {
        store
            .write(NOW + n as u64, |s| {
                s.create(Uuid::from_u128(100 + n), &household("4001-012345-6"))
            })
            .unwrap();
    }
    store.checkpoint(0).unwrap();
    let space = store.space_by_table().unwrap();
    let total: u64 = space.iter().map(|(_, bytes)| bytes).sum();
    assert_eq!(total, std::fs::metadata(&path).unwrap().len());
    assert!(space.windows(2).all(|pair| pair[0].1 >= pair[1].1));
    for table in ["changes", "changes_by_record", "record_numbers", "records"] {
        assert!(space.iter().any(|(name, _)| name == table), "{table}");
    }
    // The log names a record by number: its text id is kept once per
    // record, not once per change.
    let changes = store.status().unwrap().unpushed;
    let log: u64 = space
        .iter()
        .filter(|(name, _)| name == "changes" || name == "changes_by_record")
        .map(|(_, bytes)| bytes)
        .sum();
    assert!(changes >= 1_000, "{changes}");
    assert!(
        log / changes < 80,
        "{} bytes per change in the log",
        log / changes
    );
}
