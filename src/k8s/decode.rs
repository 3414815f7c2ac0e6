//! Kubernetes protobuf (`k8s\0` + `runtime.Unknown`) to the JSON kube-apiserver would serve:
//! a protobuf wire reader driven by the generated schema, and an emitter that does what Go's
//! encoding/json does with the Go structs (names, inlined embeddings, pointers, `omitempty`,
//! `omitzero`, the types with their own JSON form). Pure and bounds-checked: any input gives a
//! value or an error, never a panic.

use super::schema::{Field, Message, Schema, Special};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The magic in front of every protobuf value kube-apiserver stores.
pub const PROTO_MAGIC: &[u8] = b"k8s\0";

/// Messages nest far less deep than this in any real object; a bound keeps hostile input from
/// exhausting the stack.
const MAX_DEPTH: usize = 64;

/// An object decoded from protobuf.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub api_version: String,
    pub kind: String,
    /// The object as Kubernetes JSON, `kind` and `apiVersion` first.
    pub object: Map<String, Value>,
    /// Fields the schema does not know (dropped, as Go drops them), and similar oddities.
    pub warnings: Vec<String>,
}

/// The `runtime.Unknown` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
}

/// Read the envelope of a `k8s\0` value.
pub fn envelope(value: &[u8]) -> Result<Envelope<'_>, String> {
    let body = value
        .strip_prefix(PROTO_MAGIC)
        .ok_or("not a Kubernetes protobuf value (no k8s\\0 prefix)")?;
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    for f in fields(body).map_err(|e| format!("runtime.Unknown: {e}"))? {
        match (f.0, f.1) {
            (1, Wire::Bytes(tm)) => {
                for t in fields(tm).map_err(|e| format!("runtime.TypeMeta: {e}"))? {
                    match t {
                        (1, Wire::Bytes(b)) => env.api_version = utf8(b),
                        (2, Wire::Bytes(b)) => env.kind = utf8(b),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(raw)) => env.raw = raw,
            _ => {}
        }
    }
    if env.kind.is_empty() {
        return Err("runtime.Unknown carries no kind".into());
    }
    Ok(env)
}

/// Decode a `k8s\0` value with `schema`.
pub fn decode(schema: &Schema, value: &[u8]) -> Result<Decoded, String> {
    let env = envelope(value)?;
    let name = schema
        .message_for(&env.api_version, &env.kind)
        .ok_or_else(|| {
            format!(
                "kind {} of {} is not in the Kubernetes {} schema lifeboat was built with",
                env.kind,
                if env.api_version.is_empty() {
                    "(no apiVersion)"
                } else {
                    &env.api_version
                },
                schema.release
            )
        })?;
    let mut e = Emitter {
        schema,
        warnings: Vec::new(),
        depth: 0,
    };
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(env.kind.clone()));
    object.insert("apiVersion".into(), Value::String(env.api_version.clone()));
    e.message_into(&name, env.raw, &mut object)?;
    Ok(Decoded {
        api_version: env.api_version,
        kind: env.kind,
        object,
        warnings: e.warnings,
    })
}

/// A field's value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err("varint overflows 64 bits".into());
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            format!(
                "field of {n} bytes at offset {} runs past the end ({} bytes)",
                pos,
                b.len()
            )
        })?;
    let s = &b[*pos..end];
    *pos = end;
    Ok(s)
}

/// All fields of a message, in wire order.
fn fields(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let no = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        if no == 0 {
            return Err("field number 0".into());
        }
        let w = match key & 7 {
            0 => Wire::Varint(varint(b, &mut pos)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(b, &mut pos, 8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = usize::try_from(varint(b, &mut pos)?).map_err(|_| "length too large")?;
                Wire::Bytes(take(b, &mut pos, n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                take(b, &mut pos, 4)?.try_into().expect("4 bytes"),
            )),
            t => return Err(format!("unsupported wire type {t} (field {no})")),
        };
        out.push((no, w));
    }
    Ok(out)
}

/// The last string field `no` of a message, if the bytes parse as one.
pub(crate) fn string_field(b: &[u8], no: u32) -> Option<String> {
    fields(b)
        .ok()?
        .into_iter()
        .rev()
        .find_map(|(n, w)| match w {
            Wire::Bytes(s) if n == no => Some(utf8(s)),
            _ => None,
        })
}

/// apiVersion and kind from the start of a `k8s\0` value, which may be cut short (listings keep
/// only the first bytes of each value). The type meta is the envelope's first field.
pub fn peek_type(head: &[u8]) -> Option<(String, String)> {
    let body = head.strip_prefix(PROTO_MAGIC)?;
    let mut pos = 0;
    if varint(body, &mut pos).ok()? != 0x0a {
        return None;
    }
    let n = usize::try_from(varint(body, &mut pos).ok()?).ok()?;
    let tm = body.get(pos..pos.checked_add(n)?)?;
    Some((
        string_field(tm, 1).unwrap_or_default(),
        string_field(tm, 2)?,
    ))
}

fn utf8(b: &[u8]) -> String {
    // Go's encoding/json also replaces invalid UTF-8 with U+FFFD.
    String::from_utf8_lossy(b).into_owned()
}

struct Emitter<'s> {
    schema: &'s Schema,
    warnings: Vec<String>,
    depth: usize,
}

