//! `[mirror]`: the outbox and the delivery of mirrored writes to the orchestrator. Every
//! key needs a restart. (The stage and `mirror_percent` of each agent are flags, in its
//! `[[agents]]` table.)

use super::reader::{Errors, Table};
use super::{Endpoint, parse_count, parse_duration};
use figment::value::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How hard the outbox pushes each commit to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync every commit: an acknowledged entry survives a power cut.
    Full,
    /// fsync at checkpoints: an acknowledged entry survives the proxy being killed, not
    /// the machine losing power. Faster on slow disks.
    Normal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MirrorSettings {
    /// Where the outboxes live: `<data_dir>/<agent>.outbox.sqlite`, one per agent.
    pub data_dir: PathBuf,
    /// The orchestrator the mirror delivers to.
    pub orchestrator: Endpoint,
    /// A delivery not answered by then counts as failed and is retried. Keep it above the
    /// orchestrator's `request_deadline`, so that a slow database is an answer, not silence.
    pub timeout: Duration,
    /// Deliveries outstanding per agent (each for a different key: a key's operations go
    /// one at a time, in order).
    pub max_in_flight: usize,
    /// Accepted writes waiting between a forwarder and its outbox. Past it, writes are not
    /// mirrored (counted as `queue_full`): the forwarder never waits.
    pub queue: usize,
    /// Entries pending in one outbox at most. Past it, new writes are not mirrored
    /// (counted as `outbox_full`, their keys recorded for reconcile).
    pub max_pending: u64,
    /// An operation the orchestrator answered with a retryable error this many times is
    /// dead-lettered.
    pub max_attempts: u32,
    /// An operation still undelivered this long after the legacy write is dead-lettered
    /// (this is what bounds an orchestrator that does not answer at all).
    pub max_age: Duration,
    /// Retry backoff: doubles from `backoff_base` up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub durability: Durability,
    /// The nice value of the mirror's threads (0–19). Raising it lets the forwarders go
    /// first when the CPU is short, at the price of the outbox writer falling behind (and
    /// the hand-off queue dropping writes) under sustained overload.
    pub nice: i32,
}

impl MirrorSettings {
    /// The deliverers' retry schedule.
    pub fn backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff {
            base: self.backoff_base,
            max: self.backoff_max,
        }
    }
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            data_dir: PathBuf::from("/var/lib/memshift"),
            orchestrator: Endpoint("tcp://127.0.0.1:5570".to_owned()),
            timeout: Duration::from_secs(10),
            max_in_flight: 32,
            queue: 10_000,
            max_pending: 1_000_000,
            max_attempts: 20,
            max_age: Duration::from_secs(72 * 3600),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            durability: Durability::Full,
            nice: 0,
        }
    }
}

pub(super) fn read_mirror(value: Option<&Value>, errors: &mut Errors) -> MirrorSettings {
    let d = MirrorSettings::default();
    let mut t = Table::new("mirror", value, errors);
    let settings = MirrorSettings {
        data_dir: t.parse("data_dir", d.data_dir, errors, |s| {
            if s.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        }),
        orchestrator: t.parse(
            "orchestrator",
            d.orchestrator,
            errors,
            Endpoint::parse_connect,
        ),
        timeout: t.parse("timeout", d.timeout, errors, parse_duration),
        max_in_flight: t.parse("max_in_flight", d.max_in_flight, errors, |s| {
            parse_count(s, 1, 1_000)
        }),
        queue: t.parse("queue", d.queue, errors, |s| parse_count(s, 1, 1_000_000)),
        max_pending: t.parse("max_pending", d.max_pending, errors, |s| {
            parse_count(s, 1, 1_000_000_000).map(|n| n as u64)
        }),
        max_attempts: t.parse("max_attempts", d.max_attempts, errors, |s| {
            parse_count(s, 1, 1_000_000).map(|n| n as u32)
        }),
        max_age: t.parse("max_age", d.max_age, errors, parse_duration),
        backoff_base: t.parse("backoff_base", d.backoff_base, errors, parse_duration),
        backoff_max: t.parse("backoff_max", d.backoff_max, errors, parse_duration),
        durability: t.parse("durability", d.durability, errors, |s| match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            _ => Err(format!("unknown durability {s:?} (full, normal)")),
        }),
        nice: t.parse("nice", d.nice, errors, |s| {
            parse_count(s, 0, 19).map(|n| n as i32)
        }),
    };
    if settings.timeout.is_zero() || settings.backoff_base.is_zero() {
        errors.push(
            "mirror.timeout",
            value,
            "mirror.timeout and mirror.backoff_base must be above zero",
        );
    }
    if settings.backoff_max < settings.backoff_base {
        errors.push(
            "mirror.backoff_max",
            value,
            "must be at least mirror.backoff_base",
        );
    }
    t.finish(errors);
    settings
}

