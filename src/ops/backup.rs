//! One backup run: pick a healthy member, stream its snapshot through the spool, zstd and age to
//! every destination at once, verify etcd's trailer, complete the uploads, then commit by writing
//! the manifests. Any failure aborts uploads, removes whatever became visible, removes the spool
//! and leaves no manifest.

use super::LoadedPolicy;
use super::lock::Claim;
use super::prune::{PruneOptions, PruneReport};
use super::ship::{
    Fanned, Shipping, Skipped, abort_all, commit, complete_uploads, remove_quietly, ship_file,
    start_uploads, stored_object, upload_error,
};
use super::spool::{Leftover, RunSpace};
use super::verify::verify_snapshot;
use crate::error::{Error, Kind, Result};
use crate::etcd::select::{Ranking, alarm_advice};
use crate::etcd::snapshot::{Limits, StreamError, StreamFault, Verified, stream_snapshot};
use crate::etcd::{MemberStatus, Probe, describe_etcd_error, probe_all, select};
use crate::etcddb::TRAILER_LEN;
use crate::model::{
    self, AlarmSeen, BackupId, MANIFEST_FORMAT_VERSION, Manifest, MemberInfo, SnapshotInfo,
    SnapshotSource,
};
use crate::pipeline::{SealError, SealOutput};
use chrono::{DateTime, Utc};
use std::fs::File;
use std::path::Path;
use std::time::Duration;
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
    // A revision log is pruned after every backup even without retention rules.
    let prune_after = lp
        .policy
        .retention
        .as_ref()
        .map_or(lp.policy.pitr.is_some(), |r| r.prune_after_backup);
    let prune = if prune_after {
        let t = std::time::Instant::now();
        let result = super::prune::prune(lp, &PruneOptions::default()).await;
        stages.push(("prune", t.elapsed()));
        if let Err(e) = &result {
            warn!(policy = %lp.policy.name, error = %e, "Backup committed, but the prune after it failed");
        }
        Some(result)
    } else {
        None
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
    let (space, leftovers) = RunSpace::claim(lp, &id)?;
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
    let uploads = start_uploads(&lp.destinations, &data_key, &mut skipped)
        .await
        .map_err(AttemptError::Fatal)?;
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
    if !matches!(streamed, Some(Ok(_))) {
        shipping.abandon();
    }
    drop(plain_tx);
    let (sealed, uploads, fanned) = match shipping
        .finish_unless(&lp.destinations, &mut skipped, cancel)
        .await
        .map_err(AttemptError::Fatal)?
    {
        Ok(done) => done,
        Err(uploads) => {
            abort_all(&lp.destinations, uploads).await;
            return Err(AttemptError::Fatal(cancelled(&p.name)));
        }
    };
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
    let landed = completed.map_err(AttemptError::Fatal)?;
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

    // With a revision log, the timeline this backup anchors (restores replay from it).
    let timeline = match &p.pitr {
        Some(_) => {
            let cluster = format!("{:x}", status.cluster_id);
            super::revlog::anchoring_timeline(lp, &cluster, checked.effective_revision).await
        }
        None => None,
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
            effective_revision: Some(checked.effective_revision),
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
        timeline,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
    };
    stages.push(("verify", t.elapsed()));
    if cancel.is_cancelled() {
        // Stopped while verifying: the data objects are complete but never committed.
        for &i in &landed {
            remove_quietly(&lp.destinations[i], &data_key).await;
        }
        return Err(AttemptError::Fatal(cancelled(&p.name)));
    }
    t = std::time::Instant::now();
    let committed = commit_manifest(&lp.destinations, &landed, &manifest, &mut skipped)
        .await
        .map_err(AttemptError::Fatal)?;
    stages.push(("commit", t.elapsed()));
    Ok(Landed {
        manifest,
        stages,
        destinations: committed,
        skipped,
    })
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
    let (space, leftovers) = RunSpace::claim(lp, &id)?;
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
    let expect_sha = report.sha256.clone();
    let shipped = ship_file(lp, file, &data_key, image_len, |n, sha| {
        (n != size || hex::encode(sha) != expect_sha).then(|| {
            Error::new(
                Kind::Verify,
                format!(
                    "{} changed while it was uploaded; nothing was committed. Copy it from a \
                     stopped member (or save a snapshot) and try again",
                    file.display()
                ),
            )
        })
    })
    .await?;
    let (sealed, landed, mut skipped) = (shipped.sealed, shipped.landed, shipped.skipped);

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
            effective_revision: Some(st.revision_floor()),
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
        timeline: None,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
    };
    let destinations = commit_manifest(&lp.destinations, &landed, &manifest, &mut skipped).await?;
    let landed = Landed {
        manifest,
        stages: Stages::new(),
        destinations,
        skipped,
    };
    drop(space);
    Ok(committed(lp, landed, Vec::new(), leftovers).await)
}

/// Commit a backup: its manifest, written last, at every destination holding its data.
async fn commit_manifest(
    dests: &[crate::store::Destination],
    landed: &[usize],
    m: &Manifest,
    skipped: &mut Skipped,
) -> Result<Vec<usize>> {
    let key = model::manifest_key(&m.policy, &m.id);
    commit(dests, landed, &key, m.to_json(), &m.stored.key, skipped).await
}
