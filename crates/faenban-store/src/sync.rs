//! The laptop's side of sync and bundles: server settings, outbox runs to
//! push and their acknowledgement, pulled pages applied with their cursor in
//! one transaction, clock correction, the server's sealed replies taken in,
//! and other devices' sealed letters and replies carried until they can be
//! passed on.
//!
//! Every step is its own transaction, so a sync killed at any point resumes
//! from where the file says it was: pushes are idempotent on the server, and
//! the pull cursor moves only with the changes it covers.

use faenban_core::sync::{DeviceName, ErrorBody, HeldBack, PullFrom, Reply};
use faenban_core::{Change, DeviceId, OutboxEntry, Outcome};
use faenban_keys::{PublicKey, Signature};
use rusqlite::params;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::bundle::SealedBytes;

use crate::error::{Error, Result};
use crate::{read_meta, write_meta, Store};

/// Where and as whom this laptop syncs.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// The server's base URL.
    pub server: String,
    /// The account's token.
    pub token: String,
}

impl std::fmt::Debug for SyncSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never in logs or panics.
        f.debug_struct("SyncSettings")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A run of one device's outbox, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRun {
    /// Whose outbox.
    pub device: DeviceId,
    /// The sequence of the first change.
    pub first_sequence: u64,
    /// The changes, in sequence order.
    pub changes: Vec<Change>,
}

impl OutboxRun {
    /// The run cut to at most `max_changes`, ending where one record's
    /// changes end: a new record's fields (made in one command) travel in one
    /// batch, so the server sees the household or village that places it
    /// together with the rest. A record with more changes in a row than fit
    /// is cut where it must be.
    pub fn cut(mut self, max_changes: usize) -> OutboxRun {
        let max_changes = max_changes.max(1);
        if self.changes.len() <= max_changes {
            return self;
        }
        let boundary_record = self.changes[max_changes].record.clone();
        let mut end = max_changes;
        while end > 0 && self.changes[end - 1].record == boundary_record {
            end -= 1;
        }
        self.changes
            .truncate(if end == 0 { max_changes } else { end });
        self
    }

    /// The run cut further, the same way, until its changes as JSON stay
    /// within `max_bytes` together (a long note or many answers make
    /// changes large). One change is never cut.
    pub fn fit(mut self, max_changes: usize, max_bytes: usize) -> OutboxRun {
        self = self.cut(max_changes);
        while self.changes.len() > 1 {
            let size: usize = self
                .changes
                .iter()
                .map(|change| serde_json::to_vec(change).map_or(0, |bytes| bytes.len()))
                .sum();
            if size <= max_bytes {
                break;
            }
            let keep = self.changes.len() / 2;
            self = self.cut(keep);
        }
        self
    }

    /// The run in pieces that each fit one push, as [`OutboxRun::fit`]
    /// cuts them, in order.
    pub fn split(mut self, max_changes: usize, max_bytes: usize) -> Vec<OutboxRun> {
        let mut pieces = Vec::new();
        while !self.changes.is_empty() {
            // One change past the batch is enough for `cut` to see where a
            // record ends; the rest of the run need not be copied.
            let window = self.changes.len().min(max_changes.max(1).saturating_add(1));
            let candidate = OutboxRun {
                device: self.device,
                first_sequence: self.first_sequence,
                changes: self.changes[..window].to_vec(),
            };
            let piece = candidate.fit(max_changes, max_bytes);
            let taken = piece.changes.len().max(1);
            self.changes.drain(..taken);
            self.first_sequence += taken as u64;
            pieces.push(piece);
        }
        pieces
    }

    /// The sequence of the last change.
    pub fn last_sequence(&self) -> u64 {
        self.first_sequence + self.changes.len().saturating_sub(1) as u64
    }
}

/// What the server was heard to hold of one device's outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The device.
    pub device: DeviceId,
    /// The highest sequence of its outbox the server holds.
    pub held_through: u64,
    /// The server's signature over it (128 hex digits), when it came with one.
    pub signature: Option<String>,
}

/// How many sealed replies a laptop carries for one device.
const REPLIES_KEPT: i64 = 16;

/// A sealed letter or reply this laptop carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarriedLetter {
    /// Its row, to drop it once passed on.
    pub id: i64,
    /// The device and the sealed bytes.
    pub item: SealedBytes,
}

