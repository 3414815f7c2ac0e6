//! Listing a policy's backups from its manifests, across all destinations.

use super::LoadedPolicy;
use crate::model::{self, BackupId, Manifest, ObjectRole};
use crate::store::{Destination, describe_store_error};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};

/// One backup and where it is held.
#[derive(Debug, Clone)]
pub struct ListedBackup {
    /// Its manifest (from the first destination that had it).
    pub manifest: Manifest,
    /// Destinations holding both its manifest and a data object of the recorded size.
    pub destinations: Vec<String>,
}

/// Backups newest first, plus anything odd found on the way.
#[derive(Debug, Clone, Default)]
pub struct ListReport {
    /// Newest first.
    pub backups: Vec<ListedBackup>,
    /// Destinations that could not be listed, unreadable manifests, missing data.
    pub problems: Vec<String>,
    /// Names of the destinations that could not be listed at all: the view is incomplete.
    pub unlisted: Vec<String>,
    /// Data objects with no manifest: a run in progress, or one that crashed before its commit.
    pub orphans: Vec<Orphan>,
}

/// A data object without a manifest.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Destination name.
    pub destination: String,
    /// Key relative to the destination prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// Read every manifest of the policy from every destination.
pub async fn list(lp: &LoadedPolicy) -> ListReport {
    let policy = &lp.policy.name;
    let per_dest =
        futures::future::join_all(lp.destinations.iter().map(|d| list_one(d, policy))).await;
    let mut merged: BTreeMap<BackupId, ListedBackup> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut orphans = Vec::new();
    let mut unlisted = Vec::new();
    for (d, listed) in lp.destinations.iter().zip(per_dest) {
        let (found, mut probs, mut orph) = match listed {
            Ok(l) => l,
            Err(e) => {
                unlisted.push(d.name.clone());
                problems.push(e);
                continue;
            }
        };
        problems.append(&mut probs);
        orphans.append(&mut orph);
        for m in found {
            merged
                .entry(m.id.clone())
                .or_insert_with(|| ListedBackup {
                    manifest: m,
                    destinations: Vec::new(),
                })
                .destinations
                .push(d.name.clone());
        }
    }
    let mut backups: Vec<ListedBackup> = merged.into_values().collect();
    // Newest first by start time: ids only have whole seconds.
    backups.sort_by(|a, b| {
        (b.manifest.started_at, &b.manifest.id).cmp(&(a.manifest.started_at, &a.manifest.id))
    });
    ListReport {
        backups,
        problems,
        unlisted,
        orphans,
    }
}

/// One destination's manifests, problems and orphans; `Err` when it cannot be listed at all.
type Listing = (Vec<Manifest>, Vec<String>, Vec<Orphan>);

async fn list_one(d: &Destination, policy: &str) -> Result<Listing, String> {
    let objects = d.list(&model::policy_prefix(policy)).await.map_err(|e| {
        format!(
            "destination {:?} ({}): cannot list backups: {}",
            d.name,
            d.url,
            describe_store_error(&e)
        )
    })?;
    let sizes: HashMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let manifests: Vec<(BackupId, &str)> = objects
        .iter()
        .filter_map(|o| match model::parse_key(policy, &o.key) {
            Some((id, ObjectRole::Manifest)) => Some((id, o.key.as_str())),
            _ => None,
        })
        .collect();
    let committed: std::collections::HashSet<&BackupId> =
        manifests.iter().map(|(id, _)| id).collect();
    let orphans = objects
        .iter()
        .filter(|o| {
            matches!(model::parse_key(policy, &o.key),
                Some((id, ObjectRole::Data)) if !committed.contains(&id))
        })
        .map(|o| Orphan {
            destination: d.name.clone(),
            key: o.key.clone(),
            size: o.size,
            last_modified: o.last_modified,
        })
        .collect();
    let fetched: Vec<_> = futures::stream::iter(manifests)
        .map(|(id, key)| async move { (id, key, d.get_small(key).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (id, key, body) in fetched {
        let parsed = body
            .map_err(|e| describe_store_error(&e))
            .and_then(|b| Manifest::from_json(&b));
        match parsed {
            Err(e) => problems.push(format!(
                "destination {:?}: manifest {key} is unreadable: {e}",
                d.name
            )),
            Ok(m) if m.id != id || m.policy != policy => problems.push(format!(
                "destination {:?}: manifest {key} describes backup {} of policy {:?}; ignored",
                d.name, m.id, m.policy
            )),
            Ok(m) => match sizes.get(m.stored.key.as_str()) {
                Some(size) if *size == m.stored.size => found.push(m),
                Some(size) => problems.push(format!(
                    "destination {:?}: data object {} is {size} bytes but its manifest says {}; \
                     backup {} is damaged there",
                    d.name, m.stored.key, m.stored.size, m.id
                )),
                None => problems.push(format!(
                    "destination {:?}: backup {} has a manifest but its data object {} is \
                     missing",
                    d.name, m.id, m.stored.key
                )),
            },
        }
    }
    Ok((found, problems, orphans))
}
