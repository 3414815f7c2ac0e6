//! Kubernetes objects: the round-trip fixtures kubernetes/api publishes are the decoder's oracle,
//! and real etcd clusters hold the objects `k8s ls/get` and `diff` read back.

mod common;

use base64::Engine as _;
use common::*;
use lifeboat::k8s::{decode, schema};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

// ---- The test's own protobuf writer, independent of the decoder under test. ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, no: u64, b: &[u8]) {
    varint(out, no << 3 | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn field_int(out: &mut Vec<u8>, no: u64, v: u64) {
    varint(out, no << 3);
    varint(out, v);
}

fn map_entries(out: &mut Vec<u8>, no: u64, entries: &[(&str, &[u8])]) {
    for (k, v) in entries {
        let mut e = Vec::new();
        field_bytes(&mut e, 1, k.as_bytes());
        field_bytes(&mut e, 2, v);
        field_bytes(out, no, &e);
    }
}

/// ObjectMeta as gogo writes it: every non-pointer field, zero or not.
fn meta(name: &str, ns: &str, uid: &str, labels: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = Vec::new();
    field_bytes(&mut m, 1, name.as_bytes());
    field_bytes(&mut m, 2, b"");
    field_bytes(&mut m, 3, ns.as_bytes());
    field_bytes(&mut m, 4, b"");
    field_bytes(&mut m, 5, uid.as_bytes());
    field_bytes(&mut m, 6, b"");
    field_int(&mut m, 7, 0);
    let mut t = Vec::new();
    field_int(&mut t, 1, 1_767_225_600); // 2026-01-01T00:00:00Z
    field_bytes(&mut m, 8, &t);
    map_entries(&mut m, 11, labels);
    m
}

/// `k8s\0` + runtime.Unknown, as kube-apiserver stores a built-in object.
fn stored(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    field_bytes(&mut tm, 1, api_version.as_bytes());
    field_bytes(&mut tm, 2, kind.as_bytes());
    let mut u = b"k8s\0".to_vec();
    field_bytes(&mut u, 1, &tm);
    field_bytes(&mut u, 2, raw);
    field_bytes(&mut u, 3, b"");
    field_bytes(&mut u, 4, b"");
    u
}

fn configmap(name: &str, ns: &str, uid: &str, data: &[(&str, &[u8])]) -> Vec<u8> {
    let mut o = Vec::new();
    field_bytes(&mut o, 1, &meta(name, ns, uid, &[("app", b"web")]));
    map_entries(&mut o, 2, data);
    stored("v1", "ConfigMap", &o)
}

fn secret(name: &str, ns: &str, uid: &str, password: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    field_bytes(&mut o, 1, &meta(name, ns, uid, &[]));
    map_entries(&mut o, 2, &[("password", password)]);
    field_bytes(&mut o, 3, b"Opaque");
    stored("v1", "Secret", &o)
}

fn namespace(name: &str, phase: &str) -> Vec<u8> {
    let mut o = Vec::new();
    field_bytes(&mut o, 1, &meta(name, "", "uid-ns", &[]));
    let mut spec = Vec::new();
    field_bytes(&mut spec, 1, b"kubernetes");
    field_bytes(&mut o, 2, &spec);
    let mut st = Vec::new();
    field_bytes(&mut st, 1, phase.as_bytes());
    field_bytes(&mut o, 3, &st);
    stored("v1", "Namespace", &o)
}

fn service() -> Vec<u8> {
    let mut port = Vec::new();
    field_bytes(&mut port, 1, b"");
    field_bytes(&mut port, 2, b"TCP");
    field_int(&mut port, 3, 80);
    let mut target = Vec::new();
    field_int(&mut target, 1, 0);
    field_int(&mut target, 2, 8080);
    field_bytes(&mut target, 3, b"");
    field_bytes(&mut port, 4, &target);
    field_int(&mut port, 5, 30080);
    let mut spec = Vec::new();
    field_bytes(&mut spec, 1, &port);
    map_entries(&mut spec, 2, &[("app", b"web")]);
    field_bytes(&mut spec, 3, b"10.96.0.10");
    field_bytes(&mut spec, 4, b"NodePort");
    field_bytes(&mut spec, 18, b"10.96.0.10");
    let mut o = Vec::new();
    field_bytes(&mut o, 1, &meta("web", "shop", "uid-svc", &[]));
    field_bytes(&mut o, 2, &spec);
    field_bytes(&mut o, 3, b"");
    stored("v1", "Service", &o)
}

// ---- Encryption at rest, made with Python's `cryptography` and PyNaCl. ----

const KEY1: [u8; 32] = [0x11; 32];
const KEY2: [u8; 16] = [0x22; 16];
const GCM1: [u8; 32] = [0x33; 32];
const BOX1: [u8; 32] = [0x44; 32];

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `k8s:enc:<provider>:v1:<name>:` + ciphertext, computed by an implementation other than ours.
fn encrypt(provider: &str, name: &str, key: &[u8], etcd_key: &str, plain: &[u8]) -> Vec<u8> {
    let py = std::env::var("LIFEBOAT_PYTHON").expect("LIFEBOAT_PYTHON: run scripts/test.sh");
    let script = r#"
import base64, os, sys
provider, key, aad, plain = sys.argv[1], base64.b64decode(sys.argv[2]), sys.argv[3].encode(), base64.b64decode(sys.argv[4])
if provider == "aescbc":
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    iv = os.urandom(16)
    p = padding.PKCS7(128).padder()
    data = p.update(plain) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    out = iv + e.update(data) + e.finalize()
elif provider == "aesgcm":
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    nonce = os.urandom(12)
    out = nonce + AESGCM(key).encrypt(nonce, plain, aad)
else:
    import nacl.secret, nacl.utils
    nonce = nacl.utils.random(24)
    out = nonce + nacl.secret.SecretBox(key).encrypt(plain, nonce).ciphertext
sys.stdout.write(base64.b64encode(out).decode())
"#;
    let o = Command::new(py)
        .args(["-c", script, provider, &b64(key), etcd_key, &b64(plain)])
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}", stderr(&o));
    let mut v = format!("k8s:enc:{provider}:v1:{name}:").into_bytes();
    v.extend(
        base64::engine::general_purpose::STANDARD
            .decode(&o.stdout)
            .unwrap(),
    );
    v
}

