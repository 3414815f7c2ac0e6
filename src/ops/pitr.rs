//! Point-in-time restore: the newest full backup at or before the target, plus the revision
//! log's segments after it, replayed into a throwaway etcd on loopback, one transaction per
//! original revision, each asserted to land at its recorded revision, with every lease kept
//! alive for the whole replay. The result is snapshotted, checked (effective revision, live key
//! count against the log) and staged atomically like any restore.

use super::LoadedPolicy;
use super::etcdutl::{RestoreTool, which};
use super::fetch::{Identities, download, fetch_to};
use super::inspect::{Hashing, inspect_file};
use super::list::{ListedBackup, list};
use super::restore::{Output, Staged, publish};
use super::revlog::list_revlog;
use super::spool::{DRILL_PID_FILE, RunSpace};
use super::verify::prove;
use super::{RemoveOnDrop, io_err};
use crate::error::{Error, Kind, Result};
use crate::etcd::describe_etcd_error;
use crate::etcd::snapshot::StreamAccount;
use crate::model::BackupId;
use crate::revlog::codec::{self, Event};
use crate::revlog::plan::{FullBackup, Plan, Target};
use crate::revlog::{SegmentManifest, TimelineId};
use crate::runbook::RestoreParams;
use chrono::{DateTime, Utc};
use etcd_client::{Client, ConnectOptions, GetOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::info;

/// A planned point-in-time restore, to show before anything is downloaded.
#[derive(Debug, Clone)]
pub struct PitrPlan {
    pub plan: Plan,
    pub target: Target,
    /// The full backup to start from.
    pub full: ListedBackup,
    /// The segments to replay, with the destinations holding each.
    pub segments: Vec<(SegmentManifest, Vec<String>)>,
}

impl PitrPlan {
    /// Revisions to replay (an upper bound for a time target).
    pub fn revisions(&self) -> i64 {
        self.plan.to_revision - self.plan.from_revision
    }

    /// Stored bytes to download.
    pub fn download_bytes(&self) -> u64 {
        self.full.manifest.stored.size
            + self
                .segments
                .iter()
                .map(|(s, _)| s.stored.size)
                .sum::<u64>()
    }
}

/// What the replay did.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The revision the restored data is at.
    pub revision: i64,
    /// When that revision was observed by the streamer.
    pub observed_at: Option<DateTime<Utc>>,
    pub revisions: u64,
    pub events: u64,
    pub leases_granted: u64,
    /// Live key counts compared with the log at segment ends: (revision, keys).
    pub counts_checked: Vec<(i64, u64)>,
    /// The etcd that replayed, and its version line.
    pub etcd: String,
    pub seconds: f64,
}

fn usage(msg: String) -> Error {
    Error::new(Kind::Usage, msg)
}

/// Plan a restore of `lp` to `target` (in `timeline`, if given).
pub async fn plan(lp: &LoadedPolicy, target: Target, timeline: Option<&str>) -> Result<PitrPlan> {
    let timeline = timeline
        .map(|t| {
            TimelineId::parse(t).ok_or_else(|| {
                usage(format!(
                    "--timeline {t:?} is not a timeline id (YYYYMMDDTHHMMSSZ-xxxxxx)"
                ))
            })
        })
        .transpose()?;
    let (backups, log) = tokio::join!(list(lp), list_revlog(lp));
    let fulls: Vec<FullBackup> = backups
        .backups
        .iter()
        .map(|b| FullBackup {
            id: b.manifest.id.clone(),
            timeline: b.manifest.timeline.clone(),
            effective_revision: b
                .manifest
                .snapshot
                .effective_revision
                .unwrap_or(b.manifest.snapshot.revision),
            finished_at: b.manifest.finished_at,
        })
        .collect();
    let problems: Vec<String> = backups
        .problems
        .iter()
        .chain(&log.problems)
        .cloned()
        .collect();
    let plan = log
        .log(fulls)
        .plan(target, timeline.as_ref())
        .map_err(|e| {
            let extra = if problems.is_empty() {
                String::new()
            } else {
                format!(
                    "\nsome destinations had problems, which may explain it:\n  {}",
                    problems.join("\n  ")
                )
            };
            Error::new(
                Kind::Verify,
                format!(
                    "policy {}: the stored backups cannot restore that point: {e}{extra}",
                    lp.policy.name
                ),
            )
        })?;
    let full = backups
        .backups
        .into_iter()
        .find(|b| b.manifest.id == plan.full)
        .expect("the planner picks listed backups");
    let segments = plan
        .segments
        .iter()
        .map(|&(f, l)| {
            log.segments
                .iter()
                .find(|(s, _)| {
                    s.timeline == plan.timeline && s.first_revision == f && s.last_revision == l
                })
                .cloned()
                .expect("the planner picks listed segments")
        })
        .collect();
    Ok(PitrPlan {
        plan,
        target,
        full,
        segments,
    })
}

