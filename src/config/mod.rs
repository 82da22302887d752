//! Configuration: `config/memshift.toml`, then `MEMSHIFT_` environment overrides.
//!
//! Everything here needs a restart to change (bind addresses, timeouts, pool sizes); the
//! live flags (stages, percentages, rollback) are in a file of their own, named by
//! `[rollout] flags` and read by [`parse_flags`].
//! Loading goes: figment merges the layers → [`reader`] walks the merged tree, reading each
//! known key into a typed value and recording every mistake with its origin → a validation
//! pass checks what involves several keys. Any mistake and the whole load fails with all of
//! them ([`ConfigErrors`]); the CLI exits 64.

mod flags_file;
mod mirror;
mod orchestrator;
mod reader;
mod rollout;

pub use flags_file::{FlagsFile, parse_flags};
pub use rollout::{AutoRollback, GateMode, RolloutSettings};

pub use mirror::{Durability, LiveSettings, MirrorSettings, ShadowSettings};

pub use orchestrator::{
    DatabaseSettings, DatabaseUrl, EmbeddingProvider, EmbeddingSettings, OrchestratorSettings,
};
pub use reader::ConfigError;

use crate::guard::GuardPolicy;
use crate::profile::Profile;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use reader::{Errors, Table};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The prefix of environment overrides: `MEMSHIFT_PROXY__SHUTDOWN_GRACE=5s` sets
/// `proxy.shutdown_grace`. Only variables naming a `section__key` are read, so that
/// `MEMSHIFT_CONFIG` and friends are not mistaken for configuration keys.
pub const ENV_PREFIX: &str = "MEMSHIFT_";

/// A whole, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub proxy: ProxySettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    /// One entry per legacy agent memshift fronts; `memshift proxy` needs at least one.
    pub agents: Vec<AgentConfig>,
    pub database: DatabaseSettings,
    pub orchestrator: OrchestratorSettings,
    pub embedding: EmbeddingSettings,
    pub mirror: MirrorSettings,
    pub shadow: ShadowSettings,
    pub live: LiveSettings,
    pub rollout: RolloutSettings,
}

/// `[proxy]`: how every forwarder behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    /// How long a graceful shutdown waits for in-flight requests before giving up on them.
    pub shutdown_grace: Duration,
    /// Requests in flight to one legacy agent at most. Past it the proxy stops reading new
    /// requests (backpressure on the clients) rather than queueing without bound.
    pub max_in_flight: usize,
    /// How long a closing socket may still flush queued messages.
    pub linger: Duration,
    /// ZMTP heartbeat period on both sides, to notice a peer that froze without closing.
    pub heartbeat_interval: Duration,
    /// A peer silent for this long, or whose handshake is not done by then, is disconnected.
    pub heartbeat_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            shutdown_grace: Duration::from_secs(10),
            max_in_flight: 10_000,
            linger: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
        }
    }
}

/// `[metrics]`: the HTTP endpoint with `/metrics` and `/healthz`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogSettings {
    /// A `tracing` filter directive (`info`, `memshift=debug`); `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[[agents]]`: one legacy agent and the proxy in front of it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Names the agent in metrics and logs; unique; `[a-z0-9_]`.
    pub name: String,
    pub profile: Profile,
    /// Where the agent's clients connect: the port the agent used to have.
    pub listen: Endpoint,
    /// Where the agent itself now listens.
    pub legacy: Endpoint,
    /// A request the agent has not answered by then counts as timed out and is forgotten;
    /// a later reply is dropped. Set it above the longest timeout any client uses.
    pub legacy_timeout: Duration,
    pub guard: GuardPolicy,
}

const DEFAULT_LEGACY_TIMEOUT: Duration = Duration::from_secs(30);

