//! A read-only, bounds-checked reader of bbolt database files as etcd writes them (no persisted
//! freelist, which the published Rust ports cannot open). Pure: bytes come through [`ReadAt`],
//! one page at a time, so a multi-GiB file is never held in memory and no length read from the
//! file is trusted before it is checked against the real file size.
//!
//! Layout facts (bbolt v1.3/v1.4, format version 2, little-endian hosts): a 16-byte header on
//! every page; meta pages 0 and 1; branch and leaf elements of 16 bytes whose `pos` is relative
//! to the element itself; bucket values of 16 bytes (`root`, `sequence`), `root == 0` meaning an
//! inline bucket whose leaf page follows in the value.

mod walk;

#[cfg(test)]
mod tests;

pub use walk::{Item, MAX_PROBLEMS, Report, Stats, Visitor, show, walk};

use std::fmt;

/// Random-access source of the database bytes (a file, or a slice in tests and fuzzing).
pub trait ReadAt {
    /// Fill `buf` from `offset`; a short source is an error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len());
        match start.and_then(|s| self.get(s..s.checked_add(buf.len())?)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

pub(crate) const HEADER: usize = 16;
pub(crate) const ELEMENT: usize = 16;
pub(crate) const FLAG_BRANCH: u16 = 0x01;
pub(crate) const FLAG_LEAF: u16 = 0x02;
pub(crate) const FLAG_META: u16 = 0x04;
pub(crate) const FLAG_FREELIST: u16 = 0x10;
/// Leaf element flag: the value is a nested bucket.
pub(crate) const LEAF_BUCKET: u32 = 0x01;
/// `meta.freelist` when the freelist is not persisted (etcd on Linux).
pub const NO_FREELIST: u64 = u64::MAX;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// Largest page span (a page plus its overflow) we will load; bbolt pages this large would hold a
/// single value far beyond etcd's request limits.
const MAX_SPAN: u64 = 1 << 30;

/// A structural problem, located at a page when one is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Page id, when the problem belongs to one page.
    pub page: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn at(page: u64, message: impl Into<String>) -> Self {
        Self {
            page: Some(page),
            message: message.into(),
        }
    }
    pub(crate) fn file(message: impl Into<String>) -> Self {
        Self {
            page: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.page {
            Some(p) => write!(f, "page {p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    /// Reading the source failed.
    #[error("reading {len} bytes at offset {offset}: {source}")]
    Io {
        offset: u64,
        len: usize,
        source: std::io::Error,
    },
    /// The file is not a usable bbolt database.
    #[error("{0}")]
    Corrupt(Problem),
}

/// One meta page, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Page size in bytes.
    pub page_size: u32,
    /// Root page of the root bucket.
    pub root: u64,
    /// Page id of the persisted freelist, or [`NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: pages in use; the logical database size is `pgid * page_size`.
    pub pgid: u64,
    /// Transaction id of the last commit.
    pub txid: u64,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Decode and validate the meta struct of a page (at least 80 bytes), as bbolt's
/// `Meta.Validate`: magic, version, FNV-1a checksum.
fn parse_meta(page: &[u8]) -> Result<Meta, String> {
    if page.len() < 80 {
        return Err("shorter than a meta page".into());
    }
    let magic = u32_at(page, 16);
    if magic == MAGIC.swap_bytes() {
        return Err("written by a big-endian host; only little-endian files are supported".into());
    }
    if magic != MAGIC {
        return Err(format!("no bbolt magic (found {magic:#010x})"));
    }
    let version = u32_at(page, 20);
    if version != VERSION {
        return Err(format!("format version {version}, expected {VERSION}"));
    }
    let checksum = u64_at(page, 72);
    if checksum != fnv1a64(&page[16..72]) {
        return Err("checksum mismatch".into());
    }
    Ok(Meta {
        page_size: u32_at(page, 24),
        root: u64_at(page, 32),
        freelist: u64_at(page, 48),
        pgid: u64_at(page, 56),
        txid: u64_at(page, 64),
    })
}

/// An open database: the source, its size and the meta page in use.
pub struct Db<'s, R: ReadAt + ?Sized> {
    src: &'s R,
    len: u64,
    page_size: u64,
    meta: Meta,
    meta_page: u64,
    other_meta: Result<Meta, String>,
}

impl<R: ReadAt + ?Sized> fmt::Debug for Db<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("len", &self.len)
            .field("meta", &self.meta)
            .field("meta_page", &self.meta_page)
            .finish()
    }
}

fn read(src: &(impl ReadAt + ?Sized), offset: u64, buf: &mut [u8]) -> Result<(), BoltError> {
    src.read_exact_at(offset, buf)
        .map_err(|source| BoltError::Io {
            offset,
            len: buf.len(),
            source,
        })
}

impl<'s, R: ReadAt + ?Sized> Db<'s, R> {
    /// Open the database held in the first `len` bytes of `src` (pass the file size minus a
    /// trailer, if any). Chooses the meta page as bbolt does, then checks what bbolt trusts:
    /// the high-water mark fits in the file, and the root and freelist ids are in range.
    pub fn open(src: &'s R, len: u64) -> Result<Self, BoltError> {
        let corrupt = |m: String| BoltError::Corrupt(Problem::file(m));
        let mut first = vec![0u8; len.min(4096) as usize];
        read(src, 0, &mut first)?;
        let page_size = match parse_meta(&first) {
            Ok(m) => u64::from(m.page_size),
            Err(why0) => probe_page_size(src, len)?.ok_or_else(|| {
                corrupt(format!(
                    "not a bbolt database or both meta pages are damaged: page 0 {why0}, and no \
                     page 1 with a valid meta was found at 1 KiB..16 MiB ({len} bytes)"
                ))
            })?,
        };
        if !page_size.is_power_of_two() || !(512..=16 << 20).contains(&page_size) {
            return Err(corrupt(format!(
                "meta page size {page_size} is not a power of two between 512 B and 16 MiB"
            )));
        }
        if len < 2 * page_size {
            return Err(corrupt(format!(
                "file too small: {len} bytes cannot hold two {page_size}-byte meta pages"
            )));
        }
        let mut buf = vec![0u8; 80];
        let mut metas = [Err(String::new()), Err(String::new())];
        for (i, m) in metas.iter_mut().enumerate() {
            read(src, i as u64 * page_size, &mut buf)?;
            *m = parse_meta(&buf).and_then(|m| {
                if u64::from(m.page_size) == page_size {
                    Ok(m)
                } else {
                    Err(format!(
                        "page size {} differs from {page_size}",
                        m.page_size
                    ))
                }
            });
        }
        let [m0, m1] = metas;
        // bbolt's db.meta(): the higher txid wins (meta 0 on a tie) if valid, else the other.
        let prefer_1 =
            matches!((&m0, &m1), (Ok(a), Ok(b)) if b.txid > a.txid) || (m0.is_err() && m1.is_ok());
        let (meta_page, meta, other_meta) = match (prefer_1, m0, m1) {
            (false, Ok(m), other) => (0, m, other),
            (true, other, Ok(m)) => (1, m, other),
            (_, Err(a), Err(b)) => {
                return Err(corrupt(format!(
                    "both meta pages are invalid: page 0 {a}; page 1 {b}"
                )));
            }
            _ => unreachable!("prefer_1 is only set when meta 1 is valid"),
        };
        let at = |m: String| BoltError::Corrupt(Problem::at(meta_page, m));
        if meta.pgid < 3 || meta.pgid > len / page_size {
            return Err(at(format!(
                "high-water mark of {} pages ({} bytes) does not fit the {len}-byte file: the file \
                 is truncated or the meta page is wrong",
                meta.pgid,
                u128::from(meta.pgid) * u128::from(page_size)
            )));
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(at(format!(
                "root page {} outside 2..{}",
                meta.root, meta.pgid
            )));
        }
        if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
            return Err(at(format!(
                "freelist page {} outside 2..{}",
                meta.freelist, meta.pgid
            )));
        }
        Ok(Self {
            src,
            len,
            page_size,
            meta,
            meta_page,
            other_meta,
        })
    }

    /// The meta in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    /// Which meta page (0 or 1) is in use.
    pub fn meta_page(&self) -> u64 {
        self.meta_page
    }
    /// The other meta page, or why it is invalid.
    pub fn other_meta(&self) -> &Result<Meta, String> {
        &self.other_meta
    }
    /// Page size in bytes.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }
    /// Logical size: `pgid * page_size` (what `snapshot status` calls totalSize).
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size
    }

