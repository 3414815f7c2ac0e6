//! Policy schema. Raw shapes are deserialized with `deny_unknown_fields`; newtypes validate their
//! value in `Deserialize` so errors point at the line and column of the value.

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A validated backup policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `metadata.name`: names the backup set, part of every object key.
    pub name: String,
    /// How to reach the cluster.
    pub cluster: Cluster,
    /// When the daemon runs it (optional for one-shot use).
    pub schedule: Option<Schedule>,
    /// Snapshot limits and spool location.
    pub snapshot: SnapshotSpec,
    /// zstd settings.
    pub compression: CompressionSpec,
    /// age recipients, or none.
    pub encryption: EncryptionSpec,
    /// Where backups go (at least one).
    pub destinations: Vec<DestinationSpec>,
    /// Which backups to keep (absent: keep all).
    pub retention: Option<Retention>,
    /// One backup per scheduled slot across backup hosts (absent: no lock).
    pub lock: Option<LockSpec>,
    /// The revision log for point-in-time recovery (absent: off).
    pub pitr: Option<PitrSpec>,
    /// The daemon's watchdog probe (on by default, every 60s).
    pub monitor: MonitorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PolicyDocument {
    #[allow(dead_code)] // validated on deserialize
    api_version: ApiVersion,
    #[allow(dead_code)]
    kind: PolicyKind,
    metadata: Metadata,
    spec: Spec,
}

impl PolicyDocument {
    pub(super) fn into_policy(self) -> Policy {
        let Spec {
            cluster,
            schedule,
            snapshot,
            compression,
            encryption,
            destinations,
            retention,
            lock,
            pitr,
            monitor,
        } = self.spec;
        Policy {
            name: self.metadata.name.0,
            cluster,
            schedule,
            snapshot,
            compression,
            encryption,
            destinations: destinations.0,
            retention,
            lock,
            pitr,
            monitor,
        }
    }
}

/// Implements `Deserialize` for a newtype by parsing a string with `$parse`.
macro_rules! string_newtype {
    ($ty:ident, $parse:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let parse: fn(&str) -> Result<$ty, String> = $parse;
                parse(&s).map_err(de::Error::custom)
            }
        }
    };
}

struct ApiVersion;
string_newtype!(ApiVersion, |s| if s == "lifeboat/v1" {
    Ok(ApiVersion)
} else {
    Err(format!("apiVersion: expected \"lifeboat/v1\", found {s:?}"))
});

struct PolicyKind;
string_newtype!(PolicyKind, |s| if s == "BackupPolicy" {
    Ok(PolicyKind)
} else {
    Err(format!("kind: expected \"BackupPolicy\", found {s:?}"))
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: PolicyName,
}

struct PolicyName(String);
string_newtype!(PolicyName, |s| {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(PolicyName(s.to_owned()))
    } else {
        Err(format!(
            "metadata.name: {s:?} is not a valid name; use 1-63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit (it becomes part of every object key)"
        ))
    }
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    cluster: Cluster,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    snapshot: SnapshotSpec,
    #[serde(default)]
    compression: CompressionSpec,
    encryption: EncryptionSpec,
    destinations: Destinations,
    #[serde(default)]
    retention: Option<Retention>,
    #[serde(default)]
    lock: Option<LockSpec>,
    #[serde(default)]
    pitr: Option<PitrSpec>,
    #[serde(default)]
    monitor: MonitorSpec,
}

mod cluster;
mod destinations;
mod encryption;
mod lock;
mod monitor;
mod pitr;
mod retention;
mod schedule;
mod snapshot;
mod units;

pub use cluster::*;
pub use destinations::*;
pub use encryption::*;
pub use lock::*;
pub use monitor::*;
pub use pitr::*;
pub use retention::*;
pub use schedule::*;
pub use snapshot::*;
pub use units::*;
