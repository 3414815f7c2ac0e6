//! What an etcd backend database holds, computed exactly as `etcdutl snapshot status` does
//! (hash, revision, total keys in both the 3.4/3.5 and the 3.6 meaning, total size, storage
//! version), plus the live keys themselves. Pure: everything runs over [`crate::bbolt`].

pub mod kv;

use crate::bbolt::{self, BoltError, Db, Item, ReadAt, Report, Visitor};
pub use kv::{KeyValue, RevKey};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Trailer detection exactly as etcd: a snapshot file ends with a 32-byte SHA-256 of the
/// database iff its size is 32 more than a multiple of 512 (pages are multiples of 512).
pub fn has_trailer(file_size: u64) -> bool {
    file_size % 512 == 32
}

/// Length of etcd's SHA-256 trailer.
pub const TRAILER_LEN: u64 = 32;

/// `snapshot status`, with lifeboat's extra fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// CRC-32C over every top-level bucket name, key and value, in order.
    pub hash: u32,
    /// Main revision of the last entry of bucket `key` (0 when empty).
    pub revision: i64,
    /// etcd 3.4/3.5 `totalKey`: entries in all top-level buckets.
    pub total_key: u64,
    /// etcd 3.6 `totalKey`: distinct live user keys at `revision`.
    pub live_keys: u64,
    /// `meta.pgid * pageSize`: the database image size, trailer excluded.
    pub total_size: u64,
    /// `meta/storageVersion` (written by etcd 3.6+), when present.
    pub storage_version: Option<String>,
    /// `cluster/clusterVersion`, when present.
    pub cluster_version: Option<String>,
    /// `meta/consistent_index`, when present.
    pub consistent_index: Option<u64>,
    /// `meta/term` (3.5+), when present.
    pub term: Option<u64>,
    /// Main revision of `meta/finishedCompactRev`, when present.
    pub compact_revision: Option<i64>,
    /// Main revision of `meta/scheduledCompactRev`, when present.
    pub scheduled_compact_revision: Option<i64>,
    /// Entries (revisions) in bucket `key`, tombstones included.
    pub key_entries: u64,
    /// Top-level buckets and their entry counts, in order.
    pub buckets: Vec<(String, u64)>,
}

impl Status {
    /// The newest revision the database proves it has seen: its last revision, or a later
    /// compaction (which removes trailing tombstones, and with them the last revisions). etcd
    /// starts at revision 1 with an empty `key` bucket.
    pub fn revision_floor(&self) -> i64 {
        self.revision
            .max(1)
            .max(self.compact_revision.unwrap_or(0))
            .max(self.scheduled_compact_revision.unwrap_or(0))
    }
}

/// The result of reading a whole database.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Meta page in use (0 or 1) and its transaction id.
    pub meta_page: u64,
    pub txid: u64,
    pub page_size: u64,
    /// Structural check and counters.
    pub check: Report,
    /// Status; meaningful only when the check passed and `errors` is empty.
    pub status: Status,
    /// Content errors (not an etcd database, malformed revision keys or values).
    pub errors: Vec<String>,
}

impl Inspection {
    /// Whether the database passed every check.
    pub fn is_ok(&self) -> bool {
        self.check.is_ok() && self.errors.is_empty()
    }

    /// Every problem, structural first, as one message per line.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.check.problems.iter().map(|p| p.to_string()).collect();
        let hidden = self.check.problem_count - self.check.problems.len() as u64;
        if hidden > 0 {
            out.push(format!("... and {hidden} more structural problems"));
        }
        out.extend(self.errors.iter().cloned());
        out
    }
}

/// Cap on content errors kept (counted beyond it).
const MAX_ERRORS: usize = 20;

struct StatusVisitor {
    crc: u32,
    bucket: Vec<u8>,
    live: HashSet<u128>,
    st: Status,
    errors: Vec<String>,
    error_count: u64,
}

impl StatusVisitor {
    fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    fn key_entry(&mut self, k: &[u8], v: &[u8]) {
        self.st.key_entries += 1;
        let rev = match RevKey::parse(k) {
            Ok(r) => r,
            Err(e) => return self.error(format!("bucket \"key\": {e}")),
        };
        self.st.revision = rev.main;
        match KeyValue::parse(v) {
            // 128-bit fingerprints instead of the keys keep memory small on large databases;
            // a collision needs ~2^64 keys.
            Ok(kv) => {
                let f = xxhash_rust::xxh3::xxh3_128(kv.key);
                if rev.tombstone {
                    self.live.remove(&f);
                } else {
                    self.live.insert(f);
                }
            }
            Err(e) => self.error(format!(
                "bucket \"key\": revision {}/{}: value is not an mvccpb.KeyValue: {e}",
                rev.main, rev.sub
            )),
        }
    }

