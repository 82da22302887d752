//! Latched rollbacks (a signal, the admin endpoint, a trigger), kept in
//! `<data_dir>/rollback.json` so that a restarted proxy does not move reads forward again
//! by itself.

use super::triggers::Trigger;
use crate::config::AgentConfig;
use crate::metrics::RollbackReason;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tracing::error;

impl Latch {
    /// The rollback reason it stands for.
    pub fn reason(self) -> RollbackReason {
        match self {
            Latch::Signal => RollbackReason::Signal,
            Latch::Admin => RollbackReason::Admin,
            Latch::Inconsistency => RollbackReason::Inconsistency,
            Latch::Latency => RollbackReason::Latency,
            Latch::Errors => RollbackReason::Errors,
        }
    }
}

crate::labels! {
    /// A rollback that holds until an operator resumes.
    #[derive(PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Latch {
        Signal = "signal",
        Admin = "admin",
        Inconsistency = "inconsistency",
        Latency = "latency",
        Errors = "errors",
    }
}

impl From<Trigger> for Latch {
    fn from(t: Trigger) -> Latch {
        match t {
            Trigger::Inconsistency => Latch::Inconsistency,
            Trigger::Latency => Latch::Latency,
            Trigger::Errors => Latch::Errors,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    agents: BTreeMap<String, BTreeSet<Latch>>,
}

/// The latches kept for `agents`, in their order. A file that cannot be read back rolls
/// every agent back (as if by an operator): a lost latch must not move reads forward.
pub fn load(path: Option<&Path>, agents: &[AgentConfig]) -> Vec<BTreeSet<Latch>> {
    let saved = match path.map(std::fs::read) {
        None => Ok(Saved::default()),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(bytes)) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
    };
    match saved {
        Ok(mut saved) => agents
            .iter()
            .map(|a| saved.agents.remove(&a.name).unwrap_or_default())
            .collect(),
        Err(e) => {
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            error!(%path, "cannot read the rollback latches, rolling every agent back: {e}");
            agents
                .iter()
                .map(|_| BTreeSet::from([Latch::Admin]))
                .collect()
        }
    }
}

/// Writes the latches atomically (a temporary file renamed over the old one).
pub fn save(path: &Path, names: &[&str], latches: &[BTreeSet<Latch>]) -> anyhow::Result<()> {
    let saved = Saved {
        agents: names
            .iter()
            .zip(latches)
            .filter(|(_, l)| !l.is_empty())
            .map(|(n, l)| ((*n).to_owned(), l.clone()))
            .collect(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&saved)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    Ok(())
}
