//! The store's household digests, kept current by every write, give the
//! same report as the core computes from every record, whatever is moved,
//! archived or restored, and after an upgrade makes them anew.

use faenban_core::areas::Areas;
use faenban_core::codes::{AreaCode, AreaLevel};
use faenban_core::report::{self, ReportOptions};
use faenban_core::{Catalogues, Dimension, RecordKey, RecordKind, RecordState};
use faenban_fixtures::{populate, Spec};
use faenban_store::Store;
use proptest::prelude::*;
use serde_json::json;

const NOW: u64 = 1_767_571_200_000;

fn every_record(store: &Store) -> Vec<(RecordKey, RecordState)> {
    RecordKind::KNOWN
        .into_iter()
        .flat_map(|kind| store.records(&kind).unwrap())
        .collect()
}

/// The options a province office asks most.
fn askings(store: &Store) -> Vec<ReportOptions> {
    let households = store.records(&RecordKind::Household).unwrap();
    let village = households
        .first()
        .and_then(|(_, state)| state.shown("village").and_then(|v| v.as_str()))
        .map(|v| AreaCode::parse(&v[..4]).unwrap());
    vec![
        ReportOptions::default(),
        ReportOptions {
            level: Some(AreaLevel::Village),
            ..ReportOptions::default()
        },
        ReportOptions {
            area: village,
            level: Some(AreaLevel::Subdistrict),
            dimension: Some(Dimension::Income),
            ..ReportOptions::default()
        },
        ReportOptions {
            level: Some(AreaLevel::District),
            fiscal_year: Some(2569),
            ..ReportOptions::default()
        },
    ]
}

fn assert_same_report(store: &Store) {
    let records = every_record(store);
    for options in askings(store) {
        let expected = report::build(
            records.clone(),
            &Catalogues::builtin(),
            &Areas::builtin(),
            &options,
        );
        let kept = store.report(&Areas::builtin(), &options).unwrap();
        assert_eq!(kept, expected, "report for {options:?}");
    }
}

/// One edit a person (or a pull of someone else's) makes.
#[derive(Clone, Debug)]
enum Edit {
    /// A member, visit, assistance record or pairing moved to another household.
    Move {
        kind: usize,
        record: usize,
        to: usize,
    },
    /// A record of any kind archived.
    Archive { kind: usize, record: usize },
    /// A record restored.
    Restore { kind: usize, record: usize },
    /// A household's classification changed.
    Classify { household: usize, welfare: bool },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..4usize, any::<usize>(), any::<usize>()).prop_map(|(kind, record, to)| Edit::Move {
            kind,
            record,
            to
        }),
        (0..5usize, any::<usize>()).prop_map(|(kind, record)| Edit::Archive { kind, record }),
        (0..5usize, any::<usize>()).prop_map(|(kind, record)| Edit::Restore { kind, record }),
        (any::<usize>(), any::<bool>())
            .prop_map(|(household, welfare)| Edit::Classify { household, welfare }),
    ]
}

const KINDS: [RecordKind; 5] = [
    RecordKind::Member,
    RecordKind::Visit,
    RecordKind::Assistance,
    RecordKind::Pairing,
    RecordKind::Household,
];

