//! Policy schema. Raw shapes are deserialized with `deny_unknown_fields`; newtypes validate their
//! value in `Deserialize` so errors point at the line and column of the value.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

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
}

// ---------------------------------------------------------------------------------------------
// cluster

/// How to reach the etcd cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCluster")]
pub struct Cluster {
    /// Client URLs of the members (`http(s)://host:port`).
    pub endpoints: Vec<String>,
    /// TLS material, required for `https` endpoints.
    pub tls: Option<Tls>,
    /// Username and password file, when etcd auth is on.
    pub auth: Option<Auth>,
    /// How to pick the member to snapshot.
    pub selection: Selection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCluster {
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    tls: Option<Tls>,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    selection: Selection,
}

impl TryFrom<RawCluster> for Cluster {
    type Error = String;
    fn try_from(raw: RawCluster) -> Result<Self, String> {
        if raw.endpoints.is_empty() {
            return Err(
                "spec.cluster.endpoints: list at least one member client URL, e.g. \
                        https://10.0.0.2:2379"
                    .into(),
            );
        }
        let mut endpoints: Vec<String> = Vec::new();
        for e in raw.endpoints {
            if endpoints.contains(&e.0) {
                return Err(format!("spec.cluster.endpoints: {} is listed twice", e.0));
            }
            endpoints.push(e.0);
        }
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https != 0 && https != endpoints.len() {
            return Err(
                "spec.cluster.endpoints: mix of http:// and https:// endpoints; a cluster \
                        serves clients with one scheme"
                    .into(),
            );
        }
        if https > 0 && raw.tls.is_none() {
            return Err(
                "spec.cluster: endpoints use https:// but spec.cluster.tls is not set; add \
                        tls.caFile (and certFile/keyFile for client-certificate auth)"
                    .into(),
            );
        }
        if https == 0 && raw.tls.is_some() {
            return Err(
                "spec.cluster.tls is set but the endpoints use http://; use https:// \
                        endpoints or remove tls"
                    .into(),
            );
        }
        Ok(Cluster {
            endpoints,
            tls: raw.tls,
            auth: raw.auth,
            selection: raw.selection,
        })
    }
}

struct Endpoint(String);
string_newtype!(Endpoint, |s| {
    let hint = "expected a client URL like https://10.0.0.2:2379";
    let url = url::Url::parse(s).map_err(|e| format!("endpoint {s:?}: {e}; {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "endpoint {s:?}: scheme must be http or https; {hint}"
        ));
    }
    if url.host_str().is_none() || url.port().is_none() {
        return Err(format!(
            "endpoint {s:?}: host and port are required; {hint}"
        ));
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(format!(
            "endpoint {s:?}: must not have a path or query; {hint}"
        ));
    }
    Ok(Endpoint(s.trim_end_matches('/').to_owned()))
});

/// TLS files for the etcd client.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTls")]
pub struct Tls {
    /// CA bundle that signed the members' serving certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for client-certificate auth.
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

impl TryFrom<RawTls> for Tls {
    type Error = String;
    fn try_from(raw: RawTls) -> Result<Self, String> {
        let client = match (raw.cert_file, raw.key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(
                    "spec.cluster.tls: certFile and keyFile go together; set both or neither"
                        .into(),
                );
            }
        };
        if raw.ca_file.is_none() && client.is_none() {
            return Err("spec.cluster.tls: set caFile, or certFile and keyFile".into());
        }
        Ok(Tls {
            ca_file: raw.ca_file,
            client,
        })
    }
}

/// etcd username and the file holding its password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Auth {
    /// etcd user (needs the root role to take snapshots).
    pub username: NonEmpty,
    /// File whose first line is the password (never put passwords in the policy).
    pub password_file: PathBuf,
}

/// A non-empty string.
#[derive(Debug, Clone)]
pub struct NonEmpty(pub String);
string_newtype!(NonEmpty, |s| if s.trim().is_empty() {
    Err("must not be empty".into())
} else {
    Ok(NonEmpty(s.to_owned()))
});

