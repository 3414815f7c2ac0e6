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
        let mut opts = ConnectOptions::new()
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
    /// Current store revision.
    pub revision: i64,
    /// Backend size.
    pub db_size: i64,
    /// Server version.
    pub version: String,
    /// Errors the member reports about itself.
    pub errors: Vec<String>,
    /// Alarms raised for this member (e.g. `NOSPACE`, `CORRUPT`).
    pub alarms: Vec<String>,
}

/// Result of asking one endpoint for its status.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The endpoint asked.
    pub endpoint: String,
    /// Its status, or why it could not be had.
    pub outcome: Result<MemberStatus, String>,
}

/// Ask every endpoint for its status concurrently, each bounded by `timeout`.
pub async fn probe_all(conn: &Connection, timeout: Duration) -> Vec<Probe> {
    let futs = conn.endpoints.iter().map(|ep| async move {
        let outcome = match tokio::time::timeout(timeout, probe_one(conn, ep, timeout)).await {
            Ok(r) => r.map_err(|e| describe_etcd_error(&e)),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        };
        Probe {
            endpoint: ep.clone(),
            outcome,
        }
    });
    futures::future::join_all(futs).await
}

async fn probe_one(
    conn: &Connection,
    endpoint: &str,
    timeout: Duration,
) -> Result<MemberStatus, etcd_client::Error> {
    let mut c = conn.client(endpoint, Some(timeout)).await?;
    let st = c.status().await?;
    let header = st.header();
    let member_id = header.map(|h| h.member_id()).unwrap_or_default();
    let alarms = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await?
        .alarms()
        .iter()
        .filter(|a| a.member_id() == member_id)
        .map(|a| format!("{:?}", a.alarm()).to_uppercase())
        .collect();
    let name = c
        .member_list()
        .await
        .ok()
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
        revision: header.map(|h| h.revision()).unwrap_or_default(),
        db_size: st.db_size(),
        version: st.version().to_owned(),
        errors: st.errors().to_vec(),
        alarms,
    })
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
