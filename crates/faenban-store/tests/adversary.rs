//! A property test that plays a hostile but legitimate account against the
//! server's push, in process: a volunteer of one village builds arbitrary
//! batches from everything it can see (its own pulls, and every change and
//! stamp of a victim's laptop in another village, as if a bundle had shown
//! them), with any stamps, values, sequences and relay claims. Whatever it
//! sends, the victim's acknowledged changes stay as they were, the victim's
//! next change still lands as new, nothing of the victim's village changes
//! or reaches the attacker, every record stays readable, and the report
//! kept from the pushes says what the records say.

use faenban_core::sync::{Role, Scope};
use faenban_core::{Change, DeviceId, Hlc, RecordKey, RecordKind, Replica, Stamp};
use faenban_keys::DeviceKey;
use faenban_store::server::{Account, PushInput};
use faenban_store::Store;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};
use uuid::Uuid;

const NOW: u64 = 1_795_000_000_000;
const VICTIMS_VILLAGE: &str = "40010102";
const ATTACKERS_VILLAGE: &str = "40010101";

/// The world before the attack: a server with the victim's household,
/// member and visit acknowledged, and the attacker's household.
struct World {
    server: Store,
    server_device: DeviceId,
    attacker: Account,
    attacker_key: DeviceKey,
    victim: Account,
    victim_key: DeviceKey,
    /// Every change the victim pushed (the server acknowledged them).
    acknowledged: Vec<Change>,
    /// The victim's next change, made offline; the attacker knows it.
    pending: Change,
    victims_records: Vec<RecordKey>,
    attackers_household: RecordKey,
}

fn scope(role: Role, areas: &[&str]) -> Scope {
    Scope {
        role,
        areas: areas.iter().map(|a| a.to_string()).collect(),
        dimension: None,
    }
}

fn push(world: &mut World, account: &Account, input: PushInput) -> bool {
    let results = world
        .server
        .push_group(vec![(account.clone(), input)], NOW + 60_000)
        .unwrap();
    results.into_iter().next().unwrap().is_ok()
}

fn signed(
    key: &DeviceKey,
    device: DeviceId,
    first: u64,
    changes: Vec<Change>,
    relay: bool,
) -> PushInput {
    PushInput {
        device,
        relay,
        first_sequence: first,
        signature: key.sign_run(device, first, &changes),
        public_key: relay.then(|| key.public()),
        changes,
    }
}

fn world() -> World {
    let mut server = Store::open_in_memory().unwrap();
    server
        .init("server", &DeviceKey::from_seed([1; 32]))
        .unwrap();
    let server_device = server.device().unwrap().unwrap().id;
    let attacker = server
        .add_account(
            "attacker",
            &scope(Role::Volunteer, &[ATTACKERS_VILLAGE]),
            &[1; 32],
            NOW,
        )
        .unwrap();
    let victim = server
        .add_account(
            "victim",
            &scope(Role::Volunteer, &[VICTIMS_VILLAGE]),
            &[2; 32],
            NOW,
        )
        .unwrap();
    let attacker_key = DeviceKey::from_seed([3; 32]);
    let victim_key = DeviceKey::from_seed([4; 32]);
    for (account, key) in [(&attacker, &attacker_key), (&victim, &victim_key)] {
        server
            .hello(account, key.device_id(), "laptop", &key.public(), NOW)
            .unwrap();
    }
    let mut victims = Replica::new(victim_key.device_id());
    let home = RecordKey::new(RecordKind::Household, Uuid::from_u128(10));
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(11));
    let visit = RecordKey::new(RecordKind::Visit, Uuid::from_u128(12));
    let acknowledged = vec![
        victims.set(NOW, &home, "village", json!(VICTIMS_VILLAGE)),
        victims.set(NOW, &home, "notes", json!("บ้านผู้ถูกโจมตี")),
        victims.set(NOW, &member, "household", json!(home.id.to_string())),
        victims.set(NOW, &member, "national_id", json!("1999900000007")),
        victims.set(NOW, &visit, "household", json!(home.id.to_string())),
        victims.set(NOW, &visit, "income_per_year", json!("90000.00")),
    ];
    let pending = victims.set(NOW + 1_000, &home, "notes", json!("บันทึกที่ยังไม่ได้ส่ง"));
    let mut attackers = Replica::new(attacker_key.device_id());
    let attackers_household = RecordKey::new(RecordKind::Household, Uuid::from_u128(20));
    let own = vec![attackers.set(
        NOW,
        &attackers_household,
        "village",
        json!(ATTACKERS_VILLAGE),
    )];
    let mut world = World {
        server,
        server_device,
        attacker,
        attacker_key,
        victim,
        victim_key,
        acknowledged,
        pending,
        victims_records: vec![home, member, visit],
        attackers_household,
    };
    let input = signed(
        &world.victim_key,
        world.victim_key.device_id(),
        1,
        world.acknowledged.clone(),
        false,
    );
    let victim_account = world.victim.clone();
    assert!(push(&mut world, &victim_account, input));
    let input = signed(
        &world.attacker_key,
        world.attacker_key.device_id(),
        1,
        own,
        false,
    );
    let attacker_account = world.attacker.clone();
    assert!(push(&mut world, &attacker_account, input));
    world
}

