//! Rollout flags: each agent's stage and percentages.
//!
//! Read on the primary path for every request, so they live behind an [`ArcSwap`]: a load
//! is a few atomic operations and never blocks, and a new set of flags can be swapped in
//! whole (hot reload, the kill switch) without stopping a forwarder. They come from the
//! flags file, through [`crate::rollout`], which also folds a rollback into them.
//!
//! Percentages bucket by the profile's key (session or user) with a stable hash, so a key
//! always goes the same way, and raising a percentage only ever adds keys.

use crate::profile::Class;
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// How far one agent's migration has gone (DESIGN.md, "Stages").
/// Ordered: a later stage is further along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Pure passthrough: nothing reaches the orchestrator.
    Off,
    /// Writes the legacy agent accepted are mirrored to the orchestrator.
    DualWrite,
    /// Mirrored writes, and a sample of reads asked of the orchestrator too (off the
    /// primary path) and compared with the legacy reply.
    Shadow,
    /// Mirrored writes; the orchestrator answers the reads of `read_percent` of keys in
    /// the legacy shape (legacy on an error or past the time budget); the other reads are
    /// compared as in `shadow`.
    Live,
    /// The orchestrator is primary: it answers every read, and it takes every write first
    /// (the client gets the reply the legacy agent would have given); accepted writes are
    /// replayed to legacy through the reverse outbox, so legacy stays complete and a step
    /// back loses nothing.
    Rampdown,
    /// As `rampdown`, but legacy is left alone: the reverse outbox keeps the writes (up to
    /// `mirror.max_pending`) without delivering them, so that a step back, or a rollback,
    /// can still bring legacy up to date first.
    Complete,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Off,
        Stage::DualWrite,
        Stage::Shadow,
        Stage::Live,
        Stage::Rampdown,
        Stage::Complete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Off => "off",
            Stage::DualWrite => "dualwrite",
            Stage::Shadow => "shadow",
            Stage::Live => "live",
            Stage::Rampdown => "rampdown",
            Stage::Complete => "complete",
        }
    }

    /// # Errors
    /// Not a stage name.
    pub fn parse(s: &str) -> Result<Stage, String> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Stage::ALL.iter().map(|s| s.name()).collect();
                format!("unknown stage {s:?} (one of: {})", known.join(", "))
            })
    }

    /// Whether accepted writes go to the outbox in this stage.
    pub fn mirrors_writes(self) -> bool {
        self != Stage::Off
    }

    /// Whether reads answered by legacy are also asked of the orchestrator and compared.
    pub fn shadows_reads(self) -> bool {
        matches!(self, Stage::Shadow | Stage::Live)
    }

    /// Whether this is a serving stage, where the orchestrator answers reads (for
    /// `read_percent` of keys in `live`, for every key later) unless a rollback holds (see
    /// [`AgentFlags::serves_reads`]).
    pub fn is_serving(self) -> bool {
        self >= Stage::Live
    }

    /// Whether the orchestrator takes writes first (every key).
    pub fn writes_first_to_orchestrator(self) -> bool {
        self >= Stage::Rampdown
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A share of keys, in hundredths of a percent (0–10 000), so that `0.5` % is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(u16);

impl Percent {
    pub const ALL: Percent = Percent(10_000);
    pub const NONE: Percent = Percent(0);

    /// # Errors
    /// Not a number from 0 to 100 with at most two decimals.
    pub fn parse(s: &str) -> Result<Percent, String> {
        let bad = || format!("expected a percentage from 0 to 100, got {s:?}");
        let value: f64 = s.trim().parse().map_err(|_| bad())?;
        let hundredths = (value * 100.0).round();
        if !(0.0..=10_000.0).contains(&hundredths) || (hundredths - value * 100.0).abs() > 1e-6 {
            return Err(bad());
        }
        Ok(Percent(hundredths as u16))
    }

    /// Whether `key` falls in this share of keys. Stable across processes and versions:
    /// xxh3 with a fixed seed, so every proxy and every restart agrees.
    pub fn includes(self, key: &str) -> bool {
        bucket(key) < self.0
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.as_f64())
    }
}

/// Seed of the bucketing hash. Changing it reshuffles every key: never do.
const BUCKET_SEED: u64 = 0x6d65_6d73_6869_6674;

/// The key's bucket, 0–9 999.
pub fn bucket(key: &str) -> u16 {
    (xxh3_64_with_seed(key.as_bytes(), BUCKET_SEED) % 10_000) as u16
}

/// One agent's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentFlags {
    pub stage: Stage,
    /// Share of keys whose writes are mirrored (in stages that mirror).
    pub mirror_percent: Percent,
    /// Share of keys whose reads are compared (in `shadow`, and `live` for the reads
    /// legacy answers).
    pub shadow_percent: Percent,
    /// Share of keys whose reads the orchestrator answers (in `live`).
    pub read_percent: Percent,
    /// A rollback holds (the kill switch, or an automatic trigger): every read goes to
    /// legacy whatever the stage says, while writes are still mirrored and reads still
    /// compared, so nothing is lost and the migration can resume.
    pub rollback: bool,
}

impl AgentFlags {
    /// Whether the orchestrator answers reads (for `read_percent` of keys) right now.
    pub fn serves_reads(&self) -> bool {
        self.stage.is_serving() && !self.rollback
    }

    /// Whether the orchestrator answers this key's reads right now (the key's own pending
    /// writes aside: see [`crate::mirror`]). From `rampdown` on, every key.
    pub fn serves_key(&self, key: &str) -> bool {
        self.serves_reads() && (self.stage >= Stage::Rampdown || self.read_percent.includes(key))
    }

