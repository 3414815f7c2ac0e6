//! The revision-log streamer (`spec.pitr`): watches the whole keyspace of one healthy member and
//! writes every revision into segments, so that a restore can reach any revision exactly.
//!
//! - **One writer per policy** across backup hosts: the key `lifeboat/lock/<policy>/revlog` on a
//!   kept-alive lease. The others stand by and take over when its lease expires.
//! - **Resume** at the newest committed segment's last revision + 1, on any healthy member
//!   (require-leader, progress notifications, fragments), after any failure.
//! - **Continuity is checked, never assumed**: revisions are dense, so a revision beyond the next
//!   one is a gap (reconnect once, then a new timeline); an earlier one is a duplicate (dropped);
//!   another cluster id or a revision going backwards starts a new timeline; history compacted
//!   past the resume point starts a new timeline. Each new timeline gets a full backup at once.
//! - **Leases** used by the events are looked up (`LeaseTimeToLive`) and recorded before their
//!   first use in each segment, so a replay can grant them.
//! - **Bounded memory**: events go to a spool file as they arrive (one watch response at a time,
//!   and etcd's HTTP/2 flow control pushes back); a revision cut off mid-stream is truncated away.
//!   Segments are cut by size and age at revision boundaries, then compressed, encrypted,
//!   uploaded and committed by a manifest written last, strictly in order, by a separate task
//!   that retries until it succeeds.

use super::LoadedPolicy;
use super::lock::{Acquired, acquire, host};
use super::ship::{Shipped, commit, ship_file, stored_object};
use super::spool::RunSpace;
use crate::error::{Error, Kind, Result};
use crate::etcd::{describe_etcd_error, probe_all, select};
use crate::model::BackupId;
use crate::policy::PitrSpec;
use crate::revlog::codec::{self, Event, FLAG_CATCHUP, Record};
use crate::revlog::plan::FullBackup;
use crate::revlog::{
    REVLOG_FORMAT_VERSION, RevlogObject, SegmentManifest, SegmentSource, Timeline, TimelineId,
    TimelineReason, parse_revlog_key, revlog_prefix, segment_data_key, segment_manifest_key,
    timeline_key,
};
use crate::store::describe_store_error;
use chrono::{DateTime, Utc};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use futures::StreamExt;
use std::collections::{BTreeMap, HashSet};
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// What the streamer is doing, for metrics (read at any time, from any thread).
#[derive(Debug, Default)]
pub struct RevlogStatus {
    /// This host holds the writer lock.
    pub writer: AtomicBool,
    /// Last revision committed in a segment (0: none yet).
    pub committed_revision: AtomicI64,
    /// When the last segment was committed (Unix ms; 0: never).
    pub committed_at_ms: AtomicI64,
    /// The cluster's revision as last seen.
    pub cluster_revision: AtomicI64,
    /// Receive time of the oldest revision not yet committed (Unix ms; 0: none pending).
    pub oldest_pending_ms: AtomicI64,
    /// Revisions written to the spool, not yet committed.
    pub received_revision: AtomicI64,
    pub segments: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub timelines: AtomicU64,
    pub reconnects: AtomicU64,
    pub commit_failures: AtomicU64,
}

impl RevlogStatus {
    /// Revisions the cluster is ahead of the committed log.
    pub fn lag_revisions(&self) -> i64 {
        let c = self.committed_revision.load(Ordering::Relaxed);
        let head = self.cluster_revision.load(Ordering::Relaxed);
        if c == 0 { 0 } else { (head - c).max(0) }
    }

    /// Seconds since the oldest revision not yet committed was received.
    pub fn lag_seconds(&self) -> f64 {
        match self.oldest_pending_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            t => ((Utc::now().timestamp_millis() - t).max(0)) as f64 / 1000.0,
        }
    }
}

fn etcd_error(what: &str, e: &etcd_client::Error) -> Error {
    Error::new(
        Kind::Etcd,
        format!("revision log: {what}: {}", describe_etcd_error(e)),
    )
}

/// The writer lock's key for `policy`.
pub fn lock_key(policy: &str) -> String {
    format!("lifeboat/lock/{policy}/revlog")
}

