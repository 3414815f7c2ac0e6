//! Staging a snapshot for recovery: choose a backup (or take a local file), fetch, decrypt and
//! decompress it into `OUTPUT.part` (0600), prove it against its manifest (trailer, SHA-256,
//! bbolt structure, status), fsync, and only then rename it to `OUTPUT`. Nothing is left at
//! `OUTPUT` unless every check passed, and an existing `OUTPUT` is only replaced with `force`.

use super::LoadedPolicy;
use super::fetch::{Identities, fetch_into, read_manifest};
use super::inspect::{FileReport, Hashing, Trailer, inspect_file};
use super::list::{ListedBackup, list};
use super::spool::Leftover;
use super::verify::prove;
use super::{RemoveOnDrop, io_err};
use crate::error::{Error, Kind, Result};
use crate::etcddb;
use crate::model::{self, Manifest, ObjectRole};
use crate::policy::{DestinationKind, DestinationSpec, parse_destination_url};
use crate::runbook::{RestoreParams, RunbookInput, Target};
use crate::store::Destination;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// Which backup of a policy to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The newest.
    Latest,
    /// This id.
    Id(String),
    /// The newest started strictly before this time.
    Before(DateTime<Utc>),
}

/// Parse `--before`: RFC 3339 (`2026-11-20T10:00:00Z`), a date (`2026-11-20`, midnight UTC), or
/// a duration back from `now` (`6h`, `2days`).
pub fn parse_before(s: &str, now: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{s:?}: {e}"))?;
        return now
            .checked_sub_signed(d)
            .ok_or_else(|| format!("{s:?} reaches before the start of time"));
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-20T10:00:00Z), a date (2026-11-20, UTC) or \
         a duration back from now (6h, 2days)"
    ))
}

