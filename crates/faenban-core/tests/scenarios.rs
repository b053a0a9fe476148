//! Field stories, in plain words: what happens when volunteers work offline
//! and their laptops meet again.

use faenban_core::merge::Conflict;
use faenban_core::model::{
    decode, Household, HouseholdStatus, Member, ProgrammeEntry, Relation, Sex,
};
use faenban_core::replica::normalize_arrival;
use faenban_core::{Baht, Change, Clock, DeviceId, RecordKey, Replica, State, MAX_FUTURE_DRIFT_MS};
use serde_json::json;
use uuid::Uuid;

const DAY_MS: u64 = 24 * 3600 * 1000;
/// 2026-01-05, a Monday in the field.
const MONDAY: u64 = 1_767_571_200_000;
const YEAR_2035: u64 = 2_051_222_400_000;

fn household() -> Household {
    Household {
        house_code: "4001-012345-6".parse().unwrap(),
        village: faenban_core::codes::AreaCode::parse_village("40010101").unwrap(),
        address: "12 หมู่ 1 ต.ในเมือง อ.เมืองขอนแก่น".into(),
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

/// Two laptops, both knowing household `key`, created on the first.
fn two_volunteers_with_a_household() -> (Replica, Replica, RecordKey) {
    let mut somchai = Replica::new(DeviceId::from_u128(1));
    let mut malee = Replica::new(DeviceId::from_u128(2));
    let (key, created) = somchai
        .create(
            MONDAY,
            Uuid::from_u128(0x0190_aaaa_0000_7000_8000_0000_0000_0001),
            &household(),
        )
        .unwrap();
    for change in created {
        malee.receive(change, MONDAY);
    }
    (somchai, malee, key)
}

fn exchange<'a>(
    a: &mut Replica,
    b: &mut Replica,
    a_changes: impl IntoIterator<Item = &'a Change>,
    b_changes: impl IntoIterator<Item = &'a Change>,
    now: u64,
) {
    for change in a_changes {
        b.receive(change.clone(), now);
    }
    for change in b_changes {
        a.receive(change.clone(), now);
    }
}

#[test]
fn two_volunteers_change_the_same_income_offline_and_both_values_are_kept() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    let field = "income_per_year";
    let by_somchai = somchai.set(MONDAY + DAY_MS, &key, field, json!("36000.00"));
    let by_malee = malee.set(MONDAY + 2 * DAY_MS, &key, field, json!("41000.00"));
    exchange(
        &mut somchai,
        &mut malee,
        [&by_somchai],
        [&by_malee],
        MONDAY + 3 * DAY_MS,
    );

    for laptop in [&somchai, &malee] {
        let record = laptop.state.record(&key).unwrap();
        // The later stamp is shown, the other is kept, and a conflict is recorded.
        assert_eq!(record.shown(field), Some(&json!("41000.00")));
        let candidates: Vec<_> = record
            .field(field)
            .unwrap()
            .live()
            .iter()
            .map(|e| e.stamp)
            .collect();
        assert_eq!(candidates, vec![by_somchai.stamp, by_malee.stamp]);
        assert!(matches!(
            laptop.state.conflicts().as_slice(),
            [Conflict::Values { field: f, .. }] if f == field
        ));
    }
    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());

    // Somchai looks at both and keeps his value: resolving is a change too.
    let resolution = somchai.set(MONDAY + 4 * DAY_MS, &key, field, json!("36000.00"));
    assert_eq!(
        resolution.supersedes.as_slice(),
        [by_somchai.stamp, by_malee.stamp]
    );
    malee.receive(resolution, MONDAY + 4 * DAY_MS);
    for laptop in [&somchai, &malee] {
        assert!(laptop.state.conflicts().is_empty());
        assert_eq!(
            laptop.state.record(&key).unwrap().shown(field),
            Some(&json!("36000.00"))
        );
    }
}

#[test]
fn the_same_value_typed_twice_is_not_a_conflict() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    let a = somchai.set(MONDAY + DAY_MS, &key, "notes", json!("ซ่อมหลังคาแล้ว"));
    let b = malee.set(MONDAY + DAY_MS, &key, "notes", json!("ซ่อมหลังคาแล้ว"));
    exchange(&mut somchai, &mut malee, &[a], &[b], MONDAY + DAY_MS);
    assert!(somchai.state.conflicts().is_empty());
    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());
}

