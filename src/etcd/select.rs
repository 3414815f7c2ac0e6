//! Choosing the member to snapshot. Pure: takes probes, returns candidates in order of preference
//! and one reason for every member that was passed over, saying whether waiting could change it.

use super::{Alarm, CORRUPT, MemberStatus, NOSPACE, Probe};
use crate::policy::Prefer;
use std::collections::HashMap;

/// Why one endpoint does not qualify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The endpoint.
    pub endpoint: String,
    /// What is wrong with it.
    pub reason: String,
    /// Waiting a little may fix it: no leader (an election), unreachable (a restart), lagging.
    pub transient: bool,
    /// The member has a CORRUPT alarm.
    pub corrupt: bool,
}

/// Outcome of ranking the probed members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    /// Indexes into the probes, best first.
    pub candidates: Vec<usize>,
    /// Every endpoint that does not qualify, with why.
    pub rejected: Vec<Rejection>,
    /// Every alarm any member of the cluster reported, sorted.
    pub alarms: Vec<Alarm>,
}

impl Ranking {
    /// No member qualifies, but waiting may change that: some were passed over only for
    /// transient reasons.
    pub fn worth_waiting(&self) -> bool {
        self.candidates.is_empty() && self.rejected.iter().any(|r| r.transient)
    }

    /// No member qualifies and every one has a CORRUPT alarm.
    pub fn all_corrupt(&self) -> bool {
        self.candidates.is_empty()
            && !self.rejected.is_empty()
            && self.rejected.iter().all(|r| r.corrupt)
    }

    /// No member qualifies and no retry can change that (credentials or certificates refused,
    /// CORRUPT alarms, another cluster).
    pub fn hopeless(&self) -> bool {
        self.candidates.is_empty() && !self.rejected.iter().any(|r| r.transient)
    }
}

/// How much a member's alarms count against it: members without alarms first, then those whose
/// alarms could not be confirmed (no alarm list through raft), then those with alarms of their
/// own (NOSPACE: still served, but the member is under stress).
fn alarm_rank(s: &MemberStatus) -> u8 {
    if s.own_alarms().next().is_some() {
        2
    } else if !s.alarms_confirmed {
        1
    } else {
        0
    }
}

