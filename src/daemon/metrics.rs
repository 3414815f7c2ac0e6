//! Prometheus metrics of backup runs, shared by the daemon (`/metrics`) and the one-shot
//! `backup --metrics-textfile` (node_exporter's textfile collector).

use crate::error::{Error, Kind};
use crate::ops::BackupReport;
use chrono::{DateTime, Utc};
use prometheus::core::Collector;
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
    schedule_interval: GaugeVec,
    last_check: GaugeVec,
    check_failures: IntCounterVec,
    last_prune: GaugeVec,
    destination_up: IntGaugeVec,
    etcd: Vec<IntGaugeVec>,
    etcd_quota: IntGaugeVec,
    etcd_term: IntGaugeVec,
    etcd_alarm: IntGaugeVec,
    etcd_leader_changes: IntCounterVec,
    etcd_last_probe: GaugeVec,
    /// The leader each policy's last probe saw, to count changes between probes.
    leaders: std::sync::Mutex<BTreeMap<String, u64>>,
    names: Vec<String>,
}

/// Per-member gauges, each a metric of its own (`lifeboat_etcd_member_<what>`).
const MEMBER_GAUGES: [(&str, &str); 8] = [
    ("up", "1 if the member answered the last probe, 0 if not."),
    (
        "db_size_bytes",
        "Physically allocated size of the member's database.",
    ),
    (
        "db_size_in_use_bytes",
        "Logically used size of the member's database (the rest a defragmentation returns).",
    ),
    ("is_leader", "1 if the member is the leader."),
    ("is_learner", "1 if the member is a learner."),
    ("has_leader", "1 if the member knows a leader."),
    ("raft_index", "The member's raft (committed) index."),
    ("raft_applied_index", "The member's applied raft index."),
];

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
        let names = std::cell::RefCell::new(Vec::new());
        macro_rules! reg {
            ($ty:ident, $name:expr, $help:expr, $labels:expr) => {{
                let opts = Opts::new($name, $help);
                names.borrow_mut().push(opts.name.clone());
                let m = $ty::new(opts, $labels).expect("valid metric");
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
            schedule_interval: reg!(
                GaugeVec,
                "lifeboat_schedule_interval_seconds",
                "The longest gap between two scheduled runs of the policy: one stale rule fits \
                 every schedule.",
                p
            ),
            last_check: reg!(
                GaugeVec,
                "lifeboat_last_check_success_timestamp_seconds",
                "When `lifeboat check` last passed for the policy (Unix time; 0: never).",
                p
            ),
            check_failures: reg!(
                IntCounterVec,
                "lifeboat_check_failures_total",
                "`lifeboat check` runs that found a problem or failed.",
                p
            ),
            last_prune: reg!(
                GaugeVec,
                "lifeboat_last_prune_success_timestamp_seconds",
                "When a prune of the policy last completed without failures (Unix time).",
                p
            ),
            destination_up: reg!(
                IntGaugeVec,
                "lifeboat_destination_up",
                "1 if the destination answered its last listing or upload, 0 if not.",
                pd
            ),
            etcd: MEMBER_GAUGES
                .iter()
                .map(|(what, help)| {
                    reg!(
                        IntGaugeVec,
                        format!("lifeboat_etcd_member_{what}"),
                        *help,
                        &["policy", "endpoint"]
                    )
                })
                .collect(),
            etcd_quota: reg!(
                IntGaugeVec,
                "lifeboat_etcd_quota_backend_bytes",
                "The backend quota the percentages use: as the members report it (etcd 3.6+), \
                 else spec.cluster.quotaBackendBytes (default 2 GiB, etcd's default).",
                p
            ),
            etcd_term: reg!(
                IntGaugeVec,
                "lifeboat_etcd_raft_term",
                "The largest raft term any member reported; every election increments it.",
                p
            ),
            etcd_alarm: reg!(
                IntGaugeVec,
                "lifeboat_etcd_alarm",
                "1 if the alarm is raised for the member, else 0 (NOSPACE and CORRUPT always \
                 exported).",
                &["policy", "endpoint", "alarm"]
            ),
            etcd_leader_changes: reg!(
                IntCounterVec,
                "lifeboat_etcd_leader_changes_observed_total",
                "Leader changes seen between two probes (elections between probes that end \
                 with the same leader are only in lifeboat_etcd_raft_term).",
                p
            ),
            etcd_last_probe: reg!(
                GaugeVec,
                "lifeboat_etcd_last_probe_timestamp_seconds",
                "When the watchdog last probed the cluster (Unix time).",
                p
            ),
            leaders: std::sync::Mutex::new(BTreeMap::new()),
            names: names.take(),
            registry,
        }
    }

    /// The name of every metric lifeboat can export (a series appears once it has a value).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A watchdog probe of every member (daemon loop, `backup --metrics-textfile`).
    pub fn probe(&self, policy: &str, h: &crate::watchdog::Health, at: DateTime<Utc>) {
        self.etcd_last_probe
            .with_label_values(&[policy])
            .set(ts(at));
        self.etcd_quota
            .with_label_values(&[policy])
            .set(h.quota as i64);
        if h.raft_term > 0 {
            self.etcd_term
                .with_label_values(&[policy])
                .set(h.raft_term as i64);
        }
        for m in &h.members {
            let ep = m.endpoint.as_str();
            let values: [Option<i64>; 8] = match &m.status {
                Some(s) => [
                    Some(1),
                    Some(s.db_size),
                    Some(s.db_size_in_use),
                    Some(i64::from(m.is_leader())),
                    Some(i64::from(s.is_learner)),
                    Some(i64::from(s.leader != 0)),
                    Some(s.raft_index as i64),
                    Some(s.raft_applied_index as i64),
                ],
                // A member that does not answer has no size or index: drop them rather than
                // export stale values as if they were current.
                None => [Some(0), None, None, Some(0), None, Some(0), None, None],
            };
            for (g, v) in self.etcd.iter().zip(values) {
                match v {
                    Some(v) => g.with_label_values(&[policy, ep]).set(v),
                    None => {
                        let _ = g.remove_label_values(&[policy, ep]);
                    }
                }
            }
            for kind in crate::watchdog::ALARM_KINDS {
                let raised = m.alarms.iter().any(|a| a == kind);
                self.etcd_alarm
                    .with_label_values(&[policy, ep, kind])
                    .set(i64::from(raised));
            }
        }
        let leader = h
            .members
            .iter()
            .filter_map(|m| m.status.as_ref())
            .map(|s| s.leader)
            .find(|&l| l != 0);
        let counter = self.etcd_leader_changes.with_label_values(&[policy]);
        if let Some(leader) = leader {
            let mut seen = self.leaders.lock().expect("leaders lock");
            if seen
                .insert(policy.to_owned(), leader)
                .is_some_and(|was| was != leader)
            {
                counter.inc();
            }
        }
    }

    /// The policy's schedule, so that one stale rule fits every policy; and 0 for the
    /// timestamps it has never had, so that "never" reads as stale rather than as absent.
    pub fn policy_known(&self, policy: &str, schedule: Option<&crate::policy::Schedule>) {
        if let Some(i) = schedule.and_then(|s| s.longest_gap(Utc::now())) {
            self.schedule_interval
                .with_label_values(&[policy])
                .set(i.as_secs_f64());
        }
        self.last_success.with_label_values(&[policy]);
        self.runs.with_label_values(&[policy]);
    }

    /// A `lifeboat check` of the policy ended.
    pub fn check(&self, policy: &str, passed: bool, at: DateTime<Utc>) {
        let failures = self.check_failures.with_label_values(&[policy]);
        if passed {
            self.last_check.with_label_values(&[policy]).set(ts(at));
        } else {
            failures.inc();
        }
    }

    /// Whether each destination answered (a listing or an upload), by name.
    pub fn destinations_seen(&self, policy: &str, up: &[(String, bool)]) {
        for (d, ok) in up {
            self.destination_up
                .with_label_values(&[policy, d])
                .set(i64::from(*ok));
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
        let up: Vec<(String, bool)> = r.destinations.iter().map(|d| (d.clone(), true)).collect();
        self.destinations_seen(policy, &up);
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
                if p.failures.is_empty() {
                    self.last_prune
                        .with_label_values(&[policy])
                        .set(ts(Utc::now()));
                } else {
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

    /// Continue from the textfile a previous one-shot run wrote (`previous`, its text): its
    /// counters are added to this run's, and its "last success" times are kept unless this run
    /// sets newer ones. Without this every run would start its counters at 0, and a failure
    /// repeated run after run would read as one that stopped (`increase()` of 1, 1, 1 is 0),
    /// while a failed `check` would drop the time of the last one that passed. Gauges that
    /// describe the present (etcd's health, destinations) are never carried. The number of
    /// series carried.
    pub fn continue_from(&self, previous: &str) -> usize {
        let counters: [&IntCounterVec; 6] = [
            &self.failures,
            &self.runs,
            &self.skipped,
            &self.reload_errors,
            &self.check_failures,
            &self.etcd_leader_changes,
        ];
        let times: [&GaugeVec; 3] = [&self.last_success, &self.last_check, &self.last_prune];
        let mut carried = 0;
        for sample in previous.lines().filter_map(parse_sample) {
            let value = sample.value;
            if !value.is_finite() || value < 0.0 {
                continue;
            }
            let labels: std::collections::HashMap<&str, &str> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let named = |d: &&prometheus::core::Desc| d.fq_name == sample.name;
            if let Some(c) = counters.iter().find(|c| c.desc().iter().any(named))
                && let Ok(c) = c.get_metric_with(&labels)
            {
                c.inc_by(value as u64);
                carried += 1;
            } else if let Some(g) = times.iter().find(|g| g.desc().iter().any(named))
                && let Ok(g) = g.get_metric_with(&labels)
            {
                g.set(g.get().max(value));
                carried += 1;
            }
        }
        carried
    }

    /// [`Metrics::continue_from`] the textfile at `path`, if there is one.
    pub fn continue_from_textfile(&self, path: &Path) -> crate::Result<usize> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(self.continue_from(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::new(
                Kind::Io,
                format!(
                    "cannot read the previous metrics textfile {}: {e}; its counters start \
                     again from 0 (a counter reset to Prometheus)",
                    path.display()
                ),
            )),
        }
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

/// One sample of the Prometheus text format.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
}

/// The sample on one line of the Prometheus text format; `None` for comments, blank lines and
/// anything malformed. Pure.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(end);
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            let (at, c) = chars.next()?;
            if c == '}' {
                rest = &body[at + 1..];
                break;
            }
            let mut key = String::from(c);
            loop {
                match chars.next()? {
                    (_, '=') => break,
                    (_, c) => key.push(c),
                }
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        text.lines()
            .filter_map(parse_sample)
            .filter(|s| s.name == name)
            .map(|s| (s.labels, s.value))
            .collect()
    }

    #[test]
    fn samples_parse_with_escaped_label_values() {
        assert_eq!(
            parse_sample(r#"m{a="x\"y\\z\n",b="2"} 3.5"#),
            Some(Sample {
                name: "m",
                labels: vec![("a".into(), "x\"y\\z\n".into()), ("b".into(), "2".into())],
                value: 3.5
            })
        );
        let plain = Some(Sample {
            name: "m",
            labels: vec![],
            value: 7.0,
        });
        assert_eq!(parse_sample("m 7"), plain);
        assert_eq!(parse_sample("m{} 7"), plain);
        for bad in [
            "# HELP m x",
            "",
            "m{a=\"x} 1",
            "m{a=x} 1",
            "m{a=\"x\"} one",
            "m{a",
        ] {
            assert_eq!(parse_sample(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_textfile_run_continues_the_counters_and_last_successes_of_the_one_before() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = Metrics::new();
        first.check("prod", true, at);
        first.check("odd \"name\\", false, at);
        first.destinations_seen("prod", &[("s3".into(), false)]);
        let failed = crate::Error::new(Kind::Etcd, "no member");
        first.failure("prod", &failed);
        let text = first.render();

        // Two more runs, each failing its check and its backup once.
        let mut text = text;
        for _ in 0..2 {
            let next = Metrics::new();
            assert!(next.continue_from(&text) >= 4);
            next.check("prod", false, at + chrono::Duration::days(1));
            next.failure("prod", &failed);
            text = next.render();
        }
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
        };
        assert_eq!(
            sample(&text, "lifeboat_check_failures_total"),
            vec![
                (pairs(&[("policy", "odd \"name\\")]), 1.0),
                (pairs(&[("policy", "prod")]), 2.0)
            ]
        );
        assert_eq!(
            sample(&text, "lifeboat_failures_total"),
            vec![(pairs(&[("policy", "prod"), ("stage", "snapshot")]), 3.0)]
        );
        // The last check that passed is still known; the present-tense gauge is not carried.
        assert_eq!(
            sample(&text, "lifeboat_last_check_success_timestamp_seconds"),
            vec![(pairs(&[("policy", "prod")]), ts(at))]
        );
        assert!(sample(&text, "lifeboat_destination_up").is_empty());
        // A newer success wins over the carried one.
        let next = Metrics::new();
        next.continue_from(&text);
        let later = at + chrono::Duration::days(2);
        next.check("prod", true, later);
        assert_eq!(
            sample(
                &next.render(),
                "lifeboat_last_check_success_timestamp_seconds"
            ),
            vec![(pairs(&[("policy", "prod")]), ts(later))]
        );
    }
}
