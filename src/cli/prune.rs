//! `lifeboat prune`: print the retention plan with its reasons, then apply it.

use super::human_bytes;
use crate::error::{Error, Kind};
use crate::ops;
use crate::ops::prune::{PruneOptions, PruneReport};
use crate::retention;
use chrono::SecondsFormat;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `lifeboat prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Policy whose retention to apply.
    #[arg(long)]
    policy: PathBuf,
    /// Print the plan; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove data objects without a manifest only when older than this (default: the policy's
    /// retention.orphanGrace, 24h if unset). Keep it longer than your longest backup run.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    orphan_grace: Option<Duration>,
    /// Plan the backups of this etcd cluster id (hex) instead of the newest backup's cluster,
    /// e.g. to thin out the backups of a cluster that was replaced by a restore.
    #[arg(long, value_name = "ID")]
    cluster: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 30m or 24h"))?;
    if d.is_zero() {
        return Err("must be greater than zero: a run in progress would lose its upload".into());
    }
    Ok(d)
}

pub async fn prune(a: PruneArgs) -> Result<u8, Error> {
    let lp = ops::load_policy(&a.policy)?;
    let opts = PruneOptions {
        dry_run: a.dry_run,
        orphan_grace: a.orphan_grace,
        cluster: a.cluster,
    };
    let r = ops::prune::prune(&lp, &opts).await?;
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&report_json(&r)).expect("json")
        );
    } else {
        print_table(&r);
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for f in &r.failures {
        eprintln!("error: {f}");
    }
    Ok(if r.failures.is_empty() {
        0
    } else {
        Kind::Storage.exit_code()
    })
}

fn action(planned_keep: bool, removed: bool, dry_run: bool) -> &'static str {
    match (planned_keep, removed, dry_run) {
        (true, _, _) => "keep",
        (false, _, true) => "remove",
        (false, true, false) => "removed",
        (false, false, false) => "FAILED",
    }
}

/// The report as JSON; also embedded in `backup --json`.
pub fn report_json(r: &PruneReport) -> Value {
    let backups: Vec<Value> = r
        .backups
        .iter()
        .map(|b| {
            json!({
                "id": b.decision.id,
                "startedAt": b.decision.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "action": action(b.decision.keep(), b.removed, r.dry_run),
                "reasons": b.decision.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "clusterId": b.manifest.cluster_id,
                "storedSize": b.manifest.stored.size,
                "destinations": b.destinations,
            })
        })
        .collect();
    let orphans: Vec<Value> = r
        .orphans
        .iter()
        .map(|o| {
            json!({
                "destination": o.orphan.destination,
                "key": o.orphan.key,
                "size": o.orphan.size,
                "lastModified": o.orphan.last_modified.to_rfc3339_opts(SecondsFormat::Secs, true),
                "action": action(!o.expired, o.removed, r.dry_run),
            })
        })
        .collect();
    let revlog = r.revlog.as_ref().map(|w| {
        json!({
            "window": retention::short_duration(w.window),
            "anchors": w.anchors.iter().map(|(b, t)| json!({"backup": b, "timeline": t})).collect::<Vec<_>>(),
            "segmentsKept": w.kept,
            "segments": w.segments.iter().map(|s| json!({
                "timeline": s.manifest.timeline,
                "firstRevision": s.manifest.first_revision,
                "lastRevision": s.manifest.last_revision,
                "storedSize": s.manifest.stored.size,
                "destinations": s.destinations,
                "action": action(false, s.removed, r.dry_run),
            })).collect::<Vec<_>>(),
            "timelines": w.timelines.iter().map(|(t, removed)| json!({
                "timeline": t, "action": action(false, *removed, r.dry_run),
            })).collect::<Vec<_>>(),
            "orphans": w.orphans.iter().map(|(d, k, t, expired, removed)| json!({
                "destination": d, "key": k,
                "lastModified": t.to_rfc3339_opts(SecondsFormat::Secs, true),
                "action": action(!expired, *removed, r.dry_run),
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "policy": r.policy,
        "clusterId": r.cluster_id,
        "timezone": r.timezone.name(),
        "now": r.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "dryRun": r.dry_run,
        "orphanGrace": retention::short_duration(r.orphan_grace),
        "backups": backups,
        "orphans": orphans,
        "revlog": revlog,
        "warnings": r.warnings,
        "failures": r.failures,
    })
}

fn print_table(r: &PruneReport) {
    out!(
        "policy {}, cluster {}, calendar in {}{}",
        r.policy,
        if r.cluster_id.is_empty() {
            "(none recorded)"
        } else {
            &r.cluster_id
        },
        r.timezone.name(),
        if r.dry_run {
            "; dry run: nothing is removed"
        } else {
            ""
        }
    );
    out!(
        "{:<23}  {:<22}  {:>10}  {:<7}  REASONS",
        "ID",
        "STARTED",
        "STORED",
        "ACTION"
    );
    for b in &r.backups {
        let reasons: Vec<String> = b.decision.reasons.iter().map(ToString::to_string).collect();
        out!(
            "{:<23}  {:<22}  {:>10}  {:<7}  {}",
            b.decision.id.as_str(),
            b.decision
                .started_at
                .with_timezone(&r.timezone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string(),
            human_bytes(b.manifest.stored.size),
            action(b.decision.keep(), b.removed, r.dry_run),
            if reasons.is_empty() {
                "no rule keeps it".to_owned()
            } else {
                reasons.join(", ")
            }
        );
    }
    for o in &r.orphans {
        let when = o
            .orphan
            .last_modified
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        out!(
            "orphan {} at {:?} ({}, written {when}): {}",
            o.orphan.key,
            o.orphan.destination,
            human_bytes(o.orphan.size),
            match (o.expired, o.removed, r.dry_run) {
                (false, _, _) => "younger than the grace period, kept (a run may be writing it)",
                (true, _, true) => "older than the grace period, would be removed",
                (true, true, false) => "older than the grace period, removed",
                (true, false, false) => "older than the grace period, removal FAILED",
            }
        );
    }
    if let Some(w) = &r.revlog {
        out!(
            "\nrevision log (window {}): {} segment(s) kept, {} {}",
            retention::short_duration(w.window),
            w.kept,
            w.segments.len(),
            if r.dry_run { "would go" } else { "removed" }
        );
        for (b, t) in &w.anchors {
            out!("  anchor: backup {b} (timeline {t}) is kept as the window's start");
        }
        for s in &w.segments {
            out!(
                "  {} segment {}-{} of timeline {} (covered by its anchor, or outside the window)",
                action(false, s.removed, r.dry_run),
                s.manifest.first_revision,
                s.manifest.last_revision,
                s.manifest.timeline
            );
        }
        for (t, removed) in &w.timelines {
            out!("  {} timeline {t}", action(false, *removed, r.dry_run));
        }
    }
    out!("{}", summary(r));
}

/// One line: what was (or would be) kept and removed.
pub fn summary(r: &PruneReport) -> String {
    let remove: Vec<_> = r.planned_removals().collect();
    let bytes: u64 = remove.iter().map(|b| b.manifest.stored.size).sum();
    let expired = r.orphans.iter().filter(|o| o.expired).count();
    let grace = retention::short_duration(r.orphan_grace);
    let kept = r.backups.len() - remove.len();
    if r.dry_run {
        return format!(
            "kept {kept}, would remove {} backup(s) ({}) and {expired} of {} orphan(s) older \
             than {grace}",
            remove.len(),
            human_bytes(bytes),
            r.orphans.len(),
        );
    }
    format!(
        "kept {kept}, removed {} of {} backup(s) ({}) and {} of {} orphan(s) older than {grace}",
        remove.iter().filter(|b| b.removed).count(),
        remove.len(),
        human_bytes(bytes),
        r.orphans.iter().filter(|o| o.removed).count(),
        expired,
    )
}