/// What a single (non-repeated) field holds after decoding: its wire value, or nothing.
type Slot<'a> = Option<Wire<'a>>;

impl<'s> Emitter<'s> {
    fn msg(&self, name: &str) -> Result<&'s Message, String> {
        self.schema
            .messages
            .get(name)
            .ok_or_else(|| format!("schema has no message {name}"))
    }

    /// Print the fields of message `name` (wire bytes `data`) into `out`.
    fn message_into(
        &mut self,
        name: &str,
        data: &[u8],
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("messages nested deeper than {MAX_DEPTH}"));
        }
        let msg = self.msg(name)?;
        let wire = fields(data).map_err(|e| format!("{name}: {e}"))?;
        let mut by_no: BTreeMap<u32, Vec<Wire<'_>>> = BTreeMap::new();
        for (no, w) in wire {
            by_no.entry(no).or_default().push(w);
        }
        for no in by_no.keys() {
            if !msg.fields.iter().any(|f| f.no == *no) {
                self.warnings.push(format!(
                    "{name}: unknown field number {no} dropped (written by a newer or older \
                     Kubernetes than the {} schema)",
                    self.schema.release
                ));
            }
        }
        for f in &msg.fields {
            let vals = by_no.get(&f.no).map(Vec::as_slice).unwrap_or(&[]);
            self.field(name, f, vals, out)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn field(
        &mut self,
        parent: &str,
        f: &Field,
        vals: &[Wire<'_>],
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        if let Some((kt, vt)) = &f.map {
            let mut m = BTreeMap::new();
            for w in vals {
                let Wire::Bytes(entry) = w else {
                    self.bad_wire(parent, f);
                    continue;
                };
                let (mut k, mut v): (Slot<'_>, Slot<'_>) = (None, None);
                for (no, ew) in fields(entry).map_err(|e| format!("{parent}.{}: {e}", f.json))? {
                    match no {
                        1 => k = Some(ew),
                        2 => v = Some(ew),
                        _ => {}
                    }
                }
                let key = match self.single(parent, f, kt, k)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let val = self.single(parent, f, vt, v)?;
                m.insert(key, val);
            }
            if m.is_empty() {
                if !f.omitempty {
                    out.insert(f.json.clone(), Value::Null);
                }
            } else {
                out.insert(f.json.clone(), Value::Object(m.into_iter().collect()));
            }
            return Ok(());
        }
        let ty = f.ty.as_deref().unwrap_or("string");
        if f.repeated {
            let mut items = Vec::new();
            for w in vals {
                match (w, is_varint_scalar(ty)) {
                    // Packed repeated scalars: accepted as Go's protobuf reader accepts them.
                    (Wire::Bytes(b), true) => {
                        let mut pos = 0;
                        while pos < b.len() {
                            let v = varint(b, &mut pos)
                                .map_err(|e| format!("{parent}.{}: {e}", f.json))?;
                            items.push(self.single(parent, f, ty, Some(Wire::Varint(v)))?);
                        }
                    }
                    _ => items.push(self.single(parent, f, ty, Some(*w))?),
                }
            }
            if items.is_empty() {
                if !f.omitempty {
                    out.insert(f.json.clone(), Value::Null);
                }
            } else {
                out.insert(f.json.clone(), Value::Array(items));
            }
            return Ok(());
        }
        let last = vals.last().copied();
        if f.inline {
            let data = match last {
                Some(Wire::Bytes(b)) => b,
                None => &[],
                Some(_) => {
                    self.bad_wire(parent, f);
                    &[]
                }
            };
            return self.message_into(ty, data, out);
        }
        if last.is_none() && f.pointer {
            if !(f.omitempty || f.omitzero) {
                out.insert(f.json.clone(), Value::Null);
            }
            return Ok(());
        }
        let v = self.single(parent, f, ty, last)?;
        let special = self.schema.messages.get(ty).and_then(|m| m.special);
        if !f.pointer {
            let empty = match (&v, special) {
                // Go's omitempty never omits a struct; of the special types only the named
                // slices are not structs.
                (Value::Array(a), Some(Special::BareArray)) => a.is_empty(),
                (Value::Null, Some(Special::BareArray)) => true,
                (_, Some(_)) => false,
                (Value::Object(_), None) if !is_scalar(ty) => false,
                (v, _) => is_zero_scalar(v),
            };
            if f.omitempty && empty {
                return Ok(());
            }
            if f.omitzero && (empty || self.is_zero(ty, last)) {
                return Ok(());
            }
        }
        out.insert(f.json.clone(), v);
        Ok(())
    }

    /// Whether a struct-typed field holds Go's zero value (for `omitzero`).
    fn is_zero(&self, ty: &str, w: Slot<'_>) -> bool {
        if is_scalar(ty) {
            return false; // handled by the caller
        }
        match w {
            None => true,
            Some(Wire::Bytes(b)) => match fields(b) {
                Ok(fs) => fs.iter().all(|(_, w)| match w {
                    Wire::Varint(v) | Wire::Fixed64(v) => *v == 0,
                    Wire::Fixed32(v) => *v == 0,
                    Wire::Bytes(b) => b.is_empty(),
                }),
                Err(_) => false,
            },
            Some(_) => false,
        }
    }

    fn bad_wire(&mut self, parent: &str, f: &Field) {
        self.warnings.push(format!(
            "{parent}.{}: unexpected wire type for field {} (skipped)",
            f.json, f.no
        ));
    }

    /// One value of type `ty`; `None` is the type's Go zero value.
    fn single(&mut self, parent: &str, f: &Field, ty: &str, w: Slot<'_>) -> Result<Value, String> {
        let mismatch = |e: &mut Self| {
            e.bad_wire(parent, f);
            Ok(Value::Null)
        };
        Ok(match ty {
            "string" => match w {
                None => Value::String(String::new()),
                Some(Wire::Bytes(b)) => Value::String(utf8(b)),
                Some(_) => return mismatch(self),
            },
            "bytes" => match w {
                None => Value::Null,
                Some(Wire::Bytes(b)) => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
                }
                Some(_) => return mismatch(self),
            },
            "bool" => match w {
                None => Value::Bool(false),
                Some(Wire::Varint(v)) => Value::Bool(v != 0),
                Some(_) => return mismatch(self),
            },
            "int32" => match w {
                None => Value::from(0),
                Some(Wire::Varint(v)) => Value::from(v as i32),
                Some(_) => return mismatch(self),
            },
            "int64" => match w {
                None => Value::from(0),
                Some(Wire::Varint(v)) => Value::from(v as i64),
                Some(_) => return mismatch(self),
            },
            "uint32" => match w {
                None => Value::from(0),
                Some(Wire::Varint(v)) => Value::from(v as u32),
                Some(_) => return mismatch(self),
            },
            "uint64" => match w {
                None => Value::from(0),
                Some(Wire::Varint(v)) => Value::from(v),
                Some(_) => return mismatch(self),
            },
            "double" => match w {
                None => Value::from(0),
                Some(Wire::Fixed64(v)) => float(f64::from_bits(v)),
                Some(_) => return mismatch(self),
            },
            "float" => match w {
                None => Value::from(0),
                Some(Wire::Fixed32(v)) => float(f64::from(f32::from_bits(v))),
                Some(_) => return mismatch(self),
            },
            msg => {
                let data = match w {
                    None => None,
                    Some(Wire::Bytes(b)) => Some(b),
                    Some(_) => return mismatch(self),
                };
                let special = self.msg(msg)?.special;
                match special {
                    Some(s) => self.special(s, msg, data)?,
                    None => {
                        let mut m = Map::new();
                        self.message_into(msg, data.unwrap_or(&[]), &mut m)?;
                        Value::Object(m)
                    }
                }
            }
        })
    }

    fn special(&mut self, s: Special, msg: &str, data: Option<&[u8]>) -> Result<Value, String> {
        let data = data.unwrap_or(&[]);
        let fs = fields(data).map_err(|e| format!("{msg}: {e}"))?;
        let int = |no: u32| {
            fs.iter()
                .rev()
                .find_map(|(n, w)| match (n, w) {
                    (n, Wire::Varint(v)) if *n == no => Some(*v as i64),
                    _ => None,
                })
                .unwrap_or(0)
        };
        let bytes = |no: u32| {
            fs.iter().rev().find_map(|(n, w)| match (n, w) {
                (n, Wire::Bytes(b)) if *n == no => Some(*b),
                _ => None,
            })
        };
        Ok(match s {
            // An empty message is Go's zero time, which prints null; Time drops the nanoseconds
            // when it reads protobuf.
            Special::Time if data.is_empty() => Value::Null,
            Special::Time => Value::String(rfc3339(int(1), 0, false)),
            Special::Microtime if data.is_empty() => Value::Null,
            Special::Microtime => Value::String(rfc3339(int(1), int(2), true)),
            Special::Duration => Value::String(go_duration(int(1))),
            Special::Intorstring => {
                if int(1) == 1 {
                    Value::String(bytes(3).map(utf8).unwrap_or_default())
                } else {
                    Value::from(int(2) as i32)
                }
            }
            Special::Quantity => {
                let q = bytes(1).map(utf8).unwrap_or_default();
                Value::String(if q.is_empty() { "0".into() } else { q })
            }
            Special::Rawjson => match bytes(1) {
                None => Value::Null,
                Some(raw) => match serde_json::from_slice::<Value>(raw) {
                    Ok(v) => v,
                    Err(_) => {
                        self.warnings.push(format!(
                            "{msg}: {} bytes that are not JSON, shown as base64",
                            raw.len()
                        ));
                        Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
                    }
                },
            },
            Special::BareArray => {
                let items: Vec<Value> = fs
                    .iter()
                    .filter_map(|(n, w)| match (n, w) {
                        (1, Wire::Bytes(b)) => Some(Value::String(utf8(b))),
                        _ => None,
                    })
                    .collect();
                if items.is_empty() {
                    Value::Null
                } else {
                    Value::Array(items)
                }
            }
        })
    }
}

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "string" | "bytes" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "double" | "float"
    )
}