/// `major.minor` of a version string such as `3.4.23` or `etcd Version: 3.5.1`.
fn minor(v: &str) -> Option<(u32, u32)> {
    let v = v.rsplit(' ').next()?.trim();
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The etcd to replay with: `given`, or `etcd` on `PATH`; it must be the source's minor version.
fn replay_etcd(given: Option<&Path>, source_version: &str) -> Result<(PathBuf, String)> {
    let bin = match given {
        Some(p) => p.to_owned(),
        None => which("etcd").ok_or_else(|| {
            usage(
                "no etcd on PATH to replay the revision log into; install etcd of the source's \
                 version or pass --replay-etcd PATH"
                    .into(),
            )
        })?,
    };
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| usage(format!("cannot run {} --version: {e}", bin.display())))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    match (minor(&line), minor(source_version)) {
        (Some(have), Some(want)) if have != want => Err(usage(format!(
            "the backup came from etcd {source_version} but {} is {line:?}; replay with the \
             same minor version (pass --replay-etcd /path/to/etcd-{}.{}), since revisions and \
             hashes are only reproduced exactly by the same storage code",
            bin.display(),
            want.0,
            want.1
        ))),
        (None, _) => Err(usage(format!(
            "{} --version printed {line:?}, not an etcd version",
            bin.display()
        ))),
        _ => Ok((bin, line)),
    }
}

fn loopback_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::new(Kind::Io, format!("cannot find a free loopback port: {e}")))
}

fn replay_err(what: &str, e: &etcd_client::Error) -> Error {
    let msg = describe_etcd_error(e);
    let hint = if msg.contains("user name") || msg.contains("permission denied") {
        "; the snapshot has etcd authentication enabled, which the replay does not support yet"
    } else {
        ""
    };
    Error::new(Kind::Etcd, format!("replay: {what}: {msg}{hint}"))
}

