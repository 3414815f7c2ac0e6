//! Kubernetes objects out of snapshot files: `lifeboat k8s ls`, `k8s get` and `diff`. Reads
//! each file twice at most (one walk for the live keys with digests, one for the values asked
//! for); values are decoded one at a time. Blocking: run off the async runtime.

use super::inspect::{Hashing, bolt_error, inspect_file_with};
use crate::error::{Error, Kind, Result};
use crate::etcddb::{self, LiveDigest, LiveDigests, TRAILER_LEN};
use crate::k8s::clean;
use crate::k8s::diff::{self, Change};
use crate::k8s::encryption::Keyring;
use crate::k8s::keys::{self, Catalog, ObjectKey, Resource};
use crate::k8s::schema::{Schema, schema};
use crate::k8s::value::{self, Encoding};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The live keys of one snapshot file.
#[derive(Debug)]
pub struct Scan {
    pub path: PathBuf,
    /// The snapshot's revision.
    pub revision: i64,
    /// The Kubernetes etcd prefix found (`/registry`, `/kubernetes.io`), if any.
    pub prefix: Option<&'static str>,
    pub entries: BTreeMap<Vec<u8>, LiveDigest>,
    image_len: u64,
}

/// Read and check `path` (as `inspect` does) and collect its live keys. Refuses a damaged file.
pub fn scan(path: &Path, hashing: Hashing, prefix: Option<&str>) -> Result<Scan> {
    let mut v = LiveDigests::new(prefix.unwrap_or("").as_bytes());
    let report = inspect_file_with(path, hashing, &mut v)?;
    report.ensure_sound(path, "refusing to read Kubernetes objects from it")?;
    let entries = v.into_map();
    let found = match prefix {
        Some(p) => keys::KNOWN_PREFIXES.iter().find(|k| **k == p).copied(),
        None => keys::detect_prefix(entries.keys().map(Vec::as_slice)),
    };
    let file_size = report.file_size;
    Ok(Scan {
        path: path.to_owned(),
        revision: report.inspection.status.revision,
        prefix: found,
        entries,
        image_len: if etcddb::has_trailer(file_size) {
            file_size - TRAILER_LEN
        } else {
            file_size
        },
    })
}

impl Scan {
    /// The prefix to read objects under: the one asked for, else the one found.
    fn prefix<'a>(&'a self, asked: Option<&'a str>) -> Result<&'a str> {
        asked.or(self.prefix).ok_or_else(|| {
            Error::new(
                Kind::Usage,
                format!(
                    "{} holds no keys under /registry or /kubernetes.io, so no Kubernetes objects; \
                     if the apiserver ran with another --etcd-prefix, pass it with --etcd-prefix",
                    self.path.display()
                ),
            )
        })
    }

    /// The values of `keys` (live ones only), read in one walk of the file.
    pub fn values(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let mut at: HashMap<(i64, i64), Vec<u8>> = HashMap::new();
        for k in keys {
            if let Some(d) = self.entries.get(*k) {
                at.insert((d.key.mod_revision, d.key.sub_revision), k.to_vec());
            }
        }
        if at.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: HashSet<(i64, i64)> = at.keys().copied().collect();
        let file = File::open(&self.path).map_err(|e| {
            Error::new(
                Kind::Io,
                format!("cannot open {}: {e}", self.path.display()),
            )
        })?;
        let mut out = HashMap::new();
        etcddb::values_at(&file, self.image_len, &wanted, |rev, v| {
            if let Some(k) = at.get(&rev) {
                out.insert(k.clone(), v.to_vec());
            }
            Ok(())
        })
        .map_err(|e| bolt_error(&self.path, e))?
        .map_err(|m| Error::new(Kind::Io, m))?;
        Ok(out)
    }
}

/// Which namespaces to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    All,
    One(String),
}

impl Namespaces {
    /// Whether an object in `ns` (empty: cluster-scoped) is included. Cluster-scoped objects are
    /// always included, as kubectl ignores `-n` for them.
    fn admits(&self, ns: &str) -> bool {
        match self {
            Self::All => true,
            Self::One(want) => ns.is_empty() || ns == want,
        }
    }
}

