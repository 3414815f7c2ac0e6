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
    /// Version of lifeboat that wrote the manifest.
    pub lifeboat_version: String,
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
    /// The member's revision (status header) read just before the snapshot began.
    pub revision: i64,
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
mod tests {
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
    fn unknown_fields_are_tolerated_but_newer_formats_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["futureField"] = serde_json::json!(1);
        assert!(Manifest::from_json(v.to_string().as_bytes()).is_ok());
        v["formatVersion"] = serde_json::json!(2);
        let err = Manifest::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("upgrade lifeboat"), "{err}");
    }
}
