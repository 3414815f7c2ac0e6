use super::*;
use crate::etcd::{Alarm, ProbeError};

const MIB: i64 = 1 << 20;

fn member(id: u64, leader: u64, size: i64, in_use: i64, index: u64) -> MemberStatus {
    MemberStatus {
        member_id: id,
        name: format!("m{id}"),
        cluster_id: 7,
        leader,
        is_learner: false,
        raft_index: index,
        raft_applied_index: index,
        raft_term: 3,
        revision: 100,
        db_size: size,
        db_size_in_use: in_use,
        db_size_quota: 0,
        version: "3.5.1".into(),
        errors: vec![],
        alarms: vec![],
        alarms_confirmed: true,
    }
}

fn up(ep: &str, s: MemberStatus) -> Probe {
    Probe {
        endpoint: ep.into(),
        outcome: Ok(s),
    }
}

fn down(ep: &str) -> Probe {
    Probe {
        endpoint: ep.into(),
        outcome: Err(ProbeError {
            message: "connection refused".into(),
            permanent: false,
        }),
    }
}

fn healthy_three() -> Vec<Probe> {
    (1..=3)
        .map(|i| {
            up(
                &format!("http://e{i}"),
                member(i, 1, 50 * MIB, 45 * MIB, 1000),
            )
        })
        .collect()
}

fn topics(h: &Health) -> Vec<&'static str> {
    h.advice.iter().map(|a| a.topic).collect()
}

#[test]
fn a_healthy_cluster_has_nothing_to_say() {
    let h = assess(&healthy_three(), DEFAULT_QUOTA);
    assert_eq!(h.verdict, Verdict::Healthy);
    assert!(h.advice.is_empty(), "{:?}", h.advice);
    assert_eq!(h.raft_term, 3);
    assert!(h.members[0].is_leader() && !h.members[1].is_leader());
}

#[test]
fn one_member_down_degrades_two_of_three_is_down() {
    let mut p = healthy_three();
    p[2] = down("http://e3");
    let h = assess(&p, DEFAULT_QUOTA);
    assert_eq!(h.verdict, Verdict::Degraded);
    assert_eq!(topics(&h), ["member-down"]);
    assert!(!h.members[2].up() && h.members[2].label() == "http://e3");
    p[1] = down("http://e2");
    let h = assess(&p, DEFAULT_QUOTA);
    assert_eq!(h.verdict, Verdict::Down);
    assert_eq!(h.advice[0].topic, "quorum");
    let h = assess(&[down("a"), down("b")], DEFAULT_QUOTA);
    assert_eq!(h.verdict, Verdict::Down);
    assert_eq!(h.verdict.exit_code(), 4);
}

#[test]
fn no_leader_is_down() {
    let p: Vec<Probe> = (1..=3)
        .map(|i| up(&format!("e{i}"), member(i, 0, MIB, MIB, 10)))
        .collect();
    let h = assess(&p, DEFAULT_QUOTA);
    assert_eq!(h.verdict, Verdict::Down);
    assert_eq!(topics(&h), ["no-leader"]);
}

#[test]
fn nospace_gives_the_recovery_steps_in_order_and_is_attributed() {
    let mut p = healthy_three();
    // Member 3 knows of the alarm raised for member 2; the others do not (yet).
    if let Ok(s) = &mut p[2].outcome {
        s.alarms = vec![Alarm {
            member_id: 2,
            kind: NOSPACE.into(),
        }];
    }
    let h = assess(&p, DEFAULT_QUOTA);
    assert_eq!(h.verdict, Verdict::Degraded);
    assert_eq!(h.members[1].alarms, [NOSPACE]);
    assert!(h.members[2].alarms.is_empty());
    let a = &h.advice[0];
    assert_eq!((a.topic, a.severity), ("nospace", Severity::Critical));
    let steps: Vec<usize> = ["lifeboat backup", "compaction", "defrag", "alarm disarm"]
        .iter()
        .map(|s| {
            a.text
                .find(s)
                .unwrap_or_else(|| panic!("{s} missing: {}", a.text))
        })
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "order: {}", a.text);
}

#[test]
fn defragmentation_lists_followers_before_the_leader() {
    let p: Vec<Probe> = (1..=3)
        .map(|i| {
            up(
                &format!("http://e{i}"),
                member(i, 1, 1000 * MIB, 300 * MIB, 50),
            )
        })
        .collect();
    let h = assess(&p, DEFAULT_QUOTA);
    assert_eq!(topics(&h), ["defragment"]);
    let t = &h.advice[0].text;
    let pos = |ep: &str| t.find(&format!("--endpoints={ep} defrag")).unwrap();
    assert!(
        pos("http://e2") < pos("http://e1") && pos("http://e3") < pos("http://e1"),
        "{t}"
    );
    assert!(
        t.contains("m1, leader: 300.0 MiB of 1000.0 MiB in use (30 %)"),
        "{t}"
    );
    // Small files are not worth it, however fragmented.
    let p: Vec<Probe> = (1..=3)
        .map(|i| up(&format!("e{i}"), member(i, 1, 150 * MIB, 60 * MIB, 50)))
        .collect();
    assert!(assess(&p, DEFAULT_QUOTA).advice.is_empty());
}

#[test]
fn quota_warns_at_80_and_is_critical_at_95_percent() {
    let quota = 1000 * MIB as u64;
    let at = |size: i64| {
        let p: Vec<Probe> = (1..=3)
            .map(|i| up(&format!("e{i}"), member(i, 1, size, size, 50)))
            .collect();
        assess(&p, quota)
    };
    assert!(at(790 * MIB).advice.is_empty());
    assert_eq!(at(850 * MIB).advice[0].severity, Severity::Warning);
    assert_eq!(at(960 * MIB).advice[0].severity, Severity::Critical);
    assert_eq!(at(960 * MIB).advice[0].topic, "quota");
}

#[test]
fn a_quota_the_members_report_wins_over_the_policy() {
    let mut p = healthy_three();
    assert!(!assess(&p, DEFAULT_QUOTA).quota_reported);
    for probe in &mut p {
        if let Ok(s) = &mut probe.outcome {
            s.db_size_quota = 60 * MIB;
        }
    }
    let h = assess(&p, DEFAULT_QUOTA);
    assert!(h.quota_reported);
    assert_eq!(h.quota, 60 << 20);
    // 50 MiB of 60 MiB: over 80 %.
    assert_eq!(topics(&h), ["quota"]);
}

#[test]
fn lagging_members_are_named() {
    let mut p = healthy_three();
    if let Ok(s) = &mut p[1].outcome {
        s.raft_index = 10;
        s.raft_applied_index = 10;
    }
    if let Ok(s) = &mut p[2].outcome {
        s.raft_applied_index = 0;
        s.raft_index = 7000;
    }
    let h = assess(&p, DEFAULT_QUOTA);
    let lag: Vec<&Advice> = h.advice.iter().filter(|a| a.topic == "lagging").collect();
    assert_eq!(lag.len(), 3, "{:?}", h.advice);
    assert_eq!(lag[0].severity, Severity::Critical);
    assert!(lag[0].text.starts_with("m3"), "{}", lag[0].text);
}

#[test]
fn verdicts_order_and_exit_codes() {
    assert!(Verdict::Healthy < Verdict::Degraded && Verdict::Degraded < Verdict::Down);
    assert_eq!(
        [Verdict::Healthy, Verdict::Degraded, Verdict::Down].map(Verdict::exit_code),
        [0, 10, 4]
    );
}
