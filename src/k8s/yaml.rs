//! YAML for `kubectl apply`: block style with keys sorted at every level, as `kubectl get -o
//! yaml` prints, and strings quoted whenever YAML 1.1 could read them as something else.
//!
//! kubectl and kube-apiserver parse YAML with go-yaml v2 (through sigs.k8s.io/yaml), which
//! follows YAML 1.1: `on`, `yes`, `y`, `No` are booleans, `1_000` and `0x1F` numbers,
//! `2024-01-01` a timestamp, `1:20` a sexagesimal number. A YAML 1.2 emitter leaves those plain,
//! and a ConfigMap holding them would come back changed or be refused. So any string that is not
//! plainly a word or a path is written double-quoted (JSON string syntax is valid YAML).

use serde_json::{Map, Value};

/// An object as YAML, keys sorted at every level, ending with a newline.
pub fn object_to_yaml(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    if m.is_empty() {
        out.push_str("{}\n");
    } else {
        mapping(&sorted_keys(m), 0, &mut out);
    }
    out
}

/// Any value as YAML, keys sorted at every level, ending with a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) => return object_to_yaml(m),
        Value::Array(a) if !a.is_empty() => sequence(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn sorted_keys(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `key: value` lines at `indent`; the first line's indentation is the caller's when it has
/// already written a `- ` for a sequence item.
fn mapping(entries: &[(&String, &Value)], indent: usize, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push_str(&string(k));
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                mapping(&sorted_keys(m), indent + 2, out);
            }
            // kubectl's style: a sequence under a key starts at the key's indentation.
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                sequence(a, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(&sorted_keys(m), indent + 2, out),
            Value::Array(a) if !a.is_empty() => {
                out.pop();
                out.push('\n');
                sequence(a, indent + 2, out);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Words YAML 1.1 reads as booleans or null, compared case-insensitively (go-yaml v2 accepts the
/// lower, Title and UPPER forms of each).
const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// A string plain when it cannot be anything but a string in YAML 1.1 or 1.2: it starts with a
/// letter or `/`, holds only letters, digits and `._/-` (and single inner spaces), and is not a
/// reserved word. Everything else is double-quoted.
fn string(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/- ".contains(c))
        && !s.ends_with(' ')
        && !s.contains("  ")
        && !s.contains(" -")
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_string();
    }
    // Double-quoted, escaping what YAML would fold as a line break (U+0085, U+2028, U+2029) or
    // refuse as non-printable (controls, DEL, C1, BOM, U+FFFE/F), not only what JSON escapes.
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if (c as u32) < 0x20
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                q.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_lookalikes_are_quoted_and_read_back() {
        let tricky = [
            "on",
            "Yes",
            "y",
            "NO",
            "Off",
            "TRUE",
            "null",
            "~",
            "1_000",
            "0x1F",
            "012",
            "1e3",
            "1:20",
            "2024-01-01",
            ".inf",
            "-",
            "=",
            "<<",
            "a: b",
            "#x",
            " lead",
            "trail ",
            "",
            "multi\nline",
            "tab\there",
            "quote\"s",
            "ünïcode",
            "*alias",
            "&anchor",
            "!tag",
            "%x",
            "@x",
            "`x",
            "{x}",
            "[x]",
            "a,b",
            "?x",
            "|x",
            ">x",
        ];
        let mut data = serde_json::Map::new();
        for (i, t) in tricky.iter().enumerate() {
            data.insert(format!("k{i:02}"), json!(t));
        }
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "labels": {"app.kubernetes.io/name": "web"}},
            "data": data,
            "list": [1, "on", {"b": 2, "a": [true, null]}, [], {}, [["x"]]]});
        let y = to_yaml(&obj);
        let back: Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(back, obj, "{y}");
        for t in &tricky {
            assert!(
                !y.contains(&format!(": {t}\n")) || *t == "-",
                "{t:?} left plain:\n{y}"
            );
        }
        assert!(y.starts_with("apiVersion: v1\n"), "{y}");
        assert!(
            y.contains("  name: cm\n") && y.contains("- 1\n- \"on\"\n- a:\n"),
            "{y}"
        );
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Printable and control characters, YAML indicators, reserved words.
            "[ -~\n\t\r\u{0}\u{7f}\u{85}\u{e9}\u{2028}\u{feff}]{0,12}".prop_map(Value::String),
            prop::sample::select(vec![
                "on",
                "Off",
                "1_000",
                "0x1F",
                "2024-01-01",
                "1:20",
                "~",
                ""
            ])
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[ -~]{0,8}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever an object holds, its YAML reads back as the same value.
        #[test]
        fn any_value_reads_back(v in json_value()) {
            let y = to_yaml(&v);
            let back: Value = serde_yaml_ng::from_str(&y).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{e}\n{y}"))
            })?;
            proptest::prop_assert_eq!(back, v, "{}", y);
        }
    }

    #[test]
    fn words_and_paths_stay_plain() {
        for s in [
            "web",
            "nginx:1.25",
            "registry.example/app",
            "/var/lib/x",
            "Always",
            "a b",
        ] {
            let q = string(s);
            if s.contains(':') {
                assert!(q.starts_with('"'), "{s}");
            } else {
                assert_eq!(q, s);
            }
        }
    }
}