    /// Read page `id` with its overflow pages. `Err(Ok(problem))` is damage; `Err(Err(io))` is
    /// a failed read.
    pub(crate) fn page(&self, id: u64) -> Result<Page, Result<Problem, BoltError>> {
        let hwm = self.meta.pgid;
        if id >= hwm {
            return Err(Ok(Problem::at(id, format!("out of bounds: {hwm}"))));
        }
        let ps = self.page_size as usize;
        let mut data = vec![0u8; ps];
        read(self.src, id * self.page_size, &mut data).map_err(Err)?;
        let found = u64_at(&data, 0);
        if found != id {
            return Err(Ok(Problem::at(
                id,
                format!("header names page {found}; the page is misplaced or overwritten"),
            )));
        }
        let overflow = u32_at(&data, 12);
        let end = id + 1 + u64::from(overflow);
        if end > hwm {
            return Err(Ok(Problem::at(
                id,
                format!("{overflow} overflow pages run past the high-water mark {hwm}"),
            )));
        }
        let span = (1 + u64::from(overflow)) * self.page_size;
        if span > MAX_SPAN {
            return Err(Ok(Problem::at(
                id,
                format!("spans {span} bytes; refusing pages over {MAX_SPAN} bytes"),
            )));
        }
        if overflow > 0 {
            data.resize(span as usize, 0);
            read(self.src, (id + 1) * self.page_size, &mut data[ps..]).map_err(Err)?;
        }
        Ok(Page {
            flags: u16_at(&data, 8),
            count: u16_at(&data, 10),
            overflow,
            data,
        })
    }
}