fn kms_v2() -> Vec<u8> {
    let mut v = b"k8s:enc:kms:v2:cloudkms:".to_vec();
    field_bytes(&mut v, 1, &[7u8; 40]);
    field_bytes(&mut v, 2, b"kid-1");
    field_bytes(&mut v, 3, &[9u8; 32]);
    v
}

fn encryption_config(dir: &Path) -> PathBuf {
    let p = dir.join("encryption.yaml");
    std::fs::write(
        &p,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  \
             - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            \
             - {{name: key2, secret: {}}}\n            - {{name: key1, secret: {}}}\n      - \
             aesgcm: {{keys: [{{name: gcm1, secret: {}}}]}}\n      - secretbox: {{keys: [{{name: \
             box1, secret: {}}}]}}\n      - kms: {{apiVersion: v2, name: cloudkms, endpoint: \
             unix:///var/run/kms.sock}}\n      - identity: {{}}\n",
            b64(&KEY2),
            b64(&KEY1),
            b64(&GCM1),
            b64(&BOX1)
        ),
    )
    .unwrap();
    p
}

const CRD: &str = r#"{"kind":"CustomResourceDefinition","apiVersion":"apiextensions.k8s.io/v1beta1","metadata":{"name":"widgets.example.com","uid":"uid-crd","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"group":"example.com","version":"v1","names":{"plural":"widgets","singular":"widget","shortNames":["wd"],"kind":"Widget","listKind":"WidgetList"},"scope":"Namespaced","validation":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}},"versions":[{"name":"v1","served":true,"storage":true}],"preserveUnknownFields":false},"status":{"acceptedNames":{"plural":"widgets","kind":"Widget"},"storedVersions":["v1"]}}
"#;

fn widget(name: &str, uid: &str, size: u32) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"example.com/v1","kind":"Widget","metadata":{{"name":"{name}","namespace":"shop","uid":"{uid}","generation":1,"creationTimestamp":"2026-01-01T00:00:00Z"}},"spec":{{"size":{size}}}}}
"#
    )
    .into_bytes()
}

