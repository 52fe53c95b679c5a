//! The decisions of scheduled backups, pure (no client, no clock): when the
//! next backup is due, the schedule's interval, whether the last success is
//! stale, and which scheduled backups retention deletes.
//!
//! Times are UTC at minute resolution, as cron's are.

use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp, Zoned};

use crate::crd::BackupPhase;

/// Bounds of the schedule arithmetic, in one place.
pub mod limits {
    /// Slots looked at to find a schedule's interval (its longest gap): 64
    /// covers two months of a daily schedule and a week of weekday-only
    /// hourly ones, at a cost of 64 searches per reconcile.
    pub const INTERVAL_SLOTS: usize = 64;
    /// A last success older than this many intervals is stale (issue #14).
    pub const STALE_INTERVALS: i32 = 2;
}

/// A parsed `spec.backup.schedule`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
}

/// Parses a five-field cron schedule (minute hour day-of-month month
/// day-of-week), refusing seconds and years: the message names the problem.
pub fn parse(text: &str) -> Result<Schedule, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "spec.backup.schedule {text:?} has {fields} fields; cron needs five: minute hour day-of-month month day-of-week (e.g. \"0 3 * * *\")"
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("spec.backup.schedule {text:?} is not a valid cron schedule: {e}"))?;
    Ok(Schedule { cron })
}

fn utc(t: Timestamp) -> Zoned {
    t.to_zoned(TimeZone::UTC)
}

/// `t` rounded down to its minute.
fn floor_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60).expect("in range")
}

impl Schedule {
    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&utc(floor_minute(t)), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&utc(floor_minute(t)), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The longest gap between consecutive slots among the next
    /// [`limits::INTERVAL_SLOTS`] after `t`: what "once per interval" means for
    /// an irregular schedule (`0 3 * * 1-5` has gaps of one and three days;
    /// its interval is three days, so a weekend is never stale).
    pub fn interval(&self, t: Timestamp) -> Option<SignedDuration> {
        let mut prev = self.next_after(t)?;
        let mut longest = None;
        for _ in 1..limits::INTERVAL_SLOTS {
            let Some(next) = self.next_after(prev) else {
                break;
            };
            let gap = next.duration_since(prev);
            if longest.is_none_or(|l| gap > l) {
                longest = Some(gap);
            }
            prev = next;
        }
        longest
    }
}

/// A RaftClusterBackup as the schedule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub name: String,
    /// Created by the schedule (only those are pruned).
    pub scheduled: bool,
    /// The slot it stands for (scheduled backups), else its creation time.
    pub at: Timestamp,
    pub phase: Option<BackupPhase>,
    /// When it succeeded.
    pub completed: Option<Timestamp>,
}

/// The name of the scheduled backup of `slot`: `<cluster>-<yyyymmddhhmm>`.
pub fn backup_name(cluster: &str, slot: Timestamp) -> String {
    format!("{cluster}-{}", slot.strftime("%Y%m%d%H%M"))
}

/// The slot a backup is due for now, if any: the latest slot at or before
/// `now` that is after `since` (when the cluster was created) and after every
/// slot a scheduled backup already stands for. Missed slots (the operator was
/// down) collapse into one backup, the latest.
pub fn due(
    schedule: &Schedule,
    now: Timestamp,
    since: Timestamp,
    backups: &[BackupRecord],
) -> Option<Timestamp> {
    let slot = schedule.latest_at_or_before(now)?;
    if slot <= since {
        return None;
    }
    let newest = backups.iter().filter(|b| b.scheduled).map(|b| b.at).max();
    match newest {
        Some(n) if n >= slot => None,
        _ => Some(slot),
    }
}

/// The newest successful backup (scheduled or not).
pub fn last_success(backups: &[BackupRecord]) -> Option<&BackupRecord> {
    backups
        .iter()
        .filter(|b| b.phase == Some(BackupPhase::Succeeded))
        .filter(|b| b.completed.is_some())
        .max_by_key(|b| (b.completed, b.name.clone()))
}

/// Whether the last success is older than [`limits::STALE_INTERVALS`]
/// intervals; with no success yet, counted from `since` (a schedule that has
/// never succeeded is stale once it has had that long).
pub fn stale(
    now: Timestamp,
    last_success: Option<Timestamp>,
    since: Timestamp,
    interval: SignedDuration,
) -> bool {
    let reference = last_success.unwrap_or(since);
    now.duration_since(reference) > interval * limits::STALE_INTERVALS
}

/// The scheduled backups retention deletes: every successful one but the
/// `keep` newest, and every failed one but the `keep` newest (failures are
/// kept for diagnosis but bounded, so a schedule that always fails does not
/// pile up objects). Pending and running backups are never pruned, nor is a
/// backup the user created. Newest = latest slot; ties by name.
pub fn prune(backups: &[BackupRecord], keep: u32) -> Vec<String> {
    let mut out = Vec::new();
    for phase in [BackupPhase::Succeeded, BackupPhase::Failed] {
        let mut of: Vec<&BackupRecord> = backups
            .iter()
            .filter(|b| b.scheduled && b.phase == Some(phase))
            .collect();
        of.sort_by(|a, b| (b.at, &b.name).cmp(&(a.at, &a.name)));
        out.extend(of.iter().skip(keep as usize).map(|b| b.name.clone()));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests;
