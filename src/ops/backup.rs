//! One backup run: pick a healthy member, stream its snapshot through the spool, zstd and age to
//! every destination at once, verify etcd's trailer, complete the uploads, then commit by writing
//! the manifests. Any failure aborts uploads, removes whatever became visible, removes the spool
//! and leaves no manifest.

use super::LoadedPolicy;
use super::lock::Claim;
use super::prune::{PruneOptions, PruneReport};
use super::spool::{Leftover, RunSpace};
use super::verify::verify_snapshot;
use crate::error::{Error, Kind, Result};
use crate::etcd::select::{Ranking, alarm_advice};
use crate::etcd::snapshot::{Limits, StreamError, StreamFault, Verified, stream_snapshot};
use crate::etcd::{MemberStatus, Probe, describe_etcd_error, probe_all, select};
use crate::etcddb::TRAILER_LEN;
use crate::model::{
    self, AlarmSeen, BackupId, Compression, Encryption, MANIFEST_FORMAT_VERSION, Manifest,
    MemberInfo, SnapshotInfo, SnapshotSource, StoredObject,
};
use crate::pipeline::{SealConfig, SealError, SealOutput, seal};
use crate::store::{Destination, PARTS_IN_FLIGHT, describe_store_error};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::WriteMultipart;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A committed backup.
#[derive(Debug)]
pub struct BackupReport {
    /// The manifest written to every destination.
    pub manifest: Manifest,
    /// Names of the destinations holding it.
    pub destinations: Vec<String>,
    /// Optional destinations (`required: false`) that failed and do not hold it, with why.
    pub skipped_destinations: Vec<String>,
    /// Members tried before the one that worked, with why they failed.
    pub failed_attempts: Vec<String>,
    /// The prune that followed (`retention.pruneAfterBackup`); its failure does not undo the
    /// backup.
    pub prune: Option<Result<PruneReport>>,
    /// How long each stage of the successful attempt took: `snapshot` (stream, compress,
    /// encrypt, upload), `verify` (database check while the last parts complete), `commit`
    /// (manifests) and `prune`.
    pub stages: Stages,
    /// Leftovers of dead runs of this policy removed from the spool directory first.
    pub leftovers: Vec<Leftover>,
    /// Earlier runs of this slot that failed and were retried (`schedule.retry`).
    pub earlier_runs: Vec<FailedRun>,
}

/// A run of the slot that failed before a retry.
#[derive(Debug, Clone)]
pub struct FailedRun {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// What failed (its kind gives the exit code and metrics stage).
    pub kind: Kind,
    /// The whole error message.
    pub error: String,
}

/// A backup committed by one attempt, before the prune.
struct Landed {
    manifest: Manifest,
    stages: Stages,
    /// Indices of the destinations holding it.
    destinations: Vec<usize>,
    skipped: Skipped,
}

