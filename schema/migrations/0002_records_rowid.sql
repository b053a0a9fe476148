-- Version 2: the merged state of a record is often 1–5 KB of JSON; SQLite
-- keeps large rows poorly in a WITHOUT ROWID table (each row spills to
-- overflow pages and every rewrite splits pages), so `records` becomes an
-- ordinary table with (kind, id) unique, rewritten in place by upsert.

CREATE TABLE records_v2 (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    state       TEXT NOT NULL,          -- faenban_core::RecordState as JSON
    household   TEXT,                   -- for members, visits, assistance, pairings
    archived    INTEGER NOT NULL,
    in_conflict INTEGER NOT NULL,
    UNIQUE (kind, id)
);
INSERT INTO records_v2 (kind, id, state, household, archived, in_conflict)
    SELECT kind, id, state, household, archived, in_conflict FROM records ORDER BY kind, id;
DROP TABLE records;
ALTER TABLE records_v2 RENAME TO records;
CREATE INDEX records_by_household ON records (household) WHERE household IS NOT NULL;
CREATE INDEX records_in_conflict ON records (in_conflict) WHERE in_conflict = 1;
