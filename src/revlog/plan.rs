//! Planning a point-in-time restore (pure): which full backup, which segments, up to which
//! revision. A time target becomes the last revision observed at or before it, and is refused
//! while the log cannot yet prove what happened at that time.

use super::{SegmentManifest, Timeline, TimelineId};
use crate::model::BackupId;
use chrono::{DateTime, Utc};

/// What the planner needs to know about one full backup.
#[derive(Debug, Clone)]
pub struct FullBackup {
    pub id: BackupId,
    /// The timeline its manifest names (none: taken without a revision log).
    pub timeline: Option<TimelineId>,
    /// Revision the snapshot's data is at (max of its last write and compactions).
    pub effective_revision: i64,
    pub finished_at: DateTime<Utc>,
}

/// What to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Revision(i64),
    Time(DateTime<Utc>),
}

/// A restore plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub timeline: TimelineId,
    /// The full backup to start from, and its effective revision.
    pub full: BackupId,
    pub from_revision: i64,
    /// The revision to stop at. For a time target resolved inside a segment this is that
    /// segment's last revision, and `stop_at_time` stops the replay earlier.
    pub to_revision: i64,
    /// Replay only revisions observed at or before this time (a time target whose revision
    /// is known only once the segment holding it is read).
    pub stop_at_time: Option<DateTime<Utc>>,
    /// The segments to replay, in order: (first, last) revisions.
    pub segments: Vec<(i64, i64)>,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The revision log as listed: timelines, their committed segments and the full backups.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub timelines: Vec<Timeline>,
    pub segments: Vec<SegmentManifest>,
    pub fulls: Vec<FullBackup>,
}

impl Log {
    fn segments_of<'a>(&'a self, tl: &'a TimelineId) -> Vec<&'a SegmentManifest> {
        let mut v: Vec<&SegmentManifest> = self
            .segments
            .iter()
            .filter(|s| &s.timeline == tl && s.revisions > 0)
            .collect();
        v.sort_by_key(|s| (s.first_revision, s.last_revision));
        v
    }

    /// Timelines newest first.
    fn newest_first(&self) -> Vec<&Timeline> {
        let mut v: Vec<&Timeline> = self.timelines.iter().collect();
        v.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        v
    }

    /// The greatest revision contiguous from `from` in `tl` (greedy: each step takes the
    /// segment starting at or before the next revision that reaches furthest), with the chain.
    fn chain(&self, tl: &TimelineId, from: i64, to: i64) -> (i64, Vec<(i64, i64)>) {
        let segs = self.segments_of(tl);
        let mut cur = from;
        let mut out = Vec::new();
        while cur < to {
            let Some(next) = segs
                .iter()
                .filter(|s| s.first_revision <= cur + 1 && s.last_revision > cur)
                .max_by_key(|s| s.last_revision)
            else {
                break;
            };
            out.push((next.first_revision, next.last_revision));
            cur = next.last_revision;
        }
        (cur, out)
    }

    /// The newest full backup of `tl` at or before `rev`.
    fn full_for(&self, tl: &Timeline, rev: i64) -> Option<&FullBackup> {
        self.fulls
            .iter()
            .filter(|f| {
                f.timeline.as_ref() == Some(&tl.id)
                    && f.effective_revision <= rev
                    && f.effective_revision >= tl.start_revision - 1
            })
            .max_by_key(|f| (f.effective_revision, f.finished_at))
    }

    /// The highest revision the log of `tl` reaches contiguously from its oldest full backup.
    pub fn head(&self, tl: &Timeline) -> Option<i64> {
        let oldest = self
            .fulls
            .iter()
            .filter(|f| {
                f.timeline.as_ref() == Some(&tl.id) && f.effective_revision >= tl.start_revision - 1
            })
            .min_by_key(|f| f.effective_revision)?;
        Some(self.chain(&tl.id, oldest.effective_revision, i64::MAX).0)
    }

    /// Plan a restore to `target`, in `timeline` if given, else in the newest timeline that
    /// holds it.
    pub fn plan(&self, target: Target, timeline: Option<&TimelineId>) -> Result<Plan, PlanError> {
        let tls: Vec<&Timeline> = self
            .newest_first()
            .into_iter()
            .filter(|t| timeline.is_none_or(|id| &t.id == id))
            .collect();
        if tls.is_empty() {
            return Err(PlanError(match timeline {
                Some(id) => format!("there is no timeline {id} in the revision log"),
                None => "the policy has no revision log yet (spec.pitr, and a running \
                         `lifeboat revlog` or daemon)"
                    .to_owned(),
            }));
        }
        let mut why = Vec::new();
        for tl in tls {
            match self.plan_in(tl, target) {
                Ok(p) => return Ok(p),
                Err(e) => why.push(format!("timeline {}: {e}", tl.id)),
            }
        }
        Err(PlanError(why.join("; ")))
    }

