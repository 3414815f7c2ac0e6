//! Fetching a stored backup into a private local file: download, decrypt, decompress, and check
//! every byte against the manifest (stored size and SHA-256, plaintext size, database SHA-256,
//! trailer). Shared by `inspect`, `extract` and restore.

use super::LoadedPolicy;
use crate::error::{Error, Kind, Result};
use crate::model::{self, BackupId, Manifest};
use crate::pipeline::{UnsealError, unseal};
use crate::store::{Destination, describe_store_error};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::info;

/// A backup fetched and verified; the file is removed when this is dropped.
#[derive(Debug)]
pub struct Fetched {
    /// The plaintext snapshot (0600).
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The destination it came from.
    pub destination: String,
    /// SHA-256 of the database image, computed while fetching.
    pub image_sha256: [u8; 32],
    /// The workspace the file lives in, held as long as the file (dropped after it).
    space: Option<super::spool::RunSpace>,
}

impl Fetched {
    /// Keep the file: it is no longer removed on drop. Returns its path.
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Read age identity files.
pub fn load_identities(files: &[PathBuf]) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let mut out = Vec::new();
    for f in files {
        let ids = age::IdentityFile::from_file(f.to_string_lossy().into_owned())
            .map_err(|e| {
                Error::new(
                    Kind::Crypto,
                    format!("cannot read identity file {}: {e}", f.display()),
                )
            })?
            .into_identities()
            .map_err(|e| {
                Error::new(
                    Kind::Crypto,
                    format!("identity file {} is not usable: {e}", f.display()),
                )
            })?;
        out.extend(ids);
    }
    Ok(out)
}

/// The manifest of backup `id` of `policy` as `d` holds it; `None` when `d` has none. A manifest
/// that is unreadable or describes another backup is an error (moved or swapped objects).
pub(crate) async fn read_manifest(
    d: &Destination,
    policy: &str,
    id: &BackupId,
) -> Result<Option<Manifest>> {
    let key = model::manifest_key(policy, id);
    let body = match d.get_small(&key).await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => {
            return Err(Error::new(
                Kind::Storage,
                format!(
                    "destination {:?} ({}): reading manifest {key}: {}",
                    d.name,
                    d.url,
                    describe_store_error(&e)
                ),
            ));
        }
    };
    let m = Manifest::from_json(&body).map_err(|e| {
        Error::new(
            Kind::Verify,
            format!(
                "destination {:?}: manifest {key} is unreadable: {e}",
                d.name
            ),
        )
    })?;
    if &m.id != id || m.policy != policy {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "destination {:?}: manifest {key} describes backup {} of policy {:?}, not {id} of \
                 {policy:?}; it was moved or swapped and cannot be trusted",
                d.name, m.id, m.policy
            ),
        ));
    }
    Ok(Some(m))
}

