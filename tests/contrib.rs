//! The alert rules and the Grafana dashboard in contrib/: promtool accepts the rules and their
//! unit tests (every alert firing and staying quiet, tests/promtool/), every metric either file
//! uses is one lifeboat exports, and every dashboard expression is valid PromQL.

use lifeboat::daemon::metrics::Metrics;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const RULES: &str = "contrib/prometheus/lifeboat.rules.yml";
const DASHBOARD: &str = "contrib/grafana/lifeboat.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "promtool not installed (Debian: apt-get install prometheus; scripts/test.sh does); \
             skipping"
        );
    }
    found
}

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every `lifeboat_*` metric name in `text`, with the suffixes PromQL adds to none of ours.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("lifeboat_") {
        let start = i + at;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

fn rule_exprs() -> Vec<String> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root().join(RULES)).unwrap()).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect()
}

fn dashboard_exprs() -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(DASHBOARD)).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in doc["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn every_metric_in_the_rules_and_the_dashboard_is_exported() {
    let exported: BTreeSet<String> = Metrics::new().names().iter().cloned().collect();
    let used: BTreeSet<String> = rule_exprs()
        .iter()
        .chain(dashboard_exprs().iter())
        .flat_map(|e| metric_names(e))
        .collect();
    assert!(used.len() >= 20, "{used:?}");
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported by lifeboat: {unknown:?}");
    // And the other way: the watchdog's gauges are all plotted or alerted on.
    for name in exported.iter().filter(|n| n.starts_with("lifeboat_etcd_")) {
        assert!(
            used.contains(name),
            "{name} is in neither the rules nor the dashboard"
        );
    }
}

#[test]
fn the_dashboard_has_a_data_source_input_and_a_policy_variable() {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(DASHBOARD)).unwrap()).unwrap();
    assert_eq!(doc["__inputs"][0]["pluginId"], "prometheus");
    let vars: Vec<&str> = doc["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "policy"]);
    for e in dashboard_exprs() {
        assert!(e.contains("$policy"), "not filtered by policy: {e}");
    }
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_the_dashboard_queries() {
    let Some(promtool) = promtool() else { return };
    let root = root();
    run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(root.join(RULES)));
    run(Command::new(&promtool)
        .current_dir(root.join("tests/promtool"))
        .args(["test", "rules", "lifeboat.rules.test.yml"]));

    // Every dashboard query as a recording rule: promtool parses each as PromQL.
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<serde_json::Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({
                "record": format!("dashboard:query_{i}"),
                "expr": e.replace("$policy", ".*"),
            })
        })
        .collect();
    let file: &Path = &dir.path().join("dashboard.rules.yml");
    std::fs::write(
        file,
        serde_yaml_ng::to_string(
            &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}),
        )
        .unwrap(),
    )
    .unwrap();
    run(Command::new(&promtool).args(["check", "rules"]).arg(file));
}