#[test]
fn an_edit_made_while_someone_else_archives_wins_and_raises_a_conflict() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    // Somchai archives the household (he thinks it moved away); Malee, who
    // has not heard, records a new phone-less address the same week.
    let archive = somchai.archive(MONDAY + DAY_MS, &key);
    let edit = malee.set(MONDAY + 2 * DAY_MS, &key, "address", json!("บ้านใหม่ หมู่ 3"));
    exchange(
        &mut somchai,
        &mut malee,
        [&archive],
        [&edit],
        MONDAY + 3 * DAY_MS,
    );

    for laptop in [&somchai, &malee] {
        let record = laptop.state.record(&key).unwrap();
        assert!(
            !record.is_archived(),
            "the concurrent edit keeps the household active"
        );
        let conflicts = laptop.state.conflicts();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        let Conflict::EditDuringArchive {
            archives,
            unseen_edits,
            ..
        } = &conflicts[0]
        else {
            panic!("expected an archive conflict, got {conflicts:?}");
        };
        assert_eq!(archives, &vec![archive.stamp]);
        assert_eq!(unseen_edits, &vec![("address".into(), edit.stamp)]);
        let view = decode::<Household>(&key, record).unwrap();
        assert!(!view.archived && view.in_conflict);
    }

    // Having seen the new address, Somchai archives again: now it holds.
    let again = somchai.archive(MONDAY + 4 * DAY_MS, &key);
    malee.receive(again, MONDAY + 4 * DAY_MS);
    for laptop in [&somchai, &malee] {
        assert!(laptop.state.record(&key).unwrap().is_archived());
        assert!(laptop.state.conflicts().is_empty());
    }
}

#[test]
fn an_archive_that_saw_every_edit_simply_archives() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    let archive = somchai.archive(MONDAY + DAY_MS, &key);
    malee.receive(archive, MONDAY + DAY_MS);
    assert!(malee.state.record(&key).unwrap().is_archived());
    assert!(malee.state.conflicts().is_empty());
    let view = decode::<Household>(&key, malee.state.record(&key).unwrap()).unwrap();
    assert_eq!(view.shown_status(), HouseholdStatus::Archived);
}

#[test]
fn archive_and_restore_cycles_on_two_laptops_converge() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    let mut sent_by_somchai = vec![somchai.archive(MONDAY + 1, &key)];
    sent_by_somchai.push(somchai.restore(MONDAY + 2, &key));
    sent_by_somchai.push(somchai.archive(MONDAY + 3, &key));
    let mut sent_by_malee = vec![malee.archive(MONDAY + 1, &key)];
    sent_by_malee.push(malee.restore(MONDAY + 5, &key));
    exchange(
        &mut somchai,
        &mut malee,
        &sent_by_somchai,
        &sent_by_malee,
        MONDAY + 10,
    );

    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());
    let record = somchai.state.record(&key).unwrap();
    // A restore concurrent with an archive wins, and the disagreement shows.
    assert!(!record.is_archived());
    assert!(matches!(
        somchai.state.conflicts().as_slice(),
        [Conflict::Values { field, .. }] if field == "archived"
    ));
    // Either laptop settles it, and both agree.
    let settle = malee.archive(MONDAY + 20, &key);
    somchai.receive(settle, MONDAY + 20);
    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());
    assert!(somchai.state.record(&key).unwrap().is_archived());
    assert!(somchai.state.conflicts().is_empty());
}

#[test]
fn a_laptop_whose_clock_says_2035_does_not_win_forever() {
    let (mut broken, mut malee, key) = two_volunteers_with_a_household();
    let server_device = DeviceId::from_u128(0x5E4E);
    let mut server_clock = Clock::new();
    let mut server = State::new();

    // The laptop's clock says 2035. Its edit would beat every honest edit for
    // nine years if its stamp were trusted.
    let from_2035 = broken.set(YEAR_2035, &key, "income_per_year", json!("30000.00"));
    assert_eq!(from_2035.stamp.hlc.wall_ms, YEAR_2035);

    // It reaches a second laptop by bundle first: a provisional copy.
    malee.receive(from_2035.clone(), MONDAY + DAY_MS);
    assert_eq!(
        malee.clock.tick(MONDAY + DAY_MS).wall_ms,
        MONDAY + DAY_MS,
        "the 2035 stamp does not drag Malee's clock into the future"
    );

    // At sync the laptop pushes its outbox. The server re-stamps the 2035
    // change, once, with its own time, keeping the original stamp.
    let server_now = MONDAY + DAY_MS;
    let mut accepted = Vec::new();
    for entry in broken.outbox.pending() {
        accepted.push(normalize_arrival(
            entry.change.clone(),
            &mut server_clock,
            server_device,
            server_now,
        ));
    }
    let up_to = broken.outbox.pending().last().unwrap().sequence;
    broken.outbox.acknowledge(up_to);
    assert_eq!(
        accepted.iter().filter(|a| a.restamped).count(),
        1,
        "only the 2035 change"
    );
    let canonical = accepted.last().unwrap().change.clone();
    for arrival in accepted {
        server.apply(arrival.change);
    }
    assert_eq!(canonical.stamp.hlc.wall_ms, server_now);
    assert_eq!(canonical.previous_stamps, vec![from_2035.stamp]);
    assert_eq!(canonical.author(), broken.device);

    // The laptop learns the server's time and its clock comes back to now;
    // nothing is left to re-stamp, since everything was pushed.
    broken.receive(canonical.clone(), YEAR_2035);
    assert!(broken.correct_clock(server_now, YEAR_2035).is_empty());
    // (one millisecond past the drift: every reading up to there may be taken)
    assert!(broken.clock.tick(YEAR_2035).wall_ms <= server_now + MAX_FUTURE_DRIFT_MS + 1);

    // The provisional copy on Malee's laptop gives way to the server's version.
    malee.receive(canonical.clone(), server_now);
    let field = malee
        .state
        .record(&key)
        .unwrap()
        .field("income_per_year")
        .unwrap();
    assert_eq!(field.live().len(), 1);
    assert_eq!(field.live()[0].stamp, canonical.stamp);

    // A later honest edit by Malee, who had seen the 2035 value, now wins
    // normally; and one who had not seen it is concurrent, not beaten by 2035.
    let later = malee.set(
        server_now + DAY_MS,
        &key,
        "income_per_year",
        json!("42000.00"),
    );
    server.apply(later.clone());
    broken.receive(later, server_now + DAY_MS);
    for state in [&server, &broken.state, &malee.state] {
        assert_eq!(
            state.record(&key).unwrap().shown("income_per_year"),
            Some(&json!("42000.00"))
        );
    }
    assert_eq!(broken.state.canonical_json(), malee.state.canonical_json());
}

