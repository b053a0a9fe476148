-- Schema 7: the report's digest of each household, so that a report reads
-- one small row per household instead of every record.

-- faenban_core::report::HouseholdDigest as JSON, rewritten in the same
-- transaction as any change to the household or to a record that names it.
CREATE TABLE report_digests (
    household TEXT PRIMARY KEY,
    village   TEXT NOT NULL,
    digest    TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX report_digests_by_village ON report_digests (village);

-- Digests are made from the records by the program, not by SQL: the store
-- makes them all when it next opens the file.
INSERT INTO meta (key, value) VALUES ('report_digests', 'stale')
    ON CONFLICT (key) DO UPDATE SET value = 'stale';
