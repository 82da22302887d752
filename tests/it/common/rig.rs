//! A proxy in a mirroring stage in front of one stand-in, and readers of both sides' data.

use super::pg::TestDb;
use super::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tempfile::TempDir;

/// A proxy in `dualwrite` in front of one stand-in, mirroring to `orchestrator`.
pub struct Rig {
    pub legacy: StandIn,
    pub proxy: Proxy,
    /// The proxy's whole configuration, for `memshift outbox …` and restarts.
    pub toml: String,
    pub agent: &'static str,
    _data: TempDir,
}

impl Rig {
    pub fn start(agent: &'static str, legacy: StandIn, orchestrator: &str, extra: &str) -> Rig {
        let data = TempDir::new().expect("tempdir");
        let toml = rig_toml(agent, &legacy.endpoint, orchestrator, data.path(), extra);
        let proxy = Proxy::start_toml(&toml);
        Rig {
            legacy,
            proxy,
            toml,
            agent,
            _data: data,
        }
    }

    /// Replaces the rig's flags file (atomically, as an editor does) with `flags` for its
    /// agent.
    pub fn set_flags(&self, flags: &str) {
        write_flags(self._data.path(), &[(self.agent, flags)]);
    }

    /// The directory of the flags file (and of the default panic file).
    pub fn flags_dir(&self) -> &Path {
        self._data.path()
    }

    pub fn socket(&self, ctx: &zmq::Context) -> zmq::Socket {
        req_socket(ctx, self.proxy.endpoint(self.agent))
    }

    /// Waits until the proxy has put `n` writes in the outbox.
    pub fn wait_queued(&self, n: usize) {
        self.proxy.metrics_when(&format!("{n} writes queued"), |m| {
            metric_sum(
                m,
                "memshift_mirror_writes_total",
                &[("agent", self.agent), ("outcome", "queued")],
            ) >= n as f64
        });
    }

    /// `memshift outbox drain`; returns its exit code.
    pub fn drain(&self) -> i32 {
        let out = memshift_cli(
            &["outbox", "drain", "--agent", self.agent, "--timeout", "60s"],
            &self.toml,
        );
        out.status.code().expect("exit code")
    }

    pub fn status(&self) -> Value {
        let out = memshift_cli(&["outbox", "status", "--json"], &self.toml);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).expect("json")[0].clone()
    }
}

/// The configuration of a rig, and its flags file `<data>/flags.toml`, written now.
///
/// `extra` starts with the agent's flags (`stage = …`, percentages; the stage defaults to
/// `dualwrite`), which go to the flags file; from its first `[table]` on it is more
/// configuration: `[mirror]` keys, then `[rollout]` keys, then any other tables.
pub fn rig_toml(agent: &str, legacy: &str, orchestrator: &str, data: &Path, extra: &str) -> String {
    let (flags, rest) = split_table(extra);
    write_flags(data, &[(agent, flags)]);
    let (mirror, rest) = match rest.strip_prefix("[mirror]") {
        Some(keys) => split_table(keys),
        None => ("", rest),
    };
    let (rollout, rest) = match rest.strip_prefix("[rollout]") {
        Some(keys) => split_table(keys),
        None => ("", rest),
    };
    let agents = agent_toml(agent, agent, legacy, "");
    proxy_toml(
        "",
        &format!(
            "{agents}[mirror]\norchestrator = \"{orchestrator}\"\ndata_dir = \"{data}\"\n\
             timeout = \"500ms\"\nbackoff_base = \"20ms\"\nbackoff_max = \"300ms\"\n{mirror}\n\
             [rollout]\nflags = \"{data}/flags.toml\"\n{rollout}\n{rest}",
            data = data.display()
        ),
    )
}

/// `text` cut before its first `[table]` line.
fn split_table(text: &str) -> (&str, &str) {
    let cut = if text.starts_with('[') {
        0
    } else {
        text.find("\n[").map_or(text.len(), |i| i + 1)
    };
    text.split_at(cut)
}

/// Writes `<dir>/flags.toml` with one table per agent (`stage = "dualwrite"` unless the
/// flags name a stage), atomically, as an operator's editor would.
pub fn write_flags(dir: &Path, agents: &[(&str, &str)]) {
    let mut text = String::new();
    for (agent, flags) in agents {
        let stage = if flags.contains("stage =") {
            ""
        } else {
            "stage = \"dualwrite\"\n"
        };
        text.push_str(&format!("[agents.{agent}]\n{stage}{flags}\n"));
    }
    let tmp = dir.join(".flags.toml.tmp");
    std::fs::write(&tmp, text).expect("write flags");
    std::fs::rename(&tmp, dir.join("flags.toml")).expect("rename flags");
}

pub fn session_store(legacy: &StandIn) -> rusqlite::Connection {
    rusqlite::Connection::open(legacy.data_dir.join("data/session_memory.db")).expect("open")
}

/// `session|role|content` of every legacy interaction, in insertion order.
pub fn legacy_interactions(legacy: &StandIn) -> Vec<String> {
    let db = session_store(legacy);
    let mut stmt = db
        .prepare("SELECT session_id || '|' || role || '|' || content FROM interactions ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The same, from the orchestrator's active conversation memories in chronological order.
pub fn mirrored_interactions(db: &mut TestDb) -> Vec<String> {
    db.texts(
        "SELECT session_id || '|' || (content->>'role') || '|' || (content->>'text')
         FROM memory_entries WHERE is_active AND memory_type = 'conversation'
         ORDER BY created_at, memory_id",
    )
}

pub fn no_duplicates(db: &mut TestDb) {
    let dupes = db.scalar(
        "SELECT count(*) FROM (SELECT session_id, user_id, content::text FROM memory_entries
         GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    );
    assert_eq!(dupes, 0, "the same write landed twice");
}

/// `user → [memory…]` of a jarvis store.
pub fn jarvis_store(legacy: &StandIn) -> BTreeMap<String, Vec<Value>> {
    let store: BTreeMap<String, Vec<Value>> = serde_json::from_slice(
        &std::fs::read(legacy.data_dir.join("jarvis_memory_store.json")).unwrap(),
    )
    .unwrap();
    store
        .into_iter()
        .map(|(u, items)| (u, items.into_iter().map(|i| i["memory"].clone()).collect()))
        .filter(|(_, items): &(String, Vec<Value>)| !items.is_empty())
        .collect()
}

pub fn jarvis_mirrored(db: &mut TestDb) -> BTreeMap<String, Vec<Value>> {
    let mut mirrored: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in db.texts(
        "SELECT json_build_array(user_id, content->'memory')::text FROM memory_entries
         WHERE is_active AND memory_type = 'interaction' ORDER BY created_at, memory_id",
    ) {
        let v: Value = serde_json::from_str(&row).unwrap();
        mirrored
            .entry(v[0].as_str().unwrap().to_owned())
            .or_default()
            .push(v[1].clone());
    }
    mirrored
}

/// A fresh database, an orchestrator on it, and a [`Rig`] of `agent` in front of a fresh
/// stand-in, mirroring to that orchestrator with `extra` keys.
pub fn fresh_rig(agent: &'static str, extra: &str) -> (TestDb, super::pg::Orchestrator, Rig) {
    let db = TestDb::new();
    let orch = super::pg::Orchestrator::start(&db, "", "");
    let rig = Rig::start(agent, StandIn::start(agent), &orch.endpoint, extra);
    (db, orch, rig)
}
