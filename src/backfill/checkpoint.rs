//! What earlier runs of `memshift backfill` finished: per group, the fingerprint of what
//! was imported (`<data_dir>/backfill/<agent>.sqlite`). A run skips the groups whose
//! fingerprint is unchanged, so an interrupted run resumes where it stopped and a later run
//! sends only the groups that changed since.

use crate::legacy::Section;
use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

pub struct Checkpoint {
    db: Connection,
    path: PathBuf,
    /// Groups finished since the last flush.
    finished: Vec<(Section, String, String)>,
}

impl Checkpoint {
    pub fn path(data_dir: &Path, agent: &str) -> PathBuf {
        data_dir.join("backfill").join(format!("{agent}.sqlite"))
    }

    /// Opens (creating) the checkpoint of `agent`.
    ///
    /// # Errors
    /// The file cannot be created or read.
    pub fn open(data_dir: &Path, agent: &str) -> anyhow::Result<Checkpoint> {
        let path = Checkpoint::path(data_dir, agent);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS finished (
                 section TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
                 finished_at TEXT NOT NULL, PRIMARY KEY (section, key));",
        )
        .with_context(|| format!("preparing {}", path.display()))?;
        Ok(Checkpoint {
            db,
            path,
            finished: Vec::new(),
        })
    }

    /// Forgets every finished group (`--restart`).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn clear(&mut self) -> anyhow::Result<()> {
        self.db
            .execute("DELETE FROM finished", [])
            .with_context(|| format!("clearing {}", self.path.display()))?;
        Ok(())
    }

    /// Whether the group was imported before as it is now.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn is_finished(
        &self,
        section: Section,
        key: &str,
        fingerprint: &str,
    ) -> anyhow::Result<bool> {
        let stored: Option<String> = self
            .db
            .query_row(
                "SELECT fingerprint FROM finished WHERE section = ?1 AND key = ?2",
                params![section.as_label(), key],
                |r| r.get(0),
            )
            .optional()
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(stored.as_deref() == Some(fingerprint))
    }

    /// Notes a group as imported; written at the next [`Checkpoint::flush`].
    pub fn finish(&mut self, section: Section, key: String, fingerprint: String) {
        self.finished.push((section, key, fingerprint));
    }

    /// Writes the groups finished since the last flush, in one transaction.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.finished.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().to_rfc3339();
        let tx = self
            .db
            .transaction()
            .with_context(|| format!("writing {}", self.path.display()))?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO finished (section, key, fingerprint, finished_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (section, key) DO UPDATE
                     SET fingerprint = excluded.fingerprint, finished_at = excluded.finished_at",
            )?;
            for (section, key, fingerprint) in &self.finished {
                insert.execute(params![section.as_label(), key, fingerprint, now])?;
            }
        }
        tx.commit()
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.finished.clear();
        Ok(())
    }
}
