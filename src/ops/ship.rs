//! Shipping bytes to every destination: the seal stage (zstd, age, an optional spool copy)
//! fanned out to multipart uploads with backpressure, completing or aborting them, and the
//! create-only commit object written last. Shared by full backups and revision-log segments.

use super::LoadedPolicy;
use crate::error::{Error, Kind, Result};
use crate::model::{Compression, Encryption, StoredObject};
use crate::pipeline::{SealConfig, SealError, SealOutput, seal};
use crate::store::{Destination, PARTS_IN_FLIGHT, describe_store_error};
use bytes::Bytes;
use object_store::WriteMultipart;
use std::fs::File;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tracing::warn;

/// The seal stage (zstd, age, optional spool copy) and the fan-out to every destination, fed
/// through the returned sender; shared by backups from a member and from a file.
pub(crate) struct Shipping {
    seal_task: tokio::task::JoinHandle<std::result::Result<SealOutput, SealError>>,
    fan_task: tokio::task::JoinHandle<FanOut>,
    abandoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Stops the fan-out, which then hands its uploads back at once.
    stop_fan: tokio_util::sync::CancellationToken,
}

pub(crate) type Fanned = std::result::Result<(), (usize, object_store::Error)>;

/// What the fan-out hands back: the live uploads, the optional ones it dropped, and how it ended.
type FanOut = (Uploads, Vec<(usize, object_store::Error)>, Fanned);

impl Shipping {
    pub(crate) fn start(
        lp: &LoadedPolicy,
        uploads: Uploads,
        spool: Option<(PathBuf, File)>,
    ) -> (mpsc::Sender<Bytes>, Self) {
        let required = lp.destinations.iter().map(|d| d.required).collect();
        let (plain_tx, plain_rx) = mpsc::channel::<Bytes>(16);
        let (sealed_tx, sealed_rx) = mpsc::channel::<Bytes>(4);
        let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cfg = SealConfig {
            abandoned: Some(abandoned.clone()),
            level: lp.policy.compression.level.0,
            threads: lp.policy.compression.threads,
            job_size: lp.policy.compression.job_size.0 as u32,
            recipients: lp.recipients.clone(),
        };
        let seal_task = tokio::task::spawn_blocking(move || seal(plain_rx, spool, &cfg, sealed_tx));
        let stop_fan = tokio_util::sync::CancellationToken::new();
        let fan_task = tokio::spawn(fan_out(sealed_rx, uploads, required, stop_fan.clone()));
        (
            plain_tx,
            Self {
                seal_task,
                fan_task,
                abandoned,
                stop_fan,
            },
        )
    }