/// Named stage durations, in order.
pub type Stages = Vec<(&'static str, Duration)>;

/// The report of a committed backup, after the policy's prune when it asks for one. Only ever
/// called after the commit: a failed run never prunes.
async fn committed(
    lp: &LoadedPolicy,
    landed: Landed,
    failed_attempts: Vec<String>,
    leftovers: Vec<Leftover>,
) -> BackupReport {
    let Landed {
        manifest,
        mut stages,
        destinations,
        skipped,
    } = landed;
    let prune = match &lp.policy.retention {
        Some(r) if r.prune_after_backup => {
            let t = std::time::Instant::now();
            let result = super::prune::prune(lp, &PruneOptions::default()).await;
            stages.push(("prune", t.elapsed()));
            if let Err(e) = &result {
                warn!(policy = %lp.policy.name, error = %e, "Backup committed, but the prune after it failed");
            }
            Some(result)
        }
        _ => None,
    };
    BackupReport {
        manifest,
        destinations: destinations
            .iter()
            .map(|&i| lp.destinations[i].name.clone())
            .collect(),
        skipped_destinations: skipped,
        failed_attempts,
        prune,
        stages,
        leftovers,
        earlier_runs: Vec::new(),
    }
}

fn cancelled(policy: &str) -> Error {
    Error::new(
        Kind::Cancelled,
        format!(
            "policy {policy}: backup stopped by a signal while the snapshot streamed; uploads were \
             aborted and nothing was committed"
        ),
    )
}

/// How an attempt on one member ended badly.
enum AttemptError {
    /// The member (or its bytes) failed: another member may do better.
    Member { message: String, integrity: bool },
    /// Something on our side or at a destination failed: trying another member won't help.
    Fatal(Error),
}

/// How a scheduled or one-shot run ended without an error.
#[derive(Debug)]
pub enum Outcome {
    /// A backup was committed.
    Committed(Box<BackupReport>),
    /// `spec.lock`: another host already backs up this slot.
    Skipped {
        /// Who holds the slot (host, pid, backup id).
        holder: String,
    },
}

/// Run one backup of `lp` now; `cancel` aborts it cleanly while it waits for a member or the
/// snapshot streams (uploads aborted, spool removed, nothing committed). Once the stream is
/// complete the run finishes: the remaining steps take seconds, and cutting them short would
/// only waste the upload.
pub async fn backup_until(lp: &LoadedPolicy, cancel: &CancellationToken) -> Result<Outcome> {
    let p = &lp.policy;
    let started_at = Utc::now();
    let id = BackupId::new(started_at, rand::random::<u32>());
    // First, so the leftovers of a killed run go even when the cluster is down.
    let (space, leftovers) = RunSpace::open(&p.snapshot.spool_dir, &p.name, &id)?;
    let (probes, ranking) = choose_member(lp, cancel).await?;
    let alarms = alarms_seen(&probes, &ranking);
    for a in &alarms {
        warn!(
            member = %a.member,
            name = %a.member_name,
            alarm = %a.alarm,
            "etcd reports an alarm: {}",
            alarm_advice(&a.alarm)
        );
    }

    let lock = match &p.lock {
        None => None,
        Some(_) => {
            let ep = &probes[ranking.candidates[0]].endpoint;
            match super::lock::claim(lp, ep, started_at, &id).await? {
                Claim::TakenBy(holder) => return Ok(Outcome::Skipped { holder }),
                Claim::Held(l) => Some(l),
            }
        }
    };
    let result = attempts(
        lp,
        &id,
        started_at,
        &probes,
        &ranking.candidates,
        &space,
        &alarms,
        cancel,
    )
    .await;
    if let Some(l) = lock {
        match &result {
            Ok(_) => {
                let period = p.schedule.as_ref().and_then(|s| s.period_at(started_at));
                l.done(period).await;
            }
            Err(_) => l.release().await,
        }
    }
    let (landed, failed) = result?;
    drop(space);
    Ok(Outcome::Committed(Box::new(
        committed(lp, landed, failed, leftovers).await,
    )))
}

/// Probe the members until one qualifies. While none does only for reasons that pass (an
/// election, members restarting or lagging), probe again with backoff for up to
/// `selection.waitForLeader`; then give up with every member's reason.
async fn choose_member(
    lp: &LoadedPolicy,
    cancel: &CancellationToken,
) -> Result<(Vec<Probe>, Ranking)> {
    let p = &lp.policy;
    let sel = &p.cluster.selection;
    let wait = sel.wait_for_leader.0;
    let t0 = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let probes = probe_all(&lp.etcd, sel.status_timeout.0).await;
        let ranking = select::rank(&probes, sel.prefer, sel.max_raft_lag);
        let reasons: Vec<String> = ranking
            .rejected
            .iter()
            .map(|r| format!("{}: {}", r.endpoint, r.reason))
            .collect();
        if !ranking.candidates.is_empty() {
            for r in &ranking.rejected {
                warn!(endpoint = %r.endpoint, reason = %r.reason, "Member skipped");
            }
            return Ok((probes, ranking));
        }
        let remaining = wait.saturating_sub(t0.elapsed());
        if ranking.worth_waiting() && !remaining.is_zero() {
            let d = delay.min(remaining);
            warn!(
                policy = %p.name,
                waited_ms = t0.elapsed().as_millis() as u64,
                retry_in_ms = d.as_millis() as u64,
                members = %reasons.join("; "),
                "No member can serve a snapshot yet; probing again (selection.waitForLeader)"
            );
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = cancel.cancelled() => return Err(Error::new(
                    Kind::Cancelled,
                    format!("policy {}: stopped by a signal while waiting for a healthy member; nothing was written", p.name),
                )),
            }
            delay = (delay * 2).min(Duration::from_secs(2));
            continue;
        }
        return Err(no_member(lp, &ranking, &reasons, t0.elapsed()));
    }
}

/// The error when no member qualifies, saying whether waiting or a retry can help.
fn no_member(lp: &LoadedPolicy, ranking: &Ranking, reasons: &[String], waited: Duration) -> Error {
    let p = &lp.policy;
    let (headline, advice) = if ranking.all_corrupt() {
        (
            "every member has a CORRUPT alarm, and lifeboat never snapshots a member etcd found \
             inconsistent"
                .to_owned(),
            format!(
                "restore from the newest good backup (`lifeboat list`) or repair the members: {}",
                alarm_advice(crate::etcd::CORRUPT)
            ),
        )
    } else if ranking.hopeless() {
        (
            "no healthy etcd member to snapshot, and waiting cannot help".to_owned(),
            "check spec.cluster (endpoints, tls, auth) and the members' state".to_owned(),
        )
    } else {
        (
            format!(
                "no healthy etcd member to snapshot after waiting {} (selection.waitForLeader)",
                humantime::format_duration(Duration::from_secs(waited.as_secs()))
            ),
            "check that the members run and have a leader, and that spec.cluster (endpoints, \
             tls, auth) is right"
                .to_owned(),
        )
    };
    let e = Error::new(
        Kind::Etcd,
        format!(
            "policy {}: {headline}; nothing was written:\n  {}\n{advice}",
            p.name,
            reasons.join("\n  ")
        ),
    );
    if ranking.hopeless() { e.permanent() } else { e }
}

