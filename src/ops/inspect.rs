//! Reading a snapshot file: the trailer (as etcd detects it), the SHA-256 over the database
//! image, and the bbolt check and status, computed side by side in one read of the file each.

use super::io_err;
use crate::bbolt::{BoltError, ReadAt, Visitor};
use crate::error::{Error, Kind, Result};
use crate::etcddb::{self, Inspection, LiveKey, LiveKeys, TRAILER_LEN};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

impl ReadAt for File {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// What the last 32 bytes of the file say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trailer {
    /// No trailer (size % 512 != 32): a copy of `member/snap/db`, or a truncated snapshot.
    Absent,
    /// The trailer equals the SHA-256 of the database image.
    Matches,
    /// The trailer does not match: the file is damaged.
    Mismatch {
        /// SHA-256 the trailer records, hex.
        recorded: String,
    },
    /// A trailer is present but was not compared (`--skip-hash-check`).
    Unchecked,
}

/// How to treat the SHA-256 of the database image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// Hash the image and compare it with the trailer.
    Compute,
    /// The caller already hashed these bytes (while streaming or fetching): compare the trailer
    /// with this digest instead of reading the file again.
    Known([u8; 32]),
    /// Do not hash (the report's `sha256` is empty and a trailer is `Unchecked`).
    Skip,
}

/// A snapshot file, read and checked.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    /// Size of the file.
    pub file_size: u64,
    pub trailer: Trailer,
    /// SHA-256 of the database image (the file minus any trailer), hex; empty when not hashed.
    pub sha256: String,
    /// The bbolt check and etcd status.
    pub inspection: Inspection,
}

impl FileReport {
    /// `Ok` when the file is sound; otherwise a verification error listing every problem of
    /// `file` and saying what was (not) done, e.g. "nothing was uploaded".
    pub fn ensure_sound(&self, file: &Path, consequence: &str) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            Kind::Verify,
            format!(
                "{} failed its checks; {consequence}:\n  {}",
                file.display(),
                problems.join("\n  ")
            ),
        ))
    }

    /// Every reason not to trust this file; empty when it is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Trailer::Mismatch { recorded } = &self.trailer {
            out.push(format!(
                "SHA-256 trailer mismatch: the trailer records {recorded} but the database hashes \
                 to {}",
                self.sha256
            ));
        }
        let image = self.image_len();
        let total = self.inspection.status.total_size;
        if self.trailer != Trailer::Absent && total != image {
            out.push(format!(
                "the snapshot holds a {image}-byte database but its meta page says {total} bytes"
            ));
        }
        let ps = self.inspection.page_size;
        if self.trailer == Trailer::Absent && ps > 0 && !self.file_size.is_multiple_of(ps) {
            // bbolt files grow in whole pages; a snapshot is pages plus 32 bytes.
            out.push(format!(
                "the file ends {} bytes into a page and has no SHA-256 trailer: it looks like a \
                 snapshot cut short (a complete one is {} bytes larger than a page multiple by 32)",
                self.file_size % ps,
                TRAILER_LEN
            ));
        }
        out.extend(self.inspection.problems());
        out
    }

    /// Bytes before the trailer.
    pub fn image_len(&self) -> u64 {
        match self.trailer {
            Trailer::Absent => self.file_size,
            _ => self.file_size - TRAILER_LEN,
        }
    }
}

/// Read `path` and check it. Blocking: run it off the async runtime. Damage is reported in the
/// result (see [`FileReport::problems`]); `Err` means the file could not be read or is not a
/// bbolt database at all.
pub fn inspect_file(path: &Path, hashing: Hashing) -> Result<FileReport> {
    inspect_file_with(path, hashing, &mut ())
}

/// [`inspect_file`] and the live keys under `prefix`, in the same read of the file. Blocking.
pub fn inspect_keys(
    path: &Path,
    hashing: Hashing,
    prefix: &[u8],
) -> Result<(FileReport, Vec<LiveKey>)> {
    let mut keys = LiveKeys::new(prefix);
    let report = inspect_file_with(path, hashing, &mut keys)?;
    Ok((report, keys.into_keys()))
}

/// [`inspect_file`] with `extra` visiting every entry in the same read. Blocking.
pub fn inspect_file_with(
    path: &Path,
    hashing: Hashing,
    extra: &mut impl Visitor,
) -> Result<FileReport> {
    let file = File::open(path).map_err(|e| io_err(path, "cannot open", e))?;
    let file_size = file
        .metadata()
        .map_err(|e| io_err(path, "cannot stat", e))?
        .len();
    let trailer_present = etcddb::has_trailer(file_size);
    let image_len = if trailer_present {
        file_size - TRAILER_LEN
    } else {
        file_size
    };
    // The hash reads the file front to back while the walk follows the tree; on two cores they
    // overlap almost completely.
    let (sha, inspection) = std::thread::scope(|s| {
        let sha = s.spawn(|| match hashing {
            Hashing::Compute => sha256_prefix(&file, image_len).map(Some),
            Hashing::Known(d) => Ok(Some(d)),
            Hashing::Skip => Ok(None),
        });
        let inspection = etcddb::inspect_with(&file, image_len, extra);
        (sha.join().expect("hash thread panicked"), inspection)
    });
    let sha = sha.map_err(|e| io_err(path, "reading", e))?;
    let inspection = inspection.map_err(|e| bolt_error(path, e))?;
    let trailer = match (trailer_present, sha) {
        (false, _) => Trailer::Absent,
        (true, None) => Trailer::Unchecked,
        (true, Some(sha)) => {
            let mut recorded = [0u8; TRAILER_LEN as usize];
            ReadAt::read_exact_at(&file, image_len, &mut recorded)
                .map_err(|e| io_err(path, "reading the trailer of", e))?;
            if recorded == sha {
                Trailer::Matches
            } else {
                Trailer::Mismatch {
                    recorded: hex::encode(recorded),
                }
            }
        }
    };
    Ok(FileReport {
        path: path.to_owned(),
        file_size,
        trailer,
        sha256: sha.map(hex::encode).unwrap_or_default(),
        inspection,
    })
}

