//! End-to-end backups against real etcd 3-member clusters and a real S3 server (moto).

mod common;

use common::*;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use std::path::Path;

struct Setup {
    dir: tempfile::TempDir,
    policy: std::path::PathBuf,
    local: std::path::PathBuf,
    spool: std::path::PathBuf,
}

/// Write a policy for `endpoints` with a local destination and, if `bucket`, an S3 one.
fn setup(endpoints: &[String], bucket: Option<&str>, recipient: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("backups");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&local).unwrap();
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let s3 = bucket
        .map(|b| {
            format!(
                "    - {{name: s3, url: \"s3://{b}/etcd\", options: {{endpoint: \"{}\", region: \
                 us-east-1, allowHttp: true}}}}\n",
                s3_endpoint()
            )
        })
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata:\n  name: prod\nspec:\n  \
         cluster:\n    endpoints: [{}]\n    selection: {{statusTimeout: 2s, waitForLeader: 1s}}\n  snapshot: \
         {{spoolDir: {}, timeout: 2m, stallTimeout: 20s}}\n  encryption: {{recipients: \
         [\"{recipient}\"]}}\n  destinations:\n{s3}    - {{name: local, url: \"file://{}\"}}\n",
        eps.join(", "),
        spool.display(),
        local.display()
    );
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, yaml).unwrap();
    Setup {
        dir,
        policy,
        local,
        spool,
    }
}

