//! Kubernetes objects: the round-trip fixtures kubernetes/api publishes are the decoder's oracle,
//! and real etcd clusters hold the objects `k8s ls/get` and `diff` read back.

use lifeboat::k8s::{decode, schema};
use serde_json::Value;
use std::path::Path;

/// Every key, in order, at every level: equal values with a different key order fail.
fn same_json_with_order(a: &Value, b: &Value, path: &str, diffs: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            if kx != ky {
                diffs.push(format!("{path}: keys {kx:?} != {ky:?}"));
            }
            for (k, v) in x {
                if let Some(w) = y.get(k) {
                    same_json_with_order(v, w, &format!("{path}.{k}"), diffs);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same_json_with_order(v, w, &format!("{path}[{i}]"), diffs);
            }
        }
        _ if a == b => {}
        _ => diffs.push(format!("{path}: {a} != {b}")),
    }
}

#[test]
fn every_storable_builtin_kind_decodes_to_exactly_its_go_json() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/k8s/v1.36.0");
    let s = schema::schema();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .collect();
    names.sort();
    for pb in names {
        let want: Value =
            serde_json::from_slice(&std::fs::read(pb.with_extension("json")).unwrap()).unwrap();
        let got = match decode::decode(s, &std::fs::read(&pb).unwrap()) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{}: {e}", pb.display()));
                continue;
            }
        };
        let mut diffs = Vec::new();
        same_json_with_order(&Value::Object(got.object), &want, "", &mut diffs);
        if !diffs.is_empty() || !got.warnings.is_empty() {
            failures.push(format!(
                "{}: {:?} warnings {:?}",
                pb.file_name().unwrap().to_string_lossy(),
                &diffs[..diffs.len().min(5)],
                got.warnings
            ));
        }
        checked += 1;
    }
    assert!(checked >= 138, "only {checked} fixtures");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
