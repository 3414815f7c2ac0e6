//! Verification of a spooled snapshot before it is committed: the bbolt structure and status,
//! a revision no older than the member's before the snapshot, and the live key count against a
//! count-only range on the cluster at the snapshot's revision.

use super::inspect::{FileReport, Hashing, Trailer, inspect_file};
use crate::error::{Error, Kind, Result as LbResult};
use crate::etcd::describe_etcd_error;
use crate::model::{Check, CheckOutcome, DbStatus, Manifest};
use etcd_client::{Client, GetOptions};
use std::path::PathBuf;
use std::time::Duration;
use tracing::info;

/// A snapshot that passed.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its status, for the manifest.
    pub status: DbStatus,
    /// What was checked.
    pub checks: Vec<Check>,
    /// The revision its data is at (see `SnapshotInfo::effective_revision`).
    pub effective_revision: i64,
}

fn passed(name: &str, detail: String) -> Check {
    Check {
        name: name.into(),
        outcome: CheckOutcome::Passed,
        detail,
    }
}

/// The checks a sound file passed on its own: its trailer (skipped when it has none) and its
/// structure.
pub(crate) fn file_checks(report: &FileReport) -> Vec<Check> {
    let stats = &report.inspection.check.stats;
    let trailer = if report.trailer == Trailer::Absent {
        Check {
            name: "sha256-trailer".into(),
            outcome: CheckOutcome::Skipped,
            detail: "no trailer: a copy of a data directory's member/snap/db".into(),
        }
    } else {
        passed("sha256-trailer", format!("sha256 {}", report.sha256))
    };
    vec![
        trailer,
        passed(
            crate::model::STRUCTURE_CHECK,
            format!(
                "{} branch, {} leaf, {} overflow pages; keys in order; no page referenced twice",
                stats.branch_pages, stats.leaf_pages, stats.overflow_pages
            ),
        ),
    ]
}

/// The manifest's record of a status.
pub(crate) fn db_status(st: &crate::etcddb::Status) -> DbStatus {
    DbStatus {
        hash: st.hash,
        revision: st.revision,
        total_key: st.total_key,
        live_keys: st.live_keys,
        total_size: st.total_size,
        storage_version: st.storage_version.clone(),
        compact_revision: st.compact_revision,
    }
}

/// Check the snapshot at `path` (with trailer) taken from the member behind `client`, whose
/// revision was `member_revision` before the snapshot began. `Err` says why it must not be
/// committed.
pub async fn verify_snapshot(
    path: PathBuf,
    streamed_sha256: [u8; 32],
    member_revision: i64,
    client: &mut Client,
    timeout: Duration,
) -> Result<Verified, String> {
    let report: FileReport = tokio::task::spawn_blocking(move || {
        // The stream already hashed these bytes; only the structure needs reading.
        inspect_file(&path, Hashing::Known(streamed_sha256))
    })
    .await
    .map_err(|e| format!("verification task failed: {e}"))?
    .map_err(|e| e.to_string())?;
    let problems = report.problems();
    if !problems.is_empty() {
        return Err(format!(
            "the snapshot failed its structural check:\n    {}",
            problems.join("\n    ")
        ));
    }
    if report.trailer != Trailer::Matches {
        return Err("the spooled snapshot has no matching SHA-256 trailer".into());
    }
    let st = &report.inspection.status;
    let mut checks = file_checks(&report);
    let floor = st.revision_floor();
    if floor < member_revision {
        return Err(format!(
            "the snapshot is stale: its revision is {} but the member was already at revision \
             {member_revision} before the snapshot began",
            st.revision
        ));
    }
    checks.push(passed(
        "revision",
        format!(
            "snapshot revision {} >= member revision {member_revision} before the snapshot",
            st.revision
        ),
    ));
    checks.push(count_check(client, st.revision, st.live_keys, timeout).await?);
    info!(
        hash = format!("{:x}", st.hash),
        revision = st.revision,
        total_key = st.total_key,
        live_keys = st.live_keys,
        "Snapshot verified"
    );
    Ok(Verified {
        status: db_status(st),
        checks,
        effective_revision: floor,
    })
}

