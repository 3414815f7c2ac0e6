//! `lifeboat daemon`: runs every policy on its cron schedule with tokio-cron-scheduler, never
//! two runs of one policy at once, at most `max_concurrent` runs in all; catches up on start;
//! serves `/metrics` and `/healthz`; reloads policies on SIGHUP and stops cleanly on
//! SIGTERM/SIGINT. Each run is the same `ops::backup_until` (and its prune) the CLI runs.

pub mod metrics;

use crate::error::{Error, Kind, Result};
use crate::ops::{self, LoadedPolicy};
use chrono::Utc;
use metrics::Metrics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Policy files.
    pub policy_files: Vec<PathBuf>,
    /// A directory whose `*.yaml`/`*.yml` files are policies.
    pub policy_dir: Option<PathBuf>,
    /// At most this many runs at once, across policies.
    pub max_concurrent: usize,
    /// Where to serve `/metrics` and `/healthz`.
    pub listen: Option<SocketAddr>,
    /// How long a running backup may take to finish after SIGTERM before it is aborted.
    pub grace: Duration,
}

/// One policy as the daemon runs it.
struct PolicyState {
    file: PathBuf,
    lp: RwLock<Arc<LoadedPolicy>>,
    running: AtomicBool,
    last_success: Mutex<Option<chrono::DateTime<Utc>>>,
}

impl PolicyState {
    fn current(&self) -> Arc<LoadedPolicy> {
        self.lp.read().expect("policy lock").clone()
    }
}

