//! Retention against a real S3 server: 40 backups spread over months are pruned to exactly the
//! planned set, a dry run changes nothing, orphans go only after their grace period, and
//! `backup` prunes after a good run only.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::*;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every object under the bucket's `etcd/` prefix: key -> size.
async fn objects(bucket: &str) -> BTreeMap<String, u64> {
    s3_store(bucket)
        .list(Some(&"etcd".into()))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap()
}

/// Ids of the backups whose manifests are in the bucket, sorted.
async fn manifest_ids(bucket: &str) -> Vec<String> {
    objects(bucket)
        .await
        .keys()
        .filter_map(|k| k.strip_prefix("etcd/prod/")?.strip_suffix(".manifest.json"))
        .map(str::to_owned)
        .collect()
}

async fn delete(bucket: &str, key: &str) {
    s3_store(bucket).delete(&key.into()).await.unwrap();
}

fn sorted<const N: usize>(ids: [String; N]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort();
    v
}

fn with_retention(policy: &Path, retention: &str) -> PathBuf {
    let text = std::fs::read_to_string(policy).unwrap();
    let out = policy.with_file_name(format!("prod-{}.yaml", free_port()));
    std::fs::write(&out, format!("{text}  retention: {retention}\n")).unwrap();
    out
}

fn run_json(args: &[&str]) -> (Option<i32>, Value) {
    let o = lifeboat(args);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stderr(&o)));
    (o.status.code(), v)
}

fn prune(policy: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["prune", "--policy", policy.to_str().unwrap(), "--json"];
    args.extend(extra);
    run_json(&args)
}

