-- Version 8: the compact stored form.
--
-- The change log names each device by a small number (`device_numbers`)
-- instead of repeating its id in every row and in the stamp index. A
-- change row's body no longer repeats its columns (stamp, record, field):
-- it holds what the row does not — the stamps the change supersedes,
-- observed or carried before, and its value — in the core's codec
-- (faenban_core::codec), and a record's merged state is kept in the same
-- codec, naming each device once. The bodies and states are rewritten by
-- the store as this migration runs (crates/faenban-store/src/schema.rs),
-- in the same transaction, with foreign keys checked before it commits.
CREATE TABLE device_numbers (
    n       INTEGER PRIMARY KEY,
    device  TEXT NOT NULL UNIQUE
);
INSERT INTO device_numbers (device) SELECT DISTINCT device FROM changes ORDER BY device;

CREATE TABLE changes_v8 (
    seq       INTEGER PRIMARY KEY,
    wall_ms   INTEGER NOT NULL,
    counter   INTEGER NOT NULL,
    device    INTEGER NOT NULL REFERENCES device_numbers (n),
    kind      TEXT NOT NULL,
    record    TEXT NOT NULL,
    field     TEXT NOT NULL,
    body      BLOB NOT NULL,            -- faenban_core::codec, without the columns
    UNIQUE (wall_ms, counter, device)
);
INSERT INTO changes_v8 (seq, wall_ms, counter, device, kind, record, field, body)
    SELECT c.seq, c.wall_ms, c.counter, d.n, c.kind, c.record, c.field, c.body
    FROM changes c JOIN device_numbers d ON d.device = c.device ORDER BY c.seq;
DROP TABLE changes;
ALTER TABLE changes_v8 RENAME TO changes;
CREATE INDEX changes_by_record ON changes (kind, record, seq);