/// Marks a policy as no longer running when dropped.
struct Running(Arc<PolicyState>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

/// What every scheduled job and the HTTP handlers share.
struct Runner {
    policies: RwLock<BTreeMap<String, Arc<PolicyState>>>,
    metrics: Metrics,
    slots: Semaphore,
    /// Cancelled when the grace period after SIGTERM is over: running backups abort.
    abort: CancellationToken,
    /// Cancelled on SIGTERM: no new run starts (a retry waiting for its delay gives up).
    stop: CancellationToken,
    /// Set on SIGTERM: no new run starts.
    stopping: AtomicBool,
    tracker: TaskTracker,
    /// The revision-log streamer of each policy with `spec.pitr`: its status and its stop.
    streamers: Mutex<BTreeMap<String, (Arc<ops::revlog::RevlogStatus>, CancellationToken)>>,
    /// The stop of each policy's watchdog probe loop.
    monitors: Mutex<Vec<CancellationToken>>,
}

impl Runner {
    /// Start a revision-log streamer for every policy with `spec.pitr`, after stopping those
    /// running (a reload may have changed them).
    fn restart_streamers(self: &Arc<Self>) {
        let mut streamers = self.streamers.lock().expect("streamers lock");
        for (_, (_, stop)) in streamers.iter() {
            stop.cancel();
        }
        streamers.clear();
        for (name, st) in self.all() {
            let lp = st.current();
            if lp.policy.pitr.is_none() {
                continue;
            }
            let status = Arc::new(ops::revlog::RevlogStatus::default());
            let stop = self.stop.child_token();
            streamers.insert(name.clone(), (status.clone(), stop.clone()));
            let handle = tokio::runtime::Handle::current();
            // Driven on its own thread like the runs (rust-lang/rust#102211).
            self.tracker.spawn_blocking(move || {
                if let Err(e) = handle.block_on(ops::revlog::run(lp, status, stop)) {
                    error!(policy = %name, error = %e.chain(), "The revision log cannot run");
                }
            });
        }
    }

    /// Start the watchdog probe loop of every policy (`spec.monitor.interval`, off with 0s),
    /// after stopping those running; also export what each policy's stale rule needs.
    fn restart_monitors(self: &Arc<Self>) {
        let mut monitors = self.monitors.lock().expect("monitors lock");
        for stop in monitors.drain(..) {
            stop.cancel();
        }
        for (name, st) in self.all() {
            let lp = st.current();
            self.metrics
                .policy_known(&name, lp.policy.schedule.as_ref());
            let every = lp.policy.monitor.interval.0;
            if every.is_zero() {
                continue;
            }
            let stop = self.stop.child_token();
            monitors.push(stop.clone());
            let runner = self.clone();
            let handle = tokio::runtime::Handle::current();
            // On its own thread like the runs and streamers (rust-lang/rust#102211).
            self.tracker.spawn_blocking(move || handle.block_on(async move {
                let mut last = None;
                loop {
                    // Cancellable at any point: a probe or a listing never holds up a stop.
                    let probe = async {
                        let health = ops::monitor::probe(&lp).await;
                        let up = ops::monitor::destinations_up(&lp).await;
                        (health, up)
                    };
                    let (health, up) = tokio::select! {
                        r = probe => r,
                        () = stop.cancelled() => return,
                    };
                    runner.metrics.probe(&name, &health, Utc::now());
                    if last != Some(health.verdict) {
                        let topics: Vec<&str> = health.advice.iter().map(|a| a.topic).collect();
                        let verdict = health.verdict.as_str();
                        if health.verdict == crate::watchdog::Verdict::Healthy {
                            info!(policy = %name, verdict, "etcd cluster health");
                        } else {
                            warn!(policy = %name, verdict, advice = ?topics, "etcd cluster health (lifeboat status --policy ... says what to do)");
                        }
                        last = Some(health.verdict);
                    }
                    runner.metrics.destinations_seen(&name, &up);
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }));
        }
    }

    /// Copy the streamers' state into the metrics.
    fn refresh_revlog_metrics(&self) {
        for (name, (status, _)) in self.streamers.lock().expect("streamers lock").iter() {
            self.metrics.revlog(name, status);
        }
    }

    /// Every policy, by name, as of now.
    fn all(&self) -> Vec<(String, Arc<PolicyState>)> {
        let policies = self.policies.read().expect("policies lock");
        policies
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }

    fn state(&self, name: &str) -> Option<Arc<PolicyState>> {
        self.policies
            .read()
            .expect("policies lock")
            .get(name)
            .cloned()
    }

    /// A schedule fired (or catch-up): run unless this policy is already running.
    fn fire(self: &Arc<Self>, name: String) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Some(st) = self.state(&name) else {
            return;
        };
        if st.running.swap(true, Ordering::SeqCst) {
            warn!(policy = %name, "Previous run still going; this scheduled run is skipped");
            self.metrics.skipped(&name, "overlap");
            return;
        }
        let me = self.clone();
        // rustc cannot prove the backup future `Send` for every lifetime (rust-lang/rust#102211),
        // so each run drives it on a blocking thread; its inner tasks still use the runtime.
        let handle = tokio::runtime::Handle::current();
        self.tracker.spawn_blocking(move || {
            // Cleared on drop, so even a run that panics does not stop the policy for good.
            let _running = Running(st.clone());
            handle.block_on(me.run(name, st));
        });
    }

    async fn run(self: Arc<Self>, name: String, st: Arc<PolicyState>) {
        let name = name.as_str();
        let lp = st.current();
        let jitter = lp
            .policy
            .schedule
            .as_ref()
            .map_or(Duration::ZERO, |s| s.jitter.0);
        if !jitter.is_zero() {
            let delay = jitter.mul_f64(rand::random::<f64>());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.stop.cancelled() => return,
            }
        }
        info!(policy = %name, "Scheduled backup starting");
        let observe = |ev: ops::RunEvent<'_>| match ev {
            ops::RunEvent::Started(at) => self.metrics.attempt(name, at),
            ops::RunEvent::Ended { result, took } => match result {
                Ok(ops::Outcome::Committed(r)) => self.metrics.success(name, r, took),
                Ok(ops::Outcome::Skipped { .. }) => self.metrics.skipped(name, "taken"),
                Err(e) => {
                    error!(policy = %name, error = %e.chain(), "Scheduled backup run failed");
                    self.metrics.failure(name, e);
                }
            },
        };
        let run = ops::SlotRun {
            abort: &self.abort,
            stop: &self.stop,
            retry: true,
            gate: Some(&self.slots),
        };
        match ops::backup_in_slot(&lp, run, &observe).await {
            Ok(ops::Outcome::Committed(r)) => {
                info!(policy = %name, backup = %r.manifest.id, retried = r.earlier_runs.len(), "Scheduled backup committed");
                *st.last_success.lock().expect("lock") = Some(r.manifest.finished_at);
                if r.prune.is_none() {
                    // No prune report to count from: count what the destinations hold.
                    let listing = ops::list(&lp).await;
                    self.metrics.holdings(
                        name,
                        listing
                            .backups
                            .iter()
                            .map(|b| (&b.destinations[..], b.manifest.stored.size)),
                    );
                }
            }
            Ok(ops::Outcome::Skipped { holder }) => {
                info!(policy = %name, taken_by = %holder, "Slot backed up by another host; skipped");
                // Health follows what is stored, not the claim: the newest committed backup
                // (the other host's, once it commits).
                if let Some(b) = ops::list(&lp).await.backups.first() {
                    self.metrics.success_at(name, b.manifest.finished_at);
                    *st.last_success.lock().expect("lock") = Some(b.manifest.finished_at);
                }
            }
            Err(e) => {
                error!(policy = %name, error = %e.chain(), "Scheduled backup failed; the next scheduled run will try again");
            }
        }
        if let Some(s) = &lp.policy.schedule {
            self.metrics.next_run(name, s.next_after(Utc::now()));
        }
    }

    /// Problems that make `/healthz` fail: policies whose last success is too old.
    fn health(&self) -> Vec<String> {
        let now = Utc::now();
        let policies = self.policies.read().expect("policies lock");
        let mut bad = Vec::new();
        for (name, st) in policies.iter() {
            let lp = st.current();
            let Some(stale) = lp
                .policy
                .schedule
                .as_ref()
                .and_then(|s| s.stale_after_at(now))
            else {
                continue;
            };
            match *st.last_success.lock().expect("lock") {
                None => bad.push(format!("policy {name}: no successful backup yet")),
                Some(t) => {
                    let age = (now - t).to_std().unwrap_or_default();
                    if age > stale {
                        bad.push(format!(
                            "policy {name}: last successful backup finished {}s ago, more than \
                             staleAfter {}s",
                            age.as_secs(),
                            stale.as_secs()
                        ));
                    }
                }
            }
        }
        bad
    }
}

