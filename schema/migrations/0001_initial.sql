-- faenban local store, version 1: device identity, the change log, the outbox
-- of changes not yet pushed, and the merged state of every record.

-- Device identity, clock state and sync bookkeeping, one value per key.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Every change this file knows, made here or received, in arrival order.
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY,
    wall_ms   INTEGER NOT NULL,
    counter   INTEGER NOT NULL,
    device    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    record    TEXT NOT NULL,
    field     TEXT NOT NULL,
    body      TEXT NOT NULL,            -- the change as JSON
    UNIQUE (wall_ms, counter, device)
);
CREATE INDEX changes_by_record ON changes (kind, record, seq);

-- Changes made on this device that the server has not acknowledged.
CREATE TABLE outbox (
    sequence   INTEGER PRIMARY KEY,     -- the device sequence pushes are keyed by
    change_seq INTEGER NOT NULL UNIQUE REFERENCES changes (seq),
    shared     INTEGER NOT NULL DEFAULT 0 -- 1 once it left the device (pushed or in a bundle)
);

-- The merged state of each record, so that reads never replay history.
CREATE TABLE records (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    state       TEXT NOT NULL,          -- faenban_core::RecordState as JSON
    household   TEXT,                   -- for members, visits, assistance, pairings
    archived    INTEGER NOT NULL,
    in_conflict INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX records_by_household ON records (household) WHERE household IS NOT NULL;
CREATE INDEX records_in_conflict ON records (in_conflict) WHERE in_conflict = 1;

-- Words a record can be found by: house code, village code, names, national IDs.
CREATE TABLE search_terms (
    term TEXT NOT NULL,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    PRIMARY KEY (term, kind, id)
) WITHOUT ROWID;
CREATE INDEX search_terms_by_record ON search_terms (kind, id);
