-- Version 9: records and places under their record numbers.
--
-- A record's merged state is kept under the number the change log already
-- knows it by (`record_numbers.n`), instead of its kind and 36-character id
-- again, with a unique index of its own; the household a record belongs to
-- is that household's number, and so is the key of its place. The kind and
-- id are read from `record_numbers`, once per record.
INSERT OR IGNORE INTO record_numbers (kind, id)
    SELECT kind, id FROM records ORDER BY 1, 2;
-- A household named in its canonical form only, as the stores file them
-- (faenban_core::push::household_value); any other text files under none.
INSERT OR IGNORE INTO record_numbers (kind, id)
    SELECT 'household', household FROM records
    WHERE household GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'
    UNION SELECT 'household', household FROM places
    ORDER BY 2;
CREATE TABLE records_v9 (
    n           INTEGER PRIMARY KEY REFERENCES record_numbers (n),
    state       BLOB NOT NULL,          -- faenban_core::codec
    household   INTEGER,                -- record_numbers.n: members, visits, assistance, pairings
    archived    INTEGER NOT NULL,
    in_conflict INTEGER NOT NULL
);
INSERT INTO records_v9 (n, state, household, archived, in_conflict)
    SELECT rn.n, r.state, h.n, r.archived, r.in_conflict
    FROM records r
    JOIN record_numbers rn ON rn.kind = r.kind AND rn.id = r.id
    LEFT JOIN record_numbers h ON h.kind = 'household' AND h.id = r.household
        AND r.household GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'
    ORDER BY rn.n;
DROP TABLE records;
ALTER TABLE records_v9 RENAME TO records;
CREATE INDEX records_by_household ON records (household) WHERE household IS NOT NULL;
CREATE INDEX records_in_conflict ON records (in_conflict) WHERE in_conflict = 1;
-- Counted as they are written, so that `status` need not read them all.
INSERT OR REPLACE INTO meta (key, value) SELECT 'record_count', COUNT(*) FROM records;

CREATE TABLE places_v9 (
    household INTEGER PRIMARY KEY REFERENCES record_numbers (n),
    village   TEXT NOT NULL,
    deprived  INTEGER NOT NULL          -- bit i: deprived in TPMAP dimension i
);
INSERT INTO places_v9 (household, village, deprived)
    SELECT h.n, p.village, p.deprived
    FROM places p JOIN record_numbers h ON h.kind = 'household' AND h.id = p.household
    ORDER BY h.n;
DROP TABLE places;
ALTER TABLE places_v9 RENAME TO places;
CREATE INDEX places_by_village ON places (village);

-- The report's digests under their household's number too.
CREATE TABLE report_digests_v9 (
    household INTEGER PRIMARY KEY REFERENCES record_numbers (n),
    village   TEXT NOT NULL,
    digest    TEXT NOT NULL             -- faenban_core::report::HouseholdDigest as JSON
);
INSERT INTO report_digests_v9 (household, village, digest)
    SELECT h.n, d.village, d.digest
    FROM report_digests d JOIN record_numbers h ON h.kind = 'household' AND h.id = d.household
    ORDER BY h.n;
DROP TABLE report_digests;
ALTER TABLE report_digests_v9 RENAME TO report_digests;
CREATE INDEX report_digests_by_village ON report_digests (village);
