//! Run workspaces in the spool directory, and the leftovers of runs that died.
//!
//! Every run that writes plaintext under `snapshot.spoolDir` (a backup's spool file, the copies
//! `inspect`, `extract` and `check` fetch, a drill's data directory) first claims a workspace:
//! the file `<policy>-<run>.lock`, created 0600 and locked (flock, exclusive) for as long as the
//! run lives. Everything the run writes there is named `<policy>-<run>.<what>`. The kernel drops
//! the lock when the process ends, however it ends (SIGKILL, an OOM kill, a crash), so a workspace
//! whose lock can be taken belongs to a run that is gone, and its files are leftovers. No
//! timestamp is involved: a run that has been going for a day is as alive as one just started,
//! whether it is in this process (the daemon), another one-shot on the host, or a daemon beside
//! a one-shot.
//!
//! Claiming a workspace and sweeping leftovers both happen under an exclusive lock on the spool
//! directory itself, so a sweep never sees a workspace between its lock file's creation and its
//! lock. Only the policy's own files are ever looked at; a shared spool directory is safe.

use super::LoadedPolicy;
use crate::error::{Error, Kind, Result};
use crate::model::BackupId;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use tracing::warn;

/// A file or directory a dead run left behind, now removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Where it was.
    pub path: PathBuf,
    /// How many bytes it held (a directory: everything below it).
    pub bytes: u64,
    /// What it was, in words.
    pub what: &'static str,
}

/// The workspace of one live run; its lock is held until this is dropped, which also removes
/// anything of the run still there.
#[derive(Debug)]
pub struct RunSpace {
    dir: PathBuf,
    stem: String,
    lock_path: PathBuf,
    _lock: File,
}

/// The name of the drill's pid file inside its directory: a sweep stops a drill etcd whose
/// run died.
pub const DRILL_PID_FILE: &str = "etcd.pid";

fn io(dir: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        Kind::Io,
        format!(
            "spool directory {}: cannot {what}: {e}; check that snapshot.spoolDir is a writable \
             local directory",
            dir.display()
        ),
    )
}

/// Hold the spool directory's lock (exclusive, blocking: it is only held for a sweep).
fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir).map_err(|e| io(dir, "open it", e))?;
    f.lock().map_err(|e| io(dir, "lock it", e))?;
    Ok(f)
}

/// Which run of `policy` the spool entry `name` belongs to, and the rest of its name. Pure.
pub fn owner<'a>(name: &'a str, policy: &str) -> Option<(BackupId, &'a str)> {
    let (stem, rest) = name.split_once('.')?;
    let run = stem.strip_prefix(policy)?.strip_prefix('-')?;
    Some((BackupId::parse(run)?, rest))
}

fn describe(rest: &str) -> &'static str {
    if rest.starts_with("db") {
        "spool file of a backup"
    } else if rest.starts_with("fetch") {
        "copy fetched by inspect or extract"
    } else if rest.starts_with("check") {
        "copy fetched by check"
    } else if rest.starts_with("drill") {
        "drill directory"
    } else {
        "file of a run"
    }
}

impl RunSpace {
    /// Claim the workspace of run `run` of `lp` in its spool directory (created 0700 if
    /// missing), after removing the leftovers of the policy's runs that are gone: in the spool,
    /// and their partial uploads at its local destinations (see [`staged_uploads`]).
    pub fn claim(lp: &LoadedPolicy, run: &BackupId) -> Result<(Self, Vec<Leftover>)> {
        let (space, mut leftovers, dead) =
            Self::open(&lp.policy.snapshot.spool_dir, &lp.policy.name, run)?;
        leftovers.extend(staged_uploads(lp, &dead));
        Ok((space, leftovers))
    }

    /// The spool part of [`RunSpace::claim`] for `policy` in `dir`; also the ids of the dead
    /// runs whose leftovers went.
    fn open(
        dir: &Path,
        policy: &str,
        run: &BackupId,
    ) -> Result<(Self, Vec<Leftover>, Vec<String>)> {
        super::ensure_private_dir(dir)?;
        let held = lock_dir(dir)?;
        let (leftovers, dead) = sweep(dir, policy);
        let stem = format!("{policy}-{run}");
        let lock_path = dir.join(format!("{stem}.lock"));
        let lock = super::create_private_file(&lock_path)
            .map_err(|e| io(dir, &format!("create {}", lock_path.display()), e))?;
        // Nobody else can hold it yet: the file is new and the directory lock is ours.
        lock.try_lock()
            .map_err(|e| io(dir, &format!("lock {}", lock_path.display()), e.into()))?;
        drop(held);
        Ok((
            Self {
                dir: dir.to_owned(),
                stem,
                lock_path,
                _lock: lock,
            },
            leftovers,
            dead,
        ))
    }