/// A change the server refused and did not apply, set aside here.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldChange {
    /// The outbox sequence it was sent as.
    pub sequence: u64,
    /// The change.
    pub change: Change,
    /// The server's code: `out_of_scope`, `bad_value` or `limit_exceeded`.
    pub code: String,
    /// The server's reason, in English.
    pub message: String,
    /// When it was set aside (this laptop's clock).
    pub held_ms: u64,
}

/// What taking in one of the server's replies did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyTaken {
    /// Changes it brought.
    pub received: Received,
    /// How far the outbox is now acknowledged, when the reply dropped some of it.
    pub acknowledged: Option<u64>,
    /// Whether the pull cursor moved with it.
    pub cursor_moved: bool,
    /// True when the server has more for this laptop (the next bundle brings it).
    pub more: bool,
    /// Why the server refused the letter's run, when it did.
    pub refused: Option<ErrorBody>,
    /// Changes the server refused and did not apply, now set aside here.
    pub held_back: usize,
}

/// Where the server's public key is kept in `meta`.
const SERVER_KEY: &str = "server_key";

/// What applying a pulled page (or a bundle) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Changes new to this laptop.
    pub new: u64,
    /// Changes it already held.
    pub duplicates: u64,
}

/// What a clock correction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockCorrection {
    /// How far the clock moved, in milliseconds (positive: it was behind).
    pub moved_ms: i64,
    /// Changes not yet shared that were re-stamped because they were
    /// stamped in the future.
    pub restamped: u64,
}

impl Store {
    /// The server and token from `faenban login`, if any.
    pub fn sync_settings(&self) -> Result<Option<SyncSettings>> {
        let server = read_meta(&self.connection, "server_url")?;
        let token = read_meta(&self.connection, "server_token")?;
        Ok(server
            .zip(token)
            .map(|(server, token)| SyncSettings { server, token }))
    }

    /// Stores the server and token; a new server starts its pull from the
    /// beginning.
    pub fn set_sync_settings(&mut self, settings: &SyncSettings) -> Result<()> {
        let tx = self.connection.transaction()?;
        let previous = read_meta(&tx, "server_url")?;
        if previous.as_deref() != Some(settings.server.as_str()) {
            tx.execute(
                "DELETE FROM meta WHERE key IN ('pull_cursor', 'pull_check')",
                [],
            )?;
        }
        write_meta(&tx, "server_url", &settings.server)?;
        write_meta(&tx, "server_token", &settings.token)?;
        tx.commit()?;
        Ok(())
    }

