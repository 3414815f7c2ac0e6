//! Encryption at rest as kube-apiserver does it: `k8s:enc:<provider>:v1:<key name>:` + ciphertext.
//! aescbc, aesgcm and secretbox decrypt offline with the keys of an `EncryptionConfiguration`;
//! KMS values are described (provider, key id), never decrypted. Key material never appears in
//! an error or a debug print.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use serde::Deserialize;

/// The marker every encrypted value starts with.
pub const ENC_PREFIX: &[u8] = b"k8s:enc:";

/// What an encrypted value says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// aescbc, aesgcm or secretbox, with the name of the key that sealed it.
    Local { provider: Provider, key: String },
    /// KMS v1 or v2: only the external KMS can unwrap the data key.
    Kms {
        version: u8,
        name: String,
        key_id: Option<String>,
    },
    /// `k8s:enc:` with a provider this tool does not know.
    Unknown { provider: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Aescbc,
    Aesgcm,
    Secretbox,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Self::Aescbc => "aescbc",
            Self::Aesgcm => "aesgcm",
            Self::Secretbox => "secretbox",
        }
    }
}

impl std::fmt::Display for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local { provider, key } => write!(f, "{}:{key}", provider.name()),
            Self::Kms {
                version,
                name,
                key_id: Some(id),
            } => write!(f, "kms:v{version}:{name} (keyID {id})"),
            Self::Kms { version, name, .. } => write!(f, "kms:v{version}:{name}"),
            Self::Unknown { provider } => write!(f, "{provider} (unknown provider)"),
        }
    }
}

/// Read the envelope of an encrypted value; `None` when the value is not encrypted.
pub fn envelope(value: &[u8]) -> Option<Envelope> {
    let rest = value.strip_prefix(ENC_PREFIX)?;
    let (provider, rest) = split_colon(rest)?;
    let (version, rest) = split_colon(rest).unwrap_or(("", rest));
    let (name, body) = split_colon(rest).unwrap_or(("", rest));
    let local = |p| Envelope::Local {
        provider: p,
        key: name.to_string(),
    };
    Some(match (provider, version) {
        ("aescbc", "v1") => local(Provider::Aescbc),
        ("aesgcm", "v1") => local(Provider::Aesgcm),
        ("secretbox", "v1") => local(Provider::Secretbox),
        ("kms", "v1") => Envelope::Kms {
            version: 1,
            name: name.into(),
            key_id: None,
        },
        ("kms", "v2") => Envelope::Kms {
            version: 2,
            name: name.into(),
            key_id: kms_v2_key_id(body),
        },
        (p, v) => Envelope::Unknown {
            provider: format!("{p}:{v}"),
        },
    })
}

fn split_colon(b: &[u8]) -> Option<(&str, &[u8])> {
    let i = b.iter().take(256).position(|&c| c == b':')?;
    Some((std::str::from_utf8(&b[..i]).ok()?, &b[i + 1..]))
}

/// KMS v2 stores a protobuf `EncryptedObject`; field 2 is the key id.
fn kms_v2_key_id(body: &[u8]) -> Option<String> {
    super::decode::string_field(body, 2)
}

/// One key of a local provider. Debug never shows the secret.
#[derive(Clone)]
struct Key {
    provider: Provider,
    name: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} ({} bytes)",
            self.provider.name(),
            self.name,
            self.secret.len()
        )
    }
}

/// The keys of one or more EncryptionConfiguration files.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<Key>,
    /// KMS providers named in the configuration (for messages).
    kms: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigDoc {
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
struct ProviderConfig {
    aescbc: Option<KeysConfig>,
    aesgcm: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
    kms: Option<KmsConfig>,
}

#[derive(Deserialize)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

#[derive(Deserialize)]
struct KmsConfig {
    name: Option<String>,
}

/// Why a value could not be decrypted. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptError {
    /// No configured key has this provider and name.
    NoKey(Envelope),
    /// KMS: not decodable offline.
    Kms(Envelope),
    /// The key is there but the value does not open with it.
    Failed { envelope: Envelope, why: String },
}

