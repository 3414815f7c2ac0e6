//! One conformance suite for every destination kind lifeboat ships: a local directory, S3 (moto),
//! Azure Blob (Azurite) and GCS (the in-repo XML-API server in `gcs_server/`), all through the
//! same policy path users write. Each must store a
//! multipart object larger than one part, list by prefix, read back, refuse to overwrite a
//! manifest, leave nothing after an aborted upload, delete, and carry a full backup -> list ->
//! restore round trip with orphan detection.

mod common;
mod gcs_server;

use common::*;
use lifeboat::ops;
use lifeboat::store::Destination;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Azurite's well-known development account key (public; documented by Microsoft).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A GCS service-account key for object_store that skips OAuth and talks to `base_url`.
fn gcs_key(dir: &Path, base_url: &str) -> std::path::PathBuf {
    let sa = dir.join("gcs-sa.json");
    std::fs::write(
        &sa,
        serde_json::json!({
            "private_key": "",
            "private_key_id": "",
            "client_email": "",
            "disable_oauth": true,
            "gcs_base_url": base_url,
        })
        .to_string(),
    )
    .unwrap();
    sa
}

/// The `destinations:` entry of a policy for each kind, each under a fresh prefix; `gcs` is the
/// base URL of the in-repo GCS XML-API server.
fn destinations(dir: &Path, test: &str, gcs: &str) -> Vec<(&'static str, String)> {
    let local = dir.join(format!("local-{test}"));
    std::fs::create_dir_all(&local).unwrap();
    let bucket = bucket_name(test);
    create_bucket(&bucket);
    let az_endpoint = std::env::var("LIFEBOAT_TEST_AZURE_ENDPOINT")
        .expect("LIFEBOAT_TEST_AZURE_ENDPOINT is not set: run the tests with scripts/test.sh");
    let container = std::env::var("LIFEBOAT_TEST_AZURE_CONTAINER").unwrap();
    let key_file = dir.join("azurite.key");
    std::fs::write(&key_file, format!("{AZURITE_KEY}\n")).unwrap();
    let sa = gcs_key(dir, gcs);
    vec![
        (
            "gcs",
            format!(
                "{{name: gcs, url: \"gs://etcd-backups/{test}-{}\", options: {{serviceAccountFile: \
                 {}, endpoint: \"{gcs}\", allowHttp: true}}}}",
                free_port(),
                sa.display()
            ),
        ),
        (
            "local",
            format!("{{name: local, url: \"file://{}\"}}", local.display()),
        ),
        (
            "s3",
            format!(
                "{{name: s3, url: \"s3://{bucket}/conformance\", options: {{endpoint: \"{}\", \
                 region: us-east-1, allowHttp: true, accessKeyId: test, secretAccessKey: test}}}}",
                s3_endpoint()
            ),
        ),
        (
            "azure",
            format!(
                "{{name: azure, url: \"az://{container}/{test}-{}\", options: {{endpoint: \
                 \"{az_endpoint}\", accountName: devstoreaccount1, accessKeyFile: {}, \
                 allowHttp: true, retries: 2, timeout: 30s}}}}",
                free_port(),
                key_file.display()
            ),
        ),
    ]
}

