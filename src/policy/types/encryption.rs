//! `spec.encryption`: age recipients, or `none` said explicitly.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::path::PathBuf;
use std::str::FromStr;

/// Encryption: age recipients, or `none` said explicitly.
#[derive(Debug, Clone)]
pub enum EncryptionSpec {
    /// `encryption: none`: stored objects are only compressed.
    None,
    /// age X25519 recipients.
    Age {
        /// Recipients written in the policy (`age1...`).
        recipients: Vec<String>,
        /// File with more recipients, one per line (`#` comments allowed).
        recipients_file: Option<PathBuf>,
    },
}

impl EncryptionSpec {
    /// Whether stored objects are encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, EncryptionSpec::Age { .. })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAge {
    #[serde(default)]
    recipients: Vec<Recipient>,
    #[serde(default)]
    recipients_file: Option<PathBuf>,
}

pub(super) struct Recipient(String);
string_newtype!(Recipient, |s| parse_recipient(s)
    .map(|_| Recipient(s.trim().to_owned())));

/// Parse one age X25519 recipient, with an error that says what is expected.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, String> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|e| {
        let shown: String = s.chars().take(16).collect();
        format!(
            "recipient {shown:?}...: not an age X25519 public key ({e}); expected age1... as \
             printed by `lifeboat key generate` or `age-keygen -y`"
        )
    })
}

impl<'de> Deserialize<'de> for EncryptionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = EncryptionSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`none` or a mapping with recipients and/or recipientsFile")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s == "none" {
                    Ok(EncryptionSpec::None)
                } else {
                    Err(E::custom(format!(
                        "encryption: expected `none` or {{recipients: [age1...]}}, found {s:?}"
                    )))
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = RawAge::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if raw.recipients.is_empty() && raw.recipients_file.is_none() {
                    return Err(de::Error::custom(
                        "encryption: no recipients; list age1... public keys in recipients or \
                         name a recipientsFile, or write `encryption: none` to store backups \
                         unencrypted",
                    ));
                }
                Ok(EncryptionSpec::Age {
                    recipients: raw.recipients.into_iter().map(|r| r.0).collect(),
                    recipients_file: raw.recipients_file,
                })
            }
        }
        d.deserialize_any(V)
    }
}
