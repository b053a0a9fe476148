-- Version 6: changes held back, and the names of devices.
--
-- A push no longer fails whole because one record's changes are refused
-- for what they say (a household outside the account's areas, a value out
-- of bounds): the server sets those changes aside, answers their sequences
-- as held back with the reason, and takes the rest.
--
-- On the server, `refusals` remembers each held-back sequence, so that a
-- batch sent again (its answer lost) is answered the same way. Its stamp
-- is kept in `arrivals` like any other sequence it holds.
--
-- On a laptop, `held_back` keeps each change the server refused, with the
-- reason, out of the outbox (so that the rest goes on) until a person
-- sends it again (`faenban outbox retry`), which queues it at the end of
-- the outbox under a new sequence.

CREATE TABLE refusals (
    device      TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    refused_ms  INTEGER NOT NULL,
    PRIMARY KEY (device, sequence)
) WITHOUT ROWID;

CREATE TABLE held_back (
    -- The change, once: a sequence can be used again (a file whose outbox
    -- was numbered anew after the server was restored from a backup).
    change_seq  INTEGER PRIMARY KEY REFERENCES changes (seq),
    sequence    INTEGER NOT NULL,       -- the outbox sequence it was sent as
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    held_ms     INTEGER NOT NULL
);

-- Who the devices whose changes a laptop holds are, as pulls name them
-- (the name each gave at its first hello, and its account's), so that
-- history and conflicts name people's laptops rather than ids.
CREATE TABLE device_names (
    device   TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    account  TEXT NOT NULL
) WITHOUT ROWID;
