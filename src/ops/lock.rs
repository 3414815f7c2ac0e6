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
    lock: KeyLock,
    holder: String,
}

/// A key held through a lease kept alive in the background: the slot lock, and the revision
/// log's single-writer lock. `lost` is cancelled when the keep-alive fails (the lease may have
/// expired and another host may hold the key now).
pub struct KeyLock {
    client: Client,
    key: String,
    lease: i64,
    keeper: tokio::task::JoinHandle<()>,
    /// Cancelled once the lease could not be kept alive.
    pub lost: tokio_util::sync::CancellationToken,
}

/// Trying to take a key.
pub enum Acquired {
    Held(Box<KeyLock>),
    /// Someone holds it: the holder text stored in the key.
    TakenBy(String),
}

/// Create `key` = `holder` on a new lease of `ttl`, only if it does not exist; keep the lease
/// alive until the lock is released or dropped.
pub async fn acquire(
    mut client: Client,
    key: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Acquired, (&'static str, etcd_client::Error)> {
    let lease = client
        .lease_grant(seconds(ttl), None)
        .await
        .map_err(|e| ("grant a lease", e))?
        .id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            holder,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let resp = match client.txn(txn).await {
        Ok(r) => r,
        Err(e) => {
            let _ = client.lease_revoke(lease).await;
            return Err(("write the lock key", e));
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
        return Ok(Acquired::TakenBy(by));
    }
    let (mut keeper_handle, mut stream) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| ("keep the lease alive", e))?;
    let every = (ttl / 3).max(Duration::from_millis(500));
    let lost = tokio_util::sync::CancellationToken::new();
    let lost_flag = lost.clone();
    let key_text = key.to_owned();
    let keeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let alive = keeper_handle.keep_alive().await.is_ok()
                && matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0);
            if !alive {
                warn!(key = %key_text, "Lease keep-alive failed; the lock may be held by another host now");
                lost_flag.cancel();
                return;
            }
        }
    });
    Ok(Acquired::Held(Box::new(KeyLock {
        client,
        key: key.to_owned(),
        lease,
        keeper,
        lost,
    })))
}

impl KeyLock {
    /// Let the key go (revoke its lease).
    pub async fn release(mut self) {
        self.keeper.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Without a release the lease simply expires after its TTL.
        self.keeper.abort();
    }
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

/// This host's name, for lock holders and segment provenance.
pub fn host() -> String {
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
    let client = lp
        .etcd
        .client(endpoint, Some(Duration::from_secs(10)))
        .await
        .map_err(|e| etcd_err("connect", &e))?;
    match acquire(client, &key, &holder, ttl)
        .await
        .map_err(|(what, e)| etcd_err(what, &e))?
    {
        Acquired::TakenBy(by) => {
            info!(policy = %p.name, slot = %slot, holder = %by, "Slot already taken; skipping this run");
            Ok(Claim::TakenBy(by))
        }
        Acquired::Held(lock) => {
            info!(policy = %p.name, slot = %slot, "Slot claimed");
            Ok(Claim::Held(Box::new(SlotLock {
                lock: *lock,
                holder,
            })))
        }
    }
}

impl SlotLock {
    /// The backup committed: keep the slot marked for `period` (the rest of the slot), then let
    /// the run's lease go.
    pub async fn done(mut self, period: Option<Duration>) {
        self.lock.keeper.abort();
        if let Some(period) = period {
            let l = &mut self.lock;
            let marked = async {
                let lease = l.client.lease_grant(seconds(period), None).await?.id();
                l.client
                    .put(
                        l.key.clone(),
                        format!("{} (done)", self.holder),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await
            };
            if let Err(e) = marked.await {
                warn!(error = %describe_etcd_error(&e), "spec.lock: cannot mark the slot done; another host may back it up too");
            }
        }
        self.lock.release().await;
    }

    /// The run failed: free the slot for another host.
    pub async fn release(self) {
        self.lock.release().await;
    }
}