/// One change the attacker makes up: what it does, and its clock reading.
#[derive(Clone, Debug)]
struct Forged {
    move_: Move,
    wall: u64,
    counter: u32,
}

/// What a made-up change does. Most are harmless on their own (so that a
/// batch often gets through and the hostile ones ride along); the rest are
/// each one way to reach the victim's village.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// Edits its own household's notes.
    OwnNotes,
    /// Puts its own member in its own household.
    MemberHome,
    /// Puts its own member in the victim's household.
    MemberIntoVictims,
    /// Moves the victim's household to its own village.
    VictimsHouseholdHere,
    /// Moves its own household to the victim's village.
    OwnHouseholdThere,
    /// Takes the victim's member into its own household.
    TakeVictimsMember,
    /// Edits the victim's household.
    VictimsNotes,
    /// Archives the victim's member.
    ArchiveVictimsMember,
    /// Stamps a change to its own household with the victim's next stamp.
    VictimsNextStamp,
    /// Stamps a change to its own household with a stamp the victim used.
    VictimsOldStamp,
    /// Stamps as the victim, with its own stamp first among the earlier ones.
    VictimWithOwnPrevious,
    /// Supersedes every stamp of the victim's it knows, in its own record.
    SupersedeVictims,
    /// A value nested too deep, on its own household.
    DeepValue,
    /// A `household` that is not an id.
    NotAnId,
    /// A village that is not a village code.
    NotAVillage,
    /// Stamps as the server.
    ServersStamp,
}

fn forged() -> impl Strategy<Value = Forged> {
    use Move::*;
    let move_ = prop_oneof![
        4 => Just(OwnNotes),
        4 => Just(MemberHome),
        3 => Just(MemberIntoVictims),
        1 => Just(VictimsHouseholdHere),
        1 => Just(OwnHouseholdThere),
        1 => Just(TakeVictimsMember),
        1 => Just(VictimsNotes),
        1 => Just(ArchiveVictimsMember),
        1 => Just(VictimsNextStamp),
        1 => Just(VictimsOldStamp),
        1 => Just(VictimWithOwnPrevious),
        2 => Just(SupersedeVictims),
        1 => Just(DeepValue),
        1 => Just(NotAnId),
        1 => Just(NotAVillage),
        1 => Just(ServersStamp),
    ];
    (move_, 0..2_000u64, 0..3u32).prop_map(|(move_, wall, counter)| Forged {
        move_,
        wall,
        counter,
    })
}

/// One batch: its changes, how far before the next free sequence it starts,
/// and whether it is sent as the attacker's own outbox or as a relay of the
/// victim's.
#[derive(Clone, Debug)]
struct Batch {
    changes: Vec<Forged>,
    first_sequence: u64,
    as_relay_of_victim: bool,
}

