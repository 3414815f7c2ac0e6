//! Retention planning: which of a policy's backups to keep, and why. Pure: the backups' facts
//! (from their manifests), the rules, the policy's time zone and a clock in; a plan out.
//!
//! Rules combine with OR, as restic's do: a backup is kept if any rule keeps it. Calendar rules
//! keep the newest backup of each of the N most recent buckets that hold a backup, counted back
//! from the newest backup (not from the clock), so a cluster that stopped backing up a month ago
//! still has its full set. Safety rules beyond the user's: the newest backup and the newest
//! verified backup are always kept, backups dated after `now` are kept and reported (clock skew
//! would otherwise make them "newest" and age out everything else), and backups of another
//! policy or another cluster are never touched.

use crate::model::BackupId;
use crate::policy::Retention;
use chrono::{DateTime, Datelike, Offset, Timelike, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// What the planner needs to know about one backup.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub id: BackupId,
    /// The policy its manifest names.
    pub policy: String,
    /// The cluster its manifest names (empty for a backup of a file).
    pub cluster_id: String,
    /// When its run started.
    pub started_at: DateTime<Utc>,
    /// Whether its manifest records a passed structure check of the snapshot.
    pub verified: bool,
}

/// A calendar bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One clock hour (the two 01:00 hours of a DST fall-back are two buckets).
    Hourly,
    /// One calendar day.
    Daily,
    /// One ISO week (Monday to Sunday; week 1 holds the year's first Thursday).
    Weekly,
    /// One calendar month.
    Monthly,
    /// One calendar year.
    Yearly,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    fn count(self, r: &Retention) -> u32 {
        match self {
            Period::Hourly => r.keep_hourly,
            Period::Daily => r.keep_daily,
            Period::Weekly => r.keep_weekly,
            Period::Monthly => r.keep_monthly,
            Period::Yearly => r.keep_yearly,
        }
        .unwrap_or(0)
    }

    /// The bucket `t` falls in, in time zone `tz`. Backups are visited newest first, and each
    /// bucket's members are contiguous in time, so comparing with the previous key suffices.
    fn bucket(self, t: DateTime<Utc>, tz: Tz) -> (i32, u32, u32, i32) {
        let l = t.with_timezone(&tz);
        match self {
            Period::Hourly => (
                l.year(),
                l.ordinal(),
                l.hour(),
                l.offset().fix().local_minus_utc(),
            ),
            Period::Daily => (l.year(), l.ordinal(), 0, 0),
            Period::Weekly => {
                let w = l.iso_week();
                (w.year(), w.week(), 0, 0)
            }
            Period::Monthly => (l.year(), l.month(), 0, 0),
            Period::Yearly => (l.year(), 0, 0, 0),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }
}

/// Why a backup is kept (or, with no reasons, why it is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The newest backup of the plan.
    Newest,
    /// The newest backup whose snapshot structure was checked (when the newest was not).
    NewestVerified,
    /// Among the `of` newest (`keepLast`); it is the `n`th.
    Last {
        /// Position, from 1.
        n: u32,
        /// The rule's count.
        of: u32,
    },
    /// Newest of the `n`th most recent bucket of `period` (`keepDaily` etc.).
    Bucket {
        /// Bucket size.
        period: Period,
        /// Position, from 1.
        n: u32,
        /// The rule's count.
        of: u32,
    },
    /// Started within this long of the newest backup (`keepWithin`).
    Within(Duration),
    /// Started after `now`: clock skew somewhere; kept, and left out of the planning.
    FutureDated,
    /// Its manifest names another policy.
    OtherPolicy(String),
    /// Its manifest names another cluster than the one this plan covers.
    OtherCluster(String),
    /// The full backup the revision log's window starts from (`spec.pitr.window`).
    PitrAnchor(String),
    /// The policy has no retention rules (only its revision log is pruned).
    NoRules,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::NewestVerified => f.write_str("newest verified"),
            Reason::Last { n, of } => write!(f, "last {n}/{of}"),
            Reason::Bucket { period, n, of } => write!(f, "{} {n}/{of}", period.name()),
            Reason::Within(d) => write!(f, "within {}", short_duration(*d)),
            Reason::FutureDated => f.write_str("dated in the future"),
            Reason::OtherPolicy(p) => write!(f, "other policy {p}"),
            Reason::OtherCluster(c) if c.is_empty() => {
                f.write_str("other cluster (unknown: backed up from a file)")
            }
            Reason::OtherCluster(c) => write!(f, "other cluster {c}"),
            Reason::PitrAnchor(tl) => write!(f, "pitr anchor of timeline {tl}"),
            Reason::NoRules => f.write_str("no retention rules"),
        }
    }
}

