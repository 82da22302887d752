//! The outbox: a durable local queue of mirrored operations, one SQLite file per agent and
//! direction.
//!
//! An entry is one operation of a write one side accepted, to be carried to the other,
//! under the write's key (session or user): an orchestrator operation ([`MirrorOp`]) of a
//! write the legacy agent accepted, or (the *reverse* outbox, stages `rampdown` and
//! `complete`) a write the orchestrator took first, to replay to legacy. Entries get increasing ids when they
//! are appended, and a key's entries are delivered in id order: only the lowest pending id
//! of a key (its *head*) is ever eligible. Delivered entries are deleted; an entry that
//! cannot be delivered is kept as a *dead letter* with its reason, until an operator
//! re-queues it (`memshift outbox retry-dead`), which puts it back in its original place.
//!
//! The file is SQLite in WAL mode, so the proxy's threads and the `memshift outbox` commands
//! of an operator can use it at once. Appends commit with the configured durability
//! (`full`: fsynced, survives a power cut); settling deliveries commits without waiting for
//! the disk, because losing one only means delivering an entry twice, which the ids make
//! harmless. One process at a time may deliver from an outbox: [`DeliveryLock`].
//!
//! Every entry id is unique for the life of the file (`AUTOINCREMENT`), and the file has an
//! *epoch*, a uuid chosen when it was created; `"<epoch>/<id>"` names an operation for good,
//! and the ids of the memories it creates derive from that name.

mod lock;

pub use lock::DeliveryLock;

use crate::config::Durability;
use crate::translate::MirrorOp;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bumped when the layout below changes incompatibly; an outbox of another version is
/// refused rather than misread.
const SCHEMA_VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL,
    -- The legacy action the operation mirrors (for metrics and operators).
    action          TEXT NOT NULL,
    -- The operation, as JSON (translate::MirrorOp, or mirror::Replay in a reverse outbox).
    op              TEXT NOT NULL,
    -- When the proxy saw the legacy agent accept the write, in unix microseconds.
    accepted_at     INTEGER NOT NULL,
    -- Failed deliveries so far, the last failure, and when the next try may start
    -- (unix milliseconds).
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    -- Set when the entry was dead-lettered (unix milliseconds), with the reason.
    dead_at         INTEGER,
    dead_reason     TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS entries_pending ON entries (key, id) WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS entries_dead ON entries (id) WHERE dead_at IS NOT NULL;