/// Restore `p` into `out`: stage its full backup, replay the segments into a throwaway etcd
/// (`etcd_bin`, or `etcd` on PATH, of the source's minor version), snapshot it, check it and
/// stage it.
pub async fn restore(
    lp: &LoadedPolicy,
    p: &PitrPlan,
    identities: &Identities,
    out: &Output,
    etcd_bin: Option<&Path>,
) -> Result<(Staged, Replayed)> {
    let started = Instant::now();
    out.preflight()?;
    let full = &p.full.manifest;
    let (etcd, version_line) = replay_etcd(etcd_bin, &full.member.etcd_version)?;
    let tool = RestoreTool::find()?;
    let run = BackupId::new(Utc::now(), rand::random::<u32>());
    let (space, _) = RunSpace::claim(lp, &run)?;

    // 1. The full backup, fetched and proved against its manifest.
    let dest = lp
        .destinations
        .iter()
        .find(|d| p.full.destinations.contains(&d.name))
        .ok_or_else(|| {
            Error::new(
                Kind::Storage,
                format!("no destination holds backup {}", full.id),
            )
        })?;
    let fetched = fetch_to(
        full.clone(),
        dest,
        identities,
        space.path("replay-full.part"),
    )
    .await?;
    prove(&fetched).await?;

    // 2. Restored into a data directory, and etcd started on it on loopback.
    let work = space.path(&format!("replay-{}", full.id));
    std::fs::create_dir(&work).map_err(|e| io_err(&work, "cannot create", e))?;
    let (client_port, peer_port) = (loopback_port()?, loopback_port()?);
    let peer = format!("http://127.0.0.1:{peer_port}");
    let url = format!("http://127.0.0.1:{client_port}");
    let data = work.join("data");
    let params = RestoreParams {
        name: Some("replay".into()),
        initial_cluster: Some(format!("replay={peer}")),
        initial_advertise_peer_urls: Some(peer.clone()),
        initial_cluster_token: Some("lifeboat-replay".into()),
        data_dir: Some(data.to_string_lossy().into_owned()),
        bump_revision: None,
        skip_hash_check: !full.snapshot.has_trailer,
    };
    tool.restore(&fetched.path, &params).await?;
    drop(fetched);
    let max_ops = p
        .segments
        .iter()
        .map(|(s, _)| s.max_events_per_revision)
        .max()
        .unwrap_or(0)
        .max(128);
    let max_bytes = p
        .segments
        .iter()
        .map(|(s, _)| s.max_revision_bytes)
        .max()
        .unwrap_or(0);
    // Room for the largest revision as one request, with per-op overhead.
    let request_limit = (max_bytes + max_ops * 256 + (2 << 20)).max(10 << 20);
    let log_path = work.join("etcd.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| io_err(&log_path, "cannot create", e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| io_err(&log_path, "cannot open", e))?;
    let mut cmd = tokio::process::Command::new(&etcd);
    cmd.args(["--name", "replay"])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--max-txn-ops", &max_ops.to_string()])
        .args(["--max-request-bytes", &request_limit.to_string()])
        .args(["--quota-backend-bytes", &(8u64 << 30).to_string()])
        // A long election timeout gives the snapshot's leases that much extra time when the
        // member is promoted; the keep-alives below do the rest.
        .args(["--heartbeat-interval", "500", "--election-timeout", "10000"])
        .args(["--snapshot-count", "100000000"]);
    if minor(&version_line).is_some_and(|v| v >= (3, 5)) {
        cmd.arg("--unsafe-no-fsync");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::new(Kind::Io, format!("cannot start {}: {e}", etcd.display())))?;
    // If this run dies, the next run of the policy stops this etcd (see ops::spool).
    if let Some(pid) = child.id() {
        let _ = std::fs::write(work.join(DRILL_PID_FILE), pid.to_string());
    }
    info!(etcd = %etcd.display(), client = %url, from = p.plan.from_revision, to = p.plan.to_revision, "Replaying the revision log into a throwaway etcd");
    let result = replay(lp, p, identities, &space, &url, request_limit as usize, out).await;
    let _ = child.kill().await;
    let (staged, mut replayed) = result.map_err(|e| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        if tail.is_empty() {
            e
        } else {
            Error::new(
                e.kind(),
                format!(
                    "{}\nthe replay etcd's last log lines:\n  {}",
                    e.message(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
                ),
            )
        }
    })?;
    replayed.etcd = format!("{} ({version_line})", etcd.display());
    replayed.seconds = started.elapsed().as_secs_f64();
    drop(space);
    Ok((staged, replayed))
}

/// Keeps leases alive while the replay runs.
struct Leases {
    add: mpsc::UnboundedSender<i64>,
    task: tokio::task::JoinHandle<()>,
}

impl Leases {
    fn start(client: Client) -> Self {
        let (add, mut rx) = mpsc::unbounded_channel::<i64>();
        let task = tokio::spawn(async move {
            let mut client = client;
            let mut kept: HashMap<
                i64,
                (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream),
            > = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    id = rx.recv() => match id {
                        Some(id) => {
                            if let std::collections::hash_map::Entry::Vacant(e) = kept.entry(id)
                                && let Ok(k) = client.lease_keep_alive(id).await
                            {
                                e.insert(k);
                            }
                        }
                        None => return,
                    },
                    _ = tick.tick() => {
                        for (keeper, stream) in kept.values_mut() {
                            if keeper.keep_alive().await.is_ok() {
                                let _ = tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
                            }
                        }
                    }
                }
            }
        });
        Self { add, task }
    }

    fn keep(&self, id: i64) {
        let _ = self.add.send(id);
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wait until the member at `url` answers; its client.
async fn connect(url: &str) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(60));
        match Client::connect([url], Some(opts)).await {
            Ok(mut c) => match c.status().await {
                Ok(_) => return Ok(c),
                Err(e) => last = describe_etcd_error(&e),
            },
            Err(e) => last = describe_etcd_error(&e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::new(
        Kind::Etcd,
        format!("replay: the throwaway etcd at {url} did not answer within 60s: {last}"),
    ))
}

