//! The native bbolt reader against real etcd snapshots: status equal to etcdctl's (3.4) and
//! etcdutl's (3.5), damaged copies refused without panics or hangs, and keys extracted from a
//! stored backup equal to what the cluster held at the backup's revision.

mod common;

use common::*;
use etcd_client::{Client, DeleteOptions, GetOptions, PutOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// History with puts, overwrites, range deletes, re-puts, a lease, values large enough for
/// overflow pages, and a compaction in the middle.
async fn fill(cluster: &EtcdCluster) -> i64 {
    cluster.load("/a/", 3000, 64).await;
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    for i in 0..12u8 {
        c.put(format!("/big/{i}"), vec![b'A' + i; 300_000], None)
            .await
            .unwrap();
    }
    let del = DeleteOptions::new().with_range("/a/000500");
    c.delete("/a/000000", Some(del)).await.unwrap();
    for i in 0..50 {
        c.put(format!("/a/{i:06}"), format!("again-{i}"), None)
            .await
            .unwrap();
    }
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("/leased/x", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let rev = c.get("/", None).await.unwrap().header().unwrap().revision();
    c.compact(rev - 10, None).await.unwrap();
    for round in 0..3 {
        for i in 1000..1100 {
            c.put(format!("/a/{i:06}"), format!("round-{round}"), None)
                .await
                .unwrap();
        }
    }
    c.delete("/big/3", None).await.unwrap();
    c.get("/", None).await.unwrap().header().unwrap().revision()
}

fn save_snapshot(cluster: &EtcdCluster, dir: &Path) -> PathBuf {
    let path = dir.join("snap.db");
    let o = Command::new(&cluster.etcdctl)
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &cluster.members[0].client_url,
            "snapshot",
            "save",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "snapshot save: {}", stderr(&o));
    path
}

fn inspect_json(path: &Path) -> serde_json::Value {
    let o = lifeboat(&["inspect", path.to_str().unwrap(), "--json"]);
    assert!(
        o.status.success(),
        "inspect {}: {}",
        path.display(),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn assert_same_status(ours: &serde_json::Value, theirs: &serde_json::Value, what: &str) {
    for f in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(
            ours[f], theirs[f],
            "{what}: {f} differs (etcd says {theirs})"
        );
    }
}

async fn live_key_count(cluster: &EtcdCluster, rev: i64) -> u64 {
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    let opts = GetOptions::new()
        .with_range(vec![0u8])
        .with_count_only()
        .with_revision(rev);
    c.get(vec![0u8], Some(opts)).await.unwrap().count() as u64
}

async fn status_matches(dist: EtcdDist) {
    let mut cluster = EtcdCluster::start_dist(1, None, &dist);
    let last = fill(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let snap = save_snapshot(&cluster, dir.path());
    let ours = inspect_json(&snap);
    assert_same_status(&ours, &dist_status(&dist, &snap), dist.version);
    assert_eq!(ours["revision"], last, "{}", dist.version);
    assert_eq!(ours["trailer"], "matches");
    assert_eq!(ours["ok"], true);
    assert!(
        ours["pages"]["overflow"].as_u64().unwrap() > 0,
        "large values use overflow pages"
    );
    assert_eq!(
        ours["liveKeys"].as_u64().unwrap(),
        live_key_count(&cluster, last).await
    );
    assert!(ours["compactRevision"].as_i64().unwrap() > 0);

    // A copy of member/snap/db (no trailer) taken after the member stopped.
    cluster.stop(0);
    let copy = dir.path().join("db");
    std::fs::copy(cluster.data_dir(0).join("member/snap/db"), &copy).unwrap();
    let ours = inspect_json(&copy);
    assert_eq!(ours["trailer"], "absent");
    assert_same_status(&ours, &dist_status(&dist, &copy), "data-dir copy");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_matches_etcdctl_3_4() {
    status_matches(etcd_34()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_matches_etcdutl_3_5() {
    status_matches(etcd_35()).await;
}

/// Run `lifeboat inspect` with a deadline; returns the exit code (a hang fails the test).
fn inspect_exit(path: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["inspect", path.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            let text = format!("{}{}", stdout(&o), stderr(&o));
            return (o.status.code().unwrap_or(-1), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lifeboat inspect {} hung", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> usize {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], off: usize) -> usize {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap()) as usize
}

/// Reachable branch and leaf pages of bucket `key` (free pages may hold stale copies, and
/// damaging those changes nothing). A few lines of bbolt layout, independent of lifeboat's.
fn key_bucket_pages(image: &[u8], ps: usize) -> (Vec<usize>, Vec<usize>) {
    let root = u64_at(image, 32) * ps;
    let n = u16_at(image, root + 10) as usize;
    let key_root = (0..n)
        .map(|i| root + 16 + i * 16)
        .find_map(|e| {
            let (pos, ks) = (u32_at(image, e + 4), u32_at(image, e + 8));
            (&image[e + pos..e + pos + ks] == b"key").then(|| u64_at(image, e + pos + ks))
        })
        .expect("bucket key");
    let (mut branches, mut leaves, mut todo) = (Vec::new(), Vec::new(), vec![key_root]);
    while let Some(p) = todo.pop() {
        let off = p * ps;
        if u16_at(image, off + 8) == 0x01 {
            branches.push(p);
            for i in 0..u16_at(image, off + 10) as usize {
                todo.push(u64_at(image, off + 16 + i * 16 + 8));
            }
        } else if u16_at(image, off + 10) > 1 {
            leaves.push(p);
        }
    }
    (branches, leaves)
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_snapshots_are_refused_without_panic_or_hang() {
    let cluster = EtcdCluster::start(1);
    fill(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(save_snapshot(&cluster, dir.path())).unwrap();
    let ps = 4096;
    let image = &good[..good.len() - 32];
    let (branches, leaves) = key_bucket_pages(image, ps);
    assert!(!branches.is_empty() && leaves.len() > 10);

    // (name, bytes, whether to keep the trailer). Without the trailer (a data-dir copy) only the
    // structure can catch the damage, which is what most cases test.
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [
        100,
        ps,
        2 * ps + 17,
        image.len() / 2,
        image.len() - ps,
        good.len() - 1,
    ] {
        cases.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    for m in [0, 1] {
        let mut b = image.to_vec();
        b[m * ps + 40] ^= 0x10; // inside the checksummed meta
        cases.push((format!("meta page {m} broken"), b));
    }
    let b0 = branches[0] * ps;
    for (what, off) in [
        ("count", 10),
        ("first element pos", 16),
        ("first element ksize", 20),
        ("first child id", 24),
    ] {
        let mut b = image.to_vec();
        b[b0 + off + 1] ^= 0x5a;
        cases.push((format!("branch page {}: {what} flipped", branches[0]), b));
    }
    let mut selfref = image.to_vec();
    selfref[b0 + 24..b0 + 32].copy_from_slice(&(branches[0] as u64).to_le_bytes());
    cases.push((
        format!("branch page {} points to itself", branches[0]),
        selfref,
    ));
    for &l in leaves.iter().step_by(leaves.len() / 5) {
        for (what, off) in [
            ("page id", 1),
            ("count", 10),
            ("element flags", 16),
            ("element pos", 21),
            ("element vsize", 30),
            ("key order", 0),
        ] {
            let mut b = image.to_vec();
            if what == "key order" {
                // Make the second key of the page sort before the first.
                let e1 = l * ps + 32;
                let pos = u32::from_le_bytes(b[e1 + 4..e1 + 8].try_into().unwrap()) as usize;
                b[e1 + pos..e1 + pos + 8].fill(0); // revision 0
            } else {
                b[l * ps + off] ^= 0x40;
            }
            cases.push((format!("leaf page {l}: {what} flipped"), b));
        }
    }
    let mut flipped = good.clone();
    flipped[leaves[0] * ps + ps - 10] ^= 1; // value bytes: only the trailer can tell
    cases.push(("value byte flipped, trailer kept".into(), flipped));

    for (name, bytes) in &cases {
        let path = dir.path().join("case.db");
        std::fs::write(&path, bytes).unwrap();
        let (code, text) = inspect_exit(&path);
        assert_eq!(
            code, 5,
            "{name}: expected exit 5 (verification failed), got {code}: {text}"
        );
    }
    // The undamaged image without its trailer still passes.
    let path = dir.path().join("image.db");
    std::fs::write(&path, image).unwrap();
    assert_eq!(inspect_exit(&path).0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn extract_returns_the_values_of_the_backup_revision() {
    let cluster = EtcdCluster::start(3);
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    for i in 0..40 {
        c.put(
            format!("/registry/secrets/ns{}/s{i}", i % 3),
            format!("secret-{i}").repeat(i + 1),
            None,
        )
        .await
        .unwrap();
    }
    c.put("/registry/secrets/ns0/../../../escape", "x", None)
        .await
        .unwrap();
    c.put("/registry/configmaps/other", "not extracted", None)
        .await
        .unwrap();
    c.delete("/registry/secrets/ns1/s1", None).await.unwrap();

    let bucket = bucket_name("extract");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.txt");
    std::fs::write(
        &key_file,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&id.to_string())
        ),
    )
    .unwrap();
    let eps: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata: {{name: ex}}\nspec:\n  cluster: {{endpoints: [{}]}}\n  \
             snapshot: {{spoolDir: {}}}\n  encryption: {{recipients: [\"{rcpt}\"]}}\n  destinations:\n    - {{name: s3, url: \"s3://{bucket}/x\", \
             options: {{endpoint: \"{}\", region: us-east-1, allowHttp: true}}}}\n",
            eps.join(", "),
            dir.path().join("spool").display(),
            s3_endpoint()
        ),
    )
    .unwrap();
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "backup: {}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &out["manifest"];
    let rev = m["snapshot"]["revision"].as_i64().unwrap();
    let checks: Vec<(&str, &str)> = m["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("sha256-trailer", "passed"),
            ("bbolt-structure", "passed"),
            ("revision", "passed"),
            ("live-key-count", "passed")
        ]
    );

    // The cluster moves on; the backup must still give the old values.
    for i in 0..40 {
        c.put(
            format!("/registry/secrets/ns{}/s{i}", i % 3),
            "changed",
            None,
        )
        .await
        .unwrap();
    }
    c.delete("/registry/secrets/ns2/s2", None).await.unwrap();

    let id_arg = out["id"].as_str().unwrap();
    let stored = [
        "--policy",
        policy.to_str().unwrap(),
        "--backup",
        id_arg,
        "--identity",
        key_file.to_str().unwrap(),
    ];
    let mut args = vec!["inspect", "--json"];
    args.extend(stored);
    let o = lifeboat(&args);
    assert!(o.status.success(), "inspect stored: {}", stderr(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ms = &m["snapshot"]["status"];
    for f in ["hash", "revision", "totalKey", "liveKeys", "totalSize"] {
        assert_eq!(
            st[f], ms[f],
            "{f}: inspect of the stored backup vs its manifest"
        );
    }

    let out_dir = dir.path().join("out");
    let mut args = vec![
        "extract",
        "--prefix",
        "/registry/secrets/",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend(stored);
    let o = lifeboat(&args);
    assert!(o.status.success(), "extract: {}", stderr(&o));

    let want = c
        .get(
            "/registry/secrets/",
            Some(GetOptions::new().with_prefix().with_revision(rev)),
        )
        .await
        .unwrap();
    assert_eq!(want.kvs().len(), 40); // 40 + escape - 1 deleted
    for kv in want.kvs() {
        let rel = kv
            .key_str()
            .unwrap()
            .trim_start_matches('/')
            .replace("..", "%2E%2E");
        let got = std::fs::read(out_dir.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(got, kv.value(), "{rel}");
    }
    assert_eq!(
        files_under(&out_dir).len(),
        want.kvs().len(),
        "nothing else written"
    );
    assert!(!dir.path().join("escape").exists());
    let spool_left = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
    assert_eq!(spool_left, 0, "no plaintext left in the spool");
    let again = lifeboat(&args);
    assert_eq!(
        again.status.code(),
        Some(8),
        "an existing --out is refused: {}",
        stderr(&again)
    );
}

/// Rewrite the trailer so that only the structure (or the cluster) can catch a problem.
fn with_trailer(image: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut out = image.to_vec();
    out.extend(sha2::Sha256::digest(image));
    out
}

/// The verification a backup runs before committing, against real members: damage the trailer
/// cannot see, a stale snapshot, and a key count the cluster disagrees with are all refused.
#[tokio::test(flavor = "multi_thread")]
async fn verification_refuses_what_it_cannot_vouch_for() {
    use lifeboat::ops::verify::verify_snapshot;
    let a = EtcdCluster::start(1);
    let mut ca = Client::connect(a.endpoints(), None).await.unwrap();
    for i in 0..50 {
        ca.put(format!("/k/{i}"), "v", None).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let snap = save_snapshot(&a, dir.path());
    let good = std::fs::read(&snap).unwrap();
    let image = &good[..good.len() - 32];
    let sha: [u8; 32] = good[good.len() - 32..].try_into().unwrap();
    let timeout = Duration::from_secs(10);

    let ok = verify_snapshot(snap.clone(), sha, 51, &mut ca, timeout)
        .await
        .unwrap();
    assert_eq!((ok.status.revision, ok.status.live_keys), (51, 50));
    assert!(
        ok.checks
            .iter()
            .all(|c| c.outcome == lifeboat::model::CheckOutcome::Passed)
    );

    let stale = verify_snapshot(snap.clone(), sha, 60, &mut ca, timeout)
        .await
        .unwrap_err();
    assert!(stale.contains("stale"), "{stale}");

    // Structural damage with a recomputed trailer: a branch or leaf element pointing elsewhere.
    let (branches, leaves) = key_bucket_pages(image, 4096);
    let page = branches.first().or(leaves.first()).copied().unwrap();
    let mut bad = image.to_vec();
    bad[page * 4096 + 10] = 0xff; // element count
    let damaged = dir.path().join("damaged.db");
    let bad = with_trailer(&bad);
    std::fs::write(&damaged, &bad).unwrap();
    let dsha: [u8; 32] = bad[bad.len() - 32..].try_into().unwrap();
    let e = verify_snapshot(damaged, dsha, 51, &mut ca, timeout)
        .await
        .unwrap_err();
    assert!(e.contains(&format!("page {page}")), "{e}");

    // Cluster B reached revision 51 with 100 keys: A's snapshot (50 keys) does not match it.
    let b = EtcdCluster::start(1);
    let mut cb = Client::connect(b.endpoints(), None).await.unwrap();
    for i in 0..60 {
        let ops = vec![
            etcd_client::TxnOp::put(format!("/x/{i}"), "v", None),
            etcd_client::TxnOp::put(format!("/y/{i}"), "v", None),
        ];
        cb.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    let e = verify_snapshot(snap.clone(), sha, 51, &mut cb, timeout)
        .await
        .unwrap_err();
    assert!(e.contains("50 live keys") && e.contains("100 keys"), "{e}");

    // Once the revision is compacted the count is skipped, and the manifest will say why.
    cb.compact(61, None).await.unwrap();
    let skipped = verify_snapshot(snap, sha, 51, &mut cb, timeout)
        .await
        .unwrap();
    let count = skipped
        .checks
        .iter()
        .find(|c| c.name == "live-key-count")
        .unwrap();
    assert_eq!(count.outcome, lifeboat::model::CheckOutcome::Skipped);
    assert!(count.detail.contains("compacted"), "{}", count.detail);
}
