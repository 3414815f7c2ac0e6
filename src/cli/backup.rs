//! `lifeboat backup`: one run (or, with a schedule, the retries inside its slot), printed as
//! a summary or JSON, with an optional node-exporter textfile.

use super::*;

/// `lifeboat backup`'s arguments.
pub(super) struct BackupArgs<'a> {
    pub(super) policy: &'a std::path::Path,
    pub(super) from_file: Option<&'a std::path::Path>,
    pub(super) skip_hash_check: bool,
    pub(super) json_out: bool,
    pub(super) textfile: Option<&'a std::path::Path>,
    pub(super) retry: bool,
}

pub(super) async fn backup(a: BackupArgs<'_>) -> Result<(), Error> {
    let BackupArgs {
        policy,
        from_file,
        skip_hash_check,
        json_out,
        textfile,
        retry,
    } = a;
    let lp = ops::load_policy(policy)?;
    let metrics = crate::daemon::metrics::Metrics::new();
    if let Some(path) = textfile
        && let Err(e) = metrics.continue_from_textfile(path)
    {
        eprintln!("warning: {}", e.chain());
    }
    let name = lp.policy.name.clone();
    // SIGTERM/SIGINT (a stopped systemd unit, Ctrl-C) abort the run cleanly before its commit,
    // and a retry waiting for its turn gives up. A backup from a file is short and local; it
    // keeps the default signal handling.
    let cancel = tokio_util::sync::CancellationToken::new();
    if from_file.is_none() {
        cancel_on_signals(&cancel);
    }
    let observe = |ev: ops::RunEvent<'_>| match ev {
        ops::RunEvent::Started(at) => metrics.attempt(&name, at),
        ops::RunEvent::Ended { result, took } => match result {
            Ok(ops::Outcome::Committed(r)) => metrics.success(&name, r, took),
            Ok(ops::Outcome::Skipped { .. }) => metrics.skipped(&name, "taken"),
            Err(e) => metrics.failure(&name, e),
        },
    };
    let result = match from_file {
        Some(f) => {
            metrics.attempt(&name, chrono::Utc::now());
            let t0 = std::time::Instant::now();
            let r = ops::backup::backup_from_file(&lp, f, skip_hash_check)
                .await
                .map(|r| ops::Outcome::Committed(Box::new(r)));
            observe(ops::RunEvent::Ended {
                result: &r,
                took: t0.elapsed(),
            });
            r
        }
        None => {
            let run = ops::SlotRun {
                abort: &cancel,
                stop: &cancel,
                retry,
                gate: None,
            };
            ops::backup_in_slot(&lp, run, &observe).await
        }
    };
    if let Some(path) = textfile {
        // The watchdog's view too, so that timer-mode hosts get the etcd health metrics.
        metrics.policy_known(&name, lp.policy.schedule.as_ref());
        let health = ops::monitor::probe(&lp).await;
        metrics.probe(&name, &health, chrono::Utc::now());
        if result.is_err() {
            // Keep "last success" meaningful after a failure: the newest stored backup.
            let listing = ops::list(&lp).await;
            if let Some(b) = listing.backups.first() {
                metrics.success_at(&name, b.manifest.finished_at);
            }
        }
        if let Err(e) = metrics.write_textfile(path) {
            eprintln!("warning: {}", e.chain());
        }
    }
    let r = match result? {
        ops::Outcome::Committed(r) => r,
        ops::Outcome::Skipped { holder } => {
            if json_out {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"skipped": true, "takenBy": holder}))
                        .expect("json")
                );
            }
            eprintln!(
                "skipped: this slot of policy {name} is backed up by {holder} (spec.lock); \
                 nothing to do"
            );
            return Ok(());
        }
    };
    if json_out {
        let prune = match &r.prune {
            None => serde_json::Value::Null,
            Some(Ok(p)) => prune::report_json(p),
            Some(Err(e)) => json!({ "error": e.chain() }),
        };
        let earlier: Vec<_> = r
            .earlier_runs
            .iter()
            .map(|f| {
                json!({
                    "startedAt": f.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "exitCode": f.kind.exit_code(),
                    "error": f.error,
                })
            })
            .collect();
        let v = json!({
            "id": r.manifest.id,
            "policy": r.manifest.policy,
            "destinations": r.destinations,
            "failedAttempts": r.failed_attempts,
            "earlierRuns": earlier,
            "skippedDestinations": r.skipped_destinations,
            "removedLeftovers": leftovers_json(&r.leftovers),
            "manifest": r.manifest,
            "prune": prune,
        });
        out!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        out!("{}", r.manifest.id);
        note_leftovers(&r.leftovers);
        for f in &r.earlier_runs {
            eprintln!(
                "note: an earlier run of this slot failed and was retried: {}",
                f.error
            );
        }
    }
    for a in &r.manifest.alarms {
        eprintln!(
            "warning: etcd alarm {} on member {}{}: {}",
            a.alarm,
            a.member,
            if a.member_name.is_empty() {
                String::new()
            } else {
                format!(" ({})", a.member_name)
            },
            crate::etcd::select::alarm_advice(&a.alarm)
        );
    }
    for why in &r.skipped_destinations {
        eprintln!("warning: {why}");
    }
    // The backup is committed either way; prune trouble is reported, never a failed backup.
    match &r.prune {
        Some(Ok(p)) => {
            eprintln!("prune: {}", prune::summary(p));
            for w in &p.warnings {
                eprintln!("warning: prune: {w}");
            }
            for f in &p.failures {
                eprintln!("warning: prune: {f}");
            }
        }
        Some(Err(e)) => eprintln!(
            "warning: backup {} is committed, but the prune after it failed: {}",
            r.manifest.id,
            e.chain()
        ),
        None => {}
    }
    Ok(())
}
