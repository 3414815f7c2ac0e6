//! The revision log (pure): every etcd revision between full backups, in segments, so that a
//! restore can reach any revision exactly. This module holds the object layout, the segment and
//! timeline manifests, the segment codec ([`codec`]), the restore planner ([`plan`]) and the
//! retention window ([`window`]). No I/O.
//!
//! ```text
//! <policy>/revlog/<timeline>/timeline.json                          written first
//! <policy>/revlog/<timeline>/<first>-<last>.seg.zst.age             data (.seg.zst unencrypted)
//! <policy>/revlog/<timeline>/<first>-<last>.seg.json                written last: committed
//! ```
//!
//! Revisions are zero-padded to 20 digits, so key order is revision order. A timeline is one
//! provably contiguous run of revisions of one cluster; a new one starts (with a full backup)
//! whenever continuity is lost: history compacted past the resume point, a gap, another
//! cluster id, a revision going backwards.

pub mod codec;
pub mod plan;
pub mod window;

use crate::model::{BackupId, StoredObject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped only for incompatible changes to the manifests below.
pub const REVLOG_FORMAT_VERSION: u32 = 1;

/// A timeline's id: its start time and a random suffix, the same shape as a backup id.
pub type TimelineId = BackupId;

/// Why a timeline began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimelineReason {
    /// The first log of the policy (or of this cluster).
    Initial,
    /// The resume point was compacted away: revisions in between are lost to the log.
    Compacted,
    /// Revisions were missing from the watch twice in a row.
    Gap,
    /// The cluster id changed: another cluster answers at the endpoints.
    ClusterChanged,
    /// The cluster's revision went backwards: it was restored.
    RevisionBackwards,
    /// The cluster reads differently at the log's last revision: it was restored from an
    /// older backup and has since written past where the log stopped.
    Diverged,
}

/// `timeline.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub format_version: u32,
    pub id: TimelineId,
    pub policy: String,
    /// etcd cluster id, lowercase hex.
    pub cluster_id: String,
    /// The first revision the log holds; a full backup at `start_revision - 1` or later
    /// anchors it.
    pub start_revision: i64,
    pub started_at: DateTime<Utc>,
    pub reason: TimelineReason,
    /// The timeline it follows, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TimelineId>,
}

/// The member a segment was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentSource {
    /// Member id (hex) and endpoint of the member watched last in this segment.
    pub member: String,
    pub endpoint: String,
    pub etcd_version: String,
    /// Host of the streamer.
    pub host: String,
}

/// `<first>-<last>.seg.json`: written after the data object, at every destination; the segment
/// exists iff this does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentManifest {
    pub format_version: u32,
    pub policy: String,
    pub timeline: TimelineId,
    pub cluster_id: String,
    pub first_revision: i64,
    pub last_revision: i64,
    pub revisions: u64,
    pub events: u64,
    /// For sizing a replay: most events and most key+value bytes in one revision.
    pub max_events_per_revision: u64,
    pub max_revision_bytes: u64,
    /// When the first and last revisions were received (Unix time; upper bounds when the
    /// stream was catching up).
    pub first_observed_at: DateTime<Utc>,
    pub last_observed_at: DateTime<Utc>,
    /// Up to when the stream was known to hold nothing after `last_revision` (a progress
    /// notification at `last_revision`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_until: Option<DateTime<Utc>>,
    /// Some revision of this segment arrived while catching up.
    pub catchup: bool,
    pub plaintext_size: u64,
    pub plaintext_sha256: String,
    pub stored: StoredObject,
    /// Keys the cluster counted at `last_revision` when the segment was sealed (count-only
    /// range), for a replay to compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_keys_at_last_revision: Option<u64>,
    /// SHA-256 of `last_revision`'s events as this segment encodes them (see
    /// [`codec::revision_digest`]): a fingerprint of the history at that revision. A streamer
    /// resuming after this segment re-reads that revision from the cluster and compares, so
    /// that a cluster restored from an older backup, which has since written past the log's
    /// head, is never taken for the history the log holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revision_events_sha256: Option<String>,
    pub source: SegmentSource,
    pub lifeboat_version: String,
}

