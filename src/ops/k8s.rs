//! Kubernetes objects out of snapshot files: `lifeboat k8s ls`, `k8s get` and `diff`. One walk
//! of a file collects its live keys with digests (checking the file as `inspect` does); values
//! are then read only for the keys asked for, and decoded one at a time. Blocking: run off the
//! async runtime.

use super::inspect::{Hashing, bolt_error, inspect_file_with};
use super::io_err;
use crate::error::{Error, Kind, Result};
use crate::etcddb::{self, LiveDigest, LiveDigests, Partition};
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
    Ok(scan_with(path, hashing, prefix, |v| v)?.expect("no budget, so no overflow"))
}

/// [`scan`] with the collector set up by `tune` (a budget, a partition). `Ok(Err(n))`: the keys
/// did not fit the budget, and `n` partitions would.
pub fn scan_with(
    path: &Path,
    hashing: Hashing,
    prefix: Option<&str>,
    tune: impl FnOnce(LiveDigests) -> LiveDigests,
) -> Result<std::result::Result<Scan, u64>> {
    let mut v = tune(LiveDigests::new(
        prefix.unwrap_or("").as_bytes(),
        value::head_len,
    ));
    let report = inspect_file_with(path, hashing, &mut v)?;
    report.ensure_sound(path, "refusing to read Kubernetes objects from it")?;
    if let Some(n) = v.overflowed() {
        return Ok(Err(n));
    }
    let entries = v.into_map();
    let found = match prefix {
        Some(p) => keys::KNOWN_PREFIXES.iter().find(|k| **k == p).copied(),
        None => keys::detect_prefix(entries.keys().map(Vec::as_slice)),
    };
    Ok(Ok(Scan {
        path: path.to_owned(),
        revision: report.inspection.status.revision,
        prefix: found,
        entries,
        image_len: report.image_len(),
    }))
}

/// A snapshot read for the objects of one KIND (or all), with the catalog that names them.
#[derive(Debug)]
pub struct ForKind {
    pub scan: Scan,
    pub catalog: Catalog,
    /// The resources KIND names; `None`: every resource.
    pub resources: Option<Vec<Resource>>,
    /// What reading the CRDs found wrong.
    pub warnings: Vec<String>,
}

/// Read `src` for the objects of `kind` (`None` or `all`: every object). When the built-in
/// resources already say what `kind` names, only their keys, the namespaces' and the CRDs' are
/// held, so memory follows the selection rather than the whole cluster. The file is read again,
/// whole (its hash already checked), if the backup's CRDs make `kind` name something the
/// built-ins did not, or if nothing read told which etcd prefix the cluster uses. Refuses a
/// `kind` that names nothing.
pub fn read_for_kind(
    src: &Source,
    keyring: &Keyring,
    prefix: Option<&str>,
    kind: Option<&str>,
) -> Result<ForKind> {
    let kind = kind.filter(|k| *k != "all");
    let narrowed = kind
        .map(|k| Catalog::builtin(schema()).resolve(k))
        .filter(|r| !r.is_empty());
    let read = |hashing: Hashing, only: Option<&[Resource]>| -> Result<ForKind> {
        let only = only.map(|r| {
            keys::key_prefixes(&keys::etcd_prefixes(prefix), r)
                .into_iter()
                .map(String::into_bytes)
                .collect()
        });
        let scan = scan_with(&src.path, hashing, prefix, |v| match only {
            Some(o) => v.only(o),
            None => v,
        })?
        .expect("no budget, so no overflow");
        let (catalog, warnings) = catalog(&[&scan], keyring, prefix)?;
        let resources = kind.map(|k| resolve(&catalog, k)).transpose()?;
        Ok(ForKind {
            scan,
            catalog,
            resources,
            warnings,
        })
    };
    let Some(n) = narrowed else {
        return read(src.hashing, None);
    };
    let r = read(src.hashing, Some(&n))?;
    let covered = r.resources.iter().flatten().all(|x| keys::selects(&n, x));
    if covered && (prefix.is_some() || r.scan.prefix.is_some()) {
        return Ok(r);
    }
    read(Hashing::Skip, None)
}

