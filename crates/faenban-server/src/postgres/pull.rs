//! A pull on PostgreSQL: one page of the feed read from one snapshot, from
//! the partitions of the scope's provinces, filtered by the core's
//! [`push::reads_entry`].

use std::collections::HashMap;

use faenban_core::push::{self, Announce};
use faenban_core::sync::{ChangeSetBuilder, DeviceName, HouseholdPlace, Scope};
use faenban_core::{DeviceId, Hlc, RecordId, RecordKey, RecordKind, RefusalCode, Stamp};
use faenban_store::server::{PulledPage, MAX_PAGE_BYTES};
use uuid::Uuid;

use super::pool::{Connection, Tx};
use super::{province_of, refused, Failure, PostgresBackend};
use crate::backend::BackendError;

/// How many feed rows one page of a scoped pull may read past.
const SCAN_PER_PAGE: i64 = 50_000;

/// Bytes a change's fixed columns count for against [`MAX_PAGE_BYTES`].
const COLUMN_BYTES: usize = 100;

pub(super) fn pull(
    backend: &PostgresBackend,
    connection: &mut Connection<'_>,
    scope: &Scope,
    since: u64,
    check: Option<&str>,
    limit: usize,
) -> Result<PulledPage, Failure> {
    let mut tx = connection.snapshot()?;
    tx.batch_execute(super::INDEX_LOOKUPS_ONLY)?;
    tx.batch_execute(super::PLANNED_FOR_EACH_PAGE)?;
    // Every entry numbered up to the head has committed (pushes number
    // their entries under the head's lock, last), so this snapshot holds
    // the whole feed through `last` and nothing after it.
    let last: i64 = tx.query_one("SELECT last FROM feed_head", &[])?.get(0);
    let last = last as u64;
    if since > last {
        return Err(Failure::Final(refused(
            RefusalCode::CursorAhead,
            format!(
                "this server's changes end at {last}, before the laptop's cursor {since}; pull again from 0"
            ),
        )));
    }
    if let Some(check) = check.filter(|_| since > 0) {
        if fingerprint(&mut tx, since)?.as_deref() != Some(check) {
            return Err(Failure::Final(refused(
                RefusalCode::CursorAhead,
                format!(
                    "entry {since} of this server's changes is not the one the laptop pulled last; pull again from 0"
                ),
            )));
        }
    }
    let scan = if scope.is_everything() {
        limit as i64
    } else {
        SCAN_PER_PAGE.max(limit as i64)
    };
    // A chunk's entries with their changes; what the records and households
    // they name are is read once for each (below): a record's entries come
    // in runs, and a join in the statement looked each up again for every
    // entry unless the planner chose to memoize it.
    const COLUMNS: &str = "SELECT f.seq, f.announce, f.household, c.province, c.record, \
         c.wall_ms, c.counter, c.device, c.field, c.body \
         FROM feed f JOIN changes c ON c.province = f.change_province AND c.seq = f.change_seq";
    let narrow = if scope.is_everything() {
        None
    } else {
        households_in_scope(&mut tx, scope)?
    };
    // The scope's provinces, and province 0: entries for everyone and of no
    // known household. A household in scope is in one of these provinces,
    // so its entries are filed there.
    let mut provinces: Vec<i16> = scope.areas.iter().map(|area| province_of(area)).collect();
    provinces.push(0);
    provinces.sort_unstable();
    provinces.dedup();
    // Every statement takes the same four parameters.
    let filter = if scope.is_everything() {
        "$3::int8[] IS NOT NULL AND $4::int2[] IS NOT NULL"
    } else if narrow.is_some() {
        // Few households: their entries by index, and those for everyone.
        "f.province = ANY($4) AND (f.household = ANY($3) OR (f.household IS NULL AND f.province = 0))"
    } else {
        "f.province = ANY($4) AND $3::int8[] IS NOT NULL"
    };
    let households = narrow.unwrap_or_default();
    let statement = format!("{COLUMNS} WHERE {filter} AND f.seq > $1 ORDER BY f.seq LIMIT $2");
    // Read a chunk at a time, so that a page that fills early reads no
    // further.
    let chunk = (limit as i64).clamp(1, 5_000);
    let mut changes = ChangeSetBuilder::new();
    let mut taken = 0;
    let mut next = since;
    let mut bytes = 0;
    let mut full = false;
    let mut scanned = 0;
    let scanned_all = loop {
        let after = i64::try_from(next).unwrap_or(i64::MAX);
        let rows = tx.query(&statement, &[&after, &chunk, &households, &provinces])?;
        scanned += rows.len() as i64;
        let named = Named::read(&mut tx, &rows, !scope.is_everything())?;
        for row in &rows {
            let seq = row.get::<_, i64>(0) as u64;
            next = seq;
            let Some(announce) = Announce::from_i64(i64::from(row.get::<_, i16>(1))) else {
                continue;
            };
            let (filed, place) = match row.get::<_, Option<i64>>(2) {
                None => (push::FiledUnder::Everyone, None),
                Some(0) => (push::FiledUnder::NoKnownHousehold, None),
                Some(number) => match named.households.get(&number) {
                    Some((household, place)) => (
                        push::FiledUnder::Household(RecordId(*household)),
                        place.as_ref(),
                    ),
                    None => (push::FiledUnder::NoKnownHousehold, None),
                },
            };
            let record: i64 = row.get(4);
            let Some((kind, id, belongs_to)) = named.records.get(&record) else {
                return Err(BackendError::Storage(format!(
                    "a logged change of record {record}, which has no number"
                ))
                .into());
            };
            let record_now = if *kind == RecordKind::Household {
                Some(RecordId(*id))
            } else {
                belongs_to.map(RecordId)
            };
            if push::reads_entry(scope, announce, filed, place, record_now) {
                let body: &[u8] = row.get(9);
                bytes += COLUMN_BYTES + body.len();
                let stamp = Stamp::new(
                    Hlc {
                        wall_ms: row.get::<_, i64>(5) as u64,
                        counter: row.get::<_, i64>(6) as u32,
                    },
                    DeviceId(row.get(7)),
                );
                let field = backend.field_name(&mut tx, row.get(8))?;
                let change = faenban_core::codec::decode_change(
                    stamp,
                    RecordKey::new(kind.clone(), *id),
                    field.into(),
                    body,
                )
                .map_err(|error| BackendError::Storage(format!("a logged change: {error}")))?;
                changes.push(&change);
                taken += 1;
                if taken >= limit || bytes >= MAX_PAGE_BYTES {
                    full = true;
                    break;
                }
            }
        }
        if full {
            break false;
        }
        if (rows.len() as i64) < chunk {
            break true;
        }
        if scanned >= scan {
            break false;
        }
    };
    let more = if full || !scanned_all {
        last > next
    } else {
        // Every entry of these partitions through the head was read.
        next = last.max(since);
        false
    };
    let changes = changes.finish();
    let devices = device_names(&mut tx, &changes.devices)?;
    let check = fingerprint(&mut tx, next)?;
    tx.commit()?;
    Ok(PulledPage {
        devices,
        changes,
        next,
        more,
        check,
    })
}

