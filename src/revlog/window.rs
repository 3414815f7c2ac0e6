//! Retention of the revision log (pure): never cut the recovery window. For each timeline the
//! *anchor* is the newest full backup finished at or before `now - window` (or, if none is
//! that old, the oldest one). The anchor is kept whatever the backup retention rules say, and
//! so is every segment after it; segments the anchor already covers go. A timeline that ended
//! before the window, or that has no full backup once its segments are older than the grace
//! period, goes whole. The newest timeline and its newest segment are always kept.

use super::plan::FullBackup;
use super::{SegmentManifest, Timeline, TimelineId};
use crate::model::BackupId;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::Duration;

/// What the window keeps and lets go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowPlan {
    /// Full backups kept as anchors, with the timeline they anchor.
    pub anchors: Vec<(BackupId, TimelineId)>,
    /// Segments to remove: (timeline, first, last).
    pub remove_segments: Vec<(TimelineId, i64, i64)>,
    /// Timelines removed whole (their `timeline.json` goes after their segments).
    pub remove_timelines: Vec<TimelineId>,
}

/// Plan the window's retention at `now`.
pub fn plan(
    timelines: &[Timeline],
    segments: &[SegmentManifest],
    fulls: &[FullBackup],
    window: Duration,
    grace: Duration,
    now: DateTime<Utc>,
) -> WindowPlan {
    let horizon = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let grace_horizon = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let newest_tl = timelines
        .iter()
        .max_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)))
        .map(|t| t.id.clone());
    let mut out = WindowPlan::default();
    for tl in timelines {
        let is_newest = Some(&tl.id) == newest_tl.as_ref();
        let segs: Vec<&SegmentManifest> = segments.iter().filter(|s| s.timeline == tl.id).collect();
        let newest_seg = segs
            .iter()
            .max_by_key(|s| (s.last_revision, s.first_revision))
            .map(|s| (s.first_revision, s.last_revision));
        let mut tl_fulls: Vec<&FullBackup> = fulls
            .iter()
            .filter(|f| {
                f.timeline.as_ref() == Some(&tl.id) && f.effective_revision >= tl.start_revision - 1
            })
            .collect();
        tl_fulls.sort_by_key(|f| (f.effective_revision, f.finished_at));
        let ended = segs.iter().map(|s| s.last_observed_at).max();
        let whole = |out: &mut WindowPlan| {
            for s in &segs {
                out.remove_segments
                    .push((tl.id.clone(), s.first_revision, s.last_revision));
            }
            out.remove_timelines.push(tl.id.clone());
        };
        if !is_newest && ended.is_some_and(|e| e < horizon) {
            // Nothing of this timeline is inside the window.
            whole(&mut out);
            continue;
        }
        let anchor = tl_fulls
            .iter()
            .rev()
            .find(|f| f.finished_at <= horizon)
            .or_else(|| tl_fulls.first());
        let Some(anchor) = anchor else {
            // No full backup anchors this timeline. Its first full backup may still be running:
            // only an older timeline past the grace period goes.
            if !is_newest && ended.is_none_or(|e| e < grace_horizon) {
                whole(&mut out);
            }
            continue;
        };
        out.anchors.push((anchor.id.clone(), tl.id.clone()));
        for s in &segs {
            if s.last_revision <= anchor.effective_revision
                && Some((s.first_revision, s.last_revision)) != newest_seg
            {
                out.remove_segments
                    .push((tl.id.clone(), s.first_revision, s.last_revision));
            }
        }
    }
    out.anchors.sort();
    out.remove_segments.sort();
    out.anchors.dedup();
    let keep: BTreeSet<&TimelineId> = newest_tl.iter().collect();
    out.remove_timelines.retain(|t| !keep.contains(t));
    out
}

#[cfg(test)]
mod tests {
    use super::super::plan::tests::{full, seg, t, tl};
    use super::*;
    use proptest::prelude::*;

    const H: u64 = 3600;