/// Which member to prefer among the healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Prefer {
    /// A healthy follower (spares the leader); the leader only if no follower qualifies.
    #[default]
    Follower,
    /// The leader; followers only if the leader does not qualify.
    Leader,
    /// Whichever healthy member has the highest applied index.
    Any,
}

/// Member selection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selection {
    /// Which role to prefer.
    #[serde(default)]
    pub prefer: Prefer,
    /// Skip members whose raft applied index is more than this behind the leader's.
    #[serde(default = "default_max_raft_lag")]
    pub max_raft_lag: u64,
    /// How long to wait for each member's status.
    #[serde(default = "default_status_timeout")]
    pub status_timeout: PositiveDuration,
    /// When no member qualifies only for reasons that pass (an election, a member restarting,
    /// lag), probe again for up to this long before giving up; `0s` gives up at once.
    #[serde(default = "default_wait_for_leader")]
    pub wait_for_leader: AnyDuration,
}

fn default_max_raft_lag() -> u64 {
    1000
}
fn default_status_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(5))
}
fn default_wait_for_leader() -> AnyDuration {
    AnyDuration(Duration::from_secs(30))
}

impl Default for Selection {
    fn default() -> Self {
        Self {
            prefer: Prefer::default(),
            max_raft_lag: default_max_raft_lag(),
            status_timeout: default_status_timeout(),
            wait_for_leader: default_wait_for_leader(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// schedule, snapshot, compression

/// Cron schedule for the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schedule {
    /// Standard 5-field cron expression (a leading seconds field is also accepted).
    pub cron: CronExpr,
    /// IANA time zone the expression is read in.
    #[serde(default)]
    pub timezone: TimeZone,
    /// Random delay up to this long before each run.
    #[serde(default)]
    pub jitter: AnyDuration,
    /// `/healthz` fails when the last success is older than this (default: two periods).
    #[serde(default)]
    pub stale_after: Option<PositiveDuration>,
    /// Retries of a failed run inside its slot.
    #[serde(default)]
    pub retry: RetrySpec,
}

/// `schedule.retry`: a failed run is tried again after an exponentially growing, jittered
/// delay, never past the next scheduled run, and never for errors a retry cannot fix.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRetry")]
pub struct RetrySpec {
    /// Runs per slot in all, the first included; 1 turns retries off.
    pub attempts: u32,
    /// Delay before the first retry; each later one doubles it.
    pub initial_backoff: Duration,
    /// Longest delay between two runs.
    pub max_backoff: Duration,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRetry {
    attempts: Option<u32>,
    initial_backoff: Option<PositiveDuration>,
    max_backoff: Option<PositiveDuration>,
}

impl TryFrom<RawRetry> for RetrySpec {
    type Error = String;
    fn try_from(raw: RawRetry) -> Result<Self, String> {
        let d = RetrySpec::default();
        let r = RetrySpec {
            attempts: raw.attempts.unwrap_or(d.attempts),
            initial_backoff: raw.initial_backoff.map_or(d.initial_backoff, |x| x.0),
            max_backoff: raw.max_backoff.map_or(d.max_backoff, |x| x.0),
        };
        if !(1..=20).contains(&r.attempts) {
            return Err(format!(
                "schedule.retry.attempts {}: expected 1 (no retries) to 20",
                r.attempts
            ));
        }
        if r.max_backoff < r.initial_backoff {
            return Err(format!(
                "schedule.retry: maxBackoff {} is shorter than initialBackoff {}",
                humantime::format_duration(r.max_backoff),
                humantime::format_duration(r.initial_backoff)
            ));
        }
        Ok(r)
    }
}

impl Schedule {
    /// The expression with a seconds field, as tokio-cron-scheduler wants it.
    pub fn cron_with_seconds(&self) -> String {
        if self.cron.0.split_whitespace().count() == 5 {
            format!("0 {}", self.cron.0)
        } else {
            self.cron.0.clone()
        }
    }

    /// The next run strictly after `t`.
    pub fn next_after(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::SubsecRound;
        // croner carries the sub-second part of its input into the result; runs are whole seconds.
        let local = t.trunc_subsecs(0).with_timezone(&self.timezone.0);
        self.cron
            .1
            .find_next_occurrence(&local, false)
            .ok()
            .map(|n| n.with_timezone(&chrono::Utc).trunc_subsecs(0))
    }

    /// The time between the two runs following `t` (the schedule's period around then).
    pub fn period_at(&self, t: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let a = self.next_after(t)?;
        let b = self.next_after(a)?;
        (b - a).to_std().ok()
    }

    /// The slot `t` falls in: the latest scheduled run at or before `t`. Every host computes the
    /// same slot for a run however late jitter started it.
    pub fn slot_at(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        // Look back far enough to find a run at or before `t`, then walk forward to the latest.
        let mut back = chrono::Duration::seconds(1);
        let mut slot = loop {
            let cand = self.next_after(t - back)?;
            if cand <= t {
                break cand;
            }
            if back > chrono::Duration::days(800) {
                return None;
            }
            back = back * 2;
        };
        while let Some(n) = self.next_after(slot).filter(|n| *n <= t) {
            slot = n;
        }
        Some(slot)
    }

    /// How old the last success may get before the policy counts as unhealthy.
    pub fn stale_after_at(&self, t: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        match &self.stale_after {
            Some(d) => Some(d.0),
            None => self.period_at(t).map(|p| p * 2),
        }
    }
}

fn parse_cron(s: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(s)
}

/// A validated cron expression, as written and parsed once: standard 5 fields (minute hour day-of-month month day-of-week),
/// or 6 with a leading seconds field.
#[derive(Debug, Clone)]
pub struct CronExpr(pub String, croner::Cron);
string_newtype!(CronExpr, |s| {
    let fields = s.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "cron {s:?}: expected 5 fields (minute hour day-of-month month day-of-week), or 6 \
             with seconds first; found {fields}"
        ));
    }
    let cron = parse_cron(s).map_err(|e| format!("cron {s:?}: {e}"))?;
    Ok(CronExpr(s.to_owned(), cron))
});

/// An IANA time zone name such as `UTC` or `Europe/Berlin`.
#[derive(Debug, Clone, Copy)]
pub struct TimeZone(pub chrono_tz::Tz);
impl Default for TimeZone {
    fn default() -> Self {
        TimeZone(chrono_tz::UTC)
    }
}
string_newtype!(TimeZone, |s| chrono_tz::Tz::from_str(s)
    .map(TimeZone)
    .map_err(|_| format!(
        "timezone {s:?}: not an IANA time zone name; use e.g. UTC or Europe/Berlin"
    )));

fn parse_duration(s: &str) -> Result<Duration, String> {
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
    fn parse(s: &str) -> Result<Self, String> {
        let d = parse_duration(s)?;
        if d.is_zero() {
            Err(format!("duration {s:?}: must be greater than zero"))
        } else {
            Ok(PositiveDuration(d))
        }
    }
}

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

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/lifeboat/spool")
}
fn default_snapshot_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(30 * 60))
}
fn default_stall_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}
fn default_max_attempts() -> Attempts {
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
    /// Compression worker threads; 0 means one per core.
    #[serde(default)]
    pub threads: u32,
}

