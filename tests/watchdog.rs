//! The off-cluster watchdog against real etcd 3.4 members on loopback: `lifeboat status` and the
//! daemon's probe metrics agree with `etcdctl endpoint status`, follow a NOSPACE alarm (with the
//! recovery advice) and a SIGKILLed member, and say "down" when quorum is gone.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SMALL_QUOTA: u64 = 6_000_000;

fn policy(dir: &Path, cluster: &EtcdCluster, bucket: &str) -> PathBuf {
    let (_, rcpt) = age_key();
    let p = write_s3_policy(dir, "prod", &cluster.endpoints(), bucket, &rcpt);
    let text = std::fs::read_to_string(&p).unwrap();
    // The cluster section's quota, and a probe every second; the schedule never fires here.
    let text = text.replace(
        "selection: {",
        &format!("quotaBackendBytes: {SMALL_QUOTA}, selection: {{"),
    );
    assert!(text.contains("quotaBackendBytes"), "{text}");
    std::fs::write(
        &p,
        format!("{text}  schedule: {{cron: \"0 0 1 1 *\"}}\n  monitor: {{interval: 1s}}\n"),
    )
    .unwrap();
    p
}

fn status(policy: &Path) -> (i32, serde_json::Value) {
    let o = lifeboat(&["status", "--policy", policy.to_str().unwrap(), "--json"]);
    let v = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap(), v)
}

fn member<'a>(v: &'a serde_json::Value, endpoint: &str) -> &'a serde_json::Value {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["endpoint"] == endpoint)
        .unwrap()
}

