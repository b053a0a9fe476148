//! The push plan's scope rules without any store: an in-memory server that
//! executes `faenban_core::push` the way every backend does, driven by
//! devices that move households between villages, members between
//! households and surveys in and out of deprivation, while scoped accounts
//! pull as they please.
//!
//! Two properties, whatever the moves: a scoped account never pulls a
//! change of a record that was never in its scope (safety), and by its
//! last pull it holds every change of every record in its scope now
//! (completeness: the announcements carry a household's history to the
//! scopes it enters).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use faenban_core::push::{
    self, Admission, Announce, Batch, FiledUnder, HeldArrival, Holdings, Placement, PushError,
};
use faenban_core::sync::{HouseholdPlace, Role, Scope};
use faenban_core::{
    normalize_arrival, Change, Clock, DeviceId, Dimension, Hlc, Outcome, RecordId, RecordKey,
    RecordKind, RecordState, Replica, State,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

const START_MS: u64 = 1_795_000_000_000;
const VILLAGES: [&str; 3] = ["40010101", "40010102", "40010201"];
const HOUSEHOLDS: u128 = 3;
const MEMBERS: u128 = 3;

/// One feed entry: the change (by its place in the log), where it is
/// filed, and why.
#[derive(Clone, Debug)]
struct Entry {
    change: usize,
    filed: FiledUnder,
    announce: Announce,
}

/// Everything a server holds, in memory.
#[derive(Clone, Debug)]
struct MemoryServer {
    device: DeviceId,
    clock: Clock,
    state: State,
    log: Vec<Change>,
    feed: Vec<Entry>,
    places: HashMap<RecordId, HouseholdPlace>,
    arrivals: HashMap<DeviceId, Vec<HeldArrival>>,
}

struct View<'a>(&'a MemoryServer);