    /// The run is given up: the sealer stops at once instead of finishing its frame.
    pub(crate) fn abandon(&self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Shipping::finish`], unless `cancel` fires first: then the sealer is abandoned (a zstd
    /// frame at a high level can take many seconds to finish, and nobody needs it), the
    /// fan-out stops, and its uploads come back as `Err` for the caller to abort. The sealer
    /// thread ends on its own, its output going nowhere.
    pub(crate) async fn finish_unless(
        self,
        dests: &[Destination],
        skipped: &mut Skipped,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<
        std::result::Result<(std::result::Result<SealOutput, SealError>, Uploads, Fanned), Uploads>,
    > {
        let Self {
            mut seal_task,
            fan_task,
            abandoned,
            stop_fan,
        } = self;
        let sealed = tokio::select! {
            r = &mut seal_task => r,
            () = cancel.cancelled() => {
                abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
                stop_fan.cancel();
                let (uploads, _) = collect_fan(fan_task, dests, skipped).await?;
                return Ok(Err(uploads));
            }
        };
        let sealed =
            sealed.map_err(|e| Error::new(Kind::Internal, format!("seal task failed: {e}")))?;
        let (uploads, fanned) = collect_fan(fan_task, dests, skipped).await?;
        Ok(Ok((sealed, uploads, fanned)))
    }

    /// Wait for both stages once the sender is dropped. The caller completes or aborts the
    /// returned uploads; optional destinations that failed on the way are added to `skipped`.
    pub(crate) async fn finish(
        self,
        dests: &[Destination],
        skipped: &mut Skipped,
    ) -> Result<(std::result::Result<SealOutput, SealError>, Uploads, Fanned)> {
        let sealed = self
            .seal_task
            .await
            .map_err(|e| Error::new(Kind::Internal, format!("seal task failed: {e}")))?;
        let (uploads, fanned) = collect_fan(self.fan_task, dests, skipped).await?;
        Ok((sealed, uploads, fanned))
    }
}

/// Wait for the fan-out; optional destinations it dropped on the way go into `skipped`.
async fn collect_fan(
    fan_task: tokio::task::JoinHandle<FanOut>,
    dests: &[Destination],
    skipped: &mut Skipped,
) -> Result<(Uploads, Fanned)> {
    let (uploads, dropped, fanned) = fan_task
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("upload task failed: {e}")))?;
    for (i, e) in dropped {
        skip(skipped, &dests[i], "uploading", &e);
    }
    Ok((uploads, fanned))
}

/// The manifest's record of the stored object.
pub(crate) fn stored_object(
    lp: &LoadedPolicy,
    data_key: &str,
    sealed: &SealOutput,
) -> StoredObject {
    StoredObject {
        key: data_key.to_owned(),
        size: sealed.stored_size,
        sha256: hex::encode(sealed.stored_sha256),
        compression: Compression {
            algorithm: "zstd".into(),
            level: lp.policy.compression.level.0,
        },
        encryption: (!lp.recipients.is_empty()).then(|| Encryption {
            algorithm: "age".into(),
            recipients: lp.recipient_strings.clone(),
        }),
    }
}

pub(crate) fn upload_error(d: &Destination, key: &str, e: &object_store::Error) -> Error {
    Error::new(
        Kind::Storage,
        format!(
            "destination {:?} ({}): uploading {key} failed: {}; check that the bucket or \
             directory exists and the credentials may write to it. Nothing was committed",
            d.name,
            d.url,
            describe_store_error(e)
        ),
    )
}

/// A multipart upload to `lp.destinations[.0]`.
pub(crate) type Uploads = Vec<(usize, WriteMultipart)>;

/// Why destinations with `required: false` were left out of this backup.
pub(crate) type Skipped = Vec<String>;

pub(crate) fn skip(skipped: &mut Skipped, d: &Destination, what: &str, e: &object_store::Error) {
    let why = format!(
        "destination {:?} ({}): {what} failed: {}; it is optional (required: false), so the \
         backup goes on without it",
        d.name,
        d.url,
        describe_store_error(e)
    );
    warn!(destination = %d.name, "{why}");
    skipped.push(why);
}

pub(crate) fn nothing_left(skipped: &Skipped) -> Error {
    Error::new(
        Kind::Storage,
        format!(
            "every destination failed; nothing was committed:\n  {}",
            skipped.join("\n  ")
        ),
    )
}

pub(crate) async fn start_uploads(
    dests: &[Destination],
    key: &str,
    skipped: &mut Skipped,
) -> Result<Uploads> {
    let started = futures::future::join_all(dests.iter().map(|d| d.start_upload(key))).await;
    let mut uploads = Vec::new();
    let mut first_err = None;
    for (i, (d, r)) in dests.iter().zip(started).enumerate() {
        match r {
            Ok(w) => uploads.push((i, w)),
            Err(e) if !d.required => skip(skipped, d, "starting the upload", &e),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(upload_error(d, key, &e));
                }
            }
        }
    }
    if let Some(e) = first_err {
        for (_, w) in uploads {
            let _ = w.abort().await;
        }
        return Err(e);
    }
    if uploads.is_empty() {
        return Err(nothing_left(skipped));
    }
    Ok(uploads)
}

/// Copy every sealed chunk to every destination, waiting for part capacity (backpressure). An
/// optional destination that fails is aborted and left behind (its index and error returned);
/// a required one stops the fan-out. Returns the uploads so the caller decides between
/// completing and aborting.
async fn fan_out(
    mut rx: mpsc::Receiver<Bytes>,
    mut uploads: Uploads,
    required: Vec<bool>,
    stop: tokio_util::sync::CancellationToken,
) -> FanOut {
    let mut dropped = Vec::new();
    loop {
        let chunk = tokio::select! {
            c = rx.recv() => c,
            () = stop.cancelled() => None,
        };
        let Some(chunk) = chunk else { break };
        let mut i = 0;
        while i < uploads.len() {
            let (dest, w) = &mut uploads[i];
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let dest = *dest;
                if required[dest] {
                    return (uploads, dropped, Err((dest, e)));
                }
                let (_, w) = uploads.remove(i);
                let _ = w.abort().await;
                dropped.push((dest, e));
                continue;
            }
            w.put(chunk.clone());
            i += 1;
        }
    }
    (uploads, dropped, Ok(()))
}

pub(crate) async fn abort_all(dests: &[Destination], uploads: Uploads) {
    let (idx, writers): (Vec<usize>, Vec<WriteMultipart>) = uploads.into_iter().unzip();
    let results = futures::future::join_all(writers.into_iter().map(|w| w.abort())).await;
    for (i, r) in idx.into_iter().zip(results) {
        if let Err(e) = r {
            warn!(destination = %dests[i].name, error = %describe_store_error(&e), "Aborting upload failed; the store may keep an incomplete multipart upload until its lifecycle rules remove it");
        }
    }
}

/// Complete every upload; returns the destinations the data landed at.
pub(crate) async fn complete_uploads(
    dests: &[Destination],
    uploads: Uploads,
    key: &str,
    skipped: &mut Skipped,
) -> Result<Vec<usize>> {
    let (idx, writers): (Vec<usize>, Vec<WriteMultipart>) = uploads.into_iter().unzip();
    let results = futures::future::join_all(writers.into_iter().map(|w| w.finish())).await;
    let failed_required = idx
        .iter()
        .zip(&results)
        .position(|(&i, r)| r.is_err() && dests[i].required);
    if let Some(p) = failed_required {
        // finish() aborted the failed ones; completed ones are visible and must go.
        for (&i, r) in idx.iter().zip(&results) {
            if r.is_ok() {
                remove_quietly(&dests[i], key).await;
            }
        }
        let e = results[p].as_ref().expect_err("position found an error");
        return Err(upload_error(&dests[idx[p]], key, e));
    }
    let mut landed = Vec::new();
    for (i, r) in idx.into_iter().zip(results) {
        match r {
            Ok(_) => landed.push(i),
            Err(e) => skip(skipped, &dests[i], "completing the upload", &e),
        }
    }
    if landed.is_empty() {
        return Err(nothing_left(skipped));
    }
    Ok(landed)
}

pub(crate) async fn remove_quietly(d: &Destination, key: &str) {
    if let Err(e) = d.delete(key).await {
        warn!(destination = %d.name, key, error = %describe_store_error(&e), "Could not remove an uncommitted object; `lifeboat prune` removes orphans");
    }
}

/// Write the manifest `key` (create-only) at every destination the data object `data_key`
/// landed at; returns those that committed. An optional destination that refuses loses its
/// data object; a required one un-commits all.
pub(crate) async fn commit(
    dests: &[Destination],
    landed: &[usize],
    key: &str,
    body: Vec<u8>,
    data_key: &str,
    skipped: &mut Skipped,
) -> Result<Vec<usize>> {
    let results =
        futures::future::join_all(landed.iter().map(|&i| dests[i].put_new(key, body.clone())))
            .await;
    let failed_required = landed
        .iter()
        .zip(&results)
        .position(|(&i, r)| r.is_err() && dests[i].required);
    if let Some(p) = failed_required {
        for (&i, r) in landed.iter().zip(&results) {
            if r.is_ok() {
                remove_quietly(&dests[i], key).await;
            }
        }
        for &i in landed {
            remove_quietly(&dests[i], data_key).await;
        }
        let d = &dests[landed[p]];
        let e = results[p].as_ref().expect_err("position found an error");
        return Err(Error::new(
            Kind::Storage,
            format!(
                "destination {:?} ({}): writing manifest {key} failed: {}; nothing was committed \
                 anywhere",
                d.name,
                d.url,
                describe_store_error(e)
            ),
        ));
    }
    let mut committed = Vec::new();
    for (&i, r) in landed.iter().zip(results) {
        match r {
            Ok(()) => committed.push(i),
            Err(e) => {
                remove_quietly(&dests[i], data_key).await;
                skip(skipped, &dests[i], "writing the manifest", &e);
            }
        }
    }
    if committed.is_empty() {
        return Err(nothing_left(skipped));
    }
    Ok(committed)
}

/// A local file compressed, encrypted and uploaded: not committed until [`commit`] writes its
/// manifest.
pub(crate) struct Shipped {
    pub(crate) sealed: SealOutput,
    /// Destinations holding the data object.
    pub(crate) landed: Vec<usize>,
    /// Optional destinations left out, with why.
    pub(crate) skipped: Skipped,
}

/// Compress, encrypt and upload the file at `path` as `data_key` to every destination. Before
/// the uploads complete, `check` sees how many bytes were read and the SHA-256 of the first
/// `hashed_len`, and may refuse them (the uploads are then aborted). Nothing is left at any
/// destination on error.
pub(crate) async fn ship_file(
    lp: &LoadedPolicy,
    path: &Path,
    data_key: &str,
    hashed_len: u64,
    check: impl FnOnce(u64, [u8; 32]) -> Option<Error>,
) -> Result<Shipped> {
    let mut skipped = Skipped::new();
    let uploads = start_uploads(&lp.destinations, data_key, &mut skipped).await?;
    let (plain_tx, shipping) = Shipping::start(lp, uploads, None);
    let file = path.to_owned();
    let read_task = tokio::task::spawn_blocking(move || read_hashing(&file, hashed_len, &plain_tx));
    let read = read_task
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("read task failed: {e}")))?;
    let (sealed, uploads, fanned) = shipping.finish(&lp.destinations, &mut skipped).await?;
    let problem = match (read, &sealed, &fanned) {
        (Err(e), _, _) => Some(Error::new(
            Kind::Io,
            format!("reading {}: {e}; nothing was committed", path.display()),
        )),
        (_, _, Err((i, e))) => Some(upload_error(&lp.destinations[*i], data_key, e)),
        (_, Err(SealError::Encode(m)), _) => Some(Error::new(
            Kind::Crypto,
            format!("compressing/encrypting {} failed: {m}", path.display()),
        )),
        (_, Err(e), _) => Some(Error::new(
            Kind::Internal,
            format!("the seal stage stopped: {e:?}"),
        )),
        (Ok((n, sha)), _, _) => check(n, sha),
    };
    if let Some(e) = problem {
        abort_all(&lp.destinations, uploads).await;
        return Err(e);
    }
    let sealed = sealed.expect("checked above");
    let landed = complete_uploads(&lp.destinations, uploads, data_key, &mut skipped).await?;
    Ok(Shipped {
        sealed,
        landed,
        skipped,
    })
}

/// Send `path` in 1 MiB chunks, returning its size and the SHA-256 of its first `image_len`
/// bytes. Blocking.
fn read_hashing(
    path: &Path,
    image_len: u64,
    tx: &mpsc::Sender<Bytes>,
) -> std::io::Result<(u64, [u8; 32])> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        buf.truncate(got);
        let hashed = (image_len.saturating_sub(n)).min(got as u64) as usize;
        h.update(&buf[..hashed]);
        n += got as u64;
        if tx.blocking_send(Bytes::from(buf)).is_err() {
            break; // the seal stage failed; its error says why
        }
    }
    Ok((n, h.finalize().into()))
}