impl std::fmt::Display for DecryptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoKey(Envelope::Local { provider, key }) => write!(
                f,
                "encrypted with {} key {key:?}; pass the apiserver's EncryptionConfiguration \
                 holding that key with --encryption-config",
                provider.name()
            ),
            Self::NoKey(e) => write!(f, "encrypted with {e}; no configured provider reads it"),
            Self::Kms(e) => write!(
                f,
                "encrypted with {e}: the data key is wrapped by an external KMS, so it cannot be \
                 decrypted offline; restore the snapshot to an etcd the apiserver can reach"
            ),
            Self::Failed { envelope, why } => write!(
                f,
                "encrypted with {envelope}: the configured key of that name does not open it \
                 ({why}); the key may have been replaced by another with the same name"
            ),
        }
    }
}

impl Keyring {
    /// Parse an EncryptionConfiguration (YAML or JSON). Errors name the file's problem, never a
    /// secret.
    pub fn add_config(&mut self, text: &str) -> Result<(), String> {
        let doc: ConfigDoc = serde_yaml_ng::from_str(text)
            .map_err(|e| format!("not an EncryptionConfiguration: {e}"))?;
        if let Some(k) = &doc.kind
            && k != "EncryptionConfiguration"
            && k != "EncryptionConfig"
        {
            return Err(format!("kind is {k}, expected EncryptionConfiguration"));
        }
        if doc.resources.is_empty() {
            return Err("it lists no resources".into());
        }
        for r in doc.resources {
            for p in r.providers {
                for (provider, keys) in [
                    (Provider::Aescbc, p.aescbc),
                    (Provider::Aesgcm, p.aesgcm),
                    (Provider::Secretbox, p.secretbox),
                ] {
                    for k in keys.map(|k| k.keys).unwrap_or_default() {
                        let secret = base64::engine::general_purpose::STANDARD
                            .decode(k.secret.trim())
                            .map_err(|_| {
                                format!(
                                    "{} key {:?}: the secret is not valid base64",
                                    provider.name(),
                                    k.name
                                )
                            })?;
                        let ok = match provider {
                            Provider::Aescbc | Provider::Aesgcm => {
                                matches!(secret.len(), 16 | 24 | 32)
                            }
                            Provider::Secretbox => secret.len() == 32,
                        };
                        if !ok {
                            return Err(format!(
                                "{} key {:?}: {} bytes is not a valid key size",
                                provider.name(),
                                k.name,
                                secret.len()
                            ));
                        }
                        if !self.keys.iter().any(|x| {
                            x.provider == provider && x.name == k.name && x.secret == secret
                        }) {
                            self.keys.push(Key {
                                provider,
                                name: k.name,
                                secret,
                            });
                        }
                    }
                }
                if let Some(kms) = p.kms {
                    self.kms.push(kms.name.unwrap_or_default());
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key for this envelope is configured.
    pub fn can_open(&self, env: &Envelope) -> bool {
        match env {
            Envelope::Local { provider, key } => self
                .keys
                .iter()
                .any(|k| k.provider == *provider && k.name == *key),
            _ => false,
        }
    }

    /// Decrypt `value` stored under `etcd_key` (aesgcm authenticates the key). Keys with the
    /// envelope's name are tried in configuration order (rotations may reuse a name).
    pub fn decrypt(&self, etcd_key: &[u8], value: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let env = envelope(value).ok_or_else(|| DecryptError::Failed {
            envelope: Envelope::Unknown {
                provider: "none".into(),
            },
            why: "the value is not encrypted".into(),
        })?;
        let Envelope::Local { provider, key } = &env else {
            return Err(match env {
                Envelope::Kms { .. } => DecryptError::Kms(env),
                _ => DecryptError::NoKey(env),
            });
        };
        let header = format!("k8s:enc:{}:v1:{key}:", provider.name());
        let body = &value[header.len().min(value.len())..];
        let mut last = None;
        for k in self
            .keys
            .iter()
            .filter(|k| k.provider == *provider && k.name == *key)
        {
            match open(*provider, &k.secret, etcd_key, body) {
                Ok(p) => return Ok(p),
                Err(why) => last = Some(why),
            }
        }
        Err(match last {
            None => DecryptError::NoKey(env),
            Some(why) => DecryptError::Failed { envelope: env, why },
        })
    }
}

fn open(p: Provider, secret: &[u8], etcd_key: &[u8], body: &[u8]) -> Result<Vec<u8>, String> {
    match p {
        Provider::Aescbc => {
            use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
            if body.len() < 32 || !body.len().is_multiple_of(16) {
                return Err(format!(
                    "{} bytes is not an IV and whole AES blocks",
                    body.len()
                ));
            }
            let (iv, ct) = body.split_at(16);
            let bad = |_| "bad padding (wrong key or damaged value)".to_string();
            match secret.len() {
                16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(secret, iv)
                    .map_err(|e| e.to_string())?
                    .decrypt_padded_vec_mut::<Pkcs7>(ct)
                    .map_err(bad),
                24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(secret, iv)
                    .map_err(|e| e.to_string())?
                    .decrypt_padded_vec_mut::<Pkcs7>(ct)
                    .map_err(bad),
                _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(secret, iv)
                    .map_err(|e| e.to_string())?
                    .decrypt_padded_vec_mut::<Pkcs7>(ct)
                    .map_err(bad),
            }
        }
        Provider::Aesgcm => {
            if body.len() < 12 + 16 {
                return Err(format!(
                    "{} bytes is shorter than a nonce and a tag",
                    body.len()
                ));
            }
            let (nonce, ct) = body.split_at(12);
            let payload = Payload {
                msg: ct,
                aad: etcd_key,
            };
            let nonce = aes_gcm::Nonce::from_slice(nonce);
            let bad = |_| {
                "authentication failed (wrong key, damaged value, or a value copied from another \
                 etcd key)"
                    .to_string()
            };
            match secret.len() {
                16 => aes_gcm::Aes128Gcm::new_from_slice(secret)
                    .map_err(|e| e.to_string())?
                    .decrypt(nonce, payload)
                    .map_err(bad),
                24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(
                    secret,
                )
                .map_err(|e| e.to_string())?
                .decrypt(nonce, payload)
                .map_err(bad),
                _ => aes_gcm::Aes256Gcm::new_from_slice(secret)
                    .map_err(|e| e.to_string())?
                    .decrypt(nonce, payload)
                    .map_err(bad),
            }
        }
        Provider::Secretbox => {
            use crypto_secretbox::aead::Aead as _;
            use crypto_secretbox::{KeyInit as _, XSalsa20Poly1305};
            if body.len() < 24 + 16 {
                return Err(format!(
                    "{} bytes is shorter than a nonce and a tag",
                    body.len()
                ));
            }
            let (nonce, ct) = body.split_at(24);
            XSalsa20Poly1305::new_from_slice(secret)
                .map_err(|e| e.to_string())?
                .decrypt(crypto_secretbox::Nonce::from_slice(nonce), ct)
                .map_err(|_| "authentication failed (wrong key or damaged value)".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_name_provider_and_key() {
        assert_eq!(envelope(b"k8s\0abc"), None);
        assert_eq!(
            envelope(b"k8s:enc:aescbc:v1:key1:xxxx")
                .unwrap()
                .to_string(),
            "aescbc:key1"
        );
        assert_eq!(
            envelope(b"k8s:enc:kms:v1:vault:xxxx").unwrap().to_string(),
            "kms:v1:vault"
        );
        // EncryptedObject{encryptedData=1:"x", keyID=2:"kid-7"}
        let mut v = b"k8s:enc:kms:v2:cloudkms:".to_vec();
        v.extend_from_slice(&[0x0a, 1, b'x', 0x12, 5]);
        v.extend_from_slice(b"kid-7");
        assert_eq!(
            envelope(&v).unwrap().to_string(),
            "kms:v2:cloudkms (keyID kid-7)"
        );
        assert!(matches!(
            envelope(b"k8s:enc:"),
            None | Some(Envelope::Unknown { .. })
        ));
    }

    #[test]
    fn config_errors_never_show_secrets() {
        let mut k = Keyring::default();
        let e = k
            .add_config(
                "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  \
                 - aescbc:\n      keys:\n      - name: k1\n        secret: c2VjcmV0LXNlY3JldA==\n",
            )
            .unwrap_err();
        assert!(e.contains("k1") && e.contains("13 bytes"), "{e}");
        assert!(
            !e.contains("c2VjcmV0") && !e.contains("secret-secret"),
            "{e}"
        );
        assert!(!format!("{k:?}").contains("c2VjcmV0"));
    }
}