/// Every alarm the members reported, with member names where known.
fn alarms_seen(probes: &[Probe], ranking: &Ranking) -> Vec<AlarmSeen> {
    let name_of = |id: u64| {
        probes
            .iter()
            .filter_map(|p| p.outcome.as_ref().ok())
            .find(|s| s.member_id == id)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    };
    ranking
        .alarms
        .iter()
        .map(|a| AlarmSeen {
            member: format!("{:x}", a.member_id),
            member_name: name_of(a.member_id),
            alarm: a.kind.clone(),
        })
        .collect()
}

/// How the runs of one slot are driven.
pub struct SlotRun<'a> {
    /// Aborts the run in progress (uploads aborted, nothing committed).
    pub abort: &'a CancellationToken,
    /// No new run starts once cancelled (a retry waiting for its delay gives up).
    pub stop: &'a CancellationToken,
    /// `schedule.retry` applies; false for `backup --no-retry`.
    pub retry: bool,
    /// Held by each run (not by the waits between them): the daemon's `--max-concurrent`.
    pub gate: Option<&'a tokio::sync::Semaphore>,
}

/// What happens during a slot, as it happens (for metrics).
pub enum RunEvent<'a> {
    /// A run starts.
    Started(DateTime<Utc>),
    /// A run ended, after `took`.
    Ended {
        /// How it ended.
        result: &'a Result<Outcome>,
        /// How long it ran.
        took: Duration,
    },
}

