//! A push on PostgreSQL: the core's plan ([`faenban_core::push`]) executed
//! in one transaction, merged in memory and written in a few statements,
//! with the feed numbered last, under the feed head's lock, so that entries
//! are numbered in the order their pushes commit.

use std::collections::{BTreeSet, HashMap};

use faenban_core::clock::is_from_the_future;
use faenban_core::push::{self, Announce, FiledUnder};
use faenban_core::sync::{HeldBack, HouseholdPlace, Scope};
use faenban_core::{
    normalize_arrival, Change, Clock, DeviceId, RecordId, RecordKey, RecordKind, RecordState,
    RefusalCode,
};
use faenban_keys::device_id_of;
use faenban_store::server::{Account, PushInput, PushOutcome};
use serde_json::Value;
use uuid::Uuid;

use super::pool::{Connection, Tx};
use super::{
    decode_state, device_owner, home_province, province_of, refusals_between, refused,
    stored_state, Failure, PostgresBackend, ACCOUNT_COLUMNS,
};
use crate::backend::BackendError;

/// A record this push merges into: its number, home province and state.
struct Merged {
    n: i64,
    province: i16,
    state: RecordState,
    household_before: Option<RecordId>,
}

/// One feed entry, numbered when the push commits.
struct FeedEntry {
    /// The household it is filed under (`Some` even when unplaced).
    filed: Filed,
    change_province: i16,
    change_seq: i64,
    announce: Announce,
}

/// What an entry is filed under, as its row keeps it.
#[derive(Clone, Copy)]
enum Filed {
    Everyone,
    NoKnownHousehold,
    Household(RecordId, i64),
}

/// What one round of merging wrote.
#[derive(Default)]
struct Written {
    applied: u32,
    duplicates: u32,
    restamped: u32,
    entries: Vec<FeedEntry>,
    /// Where each household this push placed now is.
    placed: HashMap<RecordId, HouseholdPlace>,
}

/// Why a round stopped.
enum RoundFailure {
    Records(Vec<push::RecordRefusal>),
    Other(Failure),
}

impl<E: Into<Failure>> From<E> for RoundFailure {
    fn from(error: E) -> RoundFailure {
        RoundFailure::Other(error.into())
    }
}

fn plan_failure(error: push::PushError<Failure>) -> RoundFailure {
    match error {
        push::PushError::Batch { code, message } => {
            RoundFailure::Other(Failure::Final(refused(code, message)))
        }
        push::PushError::Records(refusals) => RoundFailure::Records(refusals),
        push::PushError::Store(failure) => RoundFailure::Other(failure),
    }
}

fn batch_failure(error: push::PushError<Failure>) -> Failure {
    match plan_failure(error) {
        RoundFailure::Other(failure) => failure,
        RoundFailure::Records(refusals) => Failure::Final(refused(
            refusals.first().map_or(RefusalCode::OutOfScope, |r| r.code),
            refusals
                .into_iter()
                .next()
                .map_or(String::new(), |r| r.message),
        )),
    }
}

/// One attempt at a push. Nothing is committed unless all of it is.
pub(super) fn push_once(
    backend: &PostgresBackend,
    connection: &mut Connection<'_>,
    account: &Account,
    input: PushInput,
    now_ms: u64,
) -> Result<PushOutcome, Failure> {
    // The field numbers this push reads or gives; remembered by the
    // backend only once the push has committed them.
    let mut fields: HashMap<String, i32> = HashMap::new();
    let mut tx = connection.transaction()?;
    tx.batch_execute(super::INDEX_LOOKUPS_ONLY)?;
    let (outcome, feed) = push_in(backend, &mut tx, account, input, now_ms, &mut fields)?;
    let written = feed.change_provinces.clone();
    number_feed(&mut tx, feed)?;
    tx.commit()?;
    backend.remember_fields(fields);
    backend.analyze_grown(connection, &written);
    Ok(outcome)
}

/// One attempt at a group of pushes in one transaction, each in its own
/// savepoint: all of them commit at once, with one `fsync`, and their feed
/// entries are numbered together at the end. A push refused for good is
/// answered with its refusal, the others still commit; one that met a
/// transient failure (a deadlock with another process's group, a province
/// without partitions yet) is rolled back to its savepoint and left
/// unanswered (`None`), for the caller to try alone.
pub(super) fn push_group(
    backend: &PostgresBackend,
    connection: &mut Connection<'_>,
    pushes: &[(Account, PushInput)],
    now_ms: u64,
) -> Result<Vec<Option<Result<PushOutcome, BackendError>>>, Failure> {
    let mut fields: HashMap<String, i32> = HashMap::new();
    let mut tx = connection.transaction()?;
    tx.batch_execute(super::INDEX_LOOKUPS_ONLY)?;
    let mut feed = FeedRows::default();
    let mut answers = Vec::with_capacity(pushes.len());
    for (account, input) in pushes {
        let mut own_fields = HashMap::new();
        let mut own = tx.savepoint("push")?;
        match push_in(
            backend,
            &mut own,
            account,
            input.clone(),
            now_ms,
            &mut own_fields,
        ) {
            Ok((outcome, filed)) => {
                own.commit()?;
                feed.extend(filed);
                fields.extend(own_fields);
                answers.push(Some(Ok(outcome)));
            }
            Err(Failure::Final(error)) => {
                own.rollback()?;
                answers.push(Some(Err(error)));
            }
            Err(Failure::Again(error)) => {
                tracing::debug!(%error, "a push of a group is tried alone");
                own.rollback()?;
                answers.push(None);
            }
            Err(Failure::NeedsProvince(_)) => {
                own.rollback()?;
                answers.push(None);
            }
        }
    }
    let written = feed.change_provinces.clone();
    number_feed(&mut tx, feed)?;
    tx.commit()?;
    backend.remember_fields(fields);
    backend.analyze_grown(connection, &written);
    Ok(answers)
}

