//! One stored value: which encoding it is in, and the object it holds.

use super::decode::{self, PROTO_MAGIC};
use super::encryption::{self, DecryptError, Envelope, Keyring};
use super::schema::Schema;
use serde_json::{Map, Value};

/// The prefix of CBOR values (self-described CBOR, tag 55799).
pub const CBOR_MAGIC: &[u8] = &[0xd9, 0xd9, 0xf7];

/// How a value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// `k8s\0` + runtime.Unknown: built-in kinds (apiVersion and kind when readable).
    Protobuf { api_version: String, kind: String },
    /// JSON: custom resources, CRDs, APIServices, or an apiserver run with JSON storage.
    Json,
    /// CBOR: custom resources under the CBORServingAndStorage feature gate.
    Cbor,
    /// Encrypted at rest.
    Encrypted(Envelope),
    /// Anything else: not an object kube-apiserver wrote.
    Other,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protobuf { .. } => f.write_str("protobuf"),
            Self::Json => f.write_str("json"),
            Self::Cbor => f.write_str("cbor"),
            Self::Encrypted(e) => write!(f, "{e}"),
            Self::Other => f.write_str("not an object"),
        }
    }
}

/// The encoding of a value from its first bytes.
pub fn detect(head: &[u8]) -> Encoding {
    if let Some(env) = encryption::envelope(head) {
        return Encoding::Encrypted(env);
    }
    if head.starts_with(PROTO_MAGIC) {
        let (api_version, kind) = decode::peek_type(head).unwrap_or_default();
        return Encoding::Protobuf { api_version, kind };
    }
    if head.starts_with(CBOR_MAGIC) {
        return Encoding::Cbor;
    }
    if head.trim_ascii_start().starts_with(b"{") {
        return Encoding::Json;
    }
    Encoding::Other
}

/// How many leading bytes of a value [`detect`] needs: the protobuf type meta, the encryption
/// header (with a KMS v2 key id when it comes early), or a few bytes to show. Listings keep only
/// these, so memory grows with the number of keys, not with the values.
pub fn head_len(v: &[u8]) -> usize {
    if v.starts_with(encryption::ENC_PREFIX) {
        if v.starts_with(b"k8s:enc:kms:v2:") {
            return 160;
        }
        // k8s:enc:<provider>:<version>:<key name>:
        let mut colons = 0;
        for (i, b) in v.iter().enumerate().take(256) {
            if *b == b':' {
                colons += 1;
                if colons == 5 {
                    return i + 1;
                }
            }
        }
        return 256;
    }
    if let Some(body) = v.strip_prefix(PROTO_MAGIC) {
        // Field 1 (the type meta) comes first: its tag, its length, then the bytes.
        if body.first() == Some(&0x0a) {
            let mut len = 0usize;
            for (i, b) in body.iter().enumerate().skip(1).take(5) {
                len |= usize::from(b & 0x7f) << (7 * (i - 1));
                if b & 0x80 == 0 {
                    return PROTO_MAGIC.len() + i + 1 + len.min(512);
                }
            }
        }
        return 64;
    }
    16
}

/// An object read from a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Kubernetes JSON, `kind` and `apiVersion` first.
    pub object: Map<String, Value>,
    /// The outer encoding (an encrypted value says with what).
    pub encoding: Encoding,
    /// Fields dropped and other things the reader should know.
    pub warnings: Vec<String>,
}

/// Why a value gave no object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Encrypted and not openable here.
    Encrypted(DecryptError),
    /// Not an object; says what it is instead.
    NotObject(String),
    /// An object this build cannot decode (unknown kind, damaged bytes).
    Undecodable(String),
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Encrypted(e) => write!(f, "{e}"),
            Self::NotObject(s) => write!(f, "not a Kubernetes object: {s}"),
            Self::Undecodable(s) => write!(f, "cannot decode: {s}"),
        }
    }
}

/// Decode the value stored under `etcd_key` into an object, decrypting with `keys` if needed.
pub fn read(
    schema: &Schema,
    keys: &Keyring,
    etcd_key: &[u8],
    value: &[u8],
) -> Result<Object, ValueError> {
    let (plain, outer) = match encryption::envelope(value) {
        Some(env) => (
            keys.decrypt(etcd_key, value)
                .map_err(ValueError::Encrypted)?,
            Some(env),
        ),
        None => (value.to_vec(), None),
    };
    let mut obj = read_plain(schema, &plain)?;
    if let Some(env) = outer {
        obj.encoding = Encoding::Encrypted(env);
    }
    Ok(obj)
}

fn read_plain(schema: &Schema, value: &[u8]) -> Result<Object, ValueError> {
    match detect(value) {
        Encoding::Protobuf { .. } => {
            let d = decode::decode(schema, value).map_err(ValueError::Undecodable)?;
            Ok(Object {
                encoding: Encoding::Protobuf {
                    api_version: d.api_version,
                    kind: d.kind,
                },
                object: d.object,
                warnings: d.warnings,
            })
        }
        Encoding::Json => {
            let v: Value = serde_json::from_slice(value)
                .map_err(|e| ValueError::NotObject(format!("JSON that does not parse: {e}")))?;
            object_of(v, Encoding::Json)
        }
        Encoding::Cbor => {
            let v: ciborium::Value = ciborium::from_reader(value)
                .map_err(|e| ValueError::Undecodable(format!("CBOR: {e}")))?;
            object_of(cbor_to_json(v, 0)?, Encoding::Cbor)
        }
        Encoding::Encrypted(e) => Err(ValueError::NotObject(format!(
            "encrypted twice ({e} inside an encrypted value)"
        ))),
        Encoding::Other => Err(ValueError::NotObject(describe_bytes(value))),
    }
}