    /// A setting kept with the database (such as a trusted CA).
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        read_meta(&self.connection, key)
    }

    /// Sets (or, with `None`, removes) a setting.
    pub fn set_setting(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(value) => write_meta(&self.connection, key, value),
            None => {
                self.connection
                    .execute("DELETE FROM meta WHERE key = ?1", [key])?;
                Ok(())
            }
        }
    }

    /// What the server said identifies the entry at the cursor.
    pub fn pull_check(&self) -> Result<Option<String>> {
        read_meta(&self.connection, "pull_check")
    }

    /// Where the next pull starts.
    pub fn pull_cursor(&self) -> Result<u64> {
        Ok(read_meta(&self.connection, "pull_cursor")?
            .and_then(|value| value.parse().ok())
            .unwrap_or(0))
    }

    /// The oldest run of this device's outbox, at most `max_changes` long.
    pub fn outbox_run(&self, max_changes: usize) -> Result<Option<OutboxRun>> {
        let Some(device) = self.device()? else {
            return Ok(None);
        };
        let mut statement = self.connection.prepare_cached(concat!(
            "SELECT outbox.sequence, ",
            change_columns!(),
            " FROM outbox JOIN changes c ON c.seq = outbox.change_seq ",
            change_joins!(),
            " ORDER BY outbox.sequence LIMIT ?1"
        ))?;
        let rows = statement.query([one_more(max_changes)])?;
        Ok(collect_run(device.id, rows)?.map(|run| run.cut(max_changes)))
    }

    /// Marks this device's outbox through `up_to` as having left the
    /// laptop: from now on those changes keep their stamps. Called before a
    /// push is sent, so that a push whose answer is lost still counts.
    pub fn mark_shared(&mut self, up_to: u64) -> Result<()> {
        self.connection.execute(
            "UPDATE outbox SET shared = 1 WHERE sequence <= ?1 AND shared = 0",
            [up_to as i64],
        )?;
        Ok(())
    }

    /// Moves this device's outbox to sequences after `held_through`, in the
    /// same order, and the next sequence after them. For a laptop restored
    /// from a backup (or a copied file): the server already holds other
    /// changes under the sequences it reuses, and refuses them. Changes
    /// the server did hold come back as duplicates of their stamps and are
    /// not applied twice. Returns how many changes were renumbered.
    pub fn renumber_outbox_after(&mut self, held_through: u64) -> Result<u64> {
        let tx = self.connection.transaction()?;
        let (first, count): (Option<i64>, i64) =
            tx.query_row("SELECT MIN(sequence), COUNT(*) FROM outbox", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        let Some(shift) =
            first.and_then(|first| faenban_core::replica::renumbering(first as u64, held_through))
        else {
            return Ok(0);
        };
        let shift = shift as i64;
        // Through negative numbers, so that no two rows ever share a key.
        tx.execute("UPDATE outbox SET sequence = -sequence", [])?;
        tx.execute("UPDATE outbox SET sequence = -sequence + ?1", [shift])?;
        let next: i64 =
            tx.query_row("SELECT MAX(sequence) + 1 FROM outbox", [], |row| row.get(0))?;
        write_meta(&tx, "next_outbox_sequence", &next.to_string())?;
        tx.commit()?;
        Ok(count as u64)
    }

    /// Puts every change this device ever made back in its outbox, in the
    /// order they were logged, numbered after `held_through`. For a server
    /// restored from a backup, which lost changes it had acknowledged: the
    /// server recognizes by stamp those it still holds, so sending all of
    /// them again applies each once. Returns how many were queued.
    pub fn requeue_own_changes_after(&mut self, held_through: u64) -> Result<u64> {
        let device = self.device()?.ok_or(Error::NotInitialized)?.id;
        let tx = self.connection.transaction()?;
        tx.execute("DELETE FROM outbox", [])?;
        let queued = tx.execute(
            "INSERT INTO outbox (sequence, change_seq, shared) \
             SELECT ?1 + ROW_NUMBER() OVER (ORDER BY seq), seq, 1 FROM changes \
             WHERE device = (SELECT n FROM device_numbers WHERE device = ?2) \
             AND seq NOT IN (SELECT change_seq FROM held_back)",
            params![held_through as i64, device.to_string()],
        )?;
        let next: i64 = tx.query_row(
            "SELECT COALESCE(MAX(sequence), ?1) + 1 FROM outbox",
            [held_through as i64],
            |row| row.get(0),
        )?;
        write_meta(&tx, "next_outbox_sequence", &next.to_string())?;
        tx.commit()?;
        Ok(queued as u64)
    }

    /// The server holds this device's outbox through `held_through`,
    /// except the changes it `held_back` (refused, not applied): those are
    /// set aside with the server's reason, and the rest dropped, in one
    /// transaction. Remembers it, with the server's signature when there is
    /// one.
    pub fn acknowledge(
        &mut self,
        local_wall_ms: u64,
        held_through: u64,
        signature: Option<&str>,
        held_back: &[HeldBack],
    ) -> Result<()> {
        let device = self.device()?.ok_or(Error::NotInitialized)?.id;
        let tx = self.connection.transaction()?;
        let refused: Vec<u64> = held_back.iter().map(|held| held.sequence).collect();
        for held in held_back
            .iter()
            .filter(|held| faenban_core::replica::sets_aside(held_through, held.sequence, &refused))
        {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO held_back (sequence, change_seq, code, message, held_ms) \
                 SELECT sequence, change_seq, ?2, ?3, ?4 FROM outbox WHERE sequence = ?1",
            )?
            .execute(params![
                held.sequence as i64,
                held.error,
                held.message,
                local_wall_ms as i64
            ])?;
        }
        tx.execute(
            "DELETE FROM outbox WHERE sequence <= ?1",
            [held_through as i64],
        )?;
        tx.execute(
            "INSERT INTO acks (device, held_through, signature) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device) DO UPDATE SET held_through = excluded.held_through, \
             signature = excluded.signature WHERE excluded.held_through > held_through \
             OR (excluded.held_through = held_through AND signature IS NULL)",
            params![device.to_string(), held_through as i64, signature],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The changes the server refused and this laptop set aside, oldest
    /// first, with the server's reasons.
    pub fn held_back(&self) -> Result<Vec<HeldChange>> {
        let mut statement = self.connection.prepare_cached(concat!(
            "SELECT held_back.sequence, held_back.code, held_back.message, held_back.held_ms, ",
            change_columns!(),
            " FROM held_back JOIN changes c ON c.seq = held_back.change_seq ",
            change_joins!(),
            " ORDER BY held_back.held_ms, held_back.sequence"
        ))?;
        let mut rows = statement.query([])?;
        let mut held = Vec::new();
        while let Some(row) = rows.next()? {
            held.push(HeldChange {
                sequence: row.get::<_, i64>(0)? as u64,
                change: crate::change_from_row(row, 4)?,
                code: row.get(1)?,
                message: row.get(2)?,
                held_ms: row.get::<_, i64>(3)? as u64,
            });
        }
        Ok(held)
    }

    /// Queues held-back changes again at the end of the outbox, under new
    /// sequences, to be sent at the next sync (after the office widened the
    /// account, say): all of them, or those sent as `sequences`. Returns
    /// how many were queued.
    pub fn retry_held_back(&mut self, sequences: Option<&[u64]>) -> Result<u64> {
        let tx = self.connection.transaction()?;
        let held: Vec<(i64, i64)> = {
            let mut statement = tx
                .prepare_cached("SELECT sequence, change_seq FROM held_back ORDER BY change_seq")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut next: i64 = read_meta(&tx, "next_outbox_sequence")?
            .and_then(|value| value.parse().ok())
            .unwrap_or(1);
        let mut queued = 0;
        for (sequence, change_seq) in held {
            if sequences.is_some_and(|wanted| !wanted.contains(&(sequence as u64))) {
                continue;
            }
            // It left this laptop once: it keeps its stamp.
            tx.prepare_cached(
                "INSERT INTO outbox (sequence, change_seq, shared) VALUES (?1, ?2, 1)",
            )?
            .execute(params![next, change_seq])?;
            tx.prepare_cached("DELETE FROM held_back WHERE change_seq = ?1")?
                .execute([change_seq])?;
            next += 1;
            queued += 1;
        }
        write_meta(&tx, "next_outbox_sequence", &next.to_string())?;
        tx.commit()?;
        Ok(queued)
    }

    /// What the server was last known to hold of each device's outbox,
    /// with the server's signature when there is one.
    pub fn acks(&self) -> Result<Vec<Ack>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT device, held_through, signature FROM acks ORDER BY device")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (device, held, signature) = row?;
            Ok(Ack {
                device: parse_device(&device)?,
                held_through: held as u64,
                signature,
            })
        })
        .collect()
    }

    /// True when `ack` is the server's signed acknowledgement of this
    /// device's own outbox, for the very change the outbox holds at that
    /// sequence. A bundle's acknowledgement is believed only then: a forged
    /// number must not drop a change the server never took.
    fn verifies_own_ack(&self, ack: &Ack) -> Result<bool> {
        let (Some(signature), Some(server_key)) = (
            ack.signature.as_deref().and_then(Signature::from_hex),
            read_meta(&self.connection, SERVER_KEY)?
                .as_deref()
                .and_then(PublicKey::from_hex),
        ) else {
            return Ok(false);
        };
        let mut statement = self.connection.prepare_cached(concat!(
            "SELECT ",
            change_columns!(),
            " FROM outbox JOIN changes c ON c.seq = outbox.change_seq ",
            change_joins!(),
            " WHERE outbox.sequence = ?1"
        ))?;
        let mut rows = statement.query([ack.held_through as i64])?;
        let Some(row) = rows.next()? else {
            // Nothing there to drop up to (already acknowledged, or never made).
            return Ok(false);
        };
        let change = crate::change_from_row(row, 0)?;
        Ok(server_key.verifies_ack(ack.device, ack.held_through, &change.stamp, &signature))
    }

    /// Remembers the server's public key (from a hello over TLS), which
    /// signs acknowledgements.
    pub fn set_server_key(&mut self, key: &str) -> Result<()> {
        write_meta(&self.connection, SERVER_KEY, key)
    }

    /// Applies a pulled page and moves the cursor to `next`, in one
    /// transaction: a sync killed mid-pull resumes from the last page kept.
    pub fn apply_pulled(
        &mut self,
        local_wall_ms: u64,
        changes: Vec<Change>,
        next: u64,
        check: Option<&str>,
    ) -> Result<Received> {
        self.write(local_wall_ms, |session| {
            let received = receive_all(session, changes)?;
            write_meta(&session.tx, "pull_cursor", &next.to_string())?;
            match check {
                Some(check) => write_meta(&session.tx, "pull_check", check)?,
                None => {
                    session
                        .tx
                        .execute("DELETE FROM meta WHERE key = 'pull_check'", [])?;
                }
            }
            Ok(received)
        })
    }

    /// Learns the server's time: corrects the clock, and re-stamps the
    /// changes that never left this laptop and are stamped beyond the
    /// corrected time plus the allowed drift (a clock that said 2035).
    pub fn correct_clock(&mut self, server_ms: u64, local_wall_ms: u64) -> Result<ClockCorrection> {
        self.write(local_wall_ms, |session| {
            let moved_ms = session.clock.correct_to_server(server_ms, local_wall_ms);
            // The whole outbox as the core's rule sees it; the rule picks.
            let entries: Vec<OutboxEntry> = {
                let mut statement = session.tx.prepare_cached(concat!(
                    "SELECT outbox.sequence, outbox.shared, ",
                    change_columns!(),
                    " FROM outbox JOIN changes c ON c.seq = outbox.change_seq ",
                    change_joins!(),
                    " ORDER BY outbox.sequence"
                ))?;
                let mut rows = statement.query([])?;
                let mut entries = Vec::new();
                while let Some(row) = rows.next()? {
                    entries.push(OutboxEntry {
                        sequence: row.get::<_, i64>(0)? as u64,
                        shared: row.get(1)?,
                        change: crate::change_from_row(row, 2)?,
                    });
                }
                entries
            };
            let future =
                faenban_core::replica::restamp_future(&entries, &mut session.clock, local_wall_ms);
            let restamped = future.len() as u64;
            for (sequence, change) in future {
                // Two corrections to the same millisecond of server time can
                // hand out the same reading again: never reused.
                let (_, log_seq) = session.apply_own(change, false)?;
                session
                    .tx
                    .prepare_cached("UPDATE outbox SET change_seq = ?1 WHERE sequence = ?2")?
                    .execute(params![log_seq, sequence as i64])?;
            }
            Ok(ClockCorrection {
                moved_ms,
                restamped,
            })
        })
    }

    /// Records that a sync finished now.
    pub fn finish_sync(&mut self, local_wall_ms: u64) -> Result<()> {
        write_meta(&self.connection, "last_sync_ms", &local_wall_ms.to_string())
    }

    /// Remembers who devices are, as a pull names them.
    pub fn remember_devices(&mut self, names: &[DeviceName]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let tx = self.connection.transaction()?;
        for name in names {
            tx.prepare_cached(
                "INSERT INTO device_names (device, name, account) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (device) DO UPDATE SET name = excluded.name, account = excluded.account",
            )?
            .execute(params![name.device.to_string(), name.name, name.account])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Who each device this laptop heard of is: its name and its account's.
    pub fn device_names(&self) -> Result<std::collections::HashMap<DeviceId, (String, String)>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT device, name, account FROM device_names")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (device, name, account) = row?;
            Ok((parse_device(&device)?, (name, account)))
        })
        .collect()
    }

    /// The server's key, as learned at this laptop's last hello.
    pub fn server_key(&self) -> Result<Option<PublicKey>> {
        Ok(read_meta(&self.connection, SERVER_KEY)?
            .as_deref()
            .and_then(PublicKey::from_hex))
    }

    /// Where this laptop's pull stands, as a letter tells the server.
    pub fn pull_from(&self) -> Result<PullFrom> {
        Ok(PullFrom {
            since: self.pull_cursor()?,
            check: self.pull_check()?,
        })
    }

    /// Keeps sealed letters (for the server) or replies (for their
    /// devices) that came in a bundle, to pass on; one already kept is not
    /// kept twice. Of a device's replies, the latest sixteen are kept.
    /// Returns how many were new.
    pub fn carry(
        &mut self,
        local_wall_ms: u64,
        to_server: bool,
        items: Vec<SealedBytes>,
    ) -> Result<usize> {
        let tx = self.connection.transaction()?;
        let mut new = 0;
        for item in items {
            let digest = Sha256::digest(&item.body).to_vec();
            let held: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM sealed WHERE digest = ?1)")?
                .query_row([&digest], |row| row.get(0))?;
            if held {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO sealed (device, to_server, body, digest, received_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                item.device.to_string(),
                to_server,
                item.body,
                digest,
                local_wall_ms as i64
            ])?;
            if !to_server {
                // A device's replies are kept (a courier cannot tell which
                // one it needs), the latest few: each answers every held-back
                // change from the outbox's start.
                tx.prepare_cached(
                    "DELETE FROM sealed WHERE to_server = 0 AND device = ?1 AND id NOT IN \
                     (SELECT id FROM sealed WHERE to_server = 0 AND device = ?1 ORDER BY id DESC LIMIT ?2)",
                )?
                .execute(params![item.device.to_string(), REPLIES_KEPT])?;
            }
            new += 1;
        }
        tx.commit()?;
        Ok(new)
    }

    /// The sealed letters this laptop carries for the server, oldest first.
    pub fn carried_letters(&self) -> Result<Vec<CarriedLetter>> {
        self.sealed_items(true)
    }

    /// The sealed replies this laptop carries back to their devices.
    pub fn carried_replies(&self) -> Result<Vec<CarriedLetter>> {
        self.sealed_items(false)
    }

    fn sealed_items(&self, to_server: bool) -> Result<Vec<CarriedLetter>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, device, body FROM sealed WHERE to_server = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([to_server], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (id, device, body) = row?;
            Ok(CarriedLetter {
                id,
                item: SealedBytes {
                    device: parse_device(&device)?,
                    body,
                },
            })
        })
        .collect()
    }

    /// The server answered a carried letter: the letter goes and the reply
    /// is kept to take back to its device, in one transaction. `None` when
    /// the server refused the letter as one it cannot open (it would never
    /// take it; its device still has its outbox).
    pub fn letter_answered(
        &mut self,
        local_wall_ms: u64,
        letter: i64,
        reply: Option<SealedBytes>,
    ) -> Result<()> {
        let tx = self.connection.transaction()?;
        tx.execute(
            "DELETE FROM sealed WHERE id = ?1 AND to_server = 1",
            [letter],
        )?;
        tx.commit()?;
        if let Some(reply) = reply {
            self.carry(local_wall_ms, false, vec![reply])?;
        }
        Ok(())
    }

    /// Takes in the server's reply to one of this laptop's letters, opened
    /// and verified: the changes it brings, each page with its cursor in
    /// one transaction, and its acknowledgement, which drops the outbox
    /// only when the server's signature on it verifies for the change the
    /// outbox holds at that sequence. The cursor moves only when the reply
    /// answers the pull from where this laptop's stands (an older reply
    /// brings its changes, and the cursor stays).
    pub fn take_reply(&mut self, local_wall_ms: u64, reply: Reply) -> Result<ReplyTaken> {
        let own = self.device()?.ok_or(Error::NotInitialized)?.id;
        if reply.device != own {
            return Err(Error::Corrupt("a reply for another device".into()));
        }
        let mut taken = ReplyTaken {
            refused: reply.refused,
            held_back: reply.held_back.len(),
            ..ReplyTaken::default()
        };
        if let Some(pulled) = reply.pulled {
            let follows = pulled.since == self.pull_cursor()?;
            taken.more = pulled.more;
            for page in pulled.pages {
                self.remember_devices(&page.devices)?;
                let changes = page
                    .changes
                    .decode()
                    .map_err(|error| Error::Corrupt(format!("a reply from the server: {error}")))?;
                let received = if follows {
                    self.apply_pulled(local_wall_ms, changes, page.next, page.check.as_deref())?
                } else {
                    self.apply_received(local_wall_ms, changes)?
                };
                taken.received.new += received.new;
                taken.received.duplicates += received.duplicates;
            }
            taken.cursor_moved = follows;
        }
        let ack = Ack {
            device: own,
            held_through: reply.held_through,
            signature: reply.ack,
        };
        if self.verifies_own_ack(&ack)? {
            self.acknowledge(
                local_wall_ms,
                ack.held_through,
                ack.signature.as_deref(),
                &reply.held_back,
            )?;
            taken.acknowledged = Some(ack.held_through);
        } else {
            taken.held_back = 0;
        }
        Ok(taken)
    }

    /// Applies changes without moving the pull cursor.
    fn apply_received(&mut self, local_wall_ms: u64, changes: Vec<Change>) -> Result<Received> {
        self.write(local_wall_ms, |session| receive_all(session, changes))
    }
}

