//! The off-cluster watchdog's judgement: from one probe of every member, how healthy the cluster
//! is and what an operator should do about it, in plain words with the exact commands. Pure (no
//! I/O): the probe is `etcd::probe_all`, the printing is the CLI's, the gauges the daemon's.
//!
//! Thresholds follow etcd's monitoring mixin and maintenance guide (see docs/monitoring.md):
//! fragmentation when less than half of the file is in use and more than 100 MiB would be
//! returned, quota warnings at 80 % and 95 %, apply lag at etcd's own refusal gap of 5,000.
//! The watchdog never acts: it does not defragment, compact or disarm.

use crate::etcd::{CORRUPT, MemberStatus, NOSPACE, Probe};

/// etcd's default backend quota (`--quota-backend-bytes` unset): 2 GiB.
pub const DEFAULT_QUOTA: u64 = 2 << 30;
/// Below this share of the file in use, a defragmentation is worth it...
pub const FRAGMENTED_BELOW: f64 = 0.5;
/// ... when it would return at least this much.
pub const FRAGMENTED_MIN_FREE: u64 = 100 << 20;
/// Database size over quota that warrants a warning, and a critical one.
pub const QUOTA_WARN: f64 = 0.8;
pub const QUOTA_CRITICAL: f64 = 0.95;
/// A member this many raft entries behind the most advanced one is lagging.
pub const RAFT_LAG: u64 = 1000;
/// etcd refuses requests when committed minus applied exceeds this.
pub const APPLY_GAP: u64 = 5000;

/// The alarm kinds that always get a gauge (0 or 1).
pub const ALARM_KINDS: [&str; 2] = [NOSPACE, CORRUPT];

/// Overall verdict; also `lifeboat status`'s exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every member answers, one leader, no alarm, nothing to advise beyond information.
    Healthy,
    /// Serving, but something needs attention (a member down, an alarm, near quota, ...).
    Degraded,
    /// Cannot serve writes: no member answers, quorum lost or no leader.
    Down,
}

impl Verdict {
    /// `lifeboat status` exit code: 0 healthy, 10 degraded, 4 down (as "etcd unreachable").
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 10,
            Verdict::Down => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Down => "down",
        }
    }
}

/// How urgent a piece of advice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One thing to tell the operator: what is wrong, and the steps, commands included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub severity: Severity,
    /// Short stable name: `nospace`, `corrupt`, `defragment`, `quota`, `member-down`,
    /// `no-leader`, `quorum`, `lagging`, `errors`.
    pub topic: &'static str,
    /// Plain words, possibly several lines (steps and commands).
    pub text: String,
}

/// One member as the watchdog saw it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub endpoint: String,
    /// Its status, when it answered.
    pub status: Option<MemberStatus>,
    /// Why it did not, when it did not.
    pub error: Option<String>,
    /// The alarms raised for this member (from any member's view), sorted.
    pub alarms: Vec<String>,
}

impl MemberView {
    pub fn up(&self) -> bool {
        self.status.is_some()
    }

    /// Share of the file in use, when known.
    pub fn in_use_ratio(&self) -> Option<f64> {
        let s = self.status.as_ref()?;
        (s.db_size > 0 && s.db_size_in_use > 0).then(|| s.db_size_in_use as f64 / s.db_size as f64)
    }

    pub fn is_leader(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.leader != 0 && s.leader == s.member_id)
    }

    /// A member label for metrics and tables: its name, else its id, else the endpoint.
    pub fn label(&self) -> String {
        match &self.status {
            Some(s) if !s.name.is_empty() => s.name.clone(),
            Some(s) => format!("{:x}", s.member_id),
            None => self.endpoint.clone(),
        }
    }
}

