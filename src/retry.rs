//! Retries inside a scheduled slot (pure): whether and when a failed run is tried again.
//!
//! A failed run is retried after `initialBackoff`, doubling each time up to `maxBackoff`, each
//! delay jittered down to half (so hosts that failed together do not retry together), for at
//! most `attempts` runs in all. A retry never starts at or after the next scheduled run (that
//! run takes over), and errors a retry cannot fix are never retried.

use crate::policy::RetrySpec;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What to do after a failed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run again after this delay.
    Retry(Duration),
    /// Stop; the failure stands.
    GiveUp(GiveUp),
}

/// Why a failure is not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// Retries are off (`--no-retry`, or `attempts: 1`).
    Disabled,
    /// The error is one no retry can fix.
    NotRetryable,
    /// Every attempt of the slot was used.
    AttemptsUsed(u32),
    /// The next scheduled run would come first.
    NextRun(DateTime<Utc>),
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Disabled => f.write_str("retries are off"),
            GiveUp::NotRetryable => f.write_str("a retry cannot fix this error"),
            GiveUp::AttemptsUsed(n) => write!(f, "all {n} attempts of this slot were used"),
            GiveUp::NextRun(t) => write!(
                f,
                "the next scheduled run at {} comes first",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// The delay before retry number `retry` (1 for the first), before jitter.
pub fn backoff(spec: &RetrySpec, retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(30);
    spec.initial_backoff
        .saturating_mul(1u32 << doublings)
        .min(spec.max_backoff)
}

/// After run number `runs` (1-based) failed at `now`: retry, and after how long, or give up.
/// `jitter` in `[0, 1)` picks the delay between half the backoff and all of it. `next_run` is
/// the schedule's next run after the slot began, if there is a schedule.
pub fn after_failure(
    spec: &RetrySpec,
    enabled: bool,
    runs: u32,
    retryable: bool,
    now: DateTime<Utc>,
    next_run: Option<DateTime<Utc>>,
    jitter: f64,
) -> Decision {
    if !enabled || spec.attempts <= 1 {
        return Decision::GiveUp(GiveUp::Disabled);
    }
    if !retryable {
        return Decision::GiveUp(GiveUp::NotRetryable);
    }
    if runs >= spec.attempts {
        return Decision::GiveUp(GiveUp::AttemptsUsed(spec.attempts));
    }
    let full = backoff(spec, runs);
    let delay = full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    if let Some(next) = next_run {
        let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        if at >= next {
            return Decision::GiveUp(GiveUp::NextRun(next));
        }
    }
    Decision::Retry(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(attempts: u32, initial: u64, max: u64) -> RetrySpec {
        RetrySpec {
            attempts,
            initial_backoff: Duration::from_secs(initial),
            max_backoff: Duration::from_secs(max),
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0).unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = spec(10, 60, 900);
        let secs: Vec<u64> = (1..=7).map(|r| backoff(&s, r).as_secs()).collect();
        assert_eq!(secs, vec![60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(backoff(&s, 1000).as_secs(), 900);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_backoff() {
        let s = spec(3, 60, 900);
        let next = Some(at(3, 0));
        for (j, want) in [(0.0, 30), (0.5, 45), (0.999_999, 59)] {
            match after_failure(&s, true, 1, true, at(2, 0), next, j) {
                Decision::Retry(d) => assert_eq!(d.as_secs(), want, "jitter {j}"),
                other => panic!("{other:?}"),
            }
        }
        // Second retry: 120 s backoff.
        assert_eq!(
            after_failure(&s, true, 2, true, at(2, 0), next, 0.0),
            Decision::Retry(Duration::from_secs(60))
        );
    }

    #[test]
    fn gives_up_when_off_used_up_permanent_or_too_late() {
        let s = spec(3, 60, 900);
        let now = at(2, 0);
        let next = Some(at(3, 0));
        assert_eq!(
            after_failure(&s, false, 1, true, now, next, 0.0),
            Decision::GiveUp(GiveUp::Disabled)
        );
        assert_eq!(
            after_failure(&spec(1, 60, 60), true, 1, true, now, next, 0.0),
            Decision::GiveUp(GiveUp::Disabled)
        );
        assert_eq!(
            after_failure(&s, true, 1, false, now, next, 0.0),
            Decision::GiveUp(GiveUp::NotRetryable)
        );
        assert_eq!(
            after_failure(&s, true, 3, true, now, next, 0.0),
            Decision::GiveUp(GiveUp::AttemptsUsed(3))
        );
        // 30-60 s of delay from 02:59:30 lands at or past 03:00, the next run.
        let late = at(2, 59) + chrono::Duration::seconds(30);
        assert_eq!(
            after_failure(&s, true, 1, true, late, next, 0.0),
            Decision::GiveUp(GiveUp::NextRun(at(3, 0)))
        );
        // Without a schedule only the attempt count bounds it.
        assert!(matches!(
            after_failure(&s, true, 2, true, late, None, 0.0),
            Decision::Retry(_)
        ));
    }
}
