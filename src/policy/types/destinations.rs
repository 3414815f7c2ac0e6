//! `spec.destinations`: URLs, per-kind store options and the option pairs that are refused.

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub(super) struct Destinations(pub(super) Vec<DestinationSpec>);
impl<'de> Deserialize<'de> for Destinations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<DestinationSpec>::deserialize(d)?;
        if list.is_empty() {
            return Err(de::Error::custom(
                "spec.destinations: list at least one destination, e.g. {name: local, url: \
                 \"file:///var/backups/etcd\"}",
            ));
        }
        for (i, a) in list.iter().enumerate() {
            if list[..i].iter().any(|b| b.name == a.name) {
                return Err(de::Error::custom(format!(
                    "spec.destinations: name {:?} is used twice; names must be unique",
                    a.name
                )));
            }
        }
        Ok(Destinations(list))
    }
}

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// `s3://bucket/prefix`
    S3 {
        /// Bucket name.
        bucket: String,
    },
    /// `gs://bucket/prefix`
    Gcs {
        /// Bucket name.
        bucket: String,
    },
    /// `az://container/prefix`
    Azure {
        /// Container name.
        container: String,
    },
    /// `file:///absolute/dir`
    Local {
        /// Directory (must exist).
        path: PathBuf,
    },
}

/// One destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawDestination")]
pub struct DestinationSpec {
    /// Unique name within the policy.
    pub name: String,
    /// The URL as written (never contains secrets).
    pub url: String,
    /// Parsed scheme and location.
    pub kind: DestinationKind,
    /// Key prefix inside the bucket ("" for none); local destinations use the directory itself.
    pub prefix: String,
    /// Options as (camelCase key, value); keys validated for the scheme.
    pub options: BTreeMap<String, String>,
    /// Whether a backup needs this destination to be committed (default). A destination with
    /// `required: false` that fails is left out of that backup, which is committed elsewhere.
    pub required: bool,
    /// Bytes per uploaded part. Upload memory per destination is about this times three (one
    /// part filling, two in flight).
    pub part_size: u64,
}

/// Object stores refuse parts under 5 MiB (but the last) and over 5 GiB; 5 MiB parts allow
/// 48 GiB objects within S3's 10,000 parts, far above any etcd database.
const OBJECT_PART: (u64, u64, u64) = (5 << 20, 5 << 20, 5 << 30);
/// A local part is one positioned write; small parts keep memory low at no cost.
const LOCAL_PART: (u64, u64, u64) = (1 << 20, 64 << 10, 1 << 30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawDestination {
    name: DestName,
    url: DestUrl,
    #[serde(default)]
    options: RawOptions,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    part_size: Option<ByteSize>,
}

/// A destination's options as written. Pairs object_store would resolve by silently ignoring
/// one side are refused here, as the second one is read, so the error points at it.
#[derive(Default)]
pub(super) struct RawOptions(BTreeMap<String, String>);
impl<'de> Deserialize<'de> for RawOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawOptions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of option names to values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawOptions, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                    out.insert(k, v.0);
                    check_overrides(&out).map_err(de::Error::custom)?;
                }
                check_encryption(&out).map_err(de::Error::custom)?;
                Ok(RawOptions(out))
            }
        }
        d.deserialize_map(V)
    }
}

pub(super) struct DestName(String);
string_newtype!(DestName, |s| {
    if !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(DestName(s.to_owned()))
    } else {
        Err(format!(
            "destination name {s:?}: use 1-63 letters, digits, '-' or '_'"
        ))
    }
});

/// A YAML scalar kept as text (`true`, `9000`, `us-east-1`).
pub(super) struct Scalar(pub(super) String);
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a destination option's value is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionValue {
    /// The value itself.
    Text,
    /// A file whose first line is a secret (credentials never sit in the YAML).
    SecretFile,
    /// A file whose whole content is the value (a PEM bundle, a service-account JSON key).
    WholeFile,
}

/// One destination option: the camelCase key users write, the object_store configuration key
/// it sets (or a `lifeboat_` key lifeboat applies itself), and how its value is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOption {
    /// Key in the policy.
    pub key: &'static str,
    /// object_store configuration key, or `lifeboat_*`.
    pub target: &'static str,
    /// Value, secret file or whole file.
    pub value: OptionValue,
}

