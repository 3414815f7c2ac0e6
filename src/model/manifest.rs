//! The manifest: the JSON object written next to a backup's data, last. Readers ignore fields they
//! do not know, so newer lifeboat versions can add fields without breaking older readers.

use super::BackupId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped only for incompatible changes; readers refuse newer major formats.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Everything needed to list, verify and restore one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Manifest format version ([`MANIFEST_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Backup id; also the key stem.
    pub id: BackupId,
    /// `metadata.name` of the policy that made it.
    pub policy: String,
    /// etcd cluster id, lowercase hex.
    pub cluster_id: String,
    /// The member the snapshot came from.
    pub member: MemberInfo,
    /// When the run started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the data was fully stored (UTC), just before the manifest was written.
    pub finished_at: DateTime<Utc>,
    /// What was snapshotted.
    pub snapshot: SnapshotInfo,
    /// What was stored.
    pub stored: StoredObject,
    /// Verifications done before the commit.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// etcd alarms raised in the cluster when the snapshot was taken (any member's), e.g. a
    /// backup taken under NOSPACE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmSeen>,
    /// The revision-log timeline this backup anchors (`spec.pitr`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<BackupId>,
    /// Version of lifeboat that wrote the manifest.
    pub lifeboat_version: String,
}

/// An etcd alarm raised when the backup was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSeen {
    /// The member the alarm is for, lowercase hex.
    pub member: String,
    /// Its name from the member list, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub member_name: String,
    /// `NOSPACE`, `CORRUPT`, ...
    pub alarm: String,
}

/// The etcd member that served the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// Member id, lowercase hex.
    pub id: String,
    /// Member name from the member list (empty if unknown).
    #[serde(default)]
    pub name: String,
    /// Endpoint used.
    pub endpoint: String,
    /// etcd server version reported by the member.
    pub etcd_version: String,
    /// Whether the member was the raft leader when chosen.
    pub is_leader: bool,
}

/// Where the snapshot bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotSource {
    /// The Maintenance/Snapshot API of a live member.
    Etcd,
    /// A local file given with `--from-file`.
    File,
}

/// Facts about the snapshot itself (the plaintext file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// Where the bytes came from.
    pub source: SnapshotSource,
    /// The snapshot's own revision (last revision in its `key` bucket), or for manifests
    /// written before lifeboat read snapshots, the member's revision before the snapshot.
    pub revision: i64,
    /// The member's revision (status header) read just before the snapshot began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_revision: Option<i64>,
    /// The revision the data is at: the highest of the last write and the finished and
    /// scheduled compactions (`revision` can be lower when the last write before a compaction
    /// was a delete). A point-in-time restore replays from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_revision: Option<i64>,
    /// The member's raft index read just before the snapshot began.
    pub raft_index: u64,
    /// Size of the bbolt database image in bytes (excludes the trailer).
    pub db_size: u64,
    /// Size of the snapshot file as stored plaintext: database plus trailer when present.
    pub file_size: u64,
    /// Whether the file ends with etcd's 32-byte SHA-256 trailer.
    pub has_trailer: bool,
    /// SHA-256 of the database image, lowercase hex (equals the trailer when present).
    pub sha256: String,
    /// `snapshot status` of the database as lifeboat computed it before committing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DbStatus>,
}

/// The database's status, in `etcdutl snapshot status` terms plus lifeboat's extras.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbStatus {
    /// CRC-32C over bucket names, keys and values (`snapshot status` hash).
    pub hash: u32,
    /// Last revision in bucket `key`.
    pub revision: i64,
    /// etcd 3.4/3.5 `totalKey`: entries in every bucket.
    pub total_key: u64,
    /// etcd 3.6 `totalKey`: distinct live keys.
    pub live_keys: u64,
    /// `meta.pgid * pageSize`.
    pub total_size: u64,
    /// `meta/storageVersion`, written by etcd 3.6+.
    #[serde(default)]
    pub storage_version: Option<String>,
    /// Revision of the last finished compaction recorded in the database.
    #[serde(default)]
    pub compact_revision: Option<i64>,
}

/// One verification performed before the backup was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable name, e.g. `sha256-trailer`, `bbolt-structure`, `revision`, `live-key-count`.
    pub name: String,
    /// Whether it ran and passed, or was skipped (failed checks stop the commit).
    pub outcome: CheckOutcome,
    /// What was compared, or why it was skipped.
    pub detail: String,
}

/// Name of the check that walked the whole bbolt structure: a backup whose manifest records it
/// as passed is "verified" (retention always keeps the newest such backup).
pub const STRUCTURE_CHECK: &str = "bbolt-structure";

/// Outcome of a [`Check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckOutcome {
    /// Ran and passed.
    Passed,
    /// Could not run; `detail` says why.
    Skipped,
}

/// The stored (compressed, encrypted) object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObject {
    /// Key of the data object relative to the destination prefix.
    pub key: String,
    /// Size in bytes of the stored object.
    pub size: u64,
    /// SHA-256 of the stored object, lowercase hex.
    pub sha256: String,
    /// How it was compressed.
    pub compression: Compression,
    /// How it was encrypted; `None` when the policy says `encryption: none`.
    pub encryption: Option<Encryption>,
}

/// Compression parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compression {
    /// Always `zstd` for now.
    pub algorithm: String,
    /// zstd level.
    pub level: i32,
}