fn default_level() -> Level {
    Level(3)
}

impl Default for CompressionSpec {
    fn default() -> Self {
        Self {
            level: default_level(),
            threads: 0,
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

// ---------------------------------------------------------------------------------------------
// encryption

/// Encryption: age recipients, or `none` said explicitly.
#[derive(Debug, Clone)]
pub enum EncryptionSpec {
    /// `encryption: none`: stored objects are only compressed.
    None,
    /// age X25519 recipients.
    Age {
        /// Recipients written in the policy (`age1...`).
        recipients: Vec<String>,
        /// File with more recipients, one per line (`#` comments allowed).
        recipients_file: Option<PathBuf>,
    },
}

impl EncryptionSpec {
    /// Whether stored objects are encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, EncryptionSpec::Age { .. })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAge {
    #[serde(default)]
    recipients: Vec<Recipient>,
    #[serde(default)]
    recipients_file: Option<PathBuf>,
}

struct Recipient(String);
string_newtype!(Recipient, |s| parse_recipient(s)
    .map(|_| Recipient(s.trim().to_owned())));

/// Parse one age X25519 recipient, with an error that says what is expected.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, String> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|e| {
        let shown: String = s.chars().take(16).collect();
        format!(
            "recipient {shown:?}...: not an age X25519 public key ({e}); expected age1... as \
             printed by `lifeboat key generate` or `age-keygen -y`"
        )
    })
}