/// A push inside the caller's transaction: everything but numbering its
/// feed entries, which it returns filed under their provinces.
fn push_in(
    backend: &PostgresBackend,
    tx: &mut Tx<'_>,
    account: &Account,
    input: PushInput,
    now_ms: u64,
    fields: &mut HashMap<String, i32>,
) -> Result<(PushOutcome, FeedRows), Failure> {
    push::check_claim(backend.device(), input.device, input.first_sequence)
        .map_err(batch_failure)?;
    let device = input.device;
    // One device's pushes, through whichever process, one at a time.
    tx.execute(
        "SELECT pg_advisory_xact_lock(7244, hashtext($1))",
        &[&device.to_string()],
    )?;
    let scope = check_device(tx, account, &input)?;
    let home = home_province(&scope);
    let batch = push::Batch {
        device,
        relay: input.relay,
        first_sequence: input.first_sequence,
        changes: input.changes,
    };
    let no_merges = HashMap::new();
    let push::Admission {
        held,
        resent,
        fresh,
        mut set_aside,
    } = push::admit(backend.device(), batch, &mut Held::new(tx, &no_merges))
        .map_err(batch_failure)?;
    let mut outcome = PushOutcome {
        held_through: held,
        ..PushOutcome::default()
    };
    let refused_before = match (resent.first(), resent.last()) {
        (Some(first), Some(last)) => refusals_between(tx, device, *first, *last)?,
        _ => Vec::new(),
    };
    outcome.duplicates += (resent.len() - refused_before.len()) as u32;
    outcome.held_back = refused_before;
    if fresh.is_empty() {
        return Ok((outcome, FeedRows::default()));
    }
    let stamps = push::arrival_stamps(fresh.iter().map(|(_, change)| change));
    let (first_fresh, last_fresh) = (fresh[0].0, fresh[fresh.len() - 1].0);
    // The server's clock is shared by every process: a push that must
    // re-stamp a change from the future holds it until it commits; the
    // others read it and leave it be.
    let (mut clock, clock_held) = server_clock(tx, &fresh, now_ms)?;
    let mut round = 0;
    let written = loop {
        round += 1;
        let applying: Vec<(u64, Change)> = fresh
            .iter()
            .filter(|(_, change)| !set_aside.contains_key(&change.record))
            .cloned()
            .collect();
        let mut round_clock = clock;
        let mut round_tx = tx.savepoint("round")?;
        let result = apply_fresh(
            backend,
            &mut round_tx,
            &scope,
            home,
            device,
            applying,
            now_ms,
            &mut round_clock,
            fields,
        );
        match result {
            Ok(written) => {
                round_tx.commit()?;
                clock = round_clock;
                break written;
            }
            Err(RoundFailure::Records(refusals)) => {
                round_tx.rollback()?;
                if round == push::SET_ASIDE_ROUNDS {
                    let first = refusals.into_iter().next();
                    return Err(Failure::Final(refused(
                        first.as_ref().map_or(RefusalCode::OutOfScope, |r| r.code),
                        format!(
                            "{}; nothing of this batch was applied",
                            first.map_or(String::new(), |r| r.message)
                        ),
                    )));
                }
                for refusal in refusals {
                    set_aside.entry(refusal.record.clone()).or_insert(refusal);
                }
            }
            Err(RoundFailure::Other(failure)) => return Err(failure),
        }
    };
    outcome.applied += written.applied;
    outcome.duplicates += written.duplicates;
    outcome.restamped += written.restamped;
    outcome.held_through = last_fresh;
    tx.execute(
        "INSERT INTO arrivals (device, first_sequence, last_sequence, stamps) VALUES ($1, $2, $3, $4)",
        &[&device.0, &(first_fresh as i64), &(last_fresh as i64), &stamps],
    )?;
    for (sequence, change) in &fresh {
        if let Some(refusal) = set_aside.get(&change.record) {
            tx.execute(
                "INSERT INTO refusals (device, sequence, code, message, refused_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &device.0,
                    &(*sequence as i64),
                    &refusal.code.as_str(),
                    &refusal.message,
                    &(now_ms as i64),
                ],
            )?;
            outcome.held_back.push(HeldBack {
                sequence: *sequence,
                error: refusal.code.as_str().to_owned(),
                message: refusal.message.clone(),
            });
        }
    }
    if clock_held {
        let clock = serde_json::to_string(&clock)
            .map_err(|error| BackendError::Internal(error.to_string()))?;
        tx.execute("UPDATE meta SET value = $1 WHERE key = 'clock'", &[&clock])?;
    }
    let feed = file_feed(backend, tx, written)?;
    Ok((outcome, feed))
}

/// The server's clock, held until the commit when a change of `fresh`
/// comes from the future and will take a reading of it.
fn server_clock(
    tx: &mut Tx<'_>,
    fresh: &[(u64, Change)],
    now_ms: u64,
) -> Result<(Clock, bool), Failure> {
    let read = |tx: &mut Tx<'_>, sql: &str| -> Result<Clock, Failure> {
        let text: String = tx.query_one(sql, &[])?.get(0);
        serde_json::from_str(&text)
            .map_err(|error| Failure::Final(BackendError::Storage(format!("the clock: {error}"))))
    };
    let clock = read(tx, "SELECT value FROM meta WHERE key = 'clock'")?;
    let now = clock.corrected(now_ms);
    if fresh
        .iter()
        .any(|(_, change)| is_from_the_future(&change.stamp, now))
    {
        let clock = read(tx, "SELECT value FROM meta WHERE key = 'clock' FOR UPDATE")?;
        return Ok((clock, true));
    }
    Ok((clock, false))
}

/// Feed entries filed under their provinces, not numbered yet.
#[derive(Default)]
struct FeedRows {
    provinces: Vec<i16>,
    change_provinces: Vec<i16>,
    change_seqs: Vec<i64>,
    households: Vec<Option<i64>>,
    announces: Vec<i16>,
}