/// Probe for meta page 1 at 1 KiB..16 MiB like bbolt's `getPageSize`, when page 0 is unusable.
fn probe_page_size(src: &(impl ReadAt + ?Sized), len: u64) -> Result<Option<u64>, BoltError> {
    let mut buf = vec![0u8; 80];
    for i in 0..=14 {
        let pos = 1024u64 << i;
        if pos + 80 > len || pos >= len.saturating_sub(1024) {
            break;
        }
        read(src, pos, &mut buf)?;
        if let Ok(m) = parse_meta(&buf) {
            return Ok(Some(u64::from(m.page_size)));
        }
    }
    Ok(None)
}

/// A page with its overflow, as read.
pub(crate) struct Page {
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
    pub data: Vec<u8>,
}

/// Name of a page type, as bbolt prints it.
pub(crate) fn type_name(flags: u16) -> String {
    match flags {
        FLAG_BRANCH => "branch".into(),
        FLAG_LEAF => "leaf".into(),
        FLAG_META => "meta".into(),
        FLAG_FREELIST => "freelist".into(),
        other => format!("unknown<{other:02x}>"),
    }
}

/// A branch or leaf node: a page's bytes (from its header on) or an inline bucket's page.
pub(crate) struct Node<'a> {
    pub data: &'a [u8],
    pub count: usize,
}

/// One leaf element.
pub(crate) struct LeafElem<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Node<'a> {
    /// A node over `data` (starting at the page header) with `count` elements, if the element
    /// array fits.
    pub fn new(data: &'a [u8], count: u16) -> Result<Self, String> {
        let count = usize::from(count);
        if HEADER + count * ELEMENT > data.len() {
            return Err(format!(
                "{count} elements do not fit in {} bytes",
                data.len()
            ));
        }
        Ok(Self { data, count })
    }

    fn slice(
        &self,
        elem: usize,
        pos: u32,
        skip: u32,
        len: u32,
        what: &str,
    ) -> Result<&'a [u8], String> {
        let start = elem as u64 + u64::from(pos) + u64::from(skip);
        let end = start + u64::from(len);
        if end > self.data.len() as u64 {
            return Err(format!(
                "element {} {what} [{start}, {end}) runs past the {}-byte page",
                (elem - HEADER) / ELEMENT,
                self.data.len()
            ));
        }
        Ok(&self.data[start as usize..end as usize])
    }

    pub fn leaf(&self, i: usize) -> Result<LeafElem<'a>, String> {
        let e = HEADER + i * ELEMENT;
        let (flags, pos, ksize, vsize) = (
            u32_at(self.data, e),
            u32_at(self.data, e + 4),
            u32_at(self.data, e + 8),
            u32_at(self.data, e + 12),
        );
        Ok(LeafElem {
            flags,
            key: self.slice(e, pos, 0, ksize, "key")?,
            value: self.slice(e, pos, ksize, vsize, "value")?,
        })
    }

    pub fn branch(&self, i: usize) -> Result<(&'a [u8], u64), String> {
        let e = HEADER + i * ELEMENT;
        let (pos, ksize, child) = (
            u32_at(self.data, e),
            u32_at(self.data, e + 4),
            u64_at(self.data, e + 8),
        );
        Ok((self.slice(e, pos, 0, ksize, "key")?, child))
    }
}