/// `[shadow]`: comparing reads with the orchestrator (stage `shadow`). Every key needs a
/// restart.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowSettings {
    /// A sampled read whose orchestrator answer is not complete by then is a
    /// `shadow_timeout`.
    pub timeout: Duration,
    /// Reads being fetched from the orchestrator at once, per agent.
    pub max_in_flight: usize,
    /// Sampled reads waiting to be fetched; past it a read is skipped (counted).
    pub queue: usize,
    /// Keep the request and both replies of a mismatch sample as they were; by default
    /// they are stored redacted (their shape, not their contents: users' memories).
    pub record_contents: bool,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        ShadowSettings {
            timeout: Duration::from_secs(2),
            max_in_flight: 16,
            queue: 1_000,
            record_contents: false,
        }
    }
}

pub(super) fn read_shadow(value: Option<&Value>, errors: &mut Errors) -> ShadowSettings {
    let d = ShadowSettings::default();
    let mut t = Table::new("shadow", value, errors);
    let settings = ShadowSettings {
        timeout: t.parse("timeout", d.timeout, errors, parse_duration),
        max_in_flight: t.parse("max_in_flight", d.max_in_flight, errors, |s| {
            parse_count(s, 1, 1_000)
        }),
        queue: t.parse("queue", d.queue, errors, |s| parse_count(s, 1, 1_000_000)),
        record_contents: t
            .get("record_contents", errors)
            .unwrap_or(d.record_contents),
    };
    if settings.timeout.is_zero() {
        errors.push("shadow.timeout", value, "must be above zero");
    }
    t.finish(errors);
    settings
}

/// `[live]`: reads answered by the orchestrator (stage `live`). Every key needs a restart.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveSettings {
    /// The time budget of a read the orchestrator answers: past it, the read is sent to
    /// the legacy agent instead (a fallback, counted), so a client waits at most this long
    /// on top of the legacy agent's own time.
    pub timeout: Duration,
    /// Answer from the orchestrator's fuller history what the legacy agent has forgotten
    /// on its own (a session_memory session past its expiry). Off: a live answer is the
    /// agent's, `[]` for an expired session.
    pub serve_forgotten: bool,
    /// session_memory's "one hour": it deletes a session this long (plus the UTC offset)
    /// after its creation. The agent's constant; change it only for an agent changed to
    /// use another (a test stand-in's `--idle-expiry`).
    pub session_lifetime: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            timeout: Duration::from_millis(250),
            serve_forgotten: false,
            session_lifetime: crate::forgetting::SESSION_LIFETIME,
        }
    }
}

pub(super) fn read_live(value: Option<&Value>, errors: &mut Errors) -> LiveSettings {
    let d = LiveSettings::default();
    let mut t = Table::new("live", value, errors);
    let settings = LiveSettings {
        timeout: t.parse("timeout", d.timeout, errors, parse_duration),
        serve_forgotten: t
            .get("serve_forgotten", errors)
            .unwrap_or(d.serve_forgotten),
        session_lifetime: t.parse(
            "session_lifetime",
            d.session_lifetime,
            errors,
            parse_duration,
        ),
    };
    if settings.timeout.is_zero() {
        errors.push("live.timeout", value, "must be above zero");
    }
    if settings.session_lifetime.is_zero() {
        errors.push("live.session_lifetime", value, "must be above zero");
    }
    t.finish(errors);
    settings
}
