//! `lifeboat list`: the committed backups at every destination.

use super::*;

pub(super) async fn list(policy: &std::path::Path, json_out: bool) -> u8 {
    let lp = match ops::load_policy(policy) {
        Ok(lp) => lp,
        Err(e) => return fail(&e),
    };
    let report = ops::list(&lp).await;
    if json_out {
        let rows: Vec<_> = report
            .backups
            .iter()
            .map(|b| {
                let m = &b.manifest;
                json!({
                    "id": m.id,
                    "created": m.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "revision": m.snapshot.revision,
                    "member": m.member,
                    "clusterId": m.cluster_id,
                    "dbSize": m.snapshot.db_size,
                    "storedSize": m.stored.size,
                    "encrypted": m.stored.encryption.is_some(),
                    "destinations": b.destinations,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&rows).expect("json"));
    } else {
        out!(
            "{:<23}  {:<20}  {:>10}  {:<16}  {:>10}  {:>10}  DESTINATIONS",
            "ID",
            "CREATED",
            "REVISION",
            "MEMBER",
            "DB SIZE",
            "STORED"
        );
        for b in &report.backups {
            let m = &b.manifest;
            let member = if m.member.name.is_empty() {
                m.member.id.clone()
            } else {
                m.member.name.clone()
            };
            out!(
                "{:<23}  {:<20}  {:>10}  {:<16}  {:>10}  {:>10}  {}",
                m.id.as_str(),
                m.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.snapshot.revision,
                member,
                human_bytes(m.snapshot.db_size),
                human_bytes(m.stored.size),
                b.destinations.join(",")
            );
        }
    }
    for p in &report.problems {
        eprintln!("warning: {p}");
    }
    if report.problems.is_empty() {
        0
    } else {
        Kind::Storage.exit_code()
    }
}