fn batch() -> impl Strategy<Value = Batch> {
    let offset = prop_oneof![6 => Just(0u64), 1 => 0..3u64];
    let relay = prop_oneof![5 => Just(false), 1 => Just(true)];
    (prop::collection::vec(forged(), 1..6), offset, relay).prop_map(
        |(changes, first_sequence, as_relay_of_victim)| Batch {
            changes,
            first_sequence,
            as_relay_of_victim,
        },
    )
}

fn make(world: &World, forged: &Forged) -> Change {
    use Move::*;
    let attacker = world.attacker_key.device_id();
    let victim = world.victim_key.device_id();
    let own_home = &world.attackers_household;
    let own_member = RecordKey::new(RecordKind::Member, Uuid::from_u128(30));
    let [victims_home, victims_member, _] = [
        &world.victims_records[0],
        &world.victims_records[1],
        &world.victims_records[2],
    ];
    let id = |key: &RecordKey| json!(key.id.to_string());
    let hlc = Hlc {
        wall_ms: NOW + forged.wall,
        counter: forged.counter,
    };
    let mut change = Change {
        stamp: Stamp::new(hlc, attacker),
        record: own_home.clone(),
        field: "notes".into(),
        value: json!("บันทึก"),
        supersedes: Default::default(),
        observed: Vec::new(),
        previous_stamps: Vec::new(),
    };
    let mut set = |record: &RecordKey, field: &str, value: Value| {
        change.record = record.clone();
        change.field = field.into();
        change.value = value;
    };
    match forged.move_ {
        OwnNotes => set(own_home, "notes", json!(forged.wall)),
        MemberHome => set(&own_member, "household", id(own_home)),
        MemberIntoVictims => set(&own_member, "household", id(victims_home)),
        VictimsHouseholdHere => set(victims_home, "village", json!(ATTACKERS_VILLAGE)),
        OwnHouseholdThere => set(own_home, "village", json!(VICTIMS_VILLAGE)),
        TakeVictimsMember => set(victims_member, "household", id(own_home)),
        VictimsNotes => set(victims_home, "notes", json!("x")),
        ArchiveVictimsMember => set(victims_member, "archived", json!(true)),
        DeepValue => {
            let mut deep = json!(1);
            for _ in 0..40 {
                deep = Value::Array(vec![deep]);
            }
            set(own_home, "notes", deep)
        }
        NotAnId => set(&own_member, "household", json!("not-a-uuid")),
        NotAVillage => set(own_home, "village", json!("40010101zz")),
        VictimsNextStamp
        | VictimsOldStamp
        | VictimWithOwnPrevious
        | SupersedeVictims
        | ServersStamp => {}
    }
    match forged.move_ {
        VictimsNextStamp => change.stamp = world.pending.stamp,
        VictimsOldStamp => {
            change.stamp = world.acknowledged[forged.wall as usize % world.acknowledged.len()].stamp
        }
        VictimWithOwnPrevious => {
            change.stamp = Stamp::new(hlc, victim);
            change.previous_stamps = vec![Stamp::new(Hlc::at(NOW), attacker)];
        }
        SupersedeVictims => {
            change.supersedes = world.acknowledged.iter().map(|c| c.stamp).collect();
            change.supersedes.push(world.pending.stamp);
        }
        ServersStamp => change.stamp = Stamp::new(hlc, world.server_device),
        _ => {}
    }
    change
}

fn attack(world: &mut World, batch: &Batch) {
    let changes: Vec<Change> = batch.changes.iter().map(|f| make(world, f)).collect();
    let key = DeviceKey::from_seed([3; 32]);
    let device = if batch.as_relay_of_victim {
        world.victim_key.device_id()
    } else {
        key.device_id()
    };
    // Mostly right after what the server holds, so that batches are not
    // all refused for their numbering.
    let first = (world.server.held_through(device).unwrap() + 1)
        .saturating_sub(batch.first_sequence)
        .max(1);
    let input = signed(&key, device, first, changes, batch.as_relay_of_victim);
    let account = world.attacker.clone();
    push(world, &account, input);
}