async fn count_keys(client: &mut Client) -> Result<u64> {
    let r = client
        .get(
            vec![0u8],
            Some(GetOptions::new().with_range(vec![0u8]).with_count_only()),
        )
        .await
        .map_err(|e| replay_err("counting keys", &e))?;
    Ok(u64::try_from(r.count()).unwrap_or(0))
}

#[allow(clippy::too_many_arguments)]
async fn replay(
    lp: &LoadedPolicy,
    p: &PitrPlan,
    identities: &Identities,
    space: &RunSpace,
    url: &str,
    request_limit: usize,
    out: &Output,
) -> Result<(Staged, Replayed)> {
    let mut client = connect(url).await?;
    let mut kv = client
        .kv_client()
        .max_encoding_message_size(request_limit)
        .max_decoding_message_size(request_limit);
    let head = client
        .status()
        .await
        .map_err(|e| replay_err("status", &e))?
        .header()
        .map_or(0, |h| h.revision());
    if head != p.plan.from_revision {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "replay: the restored full backup {} is at revision {head}, but its manifest \
                 records {}; nothing was staged",
                p.full.manifest.id, p.plan.from_revision
            ),
        ));
    }
    // Every lease of the snapshot is kept alive from now on, so none expires mid-replay and
    // deletes keys in a revision the source never had.
    let leases = Leases::start(client.clone());
    let mut known: HashSet<i64> = HashSet::new();
    if let Ok(r) = client.leases().await {
        for l in r.leases() {
            known.insert(l.id());
            leases.keep(l.id());
        }
    }
    let mut done = Replayed {
        revision: head,
        observed_at: None,
        revisions: 0,
        events: 0,
        leases_granted: 0,
        counts_checked: Vec::new(),
        etcd: String::new(),
        seconds: 0.0,
    };
    let mut cur = head;
    let stop_ns = p
        .plan
        .stop_at_time
        .map(|t| t.timestamp_nanos_opt().unwrap_or(i64::MAX));
    'segments: for (seg, holders) in &p.segments {
        let what = format!(
            "segment {}-{} of timeline {}",
            seg.first_revision, seg.last_revision, seg.timeline
        );
        let dest = lp
            .destinations
            .iter()
            .find(|d| holders.contains(&d.name))
            .ok_or_else(|| Error::new(Kind::Storage, format!("no destination holds {what}")))?;
        let path = space.path(&format!(
            "replay-seg-{}-{}.part",
            seg.first_revision, seg.last_revision
        ));
        let _guard = RemoveOnDrop::new(path.clone());
        let file =
            super::create_private_file(&path).map_err(|e| io_err(&path, "cannot create", e))?;
        let got = download(
            dest,
            &seg.stored,
            identities,
            seg.plaintext_size,
            file,
            &path,
            &what,
        )
        .await?;
        if got.plain_size != seg.plaintext_size
            || hex::encode(got.image_sha256) != seg.plaintext_sha256
        {
            return Err(Error::new(
                Kind::Verify,
                format!(
                    "{what} at destination {:?} does not match its manifest ({} plaintext bytes, \
                     SHA-256 {}; the manifest records {} and {}); nothing was staged",
                    dest.name,
                    got.plain_size,
                    hex::encode(got.image_sha256),
                    seg.plaintext_size,
                    seg.plaintext_sha256
                ),
            ));
        }
        // Revisions are read on a blocking thread, a few at a time (memory: a revision or two).
        let (tx, mut rx) = mpsc::channel::<std::result::Result<codec::Revision, String>>(2);
        let reader_path = path.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let f = match std::fs::File::open(&reader_path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            };
            let mut r = match codec::Reader::new(std::io::BufReader::new(f)) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            };
            loop {
                match r.next_revision() {
                    Ok(Some(rev)) => {
                        if tx.blocking_send(Ok(rev)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        while let Some(rev) = rx.recv().await {
            let rev = rev.map_err(|e| {
                Error::new(
                    Kind::Verify,
                    format!("{what} is damaged: {e}; nothing was staged"),
                )
            })?;
            if rev.revision <= cur {
                continue;
            }
            if rev.revision > p.plan.to_revision || stop_ns.is_some_and(|t| rev.observed_ns > t) {
                break 'segments;
            }
            if rev.revision != cur + 1 {
                return Err(Error::new(
                    Kind::Verify,
                    format!(
                        "{what} continues at revision {} after {cur}: the log has a gap; nothing \
                         was staged",
                        rev.revision
                    ),
                ));
            }
            for &(id, ttl) in &rev.leases {
                if known.insert(id) {
                    // The source's TTL when known; an unknown one (the lease was gone before
                    // it could be asked) gets an hour: its keys' deletion is in the log anyway.
                    let ttl = if ttl > 0 { ttl } else { 3600 };
                    match client
                        .lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(id)))
                        .await
                    {
                        Ok(_) => done.leases_granted += 1,
                        Err(e) if describe_etcd_error(&e).contains("already exists") => {}
                        Err(e) => return Err(replay_err(&format!("granting lease {id:x}"), &e)),
                    }
                    leases.keep(id);
                }
            }
            let ops: Vec<TxnOp> = rev
                .events
                .iter()
                .map(|e| match e {
                    Event::Put {
                        key, value, lease, ..
                    } => {
                        let opts = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                        TxnOp::put(key.clone(), value.clone(), opts)
                    }
                    Event::Delete { key, .. } => TxnOp::delete(key.clone(), None),
                })
                .collect();
            let n = ops.len() as u64;
            let resp = kv
                .txn(Txn::new().and_then(ops))
                .await
                .map_err(|e| replay_err(&format!("revision {}", rev.revision), &e))?;
            let landed = resp.header().map_or(0, |h| h.revision());
            if landed != rev.revision {
                return Err(Error::new(
                    Kind::Verify,
                    format!(
                        "replay: revision {} landed at {landed} on the throwaway etcd; the \
                         result would not be the cluster's history, so nothing was staged",
                        rev.revision
                    ),
                ));
            }
            cur = rev.revision;
            done.revisions += 1;
            done.events += n;
            done.observed_at = Some(DateTime::from_timestamp_nanos(rev.observed_ns));
        }
        let _ = reader.await;
        if cur == seg.last_revision
            && let Some(want) = seg.live_keys_at_last_revision
        {
            let have = count_keys(&mut client).await?;
            if have != want {
                return Err(Error::new(
                    Kind::Verify,
                    format!(
                        "replay: at revision {cur} the throwaway etcd counts {have} keys but the \
                         source counted {want}; nothing was staged"
                    ),
                ));
            }
            done.counts_checked.push((cur, have));
        }
    }
    if p.plan.stop_at_time.is_none() && cur != p.plan.to_revision {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "replay: reached revision {cur}, not {}; nothing was staged",
                p.plan.to_revision
            ),
        ));
    }
    done.revision = cur;
    let live = count_keys(&mut client).await?;

    // 3. Snapshot the replayed member (its leases still kept alive), check and stage it.
    let replaced = out.clear_stale_part()?;
    let (part, mut file, _lock) = out.create_part()?;
    let guard = RemoveOnDrop::new(part.clone());
    let mut snap = client
        .snapshot()
        .await
        .map_err(|e| replay_err("snapshot", &e))?;
    let mut account = StreamAccount::new();
    while let Some(msg) = snap
        .message()
        .await
        .map_err(|e| replay_err("snapshot stream", &e))?
    {
        account
            .accept(msg.remaining_bytes(), msg.blob())
            .map_err(|f| Error::new(Kind::Verify, format!("replay snapshot: {f}")))?;
        file.write_all(msg.blob())
            .map_err(|e| io_err(&part, "writing", e))?;
    }
    drop(leases);
    let verified = account
        .finish()
        .map_err(|f| Error::new(Kind::Verify, format!("replay snapshot: {f}")))?;
    file.sync_all().map_err(|e| io_err(&part, "syncing", e))?;
    drop(file);
    let check_path = part.clone();
    let report = tokio::task::spawn_blocking(move || {
        inspect_file(&check_path, Hashing::Known(verified.sha256))
    })
    .await
    .map_err(|e| Error::new(Kind::Internal, format!("inspect task failed: {e}")))??;
    report.ensure_sound(&part, "nothing was staged")?;
    let st = &report.inspection.status;
    if st.revision_floor() != cur || st.live_keys != live {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "the replayed snapshot is at revision {} with {} live keys, but the replay \
                 reached revision {cur} with {live}; nothing was staged",
                st.revision_floor(),
                st.live_keys
            ),
        ));
    }
    publish(guard, out)?;
    let mut staged = Staged::at(out, report, Some((p.full.manifest.clone(), String::new())));
    staged.destination = None;
    staged.replaced_part = replaced;
    staged.replayed_to = Some(cur);
    Ok((staged, done))
}

