//! Checks of the reads that do not promise linearizability.
//!
//! Every read, whatever its level: the value returned was written by some
//! put or CAS that was invoked before the read completed and did not
//! definitely fail (no phantom values). Stale reads get only this check: they
//! promise no recency.
//!
//! Bounded reads, bound B, invoked at I: let W be the writes to the key that
//! were acknowledged as having changed it (put, swapped CAS, delete that
//! deleted) and completed before I - B, on the harness clock. Since an
//! acknowledgement is received before its completion time is taken and the
//! read is sent after its invocation time is taken, every write in W was
//! acknowledged by the server more than B before the read reached it. Let w
//! be the one with the highest revision. Then:
//!   - if the read found the key, its mod_revision must be >= w's revision
//!     (an older mod_revision means the read's state predates w);
//!   - if the key was absent, w must be a delete, or some delete of the key
//!     that may have happened after w (any delete not definitely failed,
//!     invoked before the read completed, with unknown or higher revision)
//!     must exist.
//!
//! Min-revision reads (a stale read waiting for revision R): the same rule
//! with W = the acknowledged writes to the key with revision <= R (the state
//! read is at least at revision R, so it reflects all of them).

use std::collections::{HashMap, HashSet};

use crate::history::{Level, Op, OpKind, Outcome};

#[derive(Debug, Clone)]
pub struct ReadAnomaly {
    pub kind: &'static str,
    pub op: u64,
    pub detail: String,
}

