//! One pass over every reachable page: bbolt's `tx.Check()` (bounds, double references, page
//! types, key order, freelist consistency) and an in-order visit of every entry of every bucket,
//! so status and check cost one read of the file. Damage is collected, not fatal: the walk skips
//! the damaged subtree and goes on, so an operator sees every problem at once.

use super::{
    BoltError, Db, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, LEAF_BUCKET, NO_FREELIST, Node, Problem,
    ReadAt, type_name, u64_at,
};

/// An entry as seen by a [`Visitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A plain value.
    Value(&'a [u8]),
    /// A nested bucket; its entries follow at `depth + 1`.
    Bucket,
}

/// Receives every entry in order: the root bucket's entries at depth 0 (for etcd, the bucket
/// names), each followed by that bucket's entries at depth 1, and so on.
pub trait Visitor {
    /// One entry of a bucket at `depth`.
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>);
}

/// Visits nothing (for walks that only check).
impl Visitor for () {
    fn entry(&mut self, _: usize, _: &[u8], _: Item<'_>) {}
}

impl<V: Visitor + ?Sized> Visitor for &mut V {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        (**self).entry(depth, key, item);
    }
}

/// Two visitors sharing one walk.
impl<A: Visitor, B: Visitor> Visitor for (A, B) {
    fn entry(&mut self, depth: usize, key: &[u8], item: Item<'_>) {
        self.0.entry(depth, key, item);
        self.1.entry(depth, key, item);
    }
}

/// Counters from the walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Branch pages reached (overflow pages not counted).
    pub branch_pages: u64,
    /// Leaf pages reached.
    pub leaf_pages: u64,
    /// Overflow pages belonging to reached pages.
    pub overflow_pages: u64,
    /// Buckets below the root, inline or not.
    pub buckets: u64,
    /// Of those, inline buckets.
    pub inline_buckets: u64,
    /// Entries in all buckets, including the root bucket's.
    pub entries: u64,
    /// Pages below the high-water mark not reached (free pages).
    pub free_pages: u64,
}

/// The outcome of a walk.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The first problems found (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// All problems found, including those not kept.
    pub problem_count: u64,
    /// Counters.
    pub stats: Stats,
}

impl Report {
    /// Whether the database passed the check.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }
}

/// Problems kept in a report; the rest are only counted.
pub const MAX_PROBLEMS: usize = 100;
/// Recursion limit (tree levels plus bucket nesting); a real tree is a handful of levels deep.
const MAX_DEPTH: usize = 64;

struct Bits(Vec<u64>);
impl Bits {
    fn new(n: u64) -> Self {
        Self(vec![0; n.div_ceil(64) as usize])
    }
    fn get(&self, i: u64) -> bool {
        self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: u64) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
}

struct Walker<'d, 's, R: ReadAt + ?Sized, V> {
    db: &'d Db<'s, R>,
    visitor: &'d mut V,
    reachable: Bits,
    /// Pages listed in a persisted freelist, if there is one.
    freed: Option<Bits>,
    report: Report,
}

/// Check the whole database and visit every entry. Only a failed read is an `Err`; damage ends
/// up in the report (and the visitor may have seen entries of a damaged tree).
pub fn walk<R: ReadAt + ?Sized, V: Visitor>(
    db: &Db<'_, R>,
    visitor: &mut V,
) -> Result<Report, BoltError> {
    let hwm = db.meta().pgid;
    let mut w = Walker {
        db,
        visitor,
        reachable: Bits::new(hwm),
        freed: None,
        report: Report::default(),
    };
    w.reachable.set(0);
    w.reachable.set(1);
    match db.other_meta() {
        Ok(other) if other.pgid > hwm => {
            // A snapshot's two metas describe the same tree; a data-dir copy's older meta can
            // only be smaller.
            let p = 1 - db.meta_page();
            w.problem(Problem::at(
                p,
                format!(
                    "older meta has high-water mark {} above the newer {hwm}",
                    other.pgid
                ),
            ));
        }
        Ok(_) => {}
        Err(why) => w.problem(Problem::at(
            1 - db.meta_page(),
            format!("invalid meta page: {why}"),
        )),
    }
    let freelist = db.meta().freelist;
    if freelist != NO_FREELIST {
        w.load_freelist(freelist)?;
    }
    w.bucket_tree(db.meta().root, 0, 0)?;
    for id in 2..hwm {
        let reached = w.reachable.get(id);
        match &w.freed {
            Some(freed) if !reached && !freed.get(id) => {
                w.problem(Problem::at(id, "unreachable unfreed"));
            }
            _ => {}
        }
        if !reached {
            w.report.stats.free_pages += 1;
        }
    }
    Ok(w.report)
}