/// A ZeroMQ endpoint: `tcp://host:port`, `ipc://path` or `inproc://name`. A `*` port (bind
/// to any free port) is allowed where memshift binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn parse_bind(s: &str) -> Result<Endpoint, String> {
        Endpoint::parse(s, true)
    }

    pub fn parse_connect(s: &str) -> Result<Endpoint, String> {
        Endpoint::parse(s, false)
    }

    fn parse(s: &str, bind: bool) -> Result<Endpoint, String> {
        let bad = |why: &str| Err(format!("invalid endpoint {s:?}: {why}"));
        let Some((scheme, rest)) = s.split_once("://") else {
            return bad("expected tcp://host:port, ipc://path or inproc://name");
        };
        match scheme {
            "ipc" | "inproc" if !rest.is_empty() => Ok(Endpoint(s.to_owned())),
            "ipc" | "inproc" => bad("empty address"),
            "tcp" => {
                let Some((host, port)) = rest.rsplit_once(':') else {
                    return bad("expected tcp://host:port");
                };
                if host.is_empty() {
                    return bad("empty host");
                }
                match port {
                    "*" if bind => Ok(Endpoint(s.to_owned())),
                    "*" => bad("a connect endpoint needs a port number"),
                    p if p.parse::<u16>().is_ok_and(|n| n > 0) => Ok(Endpoint(s.to_owned())),
                    _ => bad("port must be 1-65535"),
                }
            }
            _ => bad("unsupported transport (tcp, ipc, inproc)"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every mistake found in one load.
#[derive(Debug, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads `path`, then the `MEMSHIFT_` environment overrides.
///
/// # Errors
/// Every mistake at once: a missing or unparsable file, unknown keys, values of the wrong
/// type or format, and inconsistencies between keys.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    if !path.is_file() {
        return Err(ConfigErrors(vec![ConfigError {
            origin,
            path: String::new(),
            message: "configuration file not found".to_owned(),
        }]));
    }
    let figment = Figment::new().merge(Toml::file_exact(path)).merge(
        Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|key| key.as_str().contains('.')),
    );
    from_figment(&figment, origin)
}

/// The merged tree of a figment; a syntax error in any layer is reported with `origin`.
fn merged_tree(figment: &Figment, origin: &str) -> Result<Value, ConfigErrors> {
    let tree = figment.extract::<Dict>().map_err(|e| {
        ConfigErrors(
            e.into_iter()
                .map(|e| ConfigError {
                    origin: origin.to_owned(),
                    path: e.path.join("."),
                    message: e.kind.to_string(),
                })
                .collect(),
        )
    })?;
    Ok(Value::from(tree))
}

/// Reads a configuration out of any figment (tests build one from a string).
///
/// # Errors
/// As [`load`].
pub fn from_figment(figment: &Figment, origin: String) -> Result<Config, ConfigErrors> {
    let root_value = merged_tree(figment, &origin)?;
    let mut errors = Errors::new(figment, origin);
    let mut root = Table::new("", Some(&root_value), &mut errors);
    let proxy = read_proxy(root.value("proxy"), &mut errors);
    let metrics = read_metrics(root.value("metrics"), &mut errors);
    let log = read_log(root.value("log"), &mut errors);
    let agents = read_agents(root.value("agents"), &mut errors);
    let database = orchestrator::read_database(root.value("database"), &mut errors);
    let orchestrator = orchestrator::read_orchestrator(root.value("orchestrator"), &mut errors);
    let embedding = orchestrator::read_embedding(root.value("embedding"), &mut errors);
    let mirror = mirror::read_mirror(root.value("mirror"), &mut errors);
    let shadow = mirror::read_shadow(root.value("shadow"), &mut errors);
    let live = mirror::read_live(root.value("live"), &mut errors);
    let rollout = rollout::read_rollout(root.value("rollout"), &mut errors);
    root.finish(&mut errors);
    if !errors.list.is_empty() {
        return Err(ConfigErrors(errors.list));
    }
    Ok(Config {
        proxy,
        metrics,
        log,
        agents,
        database,
        orchestrator,
        embedding,
        mirror,
        shadow,
        live,
        rollout,
    })
}

fn read_proxy(value: Option<&Value>, errors: &mut Errors) -> ProxySettings {
    let d = ProxySettings::default();
    let mut t = Table::new("proxy", value, errors);
    let settings = ProxySettings {
        shutdown_grace: t.parse("shutdown_grace", d.shutdown_grace, errors, parse_duration),
        max_in_flight: t.parse("max_in_flight", d.max_in_flight, errors, |s| {
            parse_count(s, 1, 1_000_000)
        }),
        linger: t.parse("linger", d.linger, errors, parse_duration),
        heartbeat_interval: t.parse(
            "heartbeat_interval",
            d.heartbeat_interval,
            errors,
            parse_duration,
        ),
        heartbeat_timeout: t.parse(
            "heartbeat_timeout",
            d.heartbeat_timeout,
            errors,
            parse_duration,
        ),
    };
    if settings.heartbeat_timeout < settings.heartbeat_interval {
        errors.push(
            "proxy.heartbeat_timeout",
            value,
            "must be at least proxy.heartbeat_interval",
        );
    }
    t.finish(errors);
    settings
}

