//! `spec.lock.etcd`: one backup per scheduled slot across backup hosts running the same policy.
//!
//! The key `lifeboat/lock/<policy>/<slot>` is created in the cluster being backed up, in one
//! transaction that succeeds only if it does not exist yet, attached to a lease of `ttl` that is
//! kept alive while the run goes. A host that finds the key records who holds it and skips. After
//! a commit the key moves to a lease as long as the schedule's period, so a host whose jitter
//! fires it later in the same slot still skips. After a failure the lease is revoked so another
//! host may try the slot; if the holder dies, the lease expires after `ttl`.

use super::LoadedPolicy;
use crate::error::{Error, Kind, Result};
use crate::etcd::describe_etcd_error;
use crate::model::BackupId;
use chrono::{DateTime, Utc};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use std::time::Duration;
use tracing::{info, warn};

/// The outcome of trying to claim a slot.
pub enum Claim {
    /// This run owns the slot.
    Held(Box<SlotLock>),
    /// Another run owns it: its holder text (host, pid, backup id).
    TakenBy(String),
}

/// A claimed slot; call [`SlotLock::done`] or [`SlotLock::release`].
pub struct SlotLock {
    client: Client,
    key: String,
    holder: String,
    lease: i64,
    keeper: tokio::task::JoinHandle<()>,
}

fn etcd_err(what: &str, e: &etcd_client::Error) -> Error {
    Error::new(
        Kind::Etcd,
        format!(
            "spec.lock: cannot {what}: {}; check that the backup user may write keys under \
             lifeboat/ and grant leases",
            describe_etcd_error(e)
        ),
    )
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// Try to claim the slot of a run that started at `started_at`, through `endpoint`.
pub async fn claim(
    lp: &LoadedPolicy,
    endpoint: &str,
    started_at: DateTime<Utc>,
    id: &BackupId,
) -> Result<Claim> {
    let p = &lp.policy;
    let Some(spec) = &p.lock else {
        return Err(Error::new(Kind::Internal, "claim without spec.lock"));
    };
    let ttl = spec.etcd.ttl.0;
    let slot = p
        .schedule
        .as_ref()
        .and_then(|s| s.slot_at(started_at))
        .map_or_else(|| "unscheduled".to_owned(), |t| t.to_rfc3339());
    let key = format!("lifeboat/lock/{}/{slot}", p.name);
    let holder = format!("{} (pid {}, backup {id})", host(), std::process::id());
    let mut client = lp
        .etcd
        .client(endpoint, Some(Duration::from_secs(10)))
        .await
        .map_err(|e| etcd_err("connect", &e))?;
    let lease = client
        .lease_grant(seconds(ttl), None)
        .await
        .map_err(|e| etcd_err("grant a lease", &e))?
        .id();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            holder.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.clone(), None)]);
    let resp = match client.txn(txn).await {
        Ok(r) => r,
        Err(e) => {
            let _ = client.lease_revoke(lease).await;
            return Err(etcd_err("write the lock key", &e));
        }
    };
    if !resp.succeeded() {
        let _ = client.lease_revoke(lease).await;
        let by = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .unwrap_or_else(|| "another host".to_owned());
        info!(policy = %p.name, slot = %slot, holder = %by, "Slot already taken; skipping this run");
        return Ok(Claim::TakenBy(by));
    }
    let (mut keeper_handle, mut stream) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| etcd_err("keep the lease alive", &e))?;
    let every = (ttl / 3).max(Duration::from_millis(500));
    let keeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if keeper_handle.keep_alive().await.is_err() || stream.message().await.is_err() {
                warn!("spec.lock: lease keep-alive failed; the slot may be taken by another host");
                return;
            }
        }
    });
    info!(policy = %p.name, slot = %slot, "Slot claimed");
    Ok(Claim::Held(Box::new(SlotLock {
        client,
        key,
        holder,
        lease,
        keeper,
    })))
}

impl SlotLock {
    /// The backup committed: keep the slot marked for `period` (the rest of the slot), then let
    /// the run's lease go.
    pub async fn done(mut self, period: Option<Duration>) {
        self.keeper.abort();
        if let Some(period) = period {
            let marked = async {
                let lease = self.client.lease_grant(seconds(period), None).await?.id();
                self.client
                    .put(
                        self.key.clone(),
                        format!("{} (done)", self.holder),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await
            };
            if let Err(e) = marked.await {
                warn!(error = %describe_etcd_error(&e), "spec.lock: cannot mark the slot done; another host may back it up too");
            }
        }
        let _ = self.client.lease_revoke(self.lease).await;
    }

    /// The run failed: free the slot for another host.
    pub async fn release(mut self) {
        self.keeper.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }
}
