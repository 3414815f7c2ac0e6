use chrono::{DateTime, NaiveDateTime, Utc};
use std::fmt;

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const TIME_LEN: usize = 16; // "20261121T023000Z"
const SUFFIX_LEN: usize = 6;

/// Identifies one backup within a policy: a fixed-width UTC timestamp then a random suffix, e.g.
/// `20261121T023000Z-3fa91c`. Fixed width makes string order equal time order (etcd-operator
/// sorted unpadded numbers as strings and deleted its newest backup); the suffix keeps two hosts
/// that start in the same second apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    /// Id for a backup started at `time`; `suffix` is random in production, fixed in tests.
    pub fn new(time: DateTime<Utc>, suffix: u32) -> Self {
        Self(format!(
            "{}-{:06x}",
            time.format(TIME_FORMAT),
            suffix & 0x00ff_ffff
        ))
    }

    /// Parse an id as written by [`BackupId::new`]; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != TIME_LEN + 1 + SUFFIX_LEN || s.as_bytes()[TIME_LEN] != b'-' {
            return None;
        }
        let suffix = &s[TIME_LEN + 1..];
        if !suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        NaiveDateTime::parse_from_str(&s[..TIME_LEN], TIME_FORMAT).ok()?;
        Some(Self(s.to_owned()))
    }

    /// When the backup started (second precision).
    pub fn time(&self) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(&self.0[..TIME_LEN], TIME_FORMAT)
            .expect("BackupId is validated on construction")
            .and_utc()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for BackupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BackupId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid backup id {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trips_and_sorts_by_time() {
        let a = BackupId::new(
            Utc.with_ymd_and_hms(2026, 1, 9, 23, 59, 59).unwrap(),
            0xffffff,
        );
        let b = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap(), 0);
        assert_eq!(a.as_str(), "20260109T235959Z-ffffff");
        assert_eq!(b.as_str(), "20260110T000000Z-000000");
        assert!(a < b, "string order must be time order");
        assert_eq!(BackupId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(
            a.time(),
            Utc.with_ymd_and_hms(2026, 1, 9, 23, 59, 59).unwrap()
        );
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "20260110T000000Z",
            "20260110T000000Z-00000g",
            "20261310T000000Z-000000",
            "20260110T000000Z_000000",
            "x0260110T000000Z-000000",
            "20260110T000000Z-0000000",
        ] {
            assert_eq!(BackupId::parse(bad), None, "{bad}");
        }
    }
}
