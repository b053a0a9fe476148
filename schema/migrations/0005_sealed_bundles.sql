-- Version 5: sealed bundles.
--
-- A bundle no longer carries readable changes. A device seals its outbox
-- (in letters) to the server's key; the server answers each letter with a
-- reply sealed to that device's key. A laptop that carries a bundle holds
-- what it cannot read: `sealed` keeps the letters it is to hand to the
-- server and the replies it is to take back to their devices.
--
-- Outboxes carried here readable by an earlier version (`relay`,
-- `relay_runs`) are copies: their devices keep their own outboxes until the
-- server holds them, and send them sealed in their next bundle. They go.
-- So do the acknowledgements heard for other devices, which only served to
-- drop those copies.

DROP TABLE relay_runs;
DROP TABLE relay;
DELETE FROM acks WHERE device NOT IN (SELECT value FROM meta WHERE key = 'device_id');

CREATE TABLE sealed (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,          -- who wrote the letter / whom the reply is for
    to_server   INTEGER NOT NULL,       -- 1: a letter for the server; 0: a reply for a device
    body        BLOB NOT NULL,          -- sealed; this laptop cannot read it
    digest      BLOB NOT NULL UNIQUE,   -- SHA-256 of body: a bundle imported twice adds nothing
    received_ms INTEGER NOT NULL
);
CREATE INDEX sealed_by_device ON sealed (to_server, device, id);
