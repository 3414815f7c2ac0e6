use super::*;

fn recipient() -> String {
    use age::secrecy::ExposeSecret as _;
    let id = age::x25519::Identity::generate();
    let _ = id.to_string().expose_secret().len();
    id.to_public().to_string()
}

fn full(recipient: &str) -> String {
    format!(
        r#"apiVersion: lifeboat/v1
kind: BackupPolicy
metadata:
  name: prod
spec:
  cluster:
    endpoints: ["https://10.0.0.2:2379", "https://10.0.0.3:2379"]
    tls: {{caFile: /etc/lifeboat/ca.crt, certFile: /etc/lifeboat/c.crt, keyFile: /etc/lifeboat/c.key}}
    auth: {{username: root, passwordFile: /etc/lifeboat/pw}}
    selection: {{prefer: follower, maxRaftLag: 1000}}
  schedule: {{cron: "0 2 * * *", timezone: Europe/Berlin, jitter: 5m}}
  snapshot: {{spoolDir: /var/lib/lifeboat/spool, timeout: 30m, stallTimeout: 60s}}
  compression: {{level: 3, threads: 0}}
  encryption: {{recipients: ["{recipient}"]}}
  destinations:
    - {{name: primary, url: "s3://bucket/prefix/x", options: {{endpoint: "http://127.0.0.1:9000", region: us-east-1, allowHttp: true}}}}
    - {{name: local, url: "file:///var/backups/etcd"}}
  retention: {{keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 12}}
"#
    )
}

fn err(text: &str) -> PolicyError {
    parse("p.yaml", text).expect_err("policy should be rejected")
}

#[test]
fn full_example_parses() {
    let r = recipient();
    let p = parse("p.yaml", &full(&r)).unwrap();
    assert_eq!(p.name, "prod");
    assert_eq!(p.cluster.endpoints.len(), 2);
    assert!(p.cluster.tls.as_ref().unwrap().client.is_some());
    assert_eq!(p.cluster.selection.max_raft_lag, 1000);
    assert_eq!(p.schedule.as_ref().unwrap().jitter.0.as_secs(), 300);
    assert_eq!(p.snapshot.stall_timeout.0.as_secs(), 60);
    assert_eq!(p.compression.level.0, 3);
    match &p.encryption {
        EncryptionSpec::Age { recipients, .. } => assert_eq!(recipients, &vec![r.clone()]),
        EncryptionSpec::None => panic!("expected age"),
    }
    assert_eq!(
        p.destinations[0].kind,
        DestinationKind::S3 {
            bucket: "bucket".into()
        }
    );
    assert_eq!(p.destinations[0].prefix, "prefix/x");
    assert_eq!(p.destinations[0].options["allowHttp"], "true");
    assert_eq!(
        p.destinations[1].kind,
        DestinationKind::Local {
            path: "/var/backups/etcd".into()
        }
    );
    assert_eq!(p.retention.as_ref().unwrap().keep_daily, Some(7));
    assert!(p.retention.as_ref().unwrap().prune_after_backup);
    assert_eq!(
        p.retention.as_ref().unwrap().orphan_grace,
        DEFAULT_ORPHAN_GRACE
    );
    let text = full(&r).replace("keepMonthly: 12}", "keepMonthly: 12, orphanGrace: 6h}");
    let p = parse("p.yaml", &text).unwrap();
    assert_eq!(p.retention.unwrap().orphan_grace.as_secs(), 6 * 3600);
}

#[test]
fn minimal_policy_gets_defaults() {
    let p = parse(
        "p.yaml",
        "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata: {name: a}\nspec:\n  cluster: \
         {endpoints: [\"http://127.0.0.1:2379\"]}\n  encryption: none\n  destinations: [{name: \
         l, url: \"file:///tmp/x\"}]\n",
    )
    .unwrap();
    assert!(!p.encryption.is_encrypted());
    assert_eq!(p.snapshot.timeout.0.as_secs(), 1800);
    assert_eq!(p.cluster.selection.prefer, Prefer::Follower);
    assert!(p.schedule.is_none() && p.retention.is_none());
}