/// What `check --pitr` found for one timeline.
#[derive(Debug, Clone)]
pub struct TimelineCheck {
    pub timeline: crate::revlog::Timeline,
    /// The oldest full backup anchoring it, and its effective revision.
    pub anchor: Option<(BackupId, i64)>,
    /// The highest revision reachable contiguously from the anchor.
    pub head: Option<i64>,
    pub segments: usize,
    /// Segments downloaded and proved (with `read_data`).
    pub read: usize,
    /// Everything wrong, each naming what and where.
    pub problems: Vec<String>,
}

/// `check --pitr`: every timeline's log is contiguous from its oldest full backup to its head,
/// every segment's data object exists at every destination holding its manifest with the
/// recorded size, and (with `read_data`) every segment downloads, decrypts, decompresses and
/// decodes to what its manifest records.
pub async fn check_log(
    lp: &LoadedPolicy,
    identities: &Identities,
    read_data: bool,
) -> Result<(Vec<TimelineCheck>, Vec<String>)> {
    let (backups, log) = tokio::join!(list(lp), list_revlog(lp));
    let mut problems: Vec<String> = backups.problems.clone();
    problems.extend(log.problems.iter().cloned());
    let run = BackupId::new(Utc::now(), rand::random::<u32>());
    let space = if read_data {
        Some(RunSpace::claim(lp, &run)?.0)
    } else {
        None
    };
    let mut out = Vec::new();
    let mut timelines = log.timelines.clone();
    timelines.sort_by_key(|t| t.started_at);
    for tl in timelines {
        let mut c = TimelineCheck {
            anchor: None,
            head: None,
            segments: 0,
            read: 0,
            problems: Vec::new(),
            timeline: tl.clone(),
        };
        let anchor = backups
            .backups
            .iter()
            .filter(|b| b.manifest.timeline.as_ref() == Some(&tl.id))
            .map(|b| {
                (
                    b.manifest.id.clone(),
                    b.manifest
                        .snapshot
                        .effective_revision
                        .unwrap_or(b.manifest.snapshot.revision),
                )
            })
            .filter(|(_, r)| *r >= tl.start_revision - 1)
            .min_by_key(|(_, r)| *r);
        let mut segs: Vec<&(SegmentManifest, Vec<String>)> = log
            .segments
            .iter()
            .filter(|(s, _)| s.timeline == tl.id)
            .collect();
        segs.sort_by_key(|(s, _)| (s.first_revision, s.last_revision));
        c.segments = segs.len();
        match &anchor {
            None => c.problems.push(format!(
                "no full backup anchors timeline {} (it starts at revision {}): none of its \
                 revisions can be restored",
                tl.id, tl.start_revision
            )),
            Some((id, rev)) => {
                let mut cur = *rev;
                for (s, _) in &segs {
                    if s.last_revision <= cur {
                        continue;
                    }
                    if s.first_revision > cur + 1 {
                        c.problems.push(format!(
                            "gap: revisions {}..={} are in no committed segment; revisions after \
                             {cur} cannot be restored from backup {id}",
                            cur + 1,
                            s.first_revision - 1
                        ));
                        break;
                    }
                    cur = s.last_revision;
                }
                c.head = Some(cur);
            }
        }
        c.anchor = anchor;
        for (s, holders) in &segs {
            for h in holders {
                match log.data_sizes.get(&(h.clone(), s.stored.key.clone())) {
                    Some(&n) if n == s.stored.size => {}
                    Some(&n) => c.problems.push(format!(
                        "destination {h:?}: {} is {n} bytes but its manifest records {}",
                        s.stored.key, s.stored.size
                    )),
                    None => c.problems.push(format!(
                        "destination {h:?}: the data object {} of a committed segment is missing",
                        s.stored.key
                    )),
                }
            }
        }
        if let Some(space) = &space {
            for (s, holders) in &segs {
                for d in lp.destinations.iter().filter(|d| holders.contains(&d.name)) {
                    match read_segment(d, s, identities, space).await {
                        Ok(()) => c.read += 1,
                        Err(e) => c.problems.push(format!(
                            "destination {:?}: segment {}-{}: {}",
                            d.name,
                            s.first_revision,
                            s.last_revision,
                            e.chain()
                        )),
                    }
                }
            }
        }
        out.push(c);
    }
    Ok((out, problems))
}

