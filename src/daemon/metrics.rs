//! Prometheus metrics of backup runs, shared by the daemon (`/metrics`) and the one-shot
//! `backup --metrics-textfile` (node_exporter's textfile collector).

use crate::error::{Error, Kind};
use crate::ops::BackupReport;
use chrono::{DateTime, Utc};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Every metric lifeboat exports, in one registry.
pub struct Metrics {
    registry: Registry,
    last_success: GaugeVec,
    last_attempt: GaugeVec,
    duration: GaugeVec,
    db_bytes: IntGaugeVec,
    stored_bytes: IntGaugeVec,
    revision: IntGaugeVec,
    failures: IntCounterVec,
    runs: IntCounterVec,
    skipped: IntCounterVec,
    kept: IntGaugeVec,
    destination_bytes: IntGaugeVec,
    next_run: GaugeVec,
    policy_valid: IntGaugeVec,
    reload_errors: IntCounterVec,
    revlog: IntGaugeVec,
    revlog_f: GaugeVec,
}

fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The pipeline stage an error kind points at, for `lifeboat_failures_total{stage}`.
pub fn stage(kind: Kind) -> &'static str {
    match kind {
        Kind::Etcd => "snapshot",
        Kind::Verify => "verify",
        Kind::Storage => "upload",
        Kind::Crypto => "encrypt",
        Kind::Io => "spool",
        Kind::Policy => "policy",
        Kind::Cancelled => "cancelled",
        _ => "internal",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($ty:ident, $name:expr, $help:expr, $labels:expr) => {{
                let m = $ty::new(Opts::new($name, $help), $labels).expect("valid metric");
                registry
                    .register(Box::new(m.clone()))
                    .expect("unique metric");
                m
            }};
        }
        let p = &["policy"];
        let pd = &["policy", "destination"];
        Self {
            last_success: reg!(
                GaugeVec,
                "lifeboat_last_success_timestamp_seconds",
                "When the newest committed backup finished (Unix time).",
                p
            ),
            last_attempt: reg!(
                GaugeVec,
                "lifeboat_last_attempt_timestamp_seconds",
                "When the last backup run started (Unix time).",
                p
            ),
            duration: reg!(
                GaugeVec,
                "lifeboat_last_run_duration_seconds",
                "Duration of the last run, per stage: backup (all of it), snapshot, verify, commit, prune.",
                &["policy", "stage"]
            ),
            db_bytes: reg!(
                IntGaugeVec,
                "lifeboat_last_backup_database_bytes",
                "Size of the last backup's database.",
                p
            ),
            stored_bytes: reg!(
                IntGaugeVec,
                "lifeboat_last_backup_stored_bytes",
                "Stored (compressed, encrypted) size of the last backup.",
                p
            ),
            revision: reg!(
                IntGaugeVec,
                "lifeboat_last_backup_revision",
                "etcd revision of the last backup's snapshot.",
                p
            ),
            failures: reg!(
                IntCounterVec,
                "lifeboat_failures_total",
                "Failed runs, by the stage that failed.",
                &["policy", "stage"]
            ),
            runs: reg!(
                IntCounterVec,
                "lifeboat_runs_total",
                "Backup runs started, retries inside a slot included.",
                p
            ),
            skipped: reg!(
                IntCounterVec,
                "lifeboat_skipped_runs_total",
                "Scheduled runs skipped: the previous run was still going (overlap), or another \
                 host holds the slot's etcd lock (taken).",
                &["policy", "reason"]
            ),
            kept: reg!(
                IntGaugeVec,
                "lifeboat_backups",
                "Backups held per destination after the last prune or listing.",
                pd
            ),
            destination_bytes: reg!(
                IntGaugeVec,
                "lifeboat_stored_bytes",
                "Bytes of backups held per destination after the last prune or listing.",
                pd
            ),
            next_run: reg!(
                GaugeVec,
                "lifeboat_next_run_timestamp_seconds",
                "When the policy runs next (Unix time).",
                p
            ),
            policy_valid: reg!(
                IntGaugeVec,
                "lifeboat_policy_file_valid",
                "1 if the policy file loaded at the last (re)load, 0 if it failed and the previous \
                 version is still used.",
                &["file"]
            ),
            reload_errors: reg!(
                IntCounterVec,
                "lifeboat_policy_reload_errors_total",
                "Policy files that failed to reload on SIGHUP.",
                &["file"]
            ),
            revlog: reg!(
                IntGaugeVec,
                "lifeboat_revlog",
                "The revision log (spec.pitr), by what: writer (1 if this host holds the writer \
                 lock), last_revision (last committed), lag_revisions (cluster revision minus \
                 last committed), segments, stored_bytes, timelines, reconnects and \
                 commit_failures (counts since start).",
                &["policy", "what"]
            ),
            revlog_f: reg!(
                GaugeVec,
                "lifeboat_revlog_seconds",
                "The revision log's times, by what: last_commit_timestamp (Unix time of the \
                 last committed segment) and lag (age of the oldest revision not yet committed).",
                &["policy", "what"]
            ),
            registry,
        }
    }

    /// The revision log's state as of now.
    pub fn revlog(&self, policy: &str, s: &crate::ops::revlog::RevlogStatus) {
        use std::sync::atomic::Ordering::Relaxed;
        let set = |what: &str, v: i64| self.revlog.with_label_values(&[policy, what]).set(v);
        set("writer", i64::from(s.writer.load(Relaxed)));
        set("last_revision", s.committed_revision.load(Relaxed));
        set("lag_revisions", s.lag_revisions());
        set("segments", s.segments.load(Relaxed) as i64);
        set("stored_bytes", s.stored_bytes.load(Relaxed) as i64);
        set("timelines", s.timelines.load(Relaxed) as i64);
        set("reconnects", s.reconnects.load(Relaxed) as i64);
        set("commit_failures", s.commit_failures.load(Relaxed) as i64);
        let at = s.committed_at_ms.load(Relaxed);
        if at > 0 {
            self.revlog_f
                .with_label_values(&[policy, "last_commit_timestamp"])
                .set(at as f64 / 1000.0);
        }
        self.revlog_f
            .with_label_values(&[policy, "lag"])
            .set(s.lag_seconds());
    }

    /// A run starts (the first of a slot or a retry).
    pub fn attempt(&self, policy: &str, at: DateTime<Utc>) {
        self.last_attempt.with_label_values(&[policy]).set(ts(at));
        self.runs.with_label_values(&[policy]).inc();
    }

    /// The newest committed backup of `policy` finished at `at` (from a run or a listing).
    pub fn success_at(&self, policy: &str, at: DateTime<Utc>) {
        self.last_success.with_label_values(&[policy]).set(ts(at));
    }

    /// A run committed a backup.
    pub fn success(&self, policy: &str, r: &BackupReport, took: Duration) {
        let m = &r.manifest;
        self.success_at(policy, m.finished_at);
        self.duration
            .with_label_values(&[policy, "backup"])
            .set(took.as_secs_f64());
        self.db_bytes
            .with_label_values(&[policy])
            .set(m.snapshot.db_size as i64);
        self.stored_bytes
            .with_label_values(&[policy])
            .set(m.stored.size as i64);
        self.revision
            .with_label_values(&[policy])
            .set(m.snapshot.revision);
        if !r.skipped_destinations.is_empty() {
            // Committed, but an optional destination does not hold it.
            self.failures
                .with_label_values(&[policy, "optional-destination"])
                .inc_by(r.skipped_destinations.len() as u64);
        }
        for (stage, d) in &r.stages {
            self.duration
                .with_label_values(&[policy, stage])
                .set(d.as_secs_f64());
        }
        match &r.prune {
            Some(Ok(p)) => {
                self.holdings(
                    policy,
                    p.backups
                        .iter()
                        .filter(|b| !b.removed)
                        .map(|b| (&b.destinations[..], b.manifest.stored.size)),
                );
                if !p.failures.is_empty() {
                    self.failures.with_label_values(&[policy, "prune"]).inc();
                }
            }
            Some(Err(_)) => self.failures.with_label_values(&[policy, "prune"]).inc(),
            None => {}
        }
    }

    /// What each destination holds: (destinations holding it, stored size) per backup.
    pub fn holdings<'a>(&self, policy: &str, backups: impl Iterator<Item = (&'a [String], u64)>) {
        let mut held: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (dests, size) in backups {
            for d in dests {
                let e = held.entry(d).or_default();
                e.0 += 1;
                e.1 += size as i64;
            }
        }
        for (d, (n, bytes)) in held {
            self.kept.with_label_values(&[policy, d]).set(n);
            self.destination_bytes
                .with_label_values(&[policy, d])
                .set(bytes);
        }
    }

    /// A run failed.
    pub fn failure(&self, policy: &str, e: &Error) {
        self.failures
            .with_label_values(&[policy, stage(e.kind())])
            .inc();
    }

    /// A scheduled run was skipped (`overlap` or `taken`).
    pub fn skipped(&self, policy: &str, reason: &str) {
        self.skipped.with_label_values(&[policy, reason]).inc();
    }

    /// When the policy runs next.
    pub fn next_run(&self, policy: &str, at: Option<DateTime<Utc>>) {
        if let Some(at) = at {
            self.next_run.with_label_values(&[policy]).set(ts(at));
        }
    }

    /// Whether a policy file loaded; failures on reload are also counted.
    pub fn policy_file(&self, file: &Path, ok: bool, reload: bool) {
        let f = file.display().to_string();
        self.policy_valid
            .with_label_values(&[&f])
            .set(i64::from(ok));
        if !ok && reload {
            self.reload_errors.with_label_values(&[&f]).inc();
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("metrics are UTF-8")
    }

    /// Write the metrics to `path` atomically (temporary file, then rename), as node_exporter's
    /// textfile collector needs: it must never read a half-written file.
    pub fn write_textfile(&self, path: &Path) -> crate::Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let tmp = path.with_extension(format!("prom.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, self.render())?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::new(
                Kind::Io,
                format!(
                    "cannot write metrics textfile {}: {e}; check that {} exists and is writable",
                    path.display(),
                    dir.map_or_else(|| ".".into(), |d| d.display().to_string())
                ),
            )
        })
    }
}