/// An error opening a database, said for `path`.
pub(crate) fn bolt_error(path: &Path, e: BoltError) -> Error {
    match e {
        BoltError::Io {
            offset,
            len,
            source,
        } => Error::new(
            Kind::Io,
            format!(
                "reading {len} bytes at offset {offset} of {}: {source}",
                path.display()
            ),
        ),
        BoltError::Corrupt(p) => Error::new(
            Kind::Verify,
            format!(
                "{} is not a readable etcd snapshot: {p}; if it was copied from a data directory \
                 make sure the copy is complete",
                path.display()
            ),
        ),
    }
}

fn sha256_prefix(file: &File, len: u64) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        FileExt::read_exact_at(file, &mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().into())
}

/// What `extract` wrote.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The output directory.
    pub dir: PathBuf,
    /// Revision the values are from.
    pub revision: i64,
    /// Files written, in key order.
    pub files: Vec<PathBuf>,
}

/// Map a key to a relative path: `/`-separated components, each percent-encoded except
/// `[A-Za-z0-9._-]`, with `.`/`..`/empty components encoded too, so no key can name a path
/// outside the output directory. Injective; a leading `/` is dropped.
pub fn key_to_relative_path(key: &[u8]) -> std::result::Result<PathBuf, String> {
    let body = key.strip_prefix(b"/").unwrap_or(key);
    let mut out = PathBuf::new();
    for comp in body.split(|&b| b == b'/') {
        let enc = match comp {
            b"" => "%2F".to_owned(), // never produced otherwise: '/' is the separator
            b"." => "%2E".to_owned(),
            b".." => "%2E%2E".to_owned(),
            c => c
                .iter()
                .map(|&b| {
                    if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
        };
        if enc.len() > 255 {
            return Err(format!(
                "a path component of key {} is too long for a file name",
                crate::bbolt::show(key)
            ));
        }
        out.push(enc);
    }
    if key.is_empty() || !key.starts_with(b"/") {
        // Keep "a" and "/a" apart.
        out = Path::new("%NOSLASH").join(out);
    }
    Ok(out)
}

/// Write the values of the live keys under `prefix` into a new directory `out` (files 0600).
/// The directory appears only when complete. Blocking.
pub fn extract(path: &Path, hashing: Hashing, prefix: &[u8], out: &Path) -> Result<Extracted> {
    let (report, keys) = inspect_keys(path, hashing, prefix)?;
    report.ensure_sound(path, "refusing to extract from it")?;
    let mut plan: HashMap<(i64, i64), PathBuf> = HashMap::new();
    let mut files = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for k in &keys {
        let rel = key_to_relative_path(&k.key).map_err(|m| Error::new(Kind::Io, m))?;
        for a in rel.ancestors().skip(1) {
            dirs.insert(a.to_owned());
        }
        files.insert(rel.clone());
        plan.insert((k.mod_revision, k.sub_revision), rel);
    }
    if let Some(clash) = files.iter().find(|f| dirs.contains(*f)) {
        return Err(Error::new(
            Kind::Io,
            format!(
                "key {} is both a value and a parent of other keys; extract a narrower --prefix",
                clash.display()
            ),
        ));
    }
    let staged = super::StagedDir::create(out)?;
    let staging = staged.path().to_owned();
    let mkdir = |d: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| io_err(d, "cannot create", e))
    };
    for d in &dirs {
        mkdir(&staging.join(d))?;
    }
    let file = File::open(path).map_err(|e| io_err(path, "cannot open", e))?;
    let wanted: HashSet<(i64, i64)> = plan.keys().copied().collect();
    let written = etcddb::values_at(&file, report.image_len(), &wanted, |rev, value| {
        let target = staging.join(&plan[&rev]);
        let mut f = super::create_private_file(&target)
            .map_err(|e| format!("creating {}: {e}", target.display()))?;
        std::io::Write::write_all(&mut f, value)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("writing {}: {e}", target.display()))
    })
    .map_err(|e| bolt_error(path, e))?;
    written.map_err(|m| Error::new(Kind::Io, m))?;
    staged.commit()?;
    Ok(Extracted {
        dir: out.to_owned(),
        revision: report.inspection.status.revision,
        files: files.into_iter().map(|f| out.join(f)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::key_to_relative_path as p;
    use std::path::{Component, Path};

    #[test]
    fn key_paths_stay_inside_and_are_distinct() {
        assert_eq!(
            p(b"/registry/pods/default/web-0").unwrap(),
            Path::new("registry/pods/default/web-0")
        );
        assert_eq!(
            p(b"/a/../../etc/passwd").unwrap(),
            Path::new("a/%2E%2E/%2E%2E/etc/passwd")
        );
        assert_eq!(p(b"a").unwrap(), Path::new("%NOSLASH/a"));
        assert_eq!(p(b"/a//b/").unwrap(), Path::new("a/%2F/b/%2F"));
        assert_eq!(p(b"/x y%\xff").unwrap(), Path::new("x%20y%25%FF"));
        let keys: [&[u8]; 9] = [
            b"/a", b"a", b"/a/", b"/a%2F", b"/.", b"/..", b"", b"/", b"//",
        ];
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            let path = p(k).unwrap();
            assert!(
                path.components().all(|c| matches!(c, Component::Normal(_))),
                "{path:?}"
            );
            assert!(seen.insert(path), "{k:?} collides");
        }
        assert!(p(&[b'x'; 300]).is_err());
    }
}