pub(super) const fn text(key: &'static str, target: &'static str) -> StoreOption {
    StoreOption {
        key,
        target,
        value: OptionValue::Text,
    }
}

pub(super) const fn secret(key: &'static str, target: &'static str) -> StoreOption {
    StoreOption {
        key,
        target,
        value: OptionValue::SecretFile,
    }
}

pub(super) const fn whole(key: &'static str, target: &'static str) -> StoreOption {
    StoreOption {
        key,
        target,
        value: OptionValue::WholeFile,
    }
}

/// Options of every networked destination (the same meaning for every scheme).
pub const CLIENT_OPTIONS: &[StoreOption] = &[
    text("allowHttp", "allow_http"),
    text("timeout", "timeout"),
    text("connectTimeout", "connect_timeout"),
    whole("caFile", "lifeboat_ca_pem"),
    text("retries", "lifeboat_retries"),
    text("retryTimeout", "lifeboat_retry_timeout"),
];

/// `s3://` options (S3 and S3-compatible stores).
pub const S3_OPTIONS: &[StoreOption] = &[
    text("endpoint", "aws_endpoint"),
    text("region", "aws_region"),
    text("virtualHostedStyle", "aws_virtual_hosted_style_request"),
    text("accessKeyId", "aws_access_key_id"),
    text("secretAccessKey", "aws_secret_access_key"),
    text("sessionToken", "aws_session_token"),
    secret("accessKeyIdFile", "aws_access_key_id"),
    secret("secretAccessKeyFile", "aws_secret_access_key"),
    secret("sessionTokenFile", "aws_session_token"),
    text("serverSideEncryption", "aws_server_side_encryption"),
    text("sseKmsKeyId", "aws_sse_kms_key_id"),
    text("sseBucketKeyEnabled", "aws_sse_bucket_key_enabled"),
];

/// `az://` options (Azure Blob Storage). Without credentials object_store uses the managed
/// identity of the host.
pub const AZURE_OPTIONS: &[StoreOption] = &[
    text("accountName", "azure_storage_account_name"),
    text("accessKey", "azure_storage_account_key"),
    secret("accessKeyFile", "azure_storage_account_key"),
    text("sasToken", "azure_storage_sas_key"),
    secret("sasTokenFile", "azure_storage_sas_key"),
    text("clientId", "azure_storage_client_id"),
    secret("clientSecretFile", "azure_storage_client_secret"),
    text("tenantId", "azure_storage_tenant_id"),
    text("msiEndpoint", "azure_msi_endpoint"),
    text("useEmulator", "azure_storage_use_emulator"),
    text("endpoint", "azure_storage_endpoint"),
];

/// `gs://` options (Google Cloud Storage). Without them object_store uses application default
/// credentials.
pub const GCS_OPTIONS: &[StoreOption] = &[
    whole("serviceAccountFile", "google_service_account_key"),
    text("applicationCredentials", "google_application_credentials"),
    text("endpoint", "google_base_url"),
];

impl DestinationKind {
    /// The scheme as written in URLs.
    pub fn scheme(&self) -> &'static str {
        match self {
            DestinationKind::S3 { .. } => "s3",
            DestinationKind::Gcs { .. } => "gs",
            DestinationKind::Azure { .. } => "az",
            DestinationKind::Local { .. } => "file",
        }
    }

    /// Every option this kind of destination takes.
    pub fn options(&self) -> Vec<StoreOption> {
        let own: &[StoreOption] = match self {
            DestinationKind::S3 { .. } => S3_OPTIONS,
            DestinationKind::Gcs { .. } => GCS_OPTIONS,
            DestinationKind::Azure { .. } => AZURE_OPTIONS,
            DestinationKind::Local { .. } => return Vec::new(),
        };
        own.iter().chain(CLIENT_OPTIONS).copied().collect()
    }
}