fn is_varint_scalar(ty: &str) -> bool {
    matches!(ty, "bool" | "int32" | "int64" | "uint32" | "uint64")
}

fn is_zero_scalar(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// RFC 3339 in UTC, as Go's Time (seconds) and MicroTime (microseconds) print it.
fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> String {
    let nanos = u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0);
    match chrono::DateTime::from_timestamp(seconds, nanos) {
        Some(t) if micro => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("{seconds}s since 1970 (out of range)"),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        // Below a second: the largest unit that keeps a non-zero integer part.
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", frac(u, div));
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = u % 60_000_000_000;
    let mut out = sign.to_string();
    if h > 0 {
        out += &format!("{h}h");
    }
    if h > 0 || m > 0 {
        out += &format!("{m}m");
    }
    out + &format!("{}s", frac(s, 1_000_000_000))
}

/// `v / div` with the fraction's trailing zeros removed.
fn frac(v: u64, div: u64) -> String {
    let (i, f) = (v / div, v % div);
    if f == 0 {
        return i.to_string();
    }
    let width = div.to_string().len() - 1;
    let fs = format!("{f:0width$}");
    format!("{i}.{}", fs.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
    }

    #[test]
    fn varints_are_bounded() {
        let mut pos = 0;
        assert!(varint(&[0xff; 11], &mut pos).is_err());
        let mut pos = 0;
        assert_eq!(varint(&[0x96, 0x01], &mut pos), Ok(150));
        assert!(fields(&[0x0a, 0x05, 0x01]).is_err(), "length past the end");
        assert!(fields(&[0x03]).is_err(), "group wire type");
    }

    #[test]
    fn envelope_errors_are_plain() {
        assert!(envelope(b"{}").unwrap_err().contains("no k8s"));
        assert!(envelope(b"k8s\0").unwrap_err().contains("no kind"));
    }
}