    /// Whether writes go to the orchestrator first right now. A rollback takes them back
    /// to legacy, except for keys whose writes legacy has not had yet.
    pub fn orchestrator_primary(&self) -> bool {
        self.stage.writes_first_to_orchestrator() && !self.rollback
    }

    /// Whether the reverse outbox is delivered to legacy: in every stage but `complete`,
    /// and in `complete` too while a rollback holds (legacy must catch up before it
    /// answers again).
    pub fn delivers_to_legacy(&self) -> bool {
        self.stage != Stage::Complete || self.rollback
    }

    /// `mirror_percent`, or every key from `rampdown` on.
    pub fn mirrored_share(&self) -> Percent {
        if self.stage >= Stage::Rampdown {
            Percent::ALL
        } else {
            self.mirror_percent
        }
    }

    /// What the mirror is to do with a request of `class` once legacy has answered it;
    /// `None` when nothing. A read is compared in the stages that compare reads, and
    /// mirrored for the change it makes to the agent's own state when `reads_change_state`
    /// (in every stage that mirrors writes).
    pub fn shares(&self, class: Class, reads_change_state: bool) -> Option<Shares> {
        let mirrors = self.stage.mirrors_writes();
        match class {
            Class::Write if mirrors => Some(Shares::write(self.mirrored_share())),
            Class::Read if self.stage.shadows_reads() || (mirrors && reads_change_state) => {
                Some(Shares {
                    mirrored: if mirrors && reads_change_state {
                        self.mirrored_share()
                    } else {
                        Percent::NONE
                    },
                    compared: self.stage.shadows_reads().then_some(self.shadow_percent),
                })
            }
            _ => None,
        }
    }
}

/// The shares of keys one exchange counts for, from the flags when its request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    /// The keys whose changes are mirrored: a write's, or a read's change to the agent's
    /// own state.
    pub mirrored: Percent,
    /// The keys whose reads are compared, when the stage compares reads.
    pub compared: Option<Percent>,
}

impl Shares {
    /// A write mirrored for `mirrored` of keys.
    pub fn write(mirrored: Percent) -> Shares {
        Shares {
            mirrored,
            compared: None,
        }
    }
}

impl Default for AgentFlags {
    fn default() -> Self {
        AgentFlags {
            stage: Stage::Off,
            mirror_percent: Percent::ALL,
            shadow_percent: Percent::ALL,
            read_percent: Percent::NONE,
            rollback: false,
        }
    }
}

/// The live flags of one agent, shared by its forwarder and mirror.
pub type SharedFlags = Arc<ArcSwap<AgentFlags>>;

pub fn shared(flags: AgentFlags) -> SharedFlags {
    Arc::new(ArcSwap::from_pointee(flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_exactly_and_reject_nonsense() {
        assert_eq!(Percent::parse("100"), Ok(Percent::ALL));
        assert_eq!(Percent::parse("0"), Ok(Percent::NONE));
        assert_eq!(Percent::parse("0.5"), Ok(Percent(50)));
        assert_eq!(Percent::parse("12.34"), Ok(Percent(1234)));
        for bad in ["-1", "100.01", "0.001", "ten", "", "NaN", "inf"] {
            assert!(Percent::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn buckets_are_stable_and_spread_evenly() {
        // Pinned: a change of hash or seed would move every key in a running migration.
        let pinned: Vec<u16> = ["a", "session-1", "default"].map(bucket).to_vec();
        assert_eq!(pinned, vec![1691, 2854, 5168]);
        let n = 100_000;
        let in_ten = (0..n)
            .filter(|i| Percent(1_000).includes(&format!("key-{i}")))
            .count();
        let share = in_ten as f64 / n as f64;
        assert!((0.09..0.11).contains(&share), "10 % bucket holds {share}");
    }

    #[test]
    fn raising_a_percentage_only_adds_keys() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let mut previous: Vec<&String> = Vec::new();
        for p in [0u16, 1, 50, 1_000, 5_000, 9_999, 10_000] {
            let now: Vec<&String> = keys.iter().filter(|k| Percent(p).includes(k)).collect();
            assert!(
                previous.iter().all(|k| now.contains(k)),
                "{p} dropped a key"
            );
            previous = now;
        }
        assert_eq!(previous.len(), keys.len());
        assert!(keys.iter().all(|k| !Percent::NONE.includes(k)));
    }

    proptest::proptest! {
        /// Sticky assignment: whatever the key and however the share rises, once a key is
        /// in, it stays in.
        #[test]
        fn a_key_moved_forward_stays_forward_while_the_share_only_rises(
            key in ".{0,64}",
            mut shares in proptest::collection::vec(0u16..=10_000, 1..24),
        ) {
            shares.sort_unstable();
            let mut was_in = false;
            for share in shares {
                let now = Percent(share).includes(&key);
                proptest::prop_assert!(now || !was_in, "{key:?} left at {share}");
                was_in = now;
            }
        }

        /// A rollback sends a key's reads to legacy whatever its stage and share.
        #[test]
        fn a_rollback_always_takes_reads_back(share in 0u16..=10_000) {
            let flags = AgentFlags {
                stage: Stage::Live,
                read_percent: Percent(share),
                rollback: true,
                ..AgentFlags::default()
            };
            proptest::prop_assert!(!flags.serves_reads());
        }
    }
}
