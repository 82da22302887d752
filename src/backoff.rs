//! Retry delays: doubling from a base up to a cap, with jitter, so that many processes
//! recovering together do not retry in step. The one schedule of the mirror's deliverers and
//! of the backfill's sender. (The embedding queue schedules its rows in SQL, by each row's
//! attempts: see `store::embeddings`.)

use std::time::Duration;

/// A doubling schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Before the `n`-th retry (from 1): `base · 2^(n-1)`, capped at `max`, less up to half
    /// of it at random.
    pub fn delay(self, n: u32) -> Duration {
        self.full(n).mul_f64(1.0 - fastrand::f64() / 2.0)
    }

    /// [`Backoff::delay`] without the jitter.
    pub fn full(self, n: u32) -> Duration {
        let doubled = self.base.as_secs_f64() * 2f64.powi(n.saturating_sub(1).min(30) as i32);
        Duration::from_secs_f64(doubled.min(self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_at_most_half_taken_off() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (n, full) in [
            (0, 100),
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            assert_eq!(backoff.full(n), Duration::from_millis(full));
            for _ in 0..50 {
                let b = backoff.delay(n).as_secs_f64() * 1000.0;
                assert!(
                    (full as f64 / 2.0 - 1e-6..=full as f64 + 1e-6).contains(&b),
                    "attempt {n}: {b} ms"
                );
            }
        }
    }
}
