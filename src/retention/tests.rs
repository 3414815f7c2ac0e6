use super::*;
use crate::policy::DEFAULT_ORPHAN_GRACE;
use chrono::NaiveDateTime;
use proptest::prelude::*;

fn none() -> Retention {
    Retention {
        keep_last: None,
        keep_hourly: None,
        keep_daily: None,
        keep_weekly: None,
        keep_monthly: None,
        keep_yearly: None,
        keep_within: None,
        prune_after_backup: true,
        orphan_grace: DEFAULT_ORPHAN_GRACE,
    }
}

/// "2026-12-30 02:00" in UTC.
fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .and_utc()
}

fn backup(s: &str) -> Candidate {
    let t = at(s);
    Candidate {
        id: BackupId::new(t, 7),
        policy: "prod".into(),
        cluster_id: "c1".into(),
        started_at: t,
        verified: true,
    }
}

fn kept(p: &Plan) -> Vec<String> {
    let mut v: Vec<String> = p
        .decisions
        .iter()
        .filter(|d| d.keep())
        .map(|d| d.started_at.format("%Y-%m-%d %H:%M").to_string())
        .collect();
    v.sort();
    v
}

fn reasons(p: &Plan, when: &str) -> Vec<String> {
    let t = at(when);
    let d = p.decisions.iter().find(|d| d.started_at == t).unwrap();
    d.reasons.iter().map(ToString::to_string).collect()
}

fn run(times: &[&str], rules: &Retention, tz: Tz, now: &str) -> Plan {
    let backups: Vec<Candidate> = times.iter().map(|t| backup(t)).collect();
    plan(&backups, "prod", None, rules, tz, at(now)).unwrap()
}

struct Case {
    name: &'static str,
    tz: Tz,
    rules: Retention,
    times: &'static [&'static str],
    now: &'static str,
    kept: &'static [&'static str],
}