#[test]
fn unpushed_changes_from_the_future_are_restamped_on_the_laptop_but_shared_ones_are_not() {
    let mut laptop = Replica::new(DeviceId::from_u128(9));
    let key = RecordKey::new(faenban_core::RecordKind::Household, Uuid::from_u128(77));
    let kept_private = laptop.set(YEAR_2035, &key, "notes", json!("a"));
    let server_now = MONDAY;
    let restamped = laptop.correct_clock(server_now, YEAR_2035);
    assert_eq!(restamped.len(), 1);
    assert_eq!(restamped[0].previous_stamps, vec![kept_private.stamp]);
    assert!(restamped[0].stamp.hlc.wall_ms <= server_now + MAX_FUTURE_DRIFT_MS + 1);
    // The laptop's own state replaced the old copy.
    let live = laptop
        .state
        .record(&key)
        .unwrap()
        .field("notes")
        .unwrap()
        .live()
        .to_vec();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].stamp, restamped[0].stamp);

    // A change already handed out in a bundle keeps its stamp: only the
    // server may normalize it now.
    let mut other = Replica::new(DeviceId::from_u128(10));
    let shared = other.set(YEAR_2035, &key, "notes", json!("b"));
    other.outbox.mark_shared(1);
    assert!(other.correct_clock(server_now, YEAR_2035).is_empty());
    assert_eq!(other.outbox.pending()[0].change.stamp, shared.stamp);

    // Acknowledged changes leave the outbox, and with it any re-stamping.
    other.outbox.acknowledge(1);
    assert!(other.outbox.pending().is_empty());
}

#[test]
fn a_change_that_arrives_before_its_record_is_kept_and_fits_in_when_the_record_comes() {
    let (mut somchai, _, household_key) = two_volunteers_with_a_household();
    let member = Member {
        household: household_key.id,
        national_id: Some(
            faenban_core::codes::NationalId::with_check_digit("310170023070").unwrap(),
        ),
        title: "นาง".into(),
        first_name: "สมศรี".into(),
        last_name: "ใจดี".into(),
        sex: Sex::Female,
        birth_date: None,
        relation: Relation::Spouse,
        education: None,
        occupation: "ทำนา".into(),
        income_per_year: Some(Baht::from_baht(24_000)),
        disability: false,
        chronic_illness: false,
        welfare_card: true,
    };
    let (member_key, created) = somchai
        .create(
            MONDAY + DAY_MS,
            Uuid::from_u128(0x0190_bbbb_0000_7000_8000_0000_0000_0001),
            &member,
        )
        .unwrap();
    let edit = somchai.set(
        MONDAY + 2 * DAY_MS,
        &member_key,
        "occupation",
        json!("รับจ้าง"),
    );

    // The office receives the edit first, then the creation.
    let mut office = State::new();
    office.apply(edit.clone());
    let early = office.record(&member_key).unwrap();
    assert!(
        decode::<Member>(&member_key, early).is_err(),
        "not yet a whole member"
    );
    assert_eq!(early.shown("occupation"), Some(&json!("รับจ้าง")));
    for change in created.iter().rev() {
        office.apply(change.clone());
    }

    let mut in_order = State::new();
    in_order.apply_all(created);
    in_order.apply(edit);
    assert_eq!(office.canonical_json(), in_order.canonical_json());
    let view = decode::<Member>(&member_key, office.record(&member_key).unwrap()).unwrap();
    assert_eq!(view.value.occupation, "รับจ้าง");
    assert!(office.conflicts().is_empty());
}