impl FeedRows {
    fn extend(&mut self, other: FeedRows) {
        self.provinces.extend(other.provinces);
        self.change_provinces.extend(other.change_provinces);
        self.change_seqs.extend(other.change_seqs);
        self.households.extend(other.households);
        self.announces.extend(other.announces);
    }
}

/// Files a push's feed entries under the province each household is in
/// once the push has run (placed by it, or as stored): the same whether
/// the push commits alone or in a group.
fn file_feed(
    backend: &PostgresBackend,
    tx: &mut Tx<'_>,
    written: Written,
) -> Result<FeedRows, Failure> {
    let mut rows = FeedRows::default();
    if written.entries.is_empty() {
        return Ok(rows);
    }
    // Where each household the entries are filed under is now: placed by
    // this push, or as stored (read in one statement).
    let mut unplaced: Vec<RecordId> = written
        .entries
        .iter()
        .filter_map(|entry| match entry.filed {
            Filed::Household(household, _) if !written.placed.contains_key(&household) => {
                Some(household)
            }
            _ => None,
        })
        .collect();
    unplaced.sort_unstable();
    unplaced.dedup();
    let stored = stored_places(tx, &unplaced)?;
    let province_now = |household: &RecordId| {
        written
            .placed
            .get(household)
            .or_else(|| stored.get(household))
            .map_or(0, |place| province_of(&place.village))
    };
    for entry in &written.entries {
        let (province, household) = match entry.filed {
            Filed::Everyone => (0, None),
            Filed::NoKnownHousehold => (0, Some(0)),
            Filed::Household(household, number) => (province_now(&household), Some(number)),
        };
        rows.provinces.push(province);
        rows.change_provinces.push(entry.change_province);
        rows.change_seqs.push(entry.change_seq);
        rows.households.push(household);
        rows.announces.push(entry.announce.as_i64() as i16);
    }
    backend.require_provinces(rows.provinces.iter().copied())?;
    Ok(rows)
}

/// Numbers feed entries after everything before them committed, and
/// writes them. The feed head's row lock is held from here to the commit,
/// so a later number never commits before an earlier one.
fn number_feed(tx: &mut Tx<'_>, rows: FeedRows) -> Result<(), Failure> {
    if rows.provinces.is_empty() {
        return Ok(());
    }
    let count = rows.provinces.len() as i64;
    let last: i64 = tx
        .query_one(
            "UPDATE feed_head SET last = last + $1 RETURNING last",
            &[&count],
        )?
        .get(0);
    let seqs: Vec<i64> = (last - count + 1..=last).collect();
    tx.execute(
        "INSERT INTO feed (province, seq, change_province, change_seq, household, announce) \
         SELECT * FROM unnest($1::int2[], $2::int8[], $3::int2[], $4::int8[], $5::int8[], $6::int2[])",
        &[
            &rows.provinces,
            &seqs,
            &rows.change_provinces,
            &rows.change_seqs,
            &rows.households,
            &rows.announces,
        ],
    )?;
    Ok(())
}

/// Checks who may push this outbox and that it is signed by its device's
/// key; the scope it is checked against (the embedded store's rules).
fn check_device(tx: &mut Tx<'_>, account: &Account, input: &PushInput) -> Result<Scope, Failure> {
    let device = input.device;
    let owner = device_owner(tx, device)?;
    let carried = input.public_key.filter(|key| device_id_of(key) == device);
    let bound = owner.as_ref().map(|owner| push::Bound {
        same_account: owner.account == account.id,
        revoked: owner.revoked,
        key_matches: owner.key.map(|_| true),
    });
    let pusher = push::pusher(device, bound, input.relay, carried.is_some())
        .map_err(|(code, message)| Failure::Final(refused(code, message)))?;
    let bound_key = || {
        owner.as_ref().and_then(|owner| owner.key).ok_or_else(|| {
            Failure::Final(BackendError::Internal(format!(
                "device {device} has no bound key"
            )))
        })
    };
    let (key, scope) = match pusher {
        push::Pusher::Own => (bound_key()?, account.scope.clone()),
        push::Pusher::RelayOfBound => {
            let owner_account = owner.as_ref().map_or(account.id, |owner| owner.account);
            let row = tx.query_one(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
                &[&owner_account],
            )?;
            (bound_key()?, super::account_row(&row)?.scope)
        }
        push::Pusher::RelayOfUnknown => (
            carried.ok_or_else(|| {
                Failure::Final(BackendError::Internal("a relay without its key".into()))
            })?,
            account.scope.clone(),
        ),
    };
    if !key.verifies_run(
        device,
        input.first_sequence,
        &input.changes,
        &input.signature,
    ) {
        let (code, message) = faenban_core::push::bad_signature(device);
        return Err(refused(code, message).into());
    }
    Ok(scope)
}