impl<R: ReadAt + ?Sized, V: Visitor> Walker<'_, '_, R, V> {
    fn problem(&mut self, p: Problem) {
        self.report.problem_count += 1;
        if self.report.problems.len() < super::walk::MAX_PROBLEMS {
            self.report.problems.push(p);
        }
    }

    /// Record damage; pass read failures up.
    fn fault(&mut self, f: Result<Problem, BoltError>) -> Result<(), BoltError> {
        f.map(|p| self.problem(p))
    }

    fn load_freelist(&mut self, id: u64) -> Result<(), BoltError> {
        let page = match self.db.page(id) {
            Ok(p) => p,
            Err(f) => return self.fault(f),
        };
        for i in id..=id + u64::from(page.overflow) {
            self.reachable.set(i);
        }
        if page.flags != FLAG_FREELIST {
            self.problem(Problem::at(
                id,
                format!(
                    "invalid type: {} (expected freelist)",
                    type_name(page.flags)
                ),
            ));
            return Ok(());
        }
        let (mut start, count) = if page.count == u16::MAX {
            if page.data.len() < 24 {
                self.problem(Problem::at(id, "freelist count missing"));
                return Ok(());
            }
            (24u64, u64_at(&page.data, 16))
        } else {
            (16u64, u64::from(page.count))
        };
        let room = (page.data.len() as u64 - start) / 8;
        if count > room {
            self.problem(Problem::at(
                id,
                format!("freelist claims {count} ids but the page holds at most {room}"),
            ));
            return Ok(());
        }
        let hwm = self.db.meta().pgid;
        let mut freed = Bits::new(hwm);
        for _ in 0..count {
            let f = u64_at(&page.data, start as usize);
            start += 8;
            if f < 2 || f >= hwm {
                self.problem(Problem::at(f, format!("freed page out of bounds: {hwm}")));
            } else if freed.get(f) {
                self.problem(Problem::at(f, "already freed"));
            } else {
                freed.set(f);
            }
        }
        self.freed = Some(freed);
        Ok(())
    }

    /// Walk a bucket whose B-tree starts at page `root`.
    fn bucket_tree(
        &mut self,
        root: u64,
        bucket_depth: usize,
        level: usize,
    ) -> Result<(), BoltError> {
        let mut last: Option<Vec<u8>> = None;
        self.node_page(root, bucket_depth, level, None, None, &mut last)
    }

