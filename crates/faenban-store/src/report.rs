//! The report's household digests: rewritten with every change to a
//! household's records, read by [`Store::report`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use faenban_core::areas::Areas;
use faenban_core::report::{self, HouseholdDigest, Report, ReportOptions};
use faenban_core::{Catalogues, RecordId, RecordKey, RecordKind, RecordState};
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::error::{Error, Result};
use crate::{load_state, read_meta, write_meta, Store};

/// The `meta` key that says whether every household's digest is there in
/// this build's form ([`digest_form`]) or must be made from the records
/// (anything else: `stale` after the upgrade that added them, or a form an
/// earlier build wrote).
const DIGESTS: &str = "report_digests";

/// The form of the digests this build writes: `HouseholdDigest`'s stored
/// form and the catalogues its deprivation was assessed with. A change to
/// either makes every file's digests again.
fn digest_form() -> &'static str {
    static FORM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FORM.get_or_init(|| {
        use sha2::{Digest as _, Sha256};
        let catalogues = Sha256::digest(format!("{:?}", catalogues()).as_bytes());
        let short: String = catalogues[..6].iter().map(|b| format!("{b:02x}")).collect();
        // Form 3: visits of one day in a fixed order (the latest the same
        // however the store read them).
        format!("form 3, catalogues {short}")
    })
}

/// The catalogues a digest's deprivation is assessed with.
fn catalogues() -> &'static Catalogues {
    static CATALOGUES: std::sync::OnceLock<Catalogues> = std::sync::OnceLock::new();
    CATALOGUES.get_or_init(Catalogues::builtin)
}

/// Rewrites the digests of `households` from their records as they stand
/// in this transaction (removing those archived or gone).
/// `written` holds states this transaction wrote, so that they need not be
/// read back and decoded again.
/// `numbers` holds record numbers the transaction already knows.
pub(crate) fn refresh(
    connection: &Connection,
    households: impl IntoIterator<Item = RecordId>,
    written: &HashMap<RecordKey, RecordState>,
    numbers: &HashMap<RecordKey, i64>,
) -> Result<()> {
    for household in households {
        let key = RecordKey::new(RecordKind::Household, household.0);
        let number = match numbers.get(&key) {
            Some(number) => Some(*number),
            None => connection
                .prepare_cached(
                    "SELECT n FROM record_numbers WHERE kind = 'household' AND id = ?1",
                )?
                .query_row([household.0.to_string()], |row| row.get::<_, i64>(0))
                .optional()?,
        };
        // A household the file has never numbered has neither records nor
        // a digest.
        let Some(number) = number else {
            continue;
        };
        let state = |key: &RecordKey| -> Result<Option<Cow<'_, RecordState>>> {
            Ok(match written.get(key) {
                Some(state) => Some(Cow::Borrowed(state)),
                None => load_state(connection, key)?.map(Cow::Owned),
            })
        };
        let digest = match state(&key)? {
            Some(own) => {
                let mut related = Vec::new();
                for (kind, record) in related_keys(connection, number)? {
                    let Ok(record) = uuid::Uuid::parse_str(&record) else {
                        continue;
                    };
                    let related_key = RecordKey::new(RecordKind::from_name(&kind), record);
                    if let Some(related_state) = state(&related_key)? {
                        related.push((related_key, related_state));
                    }
                }
                report::digest_household(
                    (&key, &own),
                    related.iter().map(|(key, state)| (key, &**state)),
                    catalogues(),
                )
            }
            None => None,
        };
        match digest {
            Some(digest) => {
                connection
                    .prepare_cached(
                        "INSERT INTO report_digests (household, village, digest) \
                         VALUES (?1, ?2, ?3) \
                         ON CONFLICT (household) DO UPDATE SET village = excluded.village, \
                         digest = excluded.digest",
                    )?
                    .execute(params![
                        number,
                        digest.village,
                        serde_json::to_string(&digest)?
                    ])?;
            }
            None => {
                connection
                    .prepare_cached("DELETE FROM report_digests WHERE household = ?1")?
                    .execute([number])?;
            }
        }
    }
    Ok(())
}

