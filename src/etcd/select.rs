//! Choosing the member to snapshot. Pure: takes probes, returns candidates in order of preference
//! and one reason for every member that was passed over.

use super::{MemberStatus, Probe};
use crate::policy::Prefer;
use std::collections::HashMap;

/// Outcome of ranking the probed members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    /// Indexes into the probes, best first.
    pub candidates: Vec<usize>,
    /// (endpoint, reason) for every endpoint that does not qualify.
    pub rejected: Vec<(String, String)>,
}

/// Rank members: skip unreachable ones, members of another cluster, duplicates, learners, members
/// with no leader, errors or alarms, and members lagging the leader by more than `max_lag`
/// applied entries. Then order by `prefer`, highest applied index first within a role.
pub fn rank(probes: &[Probe], prefer: Prefer, max_lag: u64) -> Ranking {
    let mut rejected = Vec::new();
    let reachable: Vec<(usize, &MemberStatus)> = probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.outcome {
            Ok(s) => Some((i, s)),
            Err(e) => {
                rejected.push((p.endpoint.clone(), format!("unreachable: {e}")));
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

    let same_cluster: Vec<&(usize, &MemberStatus)> = reachable
        .iter()
        .filter(|(i, s)| {
            if Some(s.cluster_id) == cluster {
                true
            } else {
                rejected.push((
                    probes[*i].endpoint.clone(),
                    format!(
                        "belongs to cluster {:x}, not {:x} like the other endpoints",
                        s.cluster_id,
                        cluster.unwrap_or_default()
                    ),
                ));
                false
            }
        })
        .collect();

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
    for (i, s) in same_cluster.iter().copied() {
        let ep = &probes[*i].endpoint;
        let reason = if let Some(first) = seen.get(&s.member_id) {
            Some(format!("same member {:x} as {first}", s.member_id))
        } else if s.is_learner {
            Some("is a learner, not a voting member".to_owned())
        } else if s.leader == 0 {
            Some("has no leader (lost quorum?)".to_owned())
        } else if !s.errors.is_empty() {
            Some(format!("reports errors: {}", s.errors.join("; ")))
        } else if !s.alarms.is_empty() {
            Some(format!("has alarm {}", s.alarms.join(", ")))
        } else {
            let lag = reference.saturating_sub(s.raft_applied_index);
            (lag > max_lag).then(|| {
                format!(
                    "lagging: raft applied index {} is {lag} behind the leader's {reference} \
                     (maxRaftLag {max_lag})",
                    s.raft_applied_index
                )
            })
        };
        seen.entry(s.member_id).or_insert(ep);
        match reason {
            Some(r) => rejected.push((ep.clone(), r)),
            None => ok.push((*i, s)),
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
    ok.sort_by_key(|(i, s)| (role(s), std::cmp::Reverse(s.raft_applied_index), *i));
    Ranking {
        candidates: ok.into_iter().map(|(i, _)| i).collect(),
        rejected,
    }
}

#[cfg(test)]
mod tests {
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
            revision: 100,
            db_size: 4096,
            version: "3.4.23".into(),
            errors: vec![],
            alarms: vec![],
        }
    }

    fn probe(ep: &str, s: Result<MemberStatus, &str>) -> Probe {
        Probe {
            endpoint: ep.into(),
            outcome: s.map_err(str::to_owned),
        }
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
        let mut alarmed = member(5, 1, 500);
        alarmed.alarms = vec!["NOSPACE".into()];
        let mut erring = member(6, 1, 500);
        erring.errors = vec!["disk slow".into()];
        let mut foreign = member(9, 9, 500);
        foreign.cluster_id = 8;
        let probes = vec![
            probe("leader", Ok(member(1, 1, 5000))),
            probe("down", Err("connection refused")),
            probe("lagging", Ok(member(2, 1, 3999))),
            probe("learner", Ok(learner)),
            probe("alarmed", Ok(alarmed)),
            probe("erring", Ok(erring)),
            probe("noleader", Ok(member(3, 0, 5000))),
            probe("foreign", Ok(foreign)),
            probe("dup", Ok(member(1, 1, 5000))),
        ];
        let r = rank(&probes, Prefer::Follower, 1000);
        assert_eq!(r.candidates, vec![0]);
        let why: HashMap<_, _> = r.rejected.iter().cloned().collect();
        assert_eq!(why.len(), 8);
        assert!(why["down"].contains("connection refused"));
        assert!(why["lagging"].contains("1001 behind"), "{}", why["lagging"]);
        assert!(why["learner"].contains("learner"));
        assert!(why["alarmed"].contains("NOSPACE"));
        assert!(why["erring"].contains("disk slow"));
        assert!(why["noleader"].contains("no leader"));
        assert!(why["foreign"].contains("cluster 8"));
        assert!(why["dup"].contains("same member 1 as leader"));
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
}
