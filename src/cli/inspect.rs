//! Printing for `lifeboat inspect` and `lifeboat extract`.

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