#[test]
fn a_typo_names_its_line_and_column() {
    let text = full(&recipient()).replace("stallTimeout", "stallTimout");
    let e = err(&text);
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.column.is_some());
    assert!(e.message.contains("stallTimout"), "{e}");
    assert!(
        e.message.contains("stallTimeout"),
        "lists the expected fields: {e}"
    );
    assert!(e.to_string().starts_with("p.yaml:12:"), "{e}");
}

#[test]
fn value_errors_point_at_the_value() {
    let r = recipient();
    let cases: &[(&str, &str, usize, &str)] = &[
        ("0 2 * * *", "0 2 * *", 11, "expected 5 fields"),
        ("0 2 * * *", "0 25 * * *", 11, "cron"),
        ("timezone: Europe/Berlin", "timezone: Mars/Base", 11, "IANA"),
        ("timeout: 30m", "timeout: 30 parsecs", 12, "duration"),
        ("timeout: 30m", "timeout: 0s", 12, "greater than zero"),
        ("level: 3", "level: 22", 13, "1 (fastest) to 19"),
        ("name: prod", "name: Prod_1", 4, "metadata.name"),
        ("https://10.0.0.3:2379", "10.0.0.3:2379", 7, "client URL"),
        ("prefer: follower", "prefer: newest", 10, "newest"),
        (
            "region: us-east-1",
            "regoin: us-east-1",
            16,
            "valid options for s3:// are: endpoint",
        ),
        (
            "file:///var/backups/etcd",
            "ftp://bucket",
            17,
            "expected s3://, gs://, az:// or file://",
        ),
        (
            "region: us-east-1",
            "region: us-east-1, retries: many",
            16,
            "a number of retries from 0 to 20",
        ),
        (
            "allowHttp: true",
            "allowHttp: yes-please",
            16,
            "true or false",
        ),
        (
            "file:///var/backups/etcd",
            "file://var/backups",
            17,
            "three slashes",
        ),
    ];
    for (from, to, line, needle) in cases {
        let text = full(&r).replacen(from, to, 1);
        assert_ne!(text, full(&r), "replacement {from:?} did not apply");
        let e = err(&text);
        assert!(e.message.contains(needle), "{to:?}: {e}");
        assert_eq!(e.line, Some(*line), "{to:?}: {e}");
    }
}

#[test]
fn encryption_must_be_said() {
    let r = recipient();
    let e = err(&full(&r).replace(&format!("  encryption: {{recipients: [\"{r}\"]}}\n"), ""));
    assert!(e.message.contains("missing field `encryption`"), "{e}");
    let e = err(&full(&r).replace(&format!("recipients: [\"{r}\"]"), "recipients: []"));
    assert!(e.message.contains("encryption: none"), "{e}");
    let e = err(&full(&r).replace(&r, "age1notakey"));
    assert!(e.message.contains("not an age X25519 public key"), "{e}");
    assert_eq!(e.line, Some(14));
    let e = err(&full(&r).replace(&format!("{{recipients: [\"{r}\"]}}"), "off"));
    assert!(e.message.contains("expected `none`"), "{e}");
}

#[test]
fn cross_field_rules() {
    let r = recipient();
    let e = err(&full(&r).replace("    tls: {caFile: /etc/lifeboat/ca.crt, certFile: /etc/lifeboat/c.crt, keyFile: /etc/lifeboat/c.key}\n", ""));
    assert!(e.message.contains("tls is not set"), "{e}");
    let e = err(&full(&r).replace(", keyFile: /etc/lifeboat/c.key", ""));
    assert!(
        e.message.contains("certFile and keyFile go together"),
        "{e}"
    );
    let e = err(&full(&r).replace("name: local", "name: primary"));
    assert!(e.message.contains("used twice"), "{e}");
    let e = err(&full(&r).replace(
        "{keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 12}",
        "{}",
    ));
    assert!(e.message.contains("keeps nothing"), "{e}");
    let e = err(&full(&r).replace(
        "{keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 12}",
        "{keepLast: 0, keepDaily: 0, pruneAfterBackup: true}",
    ));
    assert!(e.message.contains("keeps nothing"), "{e}");
    let e = err(&full(&r).replace("https://10.0.0.3:2379", "https://10.0.0.2:2379"));
    assert!(e.message.contains("listed twice"), "{e}");
    let e = err(&full(&r).replace("lifeboat/v1", "lifeboat/v2"));
    assert!(e.message.contains("apiVersion"), "{e}");
    assert_eq!(e.line, Some(1));
}