impl<'de> Deserialize<'de> for EncryptionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = EncryptionSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`none` or a mapping with recipients and/or recipientsFile")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s == "none" {
                    Ok(EncryptionSpec::None)
                } else {
                    Err(E::custom(format!(
                        "encryption: expected `none` or {{recipients: [age1...]}}, found {s:?}"
                    )))
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = RawAge::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if raw.recipients.is_empty() && raw.recipients_file.is_none() {
                    return Err(de::Error::custom(
                        "encryption: no recipients; list age1... public keys in recipients or \
                         name a recipientsFile, or write `encryption: none` to store backups \
                         unencrypted",
                    ));
                }
                Ok(EncryptionSpec::Age {
                    recipients: raw.recipients.into_iter().map(|r| r.0).collect(),
                    recipients_file: raw.recipients_file,
                })
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// destinations

struct Destinations(Vec<DestinationSpec>);
impl<'de> Deserialize<'de> for Destinations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<DestinationSpec>::deserialize(d)?;
        if list.is_empty() {
            return Err(de::Error::custom(
                "spec.destinations: list at least one destination, e.g. {name: local, url: \
                 \"file:///var/backups/etcd\"}",
            ));
        }
        for (i, a) in list.iter().enumerate() {
            if list[..i].iter().any(|b| b.name == a.name) {
                return Err(de::Error::custom(format!(
                    "spec.destinations: name {:?} is used twice; names must be unique",
                    a.name
                )));
            }
        }
        Ok(Destinations(list))
    }
}

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// `s3://bucket/prefix`
    S3 {
        /// Bucket name.
        bucket: String,
    },
    /// `gs://bucket/prefix`
    Gcs {
        /// Bucket name.
        bucket: String,
    },
    /// `az://container/prefix`
    Azure {
        /// Container name.
        container: String,
    },
    /// `file:///absolute/dir`
    Local {
        /// Directory (must exist).
        path: PathBuf,
    },
}

/// One destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawDestination")]
pub struct DestinationSpec {
    /// Unique name within the policy.
    pub name: String,
    /// The URL as written (never contains secrets).
    pub url: String,
    /// Parsed scheme and location.
    pub kind: DestinationKind,
    /// Key prefix inside the bucket ("" for none); local destinations use the directory itself.
    pub prefix: String,
    /// Options as (camelCase key, value); keys validated for the scheme.
    pub options: BTreeMap<String, String>,
    /// Whether a backup needs this destination to be committed (default). A destination with
    /// `required: false` that fails is left out of that backup, which is committed elsewhere.
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDestination {
    name: DestName,
    url: DestUrl,
    #[serde(default)]
    options: RawOptions,
    #[serde(default = "yes")]
    required: bool,
}

/// A destination's options as written. Pairs object_store would resolve by silently ignoring
/// one side are refused here, as the second one is read, so the error points at it.
#[derive(Default)]
struct RawOptions(BTreeMap<String, String>);
impl<'de> Deserialize<'de> for RawOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawOptions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of option names to values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawOptions, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                    out.insert(k, v.0);
                    check_overrides(&out).map_err(de::Error::custom)?;
                }
                check_encryption(&out).map_err(de::Error::custom)?;
                Ok(RawOptions(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct DestName(String);
string_newtype!(DestName, |s| {
    if !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(DestName(s.to_owned()))
    } else {
        Err(format!(
            "destination name {s:?}: use 1-63 letters, digits, '-' or '_'"
        ))
    }
});

/// A YAML scalar kept as text (`true`, `9000`, `us-east-1`).
struct Scalar(String);
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a destination option's value is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionValue {
    /// The value itself.
    Text,
    /// A file whose first line is a secret (credentials never sit in the YAML).
    SecretFile,
    /// A file whose whole content is the value (a PEM bundle, a service-account JSON key).
    WholeFile,
}

