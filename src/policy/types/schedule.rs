//! `spec.schedule`: cron, time zone, the run window and retries inside a slot.

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::str::FromStr;
use std::time::Duration;

/// Cron schedule for the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schedule {
    /// Standard 5-field cron expression (a leading seconds field is also accepted).
    pub cron: CronExpr,
    /// IANA time zone the expression is read in.
    #[serde(default)]
    pub timezone: TimeZone,
    /// Random delay up to this long before each run.
    #[serde(default)]
    pub jitter: AnyDuration,
    /// `/healthz` fails when the last success is older than this (default: two periods).
    #[serde(default)]
    pub stale_after: Option<PositiveDuration>,
    /// Retries of a failed run inside its slot.
    #[serde(default)]
    pub retry: RetrySpec,
}

/// `schedule.retry`: a failed run is tried again after an exponentially growing, jittered
/// delay, never past the next scheduled run, and never for errors a retry cannot fix.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRetry")]
pub struct RetrySpec {
    /// Runs per slot in all, the first included; 1 turns retries off.
    pub attempts: u32,
    /// Delay before the first retry; each later one doubles it.
    pub initial_backoff: Duration,
    /// Longest delay between two runs.
    pub max_backoff: Duration,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRetry {
    attempts: Option<u32>,
    initial_backoff: Option<PositiveDuration>,
    max_backoff: Option<PositiveDuration>,
}

impl TryFrom<RawRetry> for RetrySpec {
    type Error = String;
    fn try_from(raw: RawRetry) -> Result<Self, String> {
        let d = RetrySpec::default();
        let r = RetrySpec {
            attempts: raw.attempts.unwrap_or(d.attempts),
            initial_backoff: raw.initial_backoff.map_or(d.initial_backoff, |x| x.0),
            max_backoff: raw.max_backoff.map_or(d.max_backoff, |x| x.0),
        };
        if !(1..=20).contains(&r.attempts) {
            return Err(format!(
                "schedule.retry.attempts {}: expected 1 (no retries) to 20",
                r.attempts
            ));
        }
        if r.max_backoff < r.initial_backoff {
            return Err(format!(
                "schedule.retry: maxBackoff {} is shorter than initialBackoff {}",
                humantime::format_duration(r.max_backoff),
                humantime::format_duration(r.initial_backoff)
            ));
        }
        Ok(r)
    }
}

impl Schedule {
    /// The expression with a seconds field, as tokio-cron-scheduler wants it.
    pub fn cron_with_seconds(&self) -> String {
        if self.cron.0.split_whitespace().count() == 5 {
            format!("0 {}", self.cron.0)
        } else {
            self.cron.0.clone()
        }
    }

    /// The next run strictly after `t`.
    pub fn next_after(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::SubsecRound;
        // croner carries the sub-second part of its input into the result; runs are whole seconds.
        let local = t.trunc_subsecs(0).with_timezone(&self.timezone.0);
        self.cron
            .1
            .find_next_occurrence(&local, false)
            .ok()
            .map(|n| n.with_timezone(&chrono::Utc).trunc_subsecs(0))
    }

    /// The time between the two runs following `t` (the schedule's period around then).
    pub fn period_at(&self, t: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let a = self.next_after(t)?;
        let b = self.next_after(a)?;
        (b - a).to_std().ok()
    }

    /// The longest gap between two consecutive runs over the next 200 runs from `t` (a weekday
    /// schedule's weekend, a month's longest stretch): what a staleness rule must allow.
    pub fn longest_gap(&self, t: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let mut prev = self.next_after(t)?;
        let mut longest = Duration::ZERO;
        for _ in 0..200 {
            let Some(next) = self.next_after(prev) else {
                break;
            };
            longest = longest.max((next - prev).to_std().unwrap_or_default());
            prev = next;
        }
        Some(longest)
    }

    /// The slot `t` falls in: the latest scheduled run at or before `t`. Every host computes the
    /// same slot for a run however late jitter started it.
    pub fn slot_at(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        // Look back far enough to find a run at or before `t`, then walk forward to the latest.
        let mut back = chrono::Duration::seconds(1);
        let mut slot = loop {
            let cand = self.next_after(t - back)?;
            if cand <= t {
                break cand;
            }
            if back > chrono::Duration::days(800) {
                return None;
            }
            back = back * 2;
        };
        while let Some(n) = self.next_after(slot).filter(|n| *n <= t) {
            slot = n;
        }
        Some(slot)
    }

    /// How old the last success may get before the policy counts as unhealthy.
    pub fn stale_after_at(&self, t: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        match &self.stale_after {
            Some(d) => Some(d.0),
            None => self.period_at(t).map(|p| p * 2),
        }
    }
}

pub(super) fn parse_cron(s: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(s)
}

/// A validated cron expression, as written and parsed once: standard 5 fields (minute hour day-of-month month day-of-week),
/// or 6 with a leading seconds field.
#[derive(Debug, Clone)]
pub struct CronExpr(pub String, croner::Cron);
string_newtype!(CronExpr, |s| {
    let fields = s.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "cron {s:?}: expected 5 fields (minute hour day-of-month month day-of-week), or 6 \
             with seconds first; found {fields}"
        ));
    }
    let cron = parse_cron(s).map_err(|e| format!("cron {s:?}: {e}"))?;
    Ok(CronExpr(s.to_owned(), cron))
});

/// An IANA time zone name such as `UTC` or `Europe/Berlin`.
#[derive(Debug, Clone, Copy)]
pub struct TimeZone(pub chrono_tz::Tz);
impl Default for TimeZone {
    fn default() -> Self {
        TimeZone(chrono_tz::UTC)
    }
}
string_newtype!(TimeZone, |s| chrono_tz::Tz::from_str(s)
    .map(TimeZone)
    .map_err(|_| format!(
        "timezone {s:?}: not an IANA time zone name; use e.g. UTC or Europe/Berlin"
    )));