/// The built-in resources plus the custom resources whose CRDs are in the snapshot.
pub fn catalog(
    scan: &Scan,
    keyring: &Keyring,
    prefix: Option<&str>,
) -> Result<(Catalog, Vec<String>)> {
    let mut cat = Catalog::builtin(schema());
    let mut warnings = Vec::new();
    let Ok(p) = scan.prefix(prefix) else {
        return Ok((cat, warnings));
    };
    let crd_prefix = format!("{p}/apiextensions.k8s.io/customresourcedefinitions/");
    let crd_keys: Vec<&[u8]> = scan
        .entries
        .range(crd_prefix.as_bytes().to_vec()..)
        .take_while(|(k, _)| k.starts_with(crd_prefix.as_bytes()))
        .map(|(k, _)| k.as_slice())
        .collect();
    let values = scan.values(&crd_keys)?;
    for k in crd_keys {
        match value::read(schema(), keyring, k, &values[k]) {
            Ok(o) => cat.add_crd(&Value::Object(o.object)),
            Err(e) => warnings.push(format!(
                "CRD {}: {e}; its custom resources are listed by RESOURCE.GROUP",
                String::from_utf8_lossy(k)
            )),
        }
    }
    Ok((cat, warnings))
}

/// One line of `k8s ls`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub kind: String,
    pub group: String,
    pub resource: String,
    pub name: String,
    pub key: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub encoding: String,
    /// Whether `k8s get` can decode it with what it was given.
    pub decodable: bool,
    pub size: u64,
}

/// `k8s ls`: objects by their keys; works on encrypted values without keys.
pub fn ls(
    scan: &Scan,
    cat: &Catalog,
    keyring: &Keyring,
    prefix: Option<&str>,
    ns: &Namespaces,
    only: Option<&[Resource]>,
) -> Result<Vec<Row>> {
    let p = scan.prefix(prefix)?;
    let s = schema();
    let mut rows = Vec::new();
    for (k, d) in &scan.entries {
        let Some(ok) = keys::parse_key(cat, p, k) else {
            continue;
        };
        if !ns.admits(&ok.namespace) || only.is_some_and(|o| !o.contains(&ok.resource)) {
            continue;
        }
        let enc = value::detect(&d.head);
        rows.push(Row {
            kind: kind_name(cat, &ok.resource, &enc),
            group: ok.resource.group.clone(),
            resource: ok.resource.resource.clone(),
            namespace: ok.namespace,
            name: ok.name,
            key: String::from_utf8_lossy(k).into_owned(),
            mod_revision: d.key.mod_revision,
            create_revision: d.key.create_revision,
            decodable: decodable(s, keyring, &enc),
            encoding: enc.to_string(),
            size: d.key.value_size,
        });
    }
    rows.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    Ok(rows)
}

fn kind_name(cat: &Catalog, r: &Resource, enc: &Encoding) -> String {
    match (cat.get(r), enc) {
        (_, Encoding::Protobuf { kind, .. }) if !kind.is_empty() => kind.clone(),
        (Some(i), _) => i.kind.clone(),
        (None, _) => r.to_string(),
    }
}

fn decodable(s: &Schema, keyring: &Keyring, enc: &Encoding) -> bool {
    match enc {
        Encoding::Protobuf { api_version, kind } => s.message_for(api_version, kind).is_some(),
        Encoding::Json | Encoding::Cbor => true,
        Encoding::Encrypted(e) => keyring.can_open(e),
        Encoding::Other => false,
    }
}

/// What `k8s get` reads.
#[derive(Debug, Clone)]
pub struct Selection {
    /// `None`: every resource (`all`).
    pub resources: Option<Vec<Resource>>,
    pub name: Option<String>,
    pub namespaces: Namespaces,
    /// `--raw`: as served (resourceVersion from the mod revision), nothing removed.
    pub raw: bool,
    /// Keep objects a controller owns (and, for `all`, events and leases).
    pub include_owned: bool,
}

