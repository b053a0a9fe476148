//! The report's household digests: rewritten with every change to a
//! household's records, read by [`Store::report`].

use std::collections::HashSet;

use faenban_core::areas::Areas;
use faenban_core::report::{self, HouseholdDigest, Report, ReportOptions};
use faenban_core::{Catalogues, RecordId, RecordKey, RecordKind};
use rusqlite::{params, Connection};

use crate::error::{Error, Result};
use crate::{load_state, query_records_on, read_meta, write_meta, Store};

/// The `meta` key that says whether every household's digest is there
/// (`current`) or must be made from the records (`stale`, after the
/// upgrade that added them).
const DIGESTS: &str = "report_digests";

/// The catalogues a digest's deprivation is assessed with.
fn catalogues() -> &'static Catalogues {
    static CATALOGUES: std::sync::OnceLock<Catalogues> = std::sync::OnceLock::new();
    CATALOGUES.get_or_init(Catalogues::builtin)
}

/// Rewrites the digests of `households` from their records as they stand
/// in this transaction (removing those archived or gone).
pub(crate) fn refresh(
    connection: &Connection,
    households: impl IntoIterator<Item = RecordId>,
) -> Result<()> {
    for household in households {
        let key = RecordKey::new(RecordKind::Household, household.0);
        let id = household.0.to_string();
        let digest = match load_state(connection, &key)? {
            Some(state) => {
                let related = query_records_on(
                    connection,
                    "SELECT kind, id, state FROM records WHERE household = ?1",
                    [&id],
                )?;
                report::digest_household(
                    (&key, &state),
                    related.iter().map(|(key, state)| (key, state)),
                    catalogues(),
                )
            }
            None => None,
        };
        match digest {
            Some(digest) => {
                connection
                    .prepare_cached(
                        "INSERT INTO report_digests (household, village, digest) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (household) DO UPDATE SET village = excluded.village, \
                         digest = excluded.digest",
                    )?
                    .execute(params![id, digest.village, serde_json::to_string(&digest)?])?;
            }
            None => {
                connection
                    .prepare_cached("DELETE FROM report_digests WHERE household = ?1")?
                    .execute([&id])?;
            }
        }
    }
    Ok(())
}

/// Makes every household's digest if a new schema left them to make.
pub(crate) fn make_if_stale(connection: &mut Connection) -> Result<()> {
    if read_meta(connection, DIGESTS)?.as_deref() != Some("stale") {
        return Ok(());
    }
    let tx = connection.transaction()?;
    tx.execute("DELETE FROM report_digests", [])?;
    let households: Vec<String> = {
        let mut statement = tx.prepare("SELECT id FROM records WHERE kind = 'household'")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let households = households
        .iter()
        .filter_map(|id| uuid::Uuid::parse_str(id).ok().map(RecordId));
    refresh(&tx, households)?;
    write_meta(&tx, DIGESTS, "current")?;
    tx.commit()?;
    Ok(())
}

/// The households a write touched, to refresh at its commit.
#[derive(Debug, Default)]
pub(crate) struct DigestsDue(HashSet<RecordId>);

impl DigestsDue {
    /// A record was written: its household's digest (and, for a record
    /// that moved, its former household's) must be made again.
    pub(crate) fn note(&mut self, key: &RecordKey, household: Option<RecordId>) {
        if key.kind == RecordKind::Household {
            self.0.insert(key.id);
        }
        self.0.extend(household);
    }

    pub(crate) fn take(&mut self) -> HashSet<RecordId> {
        std::mem::take(&mut self.0)
    }
}

impl Store {
    /// Every household's digest, in no particular order.
    pub fn report_digests(&self) -> Result<Vec<HouseholdDigest>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT digest FROM report_digests")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
    }

    /// The report of this file's households (`docs/report.md`), from their
    /// digests.
    pub fn report(&self, areas: &Areas, options: &ReportOptions) -> Result<Report> {
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
