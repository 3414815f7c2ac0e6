//! Pruning: plan a policy's retention over its manifests and apply it to every destination, and
//! remove the data objects crashed runs left without a manifest. A backup is removed manifest
//! first, so it leaves listings at once and a half-finished removal never leaves a manifest
//! without its data.

use super::LoadedPolicy;
use super::list::{ListReport, Orphan};
use crate::error::{Error, Kind, Result};
use crate::model::{self, BackupId, CheckOutcome, Manifest, ObjectRole};
use crate::retention::{self, Candidate, Decision, Plan};
use crate::store::{Destination, describe_store_error};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use std::time::Duration;
use tracing::{info, warn};

/// How to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Plan and report only.
    pub dry_run: bool,
    /// Overrides the policy's `retention.orphanGrace`.
    pub orphan_grace: Option<Duration>,
    /// Plan this cluster's backups instead of the newest backup's cluster.
    pub cluster: Option<String>,
}

/// One backup and what the plan does with it.
#[derive(Debug, Clone)]
pub struct PlannedBackup {
    /// The plan's decision and its reasons.
    pub decision: Decision,
    /// Its manifest.
    pub manifest: Manifest,
    /// Destinations holding it.
    pub destinations: Vec<String>,
    /// Whether it was removed from every destination (never, in a dry run).
    pub removed: bool,
}

/// One data object without a manifest.
#[derive(Debug, Clone)]
pub struct PlannedOrphan {
    /// Where and what it is.
    pub orphan: Orphan,
    /// Older than the grace period: a crashed run's leftover.
    pub expired: bool,
    /// Whether it was deleted.
    pub removed: bool,
}

/// What a prune planned and did.
#[derive(Debug, Clone)]
pub struct PruneReport {
    /// Policy name.
    pub policy: String,
    /// Cluster the plan covered.
    pub cluster_id: String,
    /// Time zone of the calendar rules.
    pub timezone: Tz,
    /// The clock the plan used.
    pub now: DateTime<Utc>,
    /// No removal was attempted.
    pub dry_run: bool,
    /// Newest first.
    pub backups: Vec<PlannedBackup>,
    /// Orphans found, with their grace period.
    pub orphans: Vec<PlannedOrphan>,
    /// Grace period applied to orphans.
    pub orphan_grace: Duration,
    /// The plan's warnings and the listing's problems.
    pub warnings: Vec<String>,
    /// Removals that failed; each names the backup or object and the destination.
    pub failures: Vec<String>,
    /// The revision log's window (`spec.pitr`), when the policy has one.
    pub revlog: Option<RevlogPrune>,
}

/// One revision-log segment the window lets go.
#[derive(Debug, Clone)]
pub struct PlannedSegment {
    pub manifest: crate::revlog::SegmentManifest,
    /// Destinations holding it.
    pub destinations: Vec<String>,
    pub removed: bool,
}

/// What the window does with the revision log.
#[derive(Debug, Clone)]
pub struct RevlogPrune {
    pub window: Duration,
    /// Full backups kept as anchors: (backup, timeline).
    pub anchors: Vec<(BackupId, crate::revlog::TimelineId)>,
    /// Segments kept.
    pub kept: usize,
    /// Segments to remove (already covered by an anchor, or of a timeline that left the window).
    pub segments: Vec<PlannedSegment>,
    /// Timelines removed whole (after their segments), and whether that was done.
    pub timelines: Vec<(crate::revlog::TimelineId, bool)>,
    /// Segment data objects without a manifest: (destination, key, last modified, expired,
    /// removed).
    pub orphans: Vec<(String, String, DateTime<Utc>, bool, bool)>,
}

impl PruneReport {
    /// Backups the plan removes.
    pub fn planned_removals(&self) -> impl Iterator<Item = &PlannedBackup> {
        self.backups.iter().filter(|b| !b.decision.keep())
    }
}