/// Download one segment and decode it completely against its manifest.
async fn read_segment(
    dest: &crate::store::Destination,
    s: &SegmentManifest,
    identities: &Identities,
    space: &RunSpace,
) -> Result<()> {
    let path = space.path(&format!(
        "check-seg-{}-{}-{}.part",
        s.first_revision, s.last_revision, dest.name
    ));
    let _guard = RemoveOnDrop::new(path.clone());
    let file = super::create_private_file(&path).map_err(|e| io_err(&path, "cannot create", e))?;
    let what = format!("segment {}-{}", s.first_revision, s.last_revision);
    let got = download(
        dest,
        &s.stored,
        identities,
        s.plaintext_size,
        file,
        &path,
        &what,
    )
    .await?;
    if got.plain_size != s.plaintext_size || hex::encode(got.image_sha256) != s.plaintext_sha256 {
        return Err(Error::new(
            Kind::Verify,
            "its plaintext does not match the manifest's size and SHA-256",
        ));
    }
    let (first, last, revs, events) = (s.first_revision, s.last_revision, s.revisions, s.events);
    let fingerprint = s.last_revision_events_sha256.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let f = std::fs::File::open(&path).map_err(|e| io_err(&path, "cannot open", e))?;
        let bad = |m: String| Error::new(Kind::Verify, m);
        let mut r = codec::Reader::new(std::io::BufReader::new(f)).map_err(|e| bad(e.0))?;
        let (mut n, mut ev, mut lo, mut hi) = (0u64, 0u64, None, None);
        let mut last_events = Vec::new();
        while let Some(rev) = r.next_revision().map_err(|e| bad(e.0))? {
            n += 1;
            ev += rev.events.len() as u64;
            lo.get_or_insert(rev.revision);
            hi = Some(rev.revision);
            last_events = rev.events;
        }
        // The fingerprint a resuming streamer trusts must be the data's.
        if let Some(want) = fingerprint
            && hex::encode(codec::revision_digest(&last_events)) != want
        {
            return Err(bad(
                "its last revision's events do not match the fingerprint its manifest records"
                    .into(),
            ));
        }
        if (lo, hi, n, ev) != (Some(first), Some(last), revs, events) {
            return Err(bad(format!(
                "it decodes to revisions {lo:?}..{hi:?} ({n} revisions, {ev} events), not what \
                 its manifest records"
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::new(Kind::Internal, format!("decode task failed: {e}")))?
}