/// Merges the changes of a push that are not set aside, as the core's plan
/// says, and writes the log, the states, the places and the digests; the
/// feed entries come back to be numbered at the commit.
#[allow(clippy::too_many_arguments)]
fn apply_fresh(
    backend: &PostgresBackend,
    tx: &mut Tx<'_>,
    scope: &Scope,
    home: i16,
    device: DeviceId,
    fresh: Vec<(u64, Change)>,
    now_ms: u64,
    clock: &mut Clock,
    fields: &mut HashMap<String, i32>,
) -> Result<Written, RoundFailure> {
    let mut written = Written::default();
    if fresh.is_empty() {
        return Ok(written);
    }
    let mut merged: HashMap<RecordKey, Merged> = HashMap::new();
    let checked = {
        let mut held = Held::new(tx, &merged);
        held.read_households(fresh.iter().map(|(_, change)| &change.record))?;
        push::check_scope(scope, &fresh, &mut held).map_err(plan_failure)?
    };
    lock_records(backend, tx, &fresh, home, &mut merged)?;
    // Merged in memory, in the batch's order.
    let mut logged: Vec<(RecordKey, Change)> = Vec::with_capacity(fresh.len());
    for (_, change) in fresh {
        let arrival = normalize_arrival(change, clock, backend.device(), now_ms);
        written.restamped += u32::from(arrival.restamped);
        let change = arrival.change;
        let record = merged
            .get_mut(&change.record)
            .expect("every record of the push is numbered");
        record.state.apply(change.clone());
        logged.push((change.record.clone(), change));
    }
    let mut refusals = Vec::new();
    let mut keys: Vec<&RecordKey> = merged.keys().collect();
    keys.sort_unstable();
    for key in keys {
        let state = &merged[key].state;
        let verdict = push::check_merged(scope, device, key, state, &mut Held::new(tx, &merged))
            .map_err(RoundFailure::Other)?;
        refusals.extend(verdict.err());
    }
    if !refusals.is_empty() {
        return Err(RoundFailure::Records(refusals));
    }
    let seqs = log_changes(backend, tx, &logged, &merged, fields)?;
    save_states(tx, &merged)?;
    // Filed under the household each record belongs to once merged.
    let mut numbers: HashMap<RecordId, i64> = HashMap::new();
    for ((record, _), seq) in logged.iter().zip(&seqs) {
        let Some(seq) = seq else {
            written.duplicates += 1;
            continue;
        };
        written.applied += 1;
        let household = merged_household(record, &merged[record].state);
        let filed = match push::filed_under(&record.kind, household) {
            FiledUnder::Everyone => Filed::Everyone,
            FiledUnder::NoKnownHousehold => Filed::NoKnownHousehold,
            FiledUnder::Household(household) => Filed::Household(
                household,
                household_number(tx, household, home, &merged, &mut numbers)?,
            ),
        };
        written.entries.push(FeedEntry {
            filed,
            change_province: merged[record].province,
            change_seq: *seq,
            announce: Announce::Arrival,
        });
    }
    let this_push: BTreeSet<i64> = seqs.iter().flatten().copied().collect();
    place_and_digest(
        backend,
        tx,
        &checked.to_place,
        home,
        &merged,
        &mut numbers,
        &this_push,
        &mut written,
    )?;
    for (record, left) in &checked.leaving {
        let now = merged_household(record, &merged[record].state);
        let Some(now) = push::moved_to(*left, now) else {
            continue;
        };
        let number = household_number(tx, now, home, &merged, &mut numbers)?;
        let own = &merged[record];
        for (change_province, _, change_seq) in changes_of(tx, &[(own.province, own.n)])? {
            written.entries.push(FeedEntry {
                filed: Filed::Household(now, number),
                change_province,
                change_seq,
                announce: Announce::Moved,
            });
        }
    }
    Ok(written)
}

/// The household a record belongs to as merged (a household's record
/// belongs to itself).
fn merged_household(record: &RecordKey, state: &RecordState) -> Option<RecordId> {
    if record.kind == RecordKind::Household {
        Some(record.id)
    } else {
        // Named by its id in canonical form, as every store files it.
        push::household_value_of(state)
    }
}

/// Gives every record of the push its number and home province (on first
/// sight) and locks it until the commit, then reads its state: two pushes
/// of one record, through any processes, merge one after the other.
fn lock_records(
    backend: &PostgresBackend,
    tx: &mut Tx<'_>,
    fresh: &[(u64, Change)],
    home: i16,
    merged: &mut HashMap<RecordKey, Merged>,
) -> Result<(), RoundFailure> {
    let mut keys: Vec<&RecordKey> = fresh.iter().map(|(_, change)| &change.record).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut numbered: HashMap<RecordKey, (i64, i16)> = HashMap::new();
    let select = "SELECT rn.n, rn.kind, rn.id, rn.province FROM record_numbers rn \
                  JOIN unnest($1::text[], $2::uuid[]) AS k(kind, id) \
                  ON rn.kind = k.kind AND rn.id = k.id ORDER BY rn.n FOR NO KEY UPDATE OF rn";
    let read = |tx: &mut Tx<'_>,
                keys: &[&RecordKey],
                numbered: &mut HashMap<RecordKey, (i64, i16)>|
     -> Result<(), RoundFailure> {
        let kinds: Vec<&str> = keys.iter().map(|key| key.kind.as_str()).collect();
        let ids: Vec<Uuid> = keys.iter().map(|key| key.id.0).collect();
        for row in tx.query(select, &[&kinds, &ids])? {
            let key = RecordKey::new(RecordKind::from_name(row.get(1)), row.get(2));
            numbered.insert(key, (row.get(0), row.get(3)));
        }
        Ok(())
    };
    read(tx, &keys, &mut numbered)?;
    let missing: Vec<&RecordKey> = keys
        .iter()
        .copied()
        .filter(|key| !numbered.contains_key(*key))
        .collect();
    if !missing.is_empty() {
        let provinces = new_provinces(tx, fresh, &missing, home, &numbered)?;
        let kinds: Vec<&str> = missing.iter().map(|key| key.kind.as_str()).collect();
        let ids: Vec<Uuid> = missing.iter().map(|key| key.id.0).collect();
        let rows = tx.query(
            "INSERT INTO record_numbers (kind, id, province) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::int2[]) \
             ON CONFLICT (kind, id) DO NOTHING RETURNING n, kind, id, province",
            &[&kinds, &ids, &provinces],
        )?;
        for row in rows {
            let key = RecordKey::new(RecordKind::from_name(row.get(1)), row.get(2));
            numbered.insert(key, (row.get(0), row.get(3)));
        }
        // Numbered meanwhile by a push that has committed since.
        let raced: Vec<&RecordKey> = missing
            .iter()
            .copied()
            .filter(|key| !numbered.contains_key(*key))
            .collect();
        if !raced.is_empty() {
            read(tx, &raced, &mut numbered)?;
        }
    }
    backend.require_provinces(numbered.values().map(|(_, province)| *province))?;
    let mut by_province: HashMap<i16, Vec<i64>> = HashMap::new();
    for (n, province) in numbered.values() {
        by_province.entry(*province).or_default().push(*n);
    }
    let mut states: HashMap<i64, RecordState> = HashMap::new();
    for (province, numbers) in by_province {
        for row in tx.query(
            "SELECT n, state FROM records WHERE province = $1 AND n = ANY($2)",
            &[&province, &numbers],
        )? {
            states.insert(row.get(0), decode_state(row.get(1))?);
        }
    }
    for key in keys {
        let Some((n, province)) = numbered.get(key).copied() else {
            return Err(Failure::Again(BackendError::Busy).into());
        };
        let state = states.remove(&n).unwrap_or_default();
        merged.insert(
            key.clone(),
            Merged {
                n,
                province,
                household_before: faenban_core::report::household_of(&state),
                state,
            },
        );
    }
    Ok(())
}