-- Each key's head: its oldest pending entry, the only one of the key that may be sent.
-- Kept by triggers in the same transactions as the entries, so that finding the next
-- deliveries costs O(keys in the answer), not a scan of a backlog of millions.
CREATE TABLE IF NOT EXISTS heads (
    key TEXT PRIMARY KEY,
    id  INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS heads_id ON heads (id);
-- Pending and dead counts, kept by the same triggers: the gauges read them every second,
-- and counting a backlog of millions that often would cost the primary path CPU.
CREATE TABLE IF NOT EXISTS counts (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO counts (name, value) VALUES ('pending', 0), ('dead', 0)
    ON CONFLICT (name) DO NOTHING;
CREATE TRIGGER IF NOT EXISTS entries_head_on_insert AFTER INSERT ON entries
WHEN NEW.dead_at IS NULL BEGIN
    INSERT INTO heads (key, id) VALUES (NEW.key, NEW.id) ON CONFLICT (key) DO NOTHING;
    UPDATE counts SET value = value + 1 WHERE name = 'pending';
END;
CREATE TRIGGER IF NOT EXISTS entries_head_on_delete AFTER DELETE ON entries BEGIN
    DELETE FROM heads WHERE key = OLD.key;
    INSERT INTO heads (key, id)
        SELECT key, min(id) FROM entries WHERE key = OLD.key AND dead_at IS NULL GROUP BY key;
    UPDATE counts SET value = value - 1
        WHERE name = CASE WHEN OLD.dead_at IS NULL THEN 'pending' ELSE 'dead' END;
END;
CREATE TRIGGER IF NOT EXISTS entries_head_on_dead AFTER UPDATE OF dead_at ON entries
WHEN (OLD.dead_at IS NULL) <> (NEW.dead_at IS NULL) BEGIN
    DELETE FROM heads WHERE key = NEW.key;
    INSERT INTO heads (key, id)
        SELECT key, min(id) FROM entries WHERE key = NEW.key AND dead_at IS NULL GROUP BY key;
    UPDATE counts SET value = value + CASE WHEN NEW.dead_at IS NULL THEN 1 ELSE -1 END
        WHERE name = 'pending';
    UPDATE counts SET value = value + CASE WHEN NEW.dead_at IS NULL THEN -1 ELSE 1 END
        WHERE name = 'dead';
END;
-- Writes that were accepted by the legacy agent but could not be put in the outbox (it
-- was full or failing), per key: what `memshift reconcile` must repair.
CREATE TABLE IF NOT EXISTS dropped (
    key      TEXT NOT NULL,
    reason   TEXT NOT NULL,
    count    INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (key, reason)
) STRICT;
";

/// Errors of the outbox file. Messages name the file and the failure, never an entry's
/// content.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("outbox {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("outbox {path}: creating its directory: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, OutboxError>;

/// What an outbox carries: serialized as its entries' `op`.
pub trait Operation: Serialize + DeserializeOwned {
    /// What the operation does, for operators (`create_session`, `replay`, …).
    fn operation(&self) -> &'static str;
}

impl Operation for MirrorOp {
    fn operation(&self) -> &'static str {
        MirrorOp::operation(self)
    }
}

/// An operation to append.
#[derive(Clone, Debug)]
pub struct NewEntry<O = MirrorOp> {
    pub key: String,
    pub action: &'static str,
    pub op: O,
    pub accepted_at: DateTime<Utc>,
}

/// A pending (or dead) entry.
#[derive(Clone, Debug)]
pub struct Entry<O = MirrorOp> {
    pub id: i64,
    pub key: String,
    pub action: String,
    pub op: O,
    pub accepted_at: DateTime<Utc>,
    pub attempts: u32,
}

/// What became of one delivery.
#[derive(Clone, Debug)]
pub enum Settled {
    Delivered {
        id: i64,
    },
    /// Failed; eligible again at `retry_at`.
    Retry {
        id: i64,
        attempts: u32,
        retry_at: DateTime<Utc>,
        error: String,
    },
    Dead {
        id: i64,
        attempts: u32,
        reason: String,
    },
}

/// Counts for `memshift outbox status` and the gauges.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub pending: u64,
    /// When the oldest pending entry's write was accepted.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Pending entries waiting out a backoff after a failed delivery.
    pub retrying: u64,
    pub dead: u64,
    /// Writes never put in the outbox (see the `dropped` table), all keys together.
    pub dropped: u64,
}

/// A dead letter, as `memshift outbox status` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub key: String,
    pub action: String,
    /// The operation (`create_session`, `create`, …, `replay`).
    pub operation: &'static str,
    pub accepted_at: DateTime<Utc>,
    pub dead_at: DateTime<Utc>,
    pub attempts: u32,
    pub reason: String,
}

/// Writes that could not be put in the outbox, per key and reason.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Dropped {
    pub key: String,
    pub reason: String,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// One agent's outbox file of one direction, opened by one thread.
pub struct Outbox<O = MirrorOp> {
    conn: Connection,
    path: PathBuf,
    epoch: String,
    op: PhantomData<fn() -> O>,
}

impl Outbox {
    /// Where `agent`'s outbox lives under `data_dir`.
    pub fn path(data_dir: &Path, agent: &str) -> PathBuf {
        data_dir.join(format!("{agent}.outbox.sqlite"))
    }

    /// Where `agent`'s reverse outbox (writes on their way to legacy) lives.
    pub fn reverse_path(data_dir: &Path, agent: &str) -> PathBuf {
        data_dir.join(format!("{agent}.reverse.sqlite"))
    }
}

