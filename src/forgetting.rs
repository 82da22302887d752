//! What the legacy agents forget on their own (`specs/legacy-agents.md`, revised), so that
//! comparisons and reconciliation can tell it from a real inconsistency and name the rule.
//! Pure.
//!
//! - session_memory deletes a session about an hour after its **creation**, however active
//!   it is: its cleanup (at start-up, then every minute) compares `last_active`, a local
//!   time, with SQLite's UTC `now`, and `last_active` only changes at creation (or at the
//!   first load after a restart, which memshift cannot see). So the hour is an hour plus the
//!   host's UTC offset; west of UTC−1 it is under a minute. memshift reads the offset from
//!   its own zone: the sidecar shares the agent's host, as it shares its local times.
//! - contextual_memory keeps the newest 50 interactions of a session.

use chrono::{DateTime, Duration, Local, Offset, TimeZone, Utc};

crate::labels! {
    /// Why a legacy agent no longer holds something (a closed set: a report and log label).
    pub enum Rule {
        /// session_memory's cleanup deleted the session.
        Expired = "expired",
        /// contextual_memory keeps only its newest interactions.
        Capped = "capped",
        /// session_memory's cleanup deleted one of its oldest sessions past 100 in memory.
        Evicted = "evicted",
    }
}

/// Interactions contextual_memory keeps per session.
pub const CONTEXTUAL_KEPT: usize = 50;

/// Sessions session_memory keeps in memory; its cleanup deletes the oldest past them, from
/// memory and from its database.
pub const SESSIONS_KEPT: i64 = 100;

/// Why session_memory no longer holds a session created at `created`, if its own rules
/// explain it by `now`: its hour has passed (its cleanup may have run), or `newer` sessions
/// (created after it, within its hour) were enough to push it out of the 100 it keeps.
pub fn session_forgotten(
    created: DateTime<Utc>,
    newer: i64,
    lifetime: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<Rule> {
    if session_deleted_between(created, lifetime).0 <= now {
        Some(Rule::Expired)
    } else if newer >= SESSIONS_KEPT {
        Some(Rule::Evicted)
    } else {
        None
    }
}

/// The "one hour" of session_memory's cleanup.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often session_memory's cleanup runs.
const CLEANUP_EVERY: Duration = Duration::seconds(60);

/// When session_memory deletes a session created at `created`, given its "hour"
/// ([`SESSION_LIFETIME`] unless the agent was changed): not before the first time, and by
/// the second (the next run of its cleanup).
pub fn session_deleted_between(
    created: DateTime<Utc>,
    lifetime: std::time::Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let offset = Local
        .offset_from_utc_datetime(&created.naive_utc())
        .fix()
        .local_minus_utc();
    let lifetime = Duration::from_std(lifetime).unwrap_or(Duration::MAX);
    let due = created + lifetime + Duration::seconds(i64::from(offset));
    (due, due + CLEANUP_EVERY)
}

/// How long after its creation session_memory deletes a session (its `lifetime` plus the
/// UTC offset, now), and within how long after that at the latest (its cleanup's period):
/// for a process that knows the creation but not this host's zone (the orchestrator).
pub fn session_expiry_window(
    lifetime: std::time::Duration,
) -> (std::time::Duration, std::time::Duration) {
    let now = Utc::now();
    let (first, last) = session_deleted_between(now, lifetime);
    let after = (first - now).to_std().unwrap_or_default();
    let within = (last - first).to_std().unwrap_or_default();
    (after, within)
}

/// What the orchestrator knows of a session that session_memory's rules turn on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionFacts {
    pub created: DateTime<Utc>,
    /// When the [`SESSIONS_KEPT`]-th session created after it was created: from the next
    /// cleanup on, the agent has pushed it out of the sessions it keeps.
    pub pushed_out: Option<DateTime<Utc>>,
}

/// Whether session_memory has deleted a session by `now`, by either rule: `Some(true)`
/// certainly, `Some(false)` certainly not, `None` while its cleanup may or may not have run.
/// (The agent's restarts, and deletes of newer sessions, which memshift cannot weigh, are
/// left out.)
pub fn session_deleted(
    session: SessionFacts,
    lifetime: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<bool> {
    let (mut first, mut last) = session_deleted_between(session.created, lifetime);
    if let Some(pushed_out) = session.pushed_out
        && pushed_out < first
    {
        (first, last) = (pushed_out, pushed_out + CLEANUP_EVERY);
    }
    if now >= last {
        Some(true)
    } else if now < first {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_an_hour_plus_the_offset_from_its_creation() {
        // The test suite runs under TZ=UTC (scripts/test.sh); the offset is then zero.
        let created = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let offset = Local
            .offset_from_utc_datetime(&created.naive_utc())
            .fix()
            .local_minus_utc();
        let (first, last) = session_deleted_between(created, SESSION_LIFETIME);
        assert_eq!(first - created, Duration::seconds(3600 + i64::from(offset)));
        assert_eq!(last - first, Duration::seconds(60));
        let at = |s: i64| created + Duration::seconds(s + i64::from(offset));
        let alone = SessionFacts {
            created,
            pushed_out: None,
        };
        let deleted = |facts, s| session_deleted(facts, SESSION_LIFETIME, at(s));
        assert_eq!(deleted(alone, 3599), Some(false));
        assert_eq!(deleted(alone, 3630), None);
        assert_eq!(deleted(alone, 3660), Some(true));
        // Pushed out by the 100th newer session: from the next cleanup on, whichever
        // rule comes first.
        let pushed = |s: i64| SessionFacts {
            created,
            pushed_out: Some(at(s)),
        };
        assert_eq!(deleted(pushed(600), 599), Some(false));
        assert_eq!(deleted(pushed(600), 630), None);
        assert_eq!(deleted(pushed(600), 660), Some(true));
        assert_eq!(deleted(pushed(3650), 3630), None, "the hour comes first");
        let forgotten = |newer, s| session_forgotten(created, newer, SESSION_LIFETIME, at(s));
        assert_eq!(forgotten(0, 3599), None);
        assert_eq!(forgotten(99, 3599), None);
        assert_eq!(forgotten(100, 3599), Some(Rule::Evicted));
        assert_eq!(forgotten(0, 3600), Some(Rule::Expired));
    }
}