/// The whole judgement.
#[derive(Debug, Clone)]
pub struct Health {
    pub members: Vec<MemberView>,
    /// Backend quota used for percentages: what the members report (etcd 3.6 and later), else
    /// the policy's `cluster.quotaBackendBytes`.
    pub quota: u64,
    /// Whether `quota` came from the members rather than the policy.
    pub quota_reported: bool,
    /// The largest raft term any member reported (every election increments it).
    pub raft_term: u64,
    pub verdict: Verdict,
    /// Most urgent first.
    pub advice: Vec<Advice>,
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// Judge one probe of every endpoint; `policy_quota` is used unless the members report theirs.
pub fn assess(probes: &[Probe], policy_quota: u64) -> Health {
    let reported = probes
        .iter()
        .filter_map(|p| p.outcome.as_ref().ok())
        .map(|s| s.db_size_quota)
        .max()
        .unwrap_or(0);
    let quota = if reported > 0 {
        reported as u64
    } else {
        policy_quota
    };
    // Alarms are cluster-wide knowledge: any member's view counts, attributed by member id.
    let mut alarms: Vec<(u64, String)> = probes
        .iter()
        .filter_map(|p| p.outcome.as_ref().ok())
        .flat_map(|s| s.alarms.iter().map(|a| (a.member_id, a.kind.clone())))
        .collect();
    alarms.sort();
    alarms.dedup();
    let members: Vec<MemberView> = probes
        .iter()
        .map(|p| match &p.outcome {
            Ok(s) => MemberView {
                endpoint: p.endpoint.clone(),
                alarms: alarms
                    .iter()
                    .filter(|(m, _)| *m == s.member_id)
                    .map(|(_, k)| k.clone())
                    .collect(),
                status: Some(s.clone()),
                error: None,
            },
            Err(e) => MemberView {
                endpoint: p.endpoint.clone(),
                status: None,
                error: Some(e.message.clone()),
                alarms: Vec::new(),
            },
        })
        .collect();
    let up: Vec<&MemberView> = members.iter().filter(|m| m.up()).collect();
    let statuses: Vec<&MemberStatus> = up.iter().filter_map(|m| m.status.as_ref()).collect();
    let raft_term = statuses.iter().map(|s| s.raft_term).max().unwrap_or(0);
    let mut advice = Vec::new();
    let mut verdict = Verdict::Healthy;
    let mut worse = |v: Verdict| verdict = verdict.max(v);

    // Availability.
    let total = members.len();
    let has_leader = statuses.iter().any(|s| s.leader != 0);
    if up.is_empty() {
        worse(Verdict::Down);
        advice.push(Advice {
            severity: Severity::Critical,
            topic: "quorum",
            text: format!(
                "No member answers ({total} tried). Check that etcd runs on the control-plane \
                 nodes and that this host can reach the client port; if the cluster is lost, \
                 restore it from the newest backup (lifeboat restore --policy ... --latest)."
            ),
        });
    } else {
        if up.len() * 2 <= total {
            worse(Verdict::Down);
            advice.push(Advice {
                severity: Severity::Critical,
                topic: "quorum",
                text: format!(
                    "Only {} of {total} members answer: without a majority the cluster cannot \
                     elect a leader or accept writes. Bring the members back; if they are gone \
                     for good, restore from the newest backup.",
                    up.len()
                ),
            });
        } else if !has_leader {
            worse(Verdict::Down);
            advice.push(Advice {
                severity: Severity::Critical,
                topic: "no-leader",
                text: "No member has a leader: the cluster is electing one or cannot, and \
                       refuses writes meanwhile. If this lasts more than a minute, check the \
                       members' logs and the network between them (peer port)."
                    .into(),
            });
        }
        for m in members.iter().filter(|m| !m.up()) {
            worse(Verdict::Degraded);
            advice.push(Advice {
                severity: Severity::Warning,
                topic: "member-down",
                text: format!(
                    "{} does not answer: {}. The others keep quorum; bring it back soon, since \
                     one more failure may cost the cluster its majority.",
                    m.endpoint,
                    m.error.as_deref().unwrap_or("no answer")
                ),
            });
        }
    }

    // Alarms.
    let nospace: Vec<&MemberView> = members
        .iter()
        .filter(|m| m.alarms.iter().any(|a| a == NOSPACE))
        .collect();
    if !nospace.is_empty() {
        worse(Verdict::Degraded);
        let names: Vec<String> = nospace.iter().map(|m| m.label()).collect();
        let ep = nospace[0].endpoint.as_str();
        // Every member that answers, followers first and the leader last.
        let mut order: Vec<&MemberView> = up.clone();
        order.sort_by_key(|m| m.is_leader());
        let defrags: Vec<String> = order
            .iter()
            .map(|m| format!("etcdctl --endpoints={} defrag", m.endpoint))
            .collect();
        advice.push(Advice {
            severity: Severity::Critical,
            topic: "nospace",
            text: format!(
                "NOSPACE alarm on {}: the database reached its quota and the cluster refuses \
                 writes (reads and snapshots still work). Recover, in this order:\n\
                 1. take a backup first: lifeboat backup --policy <policy>\n\
                 2. compact to the current revision: rev=$(etcdctl --endpoints={ep} endpoint \
                 status -w json | grep -o '\"revision\":[0-9]*' | cut -d: -f2); etcdctl \
                 --endpoints={ep} compaction \"$rev\"\n\
                 3. defragment every member, one at a time, followers first and the leader \
                 last, each healthy again before the next: {}\n\
                 4. disarm: etcdctl --endpoints={ep} alarm disarm\n\
                 5. find what filled it (events, a runaway controller) or raise \
                 --quota-backend-bytes (8 GiB at most is suggested) and \
                 spec.cluster.quotaBackendBytes with it.",
                names.join(", "),
                defrags.join("; ")
            ),
        });
    }
    let corrupt: Vec<String> = members
        .iter()
        .filter(|m| m.alarms.iter().any(|a| a == CORRUPT))
        .map(|m| m.label())
        .collect();
    if !corrupt.is_empty() {
        worse(Verdict::Degraded);
        advice.push(Advice {
            severity: Severity::Critical,
            topic: "corrupt",
            text: format!(
                "CORRUPT alarm on {}: its data disagrees with the rest of the cluster. Backups \
                 never use it. Remove the member and add it back empty (etcdctl member remove / \
                 member add, then start it with a fresh data directory) so that it resyncs \
                 from the leader; do not disarm the alarm first.",
                corrupt.join(", ")
            ),
        });
    }

    // Quota.
    if let Some(big) = statuses.iter().max_by_key(|s| s.db_size) {
        let size = big.db_size.max(0) as u64;
        let share = size as f64 / quota.max(1) as f64;
        if share > QUOTA_WARN {
            worse(Verdict::Degraded);
            advice.push(Advice {
                severity: if share > QUOTA_CRITICAL {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                topic: "quota",
                text: format!(
                    "The largest database is {} of the {} quota ({:.0} %): at 100 % etcd raises \
                     NOSPACE and refuses writes. Defragment members whose in-use share is low, \
                     compact if the history is long, or raise --quota-backend-bytes \
                     (and spec.cluster.quotaBackendBytes) before it fills.",
                    mib(size),
                    mib(quota),
                    share * 100.0
                ),
            });
        }
    }

    // Fragmentation: followers first, leader last, one at a time.
    let mut fragmented: Vec<&MemberView> = up
        .iter()
        .copied()
        .filter(|m| {
            let s = m.status.as_ref().expect("up");
            let free = (s.db_size - s.db_size_in_use).max(0) as u64;
            m.in_use_ratio()
                .is_some_and(|r| r < FRAGMENTED_BELOW && free >= FRAGMENTED_MIN_FREE)
        })
        .collect();
    fragmented.sort_by_key(|m| m.is_leader());
    if !fragmented.is_empty() {
        worse(Verdict::Degraded);
        let mut text = String::from(
            "Defragmentation would return space (less than half of the file is in use). It \
             blocks the member while it runs, so one member at a time, followers first and the \
             leader last, at low traffic and never during a backup; wait for each to be healthy \
             again before the next:",
        );
        for m in &fragmented {
            let s = m.status.as_ref().expect("up");
            text.push_str(&format!(
                "\n  etcdctl --endpoints={} defrag    # {}{}: {} of {} in use ({:.0} %)",
                m.endpoint,
                m.label(),
                if m.is_leader() { ", leader" } else { "" },
                mib(s.db_size_in_use.max(0) as u64),
                mib(s.db_size.max(0) as u64),
                m.in_use_ratio().unwrap_or(0.0) * 100.0
            ));
        }
        text.push_str("\n  (Talos: talosctl -n <node> etcd defrag)");
        advice.push(Advice {
            severity: Severity::Warning,
            topic: "defragment",
            text,
        });
    }

    // Lag.
    if let Some(max_index) = statuses.iter().map(|s| s.raft_index).max() {
        for m in &up {
            let s = m.status.as_ref().expect("up");
            let behind = max_index.saturating_sub(s.raft_index);
            let unapplied = s.raft_index.saturating_sub(s.raft_applied_index);
            if behind > RAFT_LAG || unapplied > APPLY_GAP {
                worse(Verdict::Degraded);
                advice.push(Advice {
                    severity: if unapplied > APPLY_GAP {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    topic: "lagging",
                    text: format!(
                        "{} ({}) lags: {behind} raft entries behind the most advanced member, \
                         {unapplied} committed but not applied{}. Check its disk (WAL fsync \
                         and backend commit latency) and CPU.",
                        m.label(),
                        m.endpoint,
                        if unapplied > APPLY_GAP {
                            " (etcd refuses requests past 5000)"
                        } else {
                            ""
                        }
                    ),
                });
            }
        }
    }

    // Anything else members say about themselves.
    for m in &up {
        let s = m.status.as_ref().expect("up");
        if !s.errors.is_empty() {
            worse(Verdict::Degraded);
            advice.push(Advice {
                severity: Severity::Warning,
                topic: "errors",
                text: format!("{} reports: {}", m.label(), s.errors.join("; ")),
            });
        }
    }

    advice.sort_by_key(|a| std::cmp::Reverse(a.severity));
    Health {
        members,
        quota,
        quota_reported: reported > 0,
        raft_term,
        verdict,
        advice,
    }
}

#[cfg(test)]
mod tests;
