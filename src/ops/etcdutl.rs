//! Running etcd's own restore (`etcdutl snapshot restore`, or `etcdctl snapshot restore` from
//! etcd 3.4) on a staged snapshot, for `restore --exec` and `check --drill`.

use crate::error::{Error, Kind, Result};
use crate::runbook::RestoreParams;
use std::path::{Path, PathBuf};
use tracing::info;

/// The program that restores snapshots.
#[derive(Debug, Clone)]
pub struct RestoreTool {
    pub program: PathBuf,
    /// `etcdctl` (3.4/3.5) rather than `etcdutl`: needs `ETCDCTL_API=3`.
    pub etcdctl: bool,
}

/// Find an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl RestoreTool {
    /// `etcdutl` from `PATH`, else `etcdctl` (which restores up to etcd 3.5).
    pub fn find() -> Result<Self> {
        if let Some(p) = which("etcdutl") {
            return Ok(Self {
                program: p,
                etcdctl: false,
            });
        }
        if let Some(p) = which("etcdctl") {
            return Ok(Self {
                program: p,
                etcdctl: true,
            });
        }
        Err(Error::new(
            Kind::Usage,
            "neither etcdutl nor etcdctl is on PATH; install etcd's tools (etcdutl 3.5+, or \
             etcdctl 3.4) or run the printed runbook by hand",
        ))
    }

    /// Restore `snapshot` into `params.data_dir`, which must not exist or be empty. On failure
    /// the data directory is removed again, so no half-restored directory is left.
    pub async fn restore(&self, snapshot: &Path, params: &RestoreParams) -> Result<PathBuf> {
        let dir =
            PathBuf::from(params.data_dir.as_deref().ok_or_else(|| {
                Error::new(Kind::Usage, "--exec needs --data-dir: where to restore")
            })?);
        prepare_data_dir(&dir)?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .args(params.args(false))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if self.etcdctl {
            cmd.env("ETCDCTL_API", "3");
        }
        info!(tool = %self.program.display(), data_dir = %dir.display(), "Restoring the snapshot into a data directory");
        let out = cmd.output().await.map_err(|e| {
            Error::new(
                Kind::Io,
                format!("cannot run {}: {e}", self.program.display()),
            )
        })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            return Err(Error::new(
                Kind::Io,
                format!(
                    "{} snapshot restore into {} failed ({}); the directory was removed:\n  {}",
                    self.program.display(),
                    dir.display(),
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
                ),
            ));
        }
        Ok(dir)
    }
}

/// Refuse a data directory that holds anything; lifeboat never restores over etcd data.
pub fn check_data_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir).map(|mut d| d.next().is_some()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::new(
            Kind::Io,
            format!("cannot read --data-dir {}: {e}", dir.display()),
        )),
        Ok(true) => Err(Error::new(
            Kind::Usage,
            format!(
                "--data-dir {} is not empty; lifeboat never restores over existing etcd data. \
                 Move it aside (mv {0} {0}.before-restore) or choose an empty directory",
                dir.display()
            ),
        )),
        Ok(false) => Ok(()),
    }
}

/// [`check_data_dir`], then remove an empty directory (etcd 3.4 requires that the directory
/// does not exist).
fn prepare_data_dir(dir: &Path) -> Result<()> {
    check_data_dir(dir)?;
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| {
            Error::new(
                Kind::Io,
                format!("cannot replace empty directory {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}