#[test]
fn a_conflict_resolved_on_one_laptop_while_another_keeps_editing() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    let field = "notes";
    let a = somchai.set(MONDAY + 1, &key, field, json!("ต้องการซ่อมบ้าน"));
    let b = malee.set(MONDAY + 2, &key, field, json!("ต้องการถังน้ำ"));
    exchange(&mut somchai, &mut malee, &[a], [&b], MONDAY + 3);
    assert_eq!(somchai.state.conflicts().len(), 1);

    // Somchai resolves; Malee, offline again, keeps editing her own value.
    let resolution = somchai.set(MONDAY + 4, &key, field, json!("ต้องการซ่อมบ้านและถังน้ำ"));
    let malee_again = malee.set(MONDAY + 5, &key, field, json!("ต้องการถังน้ำ 2 ใบ"));
    exchange(
        &mut somchai,
        &mut malee,
        [&resolution],
        [&malee_again],
        MONDAY + 6,
    );

    // The resolution settled what Somchai saw; Malee's new edit did not see
    // it, so the two stand side by side as a new conflict, everywhere.
    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());
    let conflicts = somchai.state.conflicts();
    let [Conflict::Values { candidates, .. }] = conflicts.as_slice() else {
        panic!("expected one value conflict, got {conflicts:?}");
    };
    let stamps: Vec<_> = candidates.iter().map(|e| e.stamp).collect();
    assert_eq!(stamps, vec![resolution.stamp, malee_again.stamp]);
    assert!(
        !stamps.contains(&b.stamp),
        "the value the resolution saw is gone"
    );

    let settled = malee.set(MONDAY + 7, &key, field, json!("ต้องการซ่อมบ้านและถังน้ำ 2 ใบ"));
    somchai.receive(settled, MONDAY + 7);
    assert!(somchai.state.conflicts().is_empty());
    assert_eq!(somchai.state.canonical_json(), malee.state.canonical_json());
}

#[test]
fn a_device_with_a_slow_clock_still_fast_forwards_what_it_saw() {
    let (mut somchai, mut slow, key) = two_volunteers_with_a_household();
    let fresh = somchai.set(MONDAY + DAY_MS, &key, "notes", json!("เดิม"));
    slow.receive(fresh.clone(), MONDAY - 3650 * DAY_MS);
    // Its clock says 2016 and does not follow a stamp ten years ahead, so its
    // edit's stamp is lower than the value it replaces. It saw that value,
    // so its edit still fast-forwards.
    let edit = slow.set(MONDAY - 3650 * DAY_MS, &key, "notes", json!("ใหม่"));
    assert!(edit.stamp < fresh.stamp);
    assert_eq!(edit.supersedes.as_slice(), [fresh.stamp]);
    somchai.receive(edit, MONDAY + DAY_MS);
    assert_eq!(
        somchai.state.record(&key).unwrap().shown("notes"),
        Some(&json!("ใหม่"))
    );
    assert!(somchai.state.conflicts().is_empty());
}

#[test]
fn fields_from_a_newer_version_are_kept_and_passed_on() {
    let (mut somchai, mut malee, key) = two_volunteers_with_a_household();
    let newer = somchai.set(MONDAY + 1, &key, "solar_panel_watts", json!(400));
    malee.receive(newer, MONDAY + 1);
    let record = malee.state.record(&key).unwrap();
    assert_eq!(record.shown("solar_panel_watts"), Some(&json!(400)));
    // The household still reads as a household.
    assert!(decode::<Household>(&key, record).is_ok());
}

#[test]
fn a_pushed_change_whose_answer_was_lost_is_never_restamped_by_the_laptop() {
    let mut laptop = Replica::new(DeviceId::from_u128(9));
    let key = RecordKey::new(faenban_core::RecordKind::Household, Uuid::from_u128(78));
    let sent = laptop.set(YEAR_2035, &key, "notes", json!("sent"));
    // The push leaves the laptop; the server stores it; the answer is lost.
    laptop.outbox.mark_shared(1);
    // A later pull teaches the laptop the server's time anyway.
    assert!(laptop.correct_clock(MONDAY, YEAR_2035).is_empty());
    assert_eq!(laptop.outbox.pending()[0].change.stamp, sent.stamp);
    // Only the server's normalization may change that stamp now.
}