    fn meta_entry(&mut self, k: &[u8], v: &[u8]) {
        let be = |v: &[u8]| v.try_into().ok().map(u64::from_be_bytes);
        match k {
            b"storageVersion" => self.st.storage_version = Some(String::from_utf8_lossy(v).into()),
            b"consistent_index" => self.st.consistent_index = be(v),
            b"term" => self.st.term = be(v),
            b"finishedCompactRev" => {
                self.st.compact_revision = RevKey::parse(v).ok().map(|r| r.main)
            }
            _ => {}
        }
    }
}

impl Visitor for StatusVisitor {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        match (depth, item) {
            (0, Item::Bucket) => {
                self.crc = crc32c::crc32c_append(self.crc, key);
                self.bucket.clear();
                self.bucket.extend_from_slice(key);
                self.st
                    .buckets
                    .push((String::from_utf8_lossy(key).into_owned(), 0));
            }
            (0, Item::Value(_)) => self.error(format!(
                "top-level entry {} is not a bucket; this is not an etcd database",
                bbolt::show(key)
            )),
            (1, item) => {
                self.crc = crc32c::crc32c_append(self.crc, key);
                if let Item::Value(v) = item {
                    self.crc = crc32c::crc32c_append(self.crc, v);
                }
                self.st.total_key += 1;
                if let Some(b) = self.st.buckets.last_mut() {
                    b.1 += 1;
                }
                match (self.bucket.as_slice(), item) {
                    (b"key", Item::Value(v)) => self.key_entry(key, v),
                    (b"key", Item::Bucket) => self.error(format!(
                        "bucket \"key\" holds a nested bucket {}",
                        bbolt::show(key)
                    )),
                    (b"meta", Item::Value(v)) => self.meta_entry(key, v),
                    (b"cluster", Item::Value(v)) if key == b"clusterVersion" => {
                        self.st.cluster_version = Some(String::from_utf8_lossy(v).into())
                    }
                    _ => {}
                }
            }
            _ => {} // nested buckets' contents are checked but not hashed, as in etcd
        }
    }
}

/// Open, check and compute the status of the database in the first `len` bytes of `src`.
pub fn inspect<R: ReadAt + ?Sized>(src: &R, len: u64) -> Result<Inspection, BoltError> {
    inspect_with(src, len, &mut ())
}

/// [`inspect`], with `extra` visiting the same walk (e.g. [`LiveKeys`]).
pub fn inspect_with<R: ReadAt + ?Sized, V: Visitor>(
    src: &R,
    len: u64,
    extra: &mut V,
) -> Result<Inspection, BoltError> {
    let db = Db::open(src, len)?;
    let mut v = StatusVisitor {
        crc: 0,
        bucket: Vec::new(),
        live: HashSet::new(),
        st: Status::default(),
        errors: Vec::new(),
        error_count: 0,
    };
    let check = bbolt::walk(&db, &mut (&mut v, extra))?;
    v.st.hash = v.crc;
    v.st.live_keys = v.live.len() as u64;
    v.st.total_size = db.size();
    if !v.st.buckets.iter().any(|(n, _)| n == "key") && check.is_ok() {
        v.error("no bucket \"key\": this bbolt file is not an etcd database".into());
    }
    if v.error_count > v.errors.len() as u64 {
        let more = v.error_count - v.errors.len() as u64;
        v.errors.push(format!("... and {more} more content errors"));
    }
    Ok(Inspection {
        meta_page: db.meta_page(),
        txid: db.meta().txid,
        page_size: db.page_size(),
        check,
        status: v.st,
        errors: v.errors,
    })
}

/// A live key at the database's last revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveKey {
    /// The key, as stored (bytes; may not be UTF-8).
    #[serde(skip)]
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// Sub revision of the put within its transaction (locates the value).
    #[serde(skip)]
    pub sub_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value_size: u64,
}

/// Follows a walk into the `key` bucket and yields its well-formed entries under a prefix:
/// what every live-key collector shares. Damaged entries are skipped here; the status pass of the
/// same walk reports them.
#[derive(Debug, Default)]
struct KeyBucket {
    prefix: Vec<u8>,
    in_key: bool,
}