pub fn check(ops: &[Op]) -> Vec<ReadAnomaly> {
    let mut out = Vec::new();
    // Value -> earliest invocation of a write (not definitely failed) of it.
    let mut written: HashMap<(&str, &str), u64> = HashMap::new();
    for op in ops {
        if matches!(op.kind(), OpKind::Put | OpKind::Cas)
            && op.outcome() != Outcome::Fail
            && let Some(v) = &op.value
        {
            let e = written.entry((&op.key, v)).or_insert(op.invoke_ns);
            *e = (*e).min(op.invoke_ns);
        }
    }
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }

    for op in ops {
        if op.kind() != OpKind::Get || op.outcome() != Outcome::Ok {
            continue;
        }
        if let Some(v) = &op.read {
            match written.get(&(op.key.as_str(), v.as_str())) {
                Some(&t) if t <= op.complete_or_max() => {}
                _ => out.push(ReadAnomaly {
                    kind: "phantom-read",
                    op: op.id,
                    detail: format!(
                        "{} returned a value no write invoked before the read completed had written",
                        op.describe()
                    ),
                }),
            }
        }
        let key_ops = &by_key[op.key.as_str()];
        let must_reflect: Vec<&Op> = match op.level {
            Some(Level::Bounded) => {
                let bound = op.max_staleness_ms.unwrap_or(0) * 1_000_000;
                let Some(cutoff) = op.invoke_ns.checked_sub(bound) else {
                    continue;
                };
                key_ops
                    .iter()
                    .filter(|w| w.changed_key() && w.complete_or_max() < cutoff)
                    .copied()
                    .collect()
            }
            Some(Level::MinRevision) => {
                let r = op.min_revision.unwrap_or(0);
                key_ops
                    .iter()
                    .filter(|w| w.changed_key() && w.revision.is_some_and(|wr| wr <= r))
                    .copied()
                    .collect()
            }
            _ => continue,
        };
        let Some(latest) = must_reflect
            .iter()
            .filter(|w| w.revision.is_some())
            .max_by_key(|w| w.revision)
        else {
            continue;
        };
        let lrev = latest.revision.unwrap_or(0);
        let why = match &op.read {
            Some(_) => match op.mod_revision {
                Some(m) if m < lrev => Some(format!(
                    "read state with the key at mod_revision {m}, older than {} at revision {lrev}",
                    latest.describe()
                )),
                _ => None,
            },
            None => {
                let later_delete = key_ops.iter().any(|d| {
                    d.kind() == OpKind::Delete
                        && d.outcome() != Outcome::Fail
                        && d.invoke_ns <= op.complete_or_max()
                        && d.revision.is_none_or(|r| r >= lrev)
                });
                (latest.kind() != OpKind::Delete && !later_delete).then(|| {
                    format!(
                        "found no key, but {} (revision {lrev}) must be reflected and no delete can explain the absence",
                        latest.describe()
                    )
                })
            }
        };
        if let Some(why) = why {
            out.push(ReadAnomaly {
                kind: if op.level == Some(Level::Bounded) {
                    "bounded-read-too-stale"
                } else {
                    "min-revision-read-too-old"
                },
                op: op.id,
                detail: format!("{}: {why}", op.describe()),
            });
        }
    }
    // One report per op even if two rules fire.
    let mut seen = HashSet::new();
    out.retain(|a| seen.insert((a.kind, a.op)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn w(id: u64, v: &str, rev: u64, call: u64, ret: u64) -> Op {
        Op {
            id,
            kind: Some(OpKind::Put),
            key: "k".into(),
            value: Some(v.into()),
            invoke_ns: call,
            complete_ns: Some(ret),
            outcome: Some(Outcome::Ok),
            revision: Some(rev),
            mod_revision: Some(rev),
            ..Default::default()
        }
    }
    fn r(id: u64, level: Level, v: Option<(&str, u64)>, call: u64) -> Op {
        Op {
            id,
            kind: Some(OpKind::Get),
            key: "k".into(),
            level: Some(level),
            max_staleness_ms: (level == Level::Bounded).then_some(100),
            invoke_ns: call,
            complete_ns: Some(call + MS),
            outcome: Some(Outcome::Ok),
            read: v.map(|(v, _)| v.into()),
            mod_revision: v.map(|(_, m)| m),
            ..Default::default()
        }
    }

    #[test]
    fn bounded_reads_must_reflect_writes_acknowledged_before_the_bound() {
        let h = vec![
            w(1, "a", 1, 0, MS),
            w(2, "b", 2, 2 * MS, 3 * MS),
            // 300 ms after b's ack with a 100 ms bound: must see b.
            r(3, Level::Bounded, Some(("a", 1)), 303 * MS),
            // 50 ms after: a is allowed.
            r(4, Level::Bounded, Some(("a", 1)), 53 * MS),
            r(5, Level::Bounded, Some(("b", 2)), 303 * MS),
        ];
        let a = check(&h);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!((a[0].kind, a[0].op), ("bounded-read-too-stale", 3));
    }

    #[test]
    fn absence_needs_a_delete_to_explain_it() {
        let mut h = vec![w(1, "a", 1, 0, MS), r(2, Level::Bounded, None, 500 * MS)];
        assert_eq!(check(&h).len(), 1);
        h.push(Op {
            id: 3,
            kind: Some(OpKind::Delete),
            key: "k".into(),
            invoke_ns: 400 * MS,
            outcome: Some(Outcome::Unknown),
            ..Default::default()
        });
        assert!(check(&h).is_empty());
    }

    #[test]
    fn stale_reads_are_only_checked_for_phantoms() {
        let h = vec![
            w(1, "a", 1, 0, MS),
            w(2, "b", 2, 2 * MS, 3 * MS),
            r(3, Level::Stale, Some(("a", 1)), 900 * MS),
            r(4, Level::Stale, Some(("zz", 7)), 900 * MS),
        ];
        let a = check(&h);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!((a[0].kind, a[0].op), ("phantom-read", 4));
    }

    #[test]
    fn a_value_read_before_its_write_was_invoked_is_a_phantom() {
        let h = vec![
            r(1, Level::Stale, Some(("a", 1)), 0),
            w(2, "a", 1, 10 * MS, 11 * MS),
        ];
        assert_eq!(check(&h)[0].kind, "phantom-read");
    }

    #[test]
    fn min_revision_reads_reflect_writes_up_to_the_revision() {
        let mut rd = r(3, Level::MinRevision, Some(("a", 1)), 10 * MS);
        rd.min_revision = Some(2);
        let h = vec![
            w(1, "a", 1, 0, MS),
            w(2, "b", 2, 2 * MS, 3 * MS),
            rd.clone(),
        ];
        assert_eq!(check(&h)[0].kind, "min-revision-read-too-old");
        rd.min_revision = Some(1);
        let h = vec![w(1, "a", 1, 0, MS), w(2, "b", 2, 2 * MS, 3 * MS), rd];
        assert!(check(&h).is_empty());
    }
}