/// `48h`, `7d`, `90m`: the largest whole unit, as users write them in policies.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The decision for one backup.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Which backup.
    pub id: BackupId,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Why it is kept; empty means it is removed.
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// Whether the plan keeps it.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// A retention plan: a decision per backup, newest first.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The cluster whose backups the plan covers.
    pub cluster_id: String,
    /// Newest first.
    pub decisions: Vec<Decision>,
    /// Things an operator should look at (clock skew, unverified newest backup).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Decisions that remove a backup.
    pub fn removals(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep())
    }
}

/// A retention that would keep nothing; refused rather than read as "remove everything".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepsNothing;

impl fmt::Display for KeepsNothing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the retention rules keep nothing; refusing to plan (set keepLast, a calendar rule \
             or keepWithin)",
        )
    }
}

impl std::error::Error for KeepsNothing {}

/// Plan which backups of `policy` to keep.
///
/// `cluster` picks the cluster whose backups are planned; by default the cluster of the newest
/// backup that names one. `tz` is the time zone of the calendar buckets.
pub fn plan(
    backups: &[Candidate],
    policy: &str,
    cluster: Option<&str>,
    rules: &Retention,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Plan, KeepsNothing> {
    if !rules.keeps_something() {
        return Err(KeepsNothing);
    }
    let mut order: Vec<&Candidate> = backups.iter().collect();
    order.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));

    let cluster_id = cluster.map(str::to_owned).unwrap_or_else(|| {
        order
            .iter()
            .find(|c| c.policy == policy && c.started_at <= now && !c.cluster_id.is_empty())
            .or_else(|| order.iter().find(|c| c.policy == policy))
            .map(|c| c.cluster_id.clone())
            .unwrap_or_default()
    });

    let mut decisions: Vec<Decision> = order
        .iter()
        .map(|c| Decision {
            id: c.id.clone(),
            started_at: c.started_at,
            reasons: Vec::new(),
        })
        .collect();
    let mut warnings = Vec::new();
    // Indices (into `order`/`decisions`) of the backups the rules apply to, newest first.
    let mut planned = Vec::new();
    for (i, c) in order.iter().enumerate() {
        let outside = if c.policy != policy {
            Some(Reason::OtherPolicy(c.policy.clone()))
        } else if c.cluster_id != cluster_id {
            Some(Reason::OtherCluster(c.cluster_id.clone()))
        } else if c.started_at > now {
            warnings.push(format!(
                "backup {} is dated {}, after the current time {}: a clock is wrong on this host \
                 or the one that made it; it is kept and left out of the plan",
                c.id,
                c.started_at.to_rfc3339(),
                now.to_rfc3339()
            ));
            Some(Reason::FutureDated)
        } else {
            None
        };
        match outside {
            Some(r) => decisions[i].reasons.push(r),
            None => planned.push(i),
        }
    }
    let Some(&newest) = planned.first() else {
        return Ok(Plan {
            cluster_id,
            decisions,
            warnings,
        });
    };

    decisions[newest].reasons.push(Reason::Newest);
    match planned.iter().find(|&&i| order[i].verified) {
        Some(&i) if i != newest => {
            decisions[i].reasons.push(Reason::NewestVerified);
            warnings.push(format!(
                "the newest backup {} records no structure check; the newest verified backup {} \
                 is kept as well",
                order[newest].id, order[i].id
            ));
        }
        Some(_) => {}
        None => warnings.push(
            "no backup of this plan records a structure check; run `lifeboat check` on them"
                .to_owned(),
        ),
    }

    if let Some(of) = rules.keep_last.filter(|&n| n > 0) {
        for (n, &i) in (1..=of).zip(&planned) {
            decisions[i].reasons.push(Reason::Last { n, of });
        }
    }
    for period in Period::ALL {
        let of = period.count(rules);
        let mut last = None;
        let mut n = 0;
        for &i in &planned {
            if n == of {
                break;
            }
            let key = period.bucket(order[i].started_at, tz);
            if last != Some(key) {
                n += 1;
                last = Some(key);
                decisions[i].reasons.push(Reason::Bucket { period, n, of });
            }
        }
    }
    if let Some(within) = rules.keep_within.filter(|d| !d.is_zero()) {
        let newest_at = order[newest].started_at;
        for &i in &planned {
            let age = (newest_at - order[i].started_at)
                .to_std()
                .unwrap_or_default();
            if age <= within {
                decisions[i].reasons.push(Reason::Within(within));
            }
        }
    }
    Ok(Plan {
        cluster_id,
        decisions,
        warnings,
    })
}

/// Whether a data object without a manifest, last written at `last_modified`, is old enough to
/// be a crashed run's leftover rather than a run still in progress.
pub fn orphan_expired(last_modified: DateTime<Utc>, now: DateTime<Utc>, grace: Duration) -> bool {
    (now - last_modified).to_std().is_ok_and(|age| age > grace)
}