/// Pick a backup from a newest-first list. Pure.
pub fn pick(backups: &[ListedBackup], sel: &Selector) -> std::result::Result<usize, String> {
    let newest = backups.first().map_or(String::new(), |b| {
        format!("; the newest is {}", b.manifest.id)
    });
    match sel {
        Selector::Latest if backups.is_empty() => Err("there are no backups".into()),
        Selector::Latest => Ok(0),
        Selector::Id(id) => backups
            .iter()
            .position(|b| b.manifest.id.as_str() == id)
            .ok_or_else(|| format!("there is no backup {id}{newest}")),
        Selector::Before(t) => backups
            .iter()
            .position(|b| b.manifest.started_at < *t)
            .ok_or_else(|| {
                format!(
                    "no backup started before {}{newest}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }),
    }
}

/// A backup chosen for restore and where it will be read from.
#[derive(Debug, Clone)]
pub struct Source {
    pub manifest: Manifest,
    /// Every destination holding it, in the order they are tried.
    pub destinations: Vec<Destination>,
}

/// Choose a backup of `lp` by `sel`, from the manifests at its destinations.
pub async fn choose(lp: &LoadedPolicy, sel: &Selector) -> Result<Source> {
    let report = list(lp).await;
    let i = pick(&report.backups, sel).map_err(|why| {
        let problems = if report.problems.is_empty() {
            String::new()
        } else {
            format!(
                "; some destinations had problems:\n  {}",
                report.problems.join("\n  ")
            )
        };
        Error::new(
            if report.problems.is_empty() {
                Kind::Policy
            } else {
                Kind::Storage
            },
            format!(
                "policy {}: {why}{problems}\nsee `lifeboat list --policy ...`",
                lp.policy.name
            ),
        )
    })?;
    for p in &report.problems {
        warn!(problem = %p, "Listing found a problem");
    }
    let chosen = &report.backups[i];
    let destinations = lp
        .destinations
        .iter()
        .filter(|d| chosen.destinations.contains(&d.name))
        .cloned()
        .collect();
    Ok(Source {
        manifest: chosen.manifest.clone(),
        destinations,
    })
}

/// Resolve `--from URL`: a backup's manifest or data object, e.g.
/// `s3://bucket/prefix/<policy>/<id>.manifest.json`. S3 credentials and endpoint come from the
/// environment (`AWS_*`), as for a policy destination without options.
pub async fn from_url(url: &str) -> Result<Source> {
    let bad = |why: String| {
        Error::new(
            Kind::Usage,
            format!(
                "--from {url:?}: {why}; expected the URL of a backup's manifest or data object, \
                 e.g. s3://bucket/prefix/POLICY/ID.manifest.json or \
                 file:///backups/POLICY/ID.manifest.json"
            ),
        )
    };
    let (kind, prefix) = parse_destination_url(url).map_err(bad)?;
    // Split ".../<policy>/<file>" into the destination (what comes before) and the key.
    let (kind, prefix, policy, file) = match kind {
        DestinationKind::Local { path } => {
            let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
            let parent = path.parent().and_then(Path::parent);
            let (Some(file), Some(policy), Some(base)) =
                (name(&path), path.parent().and_then(name), parent)
            else {
                return Err(bad(
                    "it does not name a file under a policy directory".into()
                ));
            };
            (
                DestinationKind::Local {
                    path: base.to_owned(),
                },
                String::new(),
                policy,
                file,
            )
        }
        object_store_kind => {
            let mut parts: Vec<&str> = prefix.split('/').collect();
            let (Some(file), Some(policy)) = (parts.pop(), parts.pop()) else {
                return Err(bad("it does not name an object under a policy".into()));
            };
            (
                object_store_kind,
                parts.join("/"),
                policy.to_owned(),
                file.to_owned(),
            )
        }
    };
    let key = format!("{policy}/{file}");
    let (id, role) = model::parse_key(&policy, &key)
        .ok_or_else(|| bad(format!("{file:?} is not a lifeboat object")))?;
    let base_url = match &kind {
        DestinationKind::Local { path } => format!("file://{}", path.display()),
        DestinationKind::S3 { bucket: b }
        | DestinationKind::Gcs { bucket: b }
        | DestinationKind::Azure { container: b } => format!("{}://{b}/{prefix}", kind.scheme())
            .trim_end_matches('/')
            .to_owned(),
    };
    let spec = DestinationSpec {
        name: "from".into(),
        url: base_url,
        kind,
        prefix,
        options: BTreeMap::new(),
        required: true,
        // Only read from: the part size is never used.
        part_size: 5 << 20,
    };
    let destination = Destination::build(&spec, &BTreeMap::new())
        .map_err(|e| Error::new(Kind::Storage, format!("--from {url:?}: {e}")))?;
    let in_url = |e: Error| Error::new(e.kind(), format!("--from {url:?}: {e}"));
    let manifest = read_manifest(&destination, &policy, &id)
        .await
        .map_err(in_url)?
        .ok_or_else(|| {
            let hint = if role == ObjectRole::Data {
                "; a data object without a manifest was never committed and must not be restored"
            } else {
                ""
            };
            Error::new(
                Kind::Storage,
                format!(
                    "--from {url:?}: there is no manifest {}{hint}",
                    model::manifest_key(&policy, &id)
                ),
            )
        })?;
    Ok(Source {
        manifest,
        destinations: vec![destination],
    })
}

/// Where to stage.
#[derive(Debug, Clone)]
pub struct Output {
    pub path: PathBuf,
    /// Replace an existing file.
    pub force: bool,
}

impl Output {
    fn part(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".part");
        PathBuf::from(p)
    }

    /// Refuse early (before any download) when the output cannot be written.
    pub fn preflight(&self) -> Result<()> {
        let p = &self.path;
        if p.is_dir() {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "--output {} is a directory; give a file path, e.g. {}/db.snapshot",
                    p.display(),
                    p.display()
                ),
            ));
        }
        if p.exists() && !self.force {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "--output {} already exists; choose another path, or pass --force to replace \
                     it once the new snapshot is verified",
                    p.display()
                ),
            ));
        }
        let parent = parent_dir(p);
        if !parent.is_dir() {
            return Err(Error::new(
                Kind::Io,
                format!(
                    "directory {} does not exist; create it or choose another --output",
                    parent.display()
                ),
            ));
        }
        Ok(())
    }

    /// Remove an `OUTPUT.part` that a restore which is gone left behind (killed, or the
    /// machine lost power), and say what it was; refuse one a live restore is still writing
    /// (it holds the file's lock).
    pub(crate) fn clear_stale_part(&self) -> Result<Option<Leftover>> {
        let part = self.part();
        let f = match std::fs::File::options().read(true).write(true).open(&part) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&part, "cannot open the partial file", e)),
        };
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    Kind::Usage,
                    format!(
                        "another restore is writing {} right now; wait for it to finish or \
                         choose another --output",
                        part.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err(&part, "cannot lock the partial file", e));
            }
        }
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(&part)
            .map_err(|e| io_err(&part, "cannot remove the stale partial file", e))?;
        warn!(path = %part.display(), bytes, "Replaced a partial file left by an interrupted restore");
        Ok(Some(Leftover {
            path: part,
            bytes,
            what: "partial file of an interrupted restore",
        }))
    }

    /// Create `OUTPUT.part` (0600, never over an existing file) and lock it for as long as the
    /// returned lock lives; the other handle is for writing.
    pub(crate) fn create_part(&self) -> Result<(PathBuf, std::fs::File, std::fs::File)> {
        let part = self.part();
        let file = super::create_private_file(&part).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    Kind::Usage,
                    format!(
                        "{} appeared while this restore started: another restore to the same \
                         output is running; choose another --output",
                        part.display()
                    ),
                )
            } else {
                io_err(&part, "cannot create", e)
            }
        })?;
        let lock = file
            .try_clone()
            .and_then(|l| l.try_lock().map_err(Into::into).map(|()| l))
            .map_err(|e| io_err(&part, "cannot lock", e))?;
        Ok((part, file, lock))
    }
}

