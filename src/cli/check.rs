//! `lifeboat check`: prove stored backups and print a table (or JSON).

use crate::error::{Error, Kind};
use crate::ops;
use crate::ops::check::{CheckOptions, Sample};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `lifeboat check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Policy whose backups to check.
    #[arg(long)]
    policy: PathBuf,
    /// age identity file able to decrypt the backups; may be repeated.
    #[arg(long)]
    identity: Vec<PathBuf>,
    /// Check only some backups: a count (3) or a share (10%); the newest is always checked.
    #[arg(long, default_value = "all")]
    sample: Sample,
    /// Also restore the newest backup into a throwaway single-member etcd on loopback and compare
    /// its revision and key count over the API.
    #[arg(long)]
    drill: bool,
    /// etcd binary for --drill (default: etcd on PATH).
    #[arg(long, value_name = "PATH", requires = "drill")]
    etcd: Option<PathBuf>,
    /// Also prove the revision log (spec.pitr): every timeline contiguous from its oldest
    /// full backup to its head, every segment's data object present with its recorded size.
    #[arg(long)]
    pitr: bool,
    /// With --pitr: download, decrypt and decode every segment too.
    #[arg(long, requires = "pitr")]
    read_data: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Write lifeboat_last_check_success_timestamp_seconds and lifeboat_check_failures_total
    /// to this file, atomically, for node_exporter's textfile collector (use a file of its own,
    /// beside the backup's). The counter and the last pass continue from its previous contents.
    #[arg(long, value_name = "PATH")]
    metrics_textfile: Option<PathBuf>,
}

impl CheckArgs {
    /// Whether the output is JSON (no progress bars then).
    pub fn json(&self) -> bool {
        self.json
    }
}

pub async fn check(a: CheckArgs) -> Result<u8, Error> {
    let lp = ops::load_policy(&a.policy)?;
    let identities: ops::fetch::Identities = Arc::new(ops::fetch::load_identities(&a.identity)?);
    let drill_etcd = match (a.drill, a.etcd) {
        (false, _) => None,
        (true, Some(p)) => Some(p),
        (true, None) => Some(ops::etcdutl::which("etcd").ok_or_else(|| {
            Error::new(
                Kind::Usage,
                "--drill needs an etcd binary: install etcd or pass --etcd PATH",
            )
        })?),
    };
    let opts = CheckOptions {
        sample: a.sample,
        drill_etcd,
    };
    let r = ops::check::check(&lp, &identities, &opts).await;
    let pitr = if a.pitr {
        Some(ops::pitr::check_log(&lp, &identities, a.read_data).await?)
    } else {
        None
    };
    let pitr_failed = pitr
        .as_ref()
        .is_some_and(|(t, _)| t.is_empty() || t.iter().any(|c| !c.problems.is_empty()));
    if a.json {
        let copies: Vec<_> = r
            .copies
            .iter()
            .map(|c| {
                json!({
                    "id": c.manifest.id,
                    "destination": c.destination,
                    "created": c.manifest.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "revision": c.manifest.snapshot.revision,
                    "ok": c.outcome.is_ok(),
                    "detail": match &c.outcome { Ok(s) | Err(s) => s },
                    "seconds": c.seconds,
                })
            })
            .collect();
        let orphans: Vec<_> = r
            .orphans
            .iter()
            .map(|o| {
                json!({
                    "destination": o.destination,
                    "key": o.key,
                    "size": o.size,
                    "lastModified": o.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })
            })
            .collect();
        let drill = r.drill.as_ref().map(|d| match d {
            Ok(o) => json!({"ok": true, "backup": o.backup, "etcd": o.etcd, "revision": o.revision, "keys": o.keys, "seconds": o.seconds}),
            Err(e) => json!({"ok": false, "error": e}),
        });
        let v = json!({
            "policy": lp.policy.name,
            "backups": r.backups,
            "checked": copies,
            "problems": r.problems,
            "orphans": orphans,
            "drill": drill,
            "pitr": pitr.as_ref().map(|(tls, problems)| json!({
                "timelines": tls.iter().map(|c| json!({
                    "timeline": c.timeline.id,
                    "startRevision": c.timeline.start_revision,
                    "anchor": c.anchor.as_ref().map(|(b, r)| json!({"backup": b, "revision": r})),
                    "head": c.head,
                    "segments": c.segments,
                    "segmentsRead": c.read,
                    "ok": c.problems.is_empty(),
                    "problems": c.problems,
                })).collect::<Vec<_>>(),
                "problems": problems,
            })),
        });
        out!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        out!(
            "{:<23}  {:<12}  {:<20}  {:>10}  RESULT",
            "BACKUP",
            "DESTINATION",
            "CREATED",
            "REVISION"
        );
        for c in &r.copies {
            let result = match &c.outcome {
                Ok(s) => format!("{s} ({:.1}s)", c.seconds),
                Err(e) => format!("FAILED: {}", e.replace('\n', " ")),
            };
            out!(
                "{:<23}  {:<12}  {:<20}  {:>10}  {result}",
                c.manifest.id.as_str(),
                c.destination,
                c.manifest
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                c.manifest.snapshot.revision
            );
        }
        let checked: std::collections::HashSet<_> =
            r.copies.iter().map(|c| &c.manifest.id).collect();
        out!(
            "{} of {} backup(s) checked, {} copy(ies) failed",
            checked.len(),
            r.backups,
            r.copies.iter().filter(|c| c.outcome.is_err()).count()
        );
        for o in &r.orphans {
            out!(
                "orphan: {} at destination {:?} ({} bytes, written {}) has no manifest: a run in \
                 progress or one that failed; `lifeboat prune` removes old ones",
                o.key,
                o.destination,
                o.size,
                o.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        match &r.drill {
            Some(Ok(d)) => out!(
                "drill: backup {} restored into a throwaway {} in {:.1}s: revision {} and {} keys \
                 match the backup",
                d.backup,
                d.etcd,
                d.seconds,
                d.revision,
                d.keys
            ),
            Some(Err(e)) => out!("drill: FAILED: {e}"),
            None => {}
        }
        if let Some((tls, _)) = &pitr {
            if tls.is_empty() {
                out!("revision log: FAILED: no timeline; is the streamer running (spec.pitr)?");
            }
            for c in tls {
                let anchor = c.anchor.as_ref().map_or("none".to_owned(), |(b, r)| {
                    format!("backup {b} at revision {r}")
                });
                out!(
                    "revision log: timeline {} ({:?}, from revision {}): anchor {anchor}, head {}, \
                     {} segment(s){}: {}",
                    c.timeline.id,
                    c.timeline.reason,
                    c.timeline.start_revision,
                    c.head.map_or("-".to_owned(), |h| h.to_string()),
                    c.segments,
                    if a.read_data {
                        format!(", {} copy(ies) read", c.read)
                    } else {
                        String::new()
                    },
                    if c.problems.is_empty() {
                        "ok"
                    } else {
                        "FAILED"
                    }
                );
                for p in &c.problems {
                    out!("  {p}");
                }
            }
        }
    }
    if let Some((_, problems)) = &pitr {
        for p in problems {
            eprintln!("warning: {p}");
        }
    }
    for p in &r.problems {
        eprintln!("warning: {p}");
    }
    let code = if r.any_failed() || pitr_failed {
        Kind::Verify.exit_code()
    } else if !r.problems.is_empty() {
        Kind::Storage.exit_code()
    } else {
        0
    };
    if let Some(path) = &a.metrics_textfile {
        let metrics = crate::daemon::metrics::Metrics::new();
        if let Err(e) = metrics.continue_from_textfile(path) {
            eprintln!("warning: {}", e.chain());
        }
        metrics.check(&lp.policy.name, code == 0, chrono::Utc::now());
        if let Err(e) = metrics.write_textfile(path) {
            eprintln!("warning: {}", e.chain());
        }
    }
    Ok(code)
}