fn policy_paths(opts: &DaemonOptions) -> Result<Vec<PathBuf>> {
    let mut named = opts.policy_files.clone();
    named.extend(opts.policy_dir.clone());
    ops::load::policy_files(&named)
}

/// Load a policy the daemon can schedule.
fn load_scheduled(path: &Path) -> Result<LoadedPolicy> {
    let lp = ops::load_policy(path)?;
    if lp.policy.schedule.is_none() {
        return Err(Error::new(
            Kind::Policy,
            format!(
                "{}: policy {} has no spec.schedule; the daemon runs policies by their schedule \
                 (add `schedule: {{cron: \"0 * * * *\"}}`, or use `lifeboat backup` from a timer)",
                path.display(),
                lp.policy.name
            ),
        ));
    }
    Ok(lp)
}

/// Run until SIGTERM or SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<()> {
    // First, so a signal during start-up (catch-up lists every destination) is not fatal.
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let paths = policy_paths(&opts)?;
    let metrics = Metrics::new();
    let mut policies = BTreeMap::new();
    for path in &paths {
        let lp = load_scheduled(path)?;
        metrics.policy_file(path, true, false);
        let name = lp.policy.name.clone();
        let st = Arc::new(PolicyState {
            file: path.clone(),
            lp: RwLock::new(Arc::new(lp)),
            running: AtomicBool::new(false),
            last_success: Mutex::new(None),
        });
        if let Some(other) = policies.insert(name.clone(), st) {
            return Err(Error::new(
                Kind::Policy,
                format!(
                    "policy name {name} is used by both {} and {}; names must be unique",
                    other.file.display(),
                    path.display()
                ),
            ));
        }
    }
    let runner = Arc::new(Runner {
        policies: RwLock::new(policies),
        metrics,
        slots: Semaphore::new(opts.max_concurrent.max(1)),
        abort: CancellationToken::new(),
        stop: CancellationToken::new(),
        stopping: AtomicBool::new(false),
        tracker: TaskTracker::new(),
        streamers: Mutex::new(BTreeMap::new()),
        monitors: Mutex::new(Vec::new()),
    });

    let server_stop = CancellationToken::new();
    if let Some(addr) = opts.listen {
        serve(runner.clone(), addr, server_stop.clone()).await?;
    }

    // Before anything runs: what runs that died (SIGKILL, OOM, power loss) left in the spool.
    for (name, st) in runner.all() {
        let lp = st.current();
        match ops::spool::remove_leftovers(&lp) {
            Ok(l) if !l.is_empty() => info!(
                policy = %name,
                files = l.len(),
                bytes = l.iter().map(|l| l.bytes).sum::<u64>(),
                "Removed the leftovers of runs that are gone"
            ),
            Ok(_) => {}
            Err(e) => warn!(policy = %name, error = %e.chain(), "Cannot sweep the spool directory"),
        }
    }

    let mut sched = JobScheduler::new().await.map_err(sched_err)?;
    let mut jobs = schedule_all(&runner, &sched).await?;
    sched.start().await.map_err(sched_err)?;
    runner.restart_streamers();
    runner.restart_monitors();
    catch_up(&runner).await;

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                info!("SIGHUP: reloading policies");
                reload(&runner, &opts);
                for id in jobs.drain(..) {
                    let _ = sched.remove(&id).await;
                }
                jobs = schedule_all(&runner, &sched).await?;
                runner.restart_streamers();
                runner.restart_monitors();
            }
        }
    }

    info!(
        grace_secs = opts.grace.as_secs(),
        "Stopping: no new runs; waiting for running backups"
    );
    runner.stopping.store(true, Ordering::SeqCst);
    runner.stop.cancel();
    let _ = sched.shutdown().await;
    runner.tracker.close();
    if tokio::time::timeout(opts.grace, runner.tracker.wait())
        .await
        .is_err()
    {
        warn!("Grace period over: aborting running backups (nothing they wrote is committed)");
        runner.abort.cancel();
        runner.tracker.wait().await;
    }
    server_stop.cancel();
    info!("Stopped");
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).map_err(|e| {
        Error::new(
            Kind::Internal,
            format!("cannot install signal handler: {e}"),
        )
    })
}

