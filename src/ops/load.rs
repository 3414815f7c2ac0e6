//! Turning a policy file into something runnable: parse it, read the files it names (recipients,
//! password, TLS, secret options) and build the destinations. No network traffic.

use crate::error::{Error, Kind, Result};
use crate::etcd::{Connection, Secret, TlsMaterial};
use crate::policy::{self, EncryptionSpec, Policy};
use crate::store::Destination;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed policy with everything it references loaded.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The policy file.
    pub path: PathBuf,
    /// The validated policy.
    pub policy: Policy,
    /// How to reach the cluster.
    pub etcd: Connection,
    /// age recipients (policy and recipientsFile); empty for `encryption: none`.
    pub recipients: Vec<age::x25519::Recipient>,
    /// The same recipients as text, for the manifest.
    pub recipient_strings: Vec<String>,
    /// Built destinations, in policy order.
    pub destinations: Vec<Destination>,
}

fn read_referenced(policy_path: &Path, what: &str, file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| {
        Error::new(
            Kind::Policy,
            format!(
                "{}: cannot read {what} {}: {e}; check the path and that lifeboat's user may read \
                 it",
                policy_path.display(),
                file.display()
            ),
        )
    })
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned()
}

/// Read, parse and validate a policy file and everything it names.
pub fn load_policy(path: &Path) -> Result<LoadedPolicy> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            Kind::Policy,
            format!("cannot read policy file {}: {e}", path.display()),
        )
    })?;
    let policy = policy::parse(&path.display().to_string(), &text)
        .map_err(|e| Error::new(Kind::Policy, e.to_string()))?;

    let (recipients, recipient_strings) = match &policy.encryption {
        EncryptionSpec::None => (Vec::new(), Vec::new()),
        EncryptionSpec::Age {
            recipients,
            recipients_file,
        } => {
            let mut texts: Vec<String> = recipients.clone();
            if let Some(f) = recipients_file {
                let content = read_referenced(path, "recipientsFile", f)?;
                for (n, line) in String::from_utf8_lossy(&content).lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    policy::parse_recipient(line).map_err(|e| {
                        Error::new(Kind::Policy, format!("{}:{}: {e}", f.display(), n + 1))
                    })?;
                    texts.push(line.to_owned());
                }
            }
            texts.dedup();
            if texts.is_empty() {
                return Err(Error::new(
                    Kind::Policy,
                    format!(
                        "{}: encryption has no recipients (recipientsFile is empty); add an age1... \
                         key or write `encryption: none`",
                        path.display()
                    ),
                ));
            }
            let parsed = texts
                .iter()
                .map(|t| policy::parse_recipient(t).expect("validated above"))
                .collect();
            (parsed, texts)
        }
    };

    let c = &policy.cluster;
    let tls = match &c.tls {
        None => None,
        Some(t) => Some(TlsMaterial {
            ca_pem: t
                .ca_file
                .as_ref()
                .map(|f| read_referenced(path, "tls.caFile", f))
                .transpose()?,
            client_pem: match &t.client {
                None => None,
                Some((cert, key)) => Some((
                    read_referenced(path, "tls.certFile", cert)?,
                    Secret(
                        String::from_utf8(read_referenced(path, "tls.keyFile", key)?).map_err(
                            |_| {
                                Error::new(
                                    Kind::Policy,
                                    format!("tls.keyFile {} is not PEM text", key.display()),
                                )
                            },
                        )?,
                    ),
                )),
            },
        }),
    };
    let auth = match &c.auth {
        None => None,
        Some(a) => {
            let pw = first_line(&read_referenced(
                path,
                "auth.passwordFile",
                &a.password_file,
            )?);
            if pw.is_empty() {
                return Err(Error::new(
                    Kind::Policy,
                    format!(
                        "{}: auth.passwordFile {} is empty; its first line must be the password",
                        path.display(),
                        a.password_file.display()
                    ),
                ));
            }
            Some((a.username.0.clone(), Secret(pw)))
        }
    };
    let etcd = Connection {
        endpoints: c.endpoints.clone(),
        tls,
        auth,
        connect_timeout: c.selection.status_timeout.0.min(Duration::from_secs(10)),
    };

    let mut destinations = Vec::new();
    for d in &policy.destinations {
        let mut opts = BTreeMap::new();
        let allowed = d.kind.options();
        for (k, v) in &d.options {
            let o = allowed
                .iter()
                .find(|o| o.key == k)
                .expect("options are validated while parsing");
            let what = format!("destination {:?} option {k}", d.name);
            let value = match o.value {
                policy::OptionValue::Text => v.clone(),
                policy::OptionValue::SecretFile => {
                    first_line(&read_referenced(path, &what, Path::new(v))?)
                }
                policy::OptionValue::WholeFile => {
                    String::from_utf8(read_referenced(path, &what, Path::new(v))?).map_err(
                        |_| {
                            Error::new(
                                Kind::Policy,
                                format!("{}: {what}: {v} is not text", path.display()),
                            )
                        },
                    )?
                }
            };
            opts.insert(o.target, value);
        }
        let dest = Destination::build(d, &opts).map_err(|e| {
            Error::new(
                Kind::Storage,
                format!("destination {:?} ({}): {e}", d.name, d.url),
            )
        })?;
        destinations.push(dest);
    }

    Ok(LoadedPolicy {
        path: path.to_owned(),
        policy,
        etcd,
        recipients,
        recipient_strings,
        destinations,
    })
}

/// Policy files from the command line: files as given, directories expanded to their `*.yaml`
/// and `*.yml` files; sorted, without duplicates, and at least one.
pub fn policy_files(named: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for p in named {
        if !p.is_dir() {
            paths.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| {
            Error::new(
                Kind::Policy,
                format!("cannot read policy directory {}: {e}", p.display()),
            )
        })?;
        for e in entries.flatten() {
            let f = e.path();
            if matches!(f.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                paths.push(f);
            }
        }
    }
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            "no policies: give policy files, or a directory holding *.yaml files",
        ));
    }
    Ok(paths)
}