/// One object `k8s get` produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Got {
    pub key: String,
    pub kind: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub mod_revision: i64,
    pub encoding: String,
    /// What apply-ready cleanup removed.
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub object: Map<String, Value>,
    #[serde(skip)]
    rank: u8,
}

impl Got {
    pub fn is_secret(&self) -> bool {
        self.group.is_empty() && self.resource == "secrets"
    }
}

/// An object left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Left {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct GetReport {
    /// In apply order.
    pub objects: Vec<Got>,
    /// Left out on purpose (owned by a controller, token Secrets, churn).
    pub skipped: Vec<Left>,
    /// Could not be read (no key, KMS, undecodable, not an object).
    pub failed: Vec<Left>,
}

/// `k8s get`.
pub fn get(
    scan: &Scan,
    cat: &Catalog,
    keyring: &Keyring,
    prefix: Option<&str>,
    sel: &Selection,
) -> Result<GetReport> {
    let p = scan.prefix(prefix)?;
    let mut chosen: Vec<(&[u8], ObjectKey)> = Vec::new();
    for k in scan.entries.keys() {
        let Some(ok) = keys::parse_key(cat, p, k) else {
            continue;
        };
        let wanted = match &sel.resources {
            Some(rs) => rs.contains(&ok.resource) && sel.namespaces.admits(&ok.namespace),
            // A namespace export: the namespace's objects and the Namespace itself.
            None => match &sel.namespaces {
                Namespaces::All => true,
                Namespaces::One(ns) => {
                    ok.namespace == *ns
                        || (ok.resource.group.is_empty()
                            && ok.resource.resource == "namespaces"
                            && ok.name == *ns)
                }
            },
        };
        if wanted && sel.name.as_ref().is_none_or(|n| *n == ok.name) {
            chosen.push((k.as_slice(), ok));
        }
    }
    let keys: Vec<&[u8]> = chosen.iter().map(|(k, _)| *k).collect();
    let values = scan.values(&keys)?;
    let mut report = GetReport::default();
    for (k, ok) in chosen {
        let key = String::from_utf8_lossy(k).into_owned();
        let d = &scan.entries[k];
        let mut obj = match value::read(schema(), keyring, k, &values[k]) {
            Ok(o) => o,
            Err(e) => {
                report.failed.push(Left {
                    key,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Some(reason) = leave_out(&ok, &obj.object, sel) {
            report.skipped.push(Left { key, reason });
            continue;
        }
        let (removed, mut warnings) = if sel.raw {
            clean::as_served(&mut obj.object, d.key.mod_revision);
            (Vec::new(), Vec::new())
        } else {
            clean::apply_ready(&mut obj.object)
        };
        warnings.extend(obj.warnings);
        report.objects.push(Got {
            kind: obj.object["kind"].as_str().unwrap_or_default().to_string(),
            rank: clean::apply_rank(&ok.resource.group, &ok.resource.resource),
            key,
            group: ok.resource.group,
            resource: ok.resource.resource,
            namespace: ok.namespace,
            name: ok.name,
            mod_revision: d.key.mod_revision,
            encoding: obj.encoding.to_string(),
            removed,
            warnings,
            object: obj.object,
        });
    }
    report.objects.sort_by(|a, b| {
        (a.rank, &a.namespace, &a.group, &a.resource, &a.name).cmp(&(
            b.rank,
            &b.namespace,
            &b.group,
            &b.resource,
            &b.name,
        ))
    });
    Ok(report)
}

/// Why an object is not part of a restore unless asked for by name or `--include-owned`.
fn leave_out(ok: &ObjectKey, obj: &Map<String, Value>, sel: &Selection) -> Option<String> {
    if sel.include_owned || sel.name.is_some() {
        return None;
    }
    if let Some(owner) = clean::controller_owner(obj) {
        return Some(format!("owned by {owner}, which re-creates it"));
    }
    if ok.resource.group.is_empty()
        && ok.resource.resource == "secrets"
        && obj.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token")
    {
        return Some("a service account token, which the cluster issues again".into());
    }
    if sel.resources.is_none() && is_churn(&ok.resource) {
        return Some("events and leases are rewritten by the cluster all the time".into());
    }
    if sel.resources.is_none()
        && ok.resource.group.is_empty()
        && ok.resource.resource == "endpoints"
        && obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get("endpointslice.kubernetes.io/skip-mirror"))
            .is_none()
    {
        return Some("endpoints are written by the endpoints controller from Services".into());
    }
    None
}

/// Objects the cluster rewrites all the time; left out of namespace exports and diffs.
fn is_churn(r: &Resource) -> bool {
    r.resource == "events" || (r.group == "coordination.k8s.io" && r.resource == "leases")
}

/// An object as YAML: keys sorted at every level, as `kubectl get -o yaml` prints them.
pub fn to_yaml(obj: &Map<String, Value>) -> String {
    serde_yaml_ng::to_string(&clean::sorted(&Value::Object(obj.clone())))
        .expect("JSON values serialise as YAML")
}

/// Write one 0600 file per object into a new directory `dir`, named
/// `NNN-<kind>-<namespace>-<name>.yaml` in apply order. The directory appears only complete.
pub fn write_objects(dir: &Path, objects: &[Got], json: bool) -> Result<Vec<PathBuf>> {
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "{} exists and is not an empty directory; choose a new --out",
                dir.display()
            ),
        ));
    }
    let name = dir
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let part = parent.join(format!(".{name}.part-{}", std::process::id()));
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::new(Kind::Io, format!("{what} {}: {e}", p.display()))
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&part)
            .map_err(|e| io("cannot create", &part, e))?;
    }
    let result = (|| {
        let mut files = Vec::new();
        let width = objects.len().to_string().len().max(3);
        for (i, o) in objects.iter().enumerate() {
            let ns = if o.namespace.is_empty() {
                "_cluster"
            } else {
                &o.namespace
            };
            let file = format!(
                "{:0width$}-{}-{}-{}.{}",
                i + 1,
                safe(&o.kind.to_lowercase()),
                safe(ns),
                safe(&o.name),
                if json { "json" } else { "yaml" }
            );
            let path = part.join(&file);
            let mut f =
                super::create_private_file(&path).map_err(|e| io("cannot create", &path, e))?;
            let body = if json {
                serde_json::to_string_pretty(&o.object).expect("json") + "\n"
            } else {
                to_yaml(&o.object)
            };
            f.write_all(body.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io("writing", &path, e))?;
            files.push(dir.join(file));
        }
        if dir.exists() {
            std::fs::remove_dir(dir)
                .map_err(|e| io("cannot replace the empty directory", dir, e))?;
        }
        std::fs::rename(&part, dir).map_err(|e| io("cannot rename the output to", dir, e))?;
        Ok(files)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&part);
    }
    result
}

