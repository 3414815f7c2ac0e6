//! `lifeboat k8s ls|get` and `lifeboat diff`: Kubernetes objects out of a snapshot file or a
//! stored backup.

use super::*;
use crate::k8s::encryption::Keyring;
use crate::ops::k8s::{self as k8sops, Namespaces};
use std::collections::BTreeMap;

/// Options shared by the k8s commands.
#[derive(Debug, clap::Args)]
pub(super) struct Common {
    /// The apiserver's EncryptionConfiguration, to decrypt aescbc, aesgcm and secretbox values;
    /// may be repeated (rotated keys from older files).
    #[arg(long, value_name = "FILE")]
    encryption_config: Vec<PathBuf>,
    /// The apiserver's --etcd-prefix (default: found in the snapshot, /registry or /kubernetes.io).
    #[arg(long, value_name = "PREFIX")]
    etcd_prefix: Option<String>,
    /// Namespace (default: "default"; cluster-scoped objects are always included).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

impl Common {
    fn namespaces(&self) -> Namespaces {
        match (&self.namespace, self.all_namespaces) {
            (_, true) => Namespaces::All,
            (Some(n), false) => Namespaces::One(n.clone()),
            (None, false) => Namespaces::One("default".into()),
        }
    }

    fn keyring(&self) -> Result<Keyring, Error> {
        let mut k = Keyring::default();
        for f in &self.encryption_config {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Error::new(Kind::Crypto, format!("cannot read {}: {e}", f.display()))
            })?;
            k.add_config(&text).map_err(|m| {
                Error::new(
                    Kind::Crypto,
                    format!(
                        "{}: {m}; pass the EncryptionConfiguration file kube-apiserver reads \
                         (--encryption-provider-config)",
                        f.display()
                    ),
                )
            })?;
        }
        Ok(k)
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum K8sCmd {
    /// List the Kubernetes objects in a backup: namespace, kind, name, mod revision, encoding
    /// (protobuf, json, cbor, or the encryption provider and key), size.
    ///
    /// Names come from the keys, so encrypted values are listed without keys.
    Ls {
        /// Snapshot file.
        #[arg(required_unless_present = "backup", conflicts_with = "backup")]
        file: Option<PathBuf>,
        #[command(flatten)]
        stored: StoredArgs,
        #[command(flatten)]
        common: Common,
        /// Only this kind (as kubectl takes it: cm, configmap, deployments.apps, widgets.example.com).
        #[arg(long)]
        kind: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print objects from a backup, apply-ready by default.
    ///
    /// Apply-ready: server-set fields (uid, resourceVersion, creationTimestamp, generation,
    /// managedFields, ownerReferences, status, allocated cluster IPs and node ports, ...) are
    /// removed and objects a controller owns are skipped. KIND is `all` for every object of the
    /// namespace (with -n) in apply order. Secrets print only with --out or --show-secrets.
    Get {
        /// [FILE] KIND[/NAME]: the snapshot file (or --policy/--backup) and what to get.
        #[arg(required = true, num_args = 1..=2, value_name = "[FILE] KIND[/NAME]")]
        args: Vec<String>,
        #[command(flatten)]
        stored: StoredArgs,
        #[command(flatten)]
        common: Common,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "yaml")]
        output: Format,
        /// Print objects as the apiserver served them (`kubectl get -o yaml`), resourceVersion
        /// from the etcd mod revision; nothing removed or skipped.
        #[arg(long)]
        raw: bool,
        /// Keep objects a controller owns (Pods of ReplicaSets, ...), token Secrets, events.
        #[arg(long)]
        include_owned: bool,
        /// Write one 0600 file per object into this new directory, in apply order.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print Secrets on stdout (they are otherwise only written with --out).
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    Yaml,
    Json,
}

/// A snapshot file found (fetched and verified if stored), not yet read for objects.
struct Opened {
    source: k8sops::Source,
    label: String,
    /// When the backup was taken (stored backups; a file does not say).
    taken: Option<String>,
    /// Held for as long as the file is read: dropping it removes a fetched copy.
    _fetched: Option<ops::fetch::Fetched>,
}

async fn open(file: Option<PathBuf>, stored: StoredArgs) -> Result<Opened, Error> {
    let (path, fetched) = super::inspect::snapshot_source(file, stored).await?;
    let hashing = fetched
        .as_ref()
        .map_or(Hashing::Compute, |f| Hashing::Known(f.image_sha256));
    let taken = fetched.as_ref().map(|f| {
        f.manifest
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let label = match (&fetched, &taken) {
        (Some(f), Some(t)) => format!("backup {} (taken {t})", f.manifest.id),
        _ => path.display().to_string(),
    };
    Ok(Opened {
        source: k8sops::Source { path, hashing },
        label,
        taken,
        _fetched: fetched,
    })
}

/// Read an opened snapshot for the objects of `kind` (blocking), logging what its CRDs say.
fn read(
    o: &Opened,
    keyring: &Keyring,
    prefix: Option<&str>,
    kind: Option<&str>,
) -> Result<k8sops::ForKind, Error> {
    let r = k8sops::read_for_kind(&o.source, keyring, prefix, kind)?;
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    Ok(r)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("k8s task failed: {e}")))?
}

pub(super) async fn run(cmd: K8sCmd) -> Result<u8, Error> {
    match cmd {
        K8sCmd::Ls {
            file,
            stored,
            common,
            kind,
            json: json_out,
        } => {
            let keyring = common.keyring()?;
            let ns = common.namespaces();
            let defaulted = common.namespace.is_none() && !common.all_namespaces;
            let prefix = common.etcd_prefix.clone();
            let o = open(file, stored).await?;
            let (rows, rev) = blocking(move || {
                let r = read(&o, &keyring, prefix.as_deref(), kind.as_deref())?;
                let rows = k8sops::ls(
                    &r.scan,
                    &r.catalog,
                    &keyring,
                    prefix.as_deref(),
                    &ns,
                    r.resources.as_deref(),
                )?;
                Ok((rows, r.scan.revision))
            })
            .await?;
            if json_out {
                out!("{}", serde_json::to_string_pretty(&rows).expect("json"));
                return Ok(0);
            }
            let cells: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    let note = match (r.decodable, r.encoding.as_str()) {
                        (true, _) | (false, "not an object") => "",
                        (false, e) if e.starts_with("kms:") => " (KMS: not offline)",
                        (false, e) if e.contains(':') => " (no key)",
                        (false, _) => " (unknown kind)",
                    };
                    [
                        if r.namespace.is_empty() {
                            "-".into()
                        } else {
                            r.namespace.clone()
                        },
                        if r.group.is_empty() {
                            r.kind.clone()
                        } else {
                            format!("{}.{}", r.kind, r.group)
                        },
                        r.name.clone(),
                        r.mod_revision.to_string(),
                        format!("{}{note}", r.encoding),
                        r.size.to_string(),
                    ]
                })
                .collect();
            let head = ["NAMESPACE", "KIND", "NAME", "REV", "ENCODING", "SIZE"].map(String::from);
            let mut w = head.clone().map(|h| h.len());
            for c in &cells {
                for (i, v) in c.iter().enumerate() {
                    w[i] = w[i].max(v.chars().count());
                }
            }
            for c in std::iter::once(&head).chain(&cells) {
                out!(
                    "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {:>w5$}",
                    c[0],
                    c[1],
                    c[2],
                    c[3],
                    c[4],
                    c[5],
                    w0 = w[0],
                    w1 = w[1],
                    w2 = w[2],
                    w3 = w[3],
                    w4 = w[4],
                    w5 = w[5]
                );
            }
            eprintln!(
                "{} object(s) at revision {rev}{}",
                rows.len(),
                if defaulted {
                    " in namespace default and cluster-scoped (-A lists every namespace)"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        K8sCmd::Get {
            args,
            stored,
            common,
            output,
            raw,
            include_owned,
            out,
            show_secrets,
        } => {
            let (file, what) = match args.as_slice() {
                [what] => (None, what.clone()),
                [file, what] => (Some(PathBuf::from(file)), what.clone()),
                _ => unreachable!("clap takes one or two"),
            };
            if file.is_some() == stored.backup.is_some() {
                return Err(Error::new(
                    Kind::Usage,
                    "give either a snapshot FILE or --policy with --backup, and KIND[/NAME]",
                ));
            }
            let (kind, name) = match what.split_once('/') {
                Some((k, n)) => (k.to_string(), Some(n.to_string())),
                None => (what.clone(), None),
            };
            let keyring = common.keyring()?;
            let ns = common.namespaces();
            let prefix = common.etcd_prefix.clone();
            // Create the output directory before the long read, so a bad --out fails at once.
            let dir = out
                .as_deref()
                .map(|d| k8sops::ObjectsDir::create(d, matches!(output, Format::Json)))
                .transpose()?;
            let o = open(file, stored).await?;
            let label = o.label.clone();
            let (report, printer, rev) = blocking(move || {
                let r = read(&o, &keyring, prefix.as_deref(), Some(&kind))?;
                let sel = k8sops::Selection {
                    resources: r.resources.clone(),
                    name,
                    namespaces: ns,
                    raw,
                    include_owned,
                };
                let mut printer = Printer {
                    format: output,
                    show_secrets,
                    dir,
                    pending: None,
                    printed: 0,
                    secrets_hidden: 0,
                };
                // Files carry their place in their names, so they can be written as the file
                // is read; printing needs the order.
                let in_order = printer.dir.is_none();
                let report = k8sops::get(
                    &r.scan,
                    &r.catalog,
                    &keyring,
                    prefix.as_deref(),
                    &sel,
                    in_order,
                    |i, o| printer.take(i, o),
                )?;
                Ok((report, printer, r.scan.revision))
            })
            .await?;
            finish_get(report, printer, rev, &label, &what)
        }
    }
}

/// Prints (or writes) objects as `k8s get` produces them, holding at most one.
struct Printer {
    format: Format,
    show_secrets: bool,
    dir: Option<k8sops::ObjectsDir>,
    /// JSON: the last object, printed when the next arrives (a single object prints bare, more
    /// print as a kubectl List).
    pending: Option<String>,
    printed: usize,
    secrets_hidden: usize,
}

impl Printer {
    fn take(&mut self, index: usize, o: k8sops::Got) -> Result<(), Error> {
        for w in &o.warnings {
            eprintln!("warning: {}: {w}", o.key);
        }
        if let Some(d) = &mut self.dir {
            d.write(index, &o)?;
            self.printed += 1;
            return Ok(());
        }
        if o.is_secret() && !self.show_secrets {
            self.secrets_hidden += 1;
            return Ok(());
        }
        match self.format {
            Format::Yaml => {
                if self.printed > 0 {
                    out!("---");
                }
                out!("{}", crate::k8s::yaml::object_to_yaml(&o.object).trim_end());
            }
            Format::Json => {
                let body = serde_json::to_string_pretty(&o.object).expect("json");
                if let Some(prev) = self.pending.replace(body) {
                    if self.printed == 1 {
                        out!(
                            "{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": ["
                        );
                    }
                    out!("{},", indent(&prev));
                }
            }
        }
        self.printed += 1;
        Ok(())
    }

    /// Print what is held; the files written with --out.
    fn finish(mut self) -> Result<Option<Vec<PathBuf>>, Error> {
        if let Some(last) = self.pending.take() {
            if self.printed == 1 {
                out!("{last}");
            } else {
                out!("{}\n  ]\n}}", indent(&last));
            }
        }
        self.dir.take().map(k8sops::ObjectsDir::finish).transpose()
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn finish_get(
    report: k8sops::GetReport,
    printer: Printer,
    rev: i64,
    label: &str,
    what: &str,
) -> Result<u8, Error> {
    for s in &report.skipped {
        eprintln!("skipped {}: {} (--include-owned keeps it)", s.key, s.reason);
    }
    let (printed, hidden) = (printer.printed, printer.secrets_hidden);
    match printer.finish()? {
        Some(files) => {
            for f in &files {
                out!("{}", f.display());
            }
            let d = files
                .first()
                .and_then(|f| f.parent())
                .map_or(String::new(), |p| p.display().to_string());
            eprintln!(
                "{} object(s) from {label} at revision {rev} written in apply order; apply \
                 them with: kubectl apply -f {d}",
                files.len()
            );
        }
        None => {
            if hidden > 0 {
                eprintln!(
                    "{hidden} Secret(s) not printed: Secrets print only with --show-secrets, or \
                     are written with --out DIR (files 0600)"
                );
                if printed == 0 && report.failed.is_empty() {
                    return Err(Error::new(
                        Kind::Usage,
                        "only Secrets matched; add --show-secrets to print them or --out DIR to \
                         write them to private files",
                    ));
                }
            }
            eprintln!("{printed} object(s) from {label} at revision {rev}");
        }
    }
    if !report.failed.is_empty() {
        for f in &report.failed {
            eprintln!("not decoded {}: {}", f.key, f.reason);
        }
        let encrypted = report
            .failed
            .iter()
            .any(|f| f.reason.contains("encrypted with"));
        return Err(Error::new(
            if encrypted {
                Kind::Crypto
            } else {
                Kind::Verify
            },
            format!(
                "{} object(s) could not be read (listed above){}",
                report.failed.len(),
                if encrypted {
                    "; pass the EncryptionConfiguration holding their keys with \
                     --encryption-config"
                } else {
                    ""
                }
            ),
        ));
    }
    if report.emitted == 0 && report.skipped.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            format!("nothing matches {what} at revision {rev} of {label} (see `lifeboat k8s ls`)"),
        ));
    }
    Ok(0)
}

/// `lifeboat diff` arguments.
#[derive(Debug, clap::Args)]
pub(super) struct DiffArgs {
    /// The older side: a snapshot file, or with --policy a backup id (or `latest`).
    a: String,
    /// The newer side: a snapshot file, or with --policy a backup id (or `latest`).
    b: String,
    /// Policy whose destinations hold the backups named by id.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// age identity file able to decrypt the backups; may be repeated.
    #[arg(long)]
    identity: Vec<PathBuf>,
    /// Compare keys and value bytes only (no decoding).
    #[arg(long, conflicts_with = "objects")]
    keys: bool,
    /// Compare Kubernetes objects: modified, replaced (deleted and created again), status only
    /// (the default when the snapshots hold Kubernetes keys).
    #[arg(long)]
    objects: bool,
    #[command(flatten)]
    common: Common,
    /// Only this kind (as kubectl takes it).
    #[arg(long)]
    kind: Option<String>,
    /// Show events and leases too (rewritten by the cluster all the time).
    #[arg(long)]
    include_noise: bool,
    /// Memory for each side's key index (about 320 bytes a key). Snapshots with more keys are
    /// compared in several passes over both files, a share of the keys at a time.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = crate::policy::parse_byte_size)]
    index_memory: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn open_side(
    side: &str,
    policy: &Option<PathBuf>,
    identity: &[PathBuf],
) -> Result<Opened, Error> {
    let p = PathBuf::from(side);
    if p.exists() || policy.is_none() {
        return open(Some(p), StoredArgs::none()).await;
    }
    open(
        None,
        StoredArgs {
            policy: policy.clone(),
            backup: Some(side.to_string()),
            identity: identity.to_vec(),
        },
    )
    .await
}

pub(super) async fn diff(a: DiffArgs) -> Result<u8, Error> {
    let keyring = a.common.keyring()?;
    let prefix = a.common.etcd_prefix.clone();
    // Without -n or -A, diff compares every namespace: a diff of only "default" would hide most.
    let ns = if a.common.namespace.is_none() {
        Namespaces::All
    } else {
        a.common.namespaces()
    };
    let oa = open_side(&a.a, &a.policy, &a.identity).await?;
    let ob = open_side(&a.b, &a.policy, &a.identity).await?;
    let (label_a, label_b) = (oa.label.clone(), ob.label.clone());
    let (taken_a, taken_b) = (oa.taken.clone(), ob.taken.clone());
    let (kind, keys_only, objects) = (a.kind.clone(), a.keys, a.objects);
    let include_noise = a.include_noise;
    let (sa, sb) = (oa.source.clone(), ob.source.clone());
    let budget = a.index_memory;
    let (report, warnings) = blocking(move || {
        k8sops::diff_files(
            &sa,
            &sb,
            &keyring,
            prefix.as_deref(),
            budget,
            |cat, found| {
                Ok(k8sops::DiffOptions {
                    objects: objects || (!keys_only && found.is_some()),
                    namespaces: ns,
                    only: kind.map(|k| k8sops::resolve(cat, &k)).transpose()?,
                    include_noise,
                })
            },
        )
    })
    .await?;
    // The fetched copies stay until the comparison is done.
    drop((oa, ob));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "a": {"source": label_a, "revision": report.a_revision, "taken": taken_a},
                "b": {"source": label_b, "revision": report.b_revision, "taken": taken_b},
                "changes": report.entries,
                "noiseHidden": report.noise_hidden,
                "partitions": report.partitions,
            }))
            .expect("json")
        );
        return Ok(0);
    }
    out!("A: {label_a} at revision {}", report.a_revision);
    out!("B: {label_b} at revision {}", report.b_revision);
    let mut group = (String::new(), String::new());
    for e in &report.entries {
        let g = (e.resource.clone(), e.namespace.clone());
        if g != group {
            out!(
                "\n{}{}",
                if e.resource.is_empty() {
                    "(keys)"
                } else {
                    &e.resource
                },
                if e.namespace.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", e.namespace)
                }
            );
            group = g;
        }
        let what = if e.name.is_empty() { &e.key } else { &e.name };
        let revs = format!(
            "{} → {}",
            e.a_mod_revision.map_or("-".into(), |r| r.to_string()),
            e.b_mod_revision.map_or("-".into(), |r| r.to_string())
        );
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!("  ({})", e.detail.join(", "))
        };
        out!("  {:<12} {what}  [rev {revs}]{detail}", e.change.as_str());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &report.entries {
        *counts.entry(e.change.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    out!(
        "\n{}{}",
        if summary.is_empty() {
            "no differences".to_string()
        } else {
            summary.join(", ")
        },
        if report.noise_hidden > 0 {
            format!(
                "; {} event/lease change(s) hidden (--include-noise shows them)",
                report.noise_hidden
            )
        } else {
            String::new()
        }
    );
    Ok(0)
}
