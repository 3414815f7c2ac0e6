//! `spec.cluster`: endpoints, TLS, auth and how a member is selected.

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

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
    /// The members' `--quota-backend-bytes` (etcd before 3.6 does not report it), for the
    /// watchdog's quota percentages and alerts.
    pub quota_backend_bytes: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCluster {
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    tls: Option<Tls>,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    selection: Selection,
    #[serde(default)]
    quota_backend_bytes: Option<ByteSize>,
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
            quota_backend_bytes: raw
                .quota_backend_bytes
                .map_or(crate::watchdog::DEFAULT_QUOTA, |b| b.0),
        })
    }
}

pub(super) struct Endpoint(String);
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
pub(super) struct RawTls {
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

pub(super) fn default_max_raft_lag() -> u64 {
    1000
}
pub(super) fn default_status_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(5))
}
pub(super) fn default_wait_for_leader() -> AnyDuration {
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