#[test]
fn yaml_syntax_errors_are_located() {
    let e = err("apiVersion: lifeboat/v1\nkind: [\n");
    assert!(e.line.is_some(), "{e}");
}

fn schedule(cron: &str, tz: &str) -> Schedule {
    let text = full(&recipient()).replace(
        "{cron: \"0 2 * * *\", timezone: Europe/Berlin, jitter: 5m}",
        &format!("{{cron: \"{cron}\", timezone: {tz}}}"),
    );
    parse("p.yaml", &text).unwrap().schedule.unwrap()
}

#[test]
fn schedules_know_their_period_and_slots() {
    use chrono::TimeZone;
    let at = |h, m, s| chrono::Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap();
    let daily = schedule("0 2 * * *", "UTC");
    assert_eq!(daily.cron_with_seconds(), "0 0 2 * * *");
    assert_eq!(daily.period_at(at(5, 0, 0)).unwrap().as_secs(), 86_400);
    assert_eq!(
        daily.stale_after_at(at(5, 0, 0)).unwrap().as_secs(),
        2 * 86_400
    );
    assert_eq!(daily.slot_at(at(5, 0, 0)), Some(at(2, 0, 0)));
    assert_eq!(daily.slot_at(at(2, 0, 0)), Some(at(2, 0, 0)));
    assert_eq!(
        daily.slot_at(at(1, 59, 59)),
        Some(chrono::Utc.with_ymd_and_hms(2026, 11, 20, 2, 0, 0).unwrap())
    );
    // 02:00 in Berlin is 01:00 UTC in November.
    let berlin = schedule("0 2 * * *", "Europe/Berlin");
    assert_eq!(berlin.slot_at(at(5, 0, 0)), Some(at(1, 0, 0)));
    // Weekdays only: on Saturday the slot is Friday's run.
    let weekdays = schedule("0 2 * * 1-5", "UTC");
    assert_eq!(
        weekdays.slot_at(at(12, 0, 0)),
        Some(chrono::Utc.with_ymd_and_hms(2026, 11, 20, 2, 0, 0).unwrap())
    );
    // A leading seconds field.
    let fast = schedule("*/3 * * * * *", "UTC");
    assert_eq!(fast.cron_with_seconds(), "*/3 * * * * *");
    assert_eq!(fast.slot_at(at(5, 0, 7)), Some(at(5, 0, 6)));
    let late = at(5, 0, 7) + chrono::Duration::milliseconds(250);
    assert_eq!(fast.slot_at(late), Some(at(5, 0, 6)));
    assert_eq!(fast.next_after(late), Some(at(5, 0, 9)));
    assert_eq!(fast.period_at(at(5, 0, 7)).unwrap().as_secs(), 3);
}

#[test]
fn gcs_and_azure_destinations_take_their_own_options() {
    let r = recipient();
    let text = full(&r).replace(
        "    - {name: local, url: \"file:///var/backups/etcd\"}",
        "    - {name: gcs, url: \"gs://backups/etcd/prod\", options: {serviceAccountFile: /sa.json, \
         endpoint: \"http://127.0.0.1:4443\", timeout: 30s}}\n    - {name: blob, url: \
         \"az://etcd/prod\", options: {accountName: acct, accessKeyFile: /key, retries: 5}, \
         required: false}",
    );
    let p = parse("p.yaml", &text).unwrap();
    assert_eq!(
        p.destinations[1].kind,
        DestinationKind::Gcs {
            bucket: "backups".into()
        }
    );
    assert_eq!(p.destinations[1].prefix, "etcd/prod");
    assert!(p.destinations[1].required);
    assert_eq!(
        p.destinations[2].kind,
        DestinationKind::Azure {
            container: "etcd".into()
        }
    );
    assert!(!p.destinations[2].required);

    // An S3 option on Azure is refused with the valid list; a secret given twice is refused.
    let e = err(&text.replace("accountName: acct", "region: eu"));
    assert!(
        e.message
            .contains("valid options for az:// are: accountName"),
        "{e}"
    );
    let e = err(&text.replace("accountName: acct", "accessKey: k"));
    assert!(e.message.contains("set the same secret"), "{e}");
    let e = err(&text.replace("gs://backups/etcd/prod", "gs:///etcd"));
    assert!(e.message.contains("no bucket"), "{e}");
}

