//! The etcd client side: connecting to one member at a time, probing member health, choosing a
//! member ([`select`], pure) and streaming a snapshot with etcd's own accounting ([`snapshot`]).

pub mod select;
pub mod snapshot;

use etcd_client::{AlarmAction, AlarmType, Client, ConnectOptions};
use std::fmt;
use std::time::Duration;

/// A secret string (password). Never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// TLS material for the etcd client, already read from disk.
#[derive(Clone, Debug, Default)]
pub struct TlsMaterial {
    /// PEM CA bundle.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key.
    pub client_pem: Option<(Vec<u8>, Secret)>,
}

/// How to connect to the members of one cluster.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Member client URLs.
    pub endpoints: Vec<String>,
    /// TLS, when the endpoints are https.
    pub tls: Option<TlsMaterial>,
    /// Username and password.
    pub auth: Option<(String, Secret)>,
    /// Connect timeout per endpoint.
    pub connect_timeout: Duration,
}

impl Connection {
    /// A client bound to exactly one endpoint (a multi-endpoint client load-balances, and a
    /// snapshot must come from the member we chose). `request_timeout` is for unary calls only:
    /// never set it on the client used for the snapshot stream.
    pub async fn client(
        &self,
        endpoint: &str,
        request_timeout: Option<Duration>,
    ) -> Result<Client, etcd_client::Error> {
        self.connect(endpoint, request_timeout, false).await
    }

    /// A client bound to one endpoint whose requests (a watch above all) fail with `no leader`
    /// once the member loses its leader, instead of hanging on a partitioned member.
    pub async fn leader_client(&self, endpoint: &str) -> Result<Client, etcd_client::Error> {
        self.connect(endpoint, None, true).await
    }

    async fn connect(
        &self,
        endpoint: &str,
        request_timeout: Option<Duration>,
        require_leader: bool,
    ) -> Result<Client, etcd_client::Error> {
        let mut opts = ConnectOptions::new()
            .with_require_leader(require_leader)
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        if let Some(t) = request_timeout {
            opts = opts.with_timeout(t);
        }
        if let Some((user, pw)) = &self.auth {
            opts = opts.with_user(user.clone(), pw.0.clone());
        }
        if let Some(tls) = &self.tls {
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.client_pem {
                t = t.identity(etcd_client::Identity::from_pem(cert, key.0.as_bytes()));
            }
            opts = opts.with_tls(t);
        }
        Client::connect([endpoint], Some(opts)).await
    }
}

/// An alarm raised in the cluster, as etcd records it: the member it was raised for and its
/// type (`NOSPACE`: the member's backend reached its quota; `CORRUPT`: its data disagrees with
/// the cluster's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alarm {
    /// The member the alarm is for.
    pub member_id: u64,
    /// `NOSPACE`, `CORRUPT`, ...
    pub kind: String,
}

/// `NOSPACE`: a member's database reached its quota; the cluster refuses writes but still
/// serves reads and snapshots.
pub const NOSPACE: &str = "NOSPACE";
/// `CORRUPT`: a member's data disagrees with the rest of the cluster.
pub const CORRUPT: &str = "CORRUPT";

/// Read an alarm out of one entry of a Status response's `errors`: etcd lists every alarm it
/// knows of there as `memberID:<decimal id> alarm:<TYPE> ` (the protobuf text form). Pure.
pub fn parse_status_alarm(entry: &str) -> Option<Alarm> {
    let mut member = None;
    let mut kind = None;
    for token in entry.split_whitespace() {
        if let Some(v) = token.strip_prefix("memberID:") {
            member = v.parse::<u64>().ok();
        } else if let Some(v) = token.strip_prefix("alarm:") {
            kind = Some(v.to_ascii_uppercase());
        } else {
            return None;
        }
    }
    Some(Alarm {
        member_id: member?,
        kind: kind.filter(|k| !k.is_empty() && k != "NONE")?,
    })
}

/// What one member said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Member id.
    pub member_id: u64,
    /// Member name (from the member list; empty if unknown).
    pub name: String,
    /// Cluster id.
    pub cluster_id: u64,
    /// Leader's member id as this member sees it (0 = no leader).
    pub leader: u64,
    /// Whether the member is a learner.
    pub is_learner: bool,
    /// Raft index.
    pub raft_index: u64,
    /// Raft applied index.
    pub raft_applied_index: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Current store revision.
    pub revision: i64,
    /// Backend size.
    pub db_size: i64,
    /// Backend size in use (the rest is free pages that a defragmentation returns).
    pub db_size_in_use: i64,
    /// Backend quota, as etcd 3.6 and later report it (0 before).
    pub db_size_quota: i64,
    /// Server version.
    pub version: String,
    /// Errors the member reports about itself, other than alarms.
    pub errors: Vec<String>,
    /// Every alarm in the cluster this member knows of, for any member: from its status (its
    /// local view) and, when it answered, the alarm list (agreed through raft). Sorted.
    pub alarms: Vec<Alarm>,
    /// Whether the alarm list answered. It goes through raft, so without a leader it does not;
    /// then `alarms` is the member's local view only.
    pub alarms_confirmed: bool,
}