/// Run the streamer of `lp` until `stop`: stand by while another host writes, stream while this
/// one does, and start over after any failure.
pub async fn run(
    lp: Arc<LoadedPolicy>,
    status: Arc<RevlogStatus>,
    stop: CancellationToken,
) -> Result<()> {
    let Some(pitr) = lp.policy.pitr.clone() else {
        return Err(Error::new(
            Kind::Policy,
            format!(
                "{}: policy {} has no spec.pitr; add `pitr: {{}}` to enable the revision log",
                lp.path.display(),
                lp.policy.name
            ),
        ));
    };
    let ttl = lp
        .policy
        .lock
        .as_ref()
        .map_or(Duration::from_secs(15), |l| l.etcd.ttl.0);
    let mut backoff = Duration::from_secs(1);
    let mut standing_by = false;
    while !stop.is_cancelled() {
        let lock = match take_lock(&lp, ttl).await {
            Ok(Acquired::Held(l)) => l,
            Ok(Acquired::TakenBy(by)) => {
                if !standing_by {
                    info!(policy = %lp.policy.name, holder = %by, "Another host writes the revision log; standing by");
                    standing_by = true;
                }
                sleep_or_stop(ttl / 2, &stop).await;
                continue;
            }
            Err(e) => {
                warn!(policy = %lp.policy.name, error = %e.chain(), "Cannot take the revision log's writer lock; trying again");
                sleep_or_stop(backoff, &stop).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        standing_by = false;
        info!(policy = %lp.policy.name, "Writing the revision log");
        status.writer.store(true, Ordering::Relaxed);
        let lost = lock.lost.clone();
        let result = session(&lp, &pitr, &status, &stop, &lost).await;
        status.writer.store(false, Ordering::Relaxed);
        lock.release().await;
        match result {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                error!(policy = %lp.policy.name, error = %e.chain(), "Revision log stream failed; starting over");
                sleep_or_stop(backoff, &stop).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(())
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = stop.cancelled() => {}
    }
}

async fn take_lock(lp: &LoadedPolicy, ttl: Duration) -> Result<Acquired> {
    let (client, _) = connect_member(lp, None, false).await?;
    let holder = format!("{} (pid {}, revision log)", host(), std::process::id());
    acquire(client, &lock_key(&lp.policy.name), &holder, ttl)
        .await
        .map_err(|(what, e)| etcd_error(&format!("cannot {what} for the writer lock"), &e))
}

/// The member a stream reads from.
#[derive(Debug, Clone)]
struct Member {
    id: u64,
    cluster_id: u64,
    endpoint: String,
    version: String,
}

/// Connect to the best healthy member (followers first), avoiding `avoid` when another
/// qualifies; with `leader_bound`, requests fail once that member loses its leader.
async fn connect_member(
    lp: &LoadedPolicy,
    avoid: Option<&str>,
    leader_bound: bool,
) -> Result<(Client, Member)> {
    let sel = &lp.policy.cluster.selection;
    let probes = probe_all(&lp.etcd, sel.status_timeout.0).await;
    let ranking = select::rank(&probes, sel.prefer, sel.max_raft_lag);
    let mut order: Vec<usize> = ranking.candidates.clone();
    if let Some(a) = avoid
        && order.len() > 1
    {
        order.sort_by_key(|&i| probes[i].endpoint == a);
    }
    let Some(&best) = order.first() else {
        let reasons: Vec<String> = ranking
            .rejected
            .iter()
            .map(|r| format!("{}: {}", r.endpoint, r.reason))
            .collect();
        return Err(Error::new(
            Kind::Etcd,
            format!(
                "revision log: no healthy member to watch: {}",
                reasons.join("; ")
            ),
        ));
    };
    let p = &probes[best];
    let st = p.outcome.as_ref().expect("candidates are reachable");
    let client = if leader_bound {
        lp.etcd.leader_client(&p.endpoint).await
    } else {
        lp.etcd
            .client(&p.endpoint, Some(Duration::from_secs(10)))
            .await
    }
    .map_err(|e| etcd_error(&format!("connecting to {}", p.endpoint), &e))?;
    Ok((
        client,
        Member {
            id: st.member_id,
            cluster_id: st.cluster_id,
            endpoint: p.endpoint.clone(),
            version: st.version.clone(),
        },
    ))
}

/// The revision log as the destinations hold it.
#[derive(Debug, Default)]
pub struct RevlogListing {
    pub timelines: Vec<Timeline>,
    /// Committed segments, and the names of the destinations holding their manifest.
    pub segments: Vec<(SegmentManifest, Vec<String>)>,
    /// Data objects without a manifest: (destination, key, last modified).
    pub orphans: Vec<(String, String, DateTime<Utc>)>,
    /// Destinations that could not be listed or manifests that could not be read.
    pub problems: Vec<String>,
    /// Sizes of the segment data objects: (destination, key) -> bytes.
    pub data_sizes: std::collections::HashMap<(String, String), u64>,
}

impl RevlogListing {
    /// The planner's view, with `fulls` from the backup listing.
    pub fn log(&self, fulls: Vec<FullBackup>) -> crate::revlog::plan::Log {
        crate::revlog::plan::Log {
            timelines: self.timelines.clone(),
            segments: self.segments.iter().map(|(s, _)| s.clone()).collect(),
            fulls,
        }
    }
}

/// List `lp`'s revision log at every destination: timelines, committed segment manifests (read
/// concurrently), and data objects without a manifest.
pub async fn list_revlog(lp: &LoadedPolicy) -> RevlogListing {
    let policy = &lp.policy.name;
    let prefix = revlog_prefix(policy);
    let mut out = RevlogListing::default();
    // key -> (destinations holding it, a destination index to read it from)
    let mut manifests: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
    let mut timelines: BTreeMap<String, usize> = BTreeMap::new();
    let mut data: Vec<(String, String, DateTime<Utc>)> = Vec::new();
    for (i, d) in lp.destinations.iter().enumerate() {
        let listed = match d.list(&prefix).await {
            Ok(l) => l,
            Err(e) => {
                out.problems.push(format!(
                    "destination {:?} ({}): listing {prefix}: {}",
                    d.name,
                    d.url,
                    describe_store_error(&e)
                ));
                continue;
            }
        };
        for o in listed {
            match parse_revlog_key(policy, &o.key) {
                Some(RevlogObject::Timeline(_)) => {
                    timelines.entry(o.key).or_insert(i);
                }
                Some(RevlogObject::SegmentManifest { .. }) => {
                    let e = manifests.entry(o.key).or_insert((Vec::new(), i));
                    e.0.push(d.name.clone());
                }
                Some(RevlogObject::SegmentData { .. }) => {
                    out.data_sizes
                        .insert((d.name.clone(), o.key.clone()), o.size);
                    data.push((d.name.clone(), o.key, o.last_modified));
                }
                None => {}
            }
        }
    }
    let dests = &lp.destinations;
    let tls = futures::stream::iter(
        timelines
            .into_iter()
            .map(|(key, i)| async move { (key.clone(), dests[i].get_small(&key).await) }),
    )
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    for (key, got) in tls {
        match got
            .map_err(|e| describe_store_error(&e))
            .and_then(|b| serde_json::from_slice::<Timeline>(&b).map_err(|e| e.to_string()))
        {
            Ok(t) if t.policy == *policy => out.timelines.push(t),
            Ok(_) => out.problems.push(format!("{key} names another policy")),
            Err(e) => out.problems.push(format!("reading {key}: {e}")),
        }
    }
    let segs = futures::stream::iter(manifests.into_iter().map(|(key, (holders, i))| async move {
        (key.clone(), holders, dests[i].get_small(&key).await)
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    let mut committed_data: HashSet<String> = HashSet::new();
    for (key, holders, got) in segs {
        match got
            .map_err(|e| describe_store_error(&e))
            .and_then(|b| serde_json::from_slice::<SegmentManifest>(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => {
                let own =
                    segment_manifest_key(policy, &m.timeline, m.first_revision, m.last_revision);
                if own != key || m.policy != *policy {
                    out.problems.push(format!(
                        "{key} describes another segment ({own}); it was moved and is ignored"
                    ));
                    continue;
                }
                committed_data.insert(m.stored.key.clone());
                out.segments.push((m, holders));
            }
            Err(e) => out.problems.push(format!("reading {key}: {e}")),
        }
    }
    out.segments.sort_by(|a, b| {
        (&a.0.timeline, a.0.first_revision, a.0.last_revision).cmp(&(
            &b.0.timeline,
            b.0.first_revision,
            b.0.last_revision,
        ))
    });
    out.orphans = data
        .into_iter()
        .filter(|(_, k, _)| !committed_data.contains(k))
        .collect();
    out
}

/// Every timeline of `lp`, read from each destination's `timeline.json` files (one delimiter
/// listing per destination, not a listing of every segment). Destinations that cannot be
/// listed are returned as problems.
pub async fn timelines(lp: &LoadedPolicy) -> (Vec<Timeline>, Vec<String>) {
    let prefix = revlog_prefix(&lp.policy.name);
    let mut found: BTreeMap<TimelineId, Timeline> = BTreeMap::new();
    let mut problems = Vec::new();
    for d in &lp.destinations {
        let dirs = match d.list_dirs(&prefix).await {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!(
                    "destination {:?} ({}): listing {prefix}: {}",
                    d.name,
                    d.url,
                    describe_store_error(&e)
                ));
                continue;
            }
        };
        for dir in dirs {
            let Some(id) = dir
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .and_then(TimelineId::parse)
            else {
                continue;
            };
            if found.contains_key(&id) {
                continue;
            }
            match d.get_small(&timeline_key(&lp.policy.name, &id)).await {
                Ok(b) => match serde_json::from_slice::<Timeline>(&b) {
                    Ok(t) => {
                        found.insert(id, t);
                    }
                    Err(e) => problems.push(format!("timeline {id} at {:?}: {e}", d.name)),
                },
                // A timeline whose timeline.json is gone (pruned, or not yet written here).
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => problems.push(format!(
                    "timeline {id} at {:?}: {}",
                    d.name,
                    describe_store_error(&e)
                )),
            }
        }
    }
    (found.into_values().collect(), problems)
}

/// The highest last revision of `tl`'s committed segments at any destination (from their keys),
/// with the fingerprint of that revision from the segment's manifest when it can be read.
async fn committed_head(
    lp: &LoadedPolicy,
    tl: &TimelineId,
) -> Result<Option<(i64, Option<[u8; 32]>)>> {
    let prefix = format!("{}{tl}/", revlog_prefix(&lp.policy.name));
    let mut head: Option<(i64, String, usize)> = None;
    for (i, d) in lp.destinations.iter().enumerate() {
        let listed = d.list(&prefix).await.map_err(|e| {
            Error::new(
                Kind::Storage,
                format!(
                    "destination {:?} ({}): listing {prefix}: {}",
                    d.name,
                    d.url,
                    describe_store_error(&e)
                ),
            )
        })?;
        for o in listed {
            if let Some(RevlogObject::SegmentManifest { last, .. }) =
                parse_revlog_key(&lp.policy.name, &o.key)
                && head.as_ref().is_none_or(|(h, _, _)| last > *h)
            {
                head = Some((last, o.key, i));
            }
        }
    }
    let Some((last, key, i)) = head else {
        return Ok(None);
    };
    // Without the fingerprint (a manifest of an older lifeboat, or unreadable now) the resume
    // still checks the cluster's revision, only not its content.
    let d = &lp.destinations[i];
    let digest = match d.get_small(&key).await {
        Ok(b) => serde_json::from_slice::<SegmentManifest>(&b)
            .ok()
            .and_then(|m| m.last_revision_events_sha256)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok()),
        Err(e) => {
            warn!(key = %key, destination = %d.name, error = %describe_store_error(&e), "Cannot read the newest segment's manifest; resuming without comparing the last revision's fingerprint");
            None
        }
    };
    Ok(Some((last, digest)))
}

/// The newest timeline of `lp` that a full backup of cluster `cluster_id` at `effective`
/// revision anchors, if any: what a backup records in its manifest.
pub async fn anchoring_timeline(
    lp: &LoadedPolicy,
    cluster_id: &str,
    effective: i64,
) -> Option<TimelineId> {
    let (tls, _) = timelines(lp).await;
    tls.into_iter()
        .filter(|t| t.cluster_id == cluster_id)
        .max_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)))
        .filter(|t| t.start_revision <= effective + 1)
        .map(|t| t.id)
}

/// Why a watch ended.
enum Ended {
    /// Stop asked for, or the writer lock lost.
    Stopped,
    /// The stream broke (member died, no leader, stalled): resume elsewhere at `next`.
    Reconnect(String),
    /// A revision beyond the next one arrived.
    Gap { expected: i64, got: i64 },
    /// Continuity is lost for `reason` (the resume point compacted away, another cluster, a
    /// cluster restored from an older backup): a new timeline must begin. Says why in words.
    Lost(TimelineReason, String),
}

/// A sealed segment waiting to be committed.
struct Sealed {
    path: PathBuf,
    timeline: Timeline,
    totals: codec::Totals,
    first_observed: DateTime<Utc>,
    last_observed: DateTime<Utc>,
    quiet_until: Option<DateTime<Utc>>,
    catchup: bool,
    source: SegmentSource,
    /// The fingerprint of `totals.last_revision`.
    last_digest: Option<[u8; 32]>,
}

/// The segment being written.
struct Open {
    path: PathBuf,
    file: std::fs::File,
    writer: codec::Writer,
    first_observed: Option<(DateTime<Utc>, Instant)>,
    last_observed: Option<DateTime<Utc>>,
    quiet_until: Option<DateTime<Utc>>,
    catchup: bool,
    /// Leases recorded in this segment.
    leases: HashSet<i64>,
}

impl Open {
    fn new(space: &RunSpace, n: u64) -> Result<Self> {
        let path = space.path(&format!("seg-{n:08}.part"));
        let mut file = super::create_private_file(&path)
            .map_err(|e| super::io_err(&path, "cannot create revision-log spool file", e))?;
        let mut writer = codec::Writer::new();
        file.write_all(&writer.start())
            .map_err(|e| super::io_err(&path, "writing", e))?;
        Ok(Self {
            path,
            file,
            writer,
            first_observed: None,
            last_observed: None,
            quiet_until: None,
            catchup: false,
            leases: HashSet::new(),
        })
    }

    /// Append `r`; its bytes.
    fn write(&mut self, r: &Record) -> Result<Vec<u8>> {
        let b = self.writer.record(r);
        self.file
            .write_all(&b)
            .map_err(|e| super::io_err(&self.path, "writing", e))?;
        Ok(b)
    }

    /// Forget everything after `len` bytes (a revision cut off mid-stream).
    fn rollback(&mut self, writer: codec::Writer) -> Result<()> {
        let len = writer.len();
        self.writer = writer;
        self.file
            .set_len(len)
            .and_then(|()| self.file.seek(std::io::SeekFrom::Start(len)).map(|_| ()))
            .map_err(|e| super::io_err(&self.path, "truncating", e))
    }

    /// Finish the segment; `None` if it holds no revision (the file is removed).
    /// `last` is the fingerprint of the last revision written, recorded if it is this one's.
    fn seal(
        mut self,
        timeline: &Timeline,
        member: &Member,
        last: Option<(i64, [u8; 32])>,
    ) -> Result<Option<Sealed>> {
        let Some((end, totals)) = self.writer.finish() else {
            let _ = std::fs::remove_file(&self.path);
            return Ok(None);
        };
        self.file
            .write_all(&end)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| super::io_err(&self.path, "sealing", e))?;
        let (first, _) = self.first_observed.expect("a revision was written");
        let last_digest = last
            .filter(|(r, _)| *r == totals.last_revision)
            .map(|(_, d)| d);
        Ok(Some(Sealed {
            path: self.path,
            timeline: timeline.clone(),
            totals,
            first_observed: first,
            last_observed: self.last_observed.unwrap_or(first),
            quiet_until: self.quiet_until,
            catchup: self.catchup,
            last_digest,
            source: SegmentSource {
                member: format!("{:x}", member.id),
                endpoint: member.endpoint.clone(),
                etcd_version: member.version.clone(),
                host: host(),
            },
        }))
    }
}