impl KeyBucket {
    fn entry<'v>(
        &mut self,
        depth: usize,
        key: &[u8],
        item: Item<'v>,
    ) -> Option<(RevKey, KeyValue<'v>)> {
        match (depth, item) {
            (0, _) => {
                self.in_key = key == b"key";
                None
            }
            (1, Item::Value(v)) if self.in_key => {
                let (Ok(rev), Ok(kv)) = (RevKey::parse(key), KeyValue::parse(v)) else {
                    return None;
                };
                kv.key.starts_with(&self.prefix).then_some((rev, kv))
            }
            _ => None,
        }
    }
}

impl LiveKey {
    /// The key as of the put at `rev`; `key` is left empty unless `with_key`.
    fn of(rev: &RevKey, kv: &KeyValue<'_>, with_key: bool) -> Self {
        Self {
            key: if with_key {
                kv.key.to_vec()
            } else {
                Vec::new()
            },
            create_revision: kv.create_revision,
            mod_revision: rev.main,
            sub_revision: rev.sub,
            version: kv.version,
            lease: kv.lease,
            value_size: kv.value.len() as u64,
        }
    }
}

/// Collects the live keys under a prefix, at the database's last revision. Memory grows with
/// the number of matching keys.
#[derive(Debug, Default)]
pub struct LiveKeys {
    bucket: KeyBucket,
    keys: BTreeMap<Vec<u8>, LiveKey>,
}

impl LiveKeys {
    /// Keys starting with `prefix` (empty: all keys).
    pub fn new(prefix: &[u8]) -> Self {
        Self {
            bucket: KeyBucket {
                prefix: prefix.to_vec(),
                in_key: false,
            },
            keys: BTreeMap::new(),
        }
    }

    /// The keys, sorted.
    pub fn into_keys(self) -> Vec<LiveKey> {
        self.keys.into_values().collect()
    }
}

impl Visitor for LiveKeys {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        if let Some((rev, kv)) = self.bucket.entry(depth, key, item) {
            if rev.tombstone {
                self.keys.remove(kv.key);
            } else {
                self.keys
                    .insert(kv.key.to_vec(), LiveKey::of(&rev, &kv, true));
            }
        }
    }
}

/// A live key with a digest of its value and its first bytes: enough to list, classify and
/// compare values without holding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDigest {
    pub key: LiveKey,
    /// xxh3-128 of the value.
    pub digest: u128,
    /// The value's first bytes, as many as the collector's `head` function asked for.
    pub head: Vec<u8>,
}

/// Collects [`LiveDigest`]s under a prefix at the database's last revision. Memory grows with
/// the number of matching keys (the key, about 100 bytes and the head each), never with value
/// sizes. The key is held once, as the map's key ([`LiveDigest::key`]'s `key` is empty).
///
/// To bound that memory, a collector can be given a budget (it then gives up once the keys it
/// holds would exceed it, and says how many partitions would fit) and a partition (it keeps
/// only the keys that hash into it), so that a caller can read the file once per partition.
#[derive(Debug)]
pub struct LiveDigests {
    bucket: KeyBucket,
    head: fn(&[u8]) -> usize,
    keys: BTreeMap<Vec<u8>, LiveDigest>,
    partition: Option<Partition>,
    /// Keep only keys under one of these (empty: no such restriction).
    only: Vec<Vec<u8>>,
    budget: Option<u64>,
    /// Estimated bytes held by `keys`.
    held: u64,
    /// Puts seen (in the partition), whether held or not: an upper bound on live keys.
    puts: u64,
    /// Once the budget was exceeded (`keys` dropped, nothing more kept): `held` and `puts`
    /// then, which give the average size of an entry.
    overflow: Option<(u64, u64)>,
}

/// One of `count` disjoint parts of the keyspace, by a hash of the key; keys under a pinned
/// prefix all go to part 0 (so a caller finds every one of them in one pass).
#[derive(Debug, Clone)]
pub struct Partition {
    pub index: u64,
    pub count: u64,
    pub pinned: Vec<Vec<u8>>,
}

impl Partition {
    pub fn holds(&self, key: &[u8]) -> bool {
        let part = if self.pinned.iter().any(|p| key.starts_with(p)) {
            0
        } else {
            xxhash_rust::xxh3::xxh3_64(key) % self.count.max(1)
        };
        part == self.index
    }
}

/// Bytes a held entry costs beyond its key and head: the map's node share (nodes are partly
/// empty), the digest, the revisions, the vectors' headers and two allocations. Measured with
/// `bench/k8s.sh`: about 320 bytes an entry in all with 38-byte keys and 21-byte heads.
const ENTRY_OVERHEAD: u64 = 256;

