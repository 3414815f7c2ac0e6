//! Point-in-time recovery against real etcd 3.4 and 3.5 on loopback: the revision log is
//! streamed by a real `lifeboat revlog` (or the daemon), and restores to chosen revisions are
//! started as real members whose history must equal the source's, revision by revision.

mod common;

use common::*;
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// (value, create revision, mod revision, version, lease) of every key.
type State = BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64, i64)>;

/// Every key at `rev` with everything etcd stores about it.
async fn state_at(c: &mut Client, rev: i64) -> State {
    let r = c
        .get(
            vec![0u8],
            Some(GetOptions::new().with_range(vec![0u8]).with_revision(rev)),
        )
        .await
        .unwrap_or_else(|e| panic!("range at {rev}: {e}"));
    r.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                (
                    kv.value().to_vec(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                    kv.lease(),
                ),
            )
        })
        .collect()
}

async fn hash_at(c: &mut Client, rev: i64) -> u32 {
    c.hash_kv(rev).await.unwrap().hash()
}

async fn head(c: &mut Client) -> i64 {
    c.get("x", None).await.unwrap().header().unwrap().revision()
}

/// A policy with a revision log to the local directory `dir/local`, encrypted to `rcpt`.
fn pitr_policy(dir: &Path, endpoints: &[String], rcpt: &str, extra: &str) -> PathBuf {
    let local = dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let dest = format!("{{name: local, url: \"file://{}\"}}", local.display());
    let p = write_policy(dir, "prod", endpoints, &dest, rcpt);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("  pitr: {segmentMaxAge: 1s}\n");
    text.push_str(extra);
    std::fs::write(&p, text).unwrap();
    p
}

/// A directory with an age identity and a policy that streams `endpoints`' revision log to
/// `local/` in it: (the directory, the identity file, the policy file).
fn pitr_setup(endpoints: &[String], extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = pitr_policy(dir.path(), endpoints, &rcpt, extra);
    (dir, key, policy)
}