/// The kind and id of every record that names the household numbered
/// `household`.
fn related_keys(connection: &Connection, household: i64) -> Result<Vec<(String, String)>> {
    let mut statement = connection.prepare_cached(
        "SELECT rn.kind, rn.id FROM records r JOIN record_numbers rn ON rn.n = r.n \
             WHERE r.household = ?1",
    )?;
    let rows = statement.query_map([household], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks every digest to be made again at the next open.
pub(crate) fn mark_stale(connection: &Connection) -> Result<()> {
    write_meta(connection, DIGESTS, "stale")
}

/// Makes every household's digest if they are not there in this build's
/// form.
pub(crate) fn make_if_stale(connection: &mut Connection) -> Result<()> {
    if read_meta(connection, DIGESTS)?.as_deref() == Some(digest_form()) {
        return Ok(());
    }
    let tx = connection.transaction()?;
    tx.execute("DELETE FROM report_digests", [])?;
    let households: Vec<String> = {
        let mut statement = tx.prepare(
            "SELECT rn.id FROM record_numbers rn JOIN records r ON r.n = rn.n \
             WHERE rn.kind = 'household'",
        )?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let households = households
        .iter()
        .filter_map(|id| uuid::Uuid::parse_str(id).ok().map(RecordId));
    refresh(&tx, households, &HashMap::new(), &HashMap::new())?;
    write_meta(&tx, DIGESTS, digest_form())?;
    tx.commit()?;
    Ok(())
}

/// The households a write touched, to refresh at its commit, and the
/// states it wrote (up to [`KEPT_STATES`]).
#[derive(Debug, Default)]
pub(crate) struct DigestsDue {
    households: HashSet<RecordId>,
    states: HashMap<RecordKey, RecordState>,
}

/// How many written states a write keeps for its digests; past this the
/// rest are read back from the file.
const KEPT_STATES: usize = 4_096;

impl DigestsDue {
    /// A record was written: its household's digest (and, for a record
    /// that moved, its former household's) must be made again.
    pub(crate) fn note(&mut self, key: &RecordKey, household: Option<RecordId>) {
        if key.kind == RecordKind::Household {
            self.households.insert(key.id);
        }
        self.households.extend(household);
    }

    /// A state just written, for the digests made at the commit.
    pub(crate) fn keep_state(&mut self, key: RecordKey, state: RecordState) {
        if self.states.len() < KEPT_STATES || self.states.contains_key(&key) {
            self.states.insert(key, state);
        }
    }

    /// Drops the kept states (a savepoint rolled back what they say).
    pub(crate) fn forget_states(&mut self) {
        self.states.clear();
    }

    pub(crate) fn states(&self) -> &HashMap<RecordKey, RecordState> {
        &self.states
    }

    /// The households due, leaving the kept states until the commit ends.
    pub(crate) fn take(&mut self) -> HashSet<RecordId> {
        std::mem::take(&mut self.households)
    }
}

impl Store {
    /// Whether every household's digest is there in this build's form. Not
    /// when a file could not be upgraded (opened read-only, or the making
    /// failed), nor after writes that did not keep them.
    fn digests_current(&self) -> Result<bool> {
        Ok(read_meta(&self.connection, DIGESTS)?.as_deref() == Some(digest_form()))
    }

    /// The digests made from the records themselves, for a file whose kept
    /// digests cannot be trusted: slow, but never wrong.
    fn digests_from_records(&self) -> Result<Vec<HouseholdDigest>> {
        let mut records = Vec::new();
        for kind in RecordKind::KNOWN {
            records.extend(self.records(&kind)?);
        }
        Ok(report::digest_all(records, catalogues()))
    }

    /// Every household's digest, in no particular order.
    pub fn report_digests(&self) -> Result<Vec<HouseholdDigest>> {
        if !self.digests_current()? {
            return self.digests_from_records();
        }
        let mut statement = self
            .connection
            .prepare_cached("SELECT digest FROM report_digests")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
    }

    /// The households of an area as the office lists them (the core's
    /// [`report::household_rows`]), with the names of their officials.
    pub fn household_rows(
        &self,
        area: &faenban_core::codes::AreaCode,
        options: &ReportOptions,
    ) -> Result<Vec<(report::HouseholdRow, Vec<String>)>> {
        let digests = if self.digests_current()? {
            let mut statement = self.connection.prepare_cached(
                "SELECT digest FROM report_digests WHERE village >= ?1 AND village < ?1 || ':'",
            )?;
            let rows = statement.query_map([area.as_str()], |row| row.get::<_, String>(0))?;
            rows.map(|row| Ok(serde_json::from_str::<HouseholdDigest>(&row?)?))
                .collect::<Result<Vec<_>>>()?
        } else {
            self.digests_from_records()?
        };
        let rows = report::household_rows(digests, area, options);
        report::with_official_names(rows, |key| load_state(&self.connection, key))
    }

    /// The report of this file's households (`docs/report.md`), from their
    /// digests.
    pub fn report(&self, areas: &Areas, options: &ReportOptions) -> Result<Report> {
        if !self.digests_current()? {
            return Ok(report::build_from_digests(
                self.digests_from_records()?,
                areas,
                options,
            ));
        }
        let mut statement = self
            .connection
            .prepare_cached("SELECT digest FROM report_digests")?;
        let mut rows = statement.query([])?;
        let mut failure: Option<Error> = None;
        let digests = std::iter::from_fn(|| {
            let parsed = match rows.next() {
                Ok(Some(row)) => row
                    .get_ref(0)
                    .and_then(|text| Ok(text.as_str()?))
                    .map_err(Error::from)
                    .and_then(|text| Ok(serde_json::from_str::<HouseholdDigest>(text)?)),
                Ok(None) => return None,
                Err(error) => Err(error.into()),
            };
            parsed.map_err(|error| failure = Some(error)).ok()
        });
        let report = report::build_from_digests(digests, areas, options);
        match failure {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }
}