/// Merges changes from elsewhere into the session; how many were new.
fn receive_all(session: &mut crate::Session<'_>, changes: Vec<Change>) -> Result<Received> {
    let mut received = Received::default();
    for change in changes {
        match session.receive(change)? {
            Outcome::Duplicate => received.duplicates += 1,
            _ => received.new += 1,
        }
    }
    Ok(received)
}

/// One row more than a run may hold: the row after tells whether the run
/// would end inside a record.
fn one_more(max_changes: usize) -> i64 {
    i64::try_from(max_changes)
        .unwrap_or(i64::MAX)
        .saturating_add(1)
}

fn collect_run(device: DeviceId, mut rows: rusqlite::Rows<'_>) -> Result<Option<OutboxRun>> {
    let mut run: Option<OutboxRun> = None;
    while let Some(row) = rows.next()? {
        let sequence: i64 = row.get(0)?;
        let change = crate::change_from_row(row, 1)?;
        match &mut run {
            None => {
                run = Some(OutboxRun {
                    device,
                    first_sequence: sequence as u64,
                    changes: vec![change],
                })
            }
            Some(run) => {
                // A run is unbroken; a gap (never expected) ends it.
                if run.first_sequence + run.changes.len() as u64 != sequence as u64 {
                    break;
                }
                run.changes.push(change);
            }
        }
    }
    Ok(run)
}