/// The home province of records the server has not seen: a household's
/// from the village the batch gives it, another record's from its
/// household's; else the account's own province, else none (0).
fn new_provinces(
    tx: &mut Tx<'_>,
    fresh: &[(u64, Change)],
    missing: &[&RecordKey],
    home: i16,
    numbered: &HashMap<RecordKey, (i64, i16)>,
) -> Result<Vec<i16>, RoundFailure> {
    // The latest value the batch gives each record's `village` and
    // `household`.
    let mut latest: HashMap<(&RecordKey, &str), (&faenban_core::Stamp, &str)> = HashMap::new();
    for (_, change) in fresh {
        let field = change.field.as_str();
        if field != "village" && field != "household" {
            continue;
        }
        let Some(text) = change.value.as_str() else {
            continue;
        };
        let slot = latest
            .entry((&change.record, field))
            .or_insert((&change.stamp, text));
        if change.stamp >= *slot.0 {
            *slot = (&change.stamp, text);
        }
    }
    let village_province = |household: &RecordKey| {
        latest
            .get(&(household, "village"))
            .map(|(_, village)| province_of(village))
            .filter(|province| *province != 0)
    };
    let mut provinces = Vec::with_capacity(missing.len());
    for key in missing {
        let province = if key.kind == RecordKind::Household {
            village_province(key)
        } else {
            match latest
                .get(&(*key, "household"))
                .and_then(|(_, id)| Uuid::parse_str(id).ok())
            {
                Some(household) => {
                    let household = RecordKey::new(RecordKind::Household, household);
                    match numbered.get(&household) {
                        Some((_, province)) => Some(*province),
                        None => match village_province(&household) {
                            Some(province) => Some(province),
                            None => tx
                                .query_opt(
                                    "SELECT province FROM record_numbers WHERE kind = 'household' AND id = $1",
                                    &[&household.id.0],
                                )?
                                .map(|row| row.get::<_, i16>(0)),
                        },
                    }
                }
                None => None,
            }
        };
        provinces.push(province.filter(|p| *p != 0).unwrap_or(home));
    }
    Ok(provinces)
}

/// Appends the push's changes to the log; each change's log number, or
/// `None` for one the log already held under its stamp (refused if the log
/// holds other content under it: a stamp is a change's identity).
fn log_changes(
    backend: &PostgresBackend,
    tx: &mut Tx<'_>,
    logged: &[(RecordKey, Change)],
    merged: &HashMap<RecordKey, Merged>,
    fields: &mut HashMap<String, i32>,
) -> Result<Vec<Option<i64>>, RoundFailure> {
    let mut provinces = Vec::with_capacity(logged.len());
    let mut devices = Vec::with_capacity(logged.len());
    let mut walls = Vec::with_capacity(logged.len());
    let mut counters = Vec::with_capacity(logged.len());
    let mut records = Vec::with_capacity(logged.len());
    let mut field_numbers = Vec::with_capacity(logged.len());
    let mut bodies = Vec::with_capacity(logged.len());
    for (record, change) in logged {
        let own = &merged[record];
        provinces.push(own.province);
        devices.push(change.stamp.device.0);
        walls.push(change.stamp.hlc.wall_ms as i64);
        counters.push(i64::from(change.stamp.hlc.counter));
        records.push(own.n);
        let field = match fields.get(change.field.as_str()) {
            Some(number) => *number,
            None => {
                let number = backend.field_number(tx, change.field.as_str())?;
                fields.insert(change.field.as_str().to_owned(), number);
                number
            }
        };
        field_numbers.push(field);
        bodies.push(faenban_core::codec::encode_change_body(change));
    }
    let rows = tx.query(
        "INSERT INTO changes (province, seq, device, wall_ms, counter, record, field, body) \
         SELECT p, nextval('change_numbers'), d, w, c, r, f, b FROM \
         unnest($1::int2[], $2::uuid[], $3::int8[], $4::int8[], $5::int8[], $6::int4[], $7::bytea[]) \
         WITH ORDINALITY AS t(p, d, w, c, r, f, b, i) ORDER BY i \
         ON CONFLICT (device, wall_ms, counter, province) DO NOTHING \
         RETURNING seq, device, wall_ms, counter",
        &[
            &provinces,
            &devices,
            &walls,
            &counters,
            &records,
            &field_numbers,
            &bodies,
        ],
    )?;
    let mut inserted: HashMap<(Uuid, i64, i64), i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        inserted.insert((row.get(1), row.get(2), row.get(3)), row.get(0));
    }
    let mut seqs = Vec::with_capacity(logged.len());
    for (index, (_, change)) in logged.iter().enumerate() {
        let stamp = (devices[index], walls[index], counters[index]);
        // The first change under a stamp takes its log number.
        if let Some(seq) = inserted.remove(&stamp) {
            seqs.push(Some(seq));
            continue;
        }
        let row = tx.query_one(
            "SELECT body FROM changes WHERE province = $1 AND device = $2 AND wall_ms = $3 AND counter = $4",
            &[&provinces[index], &stamp.0, &stamp.1, &stamp.2],
        )?;
        let held = faenban_core::codec::decode_change(
            change.stamp,
            change.record.clone(),
            change.field.clone(),
            row.get(0),
        )
        .ok();
        let same_field: bool = tx
            .query_one(
                "SELECT field = $5 AND record = $6 FROM changes WHERE province = $1 AND device = $2 AND wall_ms = $3 AND counter = $4",
                &[&provinces[index], &stamp.0, &stamp.1, &stamp.2, &field_numbers[index], &records[index]],
            )?
            .get(0);
        if !same_field || held.as_ref() != Some(change) {
            return Err(Failure::Final(refused(
                RefusalCode::StampReused,
                format!(
                    "the server already holds a different change under the stamp of a change to {} {} (field {}); nothing of this batch was applied",
                    change.record.kind, change.record.id, change.field
                ),
            ))
            .into());
        }
        seqs.push(None);
    }
    Ok(seqs)
}