/// Plan the policy's retention and, unless `dry_run`, apply it.
pub async fn prune(lp: &LoadedPolicy, opts: &PruneOptions) -> Result<PruneReport> {
    let p = &lp.policy;
    if p.retention.is_none() && p.pitr.is_none() {
        return Err(Error::new(
            Kind::Policy,
            format!(
                "policy {}: no spec.retention, so every backup is kept and there is nothing to \
                 prune; add a retention block (see docs/retention.md)",
                p.name
            ),
        ));
    }
    let listing = super::list(lp).await;
    if !listing.unlisted.is_empty() {
        return Err(Error::new(
            Kind::Storage,
            format!(
                "policy {}: cannot list destination(s) {}; prune plans only on a complete view of \
                 the backups, so nothing was removed. Fix access and run it again:\n  {}",
                p.name,
                listing.unlisted.join(", "),
                listing.problems.join("\n  ")
            ),
        ));
    }
    let tz = p.schedule.as_ref().map_or(chrono_tz::UTC, |s| s.timezone.0);
    let now = Utc::now();
    let mut plan = match &p.retention {
        Some(rules) => retention::plan(
            &candidates(&listing),
            &p.name,
            opts.cluster.as_deref(),
            rules,
            tz,
            now,
        )
        .map_err(|e| Error::new(Kind::Policy, format!("policy {}: {e}", p.name)))?,
        // Only the revision log is pruned: every backup stays.
        None => Plan {
            cluster_id: listing
                .backups
                .first()
                .map(|b| b.manifest.cluster_id.clone())
                .unwrap_or_default(),
            decisions: listing
                .backups
                .iter()
                .map(|b| Decision {
                    id: b.manifest.id.clone(),
                    started_at: b.manifest.started_at,
                    reasons: vec![retention::Reason::NoRules],
                })
                .collect(),
            warnings: Vec::new(),
        },
    };
    let grace = opts.orphan_grace.unwrap_or(
        p.retention
            .as_ref()
            .map_or(crate::policy::DEFAULT_ORPHAN_GRACE, |r| r.orphan_grace),
    );
    let revlog = match &p.pitr {
        Some(pitr) => Some(plan_window(lp, &listing, pitr.window, grace, now).await?),
        None => None,
    };
    // The window's anchors stay, whatever the rules say.
    if let Some(w) = &revlog {
        for d in &mut plan.decisions {
            if let Some((_, tl)) = w.anchors.iter().find(|(id, _)| *id == d.id) {
                d.reasons
                    .push(retention::Reason::PitrAnchor(tl.to_string()));
            }
        }
    }
    let mut report = assemble(lp, plan, listing, tz, now, grace, opts.dry_run)?;
    report.revlog = revlog;
    if !opts.dry_run {
        apply(lp, &mut report).await;
        apply_window(lp, &mut report).await;
    }
    Ok(report)
}

