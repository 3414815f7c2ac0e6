//! The daemon against real etcd and a real S3 server: backups on schedule, metrics that move,
//! /healthz that turns unhealthy when backups stop succeeding, SIGHUP with a broken policy,
//! no overlapping runs, a clean abort on SIGTERM, and catch-up after a restart.

mod common;

use common::*;
use futures::TryStreamExt;
use object_store::ObjectStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Keys of the bucket's objects under `etcd/` (every policy).
async fn keys(bucket: &str) -> Vec<String> {
    s3_store(bucket)
        .list(Some(&"etcd".into()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// Wait until the bucket holds at least `n` manifests.
async fn wait_for_backups(bucket: &str, n: usize, seconds: u64) {
    let t0 = Instant::now();
    loop {
        let have = count(&keys(bucket).await, ".manifest.json");
        if have >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(seconds),
            "{have} backups after {seconds}s; wanted {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(keys: &[String], suffix: &str) -> usize {
    keys.iter().filter(|k| k.ends_with(suffix)).count()
}

fn policy_with(dir: &Path, cluster: &EtcdCluster, bucket: &str, extra: &str) -> PathBuf {
    named_policy(dir, "prod", cluster, bucket, extra)
}

fn named_policy(
    dir: &Path,
    name: &str,
    cluster: &EtcdCluster,
    bucket: &str,
    extra: &str,
) -> PathBuf {
    let (_, rcpt) = age_key();
    let p = write_s3_policy(dir, name, &cluster.endpoints(), bucket, &rcpt);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}{extra}")).unwrap();
    p
}

/// Spool files of backups in progress (each run also holds a `.lock` beside it).
fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("spool"))
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".db.part"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_backs_up_on_schedule_reports_metrics_and_health() {
    let mut cluster = EtcdCluster::start(3);
    cluster.load("/k/", 100, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("daemon-schedule");
    create_bucket(&bucket);
    // Every 2 seconds (a leading seconds field), unhealthy 5 s after the last success.
    let policy = policy_with(
        dir.path(),
        &cluster,
        &bucket,
        "  schedule: {cron: \"*/2 * * * * *\", staleAfter: 5s}\n",
    );
    let d = Daemon::start(&policy, &["--grace", "20s"]);

    wait_for_backups(&bucket, 3, 40).await;
    let p = [("policy", "prod")];
    let first = d
        .metric("lifeboat_last_success_timestamp_seconds", &p)
        .unwrap();
    assert!(first > 1.7e9, "{first}");
    assert!(d.metric("lifeboat_last_backup_revision", &p).unwrap() >= 2.0);
    assert!(d.metric("lifeboat_next_run_timestamp_seconds", &p).unwrap() > first);
    assert_eq!(http_get(d.port, "/healthz").unwrap().0, 200);
    let held = d
        .metric(
            "lifeboat_backups",
            &[("policy", "prod"), ("destination", "s3")],
        )
        .unwrap();
    assert!(held >= 2.0, "{held}");
    for stage in ["backup", "snapshot", "verify", "commit"] {
        let took = d
            .metric(
                "lifeboat_last_run_duration_seconds",
                &[("policy", "prod"), ("stage", stage)],
            )
            .unwrap_or_else(|| panic!("no duration for stage {stage}"));
        assert!(took > 0.0 && took < 60.0, "{stage}: {took}");
    }
    wait_for("the metrics to move", Duration::from_secs(20), || {
        d.metric("lifeboat_last_success_timestamp_seconds", &p)
            .unwrap()
            > first
    });

    // A policy file that no longer parses: the old version keeps running, the error is exported.
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, good.replace("cron:", "cronn:")).unwrap();
    d.signal("HUP");
    let file = [("file", policy.to_str().unwrap())];
    wait_for("the reload error metric", Duration::from_secs(10), || {
        d.metric("lifeboat_policy_reload_errors_total", &file) == Some(1.0)
    });
    assert_eq!(d.metric("lifeboat_policy_file_valid", &file), Some(0.0));
    let before = count(&keys(&bucket).await, ".manifest.json");
    wait_for_backups(&bucket, before + 1, 20).await;

    // Backups stop succeeding: every member gone. /healthz turns 503 once staleAfter passes.
    for i in 0..3 {
        cluster.stop(i);
    }
    wait_for("/healthz to fail", Duration::from_secs(30), || {
        http_get(d.port, "/healthz").is_some_and(|(c, _)| c == 503)
    });
    assert!(
        d.metric(
            "lifeboat_failures_total",
            &[("policy", "prod"), ("stage", "snapshot")]
        )
        .unwrap()
            >= 1.0
    );
    let (code, took) = d.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_run_is_never_overlapped_and_sigterm_aborts_it_cleanly() {
    let cluster = EtcdCluster::start(3);
    load_random(&cluster, 120, 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("daemon-slow");
    create_bucket(&bucket);
    let slow = "  schedule: {cron: \"* * * * * *\"}\n  compression: {level: 19, threads: 1}\n";
    let policy = policy_with(dir.path(), &cluster, &bucket, slow);
    // A second policy sharing the host: --max-concurrent 1 makes it wait its turn.
    let other = named_policy(dir.path(), "other", &cluster, &bucket, slow);
    let d = Daemon::start(
        &policy,
        &[
            "--grace",
            "1s",
            "--max-concurrent",
            "1",
            "--policy",
            other.to_str().unwrap(),
        ],
    );
    let p = [("policy", "prod")];
    // While the first (slow) run goes, the every-second schedule keeps firing: skipped, and
    // never a second spool file, of this policy or the other.
    let t0 = Instant::now();
    loop {
        assert!(spool_files(dir.path()) <= 1, "two runs at once");
        if d.metric("lifeboat_skipped_runs_total", &p).unwrap_or(0.0) >= 2.0
            && spool_files(dir.path()) == 1
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no skipped runs");
        std::thread::sleep(Duration::from_millis(50));
    }

    // SIGTERM mid-run with a 1 s grace: the run is aborted, nothing of it stays visible.
    let (code, took) = d.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(spool_files(dir.path()), 0, "spool left behind");
    let k = keys(&bucket).await;
    assert_eq!(
        count(&k, ".snapshot.zst.age"),
        count(&k, ".manifest.json"),
        "a data object without a manifest: {k:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_catches_up_on_start_and_not_again_after_a_restart() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("daemon-catchup");
    create_bucket(&bucket);
    // Once a year: only catch-up can explain a backup now.
    let policy = policy_with(
        dir.path(),
        &cluster,
        &bucket,
        "  schedule: {cron: \"0 3 1 1 *\", timezone: Europe/Berlin}\n",
    );
    let d = Daemon::start(&policy, &[]);
    wait_for_backups(&bucket, 1, 30).await;
    wait_for("the run to finish", Duration::from_secs(30), || {
        http_get(d.port, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(d.stop().0, Some(0));

    // Restarted: the newest backup is minutes old, far less than a year: no new run.
    let d = Daemon::start(&policy, &[]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(&keys(&bucket).await, ".manifest.json"), 1);
    assert_eq!(http_get(d.port, "/healthz").unwrap().0, 200);
    assert_eq!(d.stop().0, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_with_the_etcd_lock_make_one_backup_per_slot() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("daemon-lock");
    create_bucket(&bucket);
    let policy = policy_with(
        dir.path(),
        &cluster,
        &bucket,
        "  schedule: {cron: \"*/3 * * * * *\"}\n  lock: {etcd: {ttl: 5s}}\n",
    );
    let a = Daemon::start(&policy, &[]);
    let b = Daemon::start(&policy, &[]);
    wait_for_backups(&bucket, 4, 60).await;
    let taken = [("policy", "prod"), ("reason", "taken")];
    let skips = a
        .metric("lifeboat_skipped_runs_total", &taken)
        .unwrap_or(0.0)
        + b.metric("lifeboat_skipped_runs_total", &taken)
            .unwrap_or(0.0);
    assert_eq!(a.stop().0, Some(0));
    assert_eq!(b.stop().0, Some(0));
    assert!(skips >= 1.0, "the second daemon never found a slot taken");

    // Every slot (3 s, aligned to the minute) has exactly one backup.
    let mut slots = std::collections::BTreeMap::<i64, Vec<String>>::new();
    for k in keys(&bucket)
        .await
        .iter()
        .filter(|k| k.ends_with(".manifest.json"))
    {
        let m: serde_json::Value = serde_json::from_slice(&s3_get(&bucket, k).await).unwrap();
        let started: chrono::DateTime<chrono::Utc> =
            m["startedAt"].as_str().unwrap().parse().unwrap();
        let slot = started.timestamp().div_euclid(3) * 3;
        slots.entry(slot).or_default().push(m["id"].to_string());
    }
    assert!(
        slots.values().all(|ids| ids.len() == 1),
        "a slot backed up twice: {slots:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_backups_write_a_metrics_textfile_even_when_they_fail() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("textfile");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let identity = write_identity(dir.path(), &id);
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let prom = dir.path().join("lifeboat-prod.prom");
    let prom_arg = prom.to_str().unwrap().to_owned();
    let read = |file: &Path| {
        let text = std::fs::read_to_string(file).unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("textfile parses as Prometheus text format")
    };
    let value = |s: &prometheus_parse::Scrape, name: &str| {
        s.samples
            .iter()
            .find(|x| x.metric == name)
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
                _ => f64::NAN,
            })
    };
    let o = lifeboat(&[
        "backup",
        "--policy",
        policy.to_str().unwrap(),
        "--metrics-textfile",
        &prom_arg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ok = read(&prom);
    let success = value(&ok, "lifeboat_last_success_timestamp_seconds").unwrap();
    assert!(success > 1.7e9);
    assert!(value(&ok, "lifeboat_last_backup_stored_bytes").unwrap() > 0.0);

    // The same policy with no member reachable: exit 4, the file now counts the failure and
    // still says when the last good backup finished (read back from the bucket).
    let dead = write_s3_policy(
        dir.path(),
        "prod",
        &[format!("http://127.0.0.1:{}", free_port())],
        &bucket,
        &age_key().1,
    );
    // Twice: the counters continue from the file, so `increase()` in the rules sees each
    // failure rather than a flat 1.
    for n in 1..=2 {
        let o = lifeboat(&[
            "backup",
            "--policy",
            dead.to_str().unwrap(),
            "--metrics-textfile",
            &prom_arg,
        ]);
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        let failed = read(&prom);
        assert_eq!(
            value(&failed, "lifeboat_failures_total"),
            Some(f64::from(n))
        );
        assert_eq!(
            value(&failed, "lifeboat_runs_total"),
            Some(f64::from(n + 1))
        );
        let after = value(&failed, "lifeboat_last_success_timestamp_seconds").unwrap();
        assert!((after - success).abs() < 1.0, "{after} vs {success}");
    }

    // `check` in timer mode: a pass, then two failures (an identity that cannot decrypt the
    // backups). The failures add up and the time of the pass is kept.
    let checks = dir.path().join("lifeboat-prod-check.prom");
    let check = |identity: &Path| {
        lifeboat(&[
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--identity",
            identity.to_str().unwrap(),
            "--metrics-textfile",
            checks.to_str().unwrap(),
        ])
    };
    let o = check(&identity);
    assert!(o.status.success(), "{}", stderr(&o));
    let passed = value(
        &read(&checks),
        "lifeboat_last_check_success_timestamp_seconds",
    )
    .unwrap();
    assert!(passed > 1.7e9);
    let wrong = write_identity(dir.path(), &age_key().0);
    for n in 1..=2 {
        let o = check(&wrong);
        assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
        let s = read(&checks);
        assert_eq!(
            value(&s, "lifeboat_check_failures_total"),
            Some(f64::from(n))
        );
        assert_eq!(
            value(&s, "lifeboat_last_check_success_timestamp_seconds"),
            Some(passed)
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary metrics file left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_by_a_dead_run_expires_with_its_lease() {
    let cluster = EtcdCluster::start(3);
    load_random(&cluster, 120, 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("lock-expiry");
    create_bucket(&bucket);
    let policy = policy_with(
        dir.path(),
        &cluster,
        &bucket,
        "  compression: {level: 19, threads: 1}\n  lock: {etcd: {ttl: 2s}}\n",
    );
    let args = ["backup", "--policy", policy.to_str().unwrap(), "--json"];
    // A run that holds the lock is killed outright (no cleanup at all) while it streams.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the run to start streaming",
        Duration::from_secs(30),
        || spool_files(dir.path()) == 1,
    );
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Right away the slot is still taken by the dead run: skipped, not failed.
    let o = lifeboat(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["skipped"], true, "{v}");
    assert!(v["takenBy"].as_str().unwrap().contains("backup"), "{v}");

    // Once its 2 s lease has expired, the next run takes the slot and commits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let o = lifeboat(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["id"].is_string(), "{v}");
    assert_eq!(count(&keys(&bucket).await, ".manifest.json"), 1);
}