/// Writes the merged states.
fn save_states(tx: &mut Tx<'_>, merged: &HashMap<RecordKey, Merged>) -> Result<(), RoundFailure> {
    let mut provinces = Vec::with_capacity(merged.len());
    let mut numbers = Vec::with_capacity(merged.len());
    let mut states = Vec::with_capacity(merged.len());
    let mut households: Vec<Option<Uuid>> = Vec::with_capacity(merged.len());
    for record in merged.values() {
        provinces.push(record.province);
        numbers.push(record.n);
        states.push(faenban_core::codec::encode_state(&record.state));
        households.push(
            record
                .state
                .shown("household")
                .and_then(Value::as_str)
                .and_then(|id| Uuid::parse_str(id).ok()),
        );
    }
    tx.execute(
        "INSERT INTO records (province, n, state, household) \
         SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[], $4::uuid[]) \
         ON CONFLICT (n, province) DO UPDATE SET state = excluded.state, household = excluded.household",
        &[&provinces, &numbers, &states, &households],
    )?;
    Ok(())
}

/// The record number of a household (given on first sight: a member may
/// name a household the server has not seen yet).
fn household_number(
    tx: &mut Tx<'_>,
    household: RecordId,
    home: i16,
    merged: &HashMap<RecordKey, Merged>,
    numbers: &mut HashMap<RecordId, i64>,
) -> Result<i64, Failure> {
    if let Some(number) = numbers.get(&household) {
        return Ok(*number);
    }
    let key = RecordKey::new(RecordKind::Household, household.0);
    let number = match merged.get(&key) {
        Some(own) => own.n,
        None => {
            tx.execute(
                "INSERT INTO record_numbers (kind, id, province) VALUES ('household', $1, $2) \
                 ON CONFLICT (kind, id) DO NOTHING",
                &[&household.0, &home],
            )?;
            tx.query_one(
                "SELECT n FROM record_numbers WHERE kind = 'household' AND id = $1",
                &[&household.0],
            )?
            .get(0)
        }
    };
    numbers.insert(household, number);
    Ok(number)
}

/// Where a household was last placed.
fn stored_place(tx: &mut Tx<'_>, household: RecordId) -> Result<Option<HouseholdPlace>, Failure> {
    Ok(tx
        .query_opt(
            "SELECT p.village, p.deprived FROM record_numbers rn \
             JOIN places p ON p.household = rn.id AND p.province = rn.province \
             WHERE rn.kind = 'household' AND rn.id = $1",
            &[&household.0],
        )?
        .map(|row| HouseholdPlace {
            village: row.get(0),
            deprived: row.get::<_, i16>(1) as u8,
        }))
}

/// What the database holds of the households a push touched, read in a
/// few statements: each household's number, home province and state, and
/// every record that names it.
#[derive(Default)]
struct Households {
    own: HashMap<RecordId, (i64, i16, Option<RecordState>)>,
    related: HashMap<RecordId, Vec<(RecordKey, i16, i64, RecordState)>>,
}

impl Households {
    fn read(
        tx: &mut Tx<'_>,
        households: &BTreeSet<RecordId>,
        merged: &HashMap<RecordKey, Merged>,
    ) -> Result<Households, Failure> {
        let mut read = Households::default();
        if households.is_empty() {
            return Ok(read);
        }
        let ids: Vec<Uuid> = households.iter().map(|household| household.0).collect();
        for row in tx.query(
            "SELECT rn.id, rn.n, rn.province, r.state FROM record_numbers rn \
             LEFT JOIN records r ON r.n = rn.n AND r.province = rn.province \
             WHERE rn.kind = 'household' AND rn.id = ANY($1)",
            &[&ids],
        )? {
            let household = RecordId(row.get(0));
            let key = RecordKey::new(RecordKind::Household, household.0);
            let state = match merged.get(&key) {
                Some(own) => Some(own.state.clone()),
                None => row
                    .get::<_, Option<&[u8]>>(3)
                    .map(decode_state)
                    .transpose()?,
            };
            read.own.insert(household, (row.get(1), row.get(2), state));
        }
        // Read after the push wrote its states: what every record is now.
        for row in tx.query(
            "SELECT r.household, rn.kind, rn.id, r.province, r.n, r.state FROM records r \
             JOIN record_numbers rn ON rn.n = r.n WHERE r.household = ANY($1)",
            &[&ids],
        )? {
            let key = RecordKey::new(RecordKind::from_name(row.get(1)), row.get(2));
            read.related.entry(RecordId(row.get(0))).or_default().push((
                key,
                row.get(3),
                row.get(4),
                decode_state(row.get(5))?,
            ));
        }
        Ok(read)
    }
}

/// The places the database holds for these households.
fn stored_places(
    tx: &mut Tx<'_>,
    households: &[RecordId],
) -> Result<HashMap<RecordId, HouseholdPlace>, Failure> {
    if households.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = households.iter().map(|household| household.0).collect();
    Ok(tx
        // Each place is in its household's home province: read there alone.
        .query(
            "SELECT p.household, p.village, p.deprived FROM record_numbers rn \
             JOIN places p ON p.household = rn.id AND p.province = rn.province \
             WHERE rn.kind = 'household' AND rn.id = ANY($1)",
            &[&ids],
        )?
        .iter()
        .map(|row| {
            (
                RecordId(row.get(0)),
                HouseholdPlace {
                    village: row.get(1),
                    deprived: row.get::<_, i16>(2) as u8,
                },
            )
        })
        .collect())
}