#[test]
fn options_object_store_would_silently_override_are_refused_where_they_are() {
    let r = recipient();
    let with = |options: &str| {
        full(&r).replace(
            "    - {name: local, url: \"file:///var/backups/etcd\"}",
            &format!("    - {{name: blob, url: \"az://etcd/prod\", options: {{{options}}}}}"),
        )
    };
    // The issue as reported: useEmulator wins and endpoint is ignored.
    let e = err(&with(
        "accountName: devstoreaccount1, useEmulator: true, endpoint: \"http://10.0.0.9:10000\"",
    ));
    assert!(
        e.message
            .contains("options useEmulator: true and endpoint cannot be used together"),
        "{e}"
    );
    assert_eq!((e.line, e.file.as_str()), (Some(17), "p.yaml"), "{e}");
    assert!(e.to_string().starts_with("p.yaml:17:"), "{e}");
    // useEmulator: false with an endpoint is how Azurite elsewhere is reached.
    parse(
        "p.yaml",
        &with("accountName: a, useEmulator: false, endpoint: \"http://10.0.0.9:10000/a\""),
    )
    .unwrap();
    for (options, needle) in [
        (
            "accountName: a, accessKeyFile: /k, sasTokenFile: /s",
            "accessKeyFile and sasTokenFile",
        ),
        (
            "accountName: a, accessKey: k, msiEndpoint: \"http://x\"",
            "accessKey and msiEndpoint",
        ),
        (
            "accountName: a, clientId: c, tenantId: t, clientSecretFile: /s, sasToken: x",
            "clientSecretFile and sasToken",
        ),
        (
            "accountName: a, useEmulator: true, allowHttp: false",
            "allowHttp",
        ),
        (
            "accountName: a, useEmulator: true, clientSecretFile: /s",
            "clientSecretFile",
        ),
    ] {
        let e = err(&with(options));
        assert!(e.message.contains(needle), "{options}: {e}");
        assert_eq!(e.line, Some(17), "{e}");
    }
    let gcs = full(&r).replace(
        "    - {name: local, url: \"file:///var/backups/etcd\"}",
        "    - {name: g, url: \"gs://b/p\", options: {serviceAccountFile: /sa.json, \
         applicationCredentials: /adc.json}}",
    );
    assert!(err(&gcs).message.contains("applicationCredentials"));
    // S3 encryption settings that would not be sent.
    let s3 = |options: &str| {
        full(&r).replace(
            "region: us-east-1, allowHttp: true",
            &format!("region: us-east-1, {options}"),
        )
    };
    let e = err(&s3("sseKmsKeyId: k1"));
    assert!(e.message.contains("sseKmsKeyId only applies"), "{e}");
    assert_eq!(e.line, Some(16), "{e}");
    let e = err(&s3(
        "serverSideEncryption: AES256, sseBucketKeyEnabled: true",
    ));
    assert!(e.message.contains("it is AES256"), "{e}");
    parse(
        "p.yaml",
        &s3("serverSideEncryption: \"aws:kms\", sseKmsKeyId: k1, sseBucketKeyEnabled: true"),
    )
    .unwrap();
}