/// One destination option: the camelCase key users write, the object_store configuration key
/// it sets (or a `lifeboat_` key lifeboat applies itself), and how its value is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOption {
    /// Key in the policy.
    pub key: &'static str,
    /// object_store configuration key, or `lifeboat_*`.
    pub target: &'static str,
    /// Value, secret file or whole file.
    pub value: OptionValue,
}

const fn text(key: &'static str, target: &'static str) -> StoreOption {
    StoreOption {
        key,
        target,
        value: OptionValue::Text,
    }
}

const fn secret(key: &'static str, target: &'static str) -> StoreOption {
    StoreOption {
        key,
        target,
        value: OptionValue::SecretFile,
    }
}

const fn whole(key: &'static str, target: &'static str) -> StoreOption {
    StoreOption {
        key,
        target,
        value: OptionValue::WholeFile,
    }
}

/// Options of every networked destination (the same meaning for every scheme).
pub const CLIENT_OPTIONS: &[StoreOption] = &[
    text("allowHttp", "allow_http"),
    text("timeout", "timeout"),
    text("connectTimeout", "connect_timeout"),
    whole("caFile", "lifeboat_ca_pem"),
    text("retries", "lifeboat_retries"),
    text("retryTimeout", "lifeboat_retry_timeout"),
];

/// `s3://` options (S3 and S3-compatible stores).
pub const S3_OPTIONS: &[StoreOption] = &[
    text("endpoint", "aws_endpoint"),
    text("region", "aws_region"),
    text("virtualHostedStyle", "aws_virtual_hosted_style_request"),
    text("accessKeyId", "aws_access_key_id"),
    text("secretAccessKey", "aws_secret_access_key"),
    text("sessionToken", "aws_session_token"),
    secret("accessKeyIdFile", "aws_access_key_id"),
    secret("secretAccessKeyFile", "aws_secret_access_key"),
    secret("sessionTokenFile", "aws_session_token"),
    text("serverSideEncryption", "aws_server_side_encryption"),
    text("sseKmsKeyId", "aws_sse_kms_key_id"),
    text("sseBucketKeyEnabled", "aws_sse_bucket_key_enabled"),
];

/// `az://` options (Azure Blob Storage). Without credentials object_store uses the managed
/// identity of the host.
pub const AZURE_OPTIONS: &[StoreOption] = &[
    text("accountName", "azure_storage_account_name"),
    text("accessKey", "azure_storage_account_key"),
    secret("accessKeyFile", "azure_storage_account_key"),
    text("sasToken", "azure_storage_sas_key"),
    secret("sasTokenFile", "azure_storage_sas_key"),
    text("clientId", "azure_storage_client_id"),
    secret("clientSecretFile", "azure_storage_client_secret"),
    text("tenantId", "azure_storage_tenant_id"),
    text("msiEndpoint", "azure_msi_endpoint"),
    text("useEmulator", "azure_storage_use_emulator"),
    text("endpoint", "azure_storage_endpoint"),
];

/// `gs://` options (Google Cloud Storage). Without them object_store uses application default
/// credentials.
pub const GCS_OPTIONS: &[StoreOption] = &[
    whole("serviceAccountFile", "google_service_account_key"),
    text("applicationCredentials", "google_application_credentials"),
    text("endpoint", "google_base_url"),
];