/// Rank members: skip unreachable ones, members of another cluster, duplicates, learners, members
/// with no leader, errors or a CORRUPT alarm, and members lagging the leader by more than
/// `max_lag` applied entries. A NOSPACE alarm does not disqualify: etcd still serves snapshots,
/// and that is when one is needed most. Order by alarms, then `prefer`, then highest applied
/// index.
pub fn rank(probes: &[Probe], prefer: Prefer, max_lag: u64) -> Ranking {
    let mut rejected = Vec::new();
    let reject = |rejected: &mut Vec<Rejection>, endpoint: &str, reason: String, transient| {
        rejected.push(Rejection {
            endpoint: endpoint.to_owned(),
            reason,
            transient,
            corrupt: false,
        });
    };
    let reachable: Vec<(usize, &MemberStatus)> = probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.outcome {
            Ok(s) => Some((i, s)),
            Err(e) => {
                let reason = if e.permanent {
                    format!("refused us: {e}")
                } else {
                    format!("unreachable: {e}")
                };
                reject(&mut rejected, &p.endpoint, reason, !e.permanent);
                None
            }
        })
        .collect();

    // The cluster most endpoints belong to; a stray endpoint of another cluster must never be
    // backed up under this policy's name.
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for (_, s) in &reachable {
        *votes.entry(s.cluster_id).or_default() += 1;
    }
    let cluster = votes
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
        .map(|(id, _)| *id);

    let mut same_cluster: Vec<(usize, &MemberStatus)> = Vec::new();
    for (i, s) in reachable {
        if Some(s.cluster_id) == cluster {
            same_cluster.push((i, s));
        } else {
            reject(
                &mut rejected,
                &probes[i].endpoint,
                format!(
                    "belongs to cluster {:x}, not {:x} like the other endpoints",
                    s.cluster_id,
                    cluster.unwrap_or_default()
                ),
                false,
            );
        }
    }

    let mut alarms: Vec<Alarm> = same_cluster
        .iter()
        .flat_map(|(_, s)| s.alarms.iter().cloned())
        .collect();
    alarms.sort();
    alarms.dedup();

    // Reference for lag: the leader's applied index if we reached it, else the best we saw.
    let leader_id = same_cluster
        .iter()
        .map(|(_, s)| s.leader)
        .filter(|l| *l != 0)
        .max_by_key(|l| same_cluster.iter().filter(|(_, s)| s.leader == *l).count());
    let reference = same_cluster
        .iter()
        .find(|(_, s)| Some(s.member_id) == leader_id)
        .map(|(_, s)| s.raft_applied_index)
        .or_else(|| same_cluster.iter().map(|(_, s)| s.raft_applied_index).max())
        .unwrap_or(0);

    let mut seen: HashMap<u64, &str> = HashMap::new();
    let mut ok: Vec<(usize, &MemberStatus)> = Vec::new();
    for &(i, s) in &same_cluster {
        let ep = &probes[i].endpoint;
        // A CORRUPT alarm raised for this member in any member's view rules it out.
        let corrupt = alarms
            .iter()
            .any(|a| a.member_id == s.member_id && a.kind == CORRUPT);
        let reason = if let Some(first) = seen.get(&s.member_id) {
            Some((format!("same member {:x} as {first}", s.member_id), false))
        } else if corrupt {
            Some((
                "has a CORRUPT alarm: etcd found its data inconsistent with the cluster's, so it \
                 is never snapshotted"
                    .to_owned(),
                false,
            ))
        } else if s.is_learner {
            Some(("is a learner, not a voting member".to_owned(), false))
        } else if s.leader == 0 {
            Some((
                "has no leader (an election, or lost quorum)".to_owned(),
                true,
            ))
        } else if !s.errors.is_empty() {
            Some((format!("reports errors: {}", s.errors.join("; ")), false))
        } else {
            let lag = reference.saturating_sub(s.raft_applied_index);
            (lag > max_lag).then(|| {
                (
                    format!(
                        "lagging: raft applied index {} is {lag} behind the leader's {reference} \
                         (maxRaftLag {max_lag})",
                        s.raft_applied_index
                    ),
                    true,
                )
            })
        };
        seen.entry(s.member_id).or_insert(ep);
        match reason {
            Some((reason, transient)) => rejected.push(Rejection {
                endpoint: ep.clone(),
                reason,
                transient,
                corrupt,
            }),
            None => ok.push((i, s)),
        }
    }

    let role = |s: &MemberStatus| -> u8 {
        let is_leader = s.member_id == s.leader;
        match prefer {
            Prefer::Follower => u8::from(is_leader),
            Prefer::Leader => u8::from(!is_leader),
            Prefer::Any => 0,
        }
    };
    ok.sort_by_key(|(i, s)| {
        (
            alarm_rank(s),
            role(s),
            std::cmp::Reverse(s.raft_applied_index),
            *i,
        )
    });
    Ranking {
        candidates: ok.into_iter().map(|(i, _)| i).collect(),
        rejected,
        alarms,
    }
}

