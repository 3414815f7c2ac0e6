//! The storage side: a [`Destination`] is one object store plus a key prefix, built from a policy
//! destination. It knows the operations a backup needs (multipart upload, create-only manifest
//! put, list, get, delete) and nothing about etcd.

use crate::policy::{DestinationKind, DestinationSpec, S3_OPTIONS};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Multipart part size. S3 needs at least 5 MiB; 10,000 parts of 8 MiB cover 78 GiB.
pub const PART_SIZE: usize = 8 << 20;
/// Parts in flight per destination; with [`PART_SIZE`] bounds upload memory per destination.
pub const PARTS_IN_FLIGHT: usize = 2;

/// One object listed under a policy prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Key relative to the destination prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// A place backups are written to.
#[derive(Clone)]
pub struct Destination {
    /// Name from the policy.
    pub name: String,
    /// URL from the policy (no secrets).
    pub url: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Build from a policy destination. `options` holds the option values with every `*File`
    /// option already replaced by the file's content (see `ops::load`). No network I/O.
    pub fn build(
        spec: &DestinationSpec,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let store: Arc<dyn ObjectStore> = match &spec.kind {
            DestinationKind::S3 { bucket } => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: 4,
                        retry_timeout: Duration::from_secs(90),
                        ..Default::default()
                    });
                for (k, v) in options {
                    let (_, osk) = S3_OPTIONS
                        .iter()
                        .find(|(name, _)| name == k)
                        .ok_or_else(|| format!("unknown option {k:?}"))?;
                    let key = AmazonS3ConfigKey::from_str(osk)
                        .map_err(|e| format!("option {k:?}: {e}"))?;
                    b = b.with_config(key, v.trim());
                }
                Arc::new(b.build().map_err(|e| e.to_string())?)
            }
            DestinationKind::Local { path } => {
                if !path.is_dir() {
                    return Err(format!(
                        "directory {} does not exist; create it (mkdir -p) or mount the volume",
                        path.display()
                    ));
                }
                Arc::new(
                    LocalFileSystem::new_with_prefix(path)
                        .map_err(|e| e.to_string())?
                        .with_automatic_cleanup(true),
                )
            }
        };
        Ok(Self {
            name: spec.name.clone(),
            url: spec.url.clone(),
            store,
            prefix: spec.prefix.clone(),
        })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn relative(&self, p: &Path) -> String {
        let s = p.as_ref();
        if self.prefix.is_empty() {
            s.to_owned()
        } else {
            s.strip_prefix(&self.prefix)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(s)
                .to_owned()
        }
    }

    /// Start a multipart upload of `key`.
    pub async fn start_upload(&self, key: &str) -> object_store::Result<WriteMultipart> {
        let up = self.store.put_multipart(&self.path(key)).await?;
        Ok(WriteMultipart::new_with_chunk_size(up, PART_SIZE))
    }

    /// Write a small object only if it does not exist yet (manifests are never overwritten).
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(key), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
    }

    /// Read a whole small object (manifests).
    pub async fn get_small(&self, key: &str) -> object_store::Result<Bytes> {
        self.store.get(&self.path(key)).await?.bytes().await
    }

    /// Stream an object: its size and its bytes.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> object_store::Result<(
        u64,
        futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    )> {
        let r = self.store.get(&self.path(key)).await?;
        Ok((r.meta.size, r.into_stream()))
    }

    /// Delete one object; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        match self.store.delete(&self.path(key)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// List every object under `prefix` (relative to the destination prefix).
    pub async fn list(&self, prefix: &str) -> object_store::Result<Vec<Listed>> {
        let p = self.path(prefix.trim_end_matches('/'));
        self.store
            .list(Some(&p))
            .map_ok(|m| Listed {
                key: self.relative(&m.location),
                size: m.size,
                last_modified: m.last_modified,
            })
            .try_collect()
            .await
    }
}

/// One-line description of an object_store error, without request dumps.
pub fn describe_store_error(e: &object_store::Error) -> String {
    crate::error::append_sources(e.to_string(), std::error::Error::source(e))
}
