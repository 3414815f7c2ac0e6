//! Operations shared by the CLI and the daemon. They never print; they return reports and
//! errors, and log progress through `tracing`.

pub mod backup;
pub mod check;
pub mod drill;
pub mod etcdutl;
pub mod fetch;
pub mod inspect;
pub mod k8s;
pub mod keys;
pub mod list;
pub mod load;
pub mod lock;
pub mod monitor;
pub mod pitr;
pub mod prune;
pub mod restore;
pub mod revlog;
pub mod ship;
pub mod spool;
pub mod verify;

pub use backup::{BackupReport, Outcome, RunEvent, SlotRun, backup_in_slot, backup_until};
pub use list::{ListReport, ListedBackup, list};
pub use load::{LoadedPolicy, load_policy};

/// Removes a file or directory tree when dropped, unless disarmed: the cleanup of every
/// temporary path (spool files, `.part` files, staging and drill directories) on every exit path.
pub(crate) struct RemoveOnDrop(Option<std::path::PathBuf>);

impl RemoveOnDrop {
    pub(crate) fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self(Some(path.into()))
    }

    /// The path it will remove.
    pub(crate) fn path(&self) -> &std::path::Path {
        self.0.as_deref().expect("armed until disarmed")
    }

    /// Keep the path; returns it.
    pub(crate) fn disarm(mut self) -> std::path::PathBuf {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            };
        }
    }
}

/// A new output directory (`--out`), built under a hidden `.NAME.lifeboat-part` sibling (0700)
/// and renamed into place only when complete; the staging directory is removed if this is
/// dropped first. An existing output is refused unless it is an empty directory.
pub(crate) struct StagedDir {
    out: std::path::PathBuf,
    staging: RemoveOnDrop,
}

impl StagedDir {
    pub(crate) fn create(out: &std::path::Path) -> crate::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        if out.exists() && std::fs::read_dir(out).map_or(true, |mut d| d.next().is_some()) {
            return Err(crate::Error::new(
                crate::Kind::Io,
                format!(
                    "{} exists and is not an empty directory; choose a new --out",
                    out.display()
                ),
            ));
        }
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let name = out.file_name().ok_or_else(|| {
            crate::Error::new(
                crate::Kind::Io,
                format!("--out {} has no directory name", out.display()),
            )
        })?;
        let staging = parent.join(format!(".{}.lifeboat-part", name.to_string_lossy()));
        // A killed earlier run's staging directory is never a result: start afresh.
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| io_err(&staging, "cannot create", e))?;
        Ok(Self {
            out: out.to_owned(),
            staging: RemoveOnDrop::new(staging),
        })
    }

    /// Where to write until [`StagedDir::commit`].
    pub(crate) fn path(&self) -> &std::path::Path {
        self.staging.path()
    }

    /// Move the finished directory to its name (replacing an empty directory there).
    pub(crate) fn commit(self) -> crate::Result<std::path::PathBuf> {
        if self.out.exists() {
            std::fs::remove_dir(&self.out)
                .map_err(|e| io_err(&self.out, "cannot replace the empty directory", e))?;
        }
        std::fs::rename(self.staging.path(), &self.out)
            .map_err(|e| io_err(&self.out, "cannot move the output to", e))?;
        self.staging.disarm();
        Ok(self.out)
    }
}

/// An I/O error on `path`, said as "`what` `path`: cause".
pub(crate) fn io_err(path: &std::path::Path, what: &str, e: std::io::Error) -> crate::Error {
    crate::Error::new(crate::Kind::Io, format!("{what} {}: {e}", path.display()))
}

/// Create a new file readable only by us (0600); never truncates an existing file.
pub(crate) fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Create `dir` (and parents) as 0700 if it does not exist.
pub(crate) fn ensure_private_dir(dir: &std::path::Path) -> crate::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            crate::Error::new(
                crate::Kind::Io,
                format!(
                    "cannot create directory {}: {e}; set snapshot.spoolDir to a writable \
                     directory with room for one snapshot",
                    dir.display()
                ),
            )
        })
}