/// What an operator should do about an alarm, in one paragraph. Pure.
pub fn alarm_advice(kind: &str) -> &'static str {
    match kind {
        NOSPACE => {
            "the cluster refuses every write until the alarm is cleared. This backup goes ahead \
             (etcd still serves snapshots); keep it. Then free space: compact to the current \
             revision (`etcdctl compact <rev>`), defragment one member at a time, followers \
             first and the leader last (`etcdctl --endpoints <member> defrag`), raise \
             --quota-backend-bytes if the data really grew, and clear the alarm with `etcdctl \
             alarm disarm`"
        }
        CORRUPT => {
            "etcd found a member whose data disagrees with the rest of the cluster; that member \
             is never backed up. Stop it, remove it from the cluster and add it back with an \
             empty data directory (it resyncs from the leader), then `etcdctl alarm disarm`"
        }
        _ => "see etcd's maintenance guide, then `etcdctl alarm disarm` once it is resolved",
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProbeError;
    use super::*;

    fn member(id: u64, leader: u64, applied: u64) -> MemberStatus {
        MemberStatus {
            member_id: id,
            name: format!("m{id}"),
            cluster_id: 7,
            leader,
            is_learner: false,
            raft_index: applied,
            raft_applied_index: applied,
            raft_term: 2,
            revision: 100,
            db_size: 4096,
            db_size_in_use: 4096,
            db_size_quota: 0,
            version: "3.4.23".into(),
            errors: vec![],
            alarms: vec![],
            alarms_confirmed: true,
        }
    }

    fn alarm(member_id: u64, kind: &str) -> Alarm {
        Alarm {
            member_id,
            kind: kind.into(),
        }
    }

    fn probe(ep: &str, s: Result<MemberStatus, &str>) -> Probe {
        Probe {
            endpoint: ep.into(),
            outcome: s.map_err(|m| ProbeError {
                message: m.to_owned(),
                permanent: false,
            }),
        }
    }

    fn reasons(r: &Ranking) -> HashMap<String, Rejection> {
        r.rejected
            .iter()
            .map(|x| (x.endpoint.clone(), x.clone()))
            .collect()
    }

    #[test]
    fn prefers_the_most_current_follower_then_the_leader() {
        let probes = vec![
            probe("a", Ok(member(1, 1, 500))),
            probe("b", Ok(member(2, 1, 490))),
            probe("c", Ok(member(3, 1, 499))),
        ];
        let r = rank(&probes, Prefer::Follower, 1000);
        assert_eq!(r.candidates, vec![2, 1, 0]);
        assert!(r.rejected.is_empty());
        assert_eq!(
            rank(&probes, Prefer::Leader, 1000).candidates,
            vec![0, 2, 1]
        );
        assert_eq!(rank(&probes, Prefer::Any, 1000).candidates, vec![0, 2, 1]);
    }

    #[test]
    fn every_skipped_member_gets_a_reason() {
        let mut learner = member(4, 1, 500);
        learner.is_learner = true;
        let mut erring = member(6, 1, 500);
        erring.errors = vec!["disk slow".into()];
        let mut foreign = member(9, 9, 500);
        foreign.cluster_id = 8;
        let mut corrupt = member(5, 1, 500);
        corrupt.alarms = vec![alarm(5, CORRUPT)];
        let mut refused = probe("refused", Err("gRPC Unauthenticated"));
        if let Err(e) = &mut refused.outcome {
            e.permanent = true;
        }
        let probes = vec![
            probe("leader", Ok(member(1, 1, 5000))),
            probe("down", Err("connection refused")),
            probe("lagging", Ok(member(2, 1, 3999))),
            probe("learner", Ok(learner)),
            probe("corrupt", Ok(corrupt)),
            probe("erring", Ok(erring)),
            probe("noleader", Ok(member(3, 0, 5000))),
            probe("foreign", Ok(foreign)),
            probe("dup", Ok(member(1, 1, 5000))),
            refused,
        ];
        let r = rank(&probes, Prefer::Follower, 1000);
        assert_eq!(r.candidates, vec![0]);
        let why = reasons(&r);
        assert_eq!(why.len(), 9);
        let check = |ep: &str, needle: &str, transient: bool| {
            let x = &why[ep];
            assert!(x.reason.contains(needle), "{ep}: {}", x.reason);
            assert_eq!(x.transient, transient, "{ep}: {}", x.reason);
            assert_eq!(x.corrupt, ep == "corrupt", "{ep}");
        };
        check("down", "connection refused", true);
        check("lagging", "1001 behind", true);
        check("noleader", "no leader", true);
        check("learner", "learner", false);
        check("corrupt", "CORRUPT", false);
        check("erring", "disk slow", false);
        check("foreign", "cluster 8", false);
        check("dup", "same member 1 as leader", false);
        check("refused", "refused us", false);
        assert_eq!(r.alarms, vec![alarm(5, CORRUPT)]);
    }

    #[test]
    fn a_nospace_member_stays_a_candidate_after_the_others() {
        // Every member sees the cluster's alarms; only member 2's own alarm counts against it.
        let all = vec![alarm(2, NOSPACE)];
        let mut a = member(1, 1, 500);
        a.alarms = all.clone();
        let mut b = member(2, 1, 500);
        b.alarms = all.clone();
        let mut c = member(3, 1, 400);
        c.alarms = all.clone();
        let probes = vec![
            probe("a", Ok(a)),
            probe("b", Ok(b.clone())),
            probe("c", Ok(c)),
        ];
        let r = rank(&probes, Prefer::Follower, 1000);
        // c (a follower without an own alarm) first even with a lower index, then the leader,
        // then b.
        assert_eq!(r.candidates, vec![2, 0, 1]);
        assert_eq!(r.alarms, all);
        // A cluster whose only member is full is still backed up.
        let mut only = member(2, 2, 500);
        only.alarms = vec![alarm(2, NOSPACE)];
        let r = rank(&[probe("b", Ok(only))], Prefer::Follower, 1000);
        assert_eq!(r.candidates, vec![0]);
    }

    #[test]
    fn unconfirmed_alarms_rank_between_clean_and_alarmed_members() {
        let mut unknown = member(1, 3, 500);
        unknown.alarms_confirmed = false;
        let mut full = member(2, 3, 500);
        full.alarms = vec![alarm(2, NOSPACE)];
        let clean = member(4, 3, 100);
        let probes = vec![
            probe("unknown", Ok(unknown)),
            probe("full", Ok(full)),
            probe("clean", Ok(clean)),
        ];
        assert_eq!(
            rank(&probes, Prefer::Follower, 1000).candidates,
            vec![2, 0, 1]
        );
    }

    #[test]
    fn corrupt_everywhere_is_hopeless_and_said_so() {
        let all = vec![alarm(1, CORRUPT), alarm(2, CORRUPT)];
        let mut a = member(1, 1, 5);
        a.alarms = all.clone();
        let mut b = member(2, 1, 5);
        b.alarms = all;
        let r = rank(&[probe("a", Ok(a)), probe("b", Ok(b))], Prefer::Any, 10);
        assert!(r.candidates.is_empty());
        assert!(r.all_corrupt() && r.hopeless() && !r.worth_waiting());
    }

    #[test]
    fn an_election_is_worth_waiting_for() {
        let probes = vec![
            probe("old-leader", Err("connection refused")),
            probe("b", Ok(member(2, 0, 50))),
            probe("c", Ok(member(3, 0, 50))),
        ];
        let r = rank(&probes, Prefer::Follower, 1000);
        assert!(r.worth_waiting() && !r.hopeless() && !r.all_corrupt());
    }

    #[test]
    fn lag_is_measured_against_the_best_member_when_the_leader_is_unreachable() {
        let probes = vec![
            probe("leader", Err("timeout")),
            probe("b", Ok(member(2, 1, 5000))),
            probe("c", Ok(member(3, 1, 100))),
        ];
        let r = rank(&probes, Prefer::Follower, 1000);
        assert_eq!(r.candidates, vec![1]);
        assert_eq!(r.rejected.len(), 2);
    }

    #[test]
    fn nothing_reachable_means_no_candidates() {
        let probes = vec![probe("a", Err("refused")), probe("b", Err("refused"))];
        let r = rank(&probes, Prefer::Any, 0);
        assert!(r.candidates.is_empty());
        assert_eq!(r.rejected.len(), 2);
    }

    #[test]
    fn status_errors_carry_alarms() {
        use super::super::parse_status_alarm;
        assert_eq!(
            parse_status_alarm("memberID:15985099378392235387 alarm:NOSPACE "),
            Some(alarm(15985099378392235387, NOSPACE))
        );
        assert_eq!(
            parse_status_alarm("alarm:CORRUPT memberID:7"),
            Some(alarm(7, CORRUPT))
        );
        assert_eq!(parse_status_alarm("memberID:7 alarm:NONE"), None);
        assert_eq!(parse_status_alarm("disk is slow"), None);
        assert_eq!(parse_status_alarm("memberID:x alarm:NOSPACE"), None);
        assert_eq!(parse_status_alarm(""), None);
    }
}