impl DestinationKind {
    /// The scheme as written in URLs.
    pub fn scheme(&self) -> &'static str {
        match self {
            DestinationKind::S3 { .. } => "s3",
            DestinationKind::Gcs { .. } => "gs",
            DestinationKind::Azure { .. } => "az",
            DestinationKind::Local { .. } => "file",
        }
    }

    /// Every option this kind of destination takes.
    pub fn options(&self) -> Vec<StoreOption> {
        let own: &[StoreOption] = match self {
            DestinationKind::S3 { .. } => S3_OPTIONS,
            DestinationKind::Gcs { .. } => GCS_OPTIONS,
            DestinationKind::Azure { .. } => AZURE_OPTIONS,
            DestinationKind::Local { .. } => return Vec::new(),
        };
        own.iter().chain(CLIENT_OPTIONS).copied().collect()
    }
}

/// A destination URL, parsed.
struct DestUrl {
    raw: String,
    kind: DestinationKind,
    prefix: String,
}
/// Parse a destination URL (`s3://bucket/prefix`, `file:///dir`) into its kind and key prefix.
pub fn parse_destination_url(s: &str) -> Result<(DestinationKind, String), String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!(
            "url {s:?}: {e}; expected s3://bucket/prefix, gs://bucket/prefix, \
             az://container/prefix or file:///absolute/dir"
        )
    })?;
    let (kind, prefix) = match url.scheme() {
        scheme @ ("s3" | "gs" | "az") => {
            let name = url.host_str().unwrap_or_default().to_owned();
            if name.is_empty() {
                let what = if scheme == "az" {
                    "container"
                } else {
                    "bucket"
                };
                return Err(format!(
                    "url {s:?} has no {what}; expected {scheme}://{what}/prefix"
                ));
            }
            let kind = match scheme {
                "s3" => DestinationKind::S3 { bucket: name },
                "gs" => DestinationKind::Gcs { bucket: name },
                _ => DestinationKind::Azure { container: name },
            };
            (kind, url.path().trim_matches('/').to_owned())
        }
        "file" => {
            if url.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(format!(
                    "url {s:?}: file URLs need an absolute path, e.g. file:///var/backups/etcd \
                     (three slashes)"
                ));
            }
            let path = url
                .to_file_path()
                .map_err(|()| format!("url {s:?} is not a local path"))?;
            (DestinationKind::Local { path }, String::new())
        }
        other => {
            return Err(format!(
                "url {s:?}: unknown scheme {other:?}; expected s3://, gs://, az:// or file://"
            ));
        }
    };
    Ok((kind, prefix))
}

string_newtype!(DestUrl, |s| {
    let (kind, prefix) = parse_destination_url(s)?;
    Ok(DestUrl {
        raw: s.to_owned(),
        kind,
        prefix,
    })
});

impl TryFrom<RawDestination> for DestinationSpec {
    type Error = String;
    fn try_from(raw: RawDestination) -> Result<Self, String> {
        let name = raw.name.0;
        let DestUrl {
            raw: url,
            kind,
            prefix,
        } = raw.url;
        let allowed = kind.options();
        let mut options = BTreeMap::new();
        for (k, v) in raw.options.0 {
            let Some(opt) = allowed.iter().find(|o| o.key == k) else {
                let valid: Vec<&str> = allowed.iter().map(|o| o.key).collect();
                return Err(format!(
                    "destination {name:?}: unknown option {k:?}; valid options for {}:// are: {}",
                    kind.scheme(),
                    if valid.is_empty() {
                        "(none)".to_owned()
                    } else {
                        valid.join(", ")
                    }
                ));
            };
            check_option_value(&name, opt, &v)?;
            options.insert(k, v);
        }
        // A secret given twice (inline and as a file) is ambiguous.
        for o in allowed
            .iter()
            .filter(|o| o.value == OptionValue::SecretFile)
        {
            if let Some(inline) = allowed.iter().find(|i| {
                i.target == o.target && i.value == OptionValue::Text && options.contains_key(i.key)
            }) && options.contains_key(o.key)
            {
                return Err(format!(
                    "destination {name:?}: {} and {} set the same secret; keep one (the file)",
                    inline.key, o.key
                ));
            }
        }
        Ok(DestinationSpec {
            name,
            url,
            kind,
            prefix,
            options,
            required: raw.required,
        })
    }
}