/// Segment manifests committed under `dir/local`, as (timeline, first, last).
fn committed(dir: &Path) -> Vec<(String, i64, i64)> {
    let mut v: Vec<(String, i64, i64)> = files_under(&dir.join("local"))
        .into_iter()
        .filter(|f| f.ends_with(".seg.json"))
        .map(|f| {
            let parts: Vec<&str> = f.split('/').collect();
            let name = parts[parts.len() - 1].trim_end_matches(".seg.json");
            let (a, b) = name.split_once('-').unwrap();
            (
                parts[parts.len() - 2].to_owned(),
                a.parse().unwrap(),
                b.parse().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|x| (x.1, x.2));
    v
}

/// Wait until segments up to at least `rev` are committed.
fn wait_committed(dir: &Path, rev: i64) {
    let t0 = Instant::now();
    while !committed(dir).iter().any(|(_, _, l)| *l >= rev) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "revision {rev} not committed: {:?}",
            committed(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Full-backup manifests under `dir/local`.
fn full_backups(dir: &Path) -> Vec<serde_json::Value> {
    files_under(&dir.join("local"))
        .into_iter()
        .filter(|f| f.ends_with(".manifest.json"))
        .map(|f| {
            serde_json::from_slice(&std::fs::read(dir.join("local").join(f)).unwrap()).unwrap()
        })
        .collect()
}

/// Wait for a full backup that anchors a timeline; its effective revision.
fn wait_anchor(dir: &Path) -> i64 {
    let t0 = Instant::now();
    loop {
        if let Some(m) = full_backups(dir).iter().find(|m| m["timeline"].is_string()) {
            return m["snapshot"]["effectiveRevision"].as_i64().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no anchoring backup"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lifeboat restore --to-revision rev` into `dir`; the staged file and the JSON.
fn restore_to(
    policy: &Path,
    identity: &Path,
    dir: &Path,
    target: &str,
    replay_etcd: &str,
) -> (PathBuf, std::process::Output) {
    let out = dir.join(format!("pit-{}.db", free_port()));
    let flag = if target.parse::<i64>().is_ok() {
        "--to-revision"
    } else {
        "--to-time"
    };
    let o = lifeboat(&[
        "restore",
        "--policy",
        policy.to_str().unwrap(),
        flag,
        target,
        "--identity",
        identity.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--replay-etcd",
        replay_etcd,
        "--yes",
        "--json",
    ]);
    (out, o)
}

/// Restore a staged snapshot with the release's own tool and start a member on it.
fn start_restored(snapshot: &Path, dir: &Path, dist: &EtcdDist) -> EtcdCluster {
    let data = dir.join(format!("restored-{}", free_port()));
    let peer = format!("http://127.0.0.1:{}", free_port());
    let o = std::process::Command::new(&dist.status_tool)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", snapshot.to_str().unwrap()])
        .args(["--name", "r1", "--data-dir", data.to_str().unwrap()])
        .args(["--initial-cluster", &format!("r1={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .output()
        .unwrap();
    assert!(o.status.success(), "snapshot restore: {}", stderr(&o));
    EtcdCluster::start_on_data_dir_dist(&data, "r1", &peer, dist)
}

/// The source's workload after the full backup: every kind of write a revision log must
/// carry. Returns (revision of a range delete, revision of a lease revoke).
async fn workload(c: &mut Client) -> (i64, i64) {
    for i in 0..20 {
        c.put(format!("p/{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    for i in 0..5 {
        c.put(format!("p/{i:02}"), format!("again{i}"), None)
            .await
            .unwrap();
    }
    c.txn(Txn::new().and_then([
        TxnOp::put("t/a", "1", None),
        TxnOp::put("t/b", "2", None),
        TxnOp::delete("p/05", None),
    ]))
    .await
    .unwrap();
    // A lease granted after the full backup; a key moves to it from the lease of before.
    let l2 = c.lease_grant(600, None).await.unwrap().id();
    let with = |l| Some(PutOptions::new().with_lease(l));
    c.put("l2/x", "x", with(l2)).await.unwrap();
    c.put("l2/y", "y", with(l2)).await.unwrap();
    c.put("lease1/a", "moved", with(l2)).await.unwrap();
    let delete = c
        .delete("p/1", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // A revision of 300 events: more than etcd's default 128 operations per txn.
    for b in 0..3 {
        let ops: Vec<TxnOp> = (0..100)
            .map(|i| TxnOp::put(format!("b/{:03}", b * 100 + i), "x", None))
            .collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    c.delete("b/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    // Binary keys and values, and a value near etcd's 1.5 MiB request limit.
    c.put(vec![b'b', 0, 0xff], vec![0u8, 255, 1, 0], None)
        .await
        .unwrap();
    let mut big = vec![0u8; 1_400_000];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut big);
    c.put("big", big, None).await.unwrap();
    let revoke = c
        .lease_revoke(l2)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // A lease that expires on its own at the source.
    let short = c.lease_grant(2, None).await.unwrap().id();
    c.put("e/1", "soon gone", with(short)).await.unwrap();
    let t0 = Instant::now();
    while c.get("e/1", None).await.unwrap().count() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.put("last", "1", None).await.unwrap();
    (delete, revoke)
}

async fn replay_is_exact(dist: EtcdDist) {
    let cluster = EtcdCluster::start_dist(3, None, &dist);
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    // Before the log starts: a lease with keys, that the full backup will hold.
    let l1 = c.lease_grant(600, None).await.unwrap().id();
    c.put("lease1/a", "a", Some(PutOptions::new().with_lease(l1)))
        .await
        .unwrap();
    c.put("lease1/b", "b", Some(PutOptions::new().with_lease(l1)))
        .await
        .unwrap();
    c.put("before", "full", None).await.unwrap();

    let (dir, key, policy) = pitr_setup(&cluster.endpoints(), "");
    let streamer = Running::start(&["revlog", "--policy", policy.to_str().unwrap()]);
    let s = wait_anchor(dir.path());
    let (delete, revoke) = workload(&mut c).await;
    let e = head(&mut c).await;
    wait_committed(dir.path(), e);

    // The truth at every revision, from the source itself (never compacted).
    let mut truth = Vec::new();
    for r in 1..=e {
        truth.push((state_at(&mut c, r).await, hash_at(&mut c, r).await));
    }
    for (label, target) in [
        ("the full backup's own revision", s),
        ("a range delete", delete),
        ("a lease revoke", revoke),
        ("the head", e),
    ] {
        let (out, o) = restore_to(&policy, &key, dir.path(), &target.to_string(), &dist.etcd);
        assert!(o.status.success(), "{label} ({target}): {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["staged"]["replayedTo"], target, "{label}");
        assert_eq!(v["pointInTime"]["toRevision"], target, "{label}");
        let restored = start_restored(&out, dir.path(), &dist);
        let mut rc = Client::connect(restored.endpoints(), None).await.unwrap();
        assert_eq!(head(&mut rc).await, target, "{label}: head revision");
        for r in 1..=target {
            let (want, want_hash) = &truth[(r - 1) as usize];
            let got = state_at(&mut rc, r).await;
            assert!(
                &got == want,
                "{label}: the state at revision {r} differs from the source's"
            );
            if r == target {
                assert_eq!(
                    hash_at(&mut rc, r).await,
                    *want_hash,
                    "{label}: HashKV({r})"
                );
            }
        }
    }
    streamer.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reproduces_every_revision_exactly_on_etcd_34() {
    replay_is_exact(etcd_34()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reproduces_every_revision_exactly_on_etcd_35() {
    replay_is_exact(etcd_35()).await;
}

/// Put keys as fast as the cluster takes them until `stop`, ignoring errors (members die).
fn writer(
    endpoints: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut c = Client::connect(endpoints, None).await.unwrap();
        let mut n = 0u64;
        while !stop.is_cancelled() {
            if c.put(format!("w/{n:06}"), format!("{n}"), None)
                .await
                .is_ok()
            {
                n += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    })
}

fn check_pitr(policy: &Path, identity: &Path, read: bool) -> (Option<i32>, serde_json::Value) {
    let mut args = vec![
        "check",
        "--policy",
        policy.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "--sample",
        "1",
        "--pitr",
        "--json",
    ];
    if read {
        args.push("--read-data");
    }
    let o = lifeboat(&args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code(), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_takeover_and_compaction_leave_no_silent_hole() {
    let mut cluster = EtcdCluster::start(3);
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    c.put("seed", "1", None).await.unwrap();
    // A 3 s writer lock, so a standby takes over quickly.
    let (dir, key, policy) = pitr_setup(&cluster.endpoints(), "  lock: {etcd: {ttl: 3s}}\n");
    let args = ["revlog", "--policy", policy.to_str().unwrap()];
    let a = Running::start(&args);
    wait_anchor(dir.path());
    let b = Running::start(&args);
    b.wait_log("standing by", Duration::from_secs(30));

    // Under writes, the watched member dies, then the writing streamer itself.
    let stop = tokio_util::sync::CancellationToken::new();
    let w = writer(cluster.endpoints(), stop.clone());
    let watched = a.wait_log("Watching member", Duration::from_secs(30))["member"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = cluster
        .members
        .iter()
        .position(|m| m.client_url == watched)
        .unwrap();
    cluster.stop(victim);
    let live: Vec<String> = cluster
        .endpoints()
        .into_iter()
        .filter(|e| *e != watched)
        .collect();
    let mut c = Client::connect(live, None).await.unwrap();
    a.wait_log("Watch ended", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill();
    b.wait_log("Writing the revision log", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let writes = w.await.unwrap();
    assert!(writes > 100, "{writes} writes");
    let e = head(&mut c).await;
    wait_committed(dir.path(), e);

    // One timeline, contiguous from its full backup to the head; the head restores exactly.
    let (code, v) = check_pitr(&policy, &key, true);
    assert_eq!(code, Some(0), "{v}");
    let tls = v["pitr"]["timelines"].as_array().unwrap();
    assert_eq!(tls.len(), 1, "{v}");
    assert!(tls[0]["head"].as_i64().unwrap() >= e, "{v}");
    let truth_e = state_at(&mut c, e).await;
    let (out, o) = restore_to(&policy, &key, dir.path(), &e.to_string(), &etcd_bin());
    assert!(o.status.success(), "{}", stderr(&o));
    let restored = start_restored(&out, dir.path(), &etcd_34());
    let mut rc = Client::connect(restored.endpoints(), None).await.unwrap();
    assert!(state_at(&mut rc, e).await == truth_e, "the head differs");
    drop(restored);

    // The streamer is stopped; history is compacted past where it stopped.
    b.signal("TERM");
    let (code, _, logs) = b.finish();
    assert_eq!(code, Some(0), "{logs}");
    for i in 0..10 {
        c.put(format!("gap/{i}"), "lost to the log", None)
            .await
            .unwrap();
    }
    let compacted = head(&mut c).await;
    c.compact(
        compacted,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    let b2 = Running::start(&args);
    let new = b2.wait_log("New revision-log timeline", Duration::from_secs(30));
    assert_eq!(new["reason"], "Compacted", "{new}");
    // Its own full backup anchors it.
    let t0 = Instant::now();
    while !full_backups(dir.path())
        .iter()
        .any(|m| m["timeline"] == new["timeline"])
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the new timeline has no anchor"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..5 {
        c.put(format!("new/{i}"), "after", None).await.unwrap();
    }
    let e2 = head(&mut c).await;
    wait_committed(dir.path(), e2);
    let truth_e2 = state_at(&mut c, e2).await;

    // The old timeline still restores; the compacted-away revisions are refused, never faked.
    let (out, o) = restore_to(&policy, &key, dir.path(), &e.to_string(), &etcd_bin());
    assert!(o.status.success(), "{}", stderr(&o));
    let restored = start_restored(&out, dir.path(), &etcd_34());
    let mut rc = Client::connect(restored.endpoints(), None).await.unwrap();
    assert!(state_at(&mut rc, e).await == truth_e);
    drop(restored);
    let (out, o) = restore_to(&policy, &key, dir.path(), &(e + 3).to_string(), &etcd_bin());
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(!out.exists());
    let (out, o) = restore_to(&policy, &key, dir.path(), &e2.to_string(), &etcd_bin());
    assert!(o.status.success(), "{}", stderr(&o));
    let restored = start_restored(&out, dir.path(), &etcd_34());
    let mut rc = Client::connect(restored.endpoints(), None).await.unwrap();
    assert!(state_at(&mut rc, e2).await == truth_e2);
    let (code, v) = check_pitr(&policy, &key, false);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["pitr"]["timelines"].as_array().unwrap().len(), 2, "{v}");
    b2.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_or_missing_segment_is_refused_and_nothing_is_staged() {
    let cluster = EtcdCluster::start(1);
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    let (dir, key, policy) = pitr_setup(&cluster.endpoints(), "");
    let streamer = Running::start(&["revlog", "--policy", policy.to_str().unwrap()]);
    wait_anchor(dir.path());
    // Three bursts, each sealed into its own segment, with a quiet moment after each.
    let mut ends = Vec::new();
    let mut quiet = Vec::new();
    for burst in 0..3 {
        for i in 0..10 {
            c.put(format!("k/{burst}/{i}"), "v", None).await.unwrap();
        }
        let h = head(&mut c).await;
        wait_committed(dir.path(), h);
        ends.push(h);
        quiet.push(chrono::Utc::now());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    streamer.kill();

    // A time between two bursts is the revision the first one ended at; a time the log cannot
    // prove yet is refused.
    let at = quiet[0].to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, o) = restore_to(&policy, &key, dir.path(), &at, &etcd_bin());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["staged"]["replayedTo"], ends[0], "{v}");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (out, o) = restore_to(&policy, &key, dir.path(), &later, &etcd_bin());
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("not known until"), "{}", stderr(&o));
    assert!(!out.exists());
    // The full backup anchoring the window is kept, and said so.
    let o = lifeboat(&[
        "prune",
        "--policy",
        policy.to_str().unwrap(),
        "--dry-run",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["backups"][0]["reasons"]
            .to_string()
            .contains("pitr anchor"),
        "{v}"
    );
    assert_eq!(v["revlog"]["segments"], serde_json::json!([]), "{v}");
    let segs = committed(dir.path());
    let (tl, first, last) = segs
        .iter()
        .find(|(_, f, l)| *f <= ends[1] && ends[1] <= *l)
        .cloned()
        .unwrap();
    let stem = dir
        .path()
        .join(format!("local/prod/revlog/{tl}/{first:020}-{last:020}"));
    let data = PathBuf::from(format!("{}.seg.zst.age", stem.display()));
    let original = std::fs::read(&data).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&data, &flipped).unwrap();

    let (code, v) = check_pitr(&policy, &key, true);
    assert_eq!(code, Some(5), "{v}");
    let problems = v["pitr"]["timelines"][0]["problems"].to_string();
    assert!(
        problems.contains(&format!("segment {first}-{last}")),
        "{problems}"
    );
    let (out, o) = restore_to(&policy, &key, dir.path(), &ends[2].to_string(), &etcd_bin());
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not match its manifest"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists() && !PathBuf::from(format!("{}.part", out.display())).exists());
    assert!(files_under(&dir.path().join("spool")).is_empty());
    // Before the damage, everything still restores.
    let (_, o) = restore_to(
        &policy,
        &key,
        dir.path(),
        &(first - 1).to_string(),
        &etcd_bin(),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // A manifest whose last-revision fingerprint (what a resuming streamer compares the
    // cluster with) is not its data's is named by check.
    std::fs::write(&data, &original).unwrap();
    let manifest_path = PathBuf::from(format!("{}.seg.json", stem.display()));
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    assert_eq!(
        m["lastRevisionEventsSha256"].as_str().map(str::len),
        Some(64),
        "{m}"
    );
    m["lastRevisionEventsSha256"] = "0".repeat(64).into();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, v) = check_pitr(&policy, &key, true);
    assert_eq!(code, Some(5), "{v}");
    let problems = v["pitr"]["timelines"][0]["problems"].to_string();
    assert!(problems.contains("fingerprint"), "{problems}");
    std::fs::write(&manifest_path, manifest_text).unwrap();
    let (code, v) = check_pitr(&policy, &key, true);
    assert_eq!(code, Some(0), "{v}");

    // A missing segment is a gap: named by check, refused by restore.
    std::fs::remove_file(&data).unwrap();
    std::fs::remove_file(format!("{}.seg.json", stem.display())).unwrap();
    let (code, v) = check_pitr(&policy, &key, false);
    assert_eq!(code, Some(5), "{v}");
    let problems = v["pitr"]["timelines"][0]["problems"].to_string();
    assert!(
        problems.contains(&format!("revisions {first}..={last}")),
        "{problems}"
    );
    let (out, o) = restore_to(&policy, &key, dir.path(), &ends[2].to_string(), &etcd_bin());
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("not reachable"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_streams_the_log_and_exports_it() {
    let cluster = EtcdCluster::start(1);
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, rcpt) = age_key();
    let policy = pitr_policy(
        dir.path(),
        &cluster.endpoints(),
        &rcpt,
        "  schedule: {cron: \"0 0 1 1 *\"}\n",
    );
    let d = Daemon::start(&policy, &[]);
    wait_anchor(dir.path());
    for i in 0..20 {
        c.put(format!("d/{i}"), "v", None).await.unwrap();
    }
    let h = head(&mut c).await;
    wait_committed(dir.path(), h);
    let l = |what: &'static str| [("policy", "prod"), ("what", what)];
    wait_for(
        "the metrics to show the commit",
        Duration::from_secs(30),
        || {
            d.metric("lifeboat_revlog", &l("last_revision"))
                .is_some_and(|r| r >= h as f64)
        },
    );
    assert_eq!(d.metric("lifeboat_revlog", &l("writer")), Some(1.0));
    assert_eq!(d.metric("lifeboat_revlog", &l("timelines")), Some(1.0));
    assert!(d.metric("lifeboat_revlog", &l("segments")).unwrap() >= 1.0);
    assert!(
        d.metric(
            "lifeboat_revlog_seconds",
            &[("policy", "prod"), ("what", "last_commit_timestamp")]
        )
        .is_some()
    );
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    assert!(files_under(&dir.path().join("spool")).is_empty());
}

/// Every `timeline.json` under `dir/local`, oldest first.
fn timelines(dir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = files_under(&dir.join("local"))
        .into_iter()
        .filter(|f| f.ends_with("/timeline.json"))
        .map(|f| {
            serde_json::from_slice(&std::fs::read(dir.join("local").join(f)).unwrap()).unwrap()
        })
        .collect();
    v.sort_by_key(|t| t["startedAt"].as_str().unwrap().to_owned());
    v
}

/// Wait until `n` timelines exist and the newest has a committed full backup anchoring it; the
/// newest.
fn wait_timeline(dir: &Path, n: usize) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let tls = timelines(dir);
        assert!(tls.len() <= n, "more timelines than expected: {tls:?}");
        if tls.len() == n
            && full_backups(dir)
                .iter()
                .any(|m| m["timeline"] == tls[n - 1]["id"])
        {
            return tls[n - 1].clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no anchored timeline #{n}: {tls:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The highest revision committed in timeline `tl`.
fn committed_in(dir: &Path, tl: &serde_json::Value) -> i64 {
    committed(dir)
        .into_iter()
        .filter(|(t, _, _)| tl["id"] == t.as_str())
        .map(|(_, _, l)| l)
        .max()
        .unwrap_or(0)
}

/// Wait until timeline `tl` has segments committed up to at least `rev`.
fn wait_committed_in(dir: &Path, tl: &serde_json::Value, rev: i64) {
    let t0 = Instant::now();
    while committed_in(dir, tl) < rev {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "revision {rev} not committed in {tl}: {:?}",
            committed(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Put `n` keys `prefix/i`; the head after them.
async fn put_many(c: &mut Client, prefix: &str, n: usize) -> i64 {
    for i in 0..n {
        c.put(format!("{prefix}/{i:03}"), format!("{prefix} {i}"), None)
            .await
            .unwrap();
    }
    head(c).await
}

/// SIGTERM a streamer; it commits what it holds and exits 0.
fn stop_streamer(s: Running) {
    s.signal("TERM");
    let (code, _, logs) = s.finish();
    assert_eq!(code, Some(0), "{logs}");
}

/// A cluster restored in place from an older backup keeps its cluster id, and once it has
/// written past the log's head, revision numbers alone cannot tell the two histories apart.
/// Whether the streamer runs through the restore (frozen with SIGSTOP while the restored
/// cluster writes past the head) or starts afterwards, the new history must begin a new
/// timeline and never be appended to the old one; each timeline restores its own history.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_restored_in_place_from_an_older_backup_starts_a_new_timeline() {
    let mut cluster = EtcdCluster::start(1);
    let ep = cluster.endpoints();
    let mut c = Client::connect(ep.clone(), None).await.unwrap();
    c.put("seed", "1", None).await.unwrap();
    let cluster_id = c.status().await.unwrap().header().unwrap().cluster_id();
    let (dir, key, policy) = pitr_setup(&ep, "");
    let args = ["revlog", "--policy", policy.to_str().unwrap()];
    let snapshot = |name: &str| {
        let f = dir.path().join(name);
        etcdctl(&ep[0], &["snapshot", "save", f.to_str().unwrap()]);
        f
    };

    // 1. The streamer runs through the restore, frozen while the restored cluster writes past
    //    the log's head.
    let s = Running::start(&args);
    let t1 = wait_timeline(dir.path(), 1);
    put_many(&mut c, "kept", 10).await;
    let older = snapshot("older.db");
    let x = head(&mut c).await;
    let y = put_many(&mut c, "lost", 20).await;
    wait_committed_in(dir.path(), &t1, y);
    let truth_y = state_at(&mut c, y).await;
    s.signal("STOP");
    cluster.stop(0);
    cluster.restore_in_place(&older);
    let mut c = Client::connect(ep.clone(), None).await.unwrap();
    let st = c.status().await.unwrap();
    assert_eq!(
        st.header().unwrap().cluster_id(),
        cluster_id,
        "same cluster id"
    );
    assert_eq!(head(&mut c).await, x);
    let z = put_many(&mut c, "second", 30).await;
    assert!(
        z > y + 5,
        "the restored cluster is past the log's head ({z} > {y})"
    );
    s.signal("CONT");
    let t2 = wait_timeline(dir.path(), 2);
    assert_eq!(t2["reason"], "diverged", "{t2}");
    assert_eq!(t2["parent"], t1["id"], "{t2}");
    assert!(t2["startRevision"].as_i64().unwrap() > z, "{t2}");
    let w = put_many(&mut c, "after", 5).await;
    wait_committed_in(dir.path(), &t2, w);
    // Nothing of the second history went into the first timeline.
    assert_eq!(committed_in(dir.path(), &t1), y);
    let truth_w = state_at(&mut c, w).await;

    // 2. Started after a restore that has not yet caught up: the revision is behind the log.
    stop_streamer(s);
    let older2 = snapshot("older2.db");
    let v = put_many(&mut c, "lost2", 10).await;
    let s = Running::start(&args);
    wait_committed_in(dir.path(), &t2, v);
    stop_streamer(s);
    // (The writer lock's own put and delete come after v.)
    let t2_head = committed_in(dir.path(), &t2);
    cluster.stop(0);
    cluster.restore_in_place(&older2);
    let s = Running::start(&args);
    let t3 = wait_timeline(dir.path(), 3);
    assert_eq!(t3["reason"], "revision-backwards", "{t3}");
    assert_eq!(committed_in(dir.path(), &t2), t2_head);

    // 3. Started after a restore that has written past the log's head: only the last
    //    revision's fingerprint in the segment manifest tells.
    let mut c = Client::connect(ep.clone(), None).await.unwrap();
    let older3 = snapshot("older3.db");
    let u = put_many(&mut c, "lost3", 10).await;
    wait_committed_in(dir.path(), &t3, u);
    stop_streamer(s);
    let t3_head = committed_in(dir.path(), &t3);
    cluster.stop(0);
    cluster.restore_in_place(&older3);
    let mut c = Client::connect(ep.clone(), None).await.unwrap();
    assert!(put_many(&mut c, "third", 20).await > u + 5);
    let s = Running::start(&args);
    let t4 = wait_timeline(dir.path(), 4);
    assert_eq!(t4["reason"], "diverged", "{t4}");
    assert_eq!(committed_in(dir.path(), &t3), t3_head);

    // 4. Another cluster at the same endpoints (rebuilt from a backup with a new token).
    stop_streamer(s);
    cluster.stop(0);
    cluster.restore_in_place_as(&older3, Some("another-cluster"));
    let mut c = Client::connect(ep.clone(), None).await.unwrap();
    let other = c.status().await.unwrap().header().unwrap().cluster_id();
    assert_ne!(other, cluster_id);
    let s = Running::start(&args);
    let t5 = wait_timeline(dir.path(), 5);
    assert_eq!(t5["reason"], "cluster-changed", "{t5}");
    assert_eq!(t5["clusterId"], format!("{other:x}"), "{t5}");
    s.kill();

    // Each timeline restores its own history: y only exists in the first, w in the second.
    for (rev, truth) in [(y, &truth_y), (w, &truth_w)] {
        let (out, o) = restore_to(&policy, &key, dir.path(), &rev.to_string(), &etcd_bin());
        assert!(o.status.success(), "{}", stderr(&o));
        let restored = start_restored(&out, dir.path(), &etcd_34());
        let mut rc = Client::connect(restored.endpoints(), None).await.unwrap();
        assert!(
            state_at(&mut rc, rev).await == *truth,
            "revision {rev} differs"
        );
    }
    let (code, v) = check_pitr(&policy, &key, true);
    assert_eq!(code, Some(0), "{v}");
}

/// A writer killed mid-upload (an OOM kill, a power loss) leaves object_store's staging file
/// `KEY#N` at a local destination: invisible to listings, as large as what was uploaded. The
/// next writer removes it before it uploads anything, and the log still has no hole.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_killed_mid_upload_leaves_no_partial_segment() {
    let cluster = EtcdCluster::start(1);
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    c.put("seed", "1", None).await.unwrap();
    // zstd level 19 on one thread makes a segment of incompressible values take seconds.
    let (dir, key, policy) = pitr_setup(
        &cluster.endpoints(),
        "  compression: {level: 19, threads: 1}\n",
    );
    let args = ["revlog", "--policy", policy.to_str().unwrap()];
    let a = Running::start(&args);
    wait_anchor(dir.path());
    load_random(&cluster, 10, 1 << 20).await;
    let staged = || {
        files_under(&dir.path().join("local"))
            .into_iter()
            .filter(|f| f.contains("/revlog/") && f.contains(".seg.") && f.contains('#'))
            .collect::<Vec<_>>()
    };
    let t0 = Instant::now();
    let partial = loop {
        let s = staged();
        let grown = s.iter().find(|f| {
            std::fs::metadata(dir.path().join("local").join(f)).is_ok_and(|m| m.len() > 0)
        });
        if let Some(f) = grown {
            break f.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no segment upload under way: {:?}",
            files_under(&dir.path().join("local"))
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    a.kill();
    assert!(
        dir.path().join("local").join(&partial).exists(),
        "the killed writer's partial upload is there"
    );

    let e = head(&mut c).await;
    let b = Running::start(&args);
    wait_committed(dir.path(), e);
    assert!(staged().is_empty(), "partial uploads left: {:?}", staged());
    stop_streamer(b);
    let (code, v) = check_pitr(&policy, &key, true);
    assert_eq!(code, Some(0), "{v}");
    let tls = v["pitr"]["timelines"].as_array().unwrap();
    assert_eq!(tls.len(), 1, "{v}");
    assert!(tls[0]["head"].as_i64().unwrap() >= e, "{v}");
}
