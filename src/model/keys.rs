//! Where a backup's objects live inside a destination. Everything for one policy sits under
//! `<policy>/`, so listing a policy is one prefix list:
//!
//! ```text
//! <policy>/<id>.snapshot.zst.age   data (or .snapshot.zst when encryption is none)
//! <policy>/<id>.manifest.json      written last; a backup exists iff this exists
//! ```

use super::BackupId;

const DATA_SUFFIX_ENCRYPTED: &str = ".snapshot.zst.age";
const DATA_SUFFIX_PLAIN: &str = ".snapshot.zst";
const MANIFEST_SUFFIX: &str = ".manifest.json";

/// What an object under a policy prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectRole {
    /// The compressed (and usually encrypted) snapshot.
    Data,
    /// The manifest that commits the backup.
    Manifest,
}

/// Key prefix (relative to the destination's own prefix) holding one policy's objects.
pub fn policy_prefix(policy: &str) -> String {
    format!("{policy}/")
}

/// Key of the data object of backup `id`.
pub fn data_key(policy: &str, id: &BackupId, encrypted: bool) -> String {
    let suffix = if encrypted {
        DATA_SUFFIX_ENCRYPTED
    } else {
        DATA_SUFFIX_PLAIN
    };
    format!("{policy}/{id}{suffix}")
}

/// Key of the manifest of backup `id`.
pub fn manifest_key(policy: &str, id: &BackupId) -> String {
    format!("{policy}/{id}{MANIFEST_SUFFIX}")
}

/// Recognise a key written by this layout for `policy`; foreign objects yield `None`.
pub fn parse_key(policy: &str, key: &str) -> Option<(BackupId, ObjectRole)> {
    let name = key.strip_prefix(policy)?.strip_prefix('/')?;
    let (stem, role) = if let Some(stem) = name.strip_suffix(MANIFEST_SUFFIX) {
        (stem, ObjectRole::Manifest)
    } else if let Some(stem) = name.strip_suffix(DATA_SUFFIX_ENCRYPTED) {
        (stem, ObjectRole::Data)
    } else if let Some(stem) = name.strip_suffix(DATA_SUFFIX_PLAIN) {
        (stem, ObjectRole::Data)
    } else {
        return None;
    };
    Some((BackupId::parse(stem)?, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let id = BackupId::parse("20261121T023000Z-0a0b0c").unwrap();
        let d = data_key("prod", &id, true);
        let m = manifest_key("prod", &id);
        assert_eq!(d, "prod/20261121T023000Z-0a0b0c.snapshot.zst.age");
        assert_eq!(parse_key("prod", &d), Some((id.clone(), ObjectRole::Data)));
        assert_eq!(
            parse_key("prod", &m),
            Some((id.clone(), ObjectRole::Manifest))
        );
        assert_eq!(
            parse_key("prod", &data_key("prod", &id, false)),
            Some((id, ObjectRole::Data))
        );
    }

    #[test]
    fn other_policies_and_foreign_objects_are_not_ours() {
        let id = BackupId::parse("20261121T023000Z-0a0b0c").unwrap();
        assert_eq!(parse_key("prod", &manifest_key("prod-eu", &id)), None);
        assert_eq!(parse_key("prod-eu", &manifest_key("prod", &id)), None);
        assert_eq!(parse_key("prod", "prod/notes.txt"), None);
        assert_eq!(parse_key("prod", "prod/x.manifest.json"), None);
        assert_eq!(
            parse_key("prod", "prod/sub/20261121T023000Z-0a0b0c.manifest.json"),
            None
        );
    }
}