fn parent_dir(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A staged, verified snapshot.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Where it is (absolute when the output was).
    pub path: PathBuf,
    /// The check of the staged bytes.
    pub report: FileReport,
    /// The backup it came from (none for `--from-file`).
    pub manifest: Option<Manifest>,
    /// The destination it was read from.
    pub destination: Option<String>,
    /// An `OUTPUT.part` left by an interrupted restore, replaced by this one.
    pub replaced_part: Option<Leftover>,
    /// A point-in-time restore: the revision the revision log was replayed to.
    pub replayed_to: Option<i64>,
}

impl Staged {
    /// The staged file at `out`, checked as `report` (made on its `.part`).
    pub(crate) fn at(out: &Output, report: FileReport, source: Option<(Manifest, String)>) -> Self {
        let (manifest, destination) = source.unzip();
        Self {
            path: out.path.clone(),
            report: FileReport {
                path: out.path.clone(),
                ..report
            },
            manifest,
            destination,
            replaced_part: None,
            replayed_to: None,
        }
    }

    /// The file has no trailer, so etcdutl/talosctl need their skip-hash-check flags.
    pub fn needs_skip_hash_check(&self) -> bool {
        self.report.trailer == Trailer::Absent
    }

    /// What the runbook needs, with `params` from the command line.
    pub fn runbook_input(
        &self,
        target: Target,
        node: Option<String>,
        mut params: RestoreParams,
    ) -> RunbookInput {
        let st = &self.report.inspection.status;
        params.skip_hash_check = self.needs_skip_hash_check();
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        RunbookInput {
            target,
            snapshot: path.to_string_lossy().into_owned(),
            backup_id: self.manifest.as_ref().map(|m| m.id.to_string()),
            revision: st.revision,
            hash: st.hash,
            total_key: st.total_key,
            live_keys: st.live_keys,
            etcd_version: self
                .manifest
                .as_ref()
                .map(|m| m.member.etcd_version.clone())
                .filter(|v| !v.is_empty()),
            node,
            params,
            replayed_to: self.replayed_to,
        }
    }
}

