//! The restore drill: restore a fetched, verified backup with etcd's own tool into a throwaway
//! data directory, start a single-member etcd on loopback ports, and compare its revision and key
//! count over the API with the manifest. Everything is removed afterwards.

use super::etcdutl::RestoreTool;
use super::fetch::Fetched;
use super::inspect::{FileReport, Trailer};
use super::spool::{DRILL_PID_FILE, RunSpace};
use crate::runbook::RestoreParams;
use etcd_client::{Client, GetOptions};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tracing::info;

/// What the drill saw.
#[derive(Debug, Clone)]
pub struct DrillOutcome {
    pub backup: String,
    /// etcd binary and its version line.
    pub etcd: String,
    /// Revision the restored member reports.
    pub revision: i64,
    /// Keys it counts.
    pub keys: u64,
    pub seconds: f64,
}

/// How long a restored member may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn loopback_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// Run the drill on `fetched` (already proved: `report`), working in the run's workspace.
pub async fn drill(
    fetched: &Fetched,
    report: &FileReport,
    space: &RunSpace,
    etcd: &Path,
) -> Result<DrillOutcome, String> {
    let started = Instant::now();
    let m = &fetched.manifest;
    let tool = RestoreTool::find().map_err(|e| e.to_string())?;
    let work = space.path(&format!("drill-{}", m.id));
    std::fs::create_dir(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let _guard = super::RemoveOnDrop::new(work.clone());
    let (client_port, peer_port) = (loopback_port()?, loopback_port()?);
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client_url = format!("http://127.0.0.1:{client_port}");
    let data = work.join("data");
    let params = RestoreParams {
        name: Some("drill".into()),
        initial_cluster: Some(format!("drill={peer}")),
        initial_advertise_peer_urls: Some(peer.clone()),
        initial_cluster_token: Some("lifeboat-drill".into()),
        data_dir: Some(data.to_string_lossy().into_owned()),
        bump_revision: None,
        skip_hash_check: report.trailer == Trailer::Absent,
    };
    tool.restore(&fetched.path, &params)
        .await
        .map_err(|e| e.to_string())?;
    let version = std::process::Command::new(etcd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let log_path = work.join("etcd.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    info!(backup = %m.id, client = %client_url, "Drill: starting a throwaway etcd on the restored data");
    let mut child = tokio::process::Command::new(etcd)
        .arg("--name")
        .arg("drill")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", etcd.display()))?;
    // If this run dies, the next run of the policy stops this etcd (see ops::spool).
    if let Some(pid) = child.id() {
        let _ = std::fs::write(work.join(DRILL_PID_FILE), pid.to_string());
    }
    let seen = observe(&client_url).await;
    let _ = child.kill().await;
    let (revision, keys) = seen.map_err(|e| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        format!(
            "{e}; etcd's last log lines:\n  {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        )
    })?;
    let st = &report.inspection.status;
    if revision != st.revision || keys != st.live_keys {
        return Err(format!(
            "the restored member reports revision {revision} and {keys} keys, but backup {} \
             holds revision {} and {} live keys",
            m.id, st.revision, st.live_keys
        ));
    }
    Ok(DrillOutcome {
        backup: m.id.to_string(),
        etcd: format!("{} ({version})", etcd.display()),
        revision,
        keys,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Wait for the member to answer, then read its revision and count every key.
async fn observe(url: &str) -> Result<(i64, u64), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let mut c = Client::connect([url], None).await?;
            let status = c.status().await?;
            let count = c
                .get(
                    vec![0u8],
                    Some(GetOptions::new().with_range(vec![0u8]).with_count_only()),
                )
                .await?;
            Ok::<_, etcd_client::Error>((
                status.header().map_or(0, |h| h.revision()),
                u64::try_from(count.count()).unwrap_or(0),
            ))
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = crate::etcd::describe_etcd_error(&e),
            Err(_) => last = "no answer within 5s".into(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "the restored member at {url} did not answer within {START_TIMEOUT:?}: {last}"
    ))
}
