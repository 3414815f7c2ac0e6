//! `spec.retention`: GFS rules, keepLast, prune after backup, orphan grace.

use super::*;
use serde::Deserialize;
use std::time::Duration;

/// Retention rules, combined with OR (a backup is kept if any rule keeps it).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRetention")]
pub struct Retention {
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep the newest per hour, for N hours that have backups.
    pub keep_hourly: Option<u32>,
    /// Keep the newest per day, for N days.
    pub keep_daily: Option<u32>,
    /// Keep the newest per ISO week, for N weeks.
    pub keep_weekly: Option<u32>,
    /// Keep the newest per month, for N months.
    pub keep_monthly: Option<u32>,
    /// Keep the newest per year, for N years.
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this, measured back from the newest backup.
    pub keep_within: Option<Duration>,
    /// Prune after every successful backup.
    pub prune_after_backup: bool,
    /// Data objects without a manifest younger than this are left alone (a run may still be
    /// writing them); older ones are a crashed run's leftovers and are removed by prune.
    pub orphan_grace: Duration,
}

/// Default [`Retention::orphan_grace`]: long enough for any run still in progress.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Retention {
    /// Whether any rule keeps anything; a retention that keeps nothing is refused everywhere
    /// (parsing and planning), never read as "remove all".
    pub fn keeps_something(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(|c| c.unwrap_or(0) > 0)
            || self.keep_within.is_some_and(|d| !d.is_zero())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<PositiveDuration>,
    #[serde(default = "yes")]
    prune_after_backup: bool,
    orphan_grace: Option<PositiveDuration>,
}

pub(super) fn yes() -> bool {
    true
}

impl TryFrom<RawRetention> for Retention {
    type Error = String;
    fn try_from(r: RawRetention) -> Result<Self, String> {
        let retention = Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within: r.keep_within.map(|d| d.0),
            prune_after_backup: r.prune_after_backup,
            orphan_grace: r.orphan_grace.map_or(DEFAULT_ORPHAN_GRACE, |d| d.0),
        };
        if !retention.keeps_something() {
            return Err(
                "spec.retention keeps nothing: set at least one of keepLast, keepHourly, \
                 keepDaily, keepWeekly, keepMonthly, keepYearly (above 0) or keepWithin; \
                 remove the retention block to keep every backup"
                    .into(),
            );
        }
        Ok(retention)
    }
}