impl MemberStatus {
    /// The alarms raised for this member itself.
    pub fn own_alarms(&self) -> impl Iterator<Item = &str> {
        self.alarms
            .iter()
            .filter(|a| a.member_id == self.member_id)
            .map(|a| a.kind.as_str())
    }
}

/// Why an endpoint could not be probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeError {
    /// One line: what failed.
    pub message: String,
    /// A retry cannot help: the member rejected our credentials or certificate.
    pub permanent: bool,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result of asking one endpoint for its status.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The endpoint asked.
    pub endpoint: String,
    /// Its status, or why it could not be had.
    pub outcome: Result<MemberStatus, ProbeError>,
}

/// How long the alarm list and the member list may take: the alarm list goes through raft and
/// hangs for etcd's own request timeout (7 s and more) while there is no leader.
pub fn side_query_timeout(status_timeout: Duration) -> Duration {
    status_timeout.min(Duration::from_secs(2))
}

/// Ask every endpoint for its status concurrently, each bounded by `timeout` (and its alarm and
/// member lists by [`side_query_timeout`]).
pub async fn probe_all(conn: &Connection, timeout: Duration) -> Vec<Probe> {
    let futs = conn.endpoints.iter().map(|ep| async move {
        Probe {
            endpoint: ep.clone(),
            outcome: probe_one(conn, ep, timeout).await,
        }
    });
    futures::future::join_all(futs).await
}

async fn probe_one(
    conn: &Connection,
    endpoint: &str,
    timeout: Duration,
) -> Result<MemberStatus, ProbeError> {
    let no_answer = || ProbeError {
        message: format!("no answer within {}", humantime::format_duration(timeout)),
        permanent: false,
    };
    let status = async {
        let mut c = conn.client(endpoint, Some(timeout)).await?;
        let st = c.status().await?;
        Ok::<_, etcd_client::Error>((c, st))
    };
    let (mut c, st) = tokio::time::timeout(timeout, status)
        .await
        .map_err(|_| no_answer())?
        .map_err(|e| {
            // The client's own deadline (the same `timeout`) can fire first: still no answer.
            if is_timeout(&e) {
                no_answer()
            } else {
                ProbeError {
                    message: describe_etcd_error(&e),
                    permanent: is_permanent(&e),
                }
            }
        })?;
    let header = st.header();
    let member_id = header.map(|h| h.member_id()).unwrap_or_default();
    let mut alarms = Vec::new();
    let mut errors = Vec::new();
    for e in st.errors() {
        match parse_status_alarm(e) {
            Some(a) => alarms.push(a),
            None => errors.push(e.clone()),
        }
    }
    let side = side_query_timeout(timeout);
    let listed = tokio::time::timeout(side, c.alarm(AlarmAction::Get, AlarmType::None, None)).await;
    let alarms_confirmed = match listed {
        Ok(Ok(resp)) => {
            alarms.extend(resp.alarms().iter().filter_map(|a| {
                let kind = format!("{:?}", a.alarm()).to_uppercase();
                (kind != "NONE").then_some(Alarm {
                    member_id: a.member_id(),
                    kind,
                })
            }));
            true
        }
        _ => false,
    };
    alarms.sort();
    alarms.dedup();
    let name = tokio::time::timeout(side, c.member_list())
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|l| {
            l.members()
                .iter()
                .find(|m| m.id() == member_id)
                .map(|m| m.name().to_owned())
        })
        .unwrap_or_default();
    Ok(MemberStatus {
        member_id,
        name,
        cluster_id: header.map(|h| h.cluster_id()).unwrap_or_default(),
        leader: st.leader(),
        is_learner: st.is_learner(),
        raft_index: st.raft_index(),
        raft_applied_index: st.raft_applied_index(),
        raft_term: st.raft_term(),
        revision: header.map(|h| h.revision()).unwrap_or_default(),
        db_size: st.db_size(),
        db_size_in_use: st.raft_used_db_size(),
        db_size_quota: st.db_size_quota(),
        version: st.version().to_owned(),
        errors,
        alarms,
        alarms_confirmed,
    })
}

/// Whether an error says our credentials or certificate were refused, which no retry fixes.
pub fn is_permanent(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) || (s.code() == tonic::Code::InvalidArgument
                && s.message().contains("authentication failed"))
        }
        E::TransportError(_) | E::IoError(_) => {
            let text = describe_etcd_error(e).to_lowercase();
            text.contains("certificate") || text.contains("unknownissuer")
        }
        _ => false,
    }
}

/// Whether the client gave up waiting (its request deadline), rather than being refused.
fn is_timeout(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::DeadlineExceeded
                || (s.code() == tonic::Code::Cancelled && s.message().contains("Timeout expired"))
        }
        _ => false,
    }
}

/// One line for an etcd client error: gRPC status message without the debug noise.
pub fn describe_etcd_error(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let msg = s.message();
            if msg.is_empty() {
                format!("gRPC {:?}", s.code())
            } else {
                format!("gRPC {:?}: {msg}", s.code())
            }
        }
        etcd_client::Error::TransportError(t) => {
            crate::error::append_sources(t.to_string(), std::error::Error::source(t))
        }
        other => other.to_string(),
    }
}