fn read_metrics(value: Option<&Value>, errors: &mut Errors) -> MetricsSettings {
    let d = MetricsSettings::default();
    let mut t = Table::new("metrics", value, errors);
    let listen = t.parse("listen", d.listen, errors, |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("invalid address {s:?}: expected ip:port"))
    });
    t.finish(errors);
    MetricsSettings { listen }
}

fn read_log(value: Option<&Value>, errors: &mut Errors) -> LogSettings {
    let d = LogSettings::default();
    let mut t = Table::new("log", value, errors);
    let level = t.parse("level", d.level, errors, |s| {
        tracing_subscriber::EnvFilter::builder()
            .parse(s)
            .map(|_| s.to_owned())
            .map_err(|e| format!("invalid log filter {s:?}: {e}"))
    });
    let format = t.parse("format", d.format, errors, |s| match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown log format {s:?} (text, json)")),
    });
    t.finish(errors);
    LogSettings { level, format }
}

fn read_agents(value: Option<&Value>, errors: &mut Errors) -> Vec<AgentConfig> {
    let items = match value {
        Some(Value::Array(_, items)) => items,
        None => return Vec::new(),
        Some(other) => {
            errors.push("agents", Some(other), "expected [[agents]] tables");
            return Vec::new();
        }
    };
    let agents: Vec<(usize, AgentConfig)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| Some((i, read_agent(format!("agents[{i}]"), item, errors)?)))
        .collect();
    check_unique(&agents, items, errors);
    agents.into_iter().map(|(_, agent)| agent).collect()
}

fn read_agent(path: String, value: &Value, errors: &mut Errors) -> Option<AgentConfig> {
    let mut t = Table::new(path.clone(), Some(value), errors);
    let name = t.require("name", errors, parse_name);
    let profile = t.require("profile", errors, |s| {
        Profile::from_name(s).ok_or_else(|| {
            let known: Vec<_> = Profile::ALL.iter().map(|p| p.name()).collect();
            format!("unknown profile {s:?} (one of: {})", known.join(", "))
        })
    });
    let listen = t.require("listen", errors, Endpoint::parse_bind);
    let legacy = t.require("legacy", errors, Endpoint::parse_connect);
    let legacy_timeout = t.parse(
        "legacy_timeout",
        DEFAULT_LEGACY_TIMEOUT,
        errors,
        parse_duration,
    );
    let guard = read_guard(format!("{path}.guard"), t.value("guard"), errors);
    for moved in ["stage", "mirror_percent", "shadow_percent", "read_percent"] {
        if let Some(v) = t.value(moved) {
            errors.push(
                &format!("{path}.{moved}"),
                Some(v),
                "flags moved to the flags file ([rollout] flags): see config/flags.toml",
            );
        }
    }
    t.finish(errors);
    if let (Some(l), Some(g)) = (&listen, &legacy)
        && l.as_str() == g.as_str()
    {
        errors.push(
            &format!("{path}.legacy"),
            Some(value),
            "must differ from listen",
        );
    }
    Some(AgentConfig {
        name: name?,
        profile: profile?,
        listen: listen?,
        legacy: legacy?,
        legacy_timeout,
        guard,
    })
}

fn read_guard(path: String, value: Option<&Value>, errors: &mut Errors) -> GuardPolicy {
    let d = GuardPolicy::default();
    let mut t = Table::new(path, value, errors);
    let policy = GuardPolicy {
        multipart: t.get("multipart", errors).unwrap_or(d.multipart),
        non_json: t.get("non_json", errors).unwrap_or(d.non_json),
    };
    t.finish(errors);
    policy
}

/// Names and listen endpoints must be unique; `agents` carries each agent's table index.
fn check_unique(agents: &[(usize, AgentConfig)], items: &[Value], errors: &mut Errors) {
    let mut names = HashSet::new();
    let mut listens = HashSet::new();
    for (i, agent) in agents {
        let item = items.get(*i);
        if !names.insert(agent.name.as_str()) {
            let msg = format!("duplicate agent name {:?}", agent.name);
            errors.push(&format!("agents[{i}].name"), item, msg);
        }
        if !agent.listen.as_str().ends_with(":*") && !listens.insert(agent.listen.as_str()) {
            let msg = format!("{} is already used by another agent", agent.listen);
            errors.push(&format!("agents[{i}].listen"), item, msg);
        }
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid name {s:?}: 1-64 characters of a-z, 0-9, _"
        ))
    }
}

/// `"250ms"`, `"30s"`, `"2m"` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (e.g. \"250ms\", \"30s\")"))
}

fn parse_count(s: &str, min: usize, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from {min} to {max}, got {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests;