impl Holdings for View<'_> {
    type Error = std::convert::Infallible;

    fn held_through(&mut self, device: DeviceId) -> Result<u64, Self::Error> {
        Ok(self
            .0
            .arrivals
            .get(&device)
            .map_or(0, |held| held.len() as u64))
    }

    fn held_arrival(
        &mut self,
        device: DeviceId,
        sequence: u64,
    ) -> Result<Option<HeldArrival>, Self::Error> {
        Ok(self
            .0
            .arrivals
            .get(&device)
            .and_then(|held| held.get(sequence as usize - 1))
            .copied())
    }

    fn household_of(&mut self, record: &RecordKey) -> Result<Option<RecordId>, Self::Error> {
        Ok(self.0.household_of(record))
    }

    fn place(&mut self, household: RecordId) -> Result<Option<HouseholdPlace>, Self::Error> {
        Ok(self.0.places.get(&household).cloned())
    }

    fn merged_village(&mut self, household: RecordId) -> Result<Option<String>, Self::Error> {
        Ok(self
            .0
            .state
            .record(&household_key(household))
            .and_then(|state| state.shown("village"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    fn household_exists(&mut self, household: RecordId) -> Result<bool, Self::Error> {
        Ok(self.0.state.record(&household_key(household)).is_some())
    }
}

fn household_key(household: RecordId) -> RecordKey {
    RecordKey {
        kind: RecordKind::Household,
        id: household,
    }
}

impl MemoryServer {
    fn new() -> MemoryServer {
        MemoryServer {
            device: DeviceId::from_u128(0xFFFF),
            clock: Clock::new(),
            state: State::new(),
            log: Vec::new(),
            feed: Vec::new(),
            places: HashMap::new(),
            arrivals: HashMap::new(),
        }
    }

    fn household_of(&self, record: &RecordKey) -> Option<RecordId> {
        if record.kind == RecordKind::Household {
            return Some(record.id);
        }
        self.state
            .record(record)
            .and_then(faenban_core::report::household_of)
    }

    fn records_of(&self, household: RecordId) -> Vec<RecordKey> {
        self.state
            .records_sorted()
            .into_iter()
            .map(|(key, _)| key.clone())
            .filter(|key| self.household_of(key) == Some(household))
            .collect()
    }

    /// A push, executed as the stores execute the core's plan.
    fn push(
        &mut self,
        scope: &Scope,
        batch: Batch,
        wall_ms: u64,
    ) -> Result<(), PushError<std::convert::Infallible>> {
        let device = batch.device;
        let Admission {
            fresh,
            mut set_aside,
            ..
        } = push::admit(self.device, batch, &mut View(self))?;
        if fresh.is_empty() {
            return Ok(());
        }
        let mut round = 0;
        loop {
            round += 1;
            let before = self.clone();
            let applying: Vec<(u64, Change)> = fresh
                .iter()
                .filter(|(_, change)| !set_aside.contains_key(&change.record))
                .cloned()
                .collect();
            match self.apply_fresh(scope, device, applying, wall_ms) {
                Ok(()) => break,
                Err(refusals) => {
                    *self = before;
                    assert!(round < push::SET_ASIDE_ROUNDS, "set aside too often");
                    for refusal in refusals {
                        set_aside.entry(refusal.record.clone()).or_insert(refusal);
                    }
                }
            }
        }
        self.arrivals
            .entry(device)
            .or_default()
            .extend(fresh.iter().map(|(_, change)| HeldArrival::of(change)));
        Ok(())
    }

    fn apply_fresh(
        &mut self,
        scope: &Scope,
        device: DeviceId,
        fresh: Vec<(u64, Change)>,
        wall_ms: u64,
    ) -> Result<(), Vec<push::RecordRefusal>> {
        let checked = match push::check_scope(scope, &fresh, &mut View(self)) {
            Ok(checked) => checked,
            Err(PushError::Records(refusals)) => return Err(refusals),
            Err(other) => panic!("{other:?}"),
        };
        let records: BTreeSet<RecordKey> = fresh
            .iter()
            .map(|(_, change)| change.record.clone())
            .collect();
        let mut logged = Vec::new();
        for (_, change) in fresh {
            let arrival = normalize_arrival(change, &mut self.clock, self.device, wall_ms);
            if self.state.apply(arrival.change.clone()) != Outcome::Duplicate {
                self.log.push(arrival.change);
                logged.push(self.log.len() - 1);
            }
        }
        let mut refusals = Vec::new();
        for key in &records {
            let state = self.state.record(key).cloned().unwrap_or_default();
            let Ok(verdict) = push::check_merged(scope, device, key, &state, &mut View(self));
            refusals.extend(verdict.err());
        }
        if !refusals.is_empty() {
            return Err(refusals);
        }
        for change in &logged {
            let record = self.log[*change].record.clone();
            let filed = push::filed_under(&record.kind, self.household_of(&record));
            self.feed.push(Entry {
                change: *change,
                filed,
                announce: Announce::Arrival,
            });
        }
        let first_logged = logged.first().copied();
        for household in &checked.to_place {
            self.place(*household, first_logged);
        }
        for (record, left) in &checked.leaving {
            if let Some(now) = push::moved_to(*left, self.household_of(record)) {
                self.announce(record, now, Announce::Moved, usize::MAX);
            }
        }
        Ok(())
    }

    fn place(&mut self, household: RecordId, first_logged: Option<usize>) {
        let Some(state) = self.state.record(&household_key(household)).cloned() else {
            return;
        };
        let visits: Vec<(RecordKey, RecordState)> = self
            .records_of(household)
            .into_iter()
            .filter(|key| key.kind == RecordKind::Visit)
            .map(|key| {
                let state = self.state.record(&key).cloned().unwrap();
                (key, state)
            })
            .collect();
        let place = push::place_of(household, &state, visits);
        let placement = push::placement(self.places.get(&household), &place);
        if placement == Placement::Unchanged {
            return;
        }
        self.places.insert(household, place);
        let records: Vec<RecordKey> = std::iter::once(household_key(household))
            .chain(self.records_of(household))
            .collect();
        let (announce, before) = match placement {
            Placement::First => match first_logged {
                Some(first) => (Announce::Moved, first),
                None => return,
            },
            Placement::AnnounceAll(announce) => (announce, usize::MAX),
            Placement::Quiet | Placement::Unchanged => return,
        };
        for record in records {
            self.announce(&record, household, announce, before);
        }
    }

    /// Files every logged change of `record` before `before` again.
    fn announce(
        &mut self,
        record: &RecordKey,
        household: RecordId,
        announce: Announce,
        before: usize,
    ) {
        for (change, logged) in self.log.iter().enumerate().take(before.min(self.log.len())) {
            if &logged.record == record {
                self.feed.push(Entry {
                    change,
                    filed: FiledUnder::Household(household),
                    announce,
                });
            }
        }
    }

    /// The changes after `since` an account reads, and the next cursor.
    fn pull(&self, scope: &Scope, since: usize) -> (Vec<Change>, usize) {
        let changes = self.feed[since..]
            .iter()
            .filter(|entry| {
                let place = match entry.filed {
                    FiledUnder::Household(household) => self.places.get(&household),
                    _ => None,
                };
                let record = &self.log[entry.change].record;
                push::reads_entry(
                    scope,
                    entry.announce,
                    entry.filed,
                    place,
                    self.household_of(record),
                )
            })
            .map(|entry| self.log[entry.change].clone())
            .collect();
        (changes, self.feed.len())
    }

    /// The records an account may read now, as the merged state has them.
    fn readable(&self, scope: &Scope) -> BTreeSet<RecordKey> {
        self.state
            .records_sorted()
            .into_iter()
            .map(|(key, _)| key.clone())
            .filter(|key| match self.household_of(key) {
                None => key.kind == RecordKind::Official && scope.may_read(None),
                Some(household) => self
                    .places
                    .get(&household)
                    .is_some_and(|place| scope.may_read(Some(place))),
            })
            .collect()
    }
}

/// The devices that push, each with the account it pushes under.
fn pushers() -> Vec<(Scope, Replica)> {
    let scope = |role, areas: &[&str], dimension| Scope {
        role,
        areas: areas.iter().map(|area| (*area).to_owned()).collect(),
        dimension,
    };
    vec![
        (
            scope(Role::Province, &[], None),
            Replica::new(DeviceId::from_u128(1)),
        ),
        (
            scope(Role::Volunteer, &[VILLAGES[0]], None),
            Replica::new(DeviceId::from_u128(2)),
        ),
        (
            scope(Role::Volunteer, &[VILLAGES[2]], None),
            Replica::new(DeviceId::from_u128(3)),
        ),
        (
            scope(Role::Team, &["400101"], None),
            Replica::new(DeviceId::from_u128(4)),
        ),
        (
            scope(Role::Dimension, &["4001"], Some(Dimension::Living)),
            Replica::new(DeviceId::from_u128(5)),
        ),
    ]
}

/// The accounts that pull.
fn readers() -> Vec<Scope> {
    let scope = |role, areas: &[&str], dimension| Scope {
        role,
        areas: areas.iter().map(|area| (*area).to_owned()).collect(),
        dimension,
    };
    vec![
        scope(Role::Volunteer, &[VILLAGES[0]], None),
        scope(Role::Volunteer, &[VILLAGES[1]], None),
        scope(Role::Team, &["400102"], None),
        scope(Role::Dimension, &["4001"], Some(Dimension::Living)),
        scope(Role::Dimension, &["400101"], Some(Dimension::Income)),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    /// A device sets a household's village (or makes the household).
    Village {
        device: usize,
        household: u128,
        village: usize,
    },
    /// A device moves a member (or makes it) into a household.
    Member {
        device: usize,
        member: u128,
        household: u128,
    },
    /// A device surveys a household: deprived in living or not.
    Visit {
        device: usize,
        visit: u128,
        household: u128,
        deprived: bool,
    },
    /// A device records assistance for a household.
    Assist {
        device: usize,
        household: u128,
        dimension: usize,
    },
    /// A device changes a household's note.
    Note { device: usize, household: u128 },
    /// A device pushes what it has not pushed.
    Push { device: usize },
    /// An account pulls from its cursor.
    Pull { reader: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let device = 0..5usize;
    prop_oneof![
        (device.clone(), 0..HOUSEHOLDS, 0..VILLAGES.len()).prop_map(
            |(device, household, village)| {
                Step::Village {
                    device,
                    household,
                    village,
                }
            }
        ),
        (device.clone(), 0..MEMBERS, 0..HOUSEHOLDS).prop_map(|(device, member, household)| {
            Step::Member {
                device,
                member,
                household,
            }
        }),
        (device.clone(), 0..3u128, 0..HOUSEHOLDS, any::<bool>()).prop_map(
            |(device, visit, household, deprived)| Step::Visit {
                device,
                visit,
                household,
                deprived
            }
        ),
        (device.clone(), 0..HOUSEHOLDS, 0..Dimension::ALL.len()).prop_map(
            |(device, household, dimension)| Step::Assist {
                device,
                household,
                dimension
            }
        ),
        (device.clone(), 0..HOUSEHOLDS)
            .prop_map(|(device, household)| Step::Note { device, household }),
        device.clone().prop_map(|device| Step::Push { device }),
        device.clone().prop_map(|device| Step::Push { device }),
        (0..5usize).prop_map(|reader| Step::Pull { reader }),
    ]
}

fn household_id(n: u128) -> Uuid {
    Uuid::from_u128(0x1000 + n)
}

struct Run {
    server: MemoryServer,
    pushers: Vec<(Scope, Replica)>,
    pushed: Vec<u64>,
    readers: Vec<Scope>,
    cursors: Vec<usize>,
    pulled: Vec<BTreeMap<RecordKey, BTreeSet<(Hlc, DeviceId)>>>,
    /// Every record each reader's scope has covered after some push.
    ever_readable: Vec<BTreeSet<RecordKey>>,
    wall_ms: u64,
}

impl Run {
    fn new() -> Run {
        let readers = readers();
        Run {
            server: MemoryServer::new(),
            pushers: pushers(),
            pushed: vec![0; 5],
            cursors: vec![0; readers.len()],
            pulled: vec![BTreeMap::new(); readers.len()],
            ever_readable: vec![BTreeSet::new(); readers.len()],
            readers,
            wall_ms: START_MS,
        }
    }

    fn set(&mut self, device: usize, key: &RecordKey, fields: Value) {
        self.wall_ms += 1_000;
        for (field, value) in fields.as_object().unwrap() {
            self.pushers[device]
                .1
                .set(self.wall_ms, key, field, value.clone());
        }
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Village {
                device,
                household,
                village,
            } => {
                let key = RecordKey::new(RecordKind::Household, household_id(household));
                self.set(
                    device,
                    &key,
                    json!({ "village": VILLAGES[village], "status": "active" }),
                );
            }
            Step::Member {
                device,
                member,
                household,
            } => {
                let key = RecordKey::new(RecordKind::Member, Uuid::from_u128(0x2000 + member));
                let household = household_id(household).to_string();
                self.set(
                    device,
                    &key,
                    json!({ "household": household, "first_name": "ก" }),
                );
            }
            Step::Visit {
                device,
                visit,
                household,
                deprived,
            } => {
                let key = RecordKey::new(RecordKind::Visit, Uuid::from_u128(0x3000 + visit));
                let household = household_id(household).to_string();
                self.set(
                    device,
                    &key,
                    json!({
                        "household": household,
                        "date": "2026-01-01",
                        "surveyor": "อสม.",
                        "edition": "bmn-2560-2564",
                        "income_per_year": if deprived { "1000.00" } else { "1000000.00" },
                        "members": 2,
                        "in_progress": false,
                        "answer.8": if deprived { "fail" } else { "pass" },
                    }),
                );
            }
            Step::Assist {
                device,
                household,
                dimension,
            } => {
                self.wall_ms += 1;
                let key = RecordKey::new(
                    RecordKind::Assistance,
                    Uuid::from_u128(0x4000 + u128::from(self.wall_ms as u32)),
                );
                let household = household_id(household).to_string();
                self.set(
                    device,
                    &key,
                    json!({ "household": household, "dimension": Dimension::ALL[dimension].key() }),
                );
            }
            Step::Note { device, household } => {
                let key = RecordKey::new(RecordKind::Household, household_id(household));
                self.set(
                    device,
                    &key,
                    json!({ "notes": format!("{}", self.wall_ms) }),
                );
            }
            Step::Push { device } => self.push(device),
            Step::Pull { reader } => self.pull(reader),
        }
    }

    fn push(&mut self, device: usize) {
        let (scope, replica) = &mut self.pushers[device];
        let from = self.pushed[device];
        let changes: Vec<Change> = replica
            .outbox
            .pending()
            .iter()
            .filter(|entry| entry.sequence > from)
            .map(|entry| entry.change.clone())
            .collect();
        if changes.is_empty() {
            return;
        }
        let batch = Batch {
            device: replica.device,
            relay: false,
            first_sequence: from + 1,
            changes,
        };
        let last = from + batch.changes.len() as u64;
        self.wall_ms += 1_000;
        // Refused records are held back, not the batch: honest devices
        // are never refused as a whole.
        self.server
            .push(scope, batch, self.wall_ms)
            .expect("a batch accepted");
        self.pushed[device] = last;
        replica.outbox.acknowledge(last);
        for (reader, scope) in self.readers.iter().enumerate() {
            self.ever_readable[reader].extend(self.server.readable(scope));
        }
    }

    fn pull(&mut self, reader: usize) {
        let scope = &self.readers[reader];
        let (changes, next) = self.server.pull(scope, self.cursors[reader]);
        self.cursors[reader] = next;
        for change in changes {
            assert!(
                self.ever_readable[reader].contains(&change.record),
                "{scope:?} pulled a change of {} {}, which was never in its scope",
                change.record.kind,
                change.record.id
            );
            self.pulled[reader]
                .entry(change.record.clone())
                .or_default()
                .insert((change.stamp.hlc, change.stamp.device));
        }
    }

    /// Every change of every record each reader may read now has reached it.
    fn check_complete(&mut self) {
        for reader in 0..self.readers.len() {
            self.pull(reader);
            let scope = &self.readers[reader];
            for record in self.server.readable(scope) {
                for change in self
                    .server
                    .log
                    .iter()
                    .filter(|change| change.record == record)
                {
                    let held = self.pulled[reader].get(&record).is_some_and(|held| {
                        held.contains(&(change.stamp.hlc, change.stamp.device))
                    });
                    assert!(
                        held,
                        "{scope:?} may read {} {} but never pulled its change to {}",
                        record.kind, record.id, change.field
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_scoped_account_pulls_its_scope_and_nothing_else(steps in prop::collection::vec(step(), 1..60)) {
        let mut run = Run::new();
        for step in &steps {
            run.run(step);
        }
        for device in 0..run.pushers.len() {
            run.push(device);
        }
        run.check_complete();
    }
}

/// A household placed in one village and moved to another reaches the
/// second village's volunteer with its whole history, and the first
/// volunteer gets nothing of it after it left.
#[test]
fn a_moved_household_takes_its_history_to_its_new_village() {
    let mut run = Run::new();
    for step in [
        Step::Village {
            device: 0,
            household: 0,
            village: 0,
        },
        Step::Member {
            device: 0,
            member: 0,
            household: 0,
        },
        Step::Push { device: 0 },
        Step::Pull { reader: 0 },
        Step::Pull { reader: 1 },
        Step::Village {
            device: 0,
            household: 0,
            village: 1,
        },
        Step::Push { device: 0 },
        Step::Note {
            device: 0,
            household: 0,
        },
        Step::Push { device: 0 },
    ] {
        run.run(&step);
    }
    let member = RecordKey::new(RecordKind::Member, Uuid::from_u128(0x2000));
    assert!(
        run.pulled[0].contains_key(&member),
        "the first village saw the member"
    );
    assert!(
        !run.pulled[1].contains_key(&member),
        "the second village had nothing yet"
    );
    run.check_complete();
    assert!(
        run.pulled[1].contains_key(&member),
        "the member followed its household"
    );
    let household = RecordKey::new(RecordKind::Household, household_id(0));
    let notes = run
        .server
        .log
        .iter()
        .filter(|c| c.record == household && c.field == "notes");
    for note in notes {
        let key = (note.stamp.hlc, note.stamp.device);
        assert!(
            !run.pulled[0][&household].contains(&key),
            "the note after it left"
        );
    }
}

/// A volunteer's change to a household in another village is held back,
/// and no reader of that village receives it.
#[test]
fn a_change_outside_the_pushers_scope_reaches_no_one() {
    let mut run = Run::new();
    for step in [
        Step::Village {
            device: 0,
            household: 0,
            village: 1,
        },
        Step::Push { device: 0 },
        Step::Note {
            device: 1,
            household: 0,
        },
        Step::Push { device: 1 },
    ] {
        run.run(&step);
    }
    let volunteer = DeviceId::from_u128(2);
    assert!(run
        .server
        .log
        .iter()
        .all(|change| change.stamp.device != volunteer));
    assert_eq!(
        run.server.arrivals[&volunteer].len(),
        1,
        "held, and held back"
    );
    run.check_complete();
}

/// Two finished visits of one day, one finding the household deprived and
/// one not: the server's place and the report take the same one, whichever
/// order the visits are read in.
#[test]
fn the_latest_of_two_visits_of_one_day_is_the_same_for_scope_and_report() {
    let mut replica = Replica::new(DeviceId::from_u128(9));
    let household = RecordKey::new(RecordKind::Household, household_id(0));
    let fields = json!({
        "house_code": "40010000001",
        "village": VILLAGES[0],
        "address": "1 หมู่ 1",
        "entry": "tpmap_target",
        "status": "active",
        "welfare_card": false,
    });
    for (field, value) in fields.as_object().unwrap() {
        replica.set(START_MS, &household, field, value.clone());
    }
    let mut visits = Vec::new();
    for (n, deprived) in [(1u128, true), (2, false)] {
        let key = RecordKey::new(RecordKind::Visit, Uuid::from_u128(0x3000 + n));
        let fields = json!({
            "household": household.id.to_string(),
            "date": "2026-01-01",
            "surveyor": "อสม.",
            "edition": "bmn-2560-2564",
            "income_per_year": "1000000.00",
            "members": 2,
            "in_progress": false,
            "answer.8": if deprived { "fail" } else { "pass" },
        });
        for (field, value) in fields.as_object().unwrap() {
            replica.set(START_MS, &key, field, value.clone());
        }
        visits.push((key.clone(), replica.state.record(&key).unwrap().clone()));
    }
    let state = replica.state.record(&household).unwrap().clone();
    let forward = push::place_of(household.id, &state, visits.clone());
    let backward = push::place_of(household.id, &state, visits.iter().rev().cloned());
    assert_eq!(forward, backward);
    assert_ne!(forward.deprived, 0, "the deprived one sorts last");
    let digest = faenban_core::report::digest_household(
        (&household, &state),
        visits.iter().map(|(key, state)| (key, state)),
        &faenban_core::Catalogues::builtin(),
    )
    .unwrap();
    assert_eq!(digest.visits.last().unwrap().deprived, forward.deprived);
}
