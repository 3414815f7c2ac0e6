//! `spec.snapshot` and `spec.compression`: spool, timeouts, attempts and zstd settings.

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

/// Snapshot limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// Directory for the plaintext spool file (0600) during a run; needs room for one snapshot.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Abort a snapshot that takes longer than this.
    #[serde(default = "default_snapshot_timeout")]
    pub timeout: PositiveDuration,
    /// Abort when no bytes arrive for this long.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: PositiveDuration,
    /// How many healthy members to try before giving up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: Attempts,
}

pub(super) fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/lifeboat/spool")
}
pub(super) fn default_snapshot_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(30 * 60))
}
pub(super) fn default_stall_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}
pub(super) fn default_max_attempts() -> Attempts {
    Attempts(3)
}

impl Default for SnapshotSpec {
    fn default() -> Self {
        Self {
            spool_dir: default_spool_dir(),
            timeout: default_snapshot_timeout(),
            stall_timeout: default_stall_timeout(),
            max_attempts: default_max_attempts(),
        }
    }
}

/// Attempt count, 1 to 10.
#[derive(Debug, Clone, Copy)]
pub struct Attempts(pub u32);
impl<'de> Deserialize<'de> for Attempts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if (1..=10).contains(&n) {
            Ok(Attempts(n))
        } else {
            Err(de::Error::custom(format!(
                "maxAttempts {n}: expected 1 to 10"
            )))
        }
    }
}

/// zstd settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompressionSpec {
    /// zstd level, 1 (fastest) to 19 (smallest).
    #[serde(default = "default_level")]
    pub level: Level,
    /// Compression worker threads; 0 means one fewer than the cores (at least 1, at most 4).
    #[serde(default)]
    pub threads: u32,
    /// Input bytes per zstd job (512KiB to 256MiB): memory grows with it times the threads;
    /// larger jobs compress very slightly better.
    #[serde(default = "default_job_size")]
    pub job_size: JobSize,
}

pub(super) fn default_job_size() -> JobSize {
    JobSize(2 << 20)
}

/// zstd job size, within zstd's multithreading limits and a memory ceiling of our own.
#[derive(Debug, Clone, Copy)]
pub struct JobSize(pub u64);
impl<'de> Deserialize<'de> for JobSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = ByteSize::deserialize(d)?.0;
        if ((512 << 10)..=(256 << 20)).contains(&n) {
            Ok(JobSize(n))
        } else {
            Err(de::Error::custom(format!(
                "compression jobSize {n} bytes: must be between 512KiB and 256MiB"
            )))
        }
    }
}

pub(super) fn default_level() -> Level {
    Level(3)
}

impl Default for CompressionSpec {
    fn default() -> Self {
        Self {
            level: default_level(),
            threads: 0,
            job_size: default_job_size(),
        }
    }
}

/// zstd level 1..=19 (20+ need far more memory, on backup and restore alike).
#[derive(Debug, Clone, Copy)]
pub struct Level(pub i32);
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i32::deserialize(d)?;
        if (1..=19).contains(&n) {
            Ok(Level(n))
        } else {
            Err(de::Error::custom(format!(
                "compression level {n}: expected 1 (fastest) to 19 (smallest)"
            )))
        }
    }
}