/// Back up `lp` for the slot beginning now: run, and after a failure that a retry may fix,
/// run again after `schedule.retry`'s backoff, never at or past the schedule's next run. A
/// policy without a schedule has no slot, so it runs once. Returns the last run's outcome; a
/// committed report lists the earlier failed runs.
pub async fn backup_in_slot(
    lp: &LoadedPolicy,
    run: SlotRun<'_>,
    on: &(dyn Fn(RunEvent<'_>) + Send + Sync),
) -> Result<Outcome> {
    let p = &lp.policy;
    let slot_start = Utc::now();
    let no_retry = crate::policy::RetrySpec {
        attempts: 1,
        ..Default::default()
    };
    let (spec, next_run) = match &p.schedule {
        Some(s) => (&s.retry, s.next_after(slot_start)),
        None => (&no_retry, None),
    };
    let mut earlier: Vec<FailedRun> = Vec::new();
    let mut runs = 0;
    loop {
        runs += 1;
        let permit = match run.gate {
            Some(g) => Some(tokio::select! {
                permit = g.acquire() => permit.expect("the gate is never closed"),
                () = run.abort.cancelled() => return Err(cancelled_waiting(&p.name)),
            }),
            None => None,
        };
        let started_at = Utc::now();
        on(RunEvent::Started(started_at));
        let t0 = std::time::Instant::now();
        let mut result = backup_until(lp, run.abort).await;
        drop(permit);
        if let Ok(Outcome::Committed(r)) = &mut result {
            r.earlier_runs = std::mem::take(&mut earlier);
        }
        on(RunEvent::Ended {
            result: &result,
            took: t0.elapsed(),
        });
        let e = match result {
            Err(e) => e,
            ok => return ok,
        };
        let decision = crate::retry::after_failure(
            spec,
            run.retry,
            runs,
            e.is_retryable(),
            Utc::now(),
            next_run,
            rand::random::<f64>(),
        );
        let delay = match decision {
            crate::retry::Decision::Retry(d) => d,
            crate::retry::Decision::GiveUp(why) => {
                if runs > 1 || !matches!(why, crate::retry::GiveUp::Disabled) {
                    warn!(policy = %p.name, runs, "Not retrying this slot: {why}");
                }
                return Err(e);
            }
        };
        warn!(
            policy = %p.name,
            run = runs,
            of = spec.attempts,
            retry_in_s = delay.as_secs_f64(),
            error = %e.chain(),
            "Backup run failed; retrying in the same slot"
        );
        earlier.push(FailedRun {
            started_at,
            kind: e.kind(),
            error: e.chain(),
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = run.stop.cancelled() => return Err(e),
            () = run.abort.cancelled() => return Err(e),
        }
    }
}

fn cancelled_waiting(policy: &str) -> Error {
    Error::new(
        Kind::Cancelled,
        format!("policy {policy}: stopped by a signal before the run started; nothing was written"),
    )
}

/// Try the candidates in order until one gives a committed backup: its manifest, and the
/// attempts that failed before it.
#[allow(clippy::too_many_arguments)]
async fn attempts(
    lp: &LoadedPolicy,
    id: &BackupId,
    started_at: DateTime<Utc>,
    probes: &[Probe],
    candidates: &[usize],
    space: &RunSpace,
    alarms: &[AlarmSeen],
    cancel: &CancellationToken,
) -> Result<(Landed, Vec<String>)> {
    let p = &lp.policy;
    let mut failed = Vec::new();
    let mut integrity_failures = 0;
    for &idx in candidates.iter().take(p.snapshot.max_attempts.0 as usize) {
        let probe = &probes[idx];
        let status = probe.outcome.as_ref().expect("candidates are reachable");
        info!(
            endpoint = %probe.endpoint,
            member = %format!("{:x}", status.member_id),
            revision = status.revision,
            leader = status.member_id == status.leader,
            "Snapshotting member"
        );
        if cancel.is_cancelled() {
            return Err(cancelled(&p.name));
        }
        let member = Member {
            endpoint: &probe.endpoint,
            status,
        };
        match attempt(lp, id, started_at, &member, space, alarms, cancel).await {
            Ok(landed) => return Ok((landed, failed)),
            Err(AttemptError::Member { message, integrity }) => {
                warn!(endpoint = %probe.endpoint, error = %message, "Snapshot attempt failed; cleaned up");
                integrity_failures += usize::from(integrity);
                failed.push(format!("  {}: {message}", probe.endpoint));
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
        }
    }
    let kind = if integrity_failures == failed.len() {
        Kind::Verify
    } else {
        Kind::Etcd
    };
    Err(Error::new(
        kind,
        format!(
            "policy {}: every snapshot attempt failed; nothing was committed and nothing was left \
             at the destinations:\n{}\nretry later; if it persists check the members' logs",
            p.name,
            failed.join("\n")
        ),
    ))
}

fn create_spool(path: &Path) -> Result<File> {
    super::create_private_file(path).map_err(|e| {
        Error::new(
            Kind::Io,
            format!(
                "cannot create spool file {}: {e}; check snapshot.spoolDir is writable and \
                     has room for one snapshot",
                path.display()
            ),
        )
    })
}

/// The member an attempt snapshots.
struct Member<'a> {
    endpoint: &'a str,
    status: &'a MemberStatus,
}

async fn attempt(
    lp: &LoadedPolicy,
    id: &BackupId,
    started_at: DateTime<Utc>,
    member: &Member<'_>,
    space: &RunSpace,
    alarms: &[AlarmSeen],
    cancel: &CancellationToken,
) -> Result<Landed, AttemptError> {
    let p = &lp.policy;
    let (endpoint, status) = (member.endpoint, member.status);
    let mut stages = Stages::new();
    let mut t = std::time::Instant::now();
    let spool_path = space.path("db.part");
    let spool = create_spool(&spool_path).map_err(AttemptError::Fatal)?;
    let _guard = super::RemoveOnDrop::new(spool_path.clone());
    let spooled = spool_path.clone();

    let mut client = lp
        .etcd
        .client(endpoint, None)
        .await
        .map_err(|e| AttemptError::Member {
            message: format!("connecting: {}", describe_etcd_error(&e)),
            integrity: false,
        })?;

    let encrypted = !lp.recipients.is_empty();
    let data_key = model::data_key(&p.name, id, encrypted);
    let mut skipped = Skipped::new();
    let uploads = start_uploads(&lp.destinations, &data_key, &mut skipped).await?;
    let (plain_tx, shipping) = Shipping::start(lp, uploads, Some((spool_path, spool)));

    let limits = Limits {
        timeout: p.snapshot.timeout.0,
        stall: p.snapshot.stall_timeout.0,
    };
    let progress = crate::progress::start(&format!("snapshot from {endpoint}"), None);
    let report = |done, total| progress.set(done, total);
    let streamed = tokio::select! {
        s = stream_snapshot(&mut client, limits, &plain_tx, &report) => Some(s),
        () = cancel.cancelled() => None,
    };
    drop(progress);
    drop(plain_tx);
    let (sealed, uploads, fanned) = shipping
        .finish(&lp.destinations, &mut skipped)
        .await
        .map_err(AttemptError::Fatal)?;
    stages.push(("snapshot", t.elapsed()));
    t = std::time::Instant::now();
    let Some(streamed) = streamed else {
        abort_all(&lp.destinations, uploads).await;
        return Err(AttemptError::Fatal(cancelled(&p.name)));
    };

    let (verified, sealed) = match (streamed, sealed, fanned) {
        (Ok(v), Ok(s), Ok(())) => (v, s),
        (streamed, sealed, fanned) => {
            abort_all(&lp.destinations, uploads).await;
            return Err(classify(lp, &data_key, streamed, sealed, fanned));
        }
    };
    if sealed.plain_size != verified.db_size + TRAILER_LEN {
        abort_all(&lp.destinations, uploads).await;
        return Err(AttemptError::Fatal(Error::new(
            Kind::Internal,
            format!(
                "pipeline consumed {} bytes but the member sent {}",
                sealed.plain_size,
                verified.db_size + TRAILER_LEN
            ),
        )));
    }
    info!(
        db_size = verified.db_size,
        stored_size = sealed.stored_size,
        "Snapshot received and verified against its SHA-256 trailer"
    );

    // Read the spooled snapshot while the last parts upload; commit only if both succeed.
    let mut check_client = client.clone();
    let (completed, checked) = tokio::join!(
        complete_uploads(&lp.destinations, uploads, &data_key, &mut skipped),
        verify_snapshot(
            spooled,
            verified.sha256,
            status.revision,
            &mut check_client,
            p.cluster
                .selection
                .status_timeout
                .0
                .max(Duration::from_secs(10)),
        )
    );
    let landed = completed?;
    let checked = match checked {
        Ok(c) => c,
        Err(why) => {
            for &i in &landed {
                remove_quietly(&lp.destinations[i], &data_key).await;
            }
            return Err(AttemptError::Member {
                message: format!("verification failed, nothing was committed: {why}"),
                integrity: true,
            });
        }
    };

    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id.clone(),
        policy: p.name.clone(),
        cluster_id: format!("{:x}", status.cluster_id),
        member: MemberInfo {
            id: format!("{:x}", status.member_id),
            name: status.name.clone(),
            endpoint: endpoint.to_owned(),
            etcd_version: status.version.clone(),
            is_leader: status.member_id == status.leader,
        },
        started_at,
        finished_at: Utc::now(),
        snapshot: SnapshotInfo {
            source: SnapshotSource::Etcd,
            revision: checked.status.revision,
            member_revision: Some(status.revision),
            raft_index: status.raft_index,
            db_size: verified.db_size,
            file_size: sealed.plain_size,
            has_trailer: true,
            sha256: hex::encode(verified.sha256),
            status: Some(checked.status),
        },
        stored: stored_object(lp, &data_key, &sealed),
        checks: checked.checks,
        alarms: alarms.to_vec(),
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
    };
    stages.push(("verify", t.elapsed()));
    t = std::time::Instant::now();
    let committed = commit(&lp.destinations, &landed, &manifest, &mut skipped).await?;
    stages.push(("commit", t.elapsed()));
    Ok(Landed {
        manifest,
        stages,
        destinations: committed,
        skipped,
    })
}

/// The seal stage (zstd, age, optional spool copy) and the fan-out to every destination, fed
/// through the returned sender; shared by backups from a member and from a file.
struct Shipping {
    seal_task: tokio::task::JoinHandle<std::result::Result<SealOutput, SealError>>,
    fan_task: tokio::task::JoinHandle<FanOut>,
}

type Fanned = std::result::Result<(), (usize, object_store::Error)>;

/// What the fan-out hands back: the live uploads, the optional ones it dropped, and how it ended.
type FanOut = (Uploads, Vec<(usize, object_store::Error)>, Fanned);

impl Shipping {
    fn start(
        lp: &LoadedPolicy,
        uploads: Uploads,
        spool: Option<(PathBuf, File)>,
    ) -> (mpsc::Sender<Bytes>, Self) {
        let required = lp.destinations.iter().map(|d| d.required).collect();
        let (plain_tx, plain_rx) = mpsc::channel::<Bytes>(16);
        let (sealed_tx, sealed_rx) = mpsc::channel::<Bytes>(4);
        let cfg = SealConfig {
            level: lp.policy.compression.level.0,
            threads: lp.policy.compression.threads,
            recipients: lp.recipients.clone(),
        };
        let seal_task = tokio::task::spawn_blocking(move || seal(plain_rx, spool, &cfg, sealed_tx));
        let fan_task = tokio::spawn(fan_out(sealed_rx, uploads, required));
        (
            plain_tx,
            Self {
                seal_task,
                fan_task,
            },
        )
    }

    /// Wait for both stages once the sender is dropped. The caller completes or aborts the
    /// returned uploads; optional destinations that failed on the way are added to `skipped`.
    async fn finish(
        self,
        dests: &[Destination],
        skipped: &mut Skipped,
    ) -> Result<(std::result::Result<SealOutput, SealError>, Uploads, Fanned)> {
        let sealed = self
            .seal_task
            .await
            .map_err(|e| Error::new(Kind::Internal, format!("seal task failed: {e}")))?;
        let (uploads, dropped, fanned) = self
            .fan_task
            .await
            .map_err(|e| Error::new(Kind::Internal, format!("upload task failed: {e}")))?;
        for (i, e) in dropped {
            skip(skipped, &dests[i], "uploading", &e);
        }
        Ok((sealed, uploads, fanned))
    }
}

/// The manifest's record of the stored object.
fn stored_object(lp: &LoadedPolicy, data_key: &str, sealed: &SealOutput) -> StoredObject {
    StoredObject {
        key: data_key.to_owned(),
        size: sealed.stored_size,
        sha256: hex::encode(sealed.stored_sha256),
        compression: Compression {
            algorithm: "zstd".into(),
            level: lp.policy.compression.level.0,
        },
        encryption: (!lp.recipients.is_empty()).then(|| Encryption {
            algorithm: "age".into(),
            recipients: lp.recipient_strings.clone(),
        }),
    }
}

/// Pick the root cause of a failed attempt over its knock-on effects (closed channels).
fn classify(
    lp: &LoadedPolicy,
    data_key: &str,
    streamed: std::result::Result<Verified, StreamError>,
    sealed: std::result::Result<SealOutput, SealError>,
    fanned: Fanned,
) -> AttemptError {
    if let Err((i, e)) = &fanned {
        return AttemptError::Fatal(upload_error(&lp.destinations[*i], data_key, e));
    }
    match (sealed, streamed) {
        (Err(SealError::Spool(path, e)), _) => AttemptError::Fatal(Error::new(
            Kind::Io,
            format!(
                "writing spool file {}: {e}; free space in snapshot.spoolDir (it needs room for \
                 one snapshot)",
                path.display()
            ),
        )),
        (Err(SealError::Encode(m)), _) => AttemptError::Fatal(Error::new(
            Kind::Crypto,
            format!("compressing/encrypting the snapshot failed: {m}"),
        )),
        (_, Err(StreamError::Member(m))) => AttemptError::Member {
            message: m,
            integrity: false,
        },
        (_, Err(StreamError::Fault(f))) => AttemptError::Member {
            integrity: matches!(f, StreamFault::Mismatch { .. }),
            message: f.to_string(),
        },
        _ => AttemptError::Fatal(Error::new(
            Kind::Internal,
            "a pipeline stage stopped without saying why",
        )),
    }
}

fn upload_error(d: &Destination, key: &str, e: &object_store::Error) -> Error {
    Error::new(
        Kind::Storage,
        format!(
            "destination {:?} ({}): uploading {key} failed: {}; check that the bucket or \
             directory exists and the credentials may write to it. Nothing was committed",
            d.name,
            d.url,
            describe_store_error(e)
        ),
    )
}

/// A multipart upload to `lp.destinations[.0]`.
type Uploads = Vec<(usize, WriteMultipart)>;

/// Why destinations with `required: false` were left out of this backup.
type Skipped = Vec<String>;

fn skip(skipped: &mut Skipped, d: &Destination, what: &str, e: &object_store::Error) {
    let why = format!(
        "destination {:?} ({}): {what} failed: {}; it is optional (required: false), so the \
         backup goes on without it",
        d.name,
        d.url,
        describe_store_error(e)
    );
    warn!(destination = %d.name, "{why}");
    skipped.push(why);
}

fn nothing_left(skipped: &Skipped) -> AttemptError {
    AttemptError::Fatal(Error::new(
        Kind::Storage,
        format!(
            "every destination failed; nothing was committed:\n  {}",
            skipped.join("\n  ")
        ),
    ))
}

async fn start_uploads(
    dests: &[Destination],
    key: &str,
    skipped: &mut Skipped,
) -> Result<Uploads, AttemptError> {
    let started = futures::future::join_all(dests.iter().map(|d| d.start_upload(key))).await;
    let mut uploads = Vec::new();
    let mut first_err = None;
    for (i, (d, r)) in dests.iter().zip(started).enumerate() {
        match r {
            Ok(w) => uploads.push((i, w)),
            Err(e) if !d.required => skip(skipped, d, "starting the upload", &e),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(upload_error(d, key, &e));
                }
            }
        }
    }
    if let Some(e) = first_err {
        for (_, w) in uploads {
            let _ = w.abort().await;
        }
        return Err(AttemptError::Fatal(e));
    }
    if uploads.is_empty() {
        return Err(nothing_left(skipped));
    }
    Ok(uploads)
}

