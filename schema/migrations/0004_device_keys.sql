-- Version 4: device keys.
--
-- Each device signs the runs of its outbox with an Ed25519 key made once
-- (kept in `meta` as `device_key`; a file upgraded from version 3 gets one
-- when it is next opened). On the server, the public key a device proved at
-- hello is bound with it, and every push of its outbox must verify with it.
--
-- On a laptop, outboxes of other devices carried here in bundles travel as
-- their devices signed them: `relay_runs` keeps each run's signature, and
-- `relay` its changes. Runs queued by an earlier version carry no signature
-- and could never be passed on; they are copies (their devices keep their
-- own outboxes until the server holds them), so they are dropped here.

ALTER TABLE devices ADD COLUMN public_key BLOB;

DELETE FROM relay;

CREATE TABLE relay_runs (
    device         TEXT NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence  INTEGER NOT NULL,
    signature      TEXT NOT NULL,       -- the device's, 128 hex digits
    public_key     TEXT,                -- for a device that never said hello
    PRIMARY KEY (device, first_sequence)
) WITHOUT ROWID;

-- What the server was last heard to hold of each device's outbox comes
-- with the server's signature, so that a bundle carrying it back is
-- believed only when it verifies.
ALTER TABLE acks ADD COLUMN signature TEXT;
