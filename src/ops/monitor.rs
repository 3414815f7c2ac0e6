//! The watchdog's probe of one policy's cluster, shared by `lifeboat status`, the daemon's
//! probe loop and `backup --metrics-textfile`. Read-only: status, alarm list and member list.

use super::LoadedPolicy;
use crate::etcd::probe_all;
use crate::watchdog::{Health, assess};

/// Whether each destination answers, by name: one delimiter listing of the policy's prefix
/// each (not a read of every manifest, which `list` does).
pub async fn destinations_up(lp: &LoadedPolicy) -> Vec<(String, bool)> {
    let prefix = crate::model::policy_prefix(&lp.policy.name);
    let answers =
        futures::future::join_all(lp.destinations.iter().map(|d| d.list_dirs(&prefix))).await;
    lp.destinations
        .iter()
        .zip(answers)
        .map(|(d, r)| (d.name.clone(), r.is_ok()))
        .collect()
}

/// Probe every member of the policy's cluster and judge the result.
pub async fn probe(lp: &LoadedPolicy) -> Health {
    let probes = probe_all(&lp.etcd, lp.policy.cluster.selection.status_timeout.0).await;
    assess(&probes, lp.policy.cluster.quota_backend_bytes)
}