#[test]
fn retry_and_wait_for_leader_have_defaults_and_limits() {
    let r = recipient();
    let p = parse("p.yaml", &full(&r)).unwrap();
    let s = p.schedule.as_ref().unwrap();
    assert_eq!(
        (
            s.retry.attempts,
            s.retry.initial_backoff.as_secs(),
            s.retry.max_backoff.as_secs()
        ),
        (3, 60, 900)
    );
    assert_eq!(p.cluster.selection.wait_for_leader.0.as_secs(), 30);
    let text = full(&r)
        .replace(
            "jitter: 5m}",
            "jitter: 5m, retry: {attempts: 5, initialBackoff: 10s, maxBackoff: 2m}}",
        )
        .replace("maxRaftLag: 1000}", "maxRaftLag: 1000, waitForLeader: 0s}");
    let p = parse("p.yaml", &text).unwrap();
    let s = p.schedule.as_ref().unwrap();
    assert_eq!(
        (
            s.retry.attempts,
            s.retry.initial_backoff.as_secs(),
            s.retry.max_backoff.as_secs()
        ),
        (5, 10, 120)
    );
    assert!(p.cluster.selection.wait_for_leader.0.is_zero());
    for (retry, needle) in [
        ("{attempts: 0}", "expected 1 (no retries) to 20"),
        ("{attempts: 21}", "expected 1 (no retries) to 20"),
        (
            "{initialBackoff: 5m, maxBackoff: 1m}",
            "shorter than initialBackoff",
        ),
        ("{initialBackoff: 0s}", "greater than zero"),
        ("{tries: 2}", "unknown field `tries`"),
    ] {
        let e = err(&full(&r).replace("jitter: 5m}", &format!("jitter: 5m, retry: {retry}}}")));
        assert!(e.message.contains(needle), "{retry}: {e}");
        assert_eq!(e.line, Some(11), "{retry}: {e}");
    }
}

#[test]
fn pitr_defaults_sizes_and_limits() {
    let r = recipient();
    assert!(parse("p.yaml", &full(&r)).unwrap().pitr.is_none());
    let with = |pitr: &str| full(&r) + &format!("  pitr: {pitr}\n");
    let p = parse("p.yaml", &with("{}")).unwrap().pitr.unwrap();
    assert_eq!(
        (
            p.segment_max_age.as_secs(),
            p.segment_max_bytes,
            p.window.as_secs()
        ),
        (60, 64 << 20, 72 * 3600)
    );
    let p = parse(
        "p.yaml",
        &with("{segmentMaxAge: 10s, segmentMaxBytes: 8MiB, window: 6h}"),
    )
    .unwrap()
    .pitr
    .unwrap();
    assert_eq!(
        (
            p.segment_max_age.as_secs(),
            p.segment_max_bytes,
            p.window.as_secs()
        ),
        (10, 8 << 20, 6 * 3600)
    );
    assert_eq!(parse_byte_size("5000000").unwrap(), 5_000_000);
    assert_eq!(parse_byte_size("2GB").unwrap(), 2_000_000_000);
    for (pitr, needle) in [
        ("{segmentMaxBytes: 64Mi}", "unknown unit"),
        ("{segmentMaxBytes: 100KiB}", "1MiB to 4GiB"),
        ("{segmentMaxAge: 2d}", "at most 24h"),
        ("{retain: 1h}", "unknown field `retain`"),
    ] {
        let e = err(&with(pitr));
        assert!(e.message.contains(needle), "{pitr}: {e}");
        assert_eq!(e.line, Some(19), "{pitr}: {e}");
    }
    let e = err(&with("{window: 10s, segmentMaxAge: 1m}"));
    assert!(e.message.contains("shorter than segmentMaxAge"), "{e}");
}

#[test]
fn part_and_job_sizes_have_defaults_and_limits() {
    let r = recipient();
    let p = parse("p.yaml", &full(&r)).unwrap();
    assert_eq!(p.destinations[0].part_size, 5 << 20, "object stores: 5 MiB");
    assert_eq!(p.destinations[1].part_size, 1 << 20, "local: 1 MiB");
    assert_eq!(p.compression.job_size.0, 2 << 20);

    let text = full(&r).replace(
        r#"url: "file:///var/backups/etcd"}"#,
        r#"url: "file:///var/backups/etcd", partSize: 256KiB}"#,
    );
    let p = parse("p.yaml", &text).unwrap();
    assert_eq!(p.destinations[1].part_size, 256 << 10);

    // S3 refuses parts under 5 MiB; say so before a backup runs into it.
    let e = err(&full(&r).replace("allowHttp: true}}", "allowHttp: true}, partSize: 1MiB}"));
    assert!(
        e.to_string()
            .contains("partSize 1048576 bytes is out of range"),
        "{e}"
    );
    let e = err(&full(&r).replace("threads: 0}", "threads: 0, jobSize: 100KiB}"));
    assert!(e.to_string().contains("between 512KiB and 256MiB"), "{e}");
    assert!(e.to_string().contains("p.yaml:"), "located: {e}");
}
