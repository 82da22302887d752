use super::*;
use crate::metrics::BACKEND_BUCKETS;
use std::time::Duration;

fn settings() -> AutoRollback {
    AutoRollback {
        min_samples: 1000,
        window: Duration::from_secs(10),
        max_window: Duration::from_secs(100),
        hold: 3,
        ..AutoRollback::default()
    }
}

fn reads(matches: u64, mismatches: u64) -> Tally {
    Tally {
        matches,
        mismatches,
        calls: matches + mismatches,
        ..Tally::default()
    }
}

fn reading(readings: &[Reading], trigger: Trigger) -> &Reading {
    readings.iter().find(|r| r.trigger == trigger).unwrap()
}

/// Pushes `tally` every second for `seconds`; the readings of the last one.
fn run(e: &mut Evaluator, tally: &Tally, seconds: usize) -> Vec<Reading> {
    (0..seconds).map(|_| e.push(tally.clone())).last().unwrap()
}

#[test]
fn wilson_bounds_match_known_values() {
    let z = two_sided_z(0.95);
    assert!((z - 1.959_964).abs() < 1e-4, "{z}");
    let (low, high) = wilson(10, 1000, z);
    assert!(
        (low - 0.00544).abs() < 2e-4 && (high - 0.01832).abs() < 2e-4,
        "{low} {high}"
    );
    // Zero failures: the upper bound is about z²/n ("rule of three" at 95 %: 3.84/n).
    let (low, high) = wilson(0, 3840, z);
    assert!(low < 1e-12, "{low}");
    assert!((high - 0.001).abs() < 1e-4, "{high}");
}

#[test]
fn one_percent_wrong_fires_after_the_hold_and_not_before() {
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let bad = reads(99, 1);
    // 100 a second: the minimum of 1000 is reached in the 10th second.
    for second in 1..=9 {
        let r = e.push(bad.clone());
        let r = reading(&r, Trigger::Inconsistency);
        assert!(!r.breach && r.value.is_none(), "second {second}: {r:?}");
    }
    let fired: Vec<bool> = (0..3)
        .map(|_| reading(&e.push(bad.clone()), Trigger::Inconsistency).fired)
        .collect();
    assert_eq!(
        fired,
        [false, false, true],
        "fires on the third breach in a row"
    );
}

#[test]
fn below_threshold_or_below_minimum_sample_never_fires() {
    // 0.05 % wrong: under the 0.1 % threshold.
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let r = run(&mut e, &reads(1999, 1), 100);
    assert!(!reading(&r, Trigger::Inconsistency).fired);
    // 50 % wrong, but only 900 reads ever: too few to decide.
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let r = run(&mut e, &reads(1, 1), 450);
    let r = reading(&r, Trigger::Inconsistency);
    assert!(!r.fired && r.value.is_none() && r.samples == 200, "{r:?}");
}

#[test]
fn a_quiet_period_stretches_the_window_instead_of_hiding_a_fault() {
    // 2 reads a second, 1 % wrong over the long run: 10 s hold 20 reads, far too few;
    // the window stretches back to 100 s (200 reads) and still is too few with 1000 as
    // the minimum, so a smaller minimum is used to show the stretch.
    let s = AutoRollback {
        min_samples: 150,
        ..settings()
    };
    let mut e = Evaluator::new(s, BACKEND_BUCKETS);
    let mut last = Vec::new();
    for i in 0..100 {
        let tally = if i % 5 == 0 { reads(1, 1) } else { reads(2, 0) };
        last = e.push(tally);
    }
    let r = reading(&last, Trigger::Inconsistency);
    assert!(r.samples >= 150, "stretched to the minimum: {r:?}");
    assert!(r.fired, "10 % wrong over a quiet stretch fires: {r:?}");
}

#[test]
fn hysteresis_keeps_the_count_between_bound_and_threshold() {
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    // 1 % wrong: two breaches.
    run(&mut e, &reads(990, 10), 2);
    assert_eq!(e.held[0], 2);
    // 20 in 16 000 (0.125 %): above the threshold, but the bound is not: the count holds.
    let r = e.push(reads(14_000, 0));
    let r = reading(&r, Trigger::Inconsistency);
    assert!(!r.breach && r.value.unwrap() > r.threshold, "{r:?}");
    assert_eq!(e.held[0], 2);
    // A clean stretch brings the estimate below the threshold: the count resets.
    e.push(reads(1_000_000, 0));
    assert_eq!(e.held[0], 0);
}

#[test]
fn errors_fire_at_two_percent_not_at_half_a_percent() {
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let failing = Tally {
        calls: 200,
        errors: 4,
        ..Tally::default()
    };
    let r = run(&mut e, &failing, 30);
    assert!(reading(&r, Trigger::Errors).fired, "{r:?}");
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let r = run(
        &mut e,
        &Tally {
            calls: 200,
            errors: 1,
            ..Tally::default()
        },
        30,
    );
    assert!(!reading(&r, Trigger::Errors).fired, "{r:?}");
}

fn latency(orchestrator_s: f64, legacy_s: f64, n: u64) -> Tally {
    let at = |s: f64| {
        let i = BACKEND_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BACKEND_BUCKETS.len());
        let mut v = vec![0; BACKEND_BUCKETS.len() + 1];
        v[i] = n;
        Buckets(v)
    };
    Tally {
        orchestrator: at(orchestrator_s),
        legacy: at(legacy_s),
        ..Tally::default()
    }
}

#[test]
fn latency_fires_150_ms_slower_not_50() {
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let r = run(&mut e, &latency(0.152, 0.002, 200), 20);
    let r = reading(&r, Trigger::Latency);
    assert!(r.fired, "{r:?}");
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    let r = run(&mut e, &latency(0.052, 0.002, 200), 20);
    let r = reading(&r, Trigger::Latency);
    assert!(!r.fired && !r.breach, "{r:?}");
}

#[test]
fn quantiles_interpolate_inside_buckets() {
    let bounds = &[1.0, 2.0, 4.0];
    let b = Buckets(vec![0, 10, 10, 0]);
    assert_eq!(b.quantile(bounds, 0.5), Some(2.0));
    assert_eq!(b.quantile(bounds, 0.25), Some(1.5));
    assert_eq!(b.quantile(bounds, 0.75), Some(3.0));
    assert_eq!(Buckets(vec![0, 0, 0, 5]).quantile(bounds, 0.5), Some(4.0));
    assert_eq!(Buckets::default().quantile(bounds, 0.5), None);
}

#[test]
fn reset_forgets_the_window() {
    let mut e = Evaluator::new(settings(), BACKEND_BUCKETS);
    run(&mut e, &reads(900, 100), 5);
    e.reset();
    let r = e.push(reads(10, 0));
    assert_eq!(reading(&r, Trigger::Inconsistency).samples, 10);
}