/// One writer's session: pick the timeline and the resume point, then watch, seal and hand
/// segments to the committer until stopped, the lock is lost, or something fails.
async fn session(
    lp: &Arc<LoadedPolicy>,
    pitr: &PitrSpec,
    status: &Arc<RevlogStatus>,
    stop: &CancellationToken,
    lost: &CancellationToken,
) -> Result<()> {
    let p = &lp.policy;
    let run_id = BackupId::new(Utc::now(), rand::random::<u32>());
    let (space, _) = RunSpace::claim(lp, &run_id)?;
    remove_staged_segments(lp);
    let (tx, rx) = mpsc::unbounded_channel::<Sealed>();
    let committer_stop = CancellationToken::new();
    let committer = tokio::spawn(committer(
        lp.clone(),
        rx,
        status.clone(),
        committer_stop.clone(),
    ));
    let anchor_stop = CancellationToken::new();
    let result = stream(lp, pitr, status, stop, lost, &space, &tx, &anchor_stop).await;
    drop(tx);
    // Let the committer finish what was sealed, within reason, then stop it.
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while !committer.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if drained.is_err() {
        warn!(policy = %p.name, "Segments still uncommitted after 60s; the next writer resumes after the last committed one");
    }
    committer_stop.cancel();
    anchor_stop.cancel();
    let _ = committer.await;
    drop(space);
    result
}