/// The log entries of these records, in log order, with their record.
fn changes_of(tx: &mut Tx<'_>, records: &[(i16, i64)]) -> Result<Vec<(i16, i64, i64)>, Failure> {
    let mut by_province: HashMap<i16, Vec<i64>> = HashMap::new();
    for (province, n) in records {
        by_province.entry(*province).or_default().push(*n);
    }
    let mut changes = Vec::new();
    for (province, numbers) in by_province {
        // Read from the province's partition by its name: a partition's
        // `province = $1` is true of every row, but until the partition has
        // statistics the planner takes it for a selective filter and scans
        // the whole primary key for it (18–30 ms a call instead of 0.5 in
        // a young province). Every other read by province here leads with
        // a column of its own index, so this is the one that needs it.
        for row in tx.query(
            &format!("SELECT record, seq FROM changes_p{province} WHERE record = ANY($1)"),
            &[&numbers],
        )? {
            changes.push((province, row.get::<_, i64>(0), row.get::<_, i64>(1)));
        }
    }
    changes.sort_unstable_by_key(|(_, _, seq)| *seq);
    Ok(changes)
}

/// Places the households the push may have moved ([`push::place_of`]) and
/// announces their records' changes as [`push::placement`] says; then
/// makes again the report digest of every household the push changed a
/// record of (and of any a record left).
#[allow(clippy::too_many_arguments)]
fn place_and_digest(
    backend: &PostgresBackend,
    tx: &mut Tx<'_>,
    to_place: &BTreeSet<RecordId>,
    home: i16,
    merged: &HashMap<RecordKey, Merged>,
    numbers: &mut HashMap<RecordId, i64>,
    this_push: &BTreeSet<i64>,
    written: &mut Written,
) -> Result<(), Failure> {
    let mut due: BTreeSet<RecordId> = to_place.clone();
    for (key, record) in merged {
        if key.kind == RecordKind::Household {
            due.insert(key.id);
        }
        due.extend(record.household_before);
        due.extend(faenban_core::report::household_of(&record.state));
    }
    let read = Households::read(tx, &due, merged)?;
    let placing: Vec<RecordId> = to_place.iter().copied().collect();
    let before = stored_places(tx, &placing)?;
    let mut upserts: (Vec<i16>, Vec<Uuid>, Vec<String>, Vec<i16>) = Default::default();
    let mut announcing: Vec<(RecordId, Announce, bool)> = Vec::new();
    for household in &placing {
        let Some((_, province, Some(state))) = read.own.get(household) else {
            continue;
        };
        let visits = read
            .related
            .get(household)
            .into_iter()
            .flatten()
            .filter(|(key, ..)| key.kind == RecordKind::Visit)
            .map(|(key, _, _, state)| (key.clone(), state.clone()));
        let place = push::place_of(*household, state, visits);
        let placement = push::placement(before.get(household), &place);
        if placement == push::Placement::Unchanged {
            continue;
        }
        backend.require_provinces([*province, province_of(&place.village)])?;
        upserts.0.push(*province);
        upserts.1.push(household.0);
        upserts.2.push(place.village.clone());
        upserts.3.push(i16::from(place.deprived));
        written.placed.insert(*household, place);
        match placement {
            push::Placement::First if !this_push.is_empty() => {
                announcing.push((*household, Announce::Moved, true));
            }
            push::Placement::AnnounceAll(announce) => {
                announcing.push((*household, announce, false));
            }
            _ => {}
        }
    }
    if !upserts.0.is_empty() {
        tx.execute(
            "INSERT INTO places (province, household, village, deprived) \
             SELECT * FROM unnest($1::int2[], $2::uuid[], $3::text[], $4::int2[]) \
             ON CONFLICT (household, province) DO UPDATE SET village = excluded.village, \
             deprived = excluded.deprived",
            &[&upserts.0, &upserts.1, &upserts.2, &upserts.3],
        )?;
    }
    // Every change of every record of the households announced, at once.
    let mut records: Vec<(i16, i64)> = Vec::new();
    let mut household_of_record: HashMap<i64, RecordId> = HashMap::new();
    for (household, ..) in &announcing {
        if let Some((n, province, _)) = read.own.get(household) {
            records.push((*province, *n));
            household_of_record.insert(*n, *household);
        }
        for (_, province, n, _) in read.related.get(household).into_iter().flatten() {
            records.push((*province, *n));
            household_of_record.insert(*n, *household);
        }
    }
    let logged = changes_of(tx, &records)?;
    for (household, announce, first) in announcing {
        let number = household_number(tx, household, home, merged, numbers)?;
        for (change_province, record, change_seq) in &logged {
            if household_of_record.get(record) != Some(&household) {
                continue;
            }
            // A first placement announces what arrived before this push;
            // this push's own changes are filed as they arrive.
            if first && this_push.contains(change_seq) {
                continue;
            }
            written.entries.push(FeedEntry {
                filed: Filed::Household(household, number),
                change_province: *change_province,
                change_seq: *change_seq,
                announce,
            });
        }
    }
    // The report's digests.
    let mut kept: (Vec<i16>, Vec<Uuid>, Vec<String>, Vec<String>) = Default::default();
    let mut gone: (Vec<i16>, Vec<Uuid>) = Default::default();
    for household in &due {
        let Some((_, province, own)) = read.own.get(household) else {
            continue;
        };
        backend.require_provinces([*province])?;
        let key = RecordKey::new(RecordKind::Household, household.0);
        let digest = own.as_ref().and_then(|own| {
            let related = read.related.get(household).into_iter().flatten();
            faenban_core::report::digest_household(
                (&key, own),
                related.map(|(key, _, _, state)| (key, state)),
                super::catalogues(),
            )
        });
        match digest {
            Some(digest) => {
                kept.0.push(*province);
                kept.1.push(household.0);
                kept.2.push(digest.village.clone());
                kept.3.push(
                    serde_json::to_string(&digest)
                        .map_err(|error| BackendError::Internal(error.to_string()))?,
                );
            }
            None => {
                gone.0.push(*province);
                gone.1.push(household.0);
            }
        }
    }
    if !kept.0.is_empty() {
        tx.execute(
            "INSERT INTO report_digests (province, household, village, digest) \
             SELECT * FROM unnest($1::int2[], $2::uuid[], $3::text[], $4::text[]) \
             ON CONFLICT (household, province) \
             DO UPDATE SET village = excluded.village, digest = excluded.digest",
            &[&kept.0, &kept.1, &kept.2, &kept.3],
        )?;
    }
    if !gone.0.is_empty() {
        tx.execute(
            "DELETE FROM report_digests d USING unnest($1::int2[], $2::uuid[]) AS g(p, h) \
             WHERE d.province = g.p AND d.household = g.h",
            &[&gone.0, &gone.1],
        )?;
    }
    Ok(())
}