#[test]
fn calendar_rules_keep_the_newest_of_each_bucket() {
    let cases = [
        Case {
            name: "year boundary: one per year",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_yearly: Some(3),
                ..none()
            },
            times: &[
                "2025-06-01 02:00",
                "2026-12-30 02:00",
                "2026-12-31 02:00",
                "2027-01-01 02:00",
                "2027-01-02 02:00",
            ],
            now: "2027-01-02 03:00",
            kept: &["2025-06-01 02:00", "2026-12-31 02:00", "2027-01-02 02:00"],
        },
        Case {
            // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53; 2027-01-04 starts W01.
            name: "ISO week across a year boundary",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_weekly: Some(3),
                ..none()
            },
            times: &[
                "2026-12-20 02:00",
                "2026-12-27 02:00",
                "2026-12-28 02:00",
                "2026-12-31 02:00",
                "2027-01-01 02:00",
                "2027-01-03 02:00",
                "2027-01-04 02:00",
                "2027-01-05 02:00",
            ],
            now: "2027-01-05 03:00",
            kept: &["2026-12-27 02:00", "2027-01-03 02:00", "2027-01-05 02:00"],
        },
        Case {
            // 21:30 UTC is 23:30 in Berlin on the 20th; 22:30 and 23:30 UTC are already the 21st.
            name: "days are the policy's time zone's days",
            tz: chrono_tz::Europe::Berlin,
            rules: Retention {
                keep_daily: Some(5),
                ..none()
            },
            times: &["2026-10-20 21:30", "2026-10-20 22:30", "2026-10-20 23:30"],
            now: "2026-10-21 03:00",
            kept: &["2026-10-20 21:30", "2026-10-20 23:30"],
        },
        Case {
            name: "the same backups in UTC are one day",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_daily: Some(5),
                ..none()
            },
            times: &["2026-10-20 21:30", "2026-10-20 22:30", "2026-10-20 23:30"],
            now: "2026-10-21 03:00",
            kept: &["2026-10-20 23:30"],
        },
        Case {
            // Berlin falls back on 2026-10-25 at 01:00 UTC: 00:00-00:59 UTC is 02:xx CEST and
            // 01:00-01:59 UTC is 02:xx CET. Two clock hours with the same number.
            name: "DST fall-back: the repeated hour is two hourly buckets",
            tz: chrono_tz::Europe::Berlin,
            rules: Retention {
                keep_hourly: Some(3),
                ..none()
            },
            times: &[
                "2026-10-24 23:10",
                "2026-10-24 23:40",
                "2026-10-25 00:10",
                "2026-10-25 00:40",
                "2026-10-25 01:10",
                "2026-10-25 01:40",
            ],
            now: "2026-10-25 02:00",
            kept: &["2026-10-24 23:40", "2026-10-25 00:40", "2026-10-25 01:40"],
        },
        Case {
            // 23:30 UTC is 01:30 CEST before the change and 00:30 CET after: one per local day.
            name: "DST change: daily backups stay one per day",
            tz: chrono_tz::Europe::Berlin,
            rules: Retention {
                keep_daily: Some(3),
                ..none()
            },
            times: &[
                "2026-10-23 23:30",
                "2026-10-24 23:30",
                "2026-10-25 23:30",
                "2026-10-26 23:30",
            ],
            now: "2026-10-27 02:00",
            kept: &["2026-10-24 23:30", "2026-10-25 23:30", "2026-10-26 23:30"],
        },
        Case {
            name: "several backups in one bucket: the newest stays",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_daily: Some(2),
                ..none()
            },
            times: &[
                "2026-11-20 01:00",
                "2026-11-20 09:00",
                "2026-11-20 17:00",
                "2026-11-21 01:00",
                "2026-11-21 09:00",
            ],
            now: "2026-11-21 10:00",
            kept: &["2026-11-20 17:00", "2026-11-21 09:00"],
        },
        Case {
            // Counted back from the newest backup, not the clock: a policy that stopped a month
            // ago keeps its full set.
            name: "gaps of weeks: buckets with backups are counted, not calendar slots",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_daily: Some(4),
                ..none()
            },
            times: &[
                "2026-01-01 02:00",
                "2026-01-02 02:00",
                "2026-01-03 02:00",
                "2026-02-20 02:00",
                "2026-02-21 02:00",
            ],
            now: "2026-03-30 02:00",
            kept: &[
                "2026-01-02 02:00",
                "2026-01-03 02:00",
                "2026-02-20 02:00",
                "2026-02-21 02:00",
            ],
        },
        Case {
            name: "monthly and weekly combine with OR",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_weekly: Some(1),
                keep_monthly: Some(2),
                ..none()
            },
            times: &[
                "2026-09-15 02:00",
                "2026-09-30 02:00",
                "2026-10-05 02:00",
                "2026-10-06 02:00",
            ],
            now: "2026-10-06 03:00",
            kept: &["2026-09-30 02:00", "2026-10-06 02:00"],
        },
        Case {
            name: "keepWithin counts back from the newest backup",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_within: Some(Duration::from_secs(48 * 3600)),
                ..none()
            },
            times: &[
                "2026-05-01 02:00",
                "2026-05-02 02:00",
                "2026-05-03 01:00",
                "2026-05-03 02:00",
                "2026-05-05 02:00",
            ],
            now: "2026-11-21 00:00",
            kept: &["2026-05-03 02:00", "2026-05-05 02:00"],
        },
        Case {
            name: "one backup",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_daily: Some(7),
                ..none()
            },
            times: &["2026-11-21 02:00"],
            now: "2026-11-21 03:00",
            kept: &["2026-11-21 02:00"],
        },
        Case {
            name: "no backups",
            tz: chrono_tz::UTC,
            rules: Retention {
                keep_last: Some(1),
                ..none()
            },
            times: &[],
            now: "2026-11-21 03:00",
            kept: &[],
        },
    ];
    for c in cases {
        let p = run(c.times, &c.rules, c.tz, c.now);
        assert_eq!(kept(&p), c.kept, "{}", c.name);
        assert_eq!(p.decisions.len(), c.times.len(), "{}", c.name);
    }
}

