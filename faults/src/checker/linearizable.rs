//! Linearizability of one key's operations: the Wing–Gong search with Lowe's
//! cache (the algorithm behind Knossos' "linear" and Porcupine).
//!
//! The history is a list of call and return events sorted by time. The search
//! repeatedly takes the earliest event still in the list: a call is tried as
//! the next linearized operation (the model must accept its result, and the
//! pair (set of linearized ops, state) must be new, else the same subtree was
//! already explored — Lowe's cache); a return means the op it belongs to was
//! not linearized before it returned, so the last choice is undone.
//!
//! Unknown outcomes return at +infinity: they may be linearized anywhere after
//! their call, and since the model accepts them in every state, the search is
//! done as soon as every op with a definite outcome is linearized.
//!
//! Ties: a call and a return at the same instant count as concurrent (calls
//! sort first), so coarse timestamps can only hide an anomaly, never invent one.

use std::collections::HashSet;

use super::model::{self, Action, State, Values};
use crate::history::Op;

/// Why a key's history could not be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists; the report names the ops where the longest
    /// linearizable prefix got stuck.
    NotLinearizable(Failure),
    /// The search exceeded its step budget.
    Inconclusive {
        steps: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Ops (history ids) of the longest linearizable prefix found, in order.
    pub prefix: Vec<u64>,
    /// The state after that prefix.
    pub state: String,
    /// The first definite op (by return time) that could not follow it, and
    /// the ops concurrent with it (history ids).
    pub stuck: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    call: bool,
}

