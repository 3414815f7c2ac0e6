//! Any bytes through the Kubernetes value reader: key parsing, envelope detection, decryption
//! (aescbc has no MAC, so forged ciphertexts reach the decoder) and protobuf, JSON and CBOR
//! decoding. Errors are fine; panics, hangs and runaway allocations are bugs. Seed it with
//! tests/data/k8s/v1.36.0/*.pb (see docs/kubernetes.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat::k8s::{decode, encryption::Keyring, keys, schema, value, yaml};
use std::sync::OnceLock;

fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        let mut k = Keyring::default();
        k.add_config(
            "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  \
             - aescbc: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]}\n  \
             - aesgcm: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}]}\n  \
             - secretbox: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]}\n",
        )
        .expect("fuzz keyring");
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let s = schema::schema();
    let _ = decode::decode(s, data);
    let mut prefixed = b"k8s\0".to_vec();
    prefixed.extend_from_slice(data);
    let _ = decode::decode(s, &prefixed);
    if let Ok(o) = value::read(s, keyring(), b"/registry/secrets/a/b", data) {
        // Whatever was decoded must survive the YAML writer unchanged.
        let v = serde_json::Value::Object(o.object);
        let y = yaml::to_yaml(&v);
        let back: serde_json::Value = serde_yaml_ng::from_str(&y).expect("our YAML parses");
        assert_eq!(back, v, "YAML round trip");
    }
    let mut enc = b"k8s:enc:aescbc:v1:k:".to_vec();
    enc.extend_from_slice(data);
    let _ = value::read(s, keyring(), b"/registry/secrets/a/b", &enc);
    let _ = value::detect(data);
    static CATALOG: OnceLock<keys::Catalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(|| keys::Catalog::builtin(s));
    let _ = keys::parse_key(catalog, "/registry", data);
});