/// Copy every sealed chunk to every destination, waiting for part capacity (backpressure). An
/// optional destination that fails is aborted and left behind (its index and error returned);
/// a required one stops the fan-out. Returns the uploads so the caller decides between
/// completing and aborting.
async fn fan_out(
    mut rx: mpsc::Receiver<Bytes>,
    mut uploads: Uploads,
    required: Vec<bool>,
) -> FanOut {
    let mut dropped = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let mut i = 0;
        while i < uploads.len() {
            let (dest, w) = &mut uploads[i];
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let dest = *dest;
                if required[dest] {
                    return (uploads, dropped, Err((dest, e)));
                }
                let (_, w) = uploads.remove(i);
                let _ = w.abort().await;
                dropped.push((dest, e));
                continue;
            }
            w.put(chunk.clone());
            i += 1;
        }
    }
    (uploads, dropped, Ok(()))
}

async fn abort_all(dests: &[Destination], uploads: Uploads) {
    let (idx, writers): (Vec<usize>, Vec<WriteMultipart>) = uploads.into_iter().unzip();
    let results = futures::future::join_all(writers.into_iter().map(|w| w.abort())).await;
    for (i, r) in idx.into_iter().zip(results) {
        if let Err(e) = r {
            warn!(destination = %dests[i].name, error = %describe_store_error(&e), "Aborting upload failed; the store may keep an incomplete multipart upload until its lifecycle rules remove it");
        }
    }
}