/// Fetch `src` into `out`, proving it against its manifest first. A copy that is missing,
/// damaged or unreadable at one destination is tried at the next one holding the backup, each
/// with its own manifest.
pub async fn stage_backup(src: Source, identities: &Identities, out: &Output) -> Result<Staged> {
    out.preflight()?;
    let replaced = out.clear_stale_part()?;
    let id = src.manifest.id.clone();
    let mut failures = Vec::new();
    for (i, d) in src.destinations.iter().enumerate() {
        let manifest = if i == 0 {
            Ok(src.manifest.clone())
        } else {
            read_manifest(d, &src.manifest.policy, &id)
                .await
                .and_then(|m| {
                    m.ok_or_else(|| {
                        Error::new(
                            Kind::Storage,
                            format!("destination {:?} no longer has the manifest", d.name),
                        )
                    })
                })
        };
        let staged = match manifest {
            Ok(m) => stage_one(m, d, identities, out).await,
            Err(e) => Err(e),
        };
        match staged {
            Ok(mut s) => {
                s.replaced_part = replaced;
                return Ok(s);
            }
            // Nothing another copy could change: a key, a local path, an answer.
            Err(e) if matches!(e.kind(), Kind::Crypto | Kind::Io | Kind::Usage) => return Err(e),
            Err(e) => {
                warn!(backup = %id, destination = %d.name, error = %e, "This copy failed; trying the next destination");
                failures.push(e);
            }
        }
    }
    match failures.len() {
        0 => Err(Error::new(
            Kind::Internal,
            format!("backup {id}: no destination to read it from"),
        )),
        1 => Err(failures.pop().expect("one failure")),
        _ => Err(Error::new(
            failures.last().expect("failures").kind(),
            format!(
                "backup {id}: every copy failed:\n  {}",
                failures
                    .iter()
                    .map(|e| e.to_string().replace('\n', "\n    "))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ),
        )),
    }
}

async fn stage_one(
    manifest: Manifest,
    d: &Destination,
    identities: &Identities,
    out: &Output,
) -> Result<Staged> {
    let (part, file, _lock) = out.create_part()?;
    info!(backup = %manifest.id, destination = %d.name, output = %out.path.display(), "Staging backup");
    let fetched = fetch_into(manifest, d, identities, part, file).await?;
    let report = prove(&fetched).await?;
    let source = Some((fetched.manifest.clone(), fetched.destination.clone()));
    publish(RemoveOnDrop::new(fetched.keep()), out)?;
    Ok(Staged::at(out, report, source))
}

/// Explain why a file without a trailer is refused without `--skip-hash-check`.
pub fn refuse_trailerless(path: &Path, size: u64) -> Error {
    Error::new(
        Kind::Usage,
        format!(
            "{} has no SHA-256 trailer (its size {size} is not 32 more than a multiple of 512), \
             so its bytes cannot be proven by digest. A copy of a data directory's \
             member/snap/db looks like this; so does a snapshot cut short. If it is a \
             data-directory copy, rerun with --skip-hash-check: lifeboat still checks its bbolt \
             structure and status, and the runbook adds the skip flag etcdutl and talosctl need",
            path.display()
        ),
    )
}