/// Where a policy's revision log lives.
pub fn revlog_prefix(policy: &str) -> String {
    format!("{policy}/revlog/")
}

/// Key of a timeline's `timeline.json`.
pub fn timeline_key(policy: &str, tl: &TimelineId) -> String {
    format!("{policy}/revlog/{tl}/timeline.json")
}

fn stem(policy: &str, tl: &TimelineId, first: i64, last: i64) -> String {
    format!("{policy}/revlog/{tl}/{first:020}-{last:020}")
}

/// Key of a segment's data object.
pub fn segment_data_key(
    policy: &str,
    tl: &TimelineId,
    first: i64,
    last: i64,
    encrypted: bool,
) -> String {
    let ext = if encrypted {
        ".seg.zst.age"
    } else {
        ".seg.zst"
    };
    format!("{}{ext}", stem(policy, tl, first, last))
}

/// Key of a segment's manifest.
pub fn segment_manifest_key(policy: &str, tl: &TimelineId, first: i64, last: i64) -> String {
    format!("{}.seg.json", stem(policy, tl, first, last))
}

/// What an object under the revision log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevlogObject {
    Timeline(TimelineId),
    SegmentData {
        timeline: TimelineId,
        first: i64,
        last: i64,
    },
    SegmentManifest {
        timeline: TimelineId,
        first: i64,
        last: i64,
    },
}

/// Recognise a key of `policy`'s revision log; anything else is `None`.
pub fn parse_revlog_key(policy: &str, key: &str) -> Option<RevlogObject> {
    let rest = key.strip_prefix(&revlog_prefix(policy))?;
    let (tl, name) = rest.split_once('/')?;
    let timeline = TimelineId::parse(tl)?;
    if name == "timeline.json" {
        return Some(RevlogObject::Timeline(timeline));
    }
    let (range, ext) = name.split_once('.')?;
    let (a, b) = range.split_once('-')?;
    if a.len() != 20 || b.len() != 20 {
        return None;
    }
    let (first, last) = (a.parse().ok()?, b.parse().ok()?);
    match ext {
        "seg.json" => Some(RevlogObject::SegmentManifest {
            timeline,
            first,
            last,
        }),
        "seg.zst" | "seg.zst.age" => Some(RevlogObject::SegmentData {
            timeline,
            first,
            last,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_sort_by_revision_and_parse_back() {
        let tl = BackupId::new(Utc.with_ymd_and_hms(2026, 12, 2, 3, 4, 5).unwrap(), 0xab);
        let a = segment_manifest_key("prod", &tl, 9, 99);
        let b = segment_manifest_key("prod", &tl, 100, 1000);
        assert!(a < b, "{a} {b}");
        assert_eq!(
            a,
            "prod/revlog/20261202T030405Z-0000ab/00000000000000000009-00000000000000000099.seg.json"
        );
        assert_eq!(
            parse_revlog_key("prod", &a),
            Some(RevlogObject::SegmentManifest {
                timeline: tl.clone(),
                first: 9,
                last: 99
            })
        );
        assert_eq!(
            parse_revlog_key("prod", &segment_data_key("prod", &tl, 9, 99, true)),
            Some(RevlogObject::SegmentData {
                timeline: tl.clone(),
                first: 9,
                last: 99
            })
        );
        assert_eq!(
            parse_revlog_key("prod", &timeline_key("prod", &tl)),
            Some(RevlogObject::Timeline(tl.clone()))
        );
        assert_eq!(parse_revlog_key("other", &a), None);
        assert_eq!(
            parse_revlog_key("prod", "prod/revlog/x/timeline.json"),
            None
        );
        assert_eq!(
            parse_revlog_key("prod", &format!("prod/revlog/{tl}/1-2.seg.json")),
            None
        );
        // Backups' own keys do not mistake these for backups.
        assert_eq!(crate::model::parse_key("prod", &a), None);
    }
}
