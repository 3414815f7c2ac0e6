//! JSON Schema (draft 2020-12) of the policy format, for editors and CI linters
//! (`lifeboat policy schema`). The parser stays the authority: values such as cron expressions,
//! recipients and URLs are checked there; the tests keep this schema and the parser in step.

use super::{AZURE_OPTIONS, CLIENT_OPTIONS, GCS_OPTIONS, S3_OPTIONS, StoreOption};
use serde_json::{Value, json};

fn duration(desc: &str) -> Value {
    json!({"type": "string", "pattern": "^[0-9]+ ?[a-z]+( ?[0-9]+ ?[a-z]+)*$", "description": desc})
}

fn count(desc: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "description": desc})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

fn all_options() -> impl Iterator<Item = &'static StoreOption> {
    let mut seen = std::collections::BTreeSet::new();
    S3_OPTIONS
        .iter()
        .chain(GCS_OPTIONS)
        .chain(AZURE_OPTIONS)
        .chain(CLIENT_OPTIONS)
        .filter(move |o| seen.insert(o.key))
}

/// The schema.
pub fn policy_schema() -> Value {
    // Every scheme's options; which apply to which scheme is checked by the parser.
    let options: serde_json::Map<String, Value> = all_options()
        .map(|o| {
            (
                o.key.to_owned(),
                json!({"type": ["string", "boolean", "number"]}),
            )
        })
        .collect();
    let path = json!({"type": "string", "minLength": 1});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lifeboat.invalid/schema/policy-v1.json",
        "title": "lifeboat BackupPolicy",
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "lifeboat/v1"},
            "kind": {"const": "BackupPolicy"},
            "metadata": object(json!({
                "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                         "description": "Names the backup set; part of every object key."}
            }), &["name"]),
            "spec": object(json!({
                "cluster": object(json!({
                    "endpoints": {"type": "array", "minItems": 1, "uniqueItems": true,
                                  "items": {"type": "string", "pattern": "^https?://"}},
                    "tls": object(json!({"caFile": path, "certFile": path, "keyFile": path}), &[]),
                    "auth": object(json!({"username": {"type": "string", "minLength": 1},
                                          "passwordFile": path}), &["username", "passwordFile"]),
                    "quotaBackendBytes": {"type": ["string", "integer"], "description": "The members' --quota-backend-bytes (default 2GiB), for the watchdog's quota percentages."},
                    "selection": object(json!({
                        "prefer": {"enum": ["follower", "leader", "any"]},
                        "maxRaftLag": count("Skip members this many applied entries behind."),
                        "statusTimeout": duration("Per-member status timeout."),
                        "waitForLeader": duration("While no member qualifies for passing reasons (an election), probe again for up to this long; 0s: never."),
                    }), &[]),
                }), &["endpoints"]),
                "schedule": object(json!({
                    "cron": {"type": "string", "description": "5 fields, or 6 with seconds first."},
                    "timezone": {"type": "string", "description": "IANA name, e.g. Europe/Berlin."},
                    "jitter": duration("Random delay up to this long before each run."),
                    "staleAfter": duration("/healthz fails after this long without a success."),
                    "retry": object(json!({
                        "attempts": {"type": "integer", "minimum": 1, "maximum": 20,
                                     "description": "Runs per slot, the first included; 1: no retries."},
                        "initialBackoff": duration("Delay before the first retry; doubles each time."),
                        "maxBackoff": duration("Longest delay between runs."),
                    }), &[]),
                }), &["cron"]),
                "monitor": object(json!({
                    "interval": duration("Between the daemon's watchdog probes of every member; 0s = off (default 60s)."),
                }), &[]),
                "snapshot": object(json!({
                    "spoolDir": path,
                    "timeout": duration("Whole snapshot stream."),
                    "stallTimeout": duration("No bytes for this long aborts the attempt."),
                    "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 10},
                }), &[]),
                "compression": object(json!({
                    "level": {"type": "integer", "minimum": 1, "maximum": 19},
                    "threads": count("zstd worker threads; 0 = one fewer than the cores (1 to 4)."),
                    "jobSize": {"type": "string", "description": "Input per zstd job, 512KiB to 256MiB (default 2MiB); memory grows with it times the threads."},
                }), &[]),
                "encryption": {"oneOf": [
                    {"const": "none"},
                    object(json!({
                        "recipients": {"type": "array", "items": {"type": "string", "pattern": "^age1"}},
                        "recipientsFile": path,
                    }), &[]),
                ]},
                "destinations": {"type": "array", "minItems": 1, "items": object(json!({
                    "name": {"type": "string", "minLength": 1},
                    "url": {"type": "string", "pattern": "^(s3|gs|az|file)://"},
                    "options": {"type": "object", "additionalProperties": false, "properties": options},
                    "required": {"type": "boolean", "description": "false: a failure here does not fail the backup."},
                    "partSize": {"type": "string", "description": "Bytes per uploaded part: object stores 5MiB (default) to 5GiB, local 64KiB to 1GiB (default 1MiB)."},
                }), &["name", "url"])},
                "retention": object(json!({
                    "keepLast": count("The newest N."),
                    "keepHourly": count("Newest of each of the N most recent hours with a backup."),
                    "keepDaily": count("... days."),
                    "keepWeekly": count("... ISO weeks."),
                    "keepMonthly": count("... months."),
                    "keepYearly": count("... years."),
                    "keepWithin": duration("Everything this close to the newest backup."),
                    "pruneAfterBackup": {"type": "boolean"},
                    "orphanGrace": duration("Data without a manifest older than this is removed."),
                }), &[]),
                "lock": object(json!({
                    "etcd": object(json!({"ttl": duration("Lease TTL of the slot lock.")}), &[]),
                }), &["etcd"]),
                "pitr": object(json!({
                    "segmentMaxAge": duration("Seal a segment this long after its first revision (the recovery point)."),
                    "segmentMaxBytes": {"type": ["string", "integer"],
                                        "description": "Seal a segment at this plaintext size, e.g. 64MiB."},
                    "window": duration("How far back point-in-time restores stay possible."),
                }), &[]),
            }), &["cluster", "encryption", "destinations"]),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the schema names is accepted by the parser (a policy using all of them
    /// parses), and an unknown one at each level is refused by both.
    #[test]
    fn the_schema_and_the_parser_agree_on_every_field() {
        let every_field = r#"
apiVersion: lifeboat/v1
kind: BackupPolicy
metadata: {name: prod}
spec:
  cluster:
    endpoints: ["https://10.0.0.2:2379"]
    tls: {caFile: /ca, certFile: /c, keyFile: /k}
    auth: {username: root, passwordFile: /pw}
    selection: {prefer: any, maxRaftLag: 10, statusTimeout: 5s, waitForLeader: 10s}
    quotaBackendBytes: 8GiB
  schedule: {cron: "0 2 * * *", timezone: UTC, jitter: 1m, staleAfter: 2d,
             retry: {attempts: 4, initialBackoff: 30s, maxBackoff: 5m}}
  snapshot: {spoolDir: /s, timeout: 1h, stallTimeout: 1m, maxAttempts: 2}
  compression: {level: 3, threads: 2, jobSize: 4MiB}
  encryption: {recipients: [], recipientsFile: /r}
  destinations:
    - {name: a, url: "s3://b/p", options: {region: x}, required: false, partSize: 16MiB}
DESTINATIONS  retention: {keepLast: 1, keepHourly: 1, keepDaily: 1, keepWeekly: 1, keepMonthly: 1,
              keepYearly: 1, keepWithin: 1h, pruneAfterBackup: false, orphanGrace: 2h}
  lock: {etcd: {ttl: 30s}}
  pitr: {segmentMaxAge: 30s, segmentMaxBytes: 16MiB, window: 24h}
  monitor: {interval: 30s}
"#;
        // One destination per option of each scheme (with what it needs beside it), since
        // some options exclude others (a secret inline and as a file, credentials object_store
        // would silently rank).
        let mut dests = String::new();
        for (scheme, own) in [
            ("s3", S3_OPTIONS),
            ("gs", GCS_OPTIONS),
            ("az", AZURE_OPTIONS),
        ] {
            for o in own.iter().chain(CLIENT_OPTIONS) {
                let mut opts = vec![format!("{}: {}", o.key, sample_value(o.key))];
                if scheme == "az" && o.key != "accountName" {
                    opts.push("accountName: a".into());
                }
                if matches!(o.key, "sseKmsKeyId" | "sseBucketKeyEnabled") {
                    opts.push("serverSideEncryption: \"aws:kms\"".into());
                }
                dests.push_str(&format!(
                    "    - {{name: {scheme}-{}, url: \"{scheme}://b/p\", options: {{{}}}}}\n",
                    o.key.to_lowercase(),
                    opts.join(", ")
                ));
            }
        }
        let text = every_field.replace("DESTINATIONS", &dests);
        crate::policy::parse("all.yaml", &text).unwrap();

        // Every property of the schema appears in that policy: nothing in the schema is unknown
        // to the parser.
        let schema = policy_schema();
        let mut names = Vec::new();
        collect_properties(&schema, &mut names);
        for n in &names {
            assert!(
                text.contains(&format!("{n}:")),
                "schema property {n} not in the full policy"
            );
        }
        // And every key in that policy is in the schema.
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let mut keys = Vec::new();
        collect_keys(&doc, &mut keys);
        for k in keys {
            assert!(names.contains(&k), "policy key {k} missing from the schema");
        }
    }

    fn sample_value(key: &str) -> &'static str {
        match key {
            "allowHttp" | "virtualHostedStyle" | "useEmulator" | "sseBucketKeyEnabled" => "true",
            "timeout" | "connectTimeout" | "retryTimeout" => "30s",
            "retries" => "3",
            _ => "x",
        }
    }

    fn collect_properties(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                m.values().for_each(|x| collect_properties(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_properties(x, out)),
            _ => {}
        }
    }

    fn collect_keys(v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, x) in m {
                    if let Some(k) = k.as_str() {
                        out.push(k.to_owned());
                    }
                    collect_keys(x, out);
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|x| collect_keys(x, out)),
            _ => {}
        }
    }
}
