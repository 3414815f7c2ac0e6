//! What changed between two backups: keys (bytes) or objects (decoded and normalised).

use serde::Serialize;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A key's change between side A and side B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Added,
    Removed,
    /// The bytes differ.
    Changed,
    /// Objects: spec, metadata or data differ.
    Modified,
    /// Objects: same name, new uid: deleted and created again.
    Replaced,
    /// Objects: only `status` differs.
    StatusOnly,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
            Self::Modified => "modified",
            Self::Replaced => "replaced",
            Self::StatusOnly => "status-only",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Merge two key-sorted streams of `(key, digest)`; yields every key that differs. Holds one
/// item of each side at a time.
pub fn merge_keys<K: AsRef<[u8]>, D: PartialEq>(
    a: impl IntoIterator<Item = (K, D)>,
    b: impl IntoIterator<Item = (K, D)>,
    mut sink: impl FnMut(&[u8], Change),
) {
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let ord = match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.0.as_ref().cmp(y.0.as_ref()),
        };
        match ord {
            Ordering::Less => {
                let (k, _) = a.next().expect("peeked");
                sink(k.as_ref(), Change::Removed);
            }
            Ordering::Greater => {
                let (k, _) = b.next().expect("peeked");
                sink(k.as_ref(), Change::Added);
            }
            Ordering::Equal => {
                let (k, da) = a.next().expect("peeked");
                let (_, db) = b.next().expect("peeked");
                if da != db {
                    sink(k.as_ref(), Change::Changed);
                }
            }
        }
    }
}

/// The object without what changes on every write or belongs to controllers' bookkeeping.
pub fn normalise(obj: &Map<String, Value>, include_status: bool) -> Value {
    let mut o = obj.clone();
    if let Some(Value::Object(md)) = o.get_mut("metadata") {
        for f in ["resourceVersion", "managedFields", "selfLink"] {
            md.remove(f);
        }
    }
    if !include_status {
        o.remove("status");
    }
    Value::Object(o)
}

/// Classify one object present on both sides.
pub fn classify(a: &Map<String, Value>, b: &Map<String, Value>) -> Change {
    let uid = |o: &Map<String, Value>| o.get("metadata").and_then(|m| m.get("uid")).cloned();
    if uid(a).is_some() && uid(a) != uid(b) {
        return Change::Replaced;
    }
    if normalise(a, true) == normalise(b, true) {
        return Change::Unchanged;
    }
    if normalise(a, false) == normalise(b, false) {
        return Change::StatusOnly;
    }
    Change::Modified
}

/// Dotted paths where two JSON values differ (at most `limit`), for a short summary.
pub fn changed_paths(a: &Value, b: &Value, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, String::new(), limit, &mut out);
    out
}

fn walk(a: &Value, b: &Value, at: String, limit: usize, out: &mut Vec<String>) {
    if out.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                walk(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    p,
                    limit,
                    out,
                );
            }
        }
        _ => out.push(if at.is_empty() { ".".into() } else { at }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_finds_every_difference() {
        let a = vec![("a", 1), ("b", 2), ("d", 4)];
        let b = vec![("b", 3), ("c", 3), ("d", 4), ("e", 5)];
        let mut got = Vec::new();
        merge_keys(a, b, |k, c| {
            got.push((String::from_utf8_lossy(k).into_owned(), c))
        });
        assert_eq!(
            got,
            vec![
                ("a".into(), Change::Removed),
                ("b".into(), Change::Changed),
                ("c".into(), Change::Added),
                ("e".into(), Change::Added)
            ]
        );
    }

    #[test]
    fn objects_are_classified() {
        let o = |uid: &str, data: &str, phase: &str| {
            json!({"metadata": {"uid": uid, "resourceVersion": "1"}, "data": {"k": data},
                "status": {"phase": phase}})
            .as_object()
            .unwrap()
            .clone()
        };
        assert_eq!(
            classify(&o("1", "x", "A"), &o("1", "x", "A")),
            Change::Unchanged
        );
        assert_eq!(
            classify(&o("1", "x", "A"), &o("1", "x", "B")),
            Change::StatusOnly
        );
        assert_eq!(
            classify(&o("1", "x", "A"), &o("1", "y", "A")),
            Change::Modified
        );
        assert_eq!(
            classify(&o("1", "x", "A"), &o("2", "x", "A")),
            Change::Replaced
        );
        assert_eq!(
            changed_paths(
                &Value::Object(o("1", "x", "A")),
                &Value::Object(o("1", "y", "B")),
                5
            ),
            vec!["data.k", "status.phase"]
        );
    }
}