/// Complete every upload; returns the destinations the data landed at.
async fn complete_uploads(
    dests: &[Destination],
    uploads: Uploads,
    key: &str,
    skipped: &mut Skipped,
) -> Result<Vec<usize>, AttemptError> {
    let (idx, writers): (Vec<usize>, Vec<WriteMultipart>) = uploads.into_iter().unzip();
    let results = futures::future::join_all(writers.into_iter().map(|w| w.finish())).await;
    let failed_required = idx
        .iter()
        .zip(&results)
        .position(|(&i, r)| r.is_err() && dests[i].required);
    if let Some(p) = failed_required {
        // finish() aborted the failed ones; completed ones are visible and must go.
        for (&i, r) in idx.iter().zip(&results) {
            if r.is_ok() {
                remove_quietly(&dests[i], key).await;
            }
        }
        let e = results[p].as_ref().expect_err("position found an error");
        return Err(AttemptError::Fatal(upload_error(&dests[idx[p]], key, e)));
    }
    let mut landed = Vec::new();
    for (i, r) in idx.into_iter().zip(results) {
        match r {
            Ok(_) => landed.push(i),
            Err(e) => skip(skipped, &dests[i], "completing the upload", &e),
        }
    }
    if landed.is_empty() {
        return Err(nothing_left(skipped));
    }
    Ok(landed)
}