/// A custom resource as kube-apiserver stores it under CBORServingAndStorage: the self-describe
/// tag, then a map whose strings are CBOR byte strings.
fn widget_cbor() -> Vec<u8> {
    fn bstr(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 24);
        out.push(0x40 | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    let mut v = vec![0xd9, 0xd9, 0xf7, 0xa4];
    bstr(&mut v, "apiVersion");
    bstr(&mut v, "example.com/v1");
    bstr(&mut v, "kind");
    bstr(&mut v, "Widget");
    bstr(&mut v, "metadata");
    v.push(0xa2);
    bstr(&mut v, "name");
    bstr(&mut v, "w3");
    bstr(&mut v, "namespace");
    bstr(&mut v, "cbor");
    bstr(&mut v, "spec");
    v.push(0xa1);
    bstr(&mut v, "size");
    v.push(0x07);
    v
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/k8s/v1.36.0")
            .join(name),
    )
    .unwrap()
}

/// Puts (`Some`) and deletes (`None`), one revision each, in order.
async fn apply(c: &mut etcd_client::Client, ops: Vec<(&str, Option<Vec<u8>>)>) {
    for (k, v) in ops {
        match v {
            Some(v) => c.put(k, v, None).await.map(drop),
            None => c.delete(k, None).await.map(drop),
        }
        .unwrap();
    }
}

fn snapshot(cluster: &EtcdCluster, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let o = Command::new(&cluster.etcdctl)
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &cluster.endpoints()[0],
            "snapshot",
            "save",
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "snapshot save: {}", stderr(&o));
    p
}