    fn plan_in(&self, tl: &Timeline, target: Target) -> Result<Plan, PlanError> {
        let (rev, stop_at_time) = match target {
            Target::Revision(r) => (r, None),
            Target::Time(t) => self.revision_at(tl, t)?,
        };
        let Some(full) = self.full_for(tl, rev) else {
            return Err(PlanError(format!(
                "no full backup at or before revision {rev} anchors it (its log starts at \
                 revision {})",
                tl.start_revision
            )));
        };
        let (reached, segments) = self.chain(&tl.id, full.effective_revision, rev);
        if reached < rev {
            return Err(PlanError(format!(
                "revision {rev} is not reachable: the log is contiguous from full backup {} \
                 (revision {}) only up to revision {reached}; no committed segment holds \
                 revision {}",
                full.id,
                full.effective_revision,
                reached + 1
            )));
        }
        Ok(Plan {
            timeline: tl.id.clone(),
            full: full.id.clone(),
            from_revision: full.effective_revision,
            to_revision: rev,
            stop_at_time,
            segments,
        })
    }

    /// The revision the cluster was at, at time `t`, in `tl`: either known from the segment
    /// manifests (`t` falls between two segments), or the last revision of the segment whose
    /// observed times span `t`, with the replay to stop at `t` inside it.
    fn revision_at(
        &self,
        tl: &Timeline,
        t: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>), PlanError> {
        if t < tl.started_at {
            return Err(PlanError(format!(
                "{} is before this timeline's log began ({}); for an earlier time restore a full \
                 backup with `--before`",
                rfc(t),
                rfc(tl.started_at)
            )));
        }
        let segs = self.segments_of(&tl.id);
        let Some(first) = segs.first() else {
            return Err(PlanError("no segment has been committed yet".into()));
        };
        // A segment whose observed times span `t`: replay it and stop at `t`.
        if let Some(s) = segs
            .iter()
            .filter(|s| s.first_observed_at <= t && t < s.last_observed_at)
            .max_by_key(|s| s.last_revision)
        {
            return Ok((s.last_revision, Some(t)));
        }
        // Otherwise the last revision observed before `t`, proven by a segment observed after
        // it or by a stream known quiet until then.
        let proven = segs.iter().any(|s| s.first_observed_at > t)
            || segs
                .iter()
                .any(|s| t <= s.quiet_until.unwrap_or(s.last_observed_at));
        if !proven {
            let last = segs
                .iter()
                .max_by_key(|s| s.last_revision)
                .expect("not empty");
            let until = last.quiet_until.unwrap_or(last.last_observed_at);
            return Err(PlanError(format!(
                "the log proves the cluster's state only up to {} (revision {}); what happened \
                 at {} is not known until the next segment is committed (within \
                 spec.pitr.segmentMaxAge of the next write)",
                rfc(until),
                last.last_revision,
                rfc(t)
            )));
        }
        let rev = segs
            .iter()
            .filter(|s| s.last_observed_at <= t)
            .map(|s| s.last_revision)
            .max()
            .unwrap_or(first.first_revision - 1);
        Ok((rev, None))
    }
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{REVLOG_FORMAT_VERSION, SegmentSource, TimelineReason};
    use super::*;
    use crate::model::{Compression, StoredObject};
    use chrono::TimeZone;

    pub(crate) fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    pub(crate) fn tl(n: u32, start_rev: i64, started: i64) -> Timeline {
        Timeline {
            format_version: REVLOG_FORMAT_VERSION,
            id: BackupId::new(t(started), n),
            policy: "prod".into(),
            cluster_id: "c1".into(),
            start_revision: start_rev,
            started_at: t(started),
            reason: TimelineReason::Initial,
            parent: None,
        }
    }

    pub(crate) fn seg(tl: &Timeline, first: i64, last: i64, t0: i64, t1: i64) -> SegmentManifest {
        SegmentManifest {
            format_version: REVLOG_FORMAT_VERSION,
            policy: "prod".into(),
            timeline: tl.id.clone(),
            cluster_id: "c1".into(),
            first_revision: first,
            last_revision: last,
            revisions: (last - first + 1) as u64,
            events: (last - first + 1) as u64,
            max_events_per_revision: 1,
            max_revision_bytes: 10,
            first_observed_at: t(t0),
            last_observed_at: t(t1),
            quiet_until: None,
            catchup: false,
            plaintext_size: 1,
            plaintext_sha256: String::new(),
            stored: StoredObject {
                key: String::new(),
                size: 1,
                sha256: String::new(),
                compression: Compression {
                    algorithm: "zstd".into(),
                    level: 3,
                },
                encryption: None,
            },
            live_keys_at_last_revision: None,
            last_revision_events_sha256: None,
            source: SegmentSource {
                member: String::new(),
                endpoint: String::new(),
                etcd_version: String::new(),
                host: String::new(),
            },
            lifeboat_version: String::new(),
        }
    }