/// The resources `kind` names in `cat`, as kubectl would resolve it; an error if none.
pub fn resolve(cat: &Catalog, kind: &str) -> Result<Vec<Resource>> {
    let r = cat.resolve(kind);
    if r.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "the backup has no resource type {kind:?}; use a kind as kubectl takes it (cm, \
                 configmap, Deployment, deployments.apps) or RESOURCE.GROUP for custom resources \
                 (see `lifeboat k8s ls`)"
            ),
        ));
    }
    Ok(r)
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
        let mut out = HashMap::new();
        self.values_each(keys, |k, v| {
            out.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    /// Hand `f` the value of each key, in the order given, reading the file once per batch of
    /// at most `budget` bytes of values (at least one value per batch): memory stays bounded
    /// whatever the selection, and a small selection costs one read.
    pub fn values_in_order(
        &self,
        keys: &[&[u8]],
        budget: u64,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        for batch in batches(keys, budget, |k| {
            self.entries.get(k).map_or(0, |d| d.key.value_size)
        }) {
            let values = self.values(batch)?;
            for k in batch {
                if let Some(v) = values.get(*k) {
                    f(k, v)?;
                }
            }
        }
        Ok(())
    }

    /// Hand `f` the value of each key in `keys`, in the file's revision order, in one walk and
    /// holding one value at a time.
    pub fn values_each(
        &self,
        keys: &[&[u8]],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut at: HashMap<(i64, i64), &[u8]> = HashMap::new();
        for k in keys {
            if let Some(d) = self.entries.get(*k) {
                at.insert((d.key.mod_revision, d.key.sub_revision), k);
            }
        }
        if at.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<(i64, i64)> = at.keys().copied().collect();
        let file = File::open(&self.path).map_err(|e| io_err(&self.path, "cannot open", e))?;
        let mut failed = None;
        etcddb::values_at(&file, self.image_len, &wanted, |rev, v| {
            if let Some(k) = at.get(&rev)
                && let Err(e) = f(k, v)
            {
                failed = Some(e);
                return Err("stopped".into());
            }
            Ok(())
        })
        .map_err(|e| bolt_error(&self.path, e))?
        .map_err(|m| failed.take().unwrap_or_else(|| Error::new(Kind::Io, m)))
    }
}

/// Bytes of values held at once by `get` and `diff` (per side).
pub const VALUE_BUDGET: u64 = 64 << 20;

/// Split `keys` into consecutive runs whose sizes add up to at most `budget` (a larger single
/// item gets a run of its own).
fn batches<'k>(
    keys: &'k [&'k [u8]],
    budget: u64,
    size: impl Fn(&[u8]) -> u64,
) -> Vec<&'k [&'k [u8]]> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0u64);
    for (i, k) in keys.iter().enumerate() {
        let n = size(k);
        if i > start && sum + n > budget {
            out.push(&keys[start..i]);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < keys.len() {
        out.push(&keys[start..]);
    }
    out
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

/// The built-in resources plus the custom resources whose CRDs are in the snapshots (a later
/// snapshot's CRD wins over an earlier one's).
pub fn catalog(
    scans: &[&Scan],
    keyring: &Keyring,
    prefix: Option<&str>,
) -> Result<(Catalog, Vec<String>)> {
    let mut cat = Catalog::builtin(schema());
    let mut warnings = Vec::new();
    for scan in scans {
        let Ok(p) = scan.prefix(prefix) else {
            continue;
        };
        let crd_prefix = keys::crd_prefix(p);
        let crd_keys: Vec<&[u8]> = scan
            .entries
            .range(crd_prefix.as_bytes().to_vec()..)
            .take_while(|(k, _)| k.starts_with(crd_prefix.as_bytes()))
            .map(|(k, _)| k.as_slice())
            .collect();
        scan.values_each(&crd_keys, |k, v| {
            match value::read(schema(), keyring, k, v) {
                Ok(o) => cat.add_crd(&Value::Object(o.object)),
                Err(e) => warnings.push(format!(
                    "CRD {}: {e}; its custom resources are listed by RESOURCE.GROUP",
                    String::from_utf8_lossy(k)
                )),
            }
            Ok(())
        })?;
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
        if !ns.admits(&ok.namespace) || only.is_some_and(|o| !keys::selects(o, &ok.resource)) {
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
    /// Objects handed to the sink.
    pub emitted: usize,
    /// Left out on purpose (owned by a controller, token Secrets, churn).
    pub skipped: Vec<Left>,
    /// Could not be read (no key, KMS, undecodable, not an object).
    pub failed: Vec<Left>,
}

/// `k8s get`: hands `sink` each object, in apply order (namespaces, CRDs, RBAC, configuration,
/// storage, services, workloads, custom resources), decoding one bounded batch at a time.
pub fn get(
    scan: &Scan,
    cat: &Catalog,
    keyring: &Keyring,
    prefix: Option<&str>,
    sel: &Selection,
    in_order: bool,
    mut sink: impl FnMut(usize, Got) -> Result<()>,
) -> Result<GetReport> {
    let p = scan.prefix(prefix)?;
    let mut chosen: Vec<(&[u8], ObjectKey)> = Vec::new();
    for k in scan.entries.keys() {
        let Some(ok) = keys::parse_key(cat, p, k) else {
            continue;
        };
        let wanted = match &sel.resources {
            Some(rs) => keys::selects(rs, &ok.resource) && sel.namespaces.admits(&ok.namespace),
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
    // The order is known from the keys alone, so values can be read in it batch by batch.
    chosen.sort_by(|(_, a), (_, b)| {
        let rank = |o: &ObjectKey| clean::apply_rank(&o.resource.group, &o.resource.resource);
        (rank(a), &a.namespace, &a.resource, &a.name).cmp(&(
            rank(b),
            &b.namespace,
            &b.resource,
            &b.name,
        ))
    });
    let order: Vec<&[u8]> = chosen.iter().map(|(k, _)| *k).collect();
    let parsed: HashMap<&[u8], (usize, &ObjectKey)> = chosen
        .iter()
        .enumerate()
        .map(|(i, (k, o))| (*k, (i, o)))
        .collect();
    let mut report = GetReport::default();
    let mut each = |k: &[u8], v: &[u8]| {
        let (index, ok) = parsed[k];
        let key = String::from_utf8_lossy(k).into_owned();
        let d = &scan.entries[k];
        let mut obj = match value::read(schema(), keyring, k, v) {
            Ok(o) => o,
            Err(e) => {
                report.failed.push(Left {
                    key,
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        if let Some(reason) = leave_out(ok, &obj.object, sel) {
            report.skipped.push(Left { key, reason });
            return Ok(());
        }
        let version_warning = clean::stored_version_warning(&obj.object);
        let (removed, mut warnings) = if sel.raw {
            clean::as_served(&mut obj.object, d.key.mod_revision);
            (Vec::new(), Vec::new())
        } else {
            clean::apply_ready(&mut obj.object)
        };
        warnings.extend(version_warning);
        warnings.extend(obj.warnings);
        report.emitted += 1;
        sink(
            index,
            Got {
                kind: obj.object["kind"].as_str().unwrap_or_default().to_string(),
                key,
                group: ok.resource.group.clone(),
                resource: ok.resource.resource.clone(),
                namespace: ok.namespace.clone(),
                name: ok.name.clone(),
                mod_revision: d.key.mod_revision,
                encoding: obj.encoding.to_string(),
                removed,
                warnings,
                object: obj.object,
            },
        )
    };
    // In apply order: bounded batches, one walk each. In any order (files named by their
    // place): one walk of the file.
    if in_order {
        scan.values_in_order(&order, VALUE_BUDGET, &mut each)?;
    } else {
        scan.values_each(&order, &mut each)?;
    }
    Ok(report)
}

/// Why an object is not part of a restore unless asked for by name or `--include-owned`.
fn leave_out(ok: &ObjectKey, obj: &Map<String, Value>, sel: &Selection) -> Option<String> {
    if sel.include_owned || sel.raw || sel.name.is_some() {
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

/// A new directory of one 0600 file per object, `NNN-<kind>-<namespace>-<name>.yaml` in apply
/// order, which appears under its name only when complete ([`super::StagedDir`]).
pub struct ObjectsDir {
    staged: super::StagedDir,
    json: bool,
    files: Vec<String>,
}

impl ObjectsDir {
    pub fn create(dir: &Path, json: bool) -> Result<Self> {
        Ok(Self {
            staged: super::StagedDir::create(dir)?,
            json,
            files: Vec::new(),
        })
    }

    /// Write `o`, whose place in apply order is `index` (objects may come in any order).
    pub fn write(&mut self, index: usize, o: &Got) -> Result<()> {
        let ns = if o.namespace.is_empty() {
            "_cluster"
        } else {
            &o.namespace
        };
        let file = format!(
            "{:09}-{}-{}-{}.{}",
            index,
            safe(&o.kind.to_lowercase()),
            safe(ns),
            safe(&o.name),
            if self.json { "json" } else { "yaml" }
        );
        let path = self.staged.path().join(&file);
        let mut f =
            super::create_private_file(&path).map_err(|e| io_err(&path, "cannot create", e))?;
        let body = if self.json {
            serde_json::to_string_pretty(&o.object).expect("json") + "\n"
        } else {
            crate::k8s::yaml::object_to_yaml(&o.object)
        };
        f.write_all(body.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err(&path, "writing", e))?;
        self.files.push(file);
        Ok(())
    }

    /// Number the files 001, 002, ... in apply order (objects left out leave no gap), move the
    /// finished directory into place, and return the files in order.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.files.sort();
        let width = self.files.len().to_string().len().max(3);
        let staging = self.staged.path().to_owned();
        let mut named = Vec::with_capacity(self.files.len());
        for (i, f) in self.files.iter().enumerate() {
            let rest = f.split_once('-').map_or("", |(_, r)| r);
            let new = format!("{:0width$}-{rest}", i + 1);
            std::fs::rename(staging.join(f), staging.join(&new))
                .map_err(|e| io_err(&staging.join(f), "cannot rename", e))?;
            named.push(new);
        }
        let dir = self.staged.commit()?;
        Ok(named.into_iter().map(|n| dir.join(n)).collect())
    }
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
    /// Partitions of the keyspace compared one after the other (1: all keys at once).
    pub partitions: u64,
}

/// Grouped by kind and namespace, then by name.
fn sort_entries(entries: &mut [DiffEntry]) {
    entries.sort_by(|x, y| {
        (&x.resource, &x.namespace, &x.name, &x.key).cmp(&(
            &y.resource,
            &y.namespace,
            &y.name,
            &y.key,
        ))
    });
}

/// A snapshot file to read, and whether its bytes were already hashed.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub hashing: Hashing,
}

/// `diff` of two files holding about `budget` bytes of key index per side at most (`k8s diff
/// --index-memory`). When both key lists fit, each file is read once more only for the values
/// that differ. When one does not, the keyspace is split by a hash of the key into as many
/// partitions as needed and each pair of partitions is compared in turn, reading both files
/// once per partition (after the first, checked, read). Every CRD is in partition 0, so the
/// catalog is complete before anything is compared. `options` makes the options once the
/// catalog and the Kubernetes prefix (given or found) are known. Also returns the catalog's
/// warnings.
pub fn diff_files(
    a: &Source,
    b: &Source,
    keyring: &Keyring,
    prefix: Option<&str>,
    budget: u64,
    options: impl FnOnce(&Catalog, Option<&str>) -> Result<DiffOptions>,
) -> Result<(DiffReport, Vec<String>)> {
    let pinned: Vec<Vec<u8>> = keys::etcd_prefixes(prefix)
        .into_iter()
        .map(|p| keys::crd_prefix(p).into_bytes())
        .collect();
    let part = |s: &Source, index: u64, count: u64| {
        let p = Partition {
            index,
            count,
            pinned: pinned.clone(),
        };
        // The first read checked the file (trailer, structure); this one only collects.
        Ok::<_, Error>(
            scan_with(&s.path, Hashing::Skip, prefix, |v| v.partition(p))?
                .expect("no budget, so no overflow"),
        )
    };
    let first = |s: &Source| scan_with(&s.path, s.hashing, prefix, |v| v.budget(budget));
    // Both key lists fit: one partition, already read. Otherwise partition 0 of as many as the
    // larger side needs, plus a quarter: partitions are only as even as the hash.
    let (a0, b0, parts) = match (first(a)?, first(b)?) {
        (Ok(sa), Ok(sb)) => (sa, sb, 1),
        (x, y) => {
            let n = |r: std::result::Result<Scan, u64>| r.err().unwrap_or(1);
            let parts = n(x).max(n(y)).saturating_mul(5).div_ceil(4);
            (part(a, 0, parts)?, part(b, 0, parts)?, parts)
        }
    };
    let (cat, warnings) = catalog(&[&a0, &b0], keyring, prefix)?;
    let p = prefix.or(a0.prefix).or(b0.prefix);
    let opts = options(&cat, p)?;
    let mut report = diff(&a0, &b0, &cat, keyring, p, &opts)?;
    drop((a0, b0));
    for i in 1..parts {
        let (ai, bi) = (part(a, i, parts)?, part(b, i, parts)?);
        let r = diff(&ai, &bi, &cat, keyring, p, &opts)?;
        report.entries.extend(r.entries);
        report.noise_hidden += r.noise_hidden;
    }
    if parts > 1 {
        sort_entries(&mut report.entries);
    }
    report.partitions = parts;
    Ok((report, warnings))
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
    // Entries whose bytes changed, by index, with their key as stored (entries hold it as text).
    let mut changed_objects: Vec<(usize, Vec<u8>)> = Vec::new();
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
                || opts
                    .only
                    .as_ref()
                    .is_some_and(|o| !keys::selects(o, &resource))
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
        let mut detail = Vec::new();
        // Re-encryption shows as a change of every value: say so.
        if let (Some(x), Some(_)) = (ea, eb)
            && let (Encoding::Encrypted(ex), Encoding::Encrypted(ey)) =
                (value::detect(&x.head), &enc)
            && ex != *ey
        {
            detail.push(format!("re-encrypted: {ex} → {ey}"));
        }
        if change == Change::Changed && parsed.is_some() {
            changed_objects.push((entries.len(), k.to_vec()));
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
            detail,
        });
    });
    if opts.objects && !changed_objects.is_empty() {
        let key_refs: Vec<&[u8]> = changed_objects.iter().map(|(_, k)| k.as_slice()).collect();
        let at: HashMap<&[u8], usize> = changed_objects
            .iter()
            .map(|(i, k)| (k.as_slice(), *i))
            .collect();
        let size = |k: &[u8]| {
            let s = |x: &Scan| x.entries.get(k).map_or(0, |d| d.key.value_size);
            s(a).max(s(b))
        };
        let s = schema();
        for batch in batches(&key_refs, VALUE_BUDGET, size) {
            let (va, vb) = (a.values(batch)?, b.values(batch)?);
            for k in batch {
                let e = &mut entries[at[k]];
                let (Some(x), Some(y)) = (va.get(*k), vb.get(*k)) else {
                    continue;
                };
                match (value::read(s, keyring, k, x), value::read(s, keyring, k, y)) {
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
                    (Err(x), _) | (_, Err(x)) => {
                        e.detail.push(format!("cannot compare objects: {x}"))
                    }
                }
            }
        }
        // Same object after normalisation (only resourceVersion or managedFields moved) is no
        // difference, unless it was re-encrypted, which an operator rotating keys wants to see.
        entries.retain(|e| e.change != Change::Unchanged || !e.detail.is_empty());
    }
    sort_entries(&mut entries);
    Ok(DiffReport {
        a_revision: a.revision,
        b_revision: b.revision,
        entries,
        noise_hidden,
        partitions: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_budget_and_keep_order() {
        let keys: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e"];
        let size = |k: &[u8]| match k {
            b"c" => 100, // larger than the budget: a batch of its own
            _ => 4,
        };
        let got: Vec<Vec<&[u8]>> = batches(&keys, 10, size)
            .into_iter()
            .map(<[_]>::to_vec)
            .collect();
        assert_eq!(
            got,
            vec![vec![&b"a"[..], b"b"], vec![b"c"], vec![b"d", b"e"]]
        );
        assert!(batches(&[], 10, size).is_empty());
    }
}