fn apply(store: &mut Store, edit: &Edit) {
    let households = store.records(&RecordKind::Household).unwrap();
    let pick = |kind: usize, record: usize| {
        let records = store.records(&KINDS[kind]).unwrap();
        (!records.is_empty()).then(|| records[record % records.len()].0.clone())
    };
    match edit {
        Edit::Move { kind, record, to } => {
            let Some(key) = pick(*kind, *record) else {
                return;
            };
            let to = households[to % households.len()].0.id;
            store
                .write(NOW, |session| {
                    session.set(&key, "household", json!(to.0.to_string()))
                })
                .unwrap();
        }
        Edit::Archive { kind, record } => {
            if let Some(key) = pick(*kind, *record) {
                store.write(NOW, |session| session.archive(&key)).unwrap();
            }
        }
        Edit::Restore { kind, record } => {
            if let Some(key) = pick(*kind, *record) {
                store.write(NOW, |session| session.restore(&key)).unwrap();
            }
        }
        Edit::Classify { household, welfare } => {
            let key = households[household % households.len()].0.clone();
            let value = if *welfare {
                "needs_welfare"
            } else {
                "can_develop"
            };
            store
                .write(NOW, |session| {
                    session.set(&key, "classification", json!(value))
                })
                .unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn kept_digests_report_what_the_records_say(
        seed in 0u64..1_000,
        edits in proptest::collection::vec(edit(), 1..12),
    ) {
        let mut store = Store::open_in_memory().unwrap();
        populate(&mut store, &Spec::khon_kaen(seed, 30)).unwrap();
        assert_same_report(&store);
        for edit in &edits {
            apply(&mut store, edit);
        }
        assert_same_report(&store);
    }
}

#[test]
fn an_upgraded_file_makes_every_digest_when_opened_in_this_builds_form() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("faenban.db");
    {
        let mut store = Store::open(&path).unwrap();
        populate(&mut store, &Spec::khon_kaen(7, 60)).unwrap();
    }
    {
        // As a schema 6 file is once its upgrade has run and before it is
        // first opened: an empty digests table (migration 7 makes it) and
        // no marker.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DELETE FROM report_digests; \
             DELETE FROM meta WHERE key = 'report_digests';",
        )
        .unwrap();
    }
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.report_digests().unwrap().len(), 60);
        assert_same_report(&store);
    }
    {
        // As an earlier build's digests would be: another form.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "UPDATE report_digests SET digest = '{\"household\":1}'; \
             UPDATE meta SET value = 'current' WHERE key = 'report_digests';",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.report_digests().unwrap().len(), 60);
    assert_same_report(&store);
}

#[test]
fn a_rolled_back_item_of_a_group_leaves_no_trace_in_the_digests() {
    let mut store = Store::open_in_memory().unwrap();
    populate(&mut store, &Spec::khon_kaen(11, 10)).unwrap();
    let (household, state) = store.records(&RecordKind::Household).unwrap().remove(0);
    let before = state.shown("classification").cloned();
    let other = if before == Some(json!("needs_welfare")) {
        "can_develop"
    } else {
        "needs_welfare"
    };
    let member = store
        .records(&RecordKind::Member)
        .unwrap()
        .into_iter()
        .find(|(_, state)| state.shown("household") == Some(&json!(household.id.0.to_string())))
        .expect("a member of the household")
        .0;
    // The first item changes the household, writes what it holds (enough
    // other records for that, as a long push does), and fails; the second
    // changes one of its members, so that its digest is made again.
    let results = store
        .write_group(NOW, vec![true, false], |session, fails| {
            if fails {
                session.set(&household, "classification", json!(other))?;
                for n in 0..5_000u128 {
                    let key = RecordKey::new(RecordKind::Official, uuid::Uuid::from_u128(n + 1));
                    session.set(&key, "name", json!(format!("official {n}")))?;
                }
                return Err(faenban_store::Error::Corrupt("refused".into()));
            }
            session.set(&member, "occupation", json!("ทำนา"))?;
            Ok(())
        })
        .unwrap();
    assert!(results[0].is_err() && results[1].is_ok());
    let after = store.record(&household).unwrap().unwrap();
    assert_eq!(after.shown("classification"), before.as_ref());
    assert_same_report(&store);
}

#[test]
fn digests_not_kept_are_never_reported_from() {
    let mut store = Store::open_in_memory().unwrap();
    populate(&mut store, &Spec::khon_kaen(13, 20)).unwrap();
    store.keep_report_digests(false);
    let (household, _) = store.records(&RecordKind::Household).unwrap().remove(0);
    store
        .write(NOW, |session| session.archive(&household))
        .unwrap();
    // The kept digests still count the archived household; the report
    // does not use them.
    assert_same_report(&store);
    assert_eq!(
        store
            .report(&Areas::builtin(), &ReportOptions::default())
            .unwrap()
            .total
            .households,
        19
    );
}