fn object_of(v: Value, encoding: Encoding) -> Result<Object, ValueError> {
    match v {
        Value::Object(m) if m.get("kind").is_some_and(Value::is_string) => Ok(Object {
            object: m,
            encoding,
            warnings: Vec::new(),
        }),
        Value::Object(_) => Err(ValueError::NotObject(format!(
            "{encoding} object without a kind"
        ))),
        other => Err(ValueError::NotObject(format!(
            "{encoding} {}",
            match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                _ => "null",
            }
        ))),
    }
}

/// Kubernetes CBOR to JSON: the self-describe tag is dropped and byte strings are text (the
/// apiserver encodes strings as byte strings).
fn cbor_to_json(v: ciborium::Value, depth: usize) -> Result<Value, ValueError> {
    use ciborium::Value as C;
    if depth > 128 {
        return Err(ValueError::Undecodable("CBOR nested too deep".into()));
    }
    Ok(match v {
        C::Tag(_, inner) => cbor_to_json(*inner, depth + 1)?,
        C::Bytes(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        C::Text(s) => Value::String(s),
        C::Integer(i) => {
            let i = i128::from(i);
            i64::try_from(i).map_or_else(|_| Value::String(i.to_string()), Value::from)
        }
        C::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        C::Bool(b) => Value::Bool(b),
        C::Null => Value::Null,
        C::Array(a) => Value::Array(
            a.into_iter()
                .map(|x| cbor_to_json(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        C::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                // Kubernetes objects only have string keys (written as byte strings). Anything
                // else is refused rather than printed: nested keys printed as text grow with
                // every level of escaping (found by the fuzzer).
                let k = match k {
                    C::Text(s) => s,
                    C::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    C::Integer(i) => i128::from(i).to_string(),
                    _ => {
                        return Err(ValueError::Undecodable(
                            "CBOR map key that is not a string".into(),
                        ));
                    }
                };
                out.insert(k, cbor_to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        _ => Value::Null,
    })
}

/// What a non-object value looks like: its size and first bytes.
pub fn describe_bytes(value: &[u8]) -> String {
    let head = &value[..value.len().min(16)];
    if !head.is_empty() && head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!(
            "{} bytes of text starting {:?}",
            value.len(),
            String::from_utf8_lossy(head)
        )
    } else {
        format!("{} bytes starting 0x{}", value.len(), hex::encode(head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::schema::schema;

    #[test]
    fn heads_hold_what_detection_needs() {
        for v in [
            &crate::k8s::decode::PROTO_MAGIC
                .iter()
                .chain(b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x40")
                .copied()
                .chain(std::iter::repeat_n(b'x', 200))
                .collect::<Vec<u8>>()[..],
            b"k8s:enc:aescbc:v1:key1:0123456789abcdef0123456789abcdef0123456789abcdef",
            b"{\"kind\":\"Widget\",\"apiVersion\":\"example.com/v1\",\"metadata\":{}}",
        ] {
            let n = head_len(v).min(v.len());
            assert!(n < v.len(), "keeps less than the value");
            assert_eq!(detect(&v[..n]), detect(v));
        }
    }

    #[test]
    fn values_are_classified() {
        let s = schema();
        let k = Keyring::default();
        assert_eq!(detect(b"{\"kind\":\"Widget\"}"), Encoding::Json);
        assert!(
            read(
                s,
                &k,
                b"/x",
                b"{\"kind\":\"Widget\",\"apiVersion\":\"example.com/v1\"}"
            )
            .is_ok()
        );
        assert!(matches!(
            read(s, &k, b"/x", b"[1]"),
            Err(ValueError::NotObject(_))
        ));
        assert!(
            matches!(read(s, &k, b"/x", b"\x00\x01garbage"), Err(ValueError::NotObject(m)) if m.contains("0x0001"))
        );
        assert!(matches!(
            read(s, &k, b"/x", b"k8s\0\x0a\x02"),
            Err(ValueError::Undecodable(_))
        ));
        assert!(matches!(
            read(
                s,
                &k,
                b"/x",
                b"k8s:enc:aescbc:v1:key1:0123456789abcdef0123456789abcdef"
            ),
            Err(ValueError::Encrypted(DecryptError::NoKey(_)))
        ));
        // CBOR: tag 55799 around {"kind": b"Widget"} with byte-string keys and values.
        let mut cbor = vec![0xd9, 0xd9, 0xf7, 0xa1, 0x44];
        cbor.extend_from_slice(b"kind");
        cbor.push(0x46);
        cbor.extend_from_slice(b"Widget");
        let o = read(s, &k, b"/x", &cbor).unwrap();
        assert_eq!(o.object["kind"], "Widget");
        assert_eq!(o.encoding, Encoding::Cbor);
        // A map used as a key, nested: refused at once, not printed (the fuzzer's hang).
        let mut nested = vec![0xd9, 0xd9, 0xf7];
        nested.extend(std::iter::repeat_n(0xa1, 40));
        nested.extend_from_slice(&[0x41, b'k', 0x41, b'v']);
        nested.extend(std::iter::repeat_n(0x00, 40));
        assert!(matches!(
            read(s, &k, b"/x", &nested),
            Err(ValueError::Undecodable(_))
        ));
    }
}
