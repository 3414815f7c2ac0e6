//! Backups from clusters that require client certificates or etcd authentication.

mod common;

use common::*;

fn write_policy(
    dir: &std::path::Path,
    endpoint: &str,
    cluster_extra: &str,
    rcpt: &str,
) -> std::path::PathBuf {
    let local = dir.join("backups");
    std::fs::create_dir_all(&local).unwrap();
    let yaml = format!(
        "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata: {{name: sec}}\nspec:\n  \
         cluster:\n    endpoints: [\"{endpoint}\"]\n{cluster_extra}  snapshot: {{spoolDir: {}}}\n  \
         encryption: {{recipients: [\"{rcpt}\"]}}\n  destinations:\n    - {{name: local, url: \
         \"file://{}\"}}\n",
        dir.join("spool").display(),
        local.display()
    );
    let p = dir.join("policy.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let cluster = EtcdCluster::start_with(1, Some(&tls));
    let (id, rcpt) = age_key();
    let tls_yaml = format!(
        "    tls: {{caFile: {}, certFile: {}, keyFile: {}}}\n",
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let policy = write_policy(dir.path(), &cluster.members[0].client_url, &tls_yaml, &rcpt);
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = out["manifest"]["stored"]["key"].as_str().unwrap();
    let stored = std::fs::read(dir.path().join("backups").join(key)).unwrap();
    let snap = dir.path().join("s.db");
    std::fs::write(&snap, unseal(&stored, Some(&id))).unwrap();
    assert!(etcdctl_status(&snap)["totalKey"].as_u64().unwrap() > 0);

    // Without the client certificate the member refuses us, and nothing is written.
    // (A refused handshake reads like any transport error, so no waiting for a leader.)
    let no_client = format!(
        "    tls: {{caFile: {}}}\n    selection: {{waitForLeader: 0s}}\n",
        tls.ca.display()
    );
    let dir2 = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir2.path(),
        &cluster.members[0].client_url,
        &no_client,
        &rcpt,
    );
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(files_under(&dir2.path().join("backups")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_with_etcd_auth_and_a_clear_error_for_a_wrong_password() {
    let cluster = EtcdCluster::start(1);
    let ep = cluster.members[0].client_url.clone();
    etcdctl(&ep, &["user", "add", "root:s3cret-pass"]);
    etcdctl(&ep, &["auth", "enable"]);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret-pass\n").unwrap();
    let (_, rcpt) = age_key();
    let auth = format!(
        "    auth: {{username: root, passwordFile: {}}}\n",
        pw.display()
    );
    let policy = write_policy(dir.path(), &ep, &auth, &rcpt);
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_under(&dir.path().join("backups")).len(), 2);

    std::fs::write(&pw, "wrong-pass\n").unwrap();
    let o = lifeboat(&["backup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains("wrong-pass") && !err.contains("s3cret-pass"),
        "password leaked: {err}"
    );
    assert_eq!(
        files_under(&dir.path().join("backups")).len(),
        2,
        "nothing new written"
    );
}
