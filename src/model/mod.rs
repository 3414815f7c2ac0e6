//! Pure domain types shared by every operation: backup ids, the object-key layout and the manifest.
//! No I/O here.

mod id;
mod keys;
mod manifest;

pub use id::BackupId;
pub use keys::{ObjectRole, data_key, manifest_key, parse_key, policy_prefix};
pub use manifest::{
    AlarmSeen, Check, CheckOutcome, Compression, DbStatus, Encryption, MANIFEST_FORMAT_VERSION,
    Manifest, MemberInfo, STRUCTURE_CHECK, SnapshotInfo, SnapshotSource, StoredObject,
};

#[cfg(test)]
pub(crate) use manifest::tests::sample as sample_manifest;
