//! The watchdog's probe of one policy's cluster, shared by `lifeboat status`, the daemon's
//! probe loop and `backup --metrics-textfile`. Read-only: status, alarm list and member list.

use super::LoadedPolicy;
use crate::etcd::probe_all;
use crate::watchdog::{Health, assess};

/// Probe every member of the policy's cluster and judge the result.
pub async fn probe(lp: &LoadedPolicy) -> Health {
    let probes = probe_all(&lp.etcd, lp.policy.cluster.selection.status_timeout.0).await;
    assess(&probes, lp.policy.cluster.quota_backend_bytes)
}