/// The server's holdings as one push sees them: what it has merged so far
/// included.
struct Held<'a, 't> {
    tx: &'a mut Tx<'t>,
    merged: &'a HashMap<RecordKey, Merged>,
    /// The last run of arrivals read.
    run: Option<push::KeptRun>,
    /// The stored household of records read ahead ([`Held::read_households`]);
    /// `None` for a record the server does not hold or that names none.
    households: HashMap<RecordKey, Option<RecordId>>,
}

impl<'a, 't> Held<'a, 't> {
    fn new(tx: &'a mut Tx<'t>, merged: &'a HashMap<RecordKey, Merged>) -> Self {
        Held {
            tx,
            merged,
            run: None,
            households: HashMap::new(),
        }
    }

    /// Reads the stored household of each of these records other than
    /// households, in one statement: the scope check asks for each in turn,
    /// and a batch names a few dozen.
    fn read_households<'k>(
        &mut self,
        records: impl IntoIterator<Item = &'k RecordKey>,
    ) -> Result<(), Failure> {
        let mut kinds: Vec<&str> = Vec::new();
        let mut ids: Vec<Uuid> = Vec::new();
        for record in records {
            if record.kind == RecordKind::Household
                || self.merged.contains_key(record)
                || self.households.contains_key(record)
            {
                continue;
            }
            self.households.insert(record.clone(), None);
            kinds.push(record.kind.as_str());
            ids.push(record.id.0);
        }
        if ids.is_empty() {
            return Ok(());
        }
        for row in self.tx.query(
            "SELECT rn.kind, rn.id, r.household \
             FROM unnest($1::text[], $2::uuid[]) AS k(kind, id) \
             JOIN record_numbers rn ON rn.kind = k.kind AND rn.id = k.id \
             JOIN records r ON r.n = rn.n AND r.province = rn.province",
            &[&kinds, &ids],
        )? {
            let record = RecordKey::new(RecordKind::from_name(row.get(0)), row.get(1));
            self.households
                .insert(record, row.get::<_, Option<Uuid>>(2).map(RecordId));
        }
        Ok(())
    }
}

impl push::Holdings for Held<'_, '_> {
    type Error = Failure;

    fn held_through(&mut self, device: DeviceId) -> Result<u64, Failure> {
        Ok(super::held_through(self.tx, device)?)
    }

    fn held_arrival(
        &mut self,
        device: DeviceId,
        sequence: u64,
    ) -> Result<Option<push::HeldArrival>, Failure> {
        let covers = |run: &push::KeptRun| run.first() <= sequence && sequence <= run.last();
        if !self.run.as_ref().is_some_and(covers) {
            self.run = self
                .tx
                .query_opt(
                    "SELECT first_sequence, last_sequence, stamps FROM arrivals \
                     WHERE device = $1 AND first_sequence <= $2 \
                     ORDER BY first_sequence DESC LIMIT 1",
                    &[&device.0, &(sequence as i64)],
                )?
                .and_then(|row| {
                    push::KeptRun::read(
                        row.get::<_, i64>(0) as u64,
                        row.get::<_, i64>(1) as u64,
                        row.get::<_, &[u8]>(2),
                    )
                });
        }
        Ok(self.run.as_ref().and_then(|run| run.get(sequence)))
    }

    fn household_of(&mut self, record: &RecordKey) -> Result<Option<RecordId>, Failure> {
        if record.kind == RecordKind::Household {
            return Ok(Some(record.id));
        }
        if let Some(own) = self.merged.get(record) {
            return Ok(push::household_value_of(&own.state));
        }
        if let Some(household) = self.households.get(record) {
            return Ok(*household);
        }
        let row = self.tx.query_opt(
            "SELECT r.household FROM record_numbers rn \
             JOIN records r ON r.n = rn.n AND r.province = rn.province \
             WHERE rn.kind = $1 AND rn.id = $2",
            &[&record.kind.as_str(), &record.id.0],
        )?;
        Ok(row
            .and_then(|row| row.get::<_, Option<Uuid>>(0))
            .map(RecordId))
    }

    fn place(&mut self, household: RecordId) -> Result<Option<HouseholdPlace>, Failure> {
        stored_place(self.tx, household)
    }

    fn merged_village(&mut self, household: RecordId) -> Result<Option<String>, Failure> {
        let key = RecordKey::new(RecordKind::Household, household.0);
        let state = match self.merged.get(&key) {
            Some(own) => Some(own.state.clone()),
            None => stored_state(self.tx, &key)?,
        };
        Ok(state.and_then(|state| {
            state
                .shown("village")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }))
    }

    fn household_exists(&mut self, household: RecordId) -> Result<bool, Failure> {
        Ok(self
            .tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM record_numbers rn \
                 JOIN records r ON r.n = rn.n AND r.province = rn.province \
                 WHERE rn.kind = 'household' AND rn.id = $1)",
                &[&household.0],
            )?
            .get(0))
    }
}
