//! Fault injection: backups of a cluster in trouble, with the faults made for real on real
//! processes. Members are SIGKILLed and SIGSTOPped mid-stream, the leader dies just before a
//! run, a member's backend fills to its quota (NOSPACE), the S3 server is killed mid-upload,
//! lifeboat itself is SIGKILLed, the spool sits on a full filesystem, and the daemon's
//! destination is down for its first run. Each case asserts on outcomes: exit codes, what every
//! destination holds, what is left in the spool, and a restore or status of what was committed.

mod common;

use common::*;
use futures::TryStreamExt;
use object_store::ObjectStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A policy backing `endpoints` up to S3 (`bucket` on `s3`, prefix `etcd`) and to the local
/// directory `dir/local`, spooling in `dir/spool`; `extra` is added under `spec`.
fn two_destinations(
    dir: &Path,
    file: &str,
    endpoints: &[String],
    s3: &str,
    bucket: &str,
    recipient: &str,
    extra: &str,
) -> PathBuf {
    let local = dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata: {{name: prod}}\nspec:\n  \
             cluster: {{endpoints: [{}], selection: {{statusTimeout: 2s}}}}\n  snapshot: \
             {{spoolDir: {}, stallTimeout: 3s}}\n  encryption: {{recipients: [\"{recipient}\"]}}\n  \
             destinations:\n    - {{name: s3, url: \"s3://{bucket}/etcd\", options: {{endpoint: \
             \"{s3}\", region: us-east-1, allowHttp: true, retries: 0, timeout: 10s}}}}\n    - \
             {{name: local, url: \"file://{}\"}}\n{extra}",
            eps.join(", "),
            dir.join("spool").display(),
            local.display(),
        ),
    )
    .unwrap();
    path
}

/// zstd level 19 on one thread: with incompressible data a run takes seconds.
const SLOW: &str = "  compression: {level: 19, threads: 1}\n";

/// Every object key under `etcd/` in `bucket` on `endpoint`.
async fn s3_keys_at(endpoint: &str, bucket: &str) -> Vec<String> {
    s3_store_at(endpoint, bucket)
        .list(Some(&"etcd".into()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// Names of the files in the spool directory ending with `suffix`.
fn spool_entries(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("spool"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Wait until a backup's spool file holds at least `bytes`: the snapshot is mid-stream.
fn wait_mid_stream(dir: &Path, bytes: u64, except: &[String]) -> String {
    let t0 = Instant::now();
    loop {
        for name in spool_entries(dir, ".db.part") {
            if except.contains(&name) {
                continue;
            }
            let len = std::fs::metadata(dir.join("spool").join(&name)).map_or(0, |m| m.len());
            if len >= bytes {
                return name;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no spool file reached {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The member index serving `endpoint`.
fn member_at(cluster: &EtcdCluster, endpoint: &str) -> usize {
    cluster
        .members
        .iter()
        .position(|m| m.client_url == endpoint)
        .unwrap_or_else(|| panic!("no member at {endpoint}"))
}

/// Stage the policy's newest backup and check it with etcd's own tool against its manifest.
fn restores_as_recorded(policy: &Path, identity: &Path, dir: &Path, manifest: &serde_json::Value) {
    let out = dir.join(format!("staged-{}.db", free_port()));
    let r = restore_json(policy, identity, &out);
    assert_eq!(r["staged"]["backup"], manifest["id"]);
    let st = etcdctl_status(&out);
    let want = &manifest["snapshot"]["status"];
    for f in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(st[f], want[f], "{f}");
    }
}

/// What to do to the member that is streaming, once it is mid-stream, and after the run.
enum MemberFault {
    Kill,
    Freeze,
}

/// A slow backup of a 3-member cluster to S3 and a local directory; `fault` hits the member it
/// streams from mid-stream. The run must commit from another member, at both destinations,
/// with nothing left in the spool, and restore as its manifest says. Returns the backup's JSON
/// and the member hit.
async fn fault_mid_stream(fault: MemberFault) -> (serde_json::Value, String) {
    let mut cluster = EtcdCluster::start(3);
    load_random(&cluster, 150, 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("fault-stream");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = two_destinations(
        dir.path(),
        "p.yaml",
        &cluster.endpoints(),
        &s3_endpoint(),
        &bucket,
        &rcpt,
        SLOW,
    );
    let run = Running::start(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    let first = run.wait_log("Snapshotting member", Duration::from_secs(30));
    let victim_ep = first["endpoint"].as_str().unwrap().to_owned();
    let victim = member_at(&cluster, &victim_ep);
    wait_mid_stream(dir.path(), 2 << 20, &[]);
    match fault {
        MemberFault::Kill => cluster.stop(victim),
        MemberFault::Freeze => cluster.signal(victim, "STOP"),
    }
    let (code, out, logs) = run.finish();
    if let MemberFault::Freeze = fault {
        cluster.signal(victim, "CONT");
    }
    assert_eq!(code, Some(0), "{logs}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(v["manifest"]["member"]["endpoint"], victim_ep.as_str());
    assert_eq!(v["destinations"], serde_json::json!(["s3", "local"]));
    let keys = s3_keys(&bucket).await;
    assert_eq!(keys.len(), 2, "one data object and its manifest: {keys:?}");
    assert_eq!(files_under(&dir.path().join("local")).len(), 2);
    assert!(files_under(&dir.path().join("spool")).is_empty());
    restores_as_recorded(&policy, &key, dir.path(), &v["manifest"]);
    (v, victim_ep)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_killed_while_it_streams_hands_over_to_another() {
    let (v, victim) = fault_mid_stream(MemberFault::Kill).await;
    let failed = v["failedAttempts"].to_string();
    assert!(failed.contains(&victim), "{failed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_member_stalls_and_another_serves() {
    let (v, victim) = fault_mid_stream(MemberFault::Freeze).await;
    let failed = v["failedAttempts"].to_string();
    assert!(
        failed.contains(&victim) && failed.contains("no data"),
        "the stall timeout fired: {failed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_killed_just_before_the_run_does_not_fail_it() {
    let mut cluster = EtcdCluster::start(3);
    cluster.load("/k/", 300, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("fault-leader");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    // The default waitForLeader (30s) rides out the election.
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace(", waitForLeader: 1s", "");
    std::fs::write(&policy, text).unwrap();
    let leader = cluster.leader();
    let leader_ep = cluster.members[leader].client_url.clone();
    cluster.stop(leader);

    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v["manifest"];
    assert_ne!(m["member"]["endpoint"], leader_ep.as_str());
    // The live key count was compared once the new leader answered, not skipped.
    let count = m["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "live-key-count")
        .unwrap();
    assert_eq!(count["outcome"], "passed", "{count}");
    assert_eq!(m["snapshot"]["status"]["liveKeys"], 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_waits_out_an_election_and_gives_up_after_wait_for_leader() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 100, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("fault-quorum");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let set_wait = |wait: &str| {
        let text = std::fs::read_to_string(&policy).unwrap();
        let text = regex_free_replace(&text, "waitForLeader: ", wait);
        std::fs::write(&policy, text).unwrap();
    };
    // Two of three members frozen: the third has no quorum and, soon, no leader.
    cluster.signal(1, "STOP");
    cluster.signal(2, "STOP");
    std::thread::sleep(Duration::from_secs(3));

    // Not waiting: exit 4 with every member's reason, nothing written.
    set_wait("0s");
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no leader") && err.contains("no answer within"),
        "{err}"
    );
    assert!(s3_keys(&bucket).await.is_empty());

    // Waiting: the run probes again while the members are frozen, and once they are back
    // and have elected a leader, it backs up.
    set_wait("60s");
    let run = Running::start(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    let waiting = run.wait_log(
        "No member can serve a snapshot yet",
        Duration::from_secs(30),
    );
    assert!(
        waiting["members"].as_str().unwrap().contains("no leader"),
        "{waiting}"
    );
    cluster.signal(1, "CONT");
    cluster.signal(2, "CONT");
    let (code, out, logs) = run.finish();
    assert_eq!(code, Some(0), "{logs}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["manifest"]["snapshot"]["status"]["liveKeys"], 100);
    assert_eq!(s3_keys(&bucket).await.len(), 2);
}

/// Replace the value after `key` (up to `,` or `}`) with `value`.
fn regex_free_replace(text: &str, key: &str, value: &str) -> String {
    let at = text.find(key).expect("key present") + key.len();
    let end = at + text[at..].find([',', '}']).unwrap();
    format!("{}{value}{}", &text[..at], &text[end..])
}

/// How many keys start with `prefix`.
async fn count_keys(cluster: &EtcdCluster, prefix: &str) -> u64 {
    let mut c = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    let opts = etcd_client::GetOptions::new()
        .with_prefix()
        .with_count_only();
    c.get(prefix, Some(opts)).await.unwrap().count() as u64
}

/// Send `sig` to a process.
fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

fn alarm_list(endpoint: &str) -> String {
    etcdctl(endpoint, &["alarm", "list"])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_a_nospace_alarm_is_backed_up_and_the_alarm_recorded() {
    // Member m2's backend quota is small: it fills first and raises NOSPACE for itself, and
    // the whole cluster then refuses writes.
    let quota = |i: usize| {
        if i == 2 {
            vec!["--quota-backend-bytes=6000000".to_owned()]
        } else {
            Vec::new()
        }
    };
    let cluster = EtcdCluster::start_custom(3, None, &etcd_34(), quota);
    fill_until_nospace(&cluster).await;
    let written = count_keys(&cluster, "/fill/").await;
    assert!(alarm_list(&cluster.members[0].client_url).contains("alarm:NOSPACE"));
    let m2_id = {
        let o = etcdctl(
            &cluster.members[2].client_url,
            &["endpoint", "status", "-w", "json"],
        );
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        format!(
            "{:x}",
            v[0]["Status"]["header"]["member_id"].as_u64().unwrap()
        )
    };

    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("fault-nospace");
    create_bucket(&bucket);
    let (id, rcpt) = age_key();
    let key = write_identity(dir.path(), &id);
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v["manifest"];
    assert_eq!(
        m["alarms"],
        serde_json::json!([{"member": m2_id, "memberName": "m2", "alarm": "NOSPACE"}])
    );
    // A member without an alarm of its own is preferred.
    assert_ne!(m["member"]["name"], "m2");
    assert_eq!(m["snapshot"]["status"]["liveKeys"], written);
    // The operator is told what to do next.
    assert!(
        stderr(&o).contains("etcdctl alarm disarm"),
        "{}",
        stderr(&o)
    );
    restores_as_recorded(&policy, &key, dir.path(), m);
    // The backup did not touch the alarm.
    assert!(alarm_list(&cluster.members[0].client_url).contains("alarm:NOSPACE"));

    // A cluster whose only member is full is backed up from that member.
    let solo = EtcdCluster::start_custom(1, None, &etcd_34(), |_| {
        vec!["--quota-backend-bytes=4000000".to_owned()]
    });
    fill_until_nospace(&solo).await;
    let written = count_keys(&solo, "/fill/").await;
    let policy = write_s3_policy(dir.path(), "solo", &solo.endpoints(), &bucket, &rcpt);
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["manifest"]["member"]["name"], "m0");
    assert_eq!(v["manifest"]["alarms"][0]["alarm"], "NOSPACE");
    assert_eq!(v["manifest"]["snapshot"]["status"]["liveKeys"], written);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_members_are_never_used_and_all_corrupt_is_said() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("fault-corrupt");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let policy = write_s3_policy(dir.path(), "prod", &cluster.endpoints(), &bucket, &rcpt);
    // etcd raises CORRUPT when its consistency check finds a member that disagrees; raise it
    // through the same Alarm API for members 0 and 1.
    let mut c = etcd_client::Client::connect([cluster.members[0].client_url.as_str()], None)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for m in &cluster.members {
        let mut mc = etcd_client::Client::connect([m.client_url.as_str()], None)
            .await
            .unwrap();
        ids.push(mc.status().await.unwrap().header().unwrap().member_id());
    }
    let corrupt = |id: u64| {
        let mut o = etcd_client::AlarmOptions::new();
        o.with_member(id);
        (
            etcd_client::AlarmAction::Activate,
            etcd_client::AlarmType::Corrupt,
            Some(o),
        )
    };
    for &id in &ids[..2] {
        let (a, t, o) = corrupt(id);
        c.alarm(a, t, o).await.unwrap();
    }
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["manifest"]["member"]["name"], "m2");
    assert_eq!(v["manifest"]["alarms"].as_array().unwrap().len(), 2);

    let (a, t, o) = corrupt(ids[2]);
    c.alarm(a, t, o).await.unwrap();
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("every member has a CORRUPT alarm"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s3_keys(&bucket).await.len(), 2, "only the first backup");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_server_killed_mid_upload_leaves_nothing_anywhere() {
    let cluster = EtcdCluster::start(1);
    load_random(&cluster, 200, 100_000).await;
    let mut moto = Moto::start(0);
    let bucket = "fault-s3-dies";
    create_bucket_at(&moto.endpoint(), bucket);
    let dir = tempfile::tempdir().unwrap();
    let (_, rcpt) = age_key();
    let policy = two_destinations(
        dir.path(),
        "p.yaml",
        &cluster.endpoints(),
        &moto.endpoint(),
        bucket,
        &rcpt,
        SLOW,
    );
    let run = Running::start(&["backup", "--policy", policy.to_str().unwrap()]);
    // Past the first 8 MiB part: the upload is under way when the server dies.
    wait_mid_stream(dir.path(), 10 << 20, &[]);
    moto.kill();
    let (code, _, logs) = run.finish();
    assert_eq!(code, Some(6), "{logs}");
    assert!(logs.contains("destination \\\"s3\\\""), "{logs}");
    assert!(
        files_under(&dir.path().join("local")).is_empty(),
        "the local destination holds nothing"
    );
    assert!(files_under(&dir.path().join("spool")).is_empty());
    // The server comes back empty (it kept everything in memory): no object, no manifest.
    let moto = Moto::start(moto.port);
    create_bucket_at(&moto.endpoint(), bucket);
    assert!(s3_keys_at(&moto.endpoint(), bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_leaves_no_backup_and_the_next_run_sweeps_only_dead_leftovers() {
    let cluster = EtcdCluster::start(3);
    load_random(&cluster, 200, 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket_name("fault-sigkill");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let mk = |file: &str, extra: &str| {
        two_destinations(
            dir.path(),
            file,
            &cluster.endpoints(),
            &s3_endpoint(),
            &bucket,
            &rcpt,
            extra,
        )
    };
    let slow = mk("slow.yaml", SLOW);
    let fast = mk("fast.yaml", "  compression: {level: 1}\n");

    // Run A is killed outright mid-stream; run C of the same policy keeps going.
    let a = Running::start(&["backup", "--policy", slow.to_str().unwrap()]);
    let a_spool = wait_mid_stream(dir.path(), 1 << 20, &[]);
    let c = Running::start(&["backup", "--policy", slow.to_str().unwrap(), "--json"]);
    let c_spool = wait_mid_stream(dir.path(), 1 << 20, std::slice::from_ref(&a_spool));
    a.kill();
    let a_size = std::fs::metadata(dir.path().join("spool").join(&a_spool))
        .unwrap()
        .len();
    let a_lock = a_spool.replace(".db.part", ".lock");
    assert_eq!(spool_entries(dir.path(), ".lock").len(), 2);
    assert!(spool_entries(dir.path(), ".lock").contains(&a_lock));
    // Each run's upload to the local destination is a staging file (`KEY#N`) until it
    // completes: A's stays behind, C's is in progress.
    let run_of = |spool: &str| {
        spool
            .trim_start_matches("prod-")
            .trim_end_matches(".db.part")
            .to_owned()
    };
    let staged = |run: &str| {
        files_under(&dir.path().join("local"))
            .into_iter()
            .filter(|f| f.starts_with(&format!("prod/{run}.")) && f.contains('#'))
            .collect::<Vec<_>>()
    };
    let (a_run, c_run) = (run_of(&a_spool), run_of(&c_spool));
    let a_staged = staged(&a_run);
    assert_eq!(
        a_staged.len(),
        1,
        "{:?}",
        files_under(&dir.path().join("local"))
    );
    assert_eq!(staged(&c_run).len(), 1);

    // Nothing of A is visible: no manifest anywhere, and list shows no backup.
    assert!(
        s3_keys(&bucket)
            .await
            .iter()
            .all(|k| !k.ends_with(".manifest.json"))
    );
    assert!(
        files_under(&dir.path().join("local"))
            .iter()
            .all(|k| !k.ends_with(".manifest.json"))
    );
    let o = lifeboat(&["list", "--policy", fast.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[]");

    // The next run (B) commits and removes A's spool file, reporting it with its size, and
    // leaves C's alone: C is alive, merely frozen (SIGSTOP) while B runs.
    signal(&c.child, "STOP");
    let o = lifeboat(&["backup", "--policy", fast.to_str().unwrap(), "--json"]);
    signal(&c.child, "CONT");
    assert!(o.status.success(), "{}", stderr(&o));
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let removed = b["removedLeftovers"].as_array().unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed[0]["path"].as_str().unwrap().ends_with(&a_spool));
    assert!(removed[0]["bytes"].as_u64().unwrap() >= a_size);
    assert_eq!(removed[0]["what"], "spool file of a backup");
    assert!(removed[1]["path"].as_str().unwrap().ends_with(&a_staged[0]));
    assert_eq!(removed[1]["what"], "partial upload at a local destination");
    assert_eq!(spool_entries(dir.path(), ".db.part"), vec![c_spool.clone()]);
    assert!(!spool_entries(dir.path(), ".lock").contains(&a_lock));
    assert!(staged(&a_run).is_empty());
    assert_eq!(staged(&c_run).len(), 1, "a live run's upload is kept");

    let (code, out, logs) = c.finish();
    assert_eq!(code, Some(0), "{logs}");
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["removedLeftovers"], serde_json::json!([]));
    assert!(files_under(&dir.path().join("spool")).is_empty());
    assert!(
        files_under(&dir.path().join("local"))
            .iter()
            .all(|f| !f.contains('#'))
    );
    let o = lifeboat(&["list", "--policy", fast.to_str().unwrap(), "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Mounted(PathBuf);

impl Mounted {
    /// Mount a tmpfs of `size` at `dir`; `None` (with why) when this process may not.
    fn tmpfs(dir: &Path, size: &str) -> Result<Self, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(stderr(&o));
        }
        Ok(Mounted(dir.to_owned()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_filesystem_fails_the_run_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let _mounted = match Mounted::tmpfs(&spool, "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "skipped: a_full_spool_filesystem_fails_the_run_and_leaves_nothing needs to mount \
                 a 2 MiB tmpfs (run the tests as root): {why}"
            );
            return;
        }
    };
    let cluster = EtcdCluster::start(1);
    load_random(&cluster, 60, 100_000).await;
    let bucket = bucket_name("fault-full");
    create_bucket(&bucket);
    let (_, rcpt) = age_key();
    let policy = two_destinations(
        dir.path(),
        "p.yaml",
        &cluster.endpoints(),
        &s3_endpoint(),
        &bucket,
        &rcpt,
        "",
    );
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("spool") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(s3_keys(&bucket).await.is_empty());
    assert!(files_under(&dir.path().join("local")).is_empty());
    assert!(files_under(&spool).is_empty(), "{:?}", files_under(&spool));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_retries_inside_the_slot_but_not_what_a_retry_cannot_fix() {
    let cluster = EtcdCluster::start(1);
    let ep = cluster.members[0].client_url.clone();
    cluster.load("/k/", 20, 100).await;
    etcdctl(&ep, &["user", "add", "root:right-pass"]);
    etcdctl(&ep, &["auth", "enable"]);
    let dir = tempfile::tempdir().unwrap();
    let (_, rcpt) = age_key();
    // Nothing listens on this port yet: the first run cannot reach its destination.
    let s3_port = free_port();
    let s3 = format!("http://127.0.0.1:{s3_port}");
    // Once a year (1 January), so the next scheduled run is far away; the daemon catches up
    // at start because there is no backup yet.
    let schedule = "  schedule: {cron: \"0 0 1 1 *\", retry: {attempts: 3, initialBackoff: 6s, \
                    maxBackoff: 6s}}\n";
    let write = |name: &str, password: &str| {
        let pw = dir.path().join(format!("{name}.pw"));
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        let p = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &p,
            format!(
                "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  \
                 cluster: {{endpoints: [\"{ep}\"], auth: {{username: root, passwordFile: {}}}, \
                 selection: {{statusTimeout: 2s, waitForLeader: 1s}}}}\n{schedule}  snapshot: \
                 {{spoolDir: {}}}\n  encryption: {{recipients: [\"{rcpt}\"]}}\n  destinations:\n    \
                 - {{name: s3, url: \"s3://retry/etcd\", options: {{endpoint: \"{s3}\", region: \
                 us-east-1, allowHttp: true, retries: 0, connectTimeout: 1s}}}}\n",
                pw.display(),
                dir.path().join("spool").display()
            ),
        )
        .unwrap();
        p
    };
    let flaky = write("flaky", "right-pass");
    let badauth = write("badauth", "wrong-pass");
    let d = Daemon::start(
        &flaky,
        &[
            "--policy",
            badauth.to_str().unwrap(),
            "--max-concurrent",
            "2",
        ],
    );
    let flaky_l = [("policy", "flaky")];
    let bad_l = [("policy", "badauth")];
    wait_for("the first run to fail", Duration::from_secs(30), || {
        d.metric(
            "lifeboat_failures_total",
            &[("policy", "flaky"), ("stage", "upload")],
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    // The destination comes back before the retry (3-6 s after the failure).
    let moto = Moto::start(s3_port);
    create_bucket_at(&moto.endpoint(), "retry");
    wait_for("the retry to commit", Duration::from_secs(30), || {
        // 0 until a backup commits (a policy that never succeeded reads as stale).
        d.metric("lifeboat_last_success_timestamp_seconds", &flaky_l)
            .is_some_and(|t| t > 0.0)
    });
    assert_eq!(d.metric("lifeboat_runs_total", &flaky_l), Some(2.0));
    assert_eq!(
        d.metric(
            "lifeboat_failures_total",
            &[("policy", "flaky"), ("stage", "upload")]
        ),
        Some(1.0)
    );
    let keys = s3_keys_at(&moto.endpoint(), "retry").await;
    assert_eq!(
        keys.iter()
            .filter(|k| k.ends_with(".manifest.json") && k.contains("/flaky/"))
            .count(),
        1,
        "{keys:?}"
    );

    // Rejected credentials are never retried: one run, one failure, however long we wait.
    assert_eq!(d.metric("lifeboat_runs_total", &bad_l), Some(1.0));
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(d.metric("lifeboat_runs_total", &bad_l), Some(1.0));
    assert_eq!(
        d.metric(
            "lifeboat_failures_total",
            &[("policy", "badauth"), ("stage", "snapshot")]
        ),
        Some(1.0)
    );
    assert_eq!(
        d.metric("lifeboat_last_success_timestamp_seconds", &bad_l),
        Some(0.0),
        "never succeeded: stale, not absent"
    );
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    assert!(files_under(&dir.path().join("spool")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_shot_backup_retries_in_its_slot_unless_told_not_to() {
    let cluster = EtcdCluster::start(1);
    cluster.load("/k/", 20, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, rcpt) = age_key();
    let s3_port = free_port();
    let s3 = format!(
        "{{name: s3, url: \"s3://oneshot/etcd\", options: {{endpoint: \
                      \"http://127.0.0.1:{s3_port}\", region: us-east-1, allowHttp: true, \
                      retries: 0}}}}"
    );
    let policy = write_policy(dir.path(), "prod", &cluster.endpoints(), &s3, &rcpt);
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        "  schedule: {cron: \"0 0 1 1 *\", retry: {attempts: 2, initialBackoff: 4s, maxBackoff: \
         4s}}\n",
    );
    std::fs::write(&policy, text).unwrap();

    // --no-retry: one run, exit 6.
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--no-retry"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(!stderr(&o).contains("retrying"), "{}", stderr(&o));

    // With retries the destination that comes back in time gets the backup.
    let run = Running::start(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    run.wait_log("retrying in the same slot", Duration::from_secs(30));
    let moto = Moto::start(s3_port);
    create_bucket_at(&moto.endpoint(), "oneshot");
    let (code, out, logs) = run.finish();
    assert_eq!(code, Some(0), "{logs}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let earlier = v["earlierRuns"].as_array().unwrap();
    assert_eq!(earlier.len(), 1, "{v}");
    assert_eq!(earlier[0]["exitCode"], 6);
    assert_eq!(s3_keys_at(&moto.endpoint(), "oneshot").await.len(), 2);

    // A policy error is never retried: exit 3 at once.
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        &format!("recipients: [\"{rcpt}\"]"),
        &format!("recipientsFile: {}", dir.path().join("missing").display()),
    );
    std::fs::write(&broken, text).unwrap();
    let o = lifeboat(&["backup", "--policy", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!stderr(&o).contains("retrying"), "{}", stderr(&o));
}

/// Every object key under `etcd/` of a bucket on the shared test server.
async fn s3_keys(bucket: &str) -> Vec<String> {
    s3_keys_at(&s3_endpoint(), bucket).await
}
