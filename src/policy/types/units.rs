//! Durations and byte sizes as policies write them (`90s`, `64MiB`).

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::time::Duration;

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!("duration {s:?}: {e}; expected a number and unit such as 90s, 5m or 24h")
    })
}

/// A duration such as `90s`, `5m`, `24h`; may be zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyDuration(pub Duration);
string_newtype!(AnyDuration, |s| parse_duration(s).map(AnyDuration));

/// A duration greater than zero.
#[derive(Debug, Clone, Copy)]
pub struct PositiveDuration(pub Duration);
string_newtype!(PositiveDuration, PositiveDuration::parse);

impl PositiveDuration {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        let d = parse_duration(s)?;
        if d.is_zero() {
            Err(format!("duration {s:?}: must be greater than zero"))
        } else {
            Ok(PositiveDuration(d))
        }
    }
}

/// A size such as `64MiB`, `512KiB`, `1GiB` or a plain number of bytes.
#[derive(Debug, Clone, Copy)]
pub struct ByteSize(pub u64);
impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Scalar::deserialize(d)?.0;
        parse_byte_size(&s).map(ByteSize).map_err(de::Error::custom)
    }
}

/// Parse `64MiB`, `10MB`, `4096` (bytes).
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?}: expected a number and unit such as 64MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "size {s:?}: unknown unit {other:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}
