-- Version 3: sync.
--
-- On a laptop: the pull cursor and server settings live in `meta`; other
-- devices' outboxes that came in a bundle wait in `relay` until this laptop
-- pushes them; `acks` remembers how much of each device's outbox the server
-- holds, to carry back to that device in a bundle.
--
-- On the server: accounts and the devices bound to them, which (device,
-- sequence) pairs arrived, the feed that numbers every accepted change for
-- pulls, and where each household is (for scope).

CREATE TABLE relay (
    device     TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    change_seq INTEGER NOT NULL REFERENCES changes (seq),
    PRIMARY KEY (device, sequence)
) WITHOUT ROWID;

CREATE TABLE acks (
    device       TEXT PRIMARY KEY,
    held_through INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE accounts (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    areas      TEXT NOT NULL,           -- area codes separated by spaces
    dimension  TEXT,                    -- working groups only
    token_hash BLOB NOT NULL UNIQUE,    -- SHA-256 of the token; the token itself is never stored
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    account       INTEGER NOT NULL REFERENCES accounts (id),
    name          TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The runs of each device's outbox the server holds, one row per push, with
-- the stamp each sequence arrived with (12 bytes each: wall_ms and counter,
-- little-endian): a re-sent change is recognized, and a different change
-- under a held sequence is refused.
CREATE TABLE arrivals (
    device         TEXT NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence  INTEGER NOT NULL,
    stamps         BLOB NOT NULL,
    PRIMARY KEY (device, first_sequence)
) WITHOUT ROWID;

-- Server sequence numbers: pulls page through this. A household that enters
-- a scope (moved village, newly deprived) has its changes announced again.
CREATE TABLE feed (
    seq        INTEGER PRIMARY KEY,
    change_seq INTEGER NOT NULL REFERENCES changes (seq),
    household  TEXT,                    -- NULL for records of no household
    announce   INTEGER NOT NULL DEFAULT 0 -- 0 arrival, 1 again: moved village, 2 again: deprivation changed
);
-- A narrow scope (a village's volunteer) reads its households' entries by
-- index instead of filtering the whole feed.
CREATE INDEX feed_by_household ON feed (household) WHERE household IS NOT NULL;
CREATE INDEX feed_of_no_household ON feed (seq) WHERE household IS NULL;

-- Where each household is and where it is deprived, as last merged.
CREATE TABLE places (
    household TEXT PRIMARY KEY,
    village   TEXT NOT NULL,
    deprived  INTEGER NOT NULL          -- bit i: deprived in TPMAP dimension i
) WITHOUT ROWID;
CREATE INDEX places_by_village ON places (village);