fn run_json(args: &[&str]) -> Value {
    let o = lifeboat(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `(namespace, kind, name, encoding, decodable)` of every `k8s ls` row.
fn ls_rows(v: &Value) -> Vec<(String, String, String, String, bool)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["namespace"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["encoding"].as_str().unwrap().to_string(),
                r["decodable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn row(
    ns: &str,
    kind: &str,
    name: &str,
    enc: &str,
    ok: bool,
) -> (String, String, String, String, bool) {
    (ns.into(), kind.into(), name.into(), enc.into(), ok)
}

/// `(resource, namespace, name, change, detail)` of every `diff --json` entry.
fn diff_rows(v: &Value) -> Vec<(String, String, String, String, Vec<String>)> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"].as_str().unwrap().to_string(),
                e["namespace"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["change"].as_str().unwrap().to_string(),
                e["detail"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn d(
    r: &str,
    ns: &str,
    name: &str,
    change: &str,
    detail: &[&str],
) -> (String, String, String, String, Vec<String>) {
    (
        r.into(),
        ns.into(),
        name.into(),
        change.into(),
        detail.iter().map(|s| s.to_string()).collect(),
    )
}

async fn objects_out_of_real_snapshots(dist: EtcdDist) {
    let cluster = EtcdCluster::start_dist(3, None, &dist);
    let dir = tempfile::tempdir().unwrap();
    let cfg = encryption_config(dir.path());
    let cfg = cfg.to_str().unwrap();
    let mut c = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    let pw = b"s3cret-pw";

    // Side A, byte for byte as kube-apiserver stores it.
    let sec = |name: &str, provider: &str, kname: &str, key: &[u8], uid: &str| {
        let k = format!("/registry/secrets/shop/{name}");
        encrypt(provider, kname, key, &k, &secret(name, "shop", uid, pw))
    };
    let gcm = sec("db-gcm", "aesgcm", "gcm1", &GCM1, "uid-db-gcm");
    let cm = |color: &[u8]| {
        configmap(
            "app-config",
            "shop",
            "uid-cm",
            // Values YAML 1.1 would read as a boolean, a number and a timestamp.
            &[
                ("color", color),
                ("mode", b"prod"),
                ("debug", b"on"),
                ("limit", b"1_000"),
                ("since", b"2024-01-01"),
            ],
        )
    };
    apply(
        &mut c,
        vec![
            ("compact_rev_key", Some(vec![0, 0, 0, 0, 0, 0, 0, 1])),
            (
                "/registry/masterleases/127.0.0.1",
                Some(b"k8s\0junk".to_vec()),
            ),
            (
                "/registry/namespaces/shop",
                Some(namespace("shop", "Active")),
            ),
            ("/registry/configmaps/shop/app-config", Some(cm(b"blue"))),
            ("/registry/services/specs/shop/web", Some(service())),
            (
                "/registry/secrets/shop/db-cbc",
                Some(sec("db-cbc", "aescbc", "key1", &KEY1, "uid-db-cbc")),
            ),
            // The same ciphertext under another key: aesgcm authenticates the key, so it must not open.
            ("/registry/secrets/moved/db-gcm", Some(gcm.clone())),
            ("/registry/secrets/shop/db-gcm", Some(gcm)),
            (
                "/registry/secrets/shop/db-box",
                Some(sec("db-box", "secretbox", "box1", &BOX1, "uid-db-box")),
            ),
            ("/registry/secrets/shop/db-kms", Some(kms_v2())),
            (
                "/registry/configmaps/namespaceValue/nameValue",
                Some(fixture("core.v1.ConfigMap.pb")),
            ),
            (
                "/registry/events/namespaceValue/nameValue",
                Some(fixture("core.v1.Event.pb")),
            ),
            (
                "/registry/configmaps/junk/garbage",
                Some(b"\x00\x01\x02 not an object".to_vec()),
            ),
            (
                "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
                Some(CRD.as_bytes().to_vec()),
            ),
            (
                "/registry/example.com/widgets/shop/w1",
                Some(widget("w1", "uid-w1", 3)),
            ),
            ("/registry/example.com/widgets/cbor/w3", Some(widget_cbor())),
        ],
    )
    .await;
    let a = snapshot(&cluster, dir.path(), "a.db");

    // Side B: an update, a deletion, a status change, a key rotation, a delete and re-create,
    // a custom resource changed and one added, an event gone.
    apply(
        &mut c,
        vec![
            ("/registry/configmaps/shop/app-config", Some(cm(b"green"))),
            ("/registry/services/specs/shop/web", None),
            (
                "/registry/namespaces/shop",
                Some(namespace("shop", "Terminating")),
            ),
            (
                "/registry/secrets/shop/db-cbc",
                Some(sec("db-cbc", "aescbc", "key2", &KEY2, "uid-db-cbc")),
            ),
            ("/registry/secrets/shop/db-gcm", None),
            (
                "/registry/secrets/shop/db-gcm",
                Some(sec("db-gcm", "aesgcm", "gcm1", &GCM1, "uid-db-gcm-2")),
            ),
            (
                "/registry/example.com/widgets/shop/w1",
                Some(widget("w1", "uid-w1", 5)),
            ),
            (
                "/registry/example.com/widgets/shop/w2",
                Some(widget("w2", "uid-w2", 1)),
            ),
            ("/registry/events/namespaceValue/nameValue", None),
        ],
    )
    .await;
    let b = snapshot(&cluster, dir.path(), "b.db");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    // ls: names from the keys, encrypted values without keys; non-object keys left out.
    let all = vec![
        row(
            "",
            "CustomResourceDefinition",
            "widgets.example.com",
            "json",
            true,
        ),
        row("", "Namespace", "shop", "protobuf", true),
        row("cbor", "Widget", "w3", "cbor", true),
        row("junk", "ConfigMap", "garbage", "not an object", false),
        row("moved", "Secret", "db-gcm", "aesgcm:gcm1", false),
        row("namespaceValue", "ConfigMap", "nameValue", "protobuf", true),
        row("namespaceValue", "Event", "nameValue", "protobuf", true),
        row("shop", "ConfigMap", "app-config", "protobuf", true),
        row("shop", "Secret", "db-box", "secretbox:box1", false),
        row("shop", "Secret", "db-cbc", "aescbc:key1", false),
        row("shop", "Secret", "db-gcm", "aesgcm:gcm1", false),
        row(
            "shop",
            "Secret",
            "db-kms",
            "kms:v2:cloudkms (keyID kid-1)",
            false,
        ),
        row("shop", "Service", "web", "protobuf", true),
        row("shop", "Widget", "w1", "json", true),
    ];
    assert_eq!(ls_rows(&run_json(&["k8s", "ls", a, "-A", "--json"])), all);
    let with_keys = ls_rows(&run_json(&[
        "k8s",
        "ls",
        a,
        "-A",
        "--json",
        "--encryption-config",
        cfg,
    ]));
    let decodable: Vec<_> = with_keys
        .iter()
        .filter(|r| r.1 == "Secret")
        .map(|r| (r.2.as_str(), r.4))
        .collect();
    assert_eq!(
        decodable,
        vec![
            ("db-gcm", true),
            ("db-box", true),
            ("db-cbc", true),
            ("db-gcm", true),
            ("db-kms", false)
        ]
    );
    assert_eq!(
        ls_rows(&run_json(&[
            "k8s", "ls", a, "-n", "shop", "--kind", "secret", "--json"
        ]))
        .len(),
        4
    );
    assert_eq!(
        ls_rows(&run_json(&["k8s", "ls", a, "--json"])).len(),
        2,
        "default namespace: the cluster-scoped objects only"
    );

    // --raw is `kubectl get -o json`: the fixture's JSON, resourceVersion from the mod revision.
    let raw = run_json(&[
        "k8s",
        "get",
        a,
        "cm/nameValue",
        "-n",
        "namespaceValue",
        "-o",
        "json",
        "--raw",
    ]);
    let rows = run_json(&[
        "k8s",
        "ls",
        a,
        "-n",
        "namespaceValue",
        "--kind",
        "cm",
        "--json",
    ]);
    let mut want: Value = serde_json::from_slice(&fixture("core.v1.ConfigMap.json")).unwrap();
    want["metadata"]["resourceVersion"] =
        json!(rows[0]["modRevision"].as_i64().unwrap().to_string());
    let mut diffs = Vec::new();
    same_json_with_order(&raw, &want, "", &mut diffs);
    assert!(diffs.is_empty(), "{diffs:?}");

    // Apply-ready: server-set fields gone, YAML with sorted keys that parses back.
    let o = lifeboat(&["k8s", "get", a, "cm/app-config", "-n", "shop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let y: Value = serde_yaml_ng::from_slice(&o.stdout).unwrap();
    assert_eq!(
        y,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": "shop", "labels": {"app": "web"}},
            "data": {"color": "blue", "mode": "prod", "debug": "on", "limit": "1_000",
                "since": "2024-01-01"}})
    );
    let svc = lifeboat(&["k8s", "get", a, "service/web", "-n", "shop", "-o", "json"]);
    assert!(svc.status.success(), "{}", stderr(&svc));
    let svc: Value = serde_json::from_slice(&svc.stdout).unwrap();
    assert_eq!(
        svc,
        json!({"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"}, "type": "NodePort"}})
    );

    // Secrets: decrypted with each provider, printed only when asked.
    let o = lifeboat(&[
        "k8s",
        "get",
        a,
        "secret/db-gcm",
        "-n",
        "shop",
        "--encryption-config",
        cfg,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    for name in ["db-cbc", "db-gcm", "db-box"] {
        let s = run_json(&[
            "k8s",
            "get",
            a,
            &format!("secret/{name}"),
            "-n",
            "shop",
            "-o",
            "json",
            "--encryption-config",
            cfg,
            "--show-secrets",
        ]);
        assert_eq!(s["data"]["password"], json!(b64(pw)), "{name}");
        assert_eq!(s["type"], "Opaque");
    }
    let o = lifeboat(&["k8s", "get", a, "secrets", "-n", "shop", "--show-secrets"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("aescbc key \"key1\"") && err.contains("kms:v2:cloudkms (keyID kid-1)"),
        "{err}"
    );
    for k in [&KEY1[..], &KEY2, &GCM1, &BOX1] {
        assert!(!err.contains(&b64(k)), "a key leaked into the errors");
    }
    // A value copied under another key does not open with aesgcm: the key is authenticated.
    let o = lifeboat(&[
        "k8s",
        "get",
        a,
        "secret/db-gcm",
        "-n",
        "moved",
        "--encryption-config",
        cfg,
        "--show-secrets",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("authentication failed") && o.stdout.is_empty(),
        "{}",
        stderr(&o)
    );

    // Custom resources through the CRD in the same backup; RESOURCE.GROUP always.
    for kind in [
        "widgets",
        "Widget",
        "wd",
        "widgets.example.com",
        "widget.example.com",
    ] {
        let w = run_json(&["k8s", "get", a, kind, "-n", "shop", "-o", "json"]);
        assert_eq!(
            w,
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "shop"}, "spec": {"size": 3}}),
            "{kind}"
        );
    }
    // Memory follows the selection: a KIND the built-in resources name holds only their keys
    // and the CRDs; one only a CRD names is read whole, and finds the same objects.
    let src = lifeboat::ops::k8s::Source {
        path: PathBuf::from(a),
        hashing: lifeboat::ops::inspect::Hashing::Compute,
    };
    let keyring = lifeboat::k8s::encryption::Keyring::default();
    let read = |kind: &str| lifeboat::ops::k8s::read_for_kind(&src, &keyring, None, Some(kind));
    let whole = read("all").unwrap().scan.entries.len();
    let cms = read("cm").unwrap();
    assert!(cms.scan.entries.len() < whole);
    assert!(cms.scan.entries.keys().all(|k| {
        k.starts_with(b"/registry/configmaps/")
            || k.starts_with(b"/registry/namespaces/")
            || k.starts_with(b"/registry/apiextensions.k8s.io/customresourcedefinitions/")
    }));
    assert_eq!(read("wd").unwrap().scan.entries.len(), whole);
    // The built-ins take `widget.example.com` for a resource "widget"; the CRD says the
    // resource is "widgets", so the file is read again whole.
    let singular = read("widget.example.com").unwrap();
    assert_eq!(singular.scan.entries.len(), whole);
    assert_eq!(
        singular.resources.unwrap()[0].resource,
        "widgets",
        "resolved through the CRD"
    );
    for kind in ["widgets.example.com", "services"] {
        let narrow = read(kind).unwrap();
        assert!(narrow.scan.entries.len() < whole, "{kind}");
        assert!(narrow.scan.entries.len() > 1, "{kind}");
    }
    assert!(read("nosuchkind").is_err());

    let list = run_json(&["k8s", "get", b, "widgets", "-n", "shop", "-o", "json"]);
    assert_eq!(list["kind"], "List");
    let names: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1", "w2"]);
    let w3 = run_json(&["k8s", "get", a, "wd/w3", "-n", "cbor", "-o", "json"]);
    assert_eq!(
        w3,
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w3", "namespace": "cbor"}, "spec": {"size": 7}})
    );
    let crd = run_json(&["k8s", "get", a, "crd/widgets.example.com", "-o", "json"]);
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["type"],
        "object"
    );
    assert!(crd.get("status").is_none());

    // A namespace export: one 0600 file per object in apply order; what cannot be decrypted is
    // named and the exit code says so.
    let out = dir.path().join("shop");
    let o = lifeboat(&[
        "k8s",
        "get",
        a,
        "all",
        "-n",
        "shop",
        "--out",
        out.to_str().unwrap(),
        "--encryption-config",
        cfg,
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("db-kms"));
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "001-namespace-_cluster-shop.yaml",
            "002-configmap-shop-app-config.yaml",
            "003-secret-shop-db-box.yaml",
            "004-secret-shop-db-cbc.yaml",
            "005-secret-shop-db-gcm.yaml",
            "006-service-shop-web.yaml",
            "007-widget-shop-w1.yaml",
        ]
    );
    for f in &files {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // kubectl reads the files offline into its typed objects and writes them back unchanged
    // apart from the label it was asked to add.
    for f in &files[..2] {
        let p = out.join(f);
        let k = Command::new("kubectl")
            .env("KUBECONFIG", "/dev/null")
            .args([
                "label",
                "--local",
                "-f",
                p.to_str().unwrap(),
                "restored=yes",
                "-o",
                "json",
            ])
            .output();
        match k {
            Ok(k) => {
                assert!(k.status.success(), "kubectl on {f}: {}", stderr(&k));
                let mut theirs: Value = serde_json::from_slice(&k.stdout).unwrap();
                theirs["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("restored");
                if theirs["metadata"]["labels"].as_object().unwrap().is_empty() {
                    theirs["metadata"].as_object_mut().unwrap().remove("labels");
                }
                let ours: Value = serde_yaml_ng::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                assert_eq!(theirs, ours, "{f}");
            }
            Err(e) => eprintln!("kubectl not runnable ({e}); the offline kubectl check is skipped"),
        }
    }

    // diff: objects, classified; events hidden; re-encryption named.
    let v = run_json(&["diff", a, b, "--json", "--encryption-config", cfg]);
    assert_eq!(
        v["a"]["revision"].as_i64().unwrap() + 9,
        v["b"]["revision"].as_i64().unwrap()
    );
    assert_eq!(v["noiseHidden"], 1);
    let expected = vec![
        d(
            "configmaps",
            "shop",
            "app-config",
            "modified",
            &["data.color"],
        ),
        d("namespaces", "", "shop", "status-only", &["status.phase"]),
        d(
            "secrets",
            "shop",
            "db-cbc",
            "unchanged",
            &["re-encrypted: aescbc:key1 → aescbc:key2"],
        ),
        d("secrets", "shop", "db-gcm", "replaced", &[]),
        d("services", "shop", "web", "removed", &[]),
        d(
            "widgets.example.com",
            "shop",
            "w1",
            "modified",
            &["spec.size"],
        ),
        d("widgets.example.com", "shop", "w2", "added", &[]),
    ];
    assert_eq!(diff_rows(&v), expected);
    // With too little memory for the key index, the comparison goes a share of the keys at a
    // time, over several passes: the same answer, objects (custom resources need every CRD
    // before any comparison) and keys alike.
    for mode in ["--objects", "--keys"] {
        let whole = run_json(&["diff", a, b, "--json", mode, "--encryption-config", cfg]);
        let parts = run_json(&[
            "diff",
            a,
            b,
            "--json",
            mode,
            "--encryption-config",
            cfg,
            "--index-memory",
            "1KiB",
        ]);
        assert_eq!(whole["partitions"], 1, "{mode}");
        assert!(parts["partitions"].as_u64().unwrap() > 2, "{mode}: {parts}");
        for field in ["a", "b", "changes", "noiseHidden"] {
            assert_eq!(parts[field], whole[field], "{mode} {field}");
        }
    }
    // Without the keys the encrypted changes are still found, as changes of bytes.
    let v = run_json(&["diff", a, b, "--json"]);
    let cbc = diff_rows(&v).into_iter().find(|e| e.2 == "db-cbc").unwrap();
    assert_eq!(cbc.3, "changed");
    assert!(
        cbc.4[0].starts_with("re-encrypted") && cbc.4[1].contains("--encryption-config"),
        "{:?}",
        cbc.4
    );
    let keys = run_json(&["diff", a, b, "--keys", "--json"]);
    let changes: Vec<_> = diff_rows(&keys).into_iter().map(|e| (e.2, e.3)).collect();
    assert_eq!(
        changes,
        vec![
            ("app-config".into(), "changed".into()),
            ("shop".into(), "changed".into()),
            ("db-cbc".into(), "changed".into()),
            ("db-gcm".into(), "changed".into()),
            ("web".into(), "removed".into()),
            ("w1".into(), "changed".into()),
            ("w2".into(), "added".into()),
        ]
    );

    // The human forms say the same.
    let o = lifeboat(&["k8s", "ls", a, "-A"]);
    let table = stdout(&o);
    eprintln!("{table}");
    assert!(
        table.starts_with("NAMESPACE") && table.contains("aescbc:key1 (no key)"),
        "{table}"
    );
    let o = lifeboat(&["diff", a, b, "--encryption-config", cfg]);
    let text = stdout(&o);
    eprintln!("{text}");
    assert!(
        text.contains("1 added, 2 modified, 1 removed, 1 replaced, 1 status-only, 1 unchanged"),
        "{text}"
    );

    // Stored backups: the same answers through --policy, --backup and the identity.
    let (id, recipient) = age_key();
    let identity = write_identity(dir.path(), &id);
    let store = dir.path().join("backups");
    std::fs::create_dir(&store).unwrap();
    let policy = write_policy(
        dir.path(),
        "k8s",
        &cluster.endpoints(),
        &format!("{{name: local, url: \"file://{}\"}}", store.display()),
        &recipient,
    );
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--no-retry"]);
    assert!(o.status.success(), "backup: {}", stderr(&o));
    let p = policy.to_str().unwrap();
    let stored_ls = run_json(&[
        "k8s",
        "ls",
        "--policy",
        p,
        "--backup",
        "latest",
        "--identity",
        identity.to_str().unwrap(),
        "-A",
        "--json",
    ]);
    let file_ls = run_json(&["k8s", "ls", b, "-A", "--json"]);
    assert_eq!(stored_ls, file_ls);
    let stored_get = run_json(&[
        "k8s",
        "get",
        "cm/app-config",
        "-n",
        "shop",
        "-o",
        "json",
        "--policy",
        p,
        "--backup",
        "latest",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    let file_get = run_json(&["k8s", "get", b, "cm/app-config", "-n", "shop", "-o", "json"]);
    assert_eq!(stored_get, file_get);
    assert_eq!(stored_get["data"]["color"], "green");
    let list = run_json(&["list", "--policy", p, "--json"]);
    let backup_id = list[0]["id"].as_str().unwrap();
    let v = run_json(&[
        "diff",
        a,
        backup_id,
        "--policy",
        p,
        "--identity",
        identity.to_str().unwrap(),
        "--json",
        "--encryption-config",
        cfg,
    ]);
    assert_eq!(diff_rows(&v), expected);
    assert!(v["a"]["taken"].is_null() && v["b"]["taken"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_out_of_real_etcd_34_snapshots() {
    objects_out_of_real_snapshots(etcd_34()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_out_of_real_etcd_35_snapshots() {
    objects_out_of_real_snapshots(etcd_35()).await;
}

/// Sparse objects, where Go's omission rules matter (a pointer set to zero prints, an omitempty
/// zero does not, a nil slice without omitempty prints null): kubectl decodes our JSON into its
/// typed Go structs and encodes it again offline (`set image --local`); apart from the image it
/// was asked to set, the result must be ours. kubectl releases before 1.33's apimachinery print
/// `creationTimestamp: null` for a zero time, which 1.36 omits; that one field is ignored.
#[test]
fn sparse_objects_survive_kubectls_typed_round_trip() {
    let mut container = Vec::new();
    field_bytes(&mut container, 1, b"c");
    field_bytes(&mut container, 2, b"registry.example/app:1");
    let mut port = Vec::new();
    field_int(&mut port, 3, 8080);
    field_bytes(&mut port, 4, b"TCP");
    field_bytes(&mut container, 6, &port);
    field_bytes(&mut container, 8, b""); // resources, present and empty
    field_bytes(&mut container, 13, b"File"); // terminationMessagePath-like string field
    let mut pod_spec = Vec::new();
    field_bytes(&mut pod_spec, 2, &container);
    field_bytes(&mut pod_spec, 3, b"Always");
    let mut template = Vec::new();
    field_bytes(&mut template, 1, &meta("", "", "", &[("app", b"web")]));
    field_bytes(&mut template, 2, &pod_spec);
    let mut selector = Vec::new();
    map_entries(&mut selector, 1, &[("app", b"web")]);
    let mut spec = Vec::new();
    field_int(&mut spec, 1, 0); // replicas: a pointer set to 0
    field_bytes(&mut spec, 2, &selector);
    field_bytes(&mut spec, 3, &template);
    field_bytes(&mut spec, 4, b""); // strategy: empty struct
    field_int(&mut spec, 5, 0); // minReadySeconds: omitempty zero
    let mut status = Vec::new();
    field_int(&mut status, 1, 0);
    let mut o = Vec::new();
    field_bytes(&mut o, 1, &meta("web", "shop", "uid-1", &[]));
    field_bytes(&mut o, 2, &spec);
    field_bytes(&mut o, 3, &status);
    let d = decode::decode(schema::schema(), &stored("apps/v1", "Deployment", &o)).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let ours = Value::Object(d.object);
    assert_eq!(ours["spec"]["replicas"], 0, "a pointer set to zero prints");
    assert!(
        ours["spec"].get("minReadySeconds").is_none(),
        "an omitempty zero does not"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("deploy.json");
    std::fs::write(&f, serde_json::to_vec(&ours).unwrap()).unwrap();
    let kubectl = ["kubectl.1.33", "kubectl"]
        .into_iter()
        .map(|k| {
            let p = Path::new("/usr/lib/google-cloud-sdk/bin").join(k);
            if p.exists() { p } else { PathBuf::from(k) }
        })
        .find(|k| {
            Command::new(k)
                .arg("version")
                .arg("--client")
                .output()
                .is_ok()
        });
    let Some(kubectl) = kubectl else {
        eprintln!("no kubectl here; the typed round trip is skipped");
        return;
    };
    let o = Command::new(&kubectl)
        .env("KUBECONFIG", "/dev/null")
        .args([
            "set",
            "image",
            "--local",
            "-f",
            f.to_str().unwrap(),
            "c=registry.example/app:2",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "kubectl: {}", stderr(&o));
    let mut theirs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut ours = ours;
    ours["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.example/app:2");
    for v in [&mut theirs, &mut ours] {
        for at in ["/metadata", "/spec/template/metadata"] {
            let md = v.pointer_mut(at).unwrap().as_object_mut().unwrap();
            if md.get("creationTimestamp") == Some(&Value::Null) {
                md.remove("creationTimestamp");
            }
        }
    }
    let mut diffs = Vec::new();
    same_json_with_order(&ours, &theirs, "", &mut diffs);
    assert!(
        diffs.is_empty(),
        "{diffs:?}\nours {ours:#}\ntheirs {theirs:#}"
    );
}