    #[test]
    fn the_anchor_is_the_newest_full_before_the_window() {
        let a = tl(1, 101, 0);
        let segs = vec![
            seg(&a, 101, 200, 10, 3_000),
            seg(&a, 201, 300, 3_100, 7_000),
            seg(&a, 301, 400, 7_100, 20_000),
        ];
        let fulls = vec![
            full(&a, 1, 100, 5),
            full(&a, 2, 210, 3_500),
            full(&a, 3, 350, 9_000),
        ];
        // Window 3h at t=20000: horizon 9200 -> anchor is the full at 350 (finished 9000).
        let p = plan(
            std::slice::from_ref(&a),
            &segs,
            &fulls,
            Duration::from_secs(3 * H),
            Duration::from_secs(H),
            t(20_000),
        );
        assert_eq!(p.anchors, vec![(fulls[2].id.clone(), a.id.clone())]);
        assert_eq!(
            p.remove_segments,
            vec![(a.id.clone(), 101, 200), (a.id.clone(), 201, 300)]
        );
        assert!(p.remove_timelines.is_empty());
        // A window longer than the log: the oldest full anchors, nothing goes.
        let p = plan(
            std::slice::from_ref(&a),
            &segs,
            &fulls,
            Duration::from_secs(100 * H),
            Duration::from_secs(H),
            t(20_000),
        );
        assert_eq!(p.anchors, vec![(fulls[0].id.clone(), a.id.clone())]);
        assert!(p.remove_segments.is_empty());
    }

    #[test]
    fn old_and_unanchored_timelines_go_but_never_the_newest() {
        let old = tl(1, 101, 0);
        let new = tl(2, 501, 50_000);
        let segs = vec![
            seg(&old, 101, 200, 10, 3_000),
            seg(&new, 501, 600, 50_010, 50_100),
        ];
        // The new timeline's full backup has not committed yet.
        let fulls = vec![full(&old, 1, 100, 5)];
        let p = plan(
            &[old.clone(), new.clone()],
            &segs,
            &fulls,
            Duration::from_secs(3 * H),
            Duration::from_secs(H),
            t(50_200),
        );
        assert_eq!(p.remove_segments, vec![(old.id.clone(), 101, 200)]);
        assert_eq!(p.remove_timelines, vec![old.id.clone()]);
        assert!(p.anchors.is_empty());
    }

    proptest! {
        /// Whatever the log, every revision observed inside the window stays restorable: for
        /// each timeline that keeps segments, the anchor is kept and the chain from it to the
        /// newest segment uses only kept segments.
        #[test]
        fn the_window_is_never_cut(
            n_segs in 1usize..12,
            fulls_at in proptest::collection::vec(0usize..12, 1..5),
            window_h in 1u64..30,
            now_s in 0i64..200_000,
        ) {
            let a = tl(1, 1, 0);
            let segs: Vec<SegmentManifest> = (0..n_segs)
                .map(|i| seg(&a, 1 + 100 * i as i64, 100 + 100 * i as i64,
                             10 + 10_000 * i as i64, 9_000 + 10_000 * i as i64))
                .collect();
            let fulls: Vec<FullBackup> = fulls_at
                .iter()
                .enumerate()
                .map(|(k, &i)| full(&a, k as u32, 100 * i as i64, 9_500 + 10_000 * i as i64))
                .collect();
            let now = t(now_s.max(9_000 + 10_000 * n_segs as i64));
            let p = plan(std::slice::from_ref(&a), &segs, &fulls,
                         Duration::from_secs(window_h * H), Duration::from_secs(H), now);
            let removed: BTreeSet<(i64, i64)> =
                p.remove_segments.iter().map(|(_, f, l)| (*f, *l)).collect();
            let kept: Vec<&SegmentManifest> = segs
                .iter()
                .filter(|s| !removed.contains(&(s.first_revision, s.last_revision)))
                .collect();
            // The newest segment is kept.
            prop_assert!(kept.iter().any(|s| s.last_revision == segs.last().unwrap().last_revision));
            let (anchor, _) = p.anchors.first().cloned().expect("an anchor");
            let anchor = fulls.iter().find(|f| f.id == anchor).unwrap();
            // Contiguous from the anchor through every kept segment.
            let mut cur = anchor.effective_revision;
            for s in kept.iter().filter(|s| s.last_revision > anchor.effective_revision) {
                prop_assert!(s.first_revision <= cur + 1, "gap after {cur}");
                cur = cur.max(s.last_revision);
            }
            // A segment observed inside the window is removed only when no full backup could
            // use it (every full is at or past its last revision).
            let horizon = now - chrono::Duration::seconds((window_h * H) as i64);
            for s in &segs {
                if s.last_observed_at > horizon
                    && removed.contains(&(s.first_revision, s.last_revision))
                {
                    prop_assert!(fulls.iter().all(|f| f.effective_revision >= s.last_revision));
                }
            }
        }
    }
}