/// Checks one key's ops (any order; non-checked kinds are ignored).
pub fn check(ops: &[Op], budget: u64) -> Verdict {
    let mut values = Values::default();
    let mut checked: Vec<(&Op, Action)> = Vec::new();
    for op in ops {
        if let Some(a) = model::action_of(op, &mut values) {
            checked.push((op, a));
        }
    }
    let n = checked.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    let actions: Vec<Action> = checked.iter().map(|(_, a)| *a).collect();
    let call_t: Vec<u64> = checked.iter().map(|(o, _)| o.invoke_ns).collect();
    let ret_t: Vec<u64> = checked.iter().map(|(o, _)| o.complete_or_max()).collect();
    let definite: Vec<bool> = checked
        .iter()
        .map(|(o, _)| o.complete_ns.is_some())
        .collect();

    let mut events: Vec<Event> = (0..n)
        .flat_map(|op| [Event { op, call: true }, Event { op, call: false }])
        .collect();
    events.sort_by_key(|e| {
        let t = if e.call { call_t[e.op] } else { ret_t[e.op] };
        (t, !e.call, e.op)
    });

    // Doubly linked list over events; index `len` is the head sentinel.
    let len = events.len();
    let head = len;
    let mut next: Vec<usize> = (0..=len)
        .map(|i| if i == len { 0 } else { i + 1 })
        .collect();
    let mut prev: Vec<usize> = (0..=len)
        .map(|i| if i == 0 { head } else { i - 1 })
        .collect();
    next[len] = 0;
    prev[0] = head;
    // `len` also stands for "end of list" when read from `next`.
    if len > 0 {
        next[len - 1] = usize::MAX;
    }
    let mut call_at = vec![0; n];
    let mut ret_at = vec![0; n];
    for (i, e) in events.iter().enumerate() {
        if e.call {
            call_at[e.op] = i;
        } else {
            ret_at[e.op] = i;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != usize::MAX {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != usize::MAX {
            prev[nx] = i;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = model::ABSENT;
    let mut best: (usize, Vec<usize>, State, usize) = (0, Vec::new(), state, usize::MAX);
    let mut steps = 0u64;
    let mut cur = next[head];
    loop {
        steps += 1;
        if steps > budget {
            return Verdict::Inconclusive { steps };
        }
        if cur == usize::MAX {
            return Verdict::Linearizable;
        }
        let e = events[cur];
        if e.call {
            if let Some(new) = model::step(state, actions[e.op]) {
                linearized[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((linearized.clone(), new)) {
                    stack.push((e.op, state));
                    state = new;
                    unlink(&mut next, &mut prev, call_at[e.op]);
                    unlink(&mut next, &mut prev, ret_at[e.op]);
                    cur = next[head];
                    continue;
                }
                linearized[e.op / 64] &= !(1 << (e.op % 64));
            }
            cur = next[cur];
        } else {
            if !definite[e.op] {
                // Every definite op returned earlier, so all are linearized.
                return Verdict::Linearizable;
            }
            if stack.len() >= best.0 && (stack.len() > best.0 || best.3 == usize::MAX) {
                best = (
                    stack.len(),
                    stack.iter().map(|(o, _)| *o).collect(),
                    state,
                    e.op,
                );
            }
            let Some((op, before)) = stack.pop() else {
                break;
            };
            state = before;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut next, &mut prev, ret_at[op]);
            relink(&mut next, &mut prev, call_at[op]);
            cur = next[call_at[op]];
        }
    }

    let (_, prefix, at, stuck_op) = best;
    let mut stuck = vec![checked[stuck_op].0.id];
    for j in 0..n {
        if j != stuck_op
            && !prefix.contains(&j)
            && call_t[j] <= ret_t[stuck_op]
            && ret_t[j] >= call_t[stuck_op]
        {
            stuck.push(checked[j].0.id);
        }
    }
    Verdict::NotLinearizable(Failure {
        prefix: prefix.iter().map(|&j| checked[j].0.id).collect(),
        state: values.name(at),
        stuck,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Expect, Level, OpKind, Outcome};

    const BUDGET: u64 = 10_000_000;

    /// A tiny DSL: (kind, arg, result, call, return) with return None = unknown.
    fn op(id: u64, kind: OpKind, call: u64, ret: Option<u64>) -> Op {
        Op {
            id,
            kind: Some(kind),
            key: "k".into(),
            invoke_ns: call,
            complete_ns: ret,
            outcome: Some(if ret.is_some() {
                Outcome::Ok
            } else {
                Outcome::Unknown
            }),
            ..Default::default()
        }
    }
    fn put(id: u64, v: &str, call: u64, ret: Option<u64>) -> Op {
        Op {
            value: Some(v.into()),
            ..op(id, OpKind::Put, call, ret)
        }
    }
    fn get(id: u64, v: Option<&str>, call: u64, ret: u64) -> Op {
        Op {
            read: v.map(Into::into),
            level: Some(Level::Linearizable),
            ..op(id, OpKind::Get, call, Some(ret))
        }
    }
    fn cas(
        id: u64,
        expect: Option<&str>,
        v: &str,
        swapped: Option<bool>,
        call: u64,
        ret: Option<u64>,
    ) -> Op {
        Op {
            value: Some(v.into()),
            expect: Some(match expect {
                Some(e) => Expect::Value(e.into()),
                None => Expect::Absent,
            }),
            swapped,
            ..op(id, OpKind::Cas, call, ret)
        }
    }
    fn del(id: u64, deleted: Option<bool>, call: u64, ret: Option<u64>) -> Op {
        Op {
            deleted,
            ..op(id, OpKind::Delete, call, ret)
        }
    }

    fn ok(h: &[Op]) -> bool {
        match check(h, BUDGET) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable(_) => false,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        assert!(ok(&[
            put(1, "a", 0, Some(1)),
            get(2, Some("a"), 2, 3),
            cas(3, Some("a"), "b", Some(true), 4, Some(5)),
            get(4, Some("b"), 6, 7),
            del(5, Some(true), 8, Some(9)),
            get(6, None, 10, 11),
        ]));
    }

    #[test]
    fn a_read_of_an_overwritten_value_is_not_linearizable() {
        let h = [
            put(1, "a", 0, Some(1)),
            put(2, "b", 2, Some(3)),
            get(3, Some("a"), 4, 5),
        ];
        let Verdict::NotLinearizable(f) = check(&h, BUDGET) else {
            panic!("stale read accepted")
        };
        assert!(f.stuck.contains(&3), "{f:?}");
    }

    #[test]
    fn concurrent_writes_may_be_read_in_either_order() {
        assert!(ok(&[
            put(1, "a", 0, Some(10)),
            put(2, "b", 0, Some(10)),
            get(3, Some("a"), 11, 12),
        ]));
        assert!(ok(&[
            put(1, "a", 0, Some(10)),
            put(2, "b", 0, Some(10)),
            get(3, Some("b"), 11, 12),
        ]));
        // But two later reads cannot see them flip back.
        assert!(!ok(&[
            put(1, "a", 0, Some(10)),
            put(2, "b", 0, Some(10)),
            get(3, Some("b"), 11, 12),
            get(4, Some("a"), 13, 14),
        ]));
    }

    #[test]
    fn an_unknown_write_may_or_may_not_happen_but_only_after_its_call() {
        // Seen: fine.
        assert!(ok(&[put(1, "a", 0, None), get(2, Some("a"), 5, 6)]));
        // Not seen: fine too.
        assert!(ok(&[put(1, "a", 0, None), get(2, None, 5, 6)]));
        // Seen before it was invoked: impossible.
        assert!(!ok(&[get(2, Some("a"), 0, 1), put(1, "a", 5, None)]));
        // Seen, then unseen with no other write: impossible.
        assert!(!ok(&[
            put(1, "a", 0, None),
            get(2, Some("a"), 5, 6),
            get(3, None, 7, 8),
        ]));
    }

    #[test]
    fn cas_results_constrain_the_state() {
        assert!(ok(&[
            put(1, "a", 0, Some(1)),
            cas(2, Some("x"), "b", Some(false), 2, Some(3)),
            cas(3, Some("a"), "c", Some(true), 4, Some(5)),
            get(4, Some("c"), 6, 7),
        ]));
        // A failed CAS whose expectation held: impossible.
        assert!(!ok(&[
            put(1, "a", 0, Some(1)),
            cas(2, Some("a"), "b", Some(false), 2, Some(3)),
        ]));
        // Two CAS from the same value both succeeding: impossible.
        assert!(!ok(&[
            put(1, "a", 0, Some(1)),
            cas(2, Some("a"), "b", Some(true), 2, Some(5)),
            cas(3, Some("a"), "c", Some(true), 2, Some(5)),
        ]));
        // CAS on absent.
        assert!(ok(&[
            cas(1, None, "a", Some(true), 0, Some(1)),
            cas(2, None, "b", Some(false), 2, Some(3)),
            get(3, Some("a"), 4, 5),
        ]));
    }

    #[test]
    fn deleted_flag_must_match_existence() {
        assert!(!ok(&[del(1, Some(true), 0, Some(1))]));
        assert!(ok(&[
            del(1, Some(false), 0, Some(1)),
            put(2, "a", 2, Some(3)),
            del(3, Some(true), 4, Some(5)),
            del(4, None, 6, None),
        ]));
    }

    #[test]
    fn failed_ops_and_non_linearizable_reads_are_ignored() {
        let mut failed = put(2, "b", 2, Some(3));
        failed.outcome = Some(Outcome::Fail);
        let mut stale = get(3, None, 4, 5);
        stale.level = Some(Level::Stale);
        assert!(ok(&[
            put(1, "a", 0, Some(1)),
            failed,
            stale,
            get(4, Some("a"), 6, 7)
        ]));
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let h: Vec<Op> = (0..30)
            .map(|i| put(i, &format!("v{i}"), 0, Some(100)))
            .chain([get(99, Some("nope"), 200, 201)])
            .collect();
        assert!(matches!(check(&h, 1_000), Verdict::Inconclusive { .. }));
    }
}
