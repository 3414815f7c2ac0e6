//! `lifeboat extract`: raw values under a prefix, out of a snapshot file or a stored backup.

use super::*;

pub(super) async fn extract(
    file: Option<PathBuf>,
    stored: StoredArgs,
    prefix: &str,
    out: &std::path::Path,
) -> Result<(), Error> {
    let (path, fetched) = super::inspect::snapshot_source(file, stored).await?;
    // A fetched backup was hashed while downloading; a local file is hashed here.
    let hashing = fetched
        .as_ref()
        .map_or(Hashing::Compute, |f| Hashing::Known(f.image_sha256));
    let (prefix, out) = (prefix.as_bytes().to_vec(), out.to_owned());
    let r =
        tokio::task::spawn_blocking(move || ops::inspect::extract(&path, hashing, &prefix, &out))
            .await
            .map_err(|e| Error::new(Kind::Internal, format!("extract task failed: {e}")))??;
    for f in &r.files {
        out!("{}", f.display());
    }
    eprintln!(
        "{} key(s) at revision {} written under {}",
        r.files.len(),
        r.revision,
        r.dir.display()
    );
    Ok(())
}