/// A name usable in a file name: Kubernetes names are DNS-like, but keys are data.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

/// What `diff` compares.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Objects (decoded, classified) rather than keys (bytes).
    pub objects: bool,
    pub namespaces: Namespaces,
    pub only: Option<Vec<Resource>>,
    /// Keep events and leases.
    pub include_noise: bool,
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    pub key: String,
    /// `resource.group` (or the key's first segment when it is no object key).
    pub resource: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub change: Change,
    pub a_mod_revision: Option<i64>,
    pub b_mod_revision: Option<i64>,
    /// Paths that differ (objects), or why objects could not be compared.
    pub detail: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    pub a_revision: i64,
    pub b_revision: i64,
    pub entries: Vec<DiffEntry>,
    /// Events and leases not shown (without --include-noise).
    pub noise_hidden: u64,
}

/// `diff`: a merge of the two sorted key lists; objects are decoded only for keys whose bytes
/// differ.
pub fn diff(
    a: &Scan,
    b: &Scan,
    cat: &Catalog,
    keyring: &Keyring,
    prefix: Option<&str>,
    opts: &DiffOptions,
) -> Result<DiffReport> {
    let p = prefix.or(a.prefix).or(b.prefix);
    let mut entries = Vec::new();
    let mut noise_hidden = 0;
    fn digests(s: &Scan) -> impl Iterator<Item = (&[u8], u128)> {
        s.entries.iter().map(|(k, d)| (k.as_slice(), d.digest))
    }
    let mut changed_objects: Vec<usize> = Vec::new();
    diff::merge_keys(digests(a), digests(b), |k, change| {
        let parsed = p.and_then(|p| keys::parse_key(cat, p, k));
        let (resource, ns, name) = match &parsed {
            Some(ok) => (ok.resource.clone(), ok.namespace.clone(), ok.name.clone()),
            None if opts.objects => return,
            None => (
                Resource {
                    group: String::new(),
                    resource: String::new(),
                },
                String::new(),
                String::new(),
            ),
        };
        if parsed.is_some() {
            if !opts.namespaces.admits(&ns)
                || opts.only.as_ref().is_some_and(|o| !o.contains(&resource))
            {
                return;
            }
            if !opts.include_noise && is_churn(&resource) {
                noise_hidden += 1;
                return;
            }
        } else if opts.namespaces != Namespaces::All || opts.only.is_some() {
            return;
        }
        let ea = a.entries.get(k);
        let eb = b.entries.get(k);
        let enc = value::detect(eb.or(ea).map(|d| d.head.as_slice()).unwrap_or_default());
        if change == Change::Changed {
            changed_objects.push(entries.len());
        }
        entries.push(DiffEntry {
            key: String::from_utf8_lossy(k).into_owned(),
            kind: if parsed.is_some() {
                kind_name(cat, &resource, &enc)
            } else {
                String::new()
            },
            resource: if parsed.is_some() {
                resource.to_string()
            } else {
                String::new()
            },
            namespace: ns,
            name,
            change,
            a_mod_revision: ea.map(|d| d.key.mod_revision),
            b_mod_revision: eb.map(|d| d.key.mod_revision),
            detail: Vec::new(),
        });
    });
    // Re-encryption shows as a change of every value: say so.
    for e in &mut entries {
        let k = e.key.as_bytes();
        if let (Some(x), Some(y)) = (a.entries.get(k), b.entries.get(k))
            && let (Encoding::Encrypted(ex), Encoding::Encrypted(ey)) =
                (value::detect(&x.head), value::detect(&y.head))
            && ex != ey
        {
            e.detail.push(format!("re-encrypted: {ex} → {ey}"));
        }
    }
    if opts.objects && !changed_objects.is_empty() {
        let keys: Vec<&[u8]> = changed_objects
            .iter()
            .map(|&i| entries[i].key.as_bytes())
            .collect();
        let (va, vb) = (a.values(&keys)?, b.values(&keys)?);
        let s = schema();
        for &i in &changed_objects {
            let e = &mut entries[i];
            let k = e.key.as_bytes().to_vec();
            let ra = value::read(s, keyring, &k, &va[&k]);
            let rb = value::read(s, keyring, &k, &vb[&k]);
            match (ra, rb) {
                (Ok(x), Ok(y)) => {
                    e.change = diff::classify(&x.object, &y.object);
                    if matches!(e.change, Change::Modified | Change::StatusOnly) {
                        e.detail.extend(diff::changed_paths(
                            &diff::normalise(&x.object, true),
                            &diff::normalise(&y.object, true),
                            8,
                        ));
                    }
                }
                (Err(x), _) | (_, Err(x)) => e.detail.push(format!("cannot compare objects: {x}")),
            }
        }
        // Same object after normalisation (only resourceVersion or managedFields moved) is no
        // difference, unless it was re-encrypted, which an operator rotating keys wants to see.
        entries.retain(|e| e.change != Change::Unchanged || !e.detail.is_empty());
    }
    entries.sort_by(|x, y| {
        (&x.resource, &x.namespace, &x.name, &x.key).cmp(&(
            &y.resource,
            &y.namespace,
            &y.name,
            &y.key,
        ))
    });
    Ok(DiffReport {
        a_revision: a.revision,
        b_revision: b.revision,
        entries,
        noise_hidden,
    })
}
