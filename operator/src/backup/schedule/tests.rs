//! The schedule's decisions against brute force: an independent five-field
//! cron matcher walked minute by minute, and retention restated as counting.

use proptest::prelude::*;

use super::*;

/// The allowed values of one cron field (`*`, `a`, `a-b`, `*/s`, `a-b/s`, lists).
fn field(text: &str, lo: u32, hi: u32) -> Vec<bool> {
    let mut ok = vec![false; hi as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap()),
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => {
                    let a = r.parse().unwrap();
                    (a, if step > 1 { hi } else { a })
                }
            },
        };
        let mut v = a;
        while v <= b {
            ok[v as usize] = true;
            v += step;
        }
    }
    ok
}

/// A five-field cron pattern, compiled for the walk.
struct Walk {
    minute: Vec<bool>,
    hour: Vec<bool>,
    dom: Vec<bool>,
    month: Vec<bool>,
    dow: Vec<bool>,
    /// POSIX cron: day-of-month and day-of-week are OR-ed when both are restricted.
    either_day: bool,
}

impl Walk {
    fn new(pattern: &str) -> Walk {
        let f: Vec<&str> = pattern.split_whitespace().collect();
        let mut dow = field(f[4], 0, 7);
        if dow[7] {
            dow[0] = true;
        }
        Walk {
            minute: field(f[0], 0, 59),
            hour: field(f[1], 0, 23),
            dom: field(f[2], 1, 31),
            month: field(f[3], 1, 12),
            dow,
            either_day: f[2] != "*" && f[4] != "*",
        }
    }

    fn matches(&self, t: Timestamp) -> bool {
        let z = utc(t);
        let dom = self.dom[z.day() as usize];
        let dow = self.dow[z.weekday().to_sunday_zero_offset() as usize];
        let day = if self.either_day {
            dom || dow
        } else {
            dom && dow
        };
        self.minute[z.minute() as usize]
            && self.hour[z.hour() as usize]
            && self.month[z.month() as usize]
            && day
    }
}

/// The first matching minute strictly after `t`, walking minute by minute.
fn oracle_next(pattern: &str, t: Timestamp, horizon_min: i64) -> Option<Timestamp> {
    let w = Walk::new(pattern);
    let start = floor_minute(t).as_second();
    (1..=horizon_min)
        .map(|i| Timestamp::from_second(start + 60 * i).unwrap())
        .find(|c| w.matches(*c))
}

fn oracle_latest(pattern: &str, t: Timestamp, horizon_min: i64) -> Option<Timestamp> {
    let w = Walk::new(pattern);
    let start = floor_minute(t).as_second();
    (0..=horizon_min)
        .map(|i| Timestamp::from_second(start - 60 * i).unwrap())
        .find(|c| w.matches(*c))
}

const PATTERNS: &[&str] = &[
    "* * * * *",
    "*/15 * * * *",
    "5 * * * *",
    "0 3 * * *",
    "30 2 * * 1-5",
    "0 0 1 * *",
    "0 12 15 * 0",
    "10,40 8-18/2 * * *",
    "0 0 * 2 7",
];