/// Two options of which object_store silently uses one and ignores the other.
struct Override {
    scheme: &'static str,
    /// Any of these, set (to `when`, if given) ...
    winner: &'static [&'static str],
    when: Option<&'static str>,
    /// ... makes any of these be ignored.
    ignored: &'static [&'static str],
    /// What object_store does instead, and what to write.
    why: &'static str,
}

/// Pairs read off object_store 0.14's builders (`MicrosoftAzureBuilder::build` and its
/// credential order, `AmazonS3Builder`'s encryption headers, `GoogleCloudStorageBuilder::build`).
const OVERRIDES: &[Override] = &[
    Override {
        scheme: "az",
        winner: &["useEmulator"],
        when: Some("true"),
        ignored: &["endpoint"],
        why: "useEmulator connects to http://127.0.0.1:10000 (or $AZURITE_BLOB_STORAGE_URL) and \
             ignores endpoint; for an emulator elsewhere drop useEmulator and set endpoint \
             (http://host:port/devstoreaccount1), accountName, accessKey and allowHttp",
    },
    Override {
        scheme: "az",
        winner: &["useEmulator"],
        when: Some("true"),
        ignored: &["msiEndpoint", "clientId", "clientSecretFile", "tenantId"],
        why: "the emulator is reached with an access key or SAS token only",
    },
    Override {
        scheme: "az",
        winner: &["useEmulator"],
        when: Some("true"),
        ignored: &["allowHttp"],
        why: "useEmulator always allows plain HTTP",
    },
    Override {
        scheme: "az",
        winner: &["accessKey", "accessKeyFile"],
        when: None,
        ignored: &[
            "sasToken",
            "sasTokenFile",
            "clientId",
            "clientSecretFile",
            "tenantId",
            "msiEndpoint",
        ],
        why: "an access key is used before any other credential; keep one credential",
    },
    Override {
        scheme: "az",
        winner: &["clientSecretFile"],
        when: None,
        ignored: &["sasToken", "sasTokenFile", "msiEndpoint"],
        why: "a client secret is used before a SAS token or managed identity; keep one credential",
    },
    Override {
        scheme: "az",
        winner: &["sasToken", "sasTokenFile"],
        when: None,
        ignored: &["msiEndpoint"],
        why: "a SAS token is used before managed identity; keep one credential",
    },
    Override {
        scheme: "gs",
        winner: &["serviceAccountFile"],
        when: None,
        ignored: &["applicationCredentials"],
        why: "a service account key is used and application credentials are never read; keep one",
    },
];

/// Refuse option combinations object_store would resolve by silently ignoring one side. The
/// winning options belong to one scheme each, so the table needs no scheme to apply.
fn check_overrides(options: &BTreeMap<String, String>) -> Result<(), String> {
    for o in OVERRIDES {
        let Some(w) = o.winner.iter().find(|k| {
            options
                .get(**k)
                .is_some_and(|v| o.when.is_none_or(|w| v == w))
        }) else {
            continue;
        };
        if let Some(i) = o.ignored.iter().find(|k| options.contains_key(**k)) {
            let set = match o.when {
                Some(v) => format!("{w}: {v}"),
                None => (*w).to_owned(),
            };
            return Err(format!(
                "options {set} and {i} cannot be used together ({}:// ignores one): {}",
                o.scheme, o.why
            ));
        }
    }
    Ok(())
}

/// S3 encryption settings object_store only sends with a matching serverSideEncryption.
fn check_encryption(options: &BTreeMap<String, String>) -> Result<(), String> {
    let sse = options.get("serverSideEncryption").map(String::as_str);
    let kms = matches!(sse, Some("aws:kms" | "aws:kms:dsse"));
    for key in ["sseKmsKeyId", "sseBucketKeyEnabled"] {
        if options.contains_key(key) && !kms {
            return Err(format!(
                "option {key} only applies with serverSideEncryption: aws:kms or aws:kms:dsse \
                 (it is {}); set one of those or remove {key}",
                sse.unwrap_or("not set")
            ));
        }
    }
    Ok(())
}

