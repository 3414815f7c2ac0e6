//! `check`: prove stored backups without staging anything. Every copy (backup × destination)
//! chosen is downloaded, decrypted, decompressed into the spool and checked against its
//! manifest, then removed. Optionally the newest is restored into a throwaway etcd (the drill).

use super::LoadedPolicy;
use super::drill::{DrillOutcome, drill};
use super::fetch::{Identities, fetch_to};
use super::list::{Orphan, list};
use super::spool::{Leftover, RunSpace};
use super::verify::prove;
use crate::model::{BackupId, Manifest};
use rand::Rng;
use rand::seq::index;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;
use tracing::{info, warn};

/// Which backups to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    All,
    /// This many (the newest and others at random).
    Count(usize),
    /// This share, rounded up (the newest and others at random).
    Percent(u32),
}

impl FromStr for Sample {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: use a count (3) or a percentage (10%)");
        if s == "all" {
            return Ok(Sample::All);
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: u32 = p.trim().parse().map_err(|_| bad())?;
            return if (1..=100).contains(&p) {
                Ok(Sample::Percent(p))
            } else {
                Err(format!("{s:?}: the percentage must be 1-100"))
            };
        }
        match s.parse::<usize>() {
            Ok(0) => Err(format!("{s:?}: check at least one backup")),
            Ok(n) => Ok(Sample::Count(n)),
            Err(_) => Err(bad()),
        }
    }
}

/// Indices (ascending) of the backups to check out of `n`, newest first: index 0, the newest,
/// is always in; the rest are drawn at random so repeated checks cover every backup over time.
pub fn sample_indices(n: usize, s: Sample, rng: &mut impl Rng) -> Vec<usize> {
    let want = match s {
        Sample::All => n,
        Sample::Count(c) => c.min(n),
        Sample::Percent(p) => (n * p as usize).div_ceil(100).min(n),
    };
    if want == 0 {
        return Vec::new();
    }
    let mut out: Vec<usize> = index::sample(rng, n - 1, want - 1)
        .into_iter()
        .map(|i| i + 1)
        .collect();
    out.push(0);
    out.sort_unstable();
    out
}

/// The result for one copy of one backup.
#[derive(Debug, Clone)]
pub struct CheckedCopy {
    pub manifest: Manifest,
    pub destination: String,
    /// `Ok(summary)` or `Err(why)`.
    pub outcome: Result<String, String>,
    pub seconds: f64,
}

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    pub copies: Vec<CheckedCopy>,
    /// Backups listed in total (checked or not).
    pub backups: usize,
    /// Listing problems: unreachable destinations, unreadable manifests, missing data.
    pub problems: Vec<String>,
    pub orphans: Vec<Orphan>,
    /// The drill, when asked for: `Err` says why it failed or could not run.
    pub drill: Option<Result<DrillOutcome, String>>,
    /// Leftovers of dead runs of this policy removed from the spool directory first.
    pub leftovers: Vec<Leftover>,
}

impl CheckReport {
    /// A checked copy or the drill failed.
    pub fn any_failed(&self) -> bool {
        self.copies.iter().any(|c| c.outcome.is_err()) || matches!(self.drill, Some(Err(_)))
    }
}

/// Options of a check.
pub struct CheckOptions {
    pub sample: Sample,
    /// Restore the newest backup into a throwaway etcd started from this binary.
    pub drill_etcd: Option<PathBuf>,
}

/// Check the backups of `lp`.
pub async fn check(lp: &LoadedPolicy, identities: &Identities, opts: &CheckOptions) -> CheckReport {
    let listed = list(lp).await;
    let chosen = sample_indices(listed.backups.len(), opts.sample, &mut rand::rng());
    let mut copies = Vec::new();
    let mut drill_result = None;
    // One workspace for every copy and the drill; claiming it sweeps dead runs' leftovers.
    let run = BackupId::new(chrono::Utc::now(), rand::random::<u32>());
    let space = RunSpace::claim(lp, &run);
    let (spool_ready, leftovers) = match space {
        Ok((space, leftovers)) => (Ok(space), leftovers),
        Err(e) => (Err(e), Vec::new()),
    };
    for &i in &chosen {
        let b = &listed.backups[i];
        for d in lp
            .destinations
            .iter()
            .filter(|d| b.destinations.contains(&d.name))
        {
            let started = Instant::now();
            let fetched = match &spool_ready {
                Err(e) => Err(e.to_string()),
                Ok(space) => {
                    let path = space.path(&format!("check-{}-{}.part", b.manifest.id, d.name));
                    fetch_to(b.manifest.clone(), d, identities, path)
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            let proved = match &fetched {
                Ok(f) => prove(f).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            let outcome = proved.as_ref().map(|r| {
                let st = &r.inspection.status;
                format!(
                    "ok: hash {:08x}, revision {}, {} live keys",
                    st.hash, st.revision, st.live_keys
                )
            });
            match &outcome {
                Ok(_) => info!(backup = %b.manifest.id, destination = %d.name, "Backup verified"),
                Err(e) => {
                    warn!(backup = %b.manifest.id, destination = %d.name, error = %e, "Backup failed its check")
                }
            }
            // The drill uses the newest backup's first good copy, while it is still fetched.
            if i == 0
                && drill_result.is_none()
                && let (Some(etcd), Ok(f), Ok(r), Ok(space)) =
                    (&opts.drill_etcd, &fetched, &proved, &spool_ready)
            {
                drill_result = Some(drill(f, r, space, etcd).await);
            }
            copies.push(CheckedCopy {
                manifest: b.manifest.clone(),
                destination: d.name.clone(),
                outcome: outcome.map_err(|e| e.to_string()),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    if opts.drill_etcd.is_some() && drill_result.is_none() {
        drill_result = Some(Err(if listed.backups.is_empty() {
            "there is no backup to drill".to_owned()
        } else {
            format!(
                "the newest backup {} failed its check, so it was not restored",
                listed.backups[0].manifest.id
            )
        }));
    }
    CheckReport {
        copies,
        backups: listed.backups.len(),
        problems: listed.problems,
        orphans: listed.orphans,
        drill: drill_result,
        leftovers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parse_sample() {
        assert_eq!("3".parse(), Ok(Sample::Count(3)));
        assert_eq!("10%".parse(), Ok(Sample::Percent(10)));
        assert_eq!("all".parse(), Ok(Sample::All));
        assert!("0".parse::<Sample>().is_err());
        assert!("0%".parse::<Sample>().is_err());
        assert!("101%".parse::<Sample>().is_err());
        assert!("x".parse::<Sample>().is_err());
    }

    #[test]
    fn sample_always_has_the_newest_and_the_right_size() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(sample_indices(5, Sample::All, &mut rng), [0, 1, 2, 3, 4]);
        assert_eq!(sample_indices(0, Sample::All, &mut rng), [] as [usize; 0]);
        assert_eq!(sample_indices(5, Sample::Count(9), &mut rng).len(), 5);
        assert_eq!(sample_indices(1, Sample::Percent(1), &mut rng), [0]);
        for _ in 0..50 {
            let s = sample_indices(40, Sample::Percent(10), &mut rng);
            assert_eq!(s.len(), 4);
            assert_eq!(s[0], 0);
            assert!(s.windows(2).all(|w| w[0] < w[1]) && s[3] < 40);
        }
        // 10% of 41 rounds up to 5.
        assert_eq!(sample_indices(41, Sample::Percent(10), &mut rng).len(), 5);
        // Over many draws every backup gets checked.
        let mut seen = [false; 12];
        for _ in 0..200 {
            for i in sample_indices(12, Sample::Count(2), &mut rng) {
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