/// A destination URL, parsed.
pub(super) struct DestUrl {
    raw: String,
    kind: DestinationKind,
    prefix: String,
}
/// Parse a destination URL (`s3://bucket/prefix`, `file:///dir`) into its kind and key prefix.
pub fn parse_destination_url(s: &str) -> Result<(DestinationKind, String), String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!(
            "url {s:?}: {e}; expected s3://bucket/prefix, gs://bucket/prefix, \
             az://container/prefix or file:///absolute/dir"
        )
    })?;
    let (kind, prefix) = match url.scheme() {
        scheme @ ("s3" | "gs" | "az") => {
            let name = url.host_str().unwrap_or_default().to_owned();
            if name.is_empty() {
                let what = if scheme == "az" {
                    "container"
                } else {
                    "bucket"
                };
                return Err(format!(
                    "url {s:?} has no {what}; expected {scheme}://{what}/prefix"
                ));
            }
            let kind = match scheme {
                "s3" => DestinationKind::S3 { bucket: name },
                "gs" => DestinationKind::Gcs { bucket: name },
                _ => DestinationKind::Azure { container: name },
            };
            (kind, url.path().trim_matches('/').to_owned())
        }
        "file" => {
            if url.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(format!(
                    "url {s:?}: file URLs need an absolute path, e.g. file:///var/backups/etcd \
                     (three slashes)"
                ));
            }
            let path = url
                .to_file_path()
                .map_err(|()| format!("url {s:?} is not a local path"))?;
            (DestinationKind::Local { path }, String::new())
        }
        other => {
            return Err(format!(
                "url {s:?}: unknown scheme {other:?}; expected s3://, gs://, az:// or file://"
            ));
        }
    };
    Ok((kind, prefix))
}

string_newtype!(DestUrl, |s| {
    let (kind, prefix) = parse_destination_url(s)?;
    Ok(DestUrl {
        raw: s.to_owned(),
        kind,
        prefix,
    })
});

impl TryFrom<RawDestination> for DestinationSpec {
    type Error = String;
    fn try_from(raw: RawDestination) -> Result<Self, String> {
        let name = raw.name.0;
        let DestUrl {
            raw: url,
            kind,
            prefix,
        } = raw.url;
        let allowed = kind.options();
        let mut options = BTreeMap::new();
        for (k, v) in raw.options.0 {
            let Some(opt) = allowed.iter().find(|o| o.key == k) else {
                let valid: Vec<&str> = allowed.iter().map(|o| o.key).collect();
                return Err(format!(
                    "destination {name:?}: unknown option {k:?}; valid options for {}:// are: {}",
                    kind.scheme(),
                    if valid.is_empty() {
                        "(none)".to_owned()
                    } else {
                        valid.join(", ")
                    }
                ));
            };
            check_option_value(&name, opt, &v)?;
            options.insert(k, v);
        }
        // A secret given twice (inline and as a file) is ambiguous.
        for o in allowed
            .iter()
            .filter(|o| o.value == OptionValue::SecretFile)
        {
            if let Some(inline) = allowed.iter().find(|i| {
                i.target == o.target && i.value == OptionValue::Text && options.contains_key(i.key)
            }) && options.contains_key(o.key)
            {
                return Err(format!(
                    "destination {name:?}: {} and {} set the same secret; keep one (the file)",
                    inline.key, o.key
                ));
            }
        }
        let (default, min, max) = match kind {
            DestinationKind::Local { .. } => LOCAL_PART,
            _ => OBJECT_PART,
        };
        let part_size = raw.part_size.map_or(default, |b| b.0);
        if !(min..=max).contains(&part_size) {
            return Err(format!(
                "destination {name:?}: partSize {part_size} bytes is out of range for {}; use \
                 {} to {} bytes",
                url, min, max
            ));
        }
        Ok(DestinationSpec {
            name,
            url,
            kind,
            prefix,
            options,
            required: raw.required,
            part_size,
        })
    }
}

/// Two options of which object_store silently uses one and ignores the other.
pub(super) struct Override {
    scheme: &'static str,
    /// Any of these, set (to `when`, if given) ...
    winner: &'static [&'static str],
    when: Option<&'static str>,
    /// ... makes any of these be ignored.
    ignored: &'static [&'static str],
    /// What object_store does instead, and what to write.
    why: &'static str,
}