/// Encryption parameters (public data only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// Always `age` for now.
    pub algorithm: String,
    /// age recipients (public keys) that can decrypt.
    pub recipients: Vec<String>,
}

impl Manifest {
    /// Serialize as pretty JSON (what is stored).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Parse a stored manifest, refusing formats newer than this build understands.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.format_version > MANIFEST_FORMAT_VERSION {
            return Err(format!(
                "manifest format {} is newer than this lifeboat understands ({}); upgrade lifeboat",
                m.format_version, MANIFEST_FORMAT_VERSION
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample() -> Manifest {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 2, 30, 0).unwrap();
        Manifest {
            format_version: 1,
            id: BackupId::new(t, 0xabc),
            policy: "prod".into(),
            cluster_id: "408e8f427eb47cc4".into(),
            member: MemberInfo {
                id: "dd1baac6075ebb6".into(),
                name: "m2".into(),
                endpoint: "http://127.0.0.1:2379".into(),
                etcd_version: "3.4.23".into(),
                is_leader: false,
            },
            started_at: t,
            finished_at: t,
            snapshot: SnapshotInfo {
                source: SnapshotSource::Etcd,
                revision: 301,
                raft_index: 308,
                db_size: 1642496,
                file_size: 1642528,
                has_trailer: true,
                sha256: "00".repeat(32),
                member_revision: Some(300),
                effective_revision: Some(301),
                status: Some(DbStatus {
                    hash: 0x3643b8c3,
                    revision: 301,
                    total_key: 310,
                    live_keys: 200,
                    total_size: 1642496,
                    storage_version: None,
                    compact_revision: Some(100),
                }),
            },
            stored: StoredObject {
                key: "prod/20261121T023000Z-000abc.snapshot.zst.age".into(),
                size: 90000,
                sha256: "11".repeat(32),
                compression: Compression {
                    algorithm: "zstd".into(),
                    level: 3,
                },
                encryption: Some(Encryption {
                    algorithm: "age".into(),
                    recipients: vec!["age1xyz".into()],
                }),
            },
            checks: vec![Check {
                name: "live-key-count".into(),
                outcome: CheckOutcome::Skipped,
                detail: "revision 301 is compacted".into(),
            }],
            alarms: vec![],
            timeline: None,
            lifeboat_version: "0.1.0".into(),
        }
    }

    #[test]
    fn json_round_trip_uses_camel_case() {
        let m = sample();
        let json = m.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"clusterId\""));
        assert!(text.contains("\"dbSize\": 1642496"));
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
    }

    #[test]
    fn manifests_without_verification_fields_still_parse() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("checks");
        let snap = o["snapshot"].as_object_mut().unwrap();
        snap.remove("status");
        snap.remove("memberRevision");
        let m = Manifest::from_json(v.to_string().as_bytes()).unwrap();
        assert!(m.checks.is_empty() && m.snapshot.status.is_none());
    }

    #[test]
    fn unknown_fields_are_tolerated_but_newer_formats_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["futureField"] = serde_json::json!(1);
        assert!(Manifest::from_json(v.to_string().as_bytes()).is_ok());
        v["formatVersion"] = serde_json::json!(2);
        let err = Manifest::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("upgrade lifeboat"), "{err}");
    }
}