async fn remove_quietly(d: &Destination, key: &str) {
    if let Err(e) = d.delete(key).await {
        warn!(destination = %d.name, key, error = %describe_store_error(&e), "Could not remove an uncommitted object; `lifeboat prune` removes orphans");
    }
}

/// Write the manifest at every destination the data landed at; returns those that committed.
/// An optional destination that refuses loses its data object; a required one un-commits all.
async fn commit(
    dests: &[Destination],
    landed: &[usize],
    m: &Manifest,
    skipped: &mut Skipped,
) -> Result<Vec<usize>, AttemptError> {
    let key = model::manifest_key(&m.policy, &m.id);
    let body = m.to_json();
    let results =
        futures::future::join_all(landed.iter().map(|&i| dests[i].put_new(&key, body.clone())))
            .await;
    let failed_required = landed
        .iter()
        .zip(&results)
        .position(|(&i, r)| r.is_err() && dests[i].required);
    if let Some(p) = failed_required {
        for (&i, r) in landed.iter().zip(&results) {
            if r.is_ok() {
                remove_quietly(&dests[i], &key).await;
            }
        }
        for &i in landed {
            remove_quietly(&dests[i], &m.stored.key).await;
        }
        let d = &dests[landed[p]];
        let e = results[p].as_ref().expect_err("position found an error");
        return Err(AttemptError::Fatal(Error::new(
            Kind::Storage,
            format!(
                "destination {:?} ({}): writing manifest {key} failed: {}; the backup was not \
                 committed anywhere",
                d.name,
                d.url,
                describe_store_error(e)
            ),
        )));
    }
    let mut committed = Vec::new();
    for (&i, r) in landed.iter().zip(results) {
        match r {
            Ok(()) => committed.push(i),
            Err(e) => {
                remove_quietly(&dests[i], &m.stored.key).await;
                skip(skipped, &dests[i], "writing the manifest", &e);
            }
        }
    }
    if committed.is_empty() {
        return Err(nothing_left(skipped));
    }
    Ok(committed)
}

