-- Version 8: the change log's bodies and the records' merged states in the
-- compact stored form (faenban_core::codec) instead of JSON.
--
-- A change row's body no longer repeats its columns (stamp, record, field):
-- it holds what the row does not, the stamps the change supersedes,
-- observed or carried before, and its value. A record's state names each
-- device once. The columns keep their declared types; SQLite stores the
-- blobs as they are. The rows are rewritten by the store as this migration
-- runs (crates/faenban-store/src/schema.rs), in the same transaction.
SELECT 1;