    /// The path of this run's file or directory `what` (`db.part`, `fetch.part`, ...).
    pub fn path(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{}.{what}", self.stem))
    }
}

impl Drop for RunSpace {
    fn drop(&mut self) {
        // Normally every file is gone already (each has its own guard); this is the safety net.
        let prefix = format!("{}.", self.stem);
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(&prefix) && e.path() != self.lock_path {
                    remove(&e.path());
                }
            }
        }
        // Unlinked while still locked, so a sweep never takes it for a dead run's.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Remove the leftovers of `policy`'s runs that are gone from `dir`; nothing when `dir` does
/// not exist. For the daemon's start; every run does the same when it claims its workspace.
pub fn remove_leftovers(lp: &LoadedPolicy) -> Result<Vec<Leftover>> {
    let (mut removed, dead) = remove_leftovers_in(&lp.policy.snapshot.spool_dir, &lp.policy.name)?;
    removed.extend(staged_uploads(lp, &dead));
    Ok(removed)
}

/// The spool part of [`remove_leftovers`]: what went, and the dead runs it belonged to.
fn remove_leftovers_in(dir: &Path, policy: &str) -> Result<(Vec<Leftover>, Vec<String>)> {
    if !dir.is_dir() {
        return Ok((Vec::new(), Vec::new()));
    }
    let _held = lock_dir(dir)?;
    Ok(sweep(dir, policy))
}

/// The partial uploads of dead runs at the policy's local destinations: object_store writes a
/// local object to `KEY#N` and renames it when complete, so a run killed mid-upload leaves
/// that file (invisible to listings, as large as what was uploaded). A run's objects are named
/// after its id, and run ids are unique across hosts, so only files of runs known dead here
/// are removed, never those of a run alive on another host sharing the directory.
fn staged_uploads(lp: &LoadedPolicy, dead: &[String]) -> Vec<Leftover> {
    let mut removed = Vec::new();
    if dead.is_empty() {
        return removed;
    }
    let ours = |object: &str| {
        dead.iter().any(|r| {
            object
                .strip_prefix(r.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        })
    };
    let prefix = crate::model::policy_prefix(&lp.policy.name);
    for d in &lp.destinations {
        for (path, bytes) in d.remove_staged_uploads(&prefix, ours) {
            warn!(path = %path.display(), bytes, destination = %d.name, "Removed the partial upload of a run that is gone");
            removed.push(Leftover {
                path,
                bytes,
                what: "partial upload at a local destination",
            });
        }
    }
    removed
}

/// With the directory lock held: remove every workspace of `policy` whose lock can be taken,
/// and every file of `policy` whose run has no lock file at all (a run of a lifeboat before
/// workspaces, or one killed while removing its own files).
fn sweep(dir: &Path, policy: &str) -> (Vec<Leftover>, Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut runs: std::collections::BTreeMap<String, Vec<(PathBuf, String)>> = Default::default();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((run, rest)) = owner(&name, policy) {
            let rest = rest.to_owned();
            runs.entry(run.to_string())
                .or_default()
                .push((e.path(), rest));
        }
    }
    let mut removed = Vec::new();
    let mut dead = Vec::new();
    for (run, entries) in runs {
        let lock_path = dir.join(format!("{policy}-{run}.lock"));
        // Keep the lock taken while the run's files go, so the run cannot be mistaken for
        // alive-and-new; it is unlinked last.
        let _taken = match File::options().read(true).write(true).open(&lock_path) {
            Ok(f) => match f.try_lock() {
                Ok(()) => Some(f),
                Err(TryLockError::WouldBlock) => continue, // alive
                Err(TryLockError::Error(e)) => {
                    warn!(path = %lock_path.display(), error = %e, "Cannot test a run's lock; leaving its files alone");
                    continue;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(path = %lock_path.display(), error = %e, "Cannot open a run's lock; leaving its files alone");
                continue;
            }
        };
        for (path, rest) in entries {
            if rest == "lock" {
                continue;
            }
            let bytes = size_of(&path);
            if rest.starts_with("drill") {
                stop_drill(&path);
            }
            if remove(&path) {
                warn!(path = %path.display(), bytes, what = describe(&rest), "Removed a leftover of a run that is gone");
                removed.push(Leftover {
                    path,
                    bytes,
                    what: describe(&rest),
                });
            }
        }
        let _ = std::fs::remove_file(&lock_path);
        dead.push(run);
    }
    (removed, dead)
}

/// Remove a file or directory tree; false (and a warning) if it stays.
fn remove(path: &Path) -> bool {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "Cannot remove a leftover; it may hold plaintext, remove it by hand");
            false
        }
    }
}