fn load(path: &Path) -> Destination {
    let lp = ops::load_policy(path).unwrap_or_else(|e| panic!("{}", e.chain()));
    lp.destinations.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_destination_stores_lists_reads_refuses_overwrites_aborts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let gcs = gcs_server::start().await;
    for (kind, dest) in destinations(dir.path(), "conform-objects", &gcs) {
        let rcpt = age_key().1;
        let policy = write_policy(
            dir.path(),
            "conf",
            &["http://127.0.0.1:1".into()],
            &dest,
            &rcpt,
        );
        let d = load(&policy);

        // A multipart object of 2.5 parts, written in odd-sized pieces, reads back identical.
        let part = d.part_size();
        let len = part * 5 / 2;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut up = d.start_upload("conf/big.bin").await.unwrap();
        for piece in data.chunks(3 << 20) {
            up.write(piece);
        }
        up.finish().await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        let (size, stream) = d.get_stream("conf/big.bin").await.unwrap();
        assert_eq!(size, len as u64, "{kind}");
        let got: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        let mut h = Sha256::new();
        got.iter().for_each(|b| h.update(b));
        assert_eq!(
            h.finalize().to_vec(),
            Sha256::digest(&data).to_vec(),
            "{kind}: read back differs"
        );

        // Create-only puts: the second write of a manifest is refused and the first stays.
        d.put_new("conf/a.manifest.json", b"first".to_vec())
            .await
            .unwrap();
        let again = d.put_new("conf/a.manifest.json", b"second".to_vec()).await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{kind}: {again:?}"
        );
        assert_eq!(
            &d.get_small("conf/a.manifest.json").await.unwrap()[..],
            b"first"
        );

        // An aborted multipart upload leaves nothing visible.
        let mut up = d.start_upload("conf/aborted.bin").await.unwrap();
        up.write(&data[..part + 1]);
        up.abort().await.unwrap();

        // Listing by prefix sees exactly what was committed, with sizes; another prefix is apart.
        d.put_new("other/x.bin", b"x".to_vec()).await.unwrap();
        let mut listed: Vec<(String, u64)> = d
            .list("conf/")
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.key, l.size))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("conf/a.manifest.json".to_owned(), 5),
                ("conf/big.bin".to_owned(), len as u64)
            ],
            "{kind}"
        );

        // Delete, and deleting what is gone is not an error.
        d.delete("conf/big.bin").await.unwrap();
        d.delete("conf/big.bin").await.unwrap();
        assert_eq!(d.list("conf/").await.unwrap().len(), 1, "{kind}");
        assert!(d.get_small("conf/big.bin").await.is_err(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_list_restore_round_trip_and_orphans_on_every_destination() {
    let cluster = EtcdCluster::start(3);
    cluster.load("/k/", 400, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let gcs = gcs_server::start().await;
    for (kind, dest) in destinations(dir.path(), "conform-round-trip", &gcs) {
        let (id, rcpt) = age_key();
        let key = write_identity(dir.path(), &id);
        let policy = write_policy(dir.path(), "prod", &cluster.endpoints(), &dest, &rcpt);

        let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let o = lifeboat(&["list", "--policy", policy.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(listed[0]["id"], b["id"], "{kind}");
        assert_eq!(listed[0]["destinations"][0], kind, "{kind}");

        let out = dir.path().join(format!("restored-{kind}.db"));
        restore_json(&policy, &key, &out);
        let status = etcdctl_status(&out);
        assert_eq!(
            status["revision"], b["manifest"]["snapshot"]["revision"],
            "{kind}"
        );
        assert_eq!(status["hash"], b["manifest"]["snapshot"]["status"]["hash"]);

        // A data object without a manifest (a crashed run) is found as an orphan.
        let lp = ops::load_policy(&policy).unwrap();
        lp.destinations[0]
            .put_new(
                "prod/20260101T000000Z-00000a.snapshot.zst.age",
                b"partial".to_vec(),
            )
            .await
            .unwrap();
        let report = ops::list(&lp).await;
        assert_eq!(report.backups.len(), 1, "{kind}");
        assert_eq!(report.orphans.len(), 1, "{kind}");
        assert!(report.problems.is_empty(), "{kind}: {:?}", report.problems);
    }
}

/// The GCS configuration path with nothing listening: the service-account key file and the
/// base-URL override reach the client, and errors name the destination without echoing the key.
#[tokio::test(flavor = "multi_thread")]
async fn gcs_configuration_path_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there
    let secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n";
    let sa = dir.path().join("sa.json");
    std::fs::write(
        &sa,
        serde_json::json!({
            "private_key": secret,
            "private_key_id": "k1",
            "client_email": "backup@example.iam.gserviceaccount.com",
            "disable_oauth": true,
            "gcs_base_url": format!("http://127.0.0.1:{port}"),
        })
        .to_string(),
    )
    .unwrap();
    let dest = format!(
        "{{name: gcs, url: \"gs://etcd-backups/prod\", options: {{serviceAccountFile: {}, \
         endpoint: \"http://127.0.0.1:{port}\", allowHttp: true, retries: 0, timeout: 5s}}}}",
        sa.display()
    );
    let rcpt = age_key().1;
    let policy = write_policy(
        dir.path(),
        "g",
        &["http://127.0.0.1:1".into()],
        &dest,
        &rcpt,
    );
    let o = lifeboat(&["policy", "check", policy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The store is built from the key file and talks to the overridden base URL.
    let d = load(&policy);
    let err = d.list("g/").await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    let o = lifeboat(&["list", "--policy", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("destination \"gcs\""), "{}", stderr(&o));
    assert!(!stderr(&o).contains("TOPSECRET"), "{}", stderr(&o));

    // A key file that is not a service-account key: refused at load, naming the destination,
    // never showing the file's content.
    std::fs::write(&sa, format!("not json {secret}")).unwrap();
    let o = lifeboat(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("destination \"gcs\""), "{}", stderr(&o));
    assert!(!stderr(&o).contains("TOPSECRET"), "{}", stderr(&o));
}