/// Copy a local snapshot (or `member/snap/db` copy) to `out`, checking the copy.
pub async fn stage_file(file: &Path, skip_hash_check: bool, out: &Output) -> Result<Staged> {
    out.preflight()?;
    let size = std::fs::metadata(file)
        .map_err(|e| io_err(file, "cannot read", e))?
        .len();
    if !etcddb::has_trailer(size) && !skip_hash_check {
        return Err(refuse_trailerless(file, size));
    }
    if std::fs::canonicalize(file).ok() == std::fs::canonicalize(&out.path).ok() {
        return Err(Error::new(
            Kind::Usage,
            format!("--output {} is the input file itself", out.path.display()),
        ));
    }
    let replaced = out.clear_stale_part()?;
    let (part, mut to, _lock) = out.create_part()?;
    let guard = RemoveOnDrop::new(part.clone());
    let src = file.to_owned();
    let report = tokio::task::spawn_blocking(move || -> Result<FileReport> {
        let mut from = std::fs::File::open(&src).map_err(|e| io_err(&src, "cannot open", e))?;
        std::io::copy(&mut from, &mut to)
            .and_then(|_| to.sync_all())
            .map_err(|e| io_err(&part, "copying the snapshot to", e))?;
        // Check the copy, not the source: these are the bytes that will be restored.
        inspect_file(&part, Hashing::Compute)
    })
    .await
    .map_err(|e| Error::new(Kind::Internal, format!("staging task failed: {e}")))??;
    report.ensure_sound(file, "nothing was staged")?;
    if report.file_size != size {
        return Err(Error::new(
            Kind::Io,
            format!(
                "{} changed size while it was copied ({size} -> {} bytes); copy it from a \
                 stopped member and try again",
                file.display(),
                report.file_size
            ),
        ));
    }
    publish(guard, out)?;
    let mut staged = Staged::at(out, report, None);
    staged.replaced_part = replaced;
    Ok(staged)
}

/// Move the verified `.part` into place: atomically, never over an existing file unless
/// `force`, then fsync the directory so the name survives a crash.
pub(crate) fn publish(guard: RemoveOnDrop, out: &Output) -> Result<()> {
    let part = guard.path().to_owned();
    let target = &out.path;
    if out.force {
        std::fs::rename(&part, target).map_err(|e| io_err(target, "cannot rename into", e))?;
    } else {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, &part, CWD, target, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                return Err(Error::new(
                    Kind::Usage,
                    format!(
                        "{} appeared while the backup was being staged; it was left alone. \
                         Choose another --output or pass --force",
                        target.display()
                    ),
                ));
            }
            // Filesystems without RENAME_NOREPLACE: a hard link also refuses to replace.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                std::fs::hard_link(&part, target)
                    .map_err(|e| io_err(target, "cannot create", e))?;
                let _ = std::fs::remove_file(&part);
            }
            Err(e) => return Err(io_err(target, "cannot rename into", e.into())),
        }
    }
    guard.disarm();
    std::fs::File::open(parent_dir(target))
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(parent_dir(target), "cannot sync directory", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn before_accepts_times_dates_and_durations() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        assert_eq!(
            parse_before("2026-11-20T10:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
        );
        assert_eq!(
            parse_before("2026-11-20", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_before("6h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()
        );
        assert!(parse_before("yesterday", now).is_err());
    }

    fn listed(hour: u32) -> ListedBackup {
        let mut m = model::sample_manifest();
        m.started_at = Utc.with_ymd_and_hms(2026, 11, 21, hour, 0, 0).unwrap();
        m.id = model::BackupId::new(m.started_at, hour);
        ListedBackup {
            manifest: m,
            destinations: vec!["s3".into()],
        }
    }

    #[test]
    fn pick_latest_id_and_before() {
        let backups = [listed(12), listed(8), listed(4)]; // newest first, as listed
        assert_eq!(pick(&backups, &Selector::Latest), Ok(0));
        let id = backups[2].manifest.id.to_string();
        assert_eq!(pick(&backups, &Selector::Id(id)), Ok(2));
        let at = |h| Utc.with_ymd_and_hms(2026, 11, 21, h, 0, 0).unwrap();
        assert_eq!(pick(&backups, &Selector::Before(at(9))), Ok(1));
        // Strictly before: a backup started at 08:00 is not "before 08:00".
        assert_eq!(pick(&backups, &Selector::Before(at(8))), Ok(2));
        let err = pick(&backups, &Selector::Before(at(3))).unwrap_err();
        assert!(
            err.contains("no backup started before 2026-11-21T03:00:00Z"),
            "{err}"
        );
        assert!(pick(&[], &Selector::Latest).is_err());
        assert!(pick(&backups, &Selector::Id("nope".into())).is_err());
    }
}
