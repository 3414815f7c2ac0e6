//! `lifeboat status`: the watchdog's judgement of a policy's cluster, as a table and advice.

use super::*;
use crate::watchdog::{Health, MemberView};

pub(super) async fn status(policy: &std::path::Path, json_out: bool) -> Result<u8, Error> {
    let lp = ops::load_policy(policy)?;
    let h = ops::monitor::probe(&lp).await;
    if json_out {
        out!(
            "{}",
            serde_json::to_string_pretty(&health_json(&lp.policy.name, &h)).expect("json")
        );
    } else {
        print_table(&h);
    }
    Ok(h.verdict.exit_code())
}

fn pct(part: i64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part.max(0) as f64 * 100.0 / whole as f64)
    }
}

fn member_json(m: &MemberView, quota: u64) -> serde_json::Value {
    match &m.status {
        Some(s) => json!({
            "endpoint": m.endpoint,
            "up": true,
            "member": format!("{:x}", s.member_id),
            "name": s.name,
            "version": s.version,
            "dbSize": s.db_size,
            "dbSizeInUse": s.db_size_in_use,
            "inUseRatio": m.in_use_ratio(),
            "quotaRatio": if quota == 0 { None } else { Some(s.db_size as f64 / quota as f64) },
            "isLeader": m.is_leader(),
            "isLearner": s.is_learner,
            "hasLeader": s.leader != 0,
            "raftTerm": s.raft_term,
            "raftIndex": s.raft_index,
            "raftAppliedIndex": s.raft_applied_index,
            "revision": s.revision,
            "errors": s.errors,
            "alarms": m.alarms,
            "alarmsConfirmed": s.alarms_confirmed,
        }),
        None => json!({
            "endpoint": m.endpoint,
            "up": false,
            "error": m.error,
        }),
    }
}

fn health_json(policy: &str, h: &Health) -> serde_json::Value {
    json!({
        "policy": policy,
        "verdict": h.verdict.as_str(),
        "quotaBackendBytes": h.quota,
        "quotaReportedByMembers": h.quota_reported,
        "raftTerm": h.raft_term,
        "members": h.members.iter().map(|m| member_json(m, h.quota)).collect::<Vec<_>>(),
        "advice": h.advice.iter().map(|a| json!({
            "severity": a.severity.as_str(),
            "topic": a.topic,
            "text": a.text,
        })).collect::<Vec<_>>(),
    })
}

fn print_table(h: &Health) {
    let head = [
        "ENDPOINT", "MEMBER", "VERSION", "DB SIZE", "IN USE", "QUOTA", "LEADER", "LEARNER", "TERM",
        "INDEX", "APPLIED", "ALARMS", "ERRORS",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| (*s).to_owned()).collect()];
    for m in &h.members {
        rows.push(match &m.status {
            Some(s) => vec![
                m.endpoint.clone(),
                m.label(),
                s.version.clone(),
                human_bytes(s.db_size.max(0) as u64),
                format!(
                    "{} ({})",
                    human_bytes(s.db_size_in_use.max(0) as u64),
                    pct(s.db_size_in_use, s.db_size.max(0) as u64)
                ),
                pct(s.db_size, h.quota),
                if m.is_leader() {
                    "yes".into()
                } else if s.leader == 0 {
                    "NONE".into()
                } else {
                    "no".into()
                },
                if s.is_learner { "yes" } else { "no" }.into(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                if m.alarms.is_empty() {
                    "-".into()
                } else {
                    m.alarms.join(",")
                },
                if s.errors.is_empty() {
                    "-".into()
                } else {
                    s.errors.join("; ")
                },
            ],
            None => {
                let mut r = vec![m.endpoint.clone(), "DOWN".into()];
                r.extend(std::iter::repeat_n("-".to_owned(), 10));
                r.push(m.error.clone().unwrap_or_default());
                r
            }
        });
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out!("{}", line.join("  ").trim_end());
    }
    out!("");
    out!(
        "cluster: {} (quota {}{})",
        h.verdict.as_str().to_uppercase(),
        human_bytes(h.quota),
        if h.quota_reported {
            ", as the members report it"
        } else {
            " from spec.cluster.quotaBackendBytes: set it to the members' --quota-backend-bytes"
        }
    );
    for a in &h.advice {
        out!("");
        out!("[{}] {}", a.severity.as_str(), a.text);
    }
}
