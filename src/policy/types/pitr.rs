//! `spec.pitr`: the revision log's segment limits and window.

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::time::Duration;

/// `spec.pitr`: a continuous revision log between full backups, for restores to any revision
/// or time. `pitr: {}` enables it with the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPitr")]
pub struct PitrSpec {
    /// Seal a segment once its first revision is this old (the recovery point objective).
    pub segment_max_age: Duration,
    /// Seal a segment once its plaintext is this large.
    pub segment_max_bytes: u64,
    /// How far back restores must stay possible; retention keeps the log and a full backup
    /// for it.
    pub window: Duration,
}

impl Default for PitrSpec {
    fn default() -> Self {
        Self {
            segment_max_age: Duration::from_secs(60),
            segment_max_bytes: 64 << 20,
            window: Duration::from_secs(72 * 3600),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPitr {
    segment_max_age: Option<SegmentAge>,
    segment_max_bytes: Option<SegmentBytes>,
    window: Option<PositiveDuration>,
}

/// `segmentMaxAge`: up to a day (it is the recovery point).
pub(super) struct SegmentAge(Duration);
string_newtype!(SegmentAge, |s| {
    let d = PositiveDuration::parse(s)?.0;
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!(
            "spec.pitr.segmentMaxAge {s:?}: at most 24h (it is the recovery point)"
        ));
    }
    Ok(SegmentAge(d))
});

/// `segmentMaxBytes`: 1 MiB to 4 GiB.
pub(super) struct SegmentBytes(u64);
impl<'de> Deserialize<'de> for SegmentBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = ByteSize::deserialize(d)?.0;
        if !((1 << 20)..=(4 << 30)).contains(&n) {
            return Err(de::Error::custom(format!(
                "spec.pitr.segmentMaxBytes {n}: expected 1MiB to 4GiB"
            )));
        }
        Ok(SegmentBytes(n))
    }
}

impl TryFrom<RawPitr> for PitrSpec {
    type Error = String;
    fn try_from(r: RawPitr) -> Result<Self, String> {
        let d = PitrSpec::default();
        let p = PitrSpec {
            segment_max_age: r.segment_max_age.map_or(d.segment_max_age, |x| x.0),
            segment_max_bytes: r.segment_max_bytes.map_or(d.segment_max_bytes, |x| x.0),
            window: r.window.map_or(d.window, |x| x.0),
        };
        if p.window < p.segment_max_age {
            return Err("spec.pitr.window is shorter than segmentMaxAge".into());
        }
        Ok(p)
    }
}