/// Values lifeboat or object_store would only refuse later, checked while parsing.
fn check_option_value(dest: &str, o: &StoreOption, v: &str) -> Result<(), String> {
    let bad = |what: &str| {
        Err(format!(
            "destination {dest:?}: option {} = {v:?}: expected {what}",
            o.key
        ))
    };
    match o.key {
        "allowHttp" | "virtualHostedStyle" | "useEmulator" | "sseBucketKeyEnabled"
            if !matches!(v, "true" | "false") =>
        {
            return bad("true or false");
        }
        "timeout" | "connectTimeout" | "retryTimeout" if humantime::parse_duration(v).is_err() => {
            return bad("a duration such as 30s or 5m");
        }
        "retries" if !v.parse::<u32>().is_ok_and(|n| n <= 20) => {
            return bad("a number of retries from 0 to 20");
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// retention

/// Retention rules, combined with OR (a backup is kept if any rule keeps it).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRetention")]
pub struct Retention {
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep the newest per hour, for N hours that have backups.
    pub keep_hourly: Option<u32>,
    /// Keep the newest per day, for N days.
    pub keep_daily: Option<u32>,
    /// Keep the newest per ISO week, for N weeks.
    pub keep_weekly: Option<u32>,
    /// Keep the newest per month, for N months.
    pub keep_monthly: Option<u32>,
    /// Keep the newest per year, for N years.
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this, measured back from the newest backup.
    pub keep_within: Option<Duration>,
    /// Prune after every successful backup.
    pub prune_after_backup: bool,
    /// Data objects without a manifest younger than this are left alone (a run may still be
    /// writing them); older ones are a crashed run's leftovers and are removed by prune.
    pub orphan_grace: Duration,
}

/// Default [`Retention::orphan_grace`]: long enough for any run still in progress.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Retention {
    /// Whether any rule keeps anything; a retention that keeps nothing is refused everywhere
    /// (parsing and planning), never read as "remove all".
    pub fn keeps_something(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(|c| c.unwrap_or(0) > 0)
            || self.keep_within.is_some_and(|d| !d.is_zero())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<PositiveDuration>,
    #[serde(default = "yes")]
    prune_after_backup: bool,
    orphan_grace: Option<PositiveDuration>,
}

fn yes() -> bool {
    true
}

impl TryFrom<RawRetention> for Retention {
    type Error = String;
    fn try_from(r: RawRetention) -> Result<Self, String> {
        let retention = Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within: r.keep_within.map(|d| d.0),
            prune_after_backup: r.prune_after_backup,
            orphan_grace: r.orphan_grace.map_or(DEFAULT_ORPHAN_GRACE, |d| d.0),
        };
        if !retention.keeps_something() {
            return Err(
                "spec.retention keeps nothing: set at least one of keepLast, keepHourly, \
                 keepDaily, keepWeekly, keepMonthly, keepYearly (above 0) or keepWithin; \
                 remove the retention block to keep every backup"
                    .into(),
            );
        }
        Ok(retention)
    }
}

// ---------------------------------------------------------------------------------------------
// lock

/// `spec.lock`: coordinate backup hosts running the same policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSpec {
    /// A lease-backed key in the cluster being backed up.
    pub etcd: EtcdLock,
}

/// `spec.lock.etcd`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdLock {
    /// Lease time to live: how long a dead holder blocks the slot.
    #[serde(default = "default_lock_ttl")]
    pub ttl: PositiveDuration,
}

fn default_lock_ttl() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}

// ---------------------------------------------------------------------------------------------
// pitr

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
struct RawPitr {
    segment_max_age: Option<SegmentAge>,
    segment_max_bytes: Option<SegmentBytes>,
    window: Option<PositiveDuration>,
}

/// `segmentMaxAge`: up to a day (it is the recovery point).
struct SegmentAge(Duration);
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
struct SegmentBytes(u64);
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