/// Pairs read off object_store 0.14's builders (`MicrosoftAzureBuilder::build` and its
/// credential order, `AmazonS3Builder`'s encryption headers, `GoogleCloudStorageBuilder::build`).
pub(super) const OVERRIDES: &[Override] = &[
    Override {
        scheme: "az",
        winner: &["useEmulator"],
        when: Some("true"),
        ignored: &["endpoint"],
        why: "useEmulator connects to http://127.0.0.1:10000 (or $AZURITE_BLOB_STORAGE_URL) and \
             ignores endpoint; for an emulator elsewhere drop useEmulator and set endpoint \
             (http://host:port/devstoreaccount1), accountName, accessKey and allowHttp",
    },
    Override {
        scheme: "az",
        winner: &["useEmulator"],
        when: Some("true"),
        ignored: &["msiEndpoint", "clientId", "clientSecretFile", "tenantId"],
        why: "the emulator is reached with an access key or SAS token only",
    },
    Override {
        scheme: "az",
        winner: &["useEmulator"],
        when: Some("true"),
        ignored: &["allowHttp"],
        why: "useEmulator always allows plain HTTP",
    },
    Override {
        scheme: "az",
        winner: &["accessKey", "accessKeyFile"],
        when: None,
        ignored: &[
            "sasToken",
            "sasTokenFile",
            "clientId",
            "clientSecretFile",
            "tenantId",
            "msiEndpoint",
        ],
        why: "an access key is used before any other credential; keep one credential",
    },
    Override {
        scheme: "az",
        winner: &["clientSecretFile"],
        when: None,
        ignored: &["sasToken", "sasTokenFile", "msiEndpoint"],
        why: "a client secret is used before a SAS token or managed identity; keep one credential",
    },
    Override {
        scheme: "az",
        winner: &["sasToken", "sasTokenFile"],
        when: None,
        ignored: &["msiEndpoint"],
        why: "a SAS token is used before managed identity; keep one credential",
    },
    Override {
        scheme: "gs",
        winner: &["serviceAccountFile"],
        when: None,
        ignored: &["applicationCredentials"],
        why: "a service account key is used and application credentials are never read; keep one",
    },
];

/// Refuse option combinations object_store would resolve by silently ignoring one side. The
/// winning options belong to one scheme each, so the table needs no scheme to apply.
pub(super) fn check_overrides(options: &BTreeMap<String, String>) -> Result<(), String> {
    for o in OVERRIDES {
        let Some(w) = o.winner.iter().find(|k| {
            options
                .get(**k)
                .is_some_and(|v| o.when.is_none_or(|w| v == w))
        }) else {
            continue;
        };
        if let Some(i) = o.ignored.iter().find(|k| options.contains_key(**k)) {
            let set = match o.when {
                Some(v) => format!("{w}: {v}"),
                None => (*w).to_owned(),
            };
            return Err(format!(
                "options {set} and {i} cannot be used together ({}:// ignores one): {}",
                o.scheme, o.why
            ));
        }
    }
    Ok(())
}

/// S3 encryption settings object_store only sends with a matching serverSideEncryption.
pub(super) fn check_encryption(options: &BTreeMap<String, String>) -> Result<(), String> {
    let sse = options.get("serverSideEncryption").map(String::as_str);
    let kms = matches!(sse, Some("aws:kms" | "aws:kms:dsse"));
    for key in ["sseKmsKeyId", "sseBucketKeyEnabled"] {
        if options.contains_key(key) && !kms {
            return Err(format!(
                "option {key} only applies with serverSideEncryption: aws:kms or aws:kms:dsse \
                 (it is {}); set one of those or remove {key}",
                sse.unwrap_or("not set")
            ));
        }
    }
    Ok(())
}

/// Values lifeboat or object_store would only refuse later, checked while parsing.
pub(super) fn check_option_value(dest: &str, o: &StoreOption, v: &str) -> Result<(), String> {
    let bad = |what: &str| {
        Err(format!(
            "destination {dest:?}: option {} = {v:?}: expected {what}",
            o.key
        ))
    };
    match o.key {
        "allowHttp" | "virtualHostedStyle" | "useEmulator" | "sseBucketKeyEnabled"
            if !matches!(v, "true" | "false") =>
        {
            return bad("true or false");
        }
        "timeout" | "connectTimeout" | "retryTimeout" if humantime::parse_duration(v).is_err() => {
            return bad("a duration such as 30s or 5m");
        }
        "retries" if !v.parse::<u32>().is_ok_and(|n| n <= 20) => {
            return bad("a number of retries from 0 to 20");
        }
        _ => {}
    }
    Ok(())
}