pub(crate) fn parse_device(text: &str) -> Result<DeviceId> {
    Uuid::parse_str(text)
        .map(DeviceId)
        .map_err(|error| Error::Corrupt(format!("device id {text}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faenban_core::{Hlc, RecordKey, RecordKind, Stamp};

    fn run(records: &[u128]) -> OutboxRun {
        let device = DeviceId::from_u128(1);
        OutboxRun {
            device,
            first_sequence: 1,
            changes: records
                .iter()
                .enumerate()
                .map(|(n, record)| Change {
                    stamp: Stamp::new(Hlc::at(n as u64 + 1), device),
                    record: RecordKey::new(RecordKind::Household, Uuid::from_u128(*record)),
                    field: "address".into(),
                    value: serde_json::Value::Null,
                    supersedes: Default::default(),
                    observed: Vec::new(),
                    previous_stamps: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_run_splits_into_contiguous_pieces_cut_between_records() {
        let records: Vec<u128> = (0..50).map(|n| n / 3).collect();
        let pieces = run(&records).split(7, usize::MAX);
        let mut next = 1;
        for piece in &pieces {
            assert_eq!(piece.first_sequence, next);
            assert!(!piece.changes.is_empty() && piece.changes.len() <= 7);
            next = piece.last_sequence() + 1;
        }
        assert_eq!(next, 51);
        // Every cut but the last falls between two records.
        let whole = run(&records).changes;
        for piece in &pieces[..pieces.len() - 1] {
            let at = piece.last_sequence() as usize;
            assert_ne!(whole[at - 1].record, whole[at].record);
        }
    }

    #[test]
    fn a_run_is_cut_between_records() {
        assert_eq!(run(&[1, 1, 2, 2, 2, 3]).cut(4).changes.len(), 2);
        assert_eq!(run(&[1, 1, 2, 2, 3]).cut(4).changes.len(), 4);
        assert_eq!(run(&[1, 2]).cut(4).changes.len(), 2);
        // One record longer than a batch is cut where it must be.
        assert_eq!(run(&[1, 1, 1, 1, 1]).cut(3).changes.len(), 3);
    }
}
