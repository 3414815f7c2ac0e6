//! The storage side: a [`Destination`] is one object store plus a key prefix, built from a policy
//! destination. It knows the operations a backup needs (multipart upload, create-only manifest
//! put, list, get, delete) and nothing about etcd.

use crate::policy::{DestinationKind, DestinationSpec};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Certificate, ClientConfigKey, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Parts in flight per destination; with the destination's `partSize` it bounds upload memory.
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
    /// `required: false` destinations may fail without failing the backup.
    pub required: bool,
    part_size: usize,
    /// A local destination's directory (with the prefix): where its partial uploads are.
    local_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Finish an object_store builder of a networked scheme: retries, extra CAs (keeping what the
/// builder read from the environment), then the policy's options as configuration keys. The
/// three builders share no trait, hence a macro.
macro_rules! networked {
    ($builder:expr, $key:ident, $options:expr) => {{
        let (certs, retry, rest) = client_settings($options)?;
        let mut b = $builder.with_retry(retry);
        if !certs.is_empty() {
            let client = client_options(certs, |k| b.get_config_value(&$key::Client(k)));
            b = b.with_client_options(client);
        }
        for (k, v) in rest {
            let key = $key::from_str(k).map_err(|e| e.to_string())?;
            b = b.with_config(key, v);
        }
        Arc::new(b.build().map_err(|e| e.to_string())?)
    }};
}

impl Destination {
    /// Build from a policy destination. `options` maps object_store configuration keys (and
    /// lifeboat's own `lifeboat_*` keys) to values, with files already read (see `ops::load`).
    /// No network I/O.
    pub fn build(
        spec: &DestinationSpec,
        options: &BTreeMap<&'static str, String>,
    ) -> Result<Self, String> {
        let store: Arc<dyn ObjectStore> = match &spec.kind {
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
            DestinationKind::S3 { bucket } => networked!(
                AmazonS3Builder::from_env().with_bucket_name(bucket),
                AmazonS3ConfigKey,
                options
            ),
            DestinationKind::Gcs { bucket } => networked!(
                GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket),
                GoogleConfigKey,
                options
            ),
            DestinationKind::Azure { container } => networked!(
                MicrosoftAzureBuilder::from_env().with_container_name(container),
                AzureConfigKey,
                options
            ),
        };
        Ok(Self {
            name: spec.name.clone(),
            url: spec.url.clone(),
            store,
            prefix: spec.prefix.clone(),
            required: spec.required,
            part_size: spec.part_size as usize,
            local_dir: match &spec.kind {
                DestinationKind::Local { path } => Some(path.join(&spec.prefix)),
                _ => None,
            },
        })
    }

    /// Remove the partial uploads (`KEY#N`, object_store's staging files for a local object)
    /// below `key_prefix` whose object name (the file name without `#N`) `owned` accepts; the
    /// files removed and their sizes. Nothing for an object store: it keeps incomplete
    /// multipart uploads out of sight itself, and its lifecycle rules remove them.
    pub fn remove_staged_uploads(
        &self,
        key_prefix: &str,
        owned: impl Fn(&str) -> bool,
    ) -> Vec<(std::path::PathBuf, u64)> {
        let mut removed = Vec::new();
        if let Some(dir) = &self.local_dir {
            remove_staged_below(&dir.join(key_prefix), &owned, &mut removed);
        }
        removed
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

    /// Bytes per uploaded part (the policy's `partSize` or the kind's default).
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Start a multipart upload of `key`.
    pub async fn start_upload(&self, key: &str) -> object_store::Result<WriteMultipart> {
        let up = self.store.put_multipart(&self.path(key)).await?;
        Ok(WriteMultipart::new_with_chunk_size(up, self.part_size))
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

    /// The "directories" directly under `prefix` (relative to the destination prefix): one
    /// delimiter listing, without the objects below them.
    pub async fn list_dirs(&self, prefix: &str) -> object_store::Result<Vec<String>> {
        let p = self.path(prefix.trim_end_matches('/'));
        let r = self.store.list_with_delimiter(Some(&p)).await?;
        Ok(r.common_prefixes.iter().map(|c| self.relative(c)).collect())
    }
}

/// One-line description of an object_store error, without request dumps.
pub fn describe_store_error(e: &object_store::Error) -> String {
    crate::error::append_sources(e.to_string(), std::error::Error::source(e))
}

/// Extra trusted CAs, the retry policy, and the object_store keys left to apply.
type ClientSettings = (Vec<Certificate>, RetryConfig, Vec<(&'static str, String)>);

/// The HTTP client settings every networked store shares: extra trusted CAs, retries with
/// backoff, and the rest of the options (object_store keys) to apply to the builder.
fn client_settings(options: &BTreeMap<&'static str, String>) -> Result<ClientSettings, String> {
    let mut certs = Vec::new();
    let mut retry = RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(90),
        ..Default::default()
    };
    let mut rest = Vec::new();
    for (&k, v) in options {
        let v = v.trim();
        match k {
            "lifeboat_ca_pem" => {
                certs = Certificate::from_pem_bundle(v.as_bytes())
                    .map_err(|e| format!("caFile: not a PEM certificate bundle: {e}"))?;
                if certs.is_empty() {
                    return Err("caFile: no certificate in the file".into());
                }
            }
            "lifeboat_retries" => {
                retry.max_retries = v
                    .parse()
                    .map_err(|_| format!("retries {v:?}: not a number"))?;
            }
            "lifeboat_retry_timeout" => {
                retry.retry_timeout =
                    humantime::parse_duration(v).map_err(|e| format!("retryTimeout {v:?}: {e}"))?;
            }
            _ => rest.push((k, v.to_owned())),
        }
    }
    Ok((certs, retry, rest))
}

/// Client options trusting `certs` besides the system roots. Replacing a builder's client
/// options drops what it read from the environment, so those settings are carried over.
fn client_options(
    certs: Vec<Certificate>,
    from_env: impl Fn(ClientConfigKey) -> Option<String>,
) -> ClientOptions {
    let mut client = ClientOptions::new();
    for c in certs {
        client = client.with_root_certificate(c);
    }
    for key in [
        ClientConfigKey::AllowHttp,
        ClientConfigKey::Timeout,
        ClientConfigKey::ConnectTimeout,
        ClientConfigKey::ProxyUrl,
        ClientConfigKey::ProxyCaCertificate,
        ClientConfigKey::ProxyExcludes,
    ] {
        if let Some(v) = from_env(key) {
            client = client.with_config(key, v);
        }
    }
    client
}

/// The walk of [`Destination::remove_staged_uploads`] (directories are a local destination's
/// key prefixes, a few levels deep; symbolic links are not followed).
fn remove_staged_below(
    dir: &std::path::Path,
    owned: &impl Fn(&str) -> bool,
    removed: &mut Vec<(std::path::PathBuf, u64)>,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            remove_staged_below(&e.path(), owned, removed);
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let object = name
            .rsplit_once('#')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(object, _)| object);
        if ft.is_file() && object.is_some_and(owned) {
            let bytes = e.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(e.path()).is_ok() {
                removed.push((e.path(), bytes));
            }
        }
    }
}
