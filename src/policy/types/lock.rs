//! `spec.lock`: one writer across backup hosts.

use super::*;
use serde::Deserialize;
use std::time::Duration;

/// `spec.lock`: coordinate backup hosts running the same policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSpec {
    /// A lease-backed key in the cluster being backed up.
    pub etcd: EtcdLock,
}

/// `spec.lock.etcd`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdLock {
    /// Lease time to live: how long a dead holder blocks the slot.
    #[serde(default = "default_lock_ttl")]
    pub ttl: PositiveDuration,
}

pub(super) fn default_lock_ttl() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}