impl<O: Operation> Outbox<O> {
    /// Opens the outbox, creating the directory, the file and its epoch if needed.
    ///
    /// # Errors
    /// The directory or file cannot be created or opened, or the file is not an outbox of
    /// this version.
    pub fn open(path: &Path, durability: Durability) -> Result<Outbox<O>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Directory {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(sqlite(path))?;
        let mut outbox = Outbox::from_connection(conn, path)?;
        outbox.initialise(durability)?;
        Ok(outbox)
    }

    /// Opens an existing outbox, for the operator's commands; it is not created.
    ///
    /// # Errors
    /// The file does not exist, cannot be opened, or is not an outbox of this version.
    pub fn open_existing(path: &Path) -> Result<Outbox<O>> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(path))?;
        let mut outbox = Outbox::from_connection(conn, path)?;
        outbox.epoch = outbox.read_epoch()?.ok_or_else(|| OutboxError::Invalid {
            path: path.to_owned(),
            message: "not an outbox (no epoch)".to_owned(),
        })?;
        Ok(outbox)
    }

    fn from_connection(conn: Connection, path: &Path) -> Result<Outbox<O>> {
        // Writers from other threads and processes hold the lock for one short commit.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite(path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite(path))?;
        Ok(Outbox {
            conn,
            path: path.to_owned(),
            epoch: String::new(),
            op: PhantomData,
        })
    }

    fn initialise(&mut self, durability: Durability) -> Result<()> {
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        self.conn
            .pragma_update(None, "synchronous", sync)
            .map_err(sqlite(&self.path))?;
        let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
        tx.execute_batch(SCHEMA).map_err(sqlite(&self.path))?;
        let fresh = uuid::Uuid::new_v4().to_string();
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('epoch', ?1), ('schema', ?2)
             ON CONFLICT (name) DO NOTHING",
            params![fresh, SCHEMA_VERSION],
        )
        .map_err(sqlite(&self.path))?;
        tx.commit().map_err(sqlite(&self.path))?;
        self.epoch = self.read_epoch()?.unwrap_or(fresh);
        Ok(())
    }

    fn read_epoch(&self) -> Result<Option<String>> {
        let meta = |name: &str| {
            self.conn
                .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
        };
        let schema = match meta("schema") {
            Ok(s) => s,
            // No meta table: not an outbox.
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
                return Ok(None);
            }
            Err(e) => return Err(sqlite(&self.path)(e)),
        };
        if let Some(v) = schema.as_deref()
            && v != SCHEMA_VERSION
        {
            return Err(OutboxError::Invalid {
                path: self.path.clone(),
                message: format!("outbox format {v}, this memshift reads format {SCHEMA_VERSION}"),
            });
        }
        meta("epoch").map_err(sqlite(&self.path))
    }

    pub fn file(&self) -> &Path {
        &self.path
    }

    /// The name of entry `id` for good: unique across every outbox ever created.
    pub fn op_id(&self, id: i64) -> String {
        format!("{}/{id}", self.epoch)
    }

    /// Appends `entries` in one transaction, in order.
    ///
    /// # Errors
    /// The database failed (disk full, I/O error); nothing was appended.
    pub fn append(&mut self, entries: &[NewEntry<O>]) -> Result<()> {
        let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO entries (key, action, op, accepted_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sqlite(&self.path))?;
            for e in entries {
                let op = serde_json::to_string(&e.op).expect("an operation always serializes");
                insert
                    .execute(params![
                        e.key,
                        e.action,
                        op,
                        e.accepted_at.timestamp_micros()
                    ])
                    .map_err(sqlite(&self.path))?;
            }
        }
        tx.commit().map_err(sqlite(&self.path))
    }

    /// Records writes that were not appended, per key and reason.
    ///
    /// # Errors
    /// The database failed.
    pub fn record_dropped(&mut self, keys: &[(String, &str)], at: DateTime<Utc>) -> Result<()> {
        let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO dropped (key, reason, count, first_at, last_at)
                     VALUES (?1, ?2, 1, ?3, ?3)
                     ON CONFLICT (key, reason) DO UPDATE SET count = count + 1, last_at = ?3",
                )
                .map_err(sqlite(&self.path))?;
            for (key, reason) in keys {
                upsert
                    .execute(params![key, reason, at.timestamp_millis()])
                    .map_err(sqlite(&self.path))?;
            }
        }
        tx.commit().map_err(sqlite(&self.path))
    }

    /// Up to `limit` heads eligible at `now` (each key's oldest pending entry, unless it
    /// waits out a backoff), oldest first, skipping the keys `busy` says are in flight.
    ///
    /// # Errors
    /// The database failed, or an entry does not parse (a corrupted file).
    pub fn heads(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: impl Fn(&str) -> bool,
    ) -> Result<Vec<Entry<O>>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, e.key, e.action, e.op, e.accepted_at, e.attempts
                 FROM heads h JOIN entries e ON e.id = h.id
                 WHERE e.next_attempt_at <= ?1
                 ORDER BY h.id",
            )
            .map_err(sqlite(&self.path))?;
        let mut rows = stmt
            .query([now.timestamp_millis()])
            .map_err(sqlite(&self.path))?;
        let mut heads = Vec::new();
        while heads.len() < limit {
            let Some(row) = rows.next().map_err(sqlite(&self.path))? else {
                break;
            };
            let key: String = row.get(1).map_err(sqlite(&self.path))?;
            if busy(&key) {
                continue;
            }
            let id: i64 = row.get(0).map_err(sqlite(&self.path))?;
            let op: String = row.get(3).map_err(sqlite(&self.path))?;
            let op = serde_json::from_str(&op).map_err(|e| OutboxError::Invalid {
                path: self.path.clone(),
                message: format!("entry {id} does not parse: {e}"),
            })?;
            heads.push(Entry {
                id,
                key,
                action: row.get(2).map_err(sqlite(&self.path))?,
                op,
                accepted_at: micros(row.get(4).map_err(sqlite(&self.path))?),
                attempts: row.get(5).map_err(sqlite(&self.path))?,
            });
        }
        Ok(heads)
    }

    /// When the earliest entry now waiting out a backoff becomes eligible.
    ///
    /// # Errors
    /// The database failed.
    pub fn next_retry(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        self.conn
            .query_row(
                "SELECT min(e.next_attempt_at) FROM heads h JOIN entries e ON e.id = h.id
                 WHERE e.next_attempt_at > ?1",
                [now.timestamp_millis()],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|t| t.map(millis))
            .map_err(sqlite(&self.path))
    }

    /// Records what became of deliveries, in one transaction.
    ///
    /// # Errors
    /// The database failed; nothing was recorded (the entries will be delivered again).
    pub fn settle(&mut self, outcomes: &[Settled], now: DateTime<Utc>) -> Result<()> {
        let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
        for outcome in outcomes {
            let result = match outcome {
                Settled::Delivered { id } => tx
                    .prepare_cached("DELETE FROM entries WHERE id = ?1")
                    .and_then(|mut s| s.execute([id])),
                Settled::Retry {
                    id,
                    attempts,
                    retry_at,
                    error,
                } => tx
                    .prepare_cached(
                        "UPDATE entries SET attempts = ?2, next_attempt_at = ?3, last_error = ?4
                         WHERE id = ?1",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, attempts, retry_at.timestamp_millis(), error])
                    }),
                Settled::Dead {
                    id,
                    attempts,
                    reason,
                } => tx
                    .prepare_cached(
                        "UPDATE entries SET attempts = ?2, dead_at = ?3, dead_reason = ?4,
                                last_error = ?4
                         WHERE id = ?1",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, attempts, now.timestamp_millis(), reason])
                    }),
            };
            result.map_err(sqlite(&self.path))?;
        }
        tx.commit().map_err(sqlite(&self.path))
    }

    /// Pending entries per key, for the mirror's key activity at start-up.
    ///
    /// # Errors
    /// The database failed.
    pub fn pending_keys(&self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, count(*) FROM entries WHERE dead_at IS NULL GROUP BY key")
            .map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sqlite(&self.path))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sqlite(&self.path))
    }

    /// Counts of pending, retrying, dead and dropped.
    ///
    /// # Errors
    /// The database failed.
    pub fn stats(&self, now: DateTime<Utc>) -> Result<Stats> {
        self.conn
            .query_row(
                // Only heads are ever tried, so only heads can be waiting out a backoff; and
                // ids grow with time, so the oldest pending entry is the smallest head.
                "SELECT
                   (SELECT value FROM counts WHERE name = 'pending'),
                   (SELECT accepted_at FROM entries WHERE id = (SELECT min(id) FROM heads)),
                   (SELECT count(*) FROM heads h JOIN entries e ON e.id = h.id
                     WHERE e.next_attempt_at > ?1),
                   (SELECT value FROM counts WHERE name = 'dead'),
                   (SELECT coalesce(sum(count), 0) FROM dropped)",
                [now.timestamp_millis()],
                |r| {
                    Ok(Stats {
                        pending: r.get(0)?,
                        oldest_pending: r.get::<_, Option<i64>>(1)?.map(micros),
                        retrying: r.get(2)?,
                        dead: r.get(3)?,
                        dropped: r.get(4)?,
                    })
                },
            )
            .map_err(sqlite(&self.path))
    }

    /// The oldest `limit` dead letters.
    ///
    /// # Errors
    /// The database failed.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, key, action, op, accepted_at, dead_at, attempts, dead_reason
                 FROM entries WHERE dead_at IS NOT NULL ORDER BY id LIMIT ?1",
            )
            .map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                let op: String = r.get(3)?;
                Ok(DeadLetter {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    action: r.get(2)?,
                    operation: serde_json::from_str::<O>(&op)
                        .map_or("unreadable", |op| op.operation()),
                    accepted_at: micros(r.get(4)?),
                    dead_at: millis(r.get(5)?),
                    attempts: r.get(6)?,
                    reason: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                })
            })
            .map_err(sqlite(&self.path))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sqlite(&self.path))
    }

    /// Writes never appended, per key and reason.
    ///
    /// # Errors
    /// The database failed.
    pub fn dropped(&self, limit: usize) -> Result<Vec<Dropped>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, reason, count, first_at, last_at FROM dropped
                 ORDER BY last_at DESC LIMIT ?1",
            )
            .map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(Dropped {
                    key: r.get(0)?,
                    reason: r.get(1)?,
                    count: r.get(2)?,
                    first_at: millis(r.get(3)?),
                    last_at: millis(r.get(4)?),
                })
            })
            .map_err(sqlite(&self.path))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sqlite(&self.path))
    }

    /// Puts dead letters back in the queue, in their original place, with their attempts
    /// reset: all of them, or the given ids. Returns how many were re-queued.
    ///
    /// # Errors
    /// The database failed; nothing was re-queued.
    pub fn retry_dead(&mut self, ids: Option<&[i64]>) -> Result<usize> {
        let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
        let requeue = "UPDATE entries SET dead_at = NULL, dead_reason = NULL, attempts = 0,
                              next_attempt_at = 0
                       WHERE dead_at IS NOT NULL";
        let run = || -> rusqlite::Result<usize> {
            match ids {
                None => tx.execute(requeue, []),
                Some(ids) => ids.iter().try_fold(0, |n, id| {
                    Ok(n + tx.execute(&format!("{requeue} AND id = ?1"), [id])?)
                }),
            }
        };
        let n = run().map_err(sqlite(&self.path))?;
        tx.commit().map_err(sqlite(&self.path))?;
        Ok(n)
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
    move |source| OutboxError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

fn millis(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap_or_default()
}

#[cfg(test)]
mod tests;