/// Plan the revision log's window over a complete listing of it.
async fn plan_window(
    lp: &LoadedPolicy,
    listing: &ListReport,
    window: Duration,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<RevlogPrune> {
    let log = super::revlog::list_revlog(lp).await;
    if !log.problems.is_empty() {
        return Err(Error::new(
            Kind::Storage,
            format!(
                "policy {}: the revision log cannot be read completely, so nothing was removed \
                 (a partial view could cut the recovery window):\n  {}",
                lp.policy.name,
                log.problems.join("\n  ")
            ),
        ));
    }
    let fulls: Vec<crate::revlog::plan::FullBackup> = listing
        .backups
        .iter()
        .map(|b| crate::revlog::plan::FullBackup {
            id: b.manifest.id.clone(),
            timeline: b.manifest.timeline.clone(),
            effective_revision: b
                .manifest
                .snapshot
                .effective_revision
                .unwrap_or(b.manifest.snapshot.revision),
            finished_at: b.manifest.finished_at,
        })
        .collect();
    let segs: Vec<crate::revlog::SegmentManifest> =
        log.segments.iter().map(|(s, _)| s.clone()).collect();
    let w = crate::revlog::window::plan(&log.timelines, &segs, &fulls, window, grace, now);
    let removed: std::collections::BTreeSet<_> = w.remove_segments.iter().cloned().collect();
    let mut segments = Vec::new();
    let mut kept = 0;
    for (s, holders) in log.segments {
        if removed.contains(&(s.timeline.clone(), s.first_revision, s.last_revision)) {
            segments.push(PlannedSegment {
                manifest: s,
                destinations: holders,
                removed: false,
            });
        } else {
            kept += 1;
        }
    }
    let orphans = log
        .orphans
        .into_iter()
        .map(|(d, k, t)| {
            let expired = retention::orphan_expired(t, now, grace);
            (d, k, t, expired, false)
        })
        .collect();
    Ok(RevlogPrune {
        window,
        anchors: w.anchors,
        kept,
        segments,
        timelines: w.remove_timelines.into_iter().map(|t| (t, false)).collect(),
        orphans,
    })
}

/// Remove what the window lets go: each segment manifest first, then its data; whole
/// timelines' `timeline.json` last; expired segment data without a manifest.
async fn apply_window(lp: &LoadedPolicy, report: &mut PruneReport) {
    let Some(w) = &mut report.revlog else {
        return;
    };
    let policy = lp.policy.name.clone();
    for seg in &mut w.segments {
        let m = &seg.manifest;
        let key = crate::revlog::segment_manifest_key(
            &policy,
            &m.timeline,
            m.first_revision,
            m.last_revision,
        );
        let mut ok = true;
        for d in lp
            .destinations
            .iter()
            .filter(|d| seg.destinations.contains(&d.name))
        {
            let r = match d.delete(&key).await {
                Ok(()) => d.delete(&m.stored.key).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                ok = false;
                report.failures.push(format!(
                    "destination {:?}: cannot remove segment {key}: {}",
                    d.name,
                    describe_store_error(&e)
                ));
            }
        }
        seg.removed = ok;
    }
    for (tl, removed) in &mut w.timelines {
        let key = crate::revlog::timeline_key(&policy, tl);
        let mut ok = true;
        for d in &lp.destinations {
            if let Err(e) = d.delete(&key).await {
                ok = false;
                report.failures.push(format!(
                    "destination {:?}: cannot remove {key}: {}",
                    d.name,
                    describe_store_error(&e)
                ));
            }
        }
        *removed = ok;
    }
    for (dest, key, _, expired, removed) in &mut w.orphans {
        if !*expired {
            continue;
        }
        let Some(d) = lp.destinations.iter().find(|d| d.name == *dest) else {
            continue;
        };
        if !matches!(
            crate::revlog::parse_revlog_key(&policy, key),
            Some(crate::revlog::RevlogObject::SegmentData { .. })
        ) {
            continue;
        }
        match d.delete(key).await {
            Ok(()) => *removed = true,
            Err(e) => report.failures.push(format!(
                "destination {:?}: cannot delete orphan segment data {key}: {}",
                d.name,
                describe_store_error(&e)
            )),
        }
    }
}

/// The planner's view of the listed backups.
fn candidates(listing: &ListReport) -> Vec<Candidate> {
    listing
        .backups
        .iter()
        .map(|b| {
            let m = &b.manifest;
            Candidate {
                id: m.id.clone(),
                policy: m.policy.clone(),
                cluster_id: m.cluster_id.clone(),
                started_at: m.started_at,
                verified: m
                    .checks
                    .iter()
                    .any(|c| c.name == model::STRUCTURE_CHECK && c.outcome == CheckOutcome::Passed),
            }
        })
        .collect()
}

fn assemble(
    lp: &LoadedPolicy,
    plan: Plan,
    listing: ListReport,
    timezone: Tz,
    now: DateTime<Utc>,
    orphan_grace: Duration,
    dry_run: bool,
) -> Result<PruneReport> {
    let Plan {
        cluster_id,
        decisions,
        mut warnings,
    } = plan;
    // The planner always keeps the newest backup; refuse to act on a plan that says otherwise.
    if !decisions.is_empty() && decisions.iter().all(|d| !d.keep()) {
        return Err(Error::new(
            Kind::Internal,
            format!(
                "policy {}: the retention plan removes every backup; refusing to apply it (this \
                 is a bug, please report it)",
                lp.policy.name
            ),
        ));
    }
    let mut listed: std::collections::HashMap<BackupId, _> = listing
        .backups
        .into_iter()
        .map(|b| (b.manifest.id.clone(), b))
        .collect();
    let backups = decisions
        .into_iter()
        .filter_map(|decision| {
            let b = listed.remove(&decision.id)?;
            Some(PlannedBackup {
                decision,
                manifest: b.manifest,
                destinations: b.destinations,
                removed: false,
            })
        })
        .collect();
    let orphans = listing
        .orphans
        .into_iter()
        .map(|orphan| PlannedOrphan {
            expired: retention::orphan_expired(orphan.last_modified, now, orphan_grace),
            orphan,
            removed: false,
        })
        .collect();
    warnings.extend(listing.problems);
    Ok(PruneReport {
        policy: lp.policy.name.clone(),
        cluster_id,
        timezone,
        now,
        dry_run,
        backups,
        orphans,
        orphan_grace,
        warnings,
        failures: Vec::new(),
        revlog: None,
    })
}

/// Removals run a few at a time: enough to clear a long backlog, gentle on the store.
const REMOVALS_IN_FLIGHT: usize = 8;

async fn apply(lp: &LoadedPolicy, report: &mut PruneReport) {
    let policy = report.policy.clone();
    let jobs: Vec<(usize, &Destination)> = report
        .backups
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.decision.keep())
        .flat_map(|(i, _)| lp.destinations.iter().map(move |d| (i, d)))
        .collect();
    let backups = &report.backups;
    let results: Vec<(usize, std::result::Result<(), String>)> = futures::stream::iter(jobs)
        .map(|(i, d)| {
            let m = &backups[i].manifest;
            let policy = &policy;
            async move { (i, remove_backup(d, policy, m).await) }
        })
        .buffer_unordered(REMOVALS_IN_FLIGHT)
        .collect()
        .await;
    let mut failed = vec![false; report.backups.len()];
    for (i, r) in results {
        if let Err(e) = r {
            failed[i] = true;
            report.failures.push(e);
        }
    }
    for (b, failed) in report.backups.iter_mut().zip(failed) {
        if !b.decision.keep() && !failed {
            b.removed = true;
            info!(policy = %policy, backup = %b.decision.id, "Backup removed by retention");
        }
    }

    let expired: Vec<usize> = (0..report.orphans.len())
        .filter(|&i| report.orphans[i].expired)
        .collect();
    for i in expired {
        let o = &report.orphans[i].orphan;
        let Some(d) = lp.destinations.iter().find(|d| d.name == o.destination) else {
            continue;
        };
        // Only ever a data object of this policy's layout.
        if !matches!(
            model::parse_key(&policy, &o.key),
            Some((_, ObjectRole::Data))
        ) {
            continue;
        }
        match d.delete(&o.key).await {
            Ok(()) => {
                info!(destination = %d.name, key = %o.key, "Orphan data object removed");
                report.orphans[i].removed = true;
            }
            Err(e) => report.failures.push(format!(
                "destination {:?}: cannot delete orphan {}: {}",
                d.name,
                o.key,
                describe_store_error(&e)
            )),
        }
    }
    for f in &report.failures {
        warn!(policy = %policy, error = %f, "Prune removal failed");
    }
}

/// Remove one backup from one destination: manifest, then data. If the manifest cannot be
/// deleted the data stays, so the backup is still whole wherever it is still listed.
async fn remove_backup(
    d: &Destination,
    policy: &str,
    m: &Manifest,
) -> std::result::Result<(), String> {
    let id: &BackupId = &m.id;
    if model::parse_key(policy, &m.stored.key) != Some((id.clone(), ObjectRole::Data)) {
        return Err(format!(
            "destination {:?}: backup {id}: its manifest names data object {:?}, which is not \
             this backup's; left in place",
            d.name, m.stored.key
        ));
    }
    let manifest_key = model::manifest_key(policy, id);
    d.delete(&manifest_key).await.map_err(|e| {
        format!(
            "destination {:?}: cannot delete manifest {manifest_key} of backup {id}: {}; the \
             backup is untouched there and the next prune tries again",
            d.name,
            describe_store_error(&e)
        )
    })?;
    d.delete(&m.stored.key).await.map_err(|e| {
        format!(
            "destination {:?}: backup {id}: manifest deleted but its data object {} could not \
             be: {}; the next prune removes it as an orphan",
            d.name,
            m.stored.key,
            describe_store_error(&e)
        )
    })
}