fn topics(v: &serde_json::Value) -> Vec<String> {
    v["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["topic"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_probe_metrics_follow_nospace_and_dead_members_and_a_missing_bucket() {
    // m2's backend quota is small: it fills first and raises NOSPACE for itself.
    let quota = |i: usize| {
        if i == 2 {
            vec![format!("--quota-backend-bytes={SMALL_QUOTA}")]
        } else {
            Vec::new()
        }
    };
    let mut cluster = EtcdCluster::start_custom(3, None, &etcd_34(), quota);
    cluster.load("/k/", 200, 1000).await;
    // etcd commits its backend in batches (every 100 ms): let the file settle before comparing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    // A bucket that does not exist: the daemon's catch-up backup fails, so the policy has never
    // succeeded and its destination is unreachable.
    let bucket = bucket_name("watchdog-missing");
    let policy = policy(dir.path(), &cluster, &bucket);
    let eps = cluster.endpoints();

    // Healthy: exit 0, nothing to advise, and the sizes etcdctl reports.
    let (code, v) = status(&policy);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["verdict"], "healthy");
    assert!(topics(&v).is_empty(), "{v:#}");
    for ep in &eps {
        let theirs: serde_json::Value =
            serde_json::from_str(&etcdctl(ep, &["endpoint", "status", "-w", "json"])).unwrap();
        let theirs = &theirs[0]["Status"];
        let ours = member(&v, ep);
        assert_eq!(ours["dbSize"], theirs["dbSize"], "{ep}");
        assert_eq!(ours["raftTerm"], theirs["raftTerm"], "{ep}");
        assert_eq!(
            ours["isLeader"],
            theirs["leader"] == theirs["header"]["member_id"]
        );
    }
    assert_eq!(v["quotaBackendBytes"], SMALL_QUOTA);

    let d = Daemon::start(&policy, &[]);
    let up = |ep: &str| {
        d.metric(
            "lifeboat_etcd_member_up",
            &[("policy", "prod"), ("endpoint", ep)],
        )
    };
    let alarm = |ep: &str, kind: &str| {
        d.metric(
            "lifeboat_etcd_alarm",
            &[("policy", "prod"), ("endpoint", ep), ("alarm", kind)],
        )
    };
    wait_for("the first probe", Duration::from_secs(20), || {
        up(&eps[0]) == Some(1.0)
    });
    for ep in &eps {
        assert_eq!(
            alarm(ep, "NOSPACE"),
            Some(0.0),
            "exported as 0 before any alarm"
        );
        assert_eq!(alarm(ep, "CORRUPT"), Some(0.0));
        let size = d
            .metric(
                "lifeboat_etcd_member_db_size_bytes",
                &[("policy", "prod"), ("endpoint", ep)],
            )
            .unwrap();
        assert!(size > 0.0, "{ep}: {size}");
    }
    assert_eq!(
        d.metric("lifeboat_etcd_quota_backend_bytes", &[("policy", "prod")]),
        Some(SMALL_QUOTA as f64)
    );
    assert!(
        d.metric("lifeboat_etcd_raft_term", &[("policy", "prod")])
            .unwrap()
            >= 2.0
    );
    let leaders: f64 = eps
        .iter()
        .map(|ep| {
            d.metric(
                "lifeboat_etcd_member_is_leader",
                &[("policy", "prod"), ("endpoint", ep)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(leaders, 1.0);
    // A policy that never backed up reads as stale (0), not as an absent series.
    wait_for("the failed catch-up run", Duration::from_secs(30), || {
        d.metric("lifeboat_runs_total", &[("policy", "prod")]) >= Some(1.0)
    });
    assert_eq!(
        d.metric(
            "lifeboat_last_success_timestamp_seconds",
            &[("policy", "prod")]
        ),
        Some(0.0)
    );
    assert_eq!(
        d.metric("lifeboat_schedule_interval_seconds", &[("policy", "prod")]),
        Some(366.0 * 86400.0),
        "yearly, longest gap over a leap year"
    );
    assert_eq!(
        d.metric(
            "lifeboat_destination_up",
            &[("policy", "prod"), ("destination", "s3")]
        ),
        Some(0.0),
        "the bucket does not exist"
    );

    // NOSPACE on m2: its gauge turns 1, the others stay 0; status degrades with the steps.
    fill_until_nospace(&cluster).await;
    wait_for("the NOSPACE gauge", Duration::from_secs(20), || {
        alarm(&eps[2], "NOSPACE") == Some(1.0)
    });
    assert_eq!(alarm(&eps[0], "NOSPACE"), Some(0.0));
    assert_eq!(alarm(&eps[1], "NOSPACE"), Some(0.0));
    let (code, v) = status(&policy);
    assert_eq!(code, 10, "{v:#}");
    assert_eq!(v["verdict"], "degraded");
    assert_eq!(
        member(&v, &eps[2])["alarms"],
        serde_json::json!(["NOSPACE"])
    );
    let nospace = v["advice"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["topic"] == "nospace")
        .unwrap_or_else(|| panic!("no NOSPACE advice: {v:#}"));
    assert_eq!(nospace["severity"], "critical");
    let text = nospace["text"].as_str().unwrap();
    for step in ["lifeboat backup", "compaction", "defrag", "alarm disarm"] {
        assert!(text.contains(step), "{step}: {text}");
    }
    // The quota line is the policy's; m2 is at (or over) it.
    assert!(topics(&v).contains(&"quota".to_owned()), "{v:#}");
    // Read-only: the alarm is still raised after status and the probes.
    assert!(etcdctl(&eps[0], &["alarm", "list"]).contains("NOSPACE"));

    // One member SIGKILLed: down in the gauges (its sizes dropped), degraded with its name.
    cluster.stop(0);
    wait_for("member 0 down", Duration::from_secs(20), || {
        up(&eps[0]) == Some(0.0)
    });
    assert_eq!(
        d.metric(
            "lifeboat_etcd_member_db_size_bytes",
            &[("policy", "prod"), ("endpoint", &eps[0])]
        ),
        None,
        "no stale size for a member that does not answer"
    );
    let (code, v) = status(&policy);
    assert_eq!(code, 10, "{v:#}");
    assert_eq!(member(&v, &eps[0])["up"], false);
    assert!(topics(&v).contains(&"member-down".to_owned()), "{v:#}");

    // A second one: no quorum, down.
    cluster.stop(1);
    let (code, v) = status(&policy);
    assert_eq!(code, 4, "{v:#}");
    assert_eq!(v["verdict"], "down");
    assert_eq!(topics(&v)[0], "quorum");
}