fn sched_err(e: tokio_cron_scheduler::JobSchedulerError) -> Error {
    Error::new(Kind::Internal, format!("scheduler: {e}"))
}

/// One cron job per policy; returns the job ids.
async fn schedule_all(runner: &Arc<Runner>, sched: &JobScheduler) -> Result<Vec<uuid::Uuid>> {
    let states = runner.all();
    let mut ids = Vec::new();
    for (name, st) in states {
        let lp = st.current();
        let s = lp
            .policy
            .schedule
            .as_ref()
            .expect("daemon policies have a schedule");
        let r = runner.clone();
        let n = name.clone();
        let job = Job::new_async_tz(s.cron_with_seconds().as_str(), s.timezone.0, move |_, _| {
            r.fire(n.clone());
            Box::pin(async {})
        })
        .map_err(|e| {
            Error::new(
                Kind::Policy,
                format!("policy {name}: cannot schedule cron {:?}: {e}", s.cron.0),
            )
        })?;
        ids.push(sched.add(job).await.map_err(sched_err)?);
        runner.metrics.next_run(&name, s.next_after(Utc::now()));
        info!(policy = %name, cron = %s.cron.0, timezone = %s.timezone.0.name(), "Scheduled");
    }
    Ok(ids)
}

/// On start: a policy whose newest backup is older than one period (or that has none) runs now.
async fn catch_up(runner: &Arc<Runner>) {
    let states = runner.all();
    for (name, st) in states {
        let lp = st.current();
        let listing = ops::list(&lp).await;
        let newest = listing.backups.first().map(|b| b.manifest.finished_at);
        if let Some(t) = newest {
            runner.metrics.success_at(&name, t);
            *st.last_success.lock().expect("lock") = Some(t);
        }
        let now = Utc::now();
        let period = lp.policy.schedule.as_ref().and_then(|s| s.period_at(now));
        let due = match (newest, period) {
            (None, _) => true,
            (Some(t), Some(p)) => (now - t).to_std().unwrap_or_default() > p,
            (Some(_), None) => false,
        };
        if due {
            info!(policy = %name, newest = ?newest, "Newest backup is older than one period: catching up now");
            runner.fire(name);
        }
    }
}

/// SIGHUP: reload every policy file. A file that no longer loads keeps its previous version
/// running; the error is logged and exported.
fn reload(runner: &Runner, opts: &DaemonOptions) {
    let paths = match policy_paths(opts) {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e.chain(), "Reload failed; keeping every policy as it was");
            return;
        }
    };
    let mut policies = runner.policies.write().expect("policies lock");
    let by_file: BTreeMap<PathBuf, String> = policies
        .iter()
        .map(|(n, s)| (s.file.clone(), n.clone()))
        .collect();
    let mut next = BTreeMap::new();
    for path in &paths {
        match load_scheduled(path) {
            Ok(lp) => {
                runner.metrics.policy_file(path, true, true);
                let name = lp.policy.name.clone();
                let st = match policies.get(&name) {
                    Some(st) if st.file == *path => {
                        *st.lp.write().expect("policy lock") = Arc::new(lp);
                        st.clone()
                    }
                    _ => Arc::new(PolicyState {
                        file: path.clone(),
                        lp: RwLock::new(Arc::new(lp)),
                        running: AtomicBool::new(false),
                        last_success: Mutex::new(None),
                    }),
                };
                next.insert(name, st);
            }
            Err(e) => {
                error!(file = %path.display(), error = %e.chain(), "Policy file failed to reload; its previous version keeps running");
                runner.metrics.policy_file(path, false, true);
                if let Some(old) = by_file.get(path).and_then(|n| policies.get(n)) {
                    next.insert(by_file[path].clone(), old.clone());
                }
            }
        }
    }
    *policies = next;
}

/// Serve `/metrics` and `/healthz` on `addr` until `stop`.
async fn serve(runner: Arc<Runner>, addr: SocketAddr, stop: CancellationToken) -> Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let metrics = {
        let r = runner.clone();
        move || {
            let r = r.clone();
            async move {
                r.refresh_revlog_metrics();
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    r.metrics.render(),
                )
            }
        }
    };
    let healthz = move || {
        let r = runner.clone();
        async move {
            let bad = r.health();
            if bad.is_empty() {
                (StatusCode::OK, "ok\n".to_owned())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, bad.join("\n") + "\n")
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            Kind::Usage,
            format!("cannot listen on {addr}: {e}; pick another --listen address"),
        )
    })?;
    info!(%addr, "Serving /metrics and /healthz");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(())
}