fn backup_json(s: &Setup) -> serde_json::Value {
    let o = lifeboat(&["backup", "--policy", s.policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

async fn s3_keys(bucket: &str) -> Vec<String> {
    let store = s3_store(bucket);
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

fn check_snapshot_file(path: &Path, manifest: &serde_json::Value, min_keys: u64) {
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    assert_eq!(
        n % 512,
        32,
        "snapshot file must carry etcd's 32-byte trailer"
    );
    let (db, trailer) = bytes.split_at(n - 32);
    assert_eq!(
        Sha256::digest(db)[..],
        trailer[..],
        "trailer is the SHA-256 of the database"
    );
    assert_eq!(
        hex::encode(trailer),
        manifest["snapshot"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        db.len() as u64,
        manifest["snapshot"]["dbSize"].as_u64().unwrap()
    );
    let st = etcdctl_status(path);
    assert!(
        st["revision"].as_i64().unwrap() >= manifest["snapshot"]["revision"].as_i64().unwrap(),
        "snapshot revision {} older than the member's revision before the snapshot {}",
        st["revision"],
        manifest["snapshot"]["revision"]
    );
    assert!(st["totalKey"].as_u64().unwrap() >= min_keys, "{st}");
    assert_eq!(st["totalSize"].as_u64().unwrap(), db.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_lands_in_s3_and_local_and_is_a_valid_snapshot() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/registry/test/", 3000, 200).await;
    let bucket = bucket_name("full");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let s = setup(&cluster.endpoints(), Some(&bucket), &rcpt);

    let out = backup_json(&s);
    let bid = out["id"].as_str().unwrap().to_owned();
    let m = &out["manifest"];
    assert_eq!(out["destinations"], serde_json::json!(["s3", "local"]));
    assert_eq!(m["policy"], "prod");
    assert_eq!(m["member"]["etcdVersion"], "3.4.23");
    assert_eq!(
        m["member"]["isLeader"], false,
        "a healthy follower is preferred"
    );
    assert_eq!(m["stored"]["encryption"]["recipients"][0], rcpt.as_str());

    // Local copy: exact objects, and they decrypt to a valid etcd snapshot.
    let local_files = files_under(&s.local);
    assert_eq!(
        local_files,
        vec![
            format!("prod/{bid}.manifest.json"),
            format!("prod/{bid}.snapshot.zst.age")
        ]
    );
    let stored_local = std::fs::read(s.local.join(format!("prod/{bid}.snapshot.zst.age"))).unwrap();
    assert_eq!(
        stored_local.len() as u64,
        m["stored"]["size"].as_u64().unwrap()
    );
    assert_eq!(
        hex::encode(Sha256::digest(&stored_local)),
        m["stored"]["sha256"].as_str().unwrap()
    );
    let plain = unseal(&stored_local, Some(&id));
    let snap = s.dir.path().join("restored.db");
    std::fs::write(&snap, &plain).unwrap();
    check_snapshot_file(&snap, m, 3000);

    // S3 copy: same bytes, same manifest.
    assert_eq!(
        s3_keys(&bucket).await,
        vec![
            format!("etcd/prod/{bid}.manifest.json"),
            format!("etcd/prod/{bid}.snapshot.zst.age")
        ]
    );
    let store = s3_store(&bucket);
    let stored_s3 = store
        .get(&format!("etcd/prod/{bid}.snapshot.zst.age").into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored_s3[..], stored_local[..]);
    let manifest_s3: serde_json::Value = serde_json::from_slice(
        &store
            .get(&format!("etcd/prod/{bid}.manifest.json").into())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(&manifest_s3, m);

    // Spool is gone and was never left behind.
    assert!(files_under(&s.spool).is_empty());

    // list reads it back from both destinations.
    let o = lifeboat(&["list", "--policy", s.policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["id"], bid.as_str());
    assert_eq!(rows[0]["destinations"], serde_json::json!(["s3", "local"]));
    assert_eq!(rows[0]["revision"], m["snapshot"]["revision"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_is_newest_first_and_survives_a_second_backup() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/a/", 200, 10).await;
    let (_, rcpt) = age_key();
    let s = setup(&cluster.endpoints(), None, &rcpt);
    let first = backup_json(&s)["id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    cluster.load("/b/", 200, 10).await;
    let second = backup_json(&s);
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert!(second["manifest"]["snapshot"]["revision"].as_i64() > Some(2));
    let o = lifeboat(&["list", "--policy", s.policy.to_str().unwrap(), "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second_id.as_str(), first.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_member_down_backup_comes_from_another() {
    let mut cluster = EtcdCluster::start(3);
    cluster.load("/k/", 500, 50).await;
    let (id, rcpt) = age_key();
    let s = setup(&cluster.endpoints(), None, &rcpt);
    cluster.stop(0);
    // If member 0 led, the others elect a new leader first; until then no member qualifies.
    cluster.wait_for_quorum();
    let out = backup_json(&s);
    let m = &out["manifest"];
    assert_ne!(
        m["member"]["endpoint"],
        cluster.members[0].client_url.as_str()
    );
    let bid = out["id"].as_str().unwrap();
    let stored = std::fs::read(s.local.join(format!("prod/{bid}.snapshot.zst.age"))).unwrap();
    let snap = s.dir.path().join("s.db");
    std::fs::write(&snap, unseal(&stored, Some(&id))).unwrap();
    check_snapshot_file(&snap, m, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn all_members_down_is_a_clear_error_and_leaves_nothing() {
    let mut cluster = EtcdCluster::start(3);
    let bucket = bucket_name("down");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let s = setup(&cluster.endpoints(), Some(&bucket), &rcpt);
    for i in 0..3 {
        cluster.stop(i);
    }
    let o = lifeboat(&["backup", "--policy", s.policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("no healthy etcd member"), "{err}");
    for m in &cluster.members {
        assert!(
            err.contains(&format!("{}: unreachable", m.client_url)),
            "{err}"
        );
    }
    assert!(stdout(&o).is_empty());
    assert!(files_under(&s.local).is_empty());
    assert!(s3_keys(&bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_bucket_fails_and_no_destination_keeps_anything() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 100, 10).await;
    let (_, rcpt) = age_key();
    let s = setup(&cluster.endpoints(), Some("lb-no-such-bucket"), &rcpt);
    let o = lifeboat(&["backup", "--policy", s.policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("destination \"s3\""), "{err}");
    assert!(
        err.contains("NoSuchBucket") || err.contains("bucket"),
        "{err}"
    );
    assert!(
        files_under(&s.local).is_empty(),
        "local destination must not keep a partial backup"
    );
    assert!(files_under(&s.spool).is_empty());

    // The same destination marked `required: false`: the backup is committed at the local
    // destination only, and says what was skipped and why.
    let text = std::fs::read_to_string(&s.policy).unwrap();
    let optional = text.replacen("{name: s3,", "{name: s3, required: false,", 1);
    assert_ne!(optional, text);
    std::fs::write(&s.policy, optional).unwrap();
    let o = lifeboat(&["backup", "--policy", s.policy.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["destinations"], serde_json::json!(["local"]));
    let skipped = r["skippedDestinations"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{r}");
    assert!(
        skipped[0].as_str().unwrap().contains("destination \"s3\""),
        "{r}"
    );
    let id = r["id"].as_str().unwrap();
    let mut local = files_under(&s.local);
    local.sort();
    assert_eq!(
        local,
        [
            format!("prod/{id}.manifest.json"),
            format!("prod/{id}.snapshot.zst.age")
        ]
    );
    assert!(files_under(&s.spool).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_recipient_is_rejected_before_anything_is_written() {
    let cluster = EtcdCluster::start(1);
    let s = setup(
        &cluster.endpoints(),
        None,
        "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
    );
    for args in [
        vec!["policy", "check", s.policy.to_str().unwrap()],
        vec!["backup", "--policy", s.policy.to_str().unwrap()],
    ] {
        let o = lifeboat(&args);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("not an age X25519 public key"), "{err}");
        assert!(err.contains("policy.yaml:10:"), "names the line: {err}");
    }
    assert!(files_under(&s.local).is_empty());
}

#[test]
fn policy_check_names_the_line_of_a_typo() {
    let (_, rcpt) = age_key();
    let s = setup(&["http://127.0.0.1:1".to_owned()], None, &rcpt);
    let o = lifeboat(&["policy", "check", s.policy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&s.policy)
        .unwrap()
        .replace("stallTimeout", "stalTimeout");
    std::fs::write(&s.policy, text).unwrap();
    let o = lifeboat(&["policy", "check", s.policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains("policy.yaml:9:"), "{err}");
    assert!(err.contains("unknown field `stalTimeout`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_cleanly_without_leaking_the_secret() {
    let cluster = EtcdCluster::start(1);
    cluster.load("/k/", 100, 10).await;
    let ep = s3_auth_endpoint();
    create_bucket_at(&ep, "lb-auth");
    let (_, rcpt) = age_key();
    let s = setup(&cluster.endpoints(), None, &rcpt);
    let secret = "sEcReT-do-not-print-0123456789";
    let yaml = std::fs::read_to_string(&s.policy).unwrap().replace(
        "  destinations:\n",
        &format!(
            "  destinations:\n    - {{name: s3, url: \"s3://lb-auth/x\", options: {{endpoint: \
             \"{ep}\", allowHttp: true, accessKeyId: AKIAWRONGWRONGWRONG0, secretAccessKey: \
             \"{secret}\"}}}}\n"
        ),
    );
    std::fs::write(&s.policy, yaml).unwrap();
    let o = lifeboat(&["backup", "--policy", s.policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("destination \"s3\""), "{err}");
    assert!(err.contains("credentials"), "says what to check: {err}");
    assert!(
        !err.contains(secret) && !stdout(&o).contains(secret),
        "secret leaked: {err}"
    );
    assert!(files_under(&s.local).is_empty());
    assert!(files_under(&s.spool).is_empty());
}