/// What the entries of a chunk name: each record's kind, id and (for a
/// scoped account) the household it belongs to now; each household's id and
/// place.
struct Named {
    records: HashMap<i64, (RecordKind, Uuid, Option<Uuid>)>,
    households: HashMap<i64, (Uuid, Option<HouseholdPlace>)>,
}

impl Named {
    /// Reads them in two statements, each record and household once.
    fn read(tx: &mut Tx<'_>, rows: &[postgres::Row], scoped: bool) -> Result<Named, Failure> {
        let mut records: Vec<(i64, i16)> =
            rows.iter().map(|row| (row.get(4), row.get(3))).collect();
        records.sort_unstable();
        records.dedup();
        let (numbers, provinces): (Vec<i64>, Vec<i16>) = records.into_iter().unzip();
        let statement = if scoped {
            "SELECT rn.n, rn.kind, rn.id, r.household \
             FROM unnest($1::int8[], $2::int2[]) AS k(n, province) \
             JOIN record_numbers rn ON rn.n = k.n \
             LEFT JOIN records r ON r.n = k.n AND r.province = k.province"
        } else {
            "SELECT rn.n, rn.kind, rn.id, NULL::uuid \
             FROM unnest($1::int8[], $2::int2[]) AS k(n, province) \
             JOIN record_numbers rn ON rn.n = k.n"
        };
        let records = tx
            .query(statement, &[&numbers, &provinces])?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    (RecordKind::from_name(row.get(1)), row.get(2), row.get(3)),
                )
            })
            .collect();
        let mut households = HashMap::new();
        if scoped {
            let mut numbers: Vec<i64> = rows
                .iter()
                .filter_map(|row| row.get::<_, Option<i64>>(2))
                .filter(|number| *number != 0)
                .collect();
            numbers.sort_unstable();
            numbers.dedup();
            for row in tx.query(
                "SELECT fh.n, fh.id, p.village, p.deprived \
                 FROM unnest($1::int8[]) AS k(n) \
                 JOIN record_numbers fh ON fh.n = k.n \
                 LEFT JOIN places p ON p.household = fh.id AND p.province = fh.province",
                &[&numbers],
            )? {
                let place = row
                    .get::<_, Option<String>>(2)
                    .map(|village| HouseholdPlace {
                        village,
                        deprived: row.get::<_, Option<i16>>(3).unwrap_or(0) as u8,
                    });
                households.insert(row.get(0), (row.get(1), place));
            }
        }
        Ok(Named {
            records,
            households,
        })
    }
}