/// Remove the partial segment uploads a writer killed mid-upload left at the policy's local
/// destinations (object_store's `KEY#N` staging files: invisible to listings, up to a
/// segment's size each). Only a lock holder calls this, before it uploads anything, so every
/// such file belongs to a writer that is gone or has lost the lock; the latter's upload then
/// fails at its rename and the segment is written again by whoever resumes after it.
fn remove_staged_segments(lp: &LoadedPolicy) {
    let prefix = revlog_prefix(&lp.policy.name);
    for d in &lp.destinations {
        for (path, bytes) in d.remove_staged_uploads(&prefix, |o| o.contains(".seg.")) {
            warn!(path = %path.display(), bytes, destination = %d.name, "Removed the partial segment upload of a writer that is gone");
        }
    }
}

/// What the stream knows between reconnects.
struct State {
    timeline: Timeline,
    /// The next revision expected; everything before it is written.
    next: i64,
    /// A gap already seen at this revision (a second one ends the timeline).
    gap_at: Option<i64>,
    /// The fingerprint of the last revision written (`next - 1`), if known: what a resumed
    /// watch compares the cluster's history with.
    last_digest: Option<(i64, [u8; 32])>,
    segment: Option<Open>,
    segments_opened: u64,
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    lp: &Arc<LoadedPolicy>,
    pitr: &PitrSpec,
    status: &Arc<RevlogStatus>,
    stop: &CancellationToken,
    lost: &CancellationToken,
    space: &RunSpace,
    tx: &mpsc::UnboundedSender<Sealed>,
    anchor_stop: &CancellationToken,
) -> Result<()> {
    let p = &lp.policy;
    let (mut client, mut member) = connect_member(lp, None, true).await?;
    let (tls, problems) = timelines(lp).await;
    if !problems.is_empty() {
        return Err(Error::new(
            Kind::Storage,
            format!(
                "revision log of policy {}: cannot read where it stands, so it does not start \
                 (a wrong resume point would leave a gap):\n  {}",
                p.name,
                problems.join("\n  ")
            ),
        ));
    }
    let cluster_hex = format!("{:x}", member.cluster_id);
    let newest = tls.iter().max_by_key(|t| (t.started_at, t.id.clone()));
    let mut state = match newest {
        Some(t) if t.cluster_id == cluster_hex => {
            // The watch checks that the cluster still holds what the log ends with (its
            // revision, and the last revision's fingerprint) before anything is written.
            let (next, last_digest) = match committed_head(lp, &t.id).await? {
                Some((last, digest)) => (last + 1, digest.map(|d| (last, d))),
                None => (t.start_revision, None),
            };
            status.committed_revision.store(next - 1, Ordering::Relaxed);
            info!(policy = %p.name, timeline = %t.id, next, "Resuming the revision log");
            State {
                timeline: t.clone(),
                next,
                gap_at: None,
                last_digest,
                segment: None,
                segments_opened: 0,
            }
        }
        Some(t) => {
            warn!(policy = %p.name, was = %t.cluster_id, now = %cluster_hex, "Another cluster answers; starting a new timeline");
            new_timeline(
                lp,
                &mut client,
                TimelineReason::ClusterChanged,
                Some(t),
                status,
                anchor_stop,
            )
            .await?
        }
        None => {
            new_timeline(
                lp,
                &mut client,
                TimelineReason::Initial,
                None,
                status,
                anchor_stop,
            )
            .await?
        }
    };
    loop {
        let ended = watch(
            space,
            pitr,
            status,
            stop,
            lost,
            &mut client,
            &member,
            &mut state,
            tx,
        )
        .await?;
        let (reason, why) = match ended {
            Ended::Stopped => {
                seal_current(&mut state, &member, tx)?;
                return Ok(());
            }
            Ended::Reconnect(why) => {
                status.reconnects.fetch_add(1, Ordering::Relaxed);
                warn!(policy = %p.name, member = %member.endpoint, next = state.next, reason = %why, "Watch ended; resuming on a healthy member");
                tokio::time::sleep(Duration::from_millis(500)).await;
                (client, member) = reconnect(lp, &member.endpoint, stop).await?;
                continue;
            }
            Ended::Gap { expected, got } if state.gap_at != Some(expected) => {
                status.reconnects.fetch_add(1, Ordering::Relaxed);
                warn!(policy = %p.name, expected, got, "Revision missing from the watch; resuming once more at it");
                state.gap_at = Some(expected);
                (client, member) = reconnect(lp, &member.endpoint, stop).await?;
                continue;
            }
            Ended::Gap { expected, got } => {
                status.reconnects.fetch_add(1, Ordering::Relaxed);
                let why = format!(
                    "revision {expected} is missing from the watch again (it went on at {got})"
                );
                (TimelineReason::Gap, why)
            }
            Ended::Lost(reason, why) => (reason, why),
        };
        // Whatever broke continuity, the open segment (all of the old history) is committed and
        // a new timeline begins, with its own full backup.
        warn!(policy = %p.name, resume = state.next, reason = ?reason, why = %why, "Continuity of the revision log is lost; starting a new timeline and a full backup");
        seal_current(&mut state, &member, tx)?;
        if reason == TimelineReason::ClusterChanged {
            (client, member) = connect_member(lp, None, true).await?;
        }
        let old = state.timeline.clone();
        state = new_timeline(lp, &mut client, reason, Some(&old), status, anchor_stop).await?;
    }
}