/// Back up a snapshot file (or a `member/snap/db` copy, with `skip_hash_check`) through the same
/// verify → compress → encrypt → upload → manifest path, for when no member can serve one. The
/// file is checked first, hashed again while it is read, and refused if it changed in between.
pub async fn backup_from_file(
    lp: &LoadedPolicy,
    file: &Path,
    skip_hash_check: bool,
) -> Result<BackupReport> {
    use super::inspect::{Hashing, Trailer, inspect_file};
    let p = &lp.policy;
    let started_at = Utc::now();
    let id = BackupId::new(started_at, rand::random::<u32>());
    let (space, leftovers) = RunSpace::open(&p.snapshot.spool_dir, &p.name, &id)?;
    let size = std::fs::metadata(file)
        .map_err(|e| Error::new(Kind::Io, format!("cannot read {}: {e}", file.display())))?
        .len();
    if !crate::etcddb::has_trailer(size) && !skip_hash_check {
        return Err(super::restore::refuse_trailerless(file, size));
    }
    let path = file.to_owned();
    let report = tokio::task::spawn_blocking(move || inspect_file(&path, Hashing::Compute))
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("inspect task failed: {e}")))??;
    report.ensure_sound(file, "nothing was uploaded")?;
    let has_trailer = report.trailer == Trailer::Matches;
    let image_len = report.image_len();
    let st = &report.inspection.status;

    let encrypted = !lp.recipients.is_empty();
    let data_key = model::data_key(&p.name, &id, encrypted);
    let mut skipped = Skipped::new();
    let uploads = start_uploads(&lp.destinations, &data_key, &mut skipped)
        .await
        .map_err(fatal)?;
    let (plain_tx, shipping) = Shipping::start(lp, uploads, None);
    let path = file.to_owned();
    let read_task = tokio::task::spawn_blocking(move || read_hashing(&path, image_len, &plain_tx));
    let read = read_task
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("read task failed: {e}")))?;
    let (sealed, uploads, fanned) = shipping.finish(&lp.destinations, &mut skipped).await?;
    let problem = match (&read, &sealed, &fanned) {
        (Err(e), _, _) => Some(Error::new(
            Kind::Io,
            format!("reading {}: {e}; nothing was committed", file.display()),
        )),
        (_, _, Err((i, e))) => Some(upload_error(&lp.destinations[*i], &data_key, e)),
        (_, Err(SealError::Encode(m)), _) => Some(Error::new(
            Kind::Crypto,
            format!("compressing/encrypting {} failed: {m}", file.display()),
        )),
        (_, Err(e), _) => Some(Error::new(
            Kind::Internal,
            format!("the seal stage stopped: {e:?}"),
        )),
        (Ok((n, sha)), _, _) if *n != size || hex::encode(sha) != report.sha256 => {
            Some(Error::new(
                Kind::Verify,
                format!(
                    "{} changed while it was uploaded; nothing was committed. Copy it from a \
                     stopped member (or save a snapshot) and try again",
                    file.display()
                ),
            ))
        }
        _ => None,
    };
    if let Some(e) = problem {
        abort_all(&lp.destinations, uploads).await;
        return Err(e);
    }
    let sealed = sealed.expect("checked above");
    let landed = complete_uploads(&lp.destinations, uploads, &data_key, &mut skipped)
        .await
        .map_err(fatal)?;

    let mut checks = super::verify::file_checks(&report);
    checks.push(model::Check {
        name: "live-key-count".into(),
        outcome: model::CheckOutcome::Skipped,
        detail: "the snapshot came from a file; no cluster to compare with".into(),
    });
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id.clone(),
        policy: p.name.clone(),
        cluster_id: String::new(),
        member: MemberInfo {
            id: String::new(),
            name: String::new(),
            endpoint: format!("file://{}", abs.display()),
            etcd_version: st.cluster_version.clone().unwrap_or_default(),
            is_leader: false,
        },
        started_at,
        finished_at: Utc::now(),
        snapshot: SnapshotInfo {
            source: SnapshotSource::File,
            revision: st.revision,
            member_revision: None,
            raft_index: st.consistent_index.unwrap_or(0),
            db_size: image_len,
            file_size: size,
            has_trailer,
            sha256: report.sha256.clone(),
            status: Some(super::verify::db_status(st)),
        },
        stored: stored_object(lp, &data_key, &sealed),
        checks,
        alarms: Vec::new(),
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
    };
    let destinations = commit(&lp.destinations, &landed, &manifest, &mut skipped)
        .await
        .map_err(fatal)?;
    let landed = Landed {
        manifest,
        stages: Stages::new(),
        destinations,
        skipped,
    };
    drop(space);
    Ok(committed(lp, landed, Vec::new(), leftovers).await)
}

fn fatal(e: AttemptError) -> Error {
    match e {
        AttemptError::Fatal(e) => e,
        AttemptError::Member { message, .. } => Error::new(Kind::Internal, message),
    }
}

/// Send `path` in 1 MiB chunks, returning its size and the SHA-256 of its first `image_len`
/// bytes. Blocking.
fn read_hashing(
    path: &Path,
    image_len: u64,
    tx: &mpsc::Sender<Bytes>,
) -> std::io::Result<(u64, [u8; 32])> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        buf.truncate(got);
        let hashed = (image_len.saturating_sub(n)).min(got as u64) as usize;
        h.update(&buf[..hashed]);
        n += got as u64;
        if tx.blocking_send(Bytes::from(buf)).is_err() {
            break; // the seal stage failed; its error says why
        }
    }
    Ok((n, h.finalize().into()))
}