impl LiveDigests {
    /// Keys under `prefix`; `head(value)` says how many leading bytes of each value to keep.
    pub fn new(prefix: &[u8], head: fn(&[u8]) -> usize) -> Self {
        Self {
            bucket: KeyBucket {
                prefix: prefix.to_vec(),
                in_key: false,
            },
            head,
            keys: BTreeMap::new(),
            partition: None,
            only: Vec::new(),
            budget: None,
            held: 0,
            puts: 0,
            overflow: None,
        }
    }

    /// Keep only the keys of `p`.
    pub fn partition(mut self, p: Partition) -> Self {
        self.partition = Some(p);
        self
    }

    /// Keep only the keys under one of `prefixes` (none: every key under the collector's
    /// prefix), so that memory follows what a caller asked for.
    pub fn only(mut self, prefixes: Vec<Vec<u8>>) -> Self {
        self.only = prefixes;
        self
    }

    /// Give up once the keys held would take more than about `bytes`.
    pub fn budget(mut self, bytes: u64) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// When the budget was exceeded: into how many partitions the keys should be split so that
    /// each fits (estimated from the puts seen and the size of the entries held until then).
    pub fn overflowed(&self) -> Option<u64> {
        let (held, puts) = self.overflow?;
        let per_put = held.div_ceil(puts.max(1)).max(ENTRY_OVERHEAD);
        let budget = self.budget.unwrap_or(1).max(1);
        Some(self.puts.saturating_mul(per_put).div_ceil(budget).max(2))
    }

    /// The keys, sorted.
    pub fn into_map(self) -> BTreeMap<Vec<u8>, LiveDigest> {
        self.keys
    }
}

impl Visitor for LiveDigests {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        let Some((rev, kv)) = self.bucket.entry(depth, key, item) else {
            return;
        };
        if self.partition.as_ref().is_some_and(|p| !p.holds(kv.key))
            || (!self.only.is_empty() && !self.only.iter().any(|p| kv.key.starts_with(p)))
        {
            return;
        }
        if !rev.tombstone {
            self.puts += 1;
        }
        if self.overflow.is_some() {
            return;
        }
        let size = |k: &[u8], d: &LiveDigest| (k.len() + d.head.len()) as u64 + ENTRY_OVERHEAD;
        if rev.tombstone {
            if let Some(old) = self.keys.remove(kv.key) {
                self.held -= size(kv.key, &old);
            }
            return;
        }
        let head = (self.head)(kv.value).min(kv.value.len());
        let d = LiveDigest {
            key: LiveKey::of(&rev, &kv, false),
            digest: xxhash_rust::xxh3::xxh3_128(kv.value),
            head: kv.value[..head].to_vec(),
        };
        self.held += size(kv.key, &d);
        if let Some(old) = self.keys.insert(kv.key.to_vec(), d) {
            self.held -= size(kv.key, &old);
        }
        if self.budget.is_some_and(|b| self.held > b) {
            self.overflow = Some((self.held, self.puts));
            self.keys = BTreeMap::new();
        }
    }
}

struct ValuesVisitor<'w, F> {
    wanted: &'w HashSet<(i64, i64)>,
    bucket: KeyBucket,
    sink: F,
    failed: Option<String>,
}

impl<F: FnMut((i64, i64), &[u8]) -> Result<(), String>> Visitor for ValuesVisitor<'_, F> {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        if let Some((rev, kv)) = self.bucket.entry(depth, key, item) {
            let at = (rev.main, rev.sub);
            if self.failed.is_none()
                && !rev.tombstone
                && self.wanted.contains(&at)
                && let Err(e) = (self.sink)(at, kv.value)
            {
                self.failed = Some(e);
            }
        }
    }
}

