//! Point-in-time recovery against real etcd 3.4 and 3.5 on loopback: the revision log is
//! streamed by a real `lifeboat revlog` (or the daemon), and restores to chosen revisions are
//! started as real members whose history must equal the source's, revision by revision.

mod common;

use common::*;
use etcd_client::{Client, GetOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp};
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

    let dir = tempfile::tempdir().unwrap();
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = pitr_policy(dir.path(), &cluster.endpoints(), &rcpt, "");
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
