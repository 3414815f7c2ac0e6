//! Guided restore against real etcd and a real S3 server: a wiped cluster comes back with every
//! key, damaged or mismatched backups are refused with nothing staged, and data-directory
//! copies need --skip-hash-check.

mod common;

use common::*;
use etcd_client::Client;
use object_store::ObjectStoreExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn backup(policy: &Path) -> serde_json::Value {
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "backup: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn part_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", p.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn wiped_cluster_comes_back_with_every_key() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/registry/pods/", 500, 300).await;
    let mut c = Client::connect(cluster.endpoints(), None).await.unwrap();
    for i in 0..50 {
        c.put(format!("/registry/pods/{i:06}"), format!("v2-{i}"), None)
            .await
            .unwrap();
    }
    c.delete("/registry/pods/000400", None).await.unwrap();
    c.put("bin\u{0}key", vec![0u8, 255, 1], None).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("restore");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let first = backup(&policy);
    let b = backup(&policy);
    let rev = b["manifest"]["snapshot"]["revision"].as_i64().unwrap();
    let want = all_kvs(&cluster.endpoints(), rev).await;
    assert_eq!(want.len(), 500);
    // Written after the backup: must not come back.
    c.put("/after/backup", "no", None).await.unwrap();
    drop(c);
    drop(cluster); // the disaster: every member and its data is gone

    let out = dir.path().join("db.snapshot");
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--policy",
            policy.to_str().unwrap(),
            "--identity",
            key.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        lifeboat(&args)
    };
    // No terminal and no --yes: nothing happens.
    let o = restore(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(!out.exists());

    let o = restore(&["--yes", "--json", "--target", "talos", "--node", "10.5.0.2"]);
    assert!(o.status.success(), "restore: {}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["staged"]["backup"], b["id"], "--latest is the newest");
    assert_eq!(r["staged"]["revision"].as_i64(), Some(rev));
    assert_eq!(r["staged"]["skipHashCheck"], false);
    let abs = std::path::absolute(&out).unwrap();
    let cmds = r["runbook"]["steps"].to_string();
    assert!(
        cmds.contains(&format!(
            "talosctl -n 10.5.0.2 bootstrap --recover-from={}",
            abs.display()
        )),
        "{cmds}"
    );
    assert!(!cmds.contains("skip-hash-check"));
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!part_of(&out).exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
        0,
        "no plaintext left in the spool"
    );
    // etcd's own tools accept it: status as the manifest says, and a full restore.
    let st = etcdctl_status(&out);
    let ms = &b["manifest"]["snapshot"]["status"];
    for f in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(st[f], ms[f], "{f}");
    }
    let (data, peer) = etcdctl_restore(&out, dir.path(), &[]);
    let restored = EtcdCluster::start_on_data_dir(&data, "r1", &peer);
    let got = all_kvs(&restored.endpoints(), 0).await;
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "every key and value written before the backup is back"
    );
    drop(restored);

    // An existing output is never replaced without --force, and is left as it was.
    std::fs::write(&out, b"keep me").unwrap();
    let first_id = first["id"].as_str().unwrap();
    let o = restore(&["--yes", "--id", first_id]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let o = restore(&["--yes", "--id", first_id, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        etcdctl_status(&out)["revision"],
        first["manifest"]["snapshot"]["revision"]
    );
    // --before picks the newest backup started before the time.
    std::fs::remove_file(&out).unwrap();
    let o = restore(&["--yes", "--before", "2000-01-01"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no backup started before"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_or_mismatched_backups_are_refused_and_nothing_is_staged() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 300, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("restore-damage");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let (other, _) = age_key();
    let wrong_key = write_identity(dir.path(), &other);
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    // A second copy of every backup in a local directory.
    let local = dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let mut yaml = std::fs::read_to_string(&policy).unwrap();
    yaml.push_str(&format!(
        "    - {{name: local, url: \"file://{}\"}}\n",
        local.display()
    ));
    std::fs::write(&policy, yaml).unwrap();
    let a = backup(&policy);
    cluster.load("/more/", 50, 10).await;
    let b = backup(&policy);
    let out = dir.path().join("staged.db");
    let try_restore = |id: &str, identity: &Path| {
        lifeboat(&[
            "restore",
            "--policy",
            policy.to_str().unwrap(),
            "--id",
            id,
            "--identity",
            identity.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--yes",
        ])
    };
    let nothing_staged = |what: &str| {
        assert!(!out.exists(), "{what}: nothing at the output");
        assert!(!part_of(&out).exists(), "{what}: no partial file");
        assert_eq!(
            std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
            0,
            "{what}: spool empty"
        );
    };
    let b_id = b["id"].as_str().unwrap();
    let data_key = format!("etcd/{}", b["manifest"]["stored"]["key"].as_str().unwrap());
    let manifest_key = format!("etcd/prod/{b_id}.manifest.json");
    let good = s3_get(&bucket, &data_key).await;
    let good_manifest = s3_get(&bucket, &manifest_key).await;
    let local_data = local.join(data_key.trim_start_matches("etcd/"));
    let local_manifest = local.join(manifest_key.trim_start_matches("etcd/"));
    assert_eq!(std::fs::read(&local_data).unwrap(), good);
    // Write the same bytes over both copies of an object.
    let put_both = |key: String, path: PathBuf, bytes: Vec<u8>| {
        let bucket = bucket.clone();
        async move {
            std::fs::write(&path, &bytes).unwrap();
            s3_put(&bucket, &key, bytes).await;
        }
    };

    // The wrong identity.
    let o = try_restore(b_id, &wrong_key);
    assert_eq!(o.status.code(), Some(7), "wrong identity: {}", stderr(&o));
    assert!(stderr(&o).contains("identity"), "{}", stderr(&o));
    nothing_staged("wrong identity");

    // One flipped byte in the S3 copy: the local copy is used instead.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    s3_put(&bucket, &data_key, flipped.clone()).await;
    let o = try_restore(b_id, &key);
    assert!(o.status.success(), "one damaged copy: {}", stderr(&o));
    assert!(
        stdout(&o).contains("from destination \"local\""),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        etcdctl_status(&out)["revision"],
        b["manifest"]["snapshot"]["revision"]
    );
    std::fs::remove_file(&out).unwrap();
    // Both copies flipped: refused, and the error names both.
    put_both(data_key.clone(), local_data.clone(), flipped).await;
    let o = try_restore(b_id, &key);
    assert_eq!(o.status.code(), Some(5), "flipped byte: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("every copy failed"), "{err}");
    assert!(err.contains("\"s3\"") && err.contains("\"local\""), "{err}");
    nothing_staged("flipped byte");

    // Truncated objects (listing sees the size: the backup is not offered at all).
    put_both(
        data_key.clone(),
        local_data.clone(),
        good[..good.len() - 1000].to_vec(),
    )
    .await;
    let o = try_restore(b_id, &key);
    assert_ne!(o.status.code(), Some(0), "truncated: {}", stderr(&o));
    assert!(stderr(&o).contains("is damaged there"), "{}", stderr(&o));
    nothing_staged("truncated");
    put_both(data_key.clone(), local_data.clone(), good.clone()).await;

    // A manifest whose snapshot facts are another backup's.
    let mut swapped: serde_json::Value = serde_json::from_slice(&good_manifest).unwrap();
    swapped["snapshot"] = a["manifest"]["snapshot"].clone();
    put_both(
        manifest_key.clone(),
        local_manifest.clone(),
        serde_json::to_vec(&swapped).unwrap(),
    )
    .await;
    let o = try_restore(b_id, &key);
    assert_eq!(o.status.code(), Some(5), "swapped manifest: {}", stderr(&o));
    nothing_staged("swapped manifest");

    // A manifest pointing at another backup's data object.
    let mut pointing: serde_json::Value = serde_json::from_slice(&good_manifest).unwrap();
    pointing["stored"] = a["manifest"]["stored"].clone();
    pointing["snapshot"] = a["manifest"]["snapshot"].clone();
    put_both(
        manifest_key.clone(),
        local_manifest.clone(),
        serde_json::to_vec(&pointing).unwrap(),
    )
    .await;
    let o = try_restore(b_id, &key);
    assert_eq!(
        o.status.code(),
        Some(5),
        "foreign data object: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("belongs to backup"), "{}", stderr(&o));
    nothing_staged("foreign data object");

    // Repaired, it restores; --from with the manifest URL finds it without a policy.
    put_both(manifest_key.clone(), local_manifest, good_manifest).await;
    let url = format!("s3://{bucket}/{manifest_key}");
    let ep = s3_endpoint();
    let o = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["restore", "--from", &url, "--identity"])
        .arg(&key)
        .arg("--output")
        .arg(&out)
        .args(["--yes", "--json"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", &ep)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "--from: {}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["staged"]["backup"].as_str(), Some(b_id));
    assert_eq!(
        etcdctl_status(&out)["revision"],
        b["manifest"]["snapshot"]["revision"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_dir_copy_needs_skip_hash_check_and_then_restores() {
    let mut cluster = EtcdCluster::start(3);
    cluster.load("/registry/", 400, 100).await;
    let want = all_kvs(&cluster.endpoints(), 0).await;
    cluster.stop_gracefully(0);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("member-db-copy");
    std::fs::copy(cluster.data_dir(0).join("member/snap/db"), &copy).unwrap();
    drop(cluster);

    let out = dir.path().join("staged.db");
    let data = dir.path().join("restored");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let initial = format!("r1={peer}");
    let args = |skip: bool| {
        let mut v = vec![
            "restore",
            "--from-file",
            copy.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--yes",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
            "--exec",
            "--name",
            "r1",
            "--initial-cluster",
            &initial,
            "--initial-advertise-peer-urls",
            &peer,
        ];
        if skip {
            v.push("--skip-hash-check");
        }
        lifeboat(&v)
    };
    let o = args(false);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--skip-hash-check"), "{}", stderr(&o));
    assert!(stderr(&o).contains("member/snap/db"), "{}", stderr(&o));
    assert!(!out.exists() && !part_of(&out).exists() && !data.exists());

    let o = args(true);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["staged"]["skipHashCheck"], true);
    assert_eq!(r["runbook"]["skipHashCheck"], true);
    assert!(
        r["runbook"]["steps"]
            .to_string()
            .contains("--skip-hash-check")
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&copy).unwrap(),
        "the copy is staged byte for byte"
    );
    let restored = EtcdCluster::start_on_data_dir(&data, "r1", &peer);
    assert!(all_kvs(&restored.endpoints(), 0).await == want);
    drop(restored);

    // --exec never restores over existing data.
    std::fs::remove_file(&out).unwrap();
    let o = args(true);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert!(!out.exists(), "refused before staging");

    // A damaged copy is refused even with the flag.
    std::fs::remove_dir_all(&data).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let ps = 4096;
    bytes[ps * 2..ps * 3].fill(0xa5); // a page of the tree overwritten
    bytes.truncate(bytes.len() - 100); // and the end cut off
    std::fs::write(&copy, &bytes).unwrap();
    let o = args(true);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(!out.exists() && !part_of(&out).exists() && !data.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_the_corrupted_backup_and_the_drill_restores_the_newest() {
    let cluster = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("check");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let mut ids = Vec::new();
    for round in 0..3 {
        cluster.load(&format!("/round{round}/"), 100, 100).await;
        ids.push(backup(&policy));
    }
    // Damage the middle backup in place (same size, so listing cannot tell).
    let bad = &ids[1];
    let data_key = format!(
        "etcd/{}",
        bad["manifest"]["stored"]["key"].as_str().unwrap()
    );
    let mut bytes = s3_get(&bucket, &data_key).await;
    let at = bytes.len() / 3;
    bytes[at] ^= 1;
    s3_put(&bucket, &data_key, bytes).await;
    // Leftovers of a crashed run: data without a manifest.
    s3_put(
        &bucket,
        "etcd/prod/20260101T000000Z-000001.snapshot.zst.age",
        b"partial".to_vec(),
    )
    .await;

    let run = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--identity",
            key.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        let o = lifeboat(&args);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
        (o.status.code(), v)
    };
    let (code, v) = run(&[]);
    assert_eq!(code, Some(5), "{v}");
    let results: Vec<(String, bool)> = v["checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, bool)> = ids
        .iter()
        .rev()
        .map(|b| (b["id"].as_str().unwrap().to_owned(), b["id"] != bad["id"]))
        .collect();
    assert_eq!(results, want, "exactly the damaged backup fails");
    assert_eq!(
        v["orphans"][0]["key"],
        "prod/20260101T000000Z-000001.snapshot.zst.age"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
        0,
        "nothing left in the spool"
    );

    let (code, v) = run(&["--sample", "1", "--drill"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["checked"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["checked"][0]["id"], ids[2]["id"],
        "the newest is always sampled"
    );
    assert_eq!(v["drill"]["ok"], true, "{v}");
    assert_eq!(
        v["drill"]["revision"],
        ids[2]["manifest"]["snapshot"]["revision"]
    );
    assert_eq!(v["drill"]["keys"].as_u64(), Some(300));
    assert_eq!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
        0,
        "the drill cleaned up"
    );

    // A manifest whose data object is gone is reported; only listing trouble gives exit 6.
    let oldest = format!(
        "etcd/{}",
        ids[0]["manifest"]["stored"]["key"].as_str().unwrap()
    );
    s3_store(&bucket).delete(&oldest.into()).await.unwrap();
    let (code, v) = run(&["--sample", "1"]);
    assert_eq!(code, Some(6), "{v}");
    assert!(v["problems"].to_string().contains("is missing"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_from_file_ships_a_copy_that_restores() {
    let mut cluster = EtcdCluster::start(3);
    cluster.load("/registry/", 200, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.db");
    etcdctl(
        &cluster.endpoints()[1],
        &["snapshot", "save", saved.to_str().unwrap()],
    );
    cluster.stop_gracefully(0);
    let copy = dir.path().join("db-copy");
    std::fs::copy(cluster.data_dir(0).join("member/snap/db"), &copy).unwrap();
    let endpoints = cluster.endpoints();
    drop(cluster); // no member can serve a snapshot any more

    let bucket = bucket_name("from-file");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = write_s3_policy(dir.path(), "prod", &endpoints, &bucket, &rcpt);
    let ship = |file: &Path, skip: bool| {
        let mut args = vec![
            "backup",
            "--policy",
            policy.to_str().unwrap(),
            "--from-file",
            file.to_str().unwrap(),
            "--json",
        ];
        if skip {
            args.push("--skip-hash-check");
        }
        lifeboat(&args)
    };
    let o = ship(&copy, false);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(list_objects(&bucket).await.is_empty(), "nothing uploaded");

    let o = ship(&saved, false);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_snapshot: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(from_snapshot["manifest"]["snapshot"]["hasTrailer"], true);

    let o = ship(&copy, true);
    assert!(o.status.success(), "{}", stderr(&o));
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sn = &b["manifest"]["snapshot"];
    assert_eq!(sn["source"], "file");
    assert_eq!(sn["hasTrailer"], false);
    assert_eq!(sn["status"]["liveKeys"].as_u64(), Some(200));

    let out = dir.path().join("staged.db");
    let r = restore_json(&policy, &key, &out);
    assert_eq!(r["staged"]["backup"], b["id"]);
    assert_eq!(r["runbook"]["skipHashCheck"], true);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&copy).unwrap());
}

async fn list_objects(bucket: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    s3_store(bucket)
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_restore_leaves_a_part_the_next_restore_replaces_and_a_live_one_keeps() {
    let cluster = EtcdCluster::start(1);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    etcdctl(
        &cluster.members[0].client_url,
        &["snapshot", "save", snap.to_str().unwrap()],
    );
    let out = dir.path().join("staged.db");
    // The first restore reads from a FIFO: it creates OUTPUT.part, copies what arrives, and
    // then waits, alive and holding the part's lock, for bytes that never come.
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut writer = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    std::io::Write::write_all(&mut writer, &[7u8; 4096]).unwrap();
    let restore = |from: &Path| {
        vec![
            "restore".to_owned(),
            "--from-file".into(),
            from.display().to_string(),
            "--skip-hash-check".into(),
            "--output".into(),
            out.display().to_string(),
            "--yes".into(),
            "--json".into(),
        ]
    };
    let args = restore(&fifo);
    let first = Running::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let part = part_of(&out);
    let t0 = std::time::Instant::now();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 4096 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "no part");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // A second restore to the same output while the first is alive: refused, part untouched.
    let args = restore(&snap);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lifeboat(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another restore is writing"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 4096);

    // The first is killed (as an OOM kill would): its part stays, and the next restore says
    // so, replaces it and stages the snapshot.
    first.kill();
    drop(writer);
    assert!(part.exists());
    let o = lifeboat(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let replaced = &r["staged"]["replacedPart"];
    assert_eq!(replaced[0]["path"], part.display().to_string());
    assert_eq!(replaced[0]["bytes"], 4096);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&snap).unwrap());
    assert!(!part.exists());
}