#[test]
fn reasons_say_which_rule_and_which_bucket() {
    let rules = Retention {
        keep_last: Some(2),
        keep_daily: Some(7),
        keep_within: Some(Duration::from_secs(48 * 3600)),
        ..none()
    };
    let p = run(
        &[
            "2026-11-17 02:00",
            "2026-11-19 02:00",
            "2026-11-20 02:00",
            "2026-11-21 02:00",
        ],
        &rules,
        chrono_tz::UTC,
        "2026-11-21 03:00",
    );
    assert_eq!(
        reasons(&p, "2026-11-21 02:00"),
        ["newest", "last 1/2", "daily 1/7", "within 2d"]
    );
    assert_eq!(
        reasons(&p, "2026-11-20 02:00"),
        ["last 2/2", "daily 2/7", "within 2d"]
    );
    assert_eq!(reasons(&p, "2026-11-17 02:00"), ["daily 4/7"]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn a_retention_that_keeps_nothing_is_refused() {
    let b = [backup("2026-11-21 02:00")];
    let zeros = Retention {
        keep_last: Some(0),
        keep_daily: Some(0),
        keep_within: Some(Duration::ZERO),
        ..none()
    };
    for rules in [none(), zeros] {
        let r = plan(
            &b,
            "prod",
            None,
            &rules,
            chrono_tz::UTC,
            at("2026-11-22 00:00"),
        );
        assert_eq!(r.unwrap_err(), KeepsNothing);
    }
}

#[test]
fn the_newest_verified_backup_is_kept_beside_an_unverified_newest() {
    let mut b: Vec<Candidate> = ["2026-11-19 02:00", "2026-11-20 02:00", "2026-11-21 02:00"]
        .iter()
        .map(|t| backup(t))
        .collect();
    b[2].verified = false;
    let rules = Retention {
        keep_last: Some(1),
        ..none()
    };
    let p = plan(
        &b,
        "prod",
        None,
        &rules,
        chrono_tz::UTC,
        at("2026-11-22 00:00"),
    )
    .unwrap();
    assert_eq!(kept(&p), ["2026-11-20 02:00", "2026-11-21 02:00"]);
    assert_eq!(reasons(&p, "2026-11-20 02:00"), ["newest verified"]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}

#[test]
fn other_policies_and_clusters_are_never_touched() {
    let mut b: Vec<Candidate> = [
        "2026-11-01 02:00",
        "2026-11-02 02:00",
        "2026-11-03 02:00",
        "2026-11-04 02:00",
        "2026-11-05 02:00",
    ]
    .iter()
    .map(|t| backup(t))
    .collect();
    b[0].policy = "staging".into();
    b[1].cluster_id = "old".into();
    b[2].cluster_id = String::new(); // backed up from a file
    let rules = Retention {
        keep_last: Some(1),
        ..none()
    };
    let now = at("2026-11-22 00:00");
    let p = plan(&b, "prod", None, &rules, chrono_tz::UTC, now).unwrap();
    assert_eq!(p.cluster_id, "c1");
    assert_eq!(
        kept(&p),
        [
            "2026-11-01 02:00",
            "2026-11-02 02:00",
            "2026-11-03 02:00",
            "2026-11-05 02:00"
        ]
    );
    assert_eq!(reasons(&p, "2026-11-01 02:00"), ["other policy staging"]);
    assert_eq!(reasons(&p, "2026-11-02 02:00"), ["other cluster old"]);

    // Asked to plan the old cluster's backups, it leaves the current cluster's alone.
    let p = plan(&b, "prod", Some("old"), &rules, chrono_tz::UTC, now).unwrap();
    assert_eq!(p.removals().count(), 0);
    assert_eq!(reasons(&p, "2026-11-02 02:00"), ["newest", "last 1/1"]);
}

#[test]
fn a_future_dated_backup_is_kept_reported_and_does_not_age_out_the_rest() {
    let rules = Retention {
        keep_within: Some(Duration::from_secs(24 * 3600)),
        ..none()
    };
    let p = run(
        &["2026-11-20 02:00", "2026-11-21 01:00", "2027-03-01 02:00"],
        &rules,
        chrono_tz::UTC,
        "2026-11-21 03:00",
    );
    assert_eq!(
        kept(&p),
        ["2026-11-20 02:00", "2026-11-21 01:00", "2027-03-01 02:00"]
    );
    assert_eq!(reasons(&p, "2027-03-01 02:00"), ["dated in the future"]);
    assert_eq!(reasons(&p, "2026-11-21 01:00"), ["newest", "within 1d"]);
    assert!(p.warnings[0].contains("clock"), "{:?}", p.warnings);
}

#[test]
fn planning_what_was_kept_removes_nothing() {
    let rules = Retention {
        keep_last: Some(2),
        keep_daily: Some(3),
        keep_weekly: Some(2),
        ..none()
    };
    let times: Vec<String> = (0..60)
        .map(|i| {
            (at("2026-09-01 02:00") + chrono::Duration::hours(9 * i))
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = times.iter().map(String::as_str).collect();
    let first = run(&refs, &rules, chrono_tz::Europe::Berlin, "2026-11-21 00:00");
    assert!(first.removals().count() > 40);
    let kept_times = kept(&first);
    let refs: Vec<&str> = kept_times.iter().map(String::as_str).collect();
    let second = run(&refs, &rules, chrono_tz::Europe::Berlin, "2026-11-21 00:00");
    assert_eq!(second.removals().count(), 0);
}

#[test]
fn orphans_expire_after_the_grace_period_only() {
    let now = at("2026-11-21 12:00");
    let grace = Duration::from_secs(24 * 3600);
    assert!(orphan_expired(at("2026-11-20 11:59"), now, grace));
    assert!(!orphan_expired(at("2026-11-20 12:00"), now, grace));
    assert!(!orphan_expired(at("2026-11-21 11:00"), now, grace));
    // Written "after" now (skewed storage clock): never expired.
    assert!(!orphan_expired(at("2026-11-22 12:00"), now, grace));
}

// ---------------------------------------------------------------------------------------------
// properties

fn arb_rules() -> impl Strategy<Value = Retention> {
    (
        proptest::option::of(0u32..5),
        proptest::option::of(0u32..5),
        proptest::option::of(0u32..5),
        proptest::option::of(0u32..4),
        proptest::option::of(0u32..4),
        proptest::option::of(0u32..3),
        proptest::option::of(0u64..10 * 86_400),
    )
        .prop_map(|(l, h, d, w, m, y, within)| Retention {
            keep_last: l,
            keep_hourly: h,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
            keep_yearly: y,
            keep_within: within.map(Duration::from_secs),
            ..none()
        })
        .prop_filter("keeps something", Retention::keeps_something)
}

/// Up to 40 backups over about two years, some unverified, some of another cluster.
fn arb_backups() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec((0i64..2 * 365 * 24 * 60, any::<bool>(), 0u8..8), 0..40).prop_map(
        |v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (minutes, verified, cluster))| {
                    let t = at("2025-01-01 00:00") + chrono::Duration::minutes(minutes);
                    Candidate {
                        id: BackupId::new(t, i as u32),
                        policy: "prod".into(),
                        cluster_id: if cluster == 0 { "other" } else { "c1" }.into(),
                        started_at: t,
                        verified,
                    }
                })
                .collect()
        },
    )
}

fn arb_tz() -> impl Strategy<Value = Tz> {
    prop_oneof![
        Just(chrono_tz::UTC),
        Just(chrono_tz::Europe::Berlin),
        Just(chrono_tz::America::New_York),
        Just(chrono_tz::Australia::Lord_Howe),
    ]
}

fn now() -> DateTime<Utc> {
    at("2027-01-01 00:00")
}

fn removed_ids(p: &Plan) -> Vec<BackupId> {
    p.removals().map(|d| d.id.clone()).collect()
}

proptest! {
    #[test]
    fn never_removes_the_newest_or_the_newest_verified(
        b in arb_backups(), rules in arb_rules(), tz in arb_tz()
    ) {
        let p = plan(&b, "prod", Some("c1"), &rules, tz, now()).unwrap();
        let mut ours: Vec<&Candidate> = b.iter().filter(|c| c.cluster_id == "c1").collect();
        ours.sort_by_key(|c| std::cmp::Reverse((c.started_at, c.id.clone())));
        let removed = removed_ids(&p);
        if let Some(newest) = ours.first() {
            prop_assert!(!removed.contains(&newest.id));
        }
        if let Some(v) = ours.iter().find(|c| c.verified) {
            prop_assert!(!removed.contains(&v.id));
        }
        for c in b.iter().filter(|c| c.cluster_id != "c1") {
            prop_assert!(!removed.contains(&c.id));
        }
    }

    #[test]
    fn planning_the_kept_set_again_removes_nothing(
        b in arb_backups(), rules in arb_rules(), tz in arb_tz()
    ) {
        let p = plan(&b, "prod", Some("c1"), &rules, tz, now()).unwrap();
        let removed = removed_ids(&p);
        let kept: Vec<Candidate> = b.into_iter().filter(|c| !removed.contains(&c.id)).collect();
        let again = plan(&kept, "prod", Some("c1"), &rules, tz, now()).unwrap();
        prop_assert_eq!(removed_ids(&again), Vec::<BackupId>::new());
    }

    #[test]
    fn keeps_at_least_keep_last(b in arb_backups(), rules in arb_rules(), tz in arb_tz()) {
        let p = plan(&b, "prod", Some("c1"), &rules, tz, now()).unwrap();
        let ours = b.iter().filter(|c| c.cluster_id == "c1").count();
        let kept_ours = ours - p.removals().count();
        let want = rules.keep_last.unwrap_or(0) as usize;
        prop_assert!(kept_ours >= want.min(ours));
    }

    #[test]
    fn rules_that_keep_everything_remove_nothing(b in arb_backups(), tz in arb_tz(), last in any::<bool>()) {
        let rules = if last {
            Retention { keep_last: Some((b.len() as u32).max(1)), ..none() }
        } else {
            Retention { keep_within: Some(Duration::from_secs(3 * 365 * 86_400)), ..none() }
        };
        let p = plan(&b, "prod", Some("c1"), &rules, tz, now()).unwrap();
        prop_assert_eq!(removed_ids(&p), Vec::<BackupId>::new());
    }
}
