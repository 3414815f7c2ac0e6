//! Command line: parses arguments, calls the operations, prints results. The only module that
//! writes to stdout.

use crate::error::{Error, Kind};
use crate::ops;
use crate::ops::inspect::Hashing;
use crate::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;

/// `println!` that ends the process quietly when stdout is closed (`lifeboat ... | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

mod backup;
mod check;
mod extract;
mod inspect;
mod k8s;
mod list;
mod policy;
mod prune;
mod restore;
mod revlog;
mod status;

/// Verified, encrypted backups of etcd clusters.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Log level or filter (e.g. info, debug, lifeboat=debug).
    #[arg(long, global = true, default_value = "info", env = "LIFEBOAT_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Take one backup now.
    Backup {
        /// Policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Back up this snapshot file (or a member/snap/db copy) instead of asking a member;
        /// it is verified, compressed, encrypted and stored like any other backup.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
        /// With --from-file: accept a file without etcd's SHA-256 trailer (a data-directory
        /// copy); its structure is still checked.
        #[arg(long, requires = "from_file")]
        skip_hash_check: bool,
        /// Print the result as a JSON object.
        #[arg(long)]
        json: bool,
        /// Write the run's metrics (Prometheus text format) to this file, atomically, for
        /// node_exporter's textfile collector; written after failed runs too. Counters continue
        /// from the file's previous contents.
        #[arg(long, value_name = "PATH")]
        metrics_textfile: Option<PathBuf>,
        /// Do not retry a failed run (schedule.retry), for this run only.
        #[arg(long, conflicts_with = "from_file")]
        no_retry: bool,
    },
    /// Run every policy on its schedule, with /metrics and /healthz; stop with SIGTERM.
    ///
    /// Never runs two backups of one policy at once (a run still going when the next fires is
    /// skipped and counted); runs a policy at once on start when its newest backup is older
    /// than one period; reloads policy files on SIGHUP (a file that no longer loads keeps its
    /// previous version). On SIGTERM/SIGINT it stops scheduling, lets running backups finish
    /// within --grace, then aborts them (nothing committed).
    Daemon {
        /// Policy file; may be repeated.
        #[arg(long = "policy", value_name = "FILE")]
        policies: Vec<PathBuf>,
        /// Directory whose *.yaml / *.yml files are policies.
        #[arg(long, value_name = "DIR")]
        policy_dir: Option<PathBuf>,
        /// At most this many backups at once, across all policies.
        #[arg(long, default_value_t = 1)]
        max_concurrent: usize,
        /// Serve /metrics and /healthz here (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// After SIGTERM, how long running backups may take to finish before they are aborted.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Stream the policy's revision log (spec.pitr) in the foreground until SIGTERM.
    ///
    /// Records every etcd revision between full backups in segments (one writer per policy
    /// across hosts; the others stand by), so `restore --to-revision/--to-time` can reach any
    /// point. The daemon runs the same streamer for every policy with spec.pitr.
    Revlog {
        /// Policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Write the streamer's metrics to this file every 15 seconds (node_exporter's textfile
        /// collector).
        #[arg(long, value_name = "PATH")]
        metrics_textfile: Option<PathBuf>,
    },
    /// Every member's health and what to do about it (read-only).
    ///
    /// A table of every member (endpoint, name, version, database size and in use, quota, leader,
    /// learner, raft term/index/applied, errors, alarms), then advice in plain words with the
    /// exact commands: defragmentation, NOSPACE recovery, quota headroom, lagging or missing
    /// members. It never defragments, compacts or disarms. Exit code: 0 healthy, 10 degraded,
    /// 4 down (no quorum, no leader or no member answers).
    Status {
        /// Policy file (its cluster section is used).
        #[arg(long)]
        policy: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a policy's backups, newest first.
    List {
        /// Policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Check a snapshot and show its status (as `etcdctl snapshot status`), or list its keys.
    ///
    /// Reads a local snapshot file (with or without etcd's SHA-256 trailer), or a stored backup
    /// with --policy, --backup and --identity. Exit code 5 when the file fails any check.
    Inspect {
        /// Snapshot file.
        #[arg(required_unless_present = "backup", conflicts_with = "backup")]
        file: Option<PathBuf>,
        #[command(flatten)]
        stored: StoredArgs,
        /// List the live keys at the snapshot's revision instead of the status.
        #[arg(long)]
        keys: bool,
        /// With --keys: only keys starting with this prefix.
        #[arg(long, requires = "keys")]
        prefix: Option<String>,
        /// Do not hash the file to compare it with its SHA-256 trailer (faster on huge files;
        /// the structure and status are still checked).
        #[arg(long)]
        skip_hash_check: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the values of live keys under a prefix to files, without restoring a cluster.
    Extract {
        /// Snapshot file.
        #[arg(required_unless_present = "backup", conflicts_with = "backup")]
        file: Option<PathBuf>,
        #[command(flatten)]
        stored: StoredArgs,
        /// Key prefix to extract (e.g. /registry/secrets/default/).
        #[arg(long)]
        prefix: String,
        /// Directory to create; must not exist (or be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Kubernetes objects in a backup: list them, get them as apply-ready YAML, decrypt them.
    K8s {
        #[command(subcommand)]
        cmd: k8s::K8sCmd,
    },
    /// What changed between two backups: Kubernetes objects (added, removed, modified,
    /// replaced, status only) or keys.
    ///
    /// Each side is a snapshot file, or with --policy a backup id or `latest`. Memory grows with
    /// the number of keys (a digest each), never with value sizes.
    Diff(Box<k8s::DiffArgs>),
    /// Stage a verified snapshot for recovery and print the runbook.
    ///
    /// Downloads, decrypts and decompresses a backup (or copies a local file) to OUTPUT.part,
    /// proves it against its manifest (SHA-256 trailer, bbolt structure, status), fsyncs, and
    /// renames it to OUTPUT. Then prints the steps for --target.
    Restore(Box<restore::RestoreArgs>),
    /// Prove stored backups: download, decrypt, decompress and verify each against its manifest.
    ///
    /// Nothing is staged; exit code 5 when any backup fails (or the drill does).
    Check(check::CheckArgs),
    /// Apply the policy's retention: show why each backup is kept, remove the rest.
    ///
    /// Prints each backup with the rules that keep it, then removes the rest (manifest first,
    /// then data) and orphan data objects older than the grace period. The newest backup is always kept; backups of other policies and clusters are never
    /// touched. Exit code 6 when a removal fails or a destination cannot be listed.
    Prune(prune::PruneArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this command line definition.
    Man,
    /// Manage age keys.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
}

/// Which stored backup to read.
#[derive(Debug, clap::Args)]
struct StoredArgs {
    /// Policy whose destinations hold the backup.
    #[arg(long, requires = "backup")]
    policy: Option<PathBuf>,
    /// Backup id (see `lifeboat list`), or `latest`.
    #[arg(long, requires = "policy")]
    backup: Option<String>,
    /// age identity file able to decrypt the backup; may be repeated.
    #[arg(long)]
    identity: Vec<PathBuf>,
}

impl StoredArgs {
    /// No stored backup: a local file is read.
    fn none() -> Self {
        Self {
            policy: None,
            backup: None,
            identity: Vec::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Validate policy files and the files they name; no network traffic.
    Check {
        /// Policy files, or directories of *.yaml files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the policy format (for editors and linters).
    Schema,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Create an age identity file (0600) and print its public key (recipient).
    Generate {
        /// Where to write the identity; never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Run the command and return the process exit code.
pub fn run(cli: Cli) -> u8 {
    telemetry::init(cli.log_format, &cli.log_level);
    if shows_progress(&cli) {
        crate::progress::install(Box::new(TerminalBars));
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&Error::new(
                Kind::Internal,
                format!("starting runtime: {e}"),
            ));
        }
    };
    let code = rt.block_on(dispatch(cli.command));
    // What is left is a sealer finishing a zstd frame for a run that was given up: its output
    // goes nowhere, so do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

fn fail(e: &Error) -> u8 {
    eprintln!("error: {}", e.chain());
    e.kind().exit_code()
}

async fn dispatch(cmd: Command) -> u8 {
    match cmd {
        Command::Policy {
            cmd: PolicyCmd::Check { files },
        } => policy::policy_check(&files),
        Command::Policy {
            cmd: PolicyCmd::Schema,
        } => {
            out!(
                "{}",
                serde_json::to_string_pretty(&crate::policy::policy_schema()).expect("json")
            );
            0
        }
        Command::Backup {
            policy,
            from_file,
            skip_hash_check,
            json,
            metrics_textfile,
            no_retry,
        } => match backup::backup(backup::BackupArgs {
            policy: &policy,
            from_file: from_file.as_deref(),
            skip_hash_check,
            json_out: json,
            textfile: metrics_textfile.as_deref(),
            retry: !no_retry,
        })
        .await
        {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Daemon {
            policies,
            policy_dir,
            max_concurrent,
            listen,
            grace,
        } => {
            let opts = crate::daemon::DaemonOptions {
                policy_files: policies,
                policy_dir,
                max_concurrent,
                listen,
                grace,
            };
            match crate::daemon::run(opts).await {
                Ok(()) => 0,
                Err(e) => fail(&e),
            }
        }
        Command::List { policy, json } => list::list(&policy, json).await,
        Command::Status { policy, json } => match status::status(&policy, json).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
        Command::Revlog {
            policy,
            metrics_textfile,
        } => match revlog::revlog(&policy, metrics_textfile.as_deref()).await {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Inspect {
            file,
            stored,
            keys,
            prefix,
            skip_hash_check,
            json,
        } => match inspect::inspect(file, stored, keys, prefix, skip_hash_check, json).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
        Command::Extract {
            file,
            stored,
            prefix,
            out,
        } => match extract::extract(file, stored, &prefix, &out).await {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::K8s { cmd } => match k8s::run(cmd).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
        Command::Diff(a) => match k8s::diff(*a).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
        Command::Restore(a) => match restore::restore(*a).await {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Check(a) => match check::check(a).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
        Command::Prune(a) => match prune::prune(a).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "lifeboat",
                &mut std::io::stdout(),
            );
            0
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                Ok(()) => {
                    out!("{}", String::from_utf8_lossy(&buf));
                    0
                }
                Err(e) => fail(&Error::new(
                    Kind::Io,
                    format!("rendering the man page: {e}"),
                )),
            }
        }
        Command::Key {
            cmd: KeyCmd::Generate { out },
        } => match ops::keys::generate_identity(&out) {
            Ok(recipient) => {
                out!("{recipient}");
                eprintln!(
                    "identity written to {}; keep it safe and off the backup host: it is the only \
                     way to decrypt backups",
                    out.display()
                );
                0
            }
            Err(e) => fail(&e),
        },
    }
}

/// Cancel `token` on SIGTERM or SIGINT (a stopped systemd unit, Ctrl-C), so that a long
/// operation stops cleanly instead of dying mid-write.
fn cancel_on_signals(token: &tokio_util::sync::CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut t), Ok(mut i)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
            token.cancel();
        }
    });
}

/// Leftovers of dead runs as JSON: `[{path, bytes, what}]`.
fn leftovers_json(l: &[ops::spool::Leftover]) -> serde_json::Value {
    l.iter()
        .map(|l| json!({"path": l.path, "bytes": l.bytes, "what": l.what}))
        .collect()
}

/// Say on stderr what leftovers of dead runs were removed.
fn note_leftovers(l: &[ops::spool::Leftover]) {
    for l in l {
        eprintln!(
            "note: removed {} left by a run that is gone: {} ({})",
            l.what,
            l.path.display(),
            human_bytes(l.bytes)
        );
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Progress bars only for a person watching: stderr is a terminal, logs are human and the
/// command's output is not JSON; never for the daemon.
fn shows_progress(cli: &Cli) -> bool {
    use std::io::IsTerminal;
    let json = match &cli.command {
        Command::Backup { json, .. } | Command::Inspect { json, .. } => *json,
        Command::Restore(a) => a.json(),
        Command::Check(a) => a.json(),
        Command::Extract { .. } => false,
        _ => return false,
    };
    !json && matches!(cli.log_format, LogFormat::Human) && std::io::stderr().is_terminal()
}

/// indicatif bars on stderr.
struct TerminalBars;

struct TerminalBar(indicatif::ProgressBar);

impl crate::progress::Sink for TerminalBars {
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn crate::progress::Bar> {
        let pb = indicatif::ProgressBar::no_length();
        if let Some(t) = total {
            pb.set_length(t);
        }
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(label.to_owned());
        Box::new(TerminalBar(pb))
    }
}

impl crate::progress::Bar for TerminalBar {
    fn set(&self, done: u64, total: Option<u64>) {
        if let Some(t) = total
            && self.0.length() != Some(t)
        {
            self.0.set_length(t);
        }
        self.0.set_position(done);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