    /// Walk the subtree at page `id`, whose keys must be in `[lo, hi)` and above `last`.
    fn node_page(
        &mut self,
        id: u64,
        bucket_depth: usize,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        last: &mut Option<Vec<u8>>,
    ) -> Result<(), BoltError> {
        if level >= MAX_DEPTH {
            self.problem(Problem::at(
                id,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
            return Ok(());
        }
        let hwm = self.db.meta().pgid;
        if id < 2 || id >= hwm {
            self.problem(Problem::at(id, format!("out of bounds: {hwm}")));
            return Ok(());
        }
        if self.reachable.get(id) {
            self.problem(Problem::at(id, "multiple references"));
            return Ok(());
        }
        let page = match self.db.page(id) {
            Ok(p) => p,
            Err(f) => {
                self.reachable.set(id);
                return self.fault(f);
            }
        };
        for p in id..=id + u64::from(page.overflow) {
            if p != id && self.reachable.get(p) {
                self.problem(Problem::at(p, "multiple references"));
            }
            self.reachable.set(p);
            if self.freed.as_ref().is_some_and(|f| f.get(p)) {
                self.problem(Problem::at(p, "reachable freed"));
            }
        }
        self.report.stats.overflow_pages += u64::from(page.overflow);
        let node = match Node::new(&page.data, page.count) {
            Ok(n) => n,
            Err(m) => {
                self.problem(Problem::at(id, m));
                return Ok(());
            }
        };
        match page.flags {
            FLAG_LEAF => {
                self.report.stats.leaf_pages += 1;
                self.leaf(id, &node, bucket_depth, level, lo, hi, last)
            }
            FLAG_BRANCH => {
                self.report.stats.branch_pages += 1;
                self.branch(id, &node, bucket_depth, level, lo, hi, last)
            }
            other => {
                self.problem(Problem::at(
                    id,
                    format!("invalid type: {}", type_name(other)),
                ));
                Ok(())
            }
        }
    }

    /// Check that `key` is above the previous key and inside the parent's bounds.
    fn order(
        &mut self,
        at: u64,
        i: usize,
        key: &[u8],
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        last: &Option<Vec<u8>>,
    ) -> bool {
        let violations = [
            (
                last.as_deref().filter(|p| key <= *p),
                "is not above the previous key",
            ),
            (lo.filter(|lo| key < *lo), "is below its parent branch key"),
            (
                hi.filter(|hi| key >= *hi),
                "is not below the next parent branch key",
            ),
        ];
        let mut ok = true;
        for (bound, what) in violations {
            if let Some(b) = bound {
                let msg = format!("key {i} ({}) {what} ({})", show(key), show(b));
                self.problem(Problem::at(at, msg));
                ok = false;
            }
        }
        ok
    }

    #[allow(clippy::too_many_arguments)]
    fn branch(
        &mut self,
        id: u64,
        node: &Node<'_>,
        bucket_depth: usize,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        last: &mut Option<Vec<u8>>,
    ) -> Result<(), BoltError> {
        if node.count == 0 {
            self.problem(Problem::at(id, "branch page has no elements"));
            return Ok(());
        }
        let mut elems = Vec::with_capacity(node.count);
        for i in 0..node.count {
            match node.branch(i) {
                Ok(e) => elems.push(e),
                Err(m) => {
                    self.problem(Problem::at(id, m));
                    return Ok(());
                }
            }
        }
        for i in 1..elems.len() {
            if elems[i].0 <= elems[i - 1].0 {
                self.problem(Problem::at(
                    id,
                    format!(
                        "branch key {i} ({}) is not above key {} ({})",
                        show(elems[i].0),
                        i - 1,
                        show(elems[i - 1].0)
                    ),
                ));
                return Ok(());
            }
        }
        let (first, final_key) = (elems[0].0, elems[elems.len() - 1].0);
        if !self.order(id, 0, first, lo, None, &None)
            || !self.order(id, elems.len() - 1, final_key, None, hi, &None)
        {
            return Ok(());
        }
        for (i, &(key, child)) in elems.iter().enumerate() {
            let child_hi = elems.get(i + 1).map(|e| e.0).or(hi);
            // As bbolt's check: a child's keys are >= its separator and < the next one.
            self.node_page(child, bucket_depth, level + 1, Some(key), child_hi, last)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &mut self,
        at: u64,
        node: &Node<'_>,
        bucket_depth: usize,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        last: &mut Option<Vec<u8>>,
    ) -> Result<(), BoltError> {
        // `at` is the page holding the entries (for an inline bucket, the enclosing page).
        for i in 0..node.count {
            let e = match node.leaf(i) {
                Ok(e) => e,
                Err(m) => {
                    self.problem(Problem::at(at, m));
                    return Ok(());
                }
            };
            if e.flags & !LEAF_BUCKET != 0 {
                // bbolt defines only the bucket flag; anything else is damage.
                self.problem(Problem::at(
                    at,
                    format!("element {i} has unknown flags {:#x}", e.flags),
                ));
                return Ok(());
            }
            if !self.order(at, i, e.key, lo, hi, last) {
                return Ok(());
            }
            match last {
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(e.key);
                }
                None => *last = Some(e.key.to_vec()),
            }
            self.report.stats.entries += 1;
            if e.flags & LEAF_BUCKET == 0 {
                self.visitor
                    .entry(bucket_depth, e.key, super::Item::Value(e.value));
                continue;
            }
            self.visitor.entry(bucket_depth, e.key, super::Item::Bucket);
            self.report.stats.buckets += 1;
            if e.value.len() < 16 {
                self.problem(Problem::at(
                    at,
                    format!(
                        "bucket {} has a {}-byte header, expected 16",
                        show(e.key),
                        e.value.len()
                    ),
                ));
                continue;
            }
            let root = u64_at(e.value, 0);
            if root != 0 {
                self.bucket_tree(root, bucket_depth + 1, level + 1)?;
                continue;
            }
            self.report.stats.inline_buckets += 1;
            let page = &e.value[16..];
            let inline = if page.len() < 16 {
                Err(format!("inline bucket {} is too short", show(e.key)))
            } else if super::u16_at(page, 8) != FLAG_LEAF {
                Err(format!(
                    "inline bucket {} is a {} page, expected leaf",
                    show(e.key),
                    type_name(super::u16_at(page, 8))
                ))
            } else {
                Node::new(page, super::u16_at(page, 10))
                    .map_err(|m| format!("inline bucket {}: {m}", show(e.key)))
            };
            match inline {
                Ok(n) => {
                    if level + 1 >= MAX_DEPTH {
                        self.problem(Problem::at(
                            at,
                            format!("nested deeper than {MAX_DEPTH} levels"),
                        ));
                        continue;
                    }
                    let mut inner_last = None;
                    self.leaf(
                        at,
                        &n,
                        bucket_depth + 1,
                        level + 1,
                        None,
                        None,
                        &mut inner_last,
                    )?;
                }
                Err(m) => self.problem(Problem::at(at, m)),
            }
        }
        Ok(())
    }
}

/// A key for an error message: printable ASCII as is, else hex; long keys shortened.
pub fn show(key: &[u8]) -> String {
    let k = &key[..key.len().min(64)];
    let more = if key.len() > 64 { "…" } else { "" };
    if k.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}{more}", String::from_utf8_lossy(k))
    } else {
        format!("0x{}{more}", hex::encode(k))
    }
}
