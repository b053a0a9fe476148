-- Version 8: the compact stored form.
--
-- The change log names each device, record and field by a small number
-- (`device_numbers`, `record_numbers`, `field_numbers`) instead of
-- repeating their ids and names in every row and in its indexes; the search terms name records the same
-- way. A change row's body no longer repeats its columns (stamp, record,
-- field): it holds what the row does not — the stamps the change
-- supersedes, observed or carried before, and its value — in the core's
-- codec (faenban_core::codec), and a record's merged state is kept in the
-- same codec, naming each device once. The bodies and states are rewritten
-- by the store as this migration runs (crates/faenban-store/src/schema.rs),
-- in the same transaction, with foreign keys checked before it commits.
CREATE TABLE device_numbers (
    n       INTEGER PRIMARY KEY,
    device  TEXT NOT NULL UNIQUE
);
INSERT INTO device_numbers (device) SELECT DISTINCT device FROM changes ORDER BY device;

CREATE TABLE record_numbers (
    n     INTEGER PRIMARY KEY,
    kind  TEXT NOT NULL,
    id    TEXT NOT NULL,
    UNIQUE (kind, id)
);
INSERT INTO record_numbers (kind, id)
    SELECT kind, record FROM changes
    UNION SELECT kind, id FROM records
    UNION SELECT kind, id FROM search_terms
    ORDER BY 1, 2;

CREATE TABLE field_numbers (
    n     INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);
INSERT INTO field_numbers (name) SELECT DISTINCT field FROM changes ORDER BY field;

CREATE TABLE changes_v8 (
    seq       INTEGER PRIMARY KEY,
    wall_ms   INTEGER NOT NULL,
    counter   INTEGER NOT NULL,
    device    INTEGER NOT NULL REFERENCES device_numbers (n),
    record    INTEGER NOT NULL REFERENCES record_numbers (n),
    field     INTEGER NOT NULL REFERENCES field_numbers (n),
    body      BLOB NOT NULL,            -- faenban_core::codec, without the columns
    UNIQUE (wall_ms, counter, device)
);
INSERT INTO changes_v8 (seq, wall_ms, counter, device, record, field, body)
    SELECT c.seq, c.wall_ms, c.counter, d.n, r.n, f.n, c.body
    FROM changes c
    JOIN device_numbers d ON d.device = c.device
    JOIN field_numbers f ON f.name = c.field
    JOIN record_numbers r ON r.kind = c.kind AND r.id = c.record
    ORDER BY c.seq;
DROP TABLE changes;
ALTER TABLE changes_v8 RENAME TO changes;
CREATE INDEX changes_by_record ON changes (record, seq);

CREATE TABLE search_terms_v8 (
    term    TEXT NOT NULL,
    record  INTEGER NOT NULL REFERENCES record_numbers (n),
    PRIMARY KEY (term, record)
) WITHOUT ROWID;
INSERT INTO search_terms_v8 (term, record)
    SELECT t.term, r.n FROM search_terms t JOIN record_numbers r ON r.kind = t.kind AND r.id = t.id;
DROP TABLE search_terms;
ALTER TABLE search_terms_v8 RENAME TO search_terms;
CREATE INDEX search_terms_by_record ON search_terms (record);

-- The feed files each entry under its household's number (NULL: for
-- everyone; 0, which no record has: under no known household).
INSERT OR IGNORE INTO record_numbers (kind, id)
    SELECT DISTINCT 'household', household FROM feed WHERE household <> '' ORDER BY 2;
CREATE TABLE feed_v8 (
    seq        INTEGER PRIMARY KEY,
    change_seq INTEGER NOT NULL REFERENCES changes (seq),
    household  INTEGER,                 -- record_numbers.n; NULL for everyone, 0 for no known household
    announce   INTEGER NOT NULL DEFAULT 0 -- 0 arrival, 1 again: moved village, 2 again: deprivation changed
);
INSERT INTO feed_v8 (seq, change_seq, household, announce)
    SELECT f.seq, f.change_seq,
        CASE WHEN f.household IS NULL THEN NULL WHEN f.household = '' THEN 0
             ELSE (SELECT n FROM record_numbers WHERE kind = 'household' AND id = f.household) END,
        f.announce
    FROM feed f ORDER BY f.seq;
DROP TABLE feed;
ALTER TABLE feed_v8 RENAME TO feed;
CREATE INDEX feed_by_household ON feed (household) WHERE household IS NOT NULL;
CREATE INDEX feed_of_no_household ON feed (seq) WHERE household IS NULL;