/// A year and a bit, in minutes: every pattern above matches within it.
const HORIZON_MIN: i64 = 400 * 24 * 60;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn next_and_latest_slots_match_a_minute_by_minute_walk() {
    let starts = [
        "2026-12-07T21:59:59Z",
        "2026-12-31T23:59:00Z",
        "2027-02-28T03:00:00Z",
        "2028-02-29T12:07:30Z",
        "2026-03-01T00:00:00Z",
    ];
    for pattern in PATTERNS {
        let s = parse(pattern).unwrap();
        for start in starts {
            let t = ts(start);
            assert_eq!(
                s.next_after(t),
                oracle_next(pattern, t, HORIZON_MIN),
                "{pattern} after {start}"
            );
            assert_eq!(
                s.latest_at_or_before(t),
                oracle_latest(pattern, t, HORIZON_MIN),
                "{pattern} at or before {start}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any start minute within four years: the same slots as the walk.
    #[test]
    fn next_slot_matches_the_walk_anywhere(
        p in 0..PATTERNS.len(),
        minutes in 0i64..4 * 366 * 24 * 60,
        secs in 0i64..60,
    ) {
        let pattern = PATTERNS[p];
        let t = Timestamp::from_second(ts("2026-01-01T00:00:00Z").as_second() + minutes * 60 + secs).unwrap();
        let s = parse(pattern).unwrap();
        prop_assert_eq!(s.next_after(t), oracle_next(pattern, t, HORIZON_MIN));
        prop_assert_eq!(s.latest_at_or_before(t), oracle_latest(pattern, t, HORIZON_MIN));
    }
}

#[test]
fn interval_is_the_longest_gap_of_the_walk() {
    let t = ts("2026-12-07T21:38:00Z");
    // The last pattern's 64 slots span 16 years: too long a walk for a unit test.
    for pattern in &PATTERNS[..PATTERNS.len() - 1] {
        let s = parse(pattern).unwrap();
        let mut slots = vec![oracle_next(pattern, t, HORIZON_MIN).unwrap()];
        while slots.len() < limits::INTERVAL_SLOTS {
            let last = *slots.last().unwrap();
            slots.push(oracle_next(pattern, last, HORIZON_MIN).unwrap());
        }
        let longest = slots
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap();
        assert_eq!(s.interval(t), Some(longest), "{pattern}");
    }
    let minutely = parse("* * * * *").unwrap().interval(t).unwrap();
    assert_eq!(minutely.as_secs(), 60);
    // Weekdays only: the weekend gap, not the weekday one.
    let weekdays = parse("30 2 * * 1-5").unwrap().interval(t).unwrap();
    assert_eq!(weekdays.as_secs(), 3 * 86_400);
}

#[test]
fn bad_schedules_are_refused_naming_the_problem() {
    for (text, want) in [
        ("0 3 * *", "has 4 fields; cron needs five"),
        ("0 0 3 * * *", "has 6 fields"),
        ("@daily", "has 1 fields"),
        ("61 * * * *", "is not a valid cron schedule"),
        ("0 25 * * *", "is not a valid cron schedule"),
        ("0 3 * 13 *", "is not a valid cron schedule"),
        ("x * * * *", "is not a valid cron schedule"),
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.starts_with("spec.backup.schedule"), "{e}");
    }
}

fn rec(name: &str, scheduled: bool, at: &str, phase: Option<BackupPhase>) -> BackupRecord {
    BackupRecord {
        name: name.into(),
        scheduled,
        at: ts(at),
        phase,
        completed: (phase == Some(BackupPhase::Succeeded)).then(|| ts(at)),
    }
}

#[test]
fn a_backup_is_due_once_per_slot_and_missed_slots_collapse() {
    let s = parse("0 * * * *").unwrap();
    let since = ts("2026-12-07T09:30:00Z");
    // Before the first slot after creation: nothing.
    assert_eq!(due(&s, ts("2026-12-07T09:59:59Z"), since, &[]), None);
    // At the slot: due.
    let slot = ts("2026-12-07T10:00:00Z");
    assert_eq!(due(&s, ts("2026-12-07T10:00:20Z"), since, &[]), Some(slot));
    // Once it exists (any phase), not again.
    let made = [rec("demo-202612071000", true, "2026-12-07T10:00:00Z", None)];
    assert_eq!(due(&s, ts("2026-12-07T10:59:00Z"), since, &made), None);
    // A user's backup does not stand for a slot.
    let user = [rec(
        "mine",
        false,
        "2026-12-07T10:00:10Z",
        Some(BackupPhase::Succeeded),
    )];
    assert_eq!(
        due(&s, ts("2026-12-07T10:30:00Z"), since, &user),
        Some(slot)
    );
    // Down for three hours: one backup, for the latest slot.
    assert_eq!(
        due(&s, ts("2026-12-07T13:10:00Z"), since, &made),
        Some(ts("2026-12-07T13:00:00Z"))
    );
    assert_eq!(backup_name("demo", slot), "demo-202612071000");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `due` against its definition, with the walk as the schedule.
    #[test]
    fn due_is_the_latest_unclaimed_slot_after_creation(
        p in 0..4usize,
        since_min in 0i64..3000,
        now_after in 0i64..3000,
        claimed in proptest::collection::vec(0i64..6000, 0..4),
    ) {
        let pattern = PATTERNS[p];
        let base = ts("2026-12-07T00:00:00Z").as_second();
        let at = |m: i64| Timestamp::from_second(base + m * 60).unwrap();
        let since = at(since_min);
        let now = at(since_min + now_after);
        let backups: Vec<BackupRecord> = claimed
            .iter()
            .map(|m| BackupRecord {
                name: format!("b{m}"),
                scheduled: true,
                at: at(*m),
                phase: None,
                completed: None,
            })
            .collect();
        let latest = oracle_latest(pattern, now, 10_000);
        let newest_claimed = backups.iter().map(|b| b.at).max();
        let want = latest.filter(|l| *l > since && newest_claimed.is_none_or(|n| n < *l));
        prop_assert_eq!(due(&parse(pattern).unwrap(), now, since, &backups), want);
    }
}

#[test]
fn stale_after_two_intervals_counted_from_creation_without_a_success() {
    let i = SignedDuration::from_mins(60);
    let since = ts("2026-12-07T00:00:00Z");
    let ok = ts("2026-12-07T10:00:00Z");
    assert!(!stale(ts("2026-12-07T12:00:00Z"), Some(ok), since, i));
    assert!(stale(ts("2026-12-07T12:00:01Z"), Some(ok), since, i));
    assert!(!stale(ts("2026-12-07T02:00:00Z"), None, since, i));
    assert!(stale(ts("2026-12-07T02:00:01Z"), None, since, i));
}

#[test]
fn last_success_is_the_latest_completed_success() {
    let b = [
        rec(
            "a",
            true,
            "2026-12-07T10:00:00Z",
            Some(BackupPhase::Succeeded),
        ),
        rec(
            "b",
            false,
            "2026-12-07T10:30:00Z",
            Some(BackupPhase::Succeeded),
        ),
        rec("c", true, "2026-12-07T11:00:00Z", Some(BackupPhase::Failed)),
        rec(
            "d",
            true,
            "2026-12-07T12:00:00Z",
            Some(BackupPhase::Running),
        ),
    ];
    assert_eq!(last_success(&b).map(|r| r.name.as_str()), Some("b"));
    assert_eq!(last_success(&b[2..]), None);
}

fn phase_of(i: u8) -> Option<BackupPhase> {
    match i {
        0 => None,
        1 => Some(BackupPhase::Pending),
        2 => Some(BackupPhase::Running),
        3 => Some(BackupPhase::Succeeded),
        _ => Some(BackupPhase::Failed),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Pruned exactly when scheduled, finished, and `keep` newer backups of
    /// the same outcome exist (counted, not sorted).
    #[test]
    fn prune_keeps_the_newest_of_each_outcome(
        items in proptest::collection::vec((any::<bool>(), 0i64..50, 0u8..5), 0..14),
        keep in 1u32..5,
    ) {
        let base = ts("2026-12-07T00:00:00Z").as_second();
        let backups: Vec<BackupRecord> = items
            .iter()
            .enumerate()
            .map(|(i, (scheduled, m, p))| BackupRecord {
                name: format!("b{i:02}"),
                scheduled: *scheduled,
                at: Timestamp::from_second(base + m * 60).unwrap(),
                phase: phase_of(*p),
                completed: None,
            })
            .collect();
        let pruned = prune(&backups, keep);
        let mut want: Vec<String> = backups
            .iter()
            .filter(|b| {
                b.scheduled
                    && matches!(b.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed))
                    && backups
                        .iter()
                        .filter(|o| o.scheduled && o.phase == b.phase)
                        .filter(|o| (o.at, &o.name) > (b.at, &b.name))
                        .count()
                        >= keep as usize
            })
            .map(|b| b.name.clone())
            .collect();
        want.sort();
        prop_assert_eq!(&pruned, &want);
        let left = backups
            .iter()
            .filter(|b| b.scheduled && b.phase == Some(BackupPhase::Succeeded))
            .filter(|b| !pruned.contains(&b.name))
            .count();
        let total = backups
            .iter()
            .filter(|b| b.scheduled && b.phase == Some(BackupPhase::Succeeded))
            .count();
        prop_assert_eq!(left, total.min(keep as usize));
    }
}