/// (id, action, reasons) per backup of a prune report.
fn actions(v: &Value) -> Vec<(String, String, Vec<String>)> {
    v["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_owned(),
                b["action"].as_str().unwrap().to_owned(),
                b["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_leaves_exactly_the_planned_set_of_forty_backups() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("prune-forty");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let base = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let policy = with_retention(
        &base,
        "{keepLast: 3, keepWeekly: 4, keepMonthly: 4, pruneAfterBackup: false}",
    );

    // One real backup is the template for 40 backups every 4 days from 2026-01-01 02:00 UTC to
    // 2026-06-06: real data objects and manifests, only the dates differ.
    let (code, real) = run_json(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "{real}");
    let real_data_key = format!(
        "etcd/{}",
        real["manifest"]["stored"]["key"].as_str().unwrap()
    );
    let data = s3_get(&bucket, &real_data_key).await;
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 2, 0, 0).unwrap();
    let mut dates = BTreeMap::new();
    for k in 0..40u32 {
        let t = start + Duration::days(4 * i64::from(k));
        let id = format!("{}-{:06x}", t.format("%Y%m%dT%H%M%SZ"), 0x100 + k);
        let mut m = real["manifest"].clone();
        m["id"] = id.clone().into();
        m["startedAt"] = t.to_rfc3339().into();
        m["finishedAt"] = t.to_rfc3339().into();
        let key = format!("prod/{id}.snapshot.zst.age");
        m["stored"]["key"] = key.clone().into();
        s3_put(&bucket, &format!("etcd/{key}"), data.clone()).await;
        s3_put(
            &bucket,
            &format!("etcd/prod/{id}.manifest.json"),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .await;
        dates.insert(id, t.date_naive());
    }
    let real_id = real["id"].as_str().unwrap();
    delete(&bucket, &format!("etcd/prod/{real_id}.manifest.json")).await;
    delete(&bucket, &real_data_key).await;
    // A crashed run's leftover, written now: too young to remove by default.
    let orphan_old = "etcd/prod/20260301T000000Z-0000aa.snapshot.zst.age";
    s3_put(&bucket, orphan_old, b"partial upload".to_vec()).await;

    let before = objects(&bucket).await;
    assert_eq!(before.len(), 81);
    let (code, plan) = prune(&policy, &["--dry-run"]);
    assert_eq!(code, Some(0), "{plan}");
    assert_eq!(
        objects(&bucket).await,
        before,
        "a dry run changed the bucket"
    );
    assert_eq!(plan["orphans"][0]["action"], "keep", "{plan}");

    // Worked out by hand: ISO weeks start on Mondays 2026-06-01, 05-25, 05-18, 05-11; the
    // newest backup of June, May, April and March is 06-06, 05-29, 04-27, 03-30.
    let want_kept: Vec<&str> = vec![
        "2026-03-30", // monthly 4/4
        "2026-04-27", // monthly 3/4
        "2026-05-17", // weekly 4/4
        "2026-05-21", // weekly 3/4
        "2026-05-29", // last 3/3, weekly 2/4, monthly 2/4
        "2026-06-02", // last 2/3
        "2026-06-06", // newest
    ];
    let acts = actions(&plan);
    assert_eq!(acts.len(), 40);
    let mut kept: Vec<String> = acts
        .iter()
        .filter(|(_, a, _)| a == "keep")
        .map(|(id, _, _)| dates[id].to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, want_kept);
    assert!(
        acts.iter().all(|(_, a, r)| (a == "keep") != r.is_empty()),
        "{plan}"
    );
    let newest = &acts[0];
    assert_eq!(
        newest.2,
        ["newest", "last 1/3", "weekly 1/4", "monthly 1/4"],
        "{plan}"
    );
    let planned_keep: Vec<String> = acts
        .iter()
        .filter(|(_, a, _)| a == "keep")
        .map(|(id, _, _)| id.clone())
        .collect();

    // An orphan written after a pause is younger than a 2s grace; the first one is older.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let orphan_fresh = "etcd/prod/20260601T000000Z-0000bb.snapshot.zst.age";
    s3_put(&bucket, orphan_fresh, b"upload in progress".to_vec()).await;
    let (code, done) = prune(&policy, &["--orphan-grace", "2s"]);
    assert_eq!(code, Some(0), "{done}");
    assert_eq!(done["failures"], serde_json::json!([]), "{done}");

    let mut planned_sorted = planned_keep.clone();
    planned_sorted.sort();
    assert_eq!(manifest_ids(&bucket).await, planned_sorted);
    let mut want_objects: Vec<String> = planned_keep
        .iter()
        .flat_map(|id| {
            [
                format!("etcd/prod/{id}.manifest.json"),
                format!("etcd/prod/{id}.snapshot.zst.age"),
            ]
        })
        .collect();
    want_objects.push(orphan_fresh.to_owned());
    want_objects.sort();
    let left: Vec<String> = objects(&bucket).await.into_keys().collect();
    assert_eq!(left, want_objects);

    // Planning again on what is left removes nothing, and `list` shows the kept backups.
    let (code, again) = prune(&policy, &["--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(
        actions(&again).iter().all(|(_, a, _)| a == "keep"),
        "{again}"
    );
    let (_, listed) = run_json(&["list", "--policy", policy.to_str().unwrap(), "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_prunes_after_a_good_run_only_and_a_prune_failure_keeps_the_backup() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("prune-after");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let base = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let policy = with_retention(&base, "{keepLast: 2}");
    let backup = |p: &Path| {
        let (code, v) = run_json(&["backup", "--policy", p.to_str().unwrap(), "--json"]);
        assert_eq!(code, Some(0), "{v}");
        v
    };

    let b1 = backup(&policy);
    let b2 = backup(&policy);
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    assert_eq!(manifest_ids(&bucket).await, sorted([id(&b1), id(&b2)]));

    // A manifest that names another backup's data object must never lead to deleting it.
    let m1_key = format!("etcd/prod/{}.manifest.json", id(&b1));
    let m1 = s3_get(&bucket, &m1_key).await;
    let mut tampered: Value = serde_json::from_slice(&m1).unwrap();
    tampered["stored"] = b2["manifest"]["stored"].clone();
    s3_put(&bucket, &m1_key, serde_json::to_vec(&tampered).unwrap()).await;
    let b3 = backup(&policy);
    let failures = b3["prune"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{b3}");
    assert!(failures[0].as_str().unwrap().contains(&id(&b1)), "{b3}");
    assert_eq!(
        manifest_ids(&bucket).await,
        sorted([id(&b1), id(&b2), id(&b3)])
    );
    let b2_data = format!("etcd/{}", b2["manifest"]["stored"]["key"].as_str().unwrap());
    assert!(objects(&bucket).await.contains_key(&b2_data));

    // A failed run (no member reachable) never prunes, even with a rule that would remove two.
    s3_put(&bucket, &m1_key, m1).await;
    let dead = write_s3_policy(
        dir.path(),
        "prod",
        &[format!("http://127.0.0.1:{}", free_port())],
        &bucket,
        &rcpt,
    );
    let dead = with_retention(&dead, "{keepLast: 1}");
    let o = lifeboat(&["backup", "--policy", dead.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(
        manifest_ids(&bucket).await,
        sorted([id(&b1), id(&b2), id(&b3)])
    );

    // A destination that cannot be listed stops the prune before anything is removed.
    let text = std::fs::read_to_string(&policy).unwrap();
    let two = dir.path().join("two.yaml");
    let missing = bucket_name("prune-missing");
    let second = format!(
        "    - {{name: s3b, url: \"s3://{missing}/etcd\", options: {{endpoint: \"{}\", region: \
         us-east-1, allowHttp: true}}}}\n  retention:",
        s3_endpoint()
    );
    std::fs::write(&two, text.replacen("  retention:", &second, 1)).unwrap();
    let o = lifeboat(&["prune", "--policy", two.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("s3b"), "{}", stderr(&o));
    assert_eq!(
        manifest_ids(&bucket).await,
        sorted([id(&b1), id(&b2), id(&b3)])
    );

    // The next prune removes b1, manifest and data.
    let (code, v) = prune(&policy, &[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(manifest_ids(&bucket).await, sorted([id(&b2), id(&b3)]));
    let b1_data = format!("etcd/{}", b1["manifest"]["stored"]["key"].as_str().unwrap());
    assert!(!objects(&bucket).await.contains_key(&b1_data));
}

#[test]
fn prune_without_retention_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rcpt) = age_key();
    let policy = write_s3_policy(
        dir.path(),
        "prod",
        &["http://127.0.0.1:1".to_owned()],
        "unused",
        &rcpt,
    );
    let o = lifeboat(&["prune", "--policy", policy.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no spec.retention"), "{}", stderr(&o));
}