/// What must hold whatever the attacker sent.
fn check(world: &World) -> Result<(), TestCaseError> {
    // Every record is readable, and so is every change in the province's pull.
    let records = world.server.all_records();
    prop_assert!(
        records.is_ok(),
        "a record became unreadable: {:?}",
        records.err()
    );
    let everything = scope(Role::Province, &[]);
    let mut since = 0;
    let mut all = Vec::new();
    loop {
        let page = world.server.pull(&everything, since, None, 1000).unwrap();
        all.extend(page.changes.decode().unwrap());
        since = page.next;
        if !page.more {
            break;
        }
    }
    // The victim's acknowledged changes are all there, as they were sent.
    for change in &world.acknowledged {
        prop_assert!(all.contains(change), "lost: {change:?}");
    }
    // No change of the attacker's device touches a record of the victim's
    // household, as merged.
    let attacker = world.attacker_key.device_id();
    let home = world.victims_records[0].id.to_string();
    let in_victims_home: Vec<RecordKey> = records
        .unwrap()
        .into_iter()
        .filter(|(key, state)| {
            key == &world.victims_records[0]
                || state.shown("household").and_then(Value::as_str) == Some(home.as_str())
        })
        .map(|(key, _)| key)
        .collect();
    for change in &all {
        if in_victims_home.contains(&change.record) {
            prop_assert!(
                change.stamp.device != attacker && change.author() != attacker,
                "the attacker changed the victim's village: {change:?}"
            );
        }
    }
    // The victim's records are where they were, and the member and visit
    // still belong to the victim's household.
    let home = world
        .server
        .record(&world.victims_records[0])
        .unwrap()
        .unwrap();
    prop_assert_eq!(home.shown("village"), Some(&json!(VICTIMS_VILLAGE)));
    for record in &world.victims_records[1..] {
        let state = world.server.record(record).unwrap().unwrap();
        prop_assert_eq!(
            state.shown("household"),
            Some(&json!(world.victims_records[0].id.to_string()))
        );
    }
    // The office's report, from the digests the pushes kept, says what
    // the records say: refused and held-back rounds leave no trace in it.
    let areas = faenban_core::areas::Areas::builtin();
    let catalogues = faenban_core::Catalogues::builtin();
    for level in [None, Some(faenban_core::codes::AreaLevel::Village)] {
        let options = faenban_core::report::ReportOptions {
            level,
            ..Default::default()
        };
        let kept = world.server.report(&areas, &options).unwrap();
        let expected = faenban_core::report::build(
            world.server.all_records().unwrap(),
            &catalogues,
            &areas,
            &options,
        );
        prop_assert_eq!(kept, expected);
    }
    // The attacker's pull holds nothing of the victim's village.
    let page = world
        .server
        .pull(&world.attacker.scope, 0, None, 5000)
        .unwrap();
    for change in page.changes.decode().unwrap() {
        prop_assert!(
            !in_victims_home.contains(&change.record),
            "read escape: {change:?}"
        );
        prop_assert!(change.value != json!("1999900000007"));
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(300);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/adversary.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_hostile_account_never_destroys_changes_or_crosses_scope(batches in prop::collection::vec(batch(), 1..6)) {
        let mut world = world();
        for batch in &batches {
            attack(&mut world, batch);
            check(&world)?;
        }
        // The victim's next change still lands as new, not as held.
        let victim_key = DeviceKey::from_seed([4; 32]);
        let input = signed(&victim_key, victim_key.device_id(), world.acknowledged.len() as u64 + 1, vec![world.pending.clone()], false);
        let account = world.victim.clone();
        let outcome = world.server.push_group(vec![(account, input)], NOW + 60_000).unwrap().remove(0);
        prop_assert!(matches!(outcome, Ok(ref o) if o.applied == 1), "{outcome:?}");
    }
}