/// Bytes under `path` (not following symlinks).
fn size_of(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// A drill whose run died may have left its etcd running on the directory: stop it, but only
/// a process whose command line names that directory (pids are reused).
fn stop_drill(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join(DRILL_PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let needle = dir.as_os_str().as_encoded_bytes();
    if cmdline.windows(needle.len()).any(|w| w == needle)
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        warn!(pid, dir = %dir.display(), "Stopping the etcd of a drill whose run is gone");
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        // Give the kernel a moment to release its files before the directory goes.
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> BackupId {
        BackupId::parse(s).unwrap()
    }

    #[test]
    fn entries_belong_to_their_own_policy_only() {
        let run = "20261121T020000Z-3fa91c";
        assert_eq!(
            owner(&format!("prod-{run}.db.part"), "prod"),
            Some((id(run), "db.part"))
        );
        assert_eq!(
            owner(&format!("prod-{run}.lock"), "prod"),
            Some((id(run), "lock"))
        );
        // "prod-eu" is another policy even though it starts with "prod-".
        assert_eq!(owner(&format!("prod-eu-{run}.db.part"), "prod"), None);
        assert_eq!(
            owner(&format!("prod-eu-{run}.db.part"), "prod-eu"),
            Some((id(run), "db.part"))
        );
        assert_eq!(owner("prod-notanid.db.part", "prod"), None);
        assert_eq!(owner(&format!("prod-{run}"), "prod"), None);
        assert_eq!(owner("other.txt", "prod"), None);
    }

    #[test]
    fn a_live_workspace_is_kept_and_a_dead_one_swept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let (live, swept, _) =
            RunSpace::open(&spool, "prod", &id("20261121T020000Z-000001")).unwrap();
        assert!(swept.is_empty());
        std::fs::write(live.path("db.part"), vec![1u8; 10]).unwrap();
        // A dead run: its lock file exists but nobody holds it; a drill dir and a fetch.
        let dead = "prod-20261120T020000Z-000002";
        std::fs::write(spool.join(format!("{dead}.lock")), b"").unwrap();
        std::fs::write(spool.join(format!("{dead}.db.part")), vec![2u8; 1000]).unwrap();
        std::fs::create_dir(spool.join(format!("{dead}.drill-x"))).unwrap();
        std::fs::write(spool.join(format!("{dead}.drill-x/data")), vec![3u8; 24]).unwrap();
        // A run of a lifeboat before workspaces: no lock file at all.
        let old = "prod-20261119T020000Z-000003";
        std::fs::write(spool.join(format!("{old}.fetch.part")), vec![4u8; 7]).unwrap();
        // Another policy's dead run is never touched.
        let other = "prod-eu-20261120T020000Z-000004";
        std::fs::write(spool.join(format!("{other}.db.part")), b"x").unwrap();

        // A second run of the same policy sweeps; the first is alive (its lock is held here,
        // by another open file description, exactly as another process would).
        let (second, mut swept, dead_runs) =
            RunSpace::open(&spool, "prod", &id("20261121T020001Z-000005")).unwrap();
        // The dead runs are named, so their partial uploads can go too; the live one is not.
        assert_eq!(
            dead_runs,
            vec![
                old.trim_start_matches("prod-").to_owned(),
                dead.trim_start_matches("prod-").to_owned()
            ]
        );
        swept.sort_by(|a, b| a.path.cmp(&b.path));
        let got: Vec<(String, u64)> = swept
            .iter()
            .map(|l| {
                (
                    l.path.file_name().unwrap().to_string_lossy().into(),
                    l.bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (format!("{old}.fetch.part"), 7),
                (format!("{dead}.db.part"), 1000),
                (format!("{dead}.drill-x"), 24),
            ]
        );
        assert!(live.path("db.part").exists());
        assert!(!spool.join(format!("{dead}.lock")).exists());
        assert!(spool.join(format!("{other}.db.part")).exists());

        // Dropping a workspace removes what it left and its lock.
        drop(live);
        drop(second);
        let left: Vec<String> = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![format!("{other}.db.part")]);
        assert!(remove_leftovers_in(&spool, "prod").unwrap().0.is_empty());
        assert!(
            remove_leftovers_in(&dir.path().join("missing"), "prod")
                .unwrap()
                .0
                .is_empty()
        );
    }
}
