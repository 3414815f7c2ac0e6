//! `lifeboat inspect`, and the printing it shares with `lifeboat extract`.

use super::*;
use crate::etcddb::LiveKey;
use crate::ops::inspect::{FileReport, Trailer};
use serde_json::{Value, json};

/// etcdctl's `snapshot status -w json` fields first, then lifeboat's.
pub fn report_json(r: &FileReport) -> Value {
    let i = &r.inspection;
    let st = &i.status;
    let s = &i.check.stats;
    json!({
        "hash": st.hash,
        "revision": st.revision,
        "totalKey": st.total_key,
        "totalSize": st.total_size,
        "liveKeys": st.live_keys,
        "storageVersion": st.storage_version,
        "clusterVersion": st.cluster_version,
        "consistentIndex": st.consistent_index,
        "term": st.term,
        "compactRevision": st.compact_revision,
        "keyEntries": st.key_entries,
        "buckets": st.buckets.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
        "file": r.path,
        "fileSize": r.file_size,
        "trailer": match &r.trailer {
            Trailer::Absent => "absent",
            Trailer::Matches => "matches",
            Trailer::Mismatch { .. } => "mismatch",
            Trailer::Unchecked => "unchecked",
        },
        "sha256": r.sha256,
        "meta": {"page": i.meta_page, "txid": i.txid, "pageSize": i.page_size},
        "pages": {
            "branch": s.branch_pages,
            "leaf": s.leaf_pages,
            "overflow": s.overflow_pages,
            "free": s.free_pages,
        },
        "ok": r.problems().is_empty(),
        "problems": r.problems(),
    })
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

/// The human report.
pub fn print_report(r: &FileReport) {
    let i = &r.inspection;
    let st = &i.status;
    let s = &i.check.stats;
    out!(
        "file:              {} ({} bytes)",
        r.path.display(),
        r.file_size
    );
    out!(
        "trailer:           {}",
        match &r.trailer {
            Trailer::Matches => "SHA-256 trailer present and matching (a snapshot from etcd's API)".to_owned(),
            Trailer::Absent => "none (size % 512 != 32): a copy of member/snap/db, or a truncated snapshot; restoring it needs --skip-hash-check".to_owned(),
            Trailer::Mismatch { recorded } => format!("MISMATCH: records {recorded}"),
            Trailer::Unchecked => "present, not compared (--skip-hash-check)".to_owned(),
        }
    );
    out!("sha256:            {}", r.sha256);
    out!("hash:              {:x}", st.hash);
    out!("revision:          {}", st.revision);
    out!(
        "total keys:        {} (etcd 3.4/3.5 totalKey: entries in all buckets)",
        st.total_key
    );
    out!(
        "live keys:         {} (etcd 3.6 totalKey: distinct live keys)",
        st.live_keys
    );
    out!(
        "total size:        {} ({})",
        st.total_size,
        si_bytes(st.total_size)
    );
    out!("storage version:   {}", opt(&st.storage_version));
    out!("cluster version:   {}", opt(&st.cluster_version));
    out!("consistent index:  {}", opt(&st.consistent_index));
    out!("compacted at:      {}", opt(&st.compact_revision));
    out!("revisions stored:  {}", st.key_entries);
    out!(
        "meta:              page {}, txid {}, page size {}",
        i.meta_page,
        i.txid,
        i.page_size
    );
    out!(
        "pages:             {} branch, {} leaf, {} overflow, {} free",
        s.branch_pages,
        s.leaf_pages,
        s.overflow_pages,
        s.free_pages
    );
    let buckets: Vec<String> = st.buckets.iter().map(|(n, c)| format!("{n} {c}")).collect();
    out!("buckets:           {}", buckets.join(", "));
    let problems = r.problems();
    if problems.is_empty() {
        out!("check:             ok");
    } else {
        out!("check:             FAILED, {} problem(s):", problems.len());
        for p in problems {
            out!("  {p}");
        }
    }
}

/// `humanize.Bytes` as etcdctl prints total size: SI units, two significant digits.
pub fn si_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).log10() / 3.0).floor() as i32;
    let val = (n as f64 / 1000f64.powi(e) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS[e.clamp(0, 6) as usize];
    if val < 10.0 {
        format!("{val:.1} {unit}")
    } else {
        format!("{val:.0} {unit}")
    }
}

/// A key for display: UTF-8 as is, otherwise escaped.
pub fn show_key(k: &[u8]) -> String {
    match std::str::from_utf8(k) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => k.escape_ascii().to_string(),
    }
}