/// Above this many households in scope, a pull reads its provinces' feed
/// in order and filters it; below, it reads its households' entries by
/// index.
const INDEXED_PULL_HOUSEHOLDS: usize = 5_000;

/// The record numbers of the households an area-scoped account may read,
/// if there are few enough of them to read by index.
fn households_in_scope(tx: &mut Tx<'_>, scope: &Scope) -> Result<Option<Vec<i64>>, Failure> {
    // Counted first, without the join to the record numbers: a province's
    // team has far more households than are read by index, and counting a
    // village index's entries costs a fifth of numbering them.
    let cap = INDEXED_PULL_HOUSEHOLDS as i64 * 4;
    let mut placed = 0;
    for area in &scope.areas {
        placed += tx
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM places p \
                 WHERE p.village LIKE $1 || '%' LIMIT $2) AS up_to_cap",
                &[area, &cap],
            )?
            .get::<_, i64>(0);
        if placed >= cap {
            return Ok(None);
        }
    }
    let mut households = Vec::new();
    for area in &scope.areas {
        let rows = tx.query(
            "SELECT rn.n, p.village, p.deprived FROM places p \
             JOIN record_numbers rn ON rn.kind = 'household' AND rn.id = p.household \
             WHERE p.village LIKE $1 || '%' LIMIT $2",
            &[area, &cap],
        )?;
        for row in rows {
            let place = HouseholdPlace {
                village: row.get(1),
                deprived: row.get::<_, i16>(2) as u8,
            };
            if scope.may_read(Some(&place)) {
                households.push(row.get::<_, i64>(0));
                if households.len() > INDEXED_PULL_HOUSEHOLDS {
                    return Ok(None);
                }
            }
        }
    }
    households.sort_unstable();
    households.dedup();
    Ok(Some(households))
}

/// What identifies the feed entry at `seq`: the stamp of its change (the
/// embedded store's form, so that a moved server's laptops keep their
/// cursors).
fn fingerprint(tx: &mut Tx<'_>, seq: u64) -> Result<Option<String>, Failure> {
    if seq == 0 {
        return Ok(None);
    }
    let row = tx.query_opt(
        "SELECT c.wall_ms, c.counter, c.device FROM feed f \
             JOIN changes c ON c.province = f.change_province AND c.seq = f.change_seq \
             WHERE f.seq = $1",
        &[&(seq as i64)],
    )?;
    Ok(row.map(|row| {
        format!(
            "{}.{}.{}",
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, Uuid>(2)
        )
    }))
}

/// The names of those of `devices` bound to an account, and their
/// accounts'.
fn device_names(tx: &mut Tx<'_>, devices: &[DeviceId]) -> Result<Vec<DeviceName>, Failure> {
    let ids: Vec<Uuid> = devices.iter().map(|device| device.0).collect();
    let rows = tx.query(
        "SELECT d.device, d.name, a.name FROM devices d JOIN accounts a ON a.id = d.account \
             WHERE d.device = ANY($1)",
        &[&ids],
    )?;
    let mut names: HashMap<Uuid, (String, String)> = rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    Ok(devices
        .iter()
        .filter_map(|device| {
            names.remove(&device.0).map(|(name, account)| DeviceName {
                device: *device,
                name,
                account,
            })
        })
        .collect())
}