/// Find the manifest of backup `id` at the first destination that has it.
pub async fn find_manifest<'a>(
    lp: &'a LoadedPolicy,
    id: &BackupId,
) -> Result<(Manifest, &'a Destination)> {
    let mut errors = Vec::new();
    for d in &lp.destinations {
        match read_manifest(d, &lp.policy.name, id).await {
            Ok(Some(m)) => return Ok((m, d)),
            Ok(None) => {}
            Err(e) if e.kind() == Kind::Storage => errors.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let why = if errors.is_empty() {
        "no destination has it; see `lifeboat list`".to_owned()
    } else {
        format!(
            "not found, and some destinations failed: {}",
            errors.join("; ")
        )
    };
    Err(Error::new(
        if errors.is_empty() {
            Kind::Policy
        } else {
            Kind::Storage
        },
        format!("backup {id} of policy {}: {why}", lp.policy.name),
    ))
}

/// age identities, shared by every fetch of one command.
pub type Identities = Arc<Vec<Box<dyn age::Identity + Send + Sync>>>;

/// Refuse early when the backup is encrypted and no identity was given.
pub fn require_identities(m: &Manifest, identities: &Identities) -> Result<()> {
    if let Some(enc) = &m.stored.encryption
        && identities.is_empty()
    {
        return Err(Error::new(
            Kind::Crypto,
            format!(
                "backup {} is encrypted to {}; pass --identity with the matching age identity \
                 file",
                m.id,
                enc.recipients.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Fetch backup `id` of `lp` into a private file in the policy's spool directory.
pub async fn fetch(lp: &LoadedPolicy, id: &str, identity_files: &[PathBuf]) -> Result<Fetched> {
    // `latest`: the newest backup any destination lists, read from where it was listed.
    let newest;
    let (manifest, dest) = if id == "latest" {
        newest = super::restore::choose(lp, &super::restore::Selector::Latest).await?;
        let dest = newest.destinations.first().ok_or_else(|| {
            Error::new(
                Kind::Storage,
                format!(
                    "policy {}: no destination holds its newest backup",
                    lp.policy.name
                ),
            )
        })?;
        (newest.manifest.clone(), dest)
    } else {
        let id = BackupId::parse(id).ok_or_else(|| {
            Error::new(
                Kind::Policy,
                format!(
                    "{id:?} is not a backup id (YYYYMMDDTHHMMSSZ-xxxxxx) or `latest`; see \
                     `lifeboat list`"
                ),
            )
        })?;
        find_manifest(lp, &id).await?
    };
    let identities: Identities = Arc::new(load_identities(identity_files)?);
    require_identities(&manifest, &identities)?;
    let run = BackupId::new(chrono::Utc::now(), rand::random::<u32>());
    let (space, _) = super::spool::RunSpace::claim(lp, &run)?;
    let path = space.path("fetch.part");
    let mut fetched = fetch_to(manifest, dest, &identities, path).await?;
    fetched.space = Some(space);
    Ok(fetched)
}

/// Stream the data object of `manifest` from `dest` through age and zstd into a new private
/// file at `path` (never an existing one), checking every byte against the manifest. On any
/// error the file is removed.
pub async fn fetch_to(
    manifest: Manifest,
    dest: &Destination,
    identities: &Identities,
    path: PathBuf,
) -> Result<Fetched> {
    let file = super::create_private_file(&path).map_err(|e| {
        Error::new(
            Kind::Io,
            format!(
                "cannot create {}: {e}; the directory must be writable and have room for one \
                 snapshot",
                path.display()
            ),
        )
    })?;
    fetch_into(manifest, dest, identities, path, file).await
}

/// [`fetch_to`] into `file`, already created (empty, private) at `path` by the caller; the
/// file is removed on any error.
pub async fn fetch_into(
    manifest: Manifest,
    dest: &Destination,
    identities: &Identities,
    path: PathBuf,
    file: std::fs::File,
) -> Result<Fetched> {
    let mut fetched = Fetched {
        path,
        manifest,
        destination: dest.name.clone(),
        image_sha256: [0; 32], // set once the download is verified
        space: None,
    };
    let manifest = &fetched.manifest;
    require_identities(manifest, identities)?;
    let id = manifest.id.clone();
    let own_key = model::data_key(&manifest.policy, &id, manifest.stored.encryption.is_some());
    if manifest.stored.key != own_key {
        // A manifest must describe its own data object; one naming another's was tampered with.
        let other = model::parse_key(&manifest.policy, &manifest.stored.key)
            .map_or_else(|| "no backup".to_owned(), |(i, _)| i.to_string());
        return Err(Error::new(
            Kind::Verify,
            format!(
                "the manifest of backup {id} at destination {:?} names data object {}, which \
                 belongs to backup {other}, not {own_key}; the manifest was altered, do not \
                 restore from it",
                dest.name, manifest.stored.key
            ),
        ));
    }
    let what = format!("backup {id}");
    let m = &fetched.manifest;
    let out = download(
        dest,
        &m.stored,
        identities,
        m.snapshot.db_size,
        file,
        &fetched.path,
        &what,
    )
    .await?;
    let sha = hex::encode(out.image_sha256);
    let trailer_ok = !m.snapshot.has_trailer || out.tail == out.image_sha256;
    if out.plain_size != m.snapshot.file_size || sha != m.snapshot.sha256 || !trailer_ok {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "backup {id}: the decrypted snapshot does not match its manifest ({} bytes, \
                 database SHA-256 {sha}, trailer {}; the manifest records {} bytes and {}); do \
                 not restore from it",
                out.plain_size,
                if trailer_ok { "ok" } else { "wrong" },
                m.snapshot.file_size,
                m.snapshot.sha256
            ),
        ));
    }
    fetched.image_sha256 = out.image_sha256;
    Ok(fetched)
}

/// Download the stored object `stored` from `dest` into `file` (at `path`): check its size and
/// SHA-256 against the record, decrypt (when encrypted), decompress, and fsync. Returns what
/// came out (size, SHA-256 of the first `image_len` bytes, the tail); `what` names the object
/// in errors.
pub(crate) async fn download(
    dest: &Destination,
    stored: &crate::model::StoredObject,
    identities: &Identities,
    image_len: u64,
    mut file: std::fs::File,
    path: &std::path::Path,
    what: &str,
) -> Result<crate::pipeline::UnsealOutput> {
    let identities = if stored.encryption.is_some() {
        Arc::clone(identities)
    } else {
        Arc::new(Vec::new())
    };
    let key = &stored.key;
    let store_err = |e: &object_store::Error| {
        Error::new(
            Kind::Storage,
            format!(
                "destination {:?} ({}): reading {key}: {}",
                dest.name,
                dest.url,
                describe_store_error(e)
            ),
        )
    };
    let (size, mut stream) = dest.get_stream(key).await.map_err(|e| store_err(&e))?;
    if size != stored.size {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "destination {:?}: {key} is {size} bytes but the manifest records {}; the stored \
                 {what} is damaged",
                dest.name, stored.size
            ),
        ));
    }
    info!(object = %key, destination = %dest.name, bytes = size, "Fetching {what}");
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let worker = tokio::task::spawn_blocking(move || {
        let r = unseal(rx, &identities[..], image_len, &mut file);
        let synced = file.sync_all();
        (r, synced)
    });
    let progress = crate::progress::start(&format!("download from {}", dest.name), Some(size));
    let mut h = Sha256::new();
    let mut got = 0u64;
    let mut downloaded = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                h.update(&b);
                got += b.len() as u64;
                progress.set(got, Some(size));
                if tx.send(b).await.is_err() {
                    break; // the worker failed; its error says why
                }
            }
            Err(e) => {
                downloaded = Err(store_err(&e));
                break;
            }
        }
    }
    drop(tx);
    drop(progress);
    let (unsealed, synced) = worker
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("unseal task failed: {e}")))?;
    downloaded?;
    let stored_sha = hex::encode(h.finalize());
    if got != stored.size || stored_sha != stored.sha256 {
        return Err(Error::new(
            Kind::Verify,
            format!(
                "destination {:?}: {key} does not match its manifest (read {got} bytes with \
                 SHA-256 {stored_sha}; the manifest records {} bytes with {}); the stored {what} \
                 is damaged, use another destination or backup",
                dest.name, stored.size, stored.sha256
            ),
        ));
    }
    let out = unsealed.map_err(|e| match e {
        UnsealError::Decrypt(msg) => Error::new(
            Kind::Crypto,
            format!(
                "{what}: {msg}; the identity must match one of the recipients {}",
                stored
                    .encryption
                    .as_ref()
                    .map(|e| e.recipients.join(", "))
                    .unwrap_or_default()
            ),
        ),
        UnsealError::Damaged(msg) => Error::new(
            Kind::Verify,
            format!("{what}: the stored data is damaged: {msg}"),
        ),
        UnsealError::Write(e) => Error::new(Kind::Io, format!("writing {}: {e}", path.display())),
    })?;
    synced.map_err(|e| Error::new(Kind::Io, format!("syncing {}: {e}", path.display())))?;
    Ok(out)
}