pub fn keys_json(keys: &[LiveKey]) -> Value {
    Value::Array(
        keys.iter()
            .map(|k| {
                let mut v = serde_json::to_value(k).expect("json");
                v["key"] = json!(String::from_utf8_lossy(&k.key));
                if std::str::from_utf8(&k.key).is_err() {
                    v["keyHex"] = json!(hex::encode(&k.key));
                }
                v
            })
            .collect(),
    )
}

pub fn print_keys(keys: &[LiveKey]) {
    out!(
        "{:>10}  {:>10}  {:>7}  {:>16}  {:>9}  KEY",
        "MOD_REV",
        "CREATE_REV",
        "VERSION",
        "LEASE",
        "SIZE"
    );
    for k in keys {
        out!(
            "{:>10}  {:>10}  {:>7}  {:>16}  {:>9}  {}",
            k.mod_revision,
            k.create_revision,
            k.version,
            if k.lease == 0 {
                "-".into()
            } else {
                format!("{:x}", k.lease)
            },
            k.value_size,
            show_key(&k.key)
        );
    }
}

/// A local snapshot file, or a stored backup fetched into a private temporary file (removed when
/// the returned guard drops).
pub(super) async fn snapshot_source(
    file: Option<PathBuf>,
    stored: StoredArgs,
) -> Result<(PathBuf, Option<ops::fetch::Fetched>), Error> {
    if let Some(f) = file {
        return Ok((f, None));
    }
    let (Some(policy), Some(id)) = (stored.policy, stored.backup) else {
        unreachable!("clap requires a file or --policy with --backup")
    };
    let lp = ops::load_policy(&policy)?;
    let fetched = ops::fetch::fetch(&lp, &id, &stored.identity).await?;
    Ok((fetched.path.clone(), Some(fetched)))
}

pub(super) async fn inspect(
    file: Option<PathBuf>,
    stored: StoredArgs,
    keys: bool,
    prefix: Option<String>,
    skip_hash_check: bool,
    json_out: bool,
) -> Result<u8, Error> {
    let (path, fetched) = snapshot_source(file, stored).await?;
    let hashing = match &fetched {
        Some(f) => Hashing::Known(f.image_sha256),
        None if skip_hash_check => Hashing::Skip,
        None => Hashing::Compute,
    };
    // With --keys, the listing shares the check's read of the file.
    let key_prefix = keys.then(|| prefix.unwrap_or_default().into_bytes());
    let (report, live) = tokio::task::spawn_blocking(move || match key_prefix {
        Some(p) => ops::inspect::inspect_keys(&path, hashing, &p).map(|(r, k)| (r, Some(k))),
        None => ops::inspect::inspect_file(&path, hashing).map(|r| (r, None)),
    })
    .await
    .map_err(|e| Error::new(Kind::Internal, format!("inspect task failed: {e}")))??;
    let problems = report.problems();
    if let Some(live) = live {
        if !problems.is_empty() {
            return Err(damaged(&report));
        }
        if json_out {
            out!(
                "{}",
                serde_json::to_string_pretty(&keys_json(&live)).expect("json")
            );
        } else {
            print_keys(&live);
        }
        return Ok(0);
    }
    if json_out {
        let mut v = report_json(&report);
        if let Some(f) = &fetched {
            v["backup"] = json!(f.manifest.id);
            v["destination"] = json!(f.destination);
        }
        out!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        if let Some(f) = &fetched {
            out!(
                "backup:            {} from destination {:?} (fetched into the file below, removed on exit)",
                f.manifest.id,
                f.destination
            );
        }
        print_report(&report);
    }
    Ok(if problems.is_empty() {
        0
    } else {
        Kind::Verify.exit_code()
    })
}

pub(super) fn damaged(r: &ops::inspect::FileReport) -> Error {
    Error::new(
        Kind::Verify,
        format!(
            "{} failed its checks, so its keys cannot be trusted:\n  {}\nrun `lifeboat inspect` on \
             it for the full report",
            r.path.display(),
            r.problems().join("\n  ")
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn si_bytes_like_humanize() {
        for (n, s) in [
            (4096, "4.1 kB"),
            (151552, "152 kB"),
            (82854982, "83 MB"),
            (9, "9 B"),
            (999, "999 B"),
            (1_000_000_000, "1.0 GB"),
            (9999, "10 kB"),
        ] {
            assert_eq!(super::si_bytes(n), s, "{n}");
        }
    }
}