/// Hand `sink` each put at the given `(main, sub)` revisions with its value, in revision order.
pub fn values_at<R: ReadAt + ?Sized>(
    src: &R,
    len: u64,
    wanted: &HashSet<(i64, i64)>,
    sink: impl FnMut((i64, i64), &[u8]) -> Result<(), String>,
) -> Result<Result<(), String>, BoltError> {
    let db = Db::open(src, len)?;
    let mut v = ValuesVisitor {
        wanted,
        bucket: KeyBucket::default(),
        sink,
        failed: None,
    };
    bbolt::walk(&db, &mut v)?;
    Ok(v.failed.map_or(Ok(()), Err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Feed `v` a `key` bucket holding `ops` in revision order: `Some(value)` puts, `None`
    /// deletes.
    fn feed(v: &mut impl Visitor, ops: &[(&str, Option<&str>)]) {
        v.entry(0, b"key", Item::Bucket);
        for (i, (k, val)) in ops.iter().enumerate() {
            let mut rev = (i as u64 + 2).to_be_bytes().to_vec();
            rev.push(b'_');
            rev.extend_from_slice(&0u64.to_be_bytes());
            let mut kv = vec![0x0a];
            varint(k.len() as u64, &mut kv);
            kv.extend_from_slice(k.as_bytes());
            for (tag, n) in [(0x10, 2), (0x18, i as u64 + 2), (0x20, 1)] {
                kv.push(tag);
                varint(n, &mut kv);
            }
            match val {
                Some(val) => {
                    kv.push(0x2a);
                    varint(val.len() as u64, &mut kv);
                    kv.extend_from_slice(val.as_bytes());
                }
                None => rev.push(b't'),
            }
            v.entry(1, &rev, Item::Value(&kv));
        }
        v.entry(0, b"meta", Item::Bucket);
    }

    fn ops() -> Vec<(String, Option<String>)> {
        let mut ops = Vec::new();
        for i in 0..300 {
            ops.push((format!("/r/cm/ns/{i:03}"), Some(format!("v{i}"))));
            ops.push((format!("/r/crd/{i:03}"), Some("crd".into())));
        }
        for i in (0..300).step_by(7) {
            ops.push((format!("/r/cm/ns/{i:03}"), None));
        }
        for i in (0..300).step_by(5) {
            ops.push((format!("/r/cm/ns/{i:03}"), Some("again".into())));
        }
        ops
    }

    fn collect(v: LiveDigests) -> LiveDigests {
        let owned = ops();
        let borrowed: Vec<(&str, Option<&str>)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let mut v = v;
        feed(&mut v, &borrowed);
        v
    }

    #[test]
    fn partitions_split_the_live_keys_exactly_and_pinned_keys_stay_together() {
        let all = collect(LiveDigests::new(b"/r/", |_| 2)).into_map();
        // Deleted keys are gone, re-created ones are back with their last value.
        assert!(!all.contains_key(b"/r/cm/ns/007".as_slice()));
        assert_eq!(all[b"/r/cm/ns/035".as_slice()].head, b"ag");
        assert_eq!(all.len(), 600 - 43 + 9);
        let n = 5;
        let mut union = BTreeMap::new();
        for index in 0..n {
            let p = Partition {
                index,
                count: n,
                pinned: vec![b"/r/crd/".to_vec()],
            };
            let part = collect(LiveDigests::new(b"/r/", |_| 2).partition(p)).into_map();
            let crds = part.keys().filter(|k| k.starts_with(b"/r/crd/")).count();
            assert_eq!(crds, if index == 0 { 300 } else { 0 });
            assert!(part.len() > 40, "partition {index} holds {}", part.len());
            for (k, d) in part {
                assert!(union.insert(k, d).is_none(), "a key in two partitions");
            }
        }
        assert_eq!(union, all);
    }

    #[test]
    fn only_keeps_the_keys_under_its_prefixes_exactly() {
        let all = collect(LiveDigests::new(b"/r/", |_| 2)).into_map();
        let crds = collect(LiveDigests::new(b"/r/", |_| 2).only(vec![b"/r/crd/".to_vec()]));
        let want: BTreeMap<_, _> = all
            .iter()
            .filter(|(k, _)| k.starts_with(b"/r/crd/"))
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        assert_eq!(crds.into_map(), want);
        let both = vec![b"/r/crd/".to_vec(), b"/r/cm/".to_vec()];
        assert_eq!(
            collect(LiveDigests::new(b"/r/", |_| 2).only(both)).into_map(),
            all
        );
    }

    #[test]
    fn a_budget_says_how_many_partitions_fit() {
        let roomy = collect(LiveDigests::new(b"/r/", |_| 2).budget(1 << 20));
        assert_eq!(roomy.overflowed(), None);
        assert_eq!(roomy.into_map().len(), 566);
        let tight = collect(LiveDigests::new(b"/r/", |_| 2).budget(16 << 10));
        let n = tight.overflowed().expect("overflowed");
        // 660 puts of about 270 bytes in 16 KiB pieces.
        assert!((9..=14).contains(&n), "{n} partitions");
        assert!(tight.into_map().is_empty());
    }
}
