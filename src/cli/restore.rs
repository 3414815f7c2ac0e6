//! `lifeboat restore`: choose, confirm, stage, print the runbook, optionally run etcd's restore.

use super::human_bytes;
use crate::error::{Error, Kind};
use crate::ops;
use crate::ops::restore::{Output, Selector, Source, Staged};
use crate::runbook::{RestoreParams, Runbook, Target};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `lifeboat restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Policy whose destinations hold the backups.
    #[arg(long, required_unless_present_any = ["from", "from_file"], conflicts_with_all = ["from", "from_file"])]
    policy: Option<PathBuf>,
    /// Restore the newest backup (the default).
    #[arg(long, conflicts_with_all = ["id", "before"])]
    latest: bool,
    /// Restore this backup (see `lifeboat list`).
    #[arg(long, requires = "policy", conflicts_with = "before")]
    id: Option<String>,
    /// Restore the newest backup started before TIME: RFC 3339, a date (UTC) or a duration
    /// back from now (6h).
    #[arg(long, requires = "policy", value_name = "TIME")]
    before: Option<String>,
    /// A backup's manifest or data object URL (s3://bucket/prefix/POLICY/ID.manifest.json);
    /// S3 settings come from AWS_* variables.
    #[arg(long, value_name = "URL", conflicts_with = "from_file")]
    from: Option<String>,
    /// A local snapshot file, or a member/snap/db copied from a data directory.
    #[arg(long, value_name = "PATH")]
    from_file: Option<PathBuf>,
    /// Accept a file without etcd's SHA-256 trailer (a data-directory copy); its structure is
    /// still checked.
    #[arg(long, requires = "from_file")]
    skip_hash_check: bool,
    /// age identity file able to decrypt the backup; may be repeated.
    #[arg(long)]
    identity: Vec<PathBuf>,
    /// Where to stage the verified snapshot.
    #[arg(long, short)]
    output: PathBuf,
    /// Replace an existing --output (only after the new snapshot is verified).
    #[arg(long)]
    force: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short)]
    yes: bool,
    /// How the cluster will be bootstrapped; selects the runbook.
    #[arg(long, value_enum, default_value = "etcdutl")]
    target: Target,
    /// Talos node to bootstrap (talosctl -n).
    #[arg(long)]
    node: Option<String>,
    /// Member name for `etcdutl snapshot restore --name`.
    #[arg(long)]
    name: Option<String>,
    /// `--initial-cluster` for the restored cluster.
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `--initial-advertise-peer-urls` of this member.
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    /// `--initial-cluster-token` for the restored cluster.
    #[arg(long)]
    initial_cluster_token: Option<String>,
    /// Data directory to restore into (with --exec), or to name in the runbook.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// After staging, run `etcdutl snapshot restore` (or etcdctl 3.4) into --data-dir, which
    /// must not exist or be empty.
    #[arg(long, requires = "data_dir")]
    exec: bool,
    /// Add `--bump-revision N --mark-compacted` (Kubernetes on etcd 3.6+: use 1000000000).
    #[arg(long, value_name = "N")]
    bump_revision: Option<u64>,
    /// Point-in-time: restore the cluster exactly as it was at this revision, replaying the
    /// revision log (spec.pitr) onto the newest full backup before it.
    #[arg(long, value_name = "REV", requires = "policy", conflicts_with_all = ["id", "before", "latest", "to_time"])]
    to_revision: Option<i64>,
    /// Point-in-time: restore the last revision observed at or before TIME (RFC 3339, a date,
    /// or a duration back from now).
    #[arg(long, value_name = "TIME", requires = "policy", conflicts_with_all = ["id", "before", "latest"])]
    to_time: Option<String>,
    /// With --to-revision/--to-time: the revision-log timeline to use (default: the newest that
    /// holds the target).
    #[arg(long, value_name = "ID")]
    timeline: Option<String>,
    /// The etcd binary to replay the log with (default: etcd on PATH); it must be the source's
    /// minor version.
    #[arg(long, value_name = "PATH")]
    replay_etcd: Option<PathBuf>,
    /// Print the result and runbook as JSON.
    #[arg(long)]
    json: bool,
}

impl RestoreArgs {
    /// Whether the output is JSON (no progress bars then).
    pub fn json(&self) -> bool {
        self.json
    }
}

pub async fn restore(a: RestoreArgs) -> Result<(), Error> {
    let out = Output {
        path: a.output.clone(),
        force: a.force,
    };
    out.preflight()?;
    let mut params = RestoreParams {
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        data_dir: a
            .data_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        bump_revision: a.bump_revision,
        skip_hash_check: false,
    };
    // Fail before any download when --exec cannot work.
    let tool = if a.exec {
        let dir = a.data_dir.as_deref().expect("clap requires --data-dir");
        ops::etcdutl::check_data_dir(dir)?;
        Some(ops::etcdutl::RestoreTool::find()?)
    } else {
        None
    };
    let mut replayed = None;
    let staged = if a.to_revision.is_some() || a.to_time.is_some() {
        let lp = ops::load_policy(a.policy.as_deref().expect("clap requires --policy"))?;
        let target = match (a.to_revision, &a.to_time) {
            (Some(r), _) => crate::revlog::plan::Target::Revision(r),
            (_, Some(t)) => crate::revlog::plan::Target::Time(
                ops::restore::parse_before(t, chrono::Utc::now())
                    .map_err(|m| Error::new(Kind::Usage, format!("--to-time {m}")))?,
            ),
            _ => unreachable!("one of them is set"),
        };
        let identities: ops::fetch::Identities =
            Arc::new(ops::fetch::load_identities(&a.identity)?);
        let plan = ops::pitr::plan(&lp, target, a.timeline.as_deref()).await?;
        ops::fetch::require_identities(&plan.full.manifest, &identities)?;
        describe_pitr(&plan, &out);
        confirm(a.yes, &a, "Replay and stage this point in time")?;
        let (staged, r) =
            ops::pitr::restore(&lp, &plan, &identities, &out, a.replay_etcd.as_deref()).await?;
        replayed = Some((plan, r));
        staged
    } else if let Some(file) = &a.from_file {
        eprintln!("file        {}", file.display());
        eprintln!("to          {}", out.path.display());
        confirm(a.yes, &a, "Stage this file")?;
        ops::restore::stage_file(file, a.skip_hash_check, &out).await?
    } else {
        let src = match &a.from {
            Some(url) => ops::restore::from_url(url).await?,
            None => {
                let lp = ops::load_policy(a.policy.as_deref().expect("clap requires --policy"))?;
                let sel = match (&a.id, &a.before) {
                    (Some(id), _) => Selector::Id(id.clone()),
                    (_, Some(t)) => Selector::Before(
                        ops::restore::parse_before(t, chrono::Utc::now())
                            .map_err(|m| Error::new(Kind::Usage, format!("--before {m}")))?,
                    ),
                    _ => Selector::Latest,
                };
                ops::restore::choose(&lp, &sel).await?
            }
        };
        let identities: ops::fetch::Identities =
            Arc::new(ops::fetch::load_identities(&a.identity)?);
        ops::fetch::require_identities(&src.manifest, &identities)?;
        describe(&src, &out);
        confirm(a.yes, &a, "Stage this backup")?;
        ops::restore::stage_backup(src, &identities, &out).await?
    };
    params.skip_hash_check = staged.needs_skip_hash_check();
    let runbook = staged
        .runbook_input(a.target, a.node.clone(), params.clone())
        .build();
    let restored = match &tool {
        Some(tool) => Some(tool.restore(&staged.path, &params).await?),
        None => None,
    };
    if a.json {
        let v = json!({
            "staged": staged_json(&staged),
            "runbook": runbook,
            "restoredDataDir": restored,
            "pointInTime": replayed.as_ref().map(|(p, r)| pitr_json(p, r)),
        });
        out!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        if let Some((_, r)) = &replayed {
            out!(
                "Replayed {} revisions ({} events, {} leases granted) with {} in {:.1}s; the \
                 live key count matched the log at {} segment end(s)",
                r.revisions,
                r.events,
                r.leases_granted,
                r.etcd,
                r.seconds,
                r.counts_checked.len()
            );
        }
        print_staged(&staged);
        print_runbook(&runbook);
        if let Some(dir) = &restored {
            out!(
                "\nRestored into {} with {}: start etcd on it with the same --name and URLs.",
                dir.display(),
                tool.as_ref()
                    .map_or(String::new(), |t| t.program.display().to_string())
            );
        }
    }
    Ok(())
}

fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The plan of a point-in-time restore, before anything is downloaded.
fn describe_pitr(p: &ops::pitr::PitrPlan, out: &Output) {
    let m = &p.full.manifest;
    match p.target {
        crate::revlog::plan::Target::Revision(r) => eprintln!("target      revision {r}"),
        crate::revlog::plan::Target::Time(t) => match p.plan.stop_at_time {
            Some(_) => eprintln!(
                "target      {} (the last revision observed then, at most {}; observed times \
                 are when the streamer received them)",
                rfc(t),
                p.plan.to_revision
            ),
            None => eprintln!("target      {} = revision {}", rfc(t), p.plan.to_revision),
        },
    }
    eprintln!("timeline    {}", p.plan.timeline);
    eprintln!(
        "full        backup {} at revision {} (created {}, etcd {})",
        m.id,
        p.plan.from_revision,
        m.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.member.etcd_version
    );
    eprintln!(
        "replay      {} segment(s), revisions {}..={} ({} stored in all)",
        p.segments.len(),
        p.plan.from_revision + 1,
        p.plan.to_revision,
        human_bytes(p.download_bytes())
    );
    for (s, holders) in &p.segments {
        eprintln!(
            "            {}-{}  {} revisions, {} events, observed {} .. {}  at {}",
            s.first_revision,
            s.last_revision,
            s.revisions,
            s.events,
            rfc(s.first_observed_at),
            rfc(s.last_observed_at),
            holders.join(",")
        );
    }
    eprintln!("to          {}", out.path.display());
}

fn pitr_json(p: &ops::pitr::PitrPlan, r: &ops::pitr::Replayed) -> serde_json::Value {
    json!({
        "timeline": p.plan.timeline,
        "fullBackup": p.full.manifest.id,
        "fromRevision": p.plan.from_revision,
        "toRevision": r.revision,
        "observedAt": r.observed_at.map(rfc),
        "segments": p.segments.iter().map(|(s, _)| format!("{}-{}", s.first_revision, s.last_revision)).collect::<Vec<_>>(),
        "revisionsReplayed": r.revisions,
        "eventsReplayed": r.events,
        "leasesGranted": r.leases_granted,
        "keyCountsChecked": r.counts_checked,
        "etcd": r.etcd,
        "seconds": r.seconds,
    })
}

fn describe(src: &Source, out: &Output) {
    let m = &src.manifest;
    let age = chrono::Utc::now().signed_duration_since(m.started_at);
    let age = age
        .to_std()
        .map(|d| {
            let rounded = std::time::Duration::from_secs(d.as_secs() / 60 * 60);
            format!("{} ago", humantime::format_duration(rounded))
        })
        .unwrap_or_else(|_| "in the future: check this host's clock".into());
    let member = if m.member.name.is_empty() {
        &m.member.id
    } else {
        &m.member.name
    };
    eprintln!("backup      {} (policy {})", m.id, m.policy);
    eprintln!(
        "created     {} ({age})",
        m.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    eprintln!(
        "revision    {} (member {member}, etcd {}, cluster {})",
        m.snapshot.revision, m.member.etcd_version, m.cluster_id
    );
    eprintln!(
        "sizes       database {}, stored {}{}",
        human_bytes(m.snapshot.db_size),
        human_bytes(m.stored.size),
        if m.stored.encryption.is_some() {
            " (encrypted)"
        } else {
            ""
        }
    );
    eprintln!(
        "from        destination {:?} ({}); held by {}",
        src.destinations[0].name,
        src.destinations[0].url,
        src.destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("to          {}", out.path.display());
}

fn confirm(yes: bool, a: &RestoreArgs, question: &str) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::new(
            Kind::Usage,
            "restore asks for confirmation, but stdin is not a terminal; pass --yes",
        ));
    }
    let exec = match (&a.exec, &a.data_dir) {
        (true, Some(d)) => format!(" and restore it into {}", d.display()),
        _ => String::new(),
    };
    eprint!("{question}{exec}? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::new(Kind::Io, format!("reading the answer: {e}")))?;
    if matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Error::new(Kind::Usage, "not confirmed; nothing was staged"))
    }
}

fn staged_json(s: &Staged) -> serde_json::Value {
    let r = &s.report;
    let st = &r.inspection.status;
    json!({
        "path": std::path::absolute(&s.path).unwrap_or_else(|_| s.path.clone()),
        "backup": s.manifest.as_ref().map(|m| m.id.to_string()),
        "destination": s.destination,
        "fileSize": r.file_size,
        "sha256": r.sha256,
        "trailer": if s.needs_skip_hash_check() { "absent" } else { "matches" },
        "hash": st.hash,
        "revision": st.revision,
        "totalKey": st.total_key,
        "liveKeys": st.live_keys,
        "totalSize": st.total_size,
        "skipHashCheck": s.needs_skip_hash_check(),
        "replacedPart": super::leftovers_json(s.replaced_part.as_slice()),
        "replayedTo": s.replayed_to,
    })
}

fn print_staged(s: &Staged) {
    super::note_leftovers(s.replaced_part.as_slice());
    let r = &s.report;
    let st = &r.inspection.status;
    let what = match (&s.manifest, &s.destination) {
        (Some(m), _) if s.replayed_to.is_some() => format!(
            "revision {} (backup {} and the revision log replayed onto it)",
            s.replayed_to.unwrap_or_default(),
            m.id
        ),
        (Some(m), Some(d)) => format!("backup {} from destination {d:?}", m.id),
        _ => "the file".to_owned(),
    };
    let proof = if s.replayed_to.is_some() {
        "SHA-256 trailer and structure checked; revision and live keys as the replay reached"
            .to_owned()
    } else if s.needs_skip_hash_check() {
        "no SHA-256 trailer (data-directory copy): structure checked".to_owned()
    } else if s.manifest.is_some() {
        "SHA-256 trailer, structure and status match the manifest".to_owned()
    } else {
        "SHA-256 trailer matches; structure checked".to_owned()
    };
    out!(
        "Staged {what} at {} ({})",
        s.path.display(),
        human_bytes(r.file_size)
    );
    out!("  verified: {proof}");
    out!(
        "  status:   hash {:08x}, revision {}, total keys {}, live keys {}, total size {}",
        st.hash,
        st.revision,
        st.total_key,
        st.live_keys,
        st.total_size
    );
    out!("  sha256:   {}", r.sha256);
}

fn print_runbook(rb: &Runbook) {
    let target = serde_json::to_value(rb.target).expect("json");
    out!("\nRunbook ({}):", target.as_str().unwrap_or_default());
    for w in &rb.warnings {
        out!("  ! {w}");
    }
    for (i, s) in rb.steps.iter().enumerate() {
        out!("\n{}. {}", i + 1, s.title);
        for c in &s.commands {
            out!("     $ {c}");
        }
        if let Some(c) = &s.check {
            out!("     expect: {c}");
        }
    }
}