async fn reconnect(
    lp: &LoadedPolicy,
    avoid: &str,
    stop: &CancellationToken,
) -> Result<(Client, Member)> {
    let mut delay = Duration::from_millis(500);
    let t0 = Instant::now();
    loop {
        match connect_member(lp, Some(avoid), true).await {
            Ok(x) => return Ok(x),
            Err(e) if t0.elapsed() > Duration::from_secs(120) || stop.is_cancelled() => {
                return Err(e);
            }
            Err(e) => {
                warn!(error = %e.chain(), "No member to resume the watch on yet");
                sleep_or_stop(delay, stop).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn seal_current(
    state: &mut State,
    member: &Member,
    tx: &mpsc::UnboundedSender<Sealed>,
) -> Result<()> {
    if let Some(seg) = state.segment.take()
        && let Some(s) = seg.seal(&state.timeline, member, state.last_digest)?
    {
        let _ = tx.send(s);
    }
    Ok(())
}

/// The cluster's current revision, read linearizably (through the leader).
async fn current_revision(client: &mut Client) -> Result<i64> {
    let r = client
        .get(
            vec![0u8],
            Some(GetOptions::new().with_limit(1).with_keys_only()),
        )
        .await
        .map_err(|e| etcd_error("reading the current revision", &e))?;
    Ok(r.header().map_or(0, |h| h.revision()))
}

/// Start a timeline at the cluster's current revision + 1: write `timeline.json` at every
/// destination, and take a full backup that anchors it, in the background, until one commits.
async fn new_timeline(
    lp: &Arc<LoadedPolicy>,
    client: &mut Client,
    reason: TimelineReason,
    parent: Option<&Timeline>,
    status: &Arc<RevlogStatus>,
    anchor_stop: &CancellationToken,
) -> Result<State> {
    let p = &lp.policy;
    let head = current_revision(client).await?;
    let cluster_id = client
        .status()
        .await
        .map_err(|e| etcd_error("reading the cluster id", &e))?
        .header()
        .map_or(0, |h| h.cluster_id());
    let t = Timeline {
        format_version: REVLOG_FORMAT_VERSION,
        id: BackupId::new(Utc::now(), rand::random::<u32>()),
        policy: p.name.clone(),
        cluster_id: format!("{cluster_id:x}"),
        start_revision: head + 1,
        started_at: Utc::now(),
        reason,
        parent: parent.map(|t| t.id.clone()),
    };
    let key = timeline_key(&p.name, &t.id);
    let body = serde_json::to_vec_pretty(&t).expect("timeline serializes");
    for d in &lp.destinations {
        if let Err(e) = d.put_new(&key, body.clone()).await {
            let msg = format!(
                "destination {:?} ({}): writing {key}: {}",
                d.name,
                d.url,
                describe_store_error(&e)
            );
            if d.required {
                return Err(Error::new(Kind::Storage, format!("revision log: {msg}")));
            }
            warn!("{msg}; it is optional, so the log goes on without it");
        }
    }
    status.timelines.fetch_add(1, Ordering::Relaxed);
    info!(policy = %p.name, timeline = %t.id, start = t.start_revision, reason = ?reason, "New revision-log timeline; taking a full backup to anchor it");
    let lp2 = lp.clone();
    let stop = anchor_stop.clone();
    let tl = t.id.clone();
    // The backup future is not provably `Send` (rust-lang/rust#102211), so it runs on its own
    // blocking thread, as the daemon's runs do.
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(anchor(lp2, tl, stop)));
    Ok(State {
        timeline: t,
        next: head + 1,
        gap_at: None,
        last_digest: None,
        segment: None,
        segments_opened: 0,
    })
}

/// Take full backups until one commits that anchors `tl` (a restore into a timeline needs a
/// full backup at or after its start).
async fn anchor(lp: Arc<LoadedPolicy>, tl: TimelineId, stop: CancellationToken) {
    let mut delay = Duration::from_secs(5);
    loop {
        match super::backup::backup_until(&lp, &stop).await {
            Ok(super::Outcome::Committed(r)) if r.manifest.timeline.as_ref() == Some(&tl) => {
                info!(policy = %lp.policy.name, timeline = %tl, backup = %r.manifest.id, "Timeline anchored by a full backup");
                return;
            }
            Ok(super::Outcome::Committed(r)) => {
                warn!(policy = %lp.policy.name, timeline = %tl, backup = %r.manifest.id, "The full backup does not anchor the new timeline; taking another");
            }
            Ok(super::Outcome::Skipped { holder }) => {
                info!(policy = %lp.policy.name, holder = %holder, "Another host backs up this slot; waiting for a backup that anchors the timeline");
            }
            Err(e) if e.kind() == Kind::Cancelled => return,
            Err(e) => {
                error!(policy = %lp.policy.name, timeline = %tl, error = %e.chain(), "The full backup anchoring a new timeline failed; trying again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(300));
    }
}

/// Watch from `state.next` until the stream ends; write every complete revision to the open
/// segment and seal it by size and age.
#[allow(clippy::too_many_arguments)]
async fn watch(
    space: &RunSpace,
    pitr: &PitrSpec,
    status: &RevlogStatus,
    stop: &CancellationToken,
    lost: &CancellationToken,
    client: &mut Client,
    member: &Member,
    state: &mut State,
    tx: &mpsc::UnboundedSender<Sealed>,
) -> Result<Ended> {
    // A cluster restored from an older backup keeps its cluster id. Its revision is behind the
    // log's until it has written past it; after that only its content tells: so the watch
    // starts at the log's last revision and compares that revision's events with the
    // fingerprint recorded when it was written, before writing anything after it.
    let head = match current_revision(client).await {
        Ok(h) => h,
        Err(e) => return Ok(Ended::Reconnect(e.chain())),
    };
    if head < state.next - 1 {
        return Ok(Ended::Lost(
            TimelineReason::RevisionBackwards,
            format!(
                "the cluster's revision is {head}, behind the log's last revision {}",
                state.next - 1
            ),
        ));
    }
    let mut verify = state
        .last_digest
        .filter(|(l, _)| *l == state.next - 1)
        .map(|(l, d)| (l, d, codec::RevisionDigest::default(), false));
    let from = verify.as_ref().map_or(state.next, |(l, ..)| *l);
    let opts = WatchOptions::new()
        .with_all_keys()
        .with_start_revision(from)
        .with_progress_notify()
        .with_fragment();
    info!(member = %member.endpoint, from, timeline = %state.timeline.id, "Watching member");
    let mut wc = client.watch_client().max_decoding_message_size(256 << 20);
    let mut stream = match wc.watch(vec![0u8], Some(opts)).await {
        Ok(s) => s,
        Err(e) => return Ok(Ended::Reconnect(describe_etcd_error(&e))),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_message = Instant::now();
    let mut last_progress_request = Instant::now();
    // The revision being written (its events may span fragments) and the segment's state
    // before its REV record, to roll back to if the stream breaks inside it.
    let mut in_rev: Option<InRev> = None;
    let cluster = member.cluster_id;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = tick.tick() => {
                // Seal by age at a revision boundary; keep the stream honest with progress
                // requests, and give it up when it has gone silent.
                if in_rev.is_none() {
                    maybe_seal(state, member, pitr, tx, true)?;
                }
                if last_progress_request.elapsed() >= Duration::from_secs(5) {
                    last_progress_request = Instant::now();
                    if stream.request_progress().await.is_err() {
                        rollback(state, &mut in_rev)?;
                        return Ok(Ended::Reconnect("the watch request stream closed".into()));
                    }
                }
                if last_message.elapsed() > Duration::from_secs(20) {
                    rollback(state, &mut in_rev)?;
                    return Ok(Ended::Reconnect("no message for 20s".into()));
                }
                continue;
            }
            () = stop.cancelled() => { rollback(state, &mut in_rev)?; return Ok(Ended::Stopped); }
            () = lost.cancelled() => { rollback(state, &mut in_rev)?; return Ok(Ended::Stopped); }
        };
        last_message = Instant::now();
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => {
                rollback(state, &mut in_rev)?;
                return Ok(Ended::Reconnect("the member ended the watch".into()));
            }
            Err(e) => {
                rollback(state, &mut in_rev)?;
                return Ok(Ended::Reconnect(describe_etcd_error(&e)));
            }
        };
        if let Some(h) = resp.header() {
            if h.cluster_id() != 0 && h.cluster_id() != cluster {
                rollback(state, &mut in_rev)?;
                return Ok(Ended::Lost(
                    TimelineReason::ClusterChanged,
                    format!(
                        "cluster {:x} answers instead of {cluster:x}",
                        h.cluster_id()
                    ),
                ));
            }
            status
                .cluster_revision
                .fetch_max(h.revision(), Ordering::Relaxed);
        }
        if resp.compact_revision() > 0 {
            rollback(state, &mut in_rev)?;
            return Ok(Ended::Lost(
                TimelineReason::Compacted,
                format!(
                    "history was compacted at {}, past the resume point {}",
                    resp.compact_revision(),
                    state.next
                ),
            ));
        }
        if resp.canceled() {
            rollback(state, &mut in_rev)?;
            return Ok(Ended::Reconnect(format!(
                "the watch was canceled: {}",
                resp.cancel_reason()
            )));
        }
        let header_rev = resp.header().map_or(0, |h| h.revision());
        let events = resp.events();
        if let Some((l, _, got, seen)) = &mut verify {
            // Events of the log's last revision are compared, not written; the first response
            // past it settles the comparison. A progress notification is only sent to a watch
            // that has caught up, so one before revision `l` arrived means it has no events.
            let mut past = false;
            for ev in events {
                let Some(kv) = ev.kv() else { continue };
                if kv.mod_revision() == *l {
                    got.add_encoded(&codec::encode_event(&event_of(ev.event_type(), kv)));
                    *seen = true;
                } else if kv.mod_revision() > *l {
                    past = true;
                    break;
                }
            }
            let settled =
                past || (*seen && !resp.0.fragment) || (!resp.created() && events.is_empty());
            if settled {
                let (l, want, got, seen) = verify.take().expect("verifying");
                if !seen || got.finish() != want {
                    return Ok(Ended::Lost(
                        TimelineReason::Diverged,
                        format!("revision {l} reads differently from what the log recorded for it"),
                    ));
                }
            }
            if !past {
                continue;
            }
        }
        if events.is_empty() {
            // A progress notification: nothing after `next - 1` as of now.
            if in_rev.is_none()
                && !resp.created()
                && header_rev == state.next - 1
                && let Some(seg) = &mut state.segment
            {
                seg.quiet_until = Some(Utc::now());
            }
            continue;
        }
        let now = Utc::now();
        let last_in_resp = events
            .last()
            .and_then(|e| e.kv())
            .map_or(0, |kv| kv.mod_revision());
        let catchup = header_rev > last_in_resp
            || events
                .first()
                .and_then(|e| e.kv())
                .map(|kv| kv.mod_revision())
                != Some(last_in_resp);
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            match &in_rev {
                Some(r) if rev == r.rev => {}
                Some(r) if rev < r.rev => continue, // duplicate inside the stream
                _ => {
                    if let Some(r) = in_rev.take() {
                        r.complete(state);
                    }
                    if rev < state.next {
                        continue; // a duplicate of a revision already written
                    }
                    if rev > state.next {
                        rollback(state, &mut in_rev)?;
                        return Ok(Ended::Gap {
                            expected: state.next,
                            got: rev,
                        });
                    }
                    let seg = open_segment(state, space)?;
                    in_rev = Some(InRev {
                        rev,
                        before: seg.writer.clone(),
                        digest: codec::RevisionDigest::default(),
                    });
                    seg.write(&Record::Rev {
                        revision: rev,
                        observed_ns: now.timestamp_nanos_opt().unwrap_or(0),
                        flags: if catchup { FLAG_CATCHUP } else { 0 },
                    })?;
                    seg.first_observed.get_or_insert((now, Instant::now()));
                    seg.last_observed = Some(now);
                    seg.quiet_until = None;
                    seg.catchup |= catchup;
                    if status.oldest_pending_ms.load(Ordering::Relaxed) == 0 {
                        status
                            .oldest_pending_ms
                            .store(now.timestamp_millis(), Ordering::Relaxed);
                    }
                }
            }
            let seg = state.segment.as_mut().expect("a segment is open");
            let event = event_of(ev.event_type(), kv);
            if let Event::Put { lease, .. } = event
                && lease != 0
                && seg.leases.insert(lease)
            {
                let ttl = lease_ttl(client, lease).await;
                seg.write(&Record::Lease { id: lease, ttl })?;
            }
            let record = seg.write(&Record::Event(event))?;
            in_rev
                .as_mut()
                .expect("a revision is open")
                .digest
                .add_encoded(&record);
        }
        // Every revision of a response is complete unless the response is a fragment.
        if !resp.0.fragment
            && let Some(r) = in_rev.take()
        {
            let rev = r.rev;
            r.complete(state);
            state.gap_at = None;
            status.received_revision.store(rev, Ordering::Relaxed);
            maybe_seal(state, member, pitr, tx, false)?;
        }
    }
}

/// The open segment, opening a new one if the last was sealed.
fn open_segment<'a>(state: &'a mut State, space: &RunSpace) -> Result<&'a mut Open> {
    if state.segment.is_none() {
        state.segments_opened += 1;
        state.segment = Some(Open::new(space, state.segments_opened)?);
    }
    Ok(state.segment.as_mut().expect("just opened"))
}

/// The revision being written: its events may span responses (fragments).
struct InRev {
    rev: i64,
    /// The segment's state before its `REV` record, to roll back to if the stream breaks.
    before: codec::Writer,
    digest: codec::RevisionDigest,
}

impl InRev {
    /// All of the revision's events are written.
    fn complete(self, state: &mut State) {
        state.next = self.rev + 1;
        state.last_digest = Some((self.rev, self.digest.finish()));
    }
}

/// The event as the segment records it.
fn event_of(t: EventType, kv: &etcd_client::KeyValue) -> Event {
    match t {
        EventType::Put => Event::Put {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        },
        EventType::Delete => Event::Delete {
            key: kv.key().to_vec(),
            mod_revision: kv.mod_revision(),
        },
    }
}

/// Roll the open segment back to before the revision cut off mid-stream, if any.
fn rollback(state: &mut State, in_rev: &mut Option<InRev>) -> Result<()> {
    if let Some(r) = in_rev.take()
        && let Some(seg) = &mut state.segment
    {
        seg.rollback(r.before)?;
    }
    Ok(())
}

/// Seal the open segment when it is big enough, or (`by_age`) old enough.
fn maybe_seal(
    state: &mut State,
    member: &Member,
    pitr: &PitrSpec,
    tx: &mpsc::UnboundedSender<Sealed>,
    by_age: bool,
) -> Result<()> {
    let Some(seg) = &state.segment else {
        return Ok(());
    };
    let full = seg.writer.len() >= pitr.segment_max_bytes;
    let old = by_age
        && seg
            .first_observed
            .is_some_and(|(_, at)| at.elapsed() >= pitr.segment_max_age);
    if full || old {
        seal_current(state, member, tx)?;
    }
    Ok(())
}

/// The granted TTL of lease `id` (seconds), `-1` if it cannot be had (already gone).
async fn lease_ttl(client: &mut Client, id: i64) -> i64 {
    match tokio::time::timeout(Duration::from_secs(2), client.lease_time_to_live(id, None)).await {
        Ok(Ok(r)) if r.granted_ttl() > 0 => r.granted_ttl(),
        _ => -1,
    }
}

/// Commit sealed segments in order: ship each to every destination and write its manifest;
/// retry a failure until it succeeds (later segments wait, the watch does not).
async fn committer(
    lp: Arc<LoadedPolicy>,
    mut rx: mpsc::UnboundedReceiver<Sealed>,
    status: Arc<RevlogStatus>,
    stop: CancellationToken,
) {
    while let Some(s) = rx.recv().await {
        let mut delay = Duration::from_secs(1);
        loop {
            match commit_segment(&lp, &s).await {
                Ok(stored) => {
                    status
                        .committed_revision
                        .store(s.totals.last_revision, Ordering::Relaxed);
                    status
                        .committed_at_ms
                        .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
                    status.segments.fetch_add(1, Ordering::Relaxed);
                    status.stored_bytes.fetch_add(stored, Ordering::Relaxed);
                    // The oldest pending revision is now the first of whatever is still open.
                    if status.received_revision.load(Ordering::Relaxed) <= s.totals.last_revision {
                        status.oldest_pending_ms.store(0, Ordering::Relaxed);
                    }
                    let _ = std::fs::remove_file(&s.path);
                    break;
                }
                Err(e) => {
                    status.commit_failures.fetch_add(1, Ordering::Relaxed);
                    error!(policy = %lp.policy.name, first = s.totals.first_revision, last = s.totals.last_revision, error = %e.chain(), "Committing a revision-log segment failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// Ship one sealed segment and commit it; the stored bytes.
async fn commit_segment(lp: &LoadedPolicy, s: &Sealed) -> Result<u64> {
    let p = &lp.policy;
    let t = &s.totals;
    let tl = &s.timeline.id;
    let manifest_key = segment_manifest_key(&p.name, tl, t.first_revision, t.last_revision);
    // A segment already committed under this name (by a writer that lost its lock) is kept if
    // it holds the same revisions; never overwritten.
    for d in &lp.destinations {
        if let Ok(b) = d.get_small(&manifest_key).await {
            let theirs: SegmentManifest = serde_json::from_slice(&b).map_err(|e| {
                Error::new(
                    Kind::Verify,
                    format!("{manifest_key} at {:?} is unreadable: {e}", d.name),
                )
            })?;
            warn!(key = %manifest_key, destination = %d.name, their_sha = %theirs.plaintext_sha256, "A segment with this range is already committed; keeping it and dropping ours");
            return Ok(0);
        }
    }
    let encrypted = !lp.recipients.is_empty();
    let data_key = segment_data_key(&p.name, tl, t.first_revision, t.last_revision, encrypted);
    let want = t.plaintext_sha256;
    let want_len = t.plaintext_len;
    let Shipped {
        sealed,
        landed,
        mut skipped,
    } = ship_file(lp, &s.path, &data_key, want_len, |n, sha| {
        (n != want_len || sha != want).then(|| {
            Error::new(
                Kind::Io,
                format!(
                    "{} changed on disk before it was uploaded; the segment is dropped",
                    s.path.display()
                ),
            )
        })
    })
    .await?;
    let live = count_at(lp, t.last_revision).await;
    let m = SegmentManifest {
        format_version: REVLOG_FORMAT_VERSION,
        policy: p.name.clone(),
        timeline: tl.clone(),
        cluster_id: s.timeline.cluster_id.clone(),
        first_revision: t.first_revision,
        last_revision: t.last_revision,
        revisions: t.revisions,
        events: t.events,
        max_events_per_revision: t.max_events_per_revision,
        max_revision_bytes: t.max_revision_bytes,
        first_observed_at: s.first_observed,
        last_observed_at: s.last_observed,
        quiet_until: s.quiet_until,
        catchup: s.catchup,
        plaintext_size: t.plaintext_len,
        plaintext_sha256: hex::encode(t.plaintext_sha256),
        stored: stored_object(lp, &data_key, &sealed),
        live_keys_at_last_revision: live,
        last_revision_events_sha256: s.last_digest.map(hex::encode),
        source: s.source.clone(),
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
    };
    let body = serde_json::to_vec_pretty(&m).expect("manifest serializes");
    commit(
        &lp.destinations,
        &landed,
        &manifest_key,
        body,
        &data_key,
        &mut skipped,
    )
    .await?;
    for why in &skipped {
        warn!(key = %manifest_key, "{why}");
    }
    info!(policy = %p.name, timeline = %tl, first = t.first_revision, last = t.last_revision, revisions = t.revisions, events = t.events, stored = sealed.stored_size, "Revision-log segment committed");
    Ok(sealed.stored_size)
}

/// Keys the cluster counts at `rev` (a count-only range), if it still can.
async fn count_at(lp: &LoadedPolicy, rev: i64) -> Option<u64> {
    let (mut c, _) = connect_member(lp, None, false).await.ok()?;
    let opts = GetOptions::new()
        .with_range(vec![0u8])
        .with_count_only()
        .with_revision(rev);
    let r = tokio::time::timeout(Duration::from_secs(10), c.get(vec![0u8], Some(opts)))
        .await
        .ok()?
        .ok()?;
    u64::try_from(r.count()).ok()
}