    pub(crate) fn full(tl: &Timeline, n: u32, rev: i64, at: i64) -> FullBackup {
        FullBackup {
            id: BackupId::new(t(at), n),
            timeline: Some(tl.id.clone()),
            effective_revision: rev,
            finished_at: t(at),
        }
    }

    fn log() -> (Log, Timeline) {
        // Log from revision 101; full backups at 100 and 250; segments 101-200, 201-300 and an
        // overlapping double write 250-320, then 321-400.
        let a = tl(1, 101, 0);
        let l = Log {
            timelines: vec![a.clone()],
            segments: vec![
                seg(&a, 101, 200, 10, 70),
                seg(&a, 201, 300, 80, 130),
                seg(&a, 250, 320, 100, 150),
                seg(&a, 321, 400, 160, 200),
            ],
            fulls: vec![full(&a, 1, 100, 5), full(&a, 2, 250, 110)],
        };
        (l, a)
    }

    #[test]
    fn the_newest_full_and_a_greedy_chain() {
        let (l, a) = log();
        let p = l.plan(Target::Revision(180), None).unwrap();
        assert_eq!((p.from_revision, p.to_revision), (100, 180));
        assert_eq!(p.segments, vec![(101, 200)]);
        let p = l.plan(Target::Revision(390), None).unwrap();
        assert_eq!(p.full, full(&a, 2, 250, 110).id);
        assert_eq!(p.segments, vec![(250, 320), (321, 400)]);
        // At a full backup's own revision: nothing to replay.
        let p = l.plan(Target::Revision(250), None).unwrap();
        assert!(p.segments.is_empty());
        assert_eq!(l.head(&a), Some(400));
    }

    #[test]
    fn gaps_and_revisions_out_of_reach_are_refused() {
        let (mut l, a) = log();
        let e = l.plan(Target::Revision(401), None).unwrap_err();
        assert!(e.0.contains("only up to revision 400"), "{e}");
        let e = l.plan(Target::Revision(50), None).unwrap_err();
        assert!(e.0.contains("no full backup"), "{e}");
        // Remove the segment holding 321-400: 330 is unreachable, 310 still is.
        l.segments.retain(|s| s.first_revision != 321);
        let e = l.plan(Target::Revision(330), None).unwrap_err();
        assert!(
            e.0.contains("no committed segment holds revision 321"),
            "{e}"
        );
        assert!(l.plan(Target::Revision(310), None).is_ok());
        assert_eq!(l.head(&a), Some(320));
    }

    #[test]
    fn times_resolve_to_the_last_revision_observed_then() {
        let (mut l, _) = log();
        // Before the first observed revision: the state at the log's start.
        let p = l.plan(Target::Time(t(5)), None).unwrap();
        assert_eq!((p.to_revision, p.stop_at_time), (100, None));
        // Between two segments.
        let p = l.plan(Target::Time(t(75)), None).unwrap();
        assert_eq!((p.to_revision, p.stop_at_time), (200, None));
        // Inside a segment: replay it and stop at the time.
        let p = l.plan(Target::Time(t(40)), None).unwrap();
        assert_eq!((p.to_revision, p.stop_at_time), (200, Some(t(40))));
        // After the newest segment: not yet provable, unless the stream was quiet until then.
        let e = l.plan(Target::Time(t(230)), None).unwrap_err();
        assert!(e.0.contains("not known until the next segment"), "{e}");
        l.segments.last_mut().unwrap().quiet_until = Some(t(240));
        let p = l.plan(Target::Time(t(230)), None).unwrap();
        assert_eq!((p.to_revision, p.stop_at_time), (400, None));
        let e = l.plan(Target::Time(t(-10)), None).unwrap_err();
        assert!(e.0.contains("before this timeline's log began"), "{e}");
    }

    #[test]
    fn the_newest_timeline_holding_the_target_wins() {
        let (mut l, a) = log();
        // The cluster was restored: a new timeline reuses revisions 150-... .
        let b = tl(2, 151, 300);
        l.timelines.push(b.clone());
        l.segments.push(seg(&b, 151, 170, 310, 320));
        l.fulls.push(full(&b, 3, 150, 305));
        let p = l.plan(Target::Revision(160), None).unwrap();
        assert_eq!(p.timeline, b.id);
        // Revision 180 is only in the old timeline.
        let p = l.plan(Target::Revision(180), None).unwrap();
        assert_eq!(p.timeline, a.id);
        // Asked for explicitly.
        let p = l.plan(Target::Revision(160), Some(&a.id)).unwrap();
        assert_eq!(p.timeline, a.id);
        assert!(l.plan(Target::Revision(1), None).is_err());
    }
}