/// Compare the snapshot's live keys with the cluster's count at the same revision.
async fn count_check(
    client: &mut Client,
    revision: i64,
    live: u64,
    timeout: Duration,
) -> Result<Check, String> {
    let skipped = |detail: String| Check {
        name: "live-key-count".into(),
        outcome: CheckOutcome::Skipped,
        detail,
    };
    if revision == 0 {
        return Ok(skipped("the snapshot holds no revisions".into()));
    }
    // Every key: from "\0" with range end "\0".
    let opts = GetOptions::new()
        .with_range(vec![0u8])
        .with_count_only()
        .with_revision(revision);
    // The range is linearizable: right after a leader change it fails or waits until the
    // election is over, so transient errors are retried until the timeout.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    let resp = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, client.get(vec![0u8], Some(opts.clone()))).await {
            Err(_) => {
                return Ok(skipped(format!(
                    "the count-only range did not answer within {timeout:?}{}",
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(" (last error: {last})")
                    }
                )));
            }
            Ok(Err(e)) => {
                let msg = describe_etcd_error(&e);
                if msg.contains("compacted") {
                    return Ok(skipped(format!(
                        "revision {revision} is already compacted on the cluster"
                    )));
                }
                if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                    return Ok(skipped(format!(
                        "the count-only range at revision {revision} failed: {msg}"
                    )));
                }
                last = msg;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Ok(r)) => break r,
        }
    };
    let count = u64::try_from(resp.count()).unwrap_or(0);
    if count != live {
        return Err(format!(
            "the snapshot holds {live} live keys at revision {revision} but the cluster counts \
             {count} keys at that revision"
        ));
    }
    Ok(passed(
        "live-key-count",
        format!("{live} live keys, as the cluster counts at revision {revision}"),
    ))
}

/// Every way `report` (a fetched or staged file) contradicts its manifest, plus every reason not
/// to trust it at all; empty when it is the backup the manifest describes.
pub fn against_manifest(report: &FileReport, m: &Manifest) -> Vec<String> {
    let mut out = report.problems();
    let sn = &m.snapshot;
    let mut differs = |what: &str, got: String, want: String| {
        if got != want {
            out.push(format!("{what} is {got} but the manifest records {want}"));
        }
    };
    differs(
        "the file size",
        report.file_size.to_string(),
        sn.file_size.to_string(),
    );
    differs(
        "the SHA-256 trailer",
        if report.trailer == Trailer::Absent {
            "absent"
        } else {
            "present"
        }
        .into(),
        if sn.has_trailer { "present" } else { "absent" }.into(),
    );
    if !report.sha256.is_empty() {
        differs(
            "the database SHA-256",
            report.sha256.clone(),
            sn.sha256.clone(),
        );
    }
    let st = &report.inspection.status;
    match &sn.status {
        Some(want) => {
            differs(
                "the status hash",
                format!("{:08x}", st.hash),
                format!("{:08x}", want.hash),
            );
            differs(
                "the revision",
                st.revision.to_string(),
                want.revision.to_string(),
            );
            differs(
                "totalKey",
                st.total_key.to_string(),
                want.total_key.to_string(),
            );
            differs(
                "the live key count",
                st.live_keys.to_string(),
                want.live_keys.to_string(),
            );
            differs(
                "the database size",
                st.total_size.to_string(),
                want.total_size.to_string(),
            );
        }
        // Manifests written before lifeboat read snapshots hold the member's revision from just
        // before the snapshot: the snapshot cannot be older.
        None if st.revision_floor() < sn.revision => out.push(format!(
            "the revision is {} but the member was at {} before the snapshot",
            st.revision, sn.revision
        )),
        None => {}
    }
    out
}

/// Read a fetched file (hashed while fetching) and check it against its manifest.
pub async fn prove(fetched: &super::fetch::Fetched) -> LbResult<FileReport> {
    let path = fetched.path.clone();
    let sha = fetched.image_sha256;
    let report = tokio::task::spawn_blocking(move || inspect_file(&path, Hashing::Known(sha)))
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("verification task failed: {e}")))??;
    let problems = against_manifest(&report, &fetched.manifest);
    if !problems.is_empty() {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "backup {} from destination {:?} does not match its manifest; do not restore \
                 from it:\n  {}",
                fetched.manifest.id,
                fetched.destination,
                problems.join("\n  ")
            ),
        ));
    }
    Ok(report)
}
