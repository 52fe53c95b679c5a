//! Linearizability of one key's operations: the Wing–Gong search with Lowe's
//! cache (the algorithm behind Knossos' "linear" and Porcupine).
//!
//! The history is a list of call and return events sorted by time. The calls
//! before the first return still in the list are the candidates for the next
//! linearized operation; one is taken if the model accepts its result and the
//! pair (set of linearized ops, state) is new — else the same subtree was
//! already explored (Lowe's cache). When no candidate works, the op returning
//! first cannot be linearized after the current prefix, so the last choice is
//! undone.
//!
//! Unknown outcomes return at +infinity: they may be linearized anywhere after
//! their call, and since the model accepts them in every state, the search is
//! done as soon as every op with a definite outcome is linearized. For the
//! same reason they are tried after the definite candidates: a pending
//! unknown write is placed only where some result needs it, which keeps the
//! search near-linear on real histories with dozens of timeouts.
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
    let mut actions: Vec<Action> = checked.iter().map(|(_, a)| *a).collect();
    model::merge_unobserved(&mut actions);
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
    let mut list = List::new(&events, n);

    // Lowe's cache, keyed by a Zobrist hash of the linearized set (XOR of a
    // random 128-bit key per op) and the state: O(1) per step instead of
    // copying a bitset. A collision could only prune an unexplored branch,
    // with probability ~ entries^2 / 2^128.
    let zobrist: Vec<u128> = (0..n as u64).map(zobrist_key).collect();
    let mut set_hash: u128 = 0;
    let mut cache: HashSet<(u128, State)> = HashSet::new();

    // Depth-first search. Frame k holds the candidates after k ops were
    // linearized: every call before the first return still in the list
    // (Wing & Gong's minimal ops), definite outcomes first so that unknown
    // ops, which may always be left for the end, are tried only when needed.
    let mut lin: Vec<(usize, State)> = Vec::new();
    let mut state = model::ABSENT;
    let mut frames: Vec<Frame> = Vec::new();
    match list.frame(&definite, &actions) {
        None => return Verdict::Linearizable,
        Some(f) => frames.push(f),
    }
    let mut best: (usize, Vec<usize>, State, usize) = (0, Vec::new(), state, usize::MAX);
    let mut steps = 0u64;
    while let Some(frame) = frames.last_mut() {
        steps += 1;
        if steps > budget {
            return Verdict::Inconclusive { steps };
        }
        if frame.next < frame.cands.len() {
            let op = frame.cands[frame.next];
            frame.next += 1;
            let Some(new) = model::step(state, actions[op]) else {
                continue;
            };
            let h = set_hash ^ zobrist[op];
            if !cache.insert((h, new)) {
                continue;
            }
            list.lift(op);
            set_hash = h;
            lin.push((op, state));
            state = new;
            match list.frame(&definite, &actions) {
                None => return Verdict::Linearizable,
                Some(f) => frames.push(f),
            }
            continue;
        }
        // Every candidate failed: the op returning first cannot be
        // linearized after this prefix. Undo the last choice.
        if lin.len() >= best.0 && (lin.len() > best.0 || best.3 == usize::MAX) {
            best = (
                lin.len(),
                lin.iter().map(|(o, _)| *o).collect(),
                state,
                frame.blocker,
            );
        }
        frames.pop();
        let Some((op, before)) = lin.pop() else {
            break;
        };
        list.unlift(op);
        set_hash ^= zobrist[op];
        state = before;
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

/// splitmix64 of the op index, twice: a fixed pseudo-random key per op.
fn zobrist_key(i: u64) -> u128 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (u128::from(mix(2 * i)) << 64) | u128::from(mix(2 * i + 1))
}

struct Frame {
    cands: Vec<usize>,
    next: usize,
    /// The op whose return entry ends the candidate scan.
    blocker: usize,
}

/// The call/return events still to linearize, as a doubly linked list over
/// the sorted events so an op is removed and restored in O(1).
struct List<'a> {
    events: &'a [Event],
    next: Vec<usize>,
    prev: Vec<usize>,
    call_at: Vec<usize>,
    ret_at: Vec<usize>,
}

const END: usize = usize::MAX;

impl<'a> List<'a> {
    fn new(events: &'a [Event], n: usize) -> Self {
        let len = events.len();
        // Index `len` is the head sentinel.
        let next = (0..=len)
            .map(|i| match i {
                i if i == len => 0,
                i if i + 1 == len => END,
                i => i + 1,
            })
            .collect();
        let prev = (0..=len)
            .map(|i| if i == 0 { len } else { i - 1 })
            .collect();
        let mut call_at = vec![0; n];
        let mut ret_at = vec![0; n];
        for (i, e) in events.iter().enumerate() {
            if e.call {
                call_at[e.op] = i;
            } else {
                ret_at[e.op] = i;
            }
        }
        List {
            events,
            next,
            prev,
            call_at,
            ret_at,
        }
    }

    fn head(&self) -> usize {
        self.next[self.events.len()]
    }

    fn unlink(&mut self, i: usize) {
        let (p, nx) = (self.prev[i], self.next[i]);
        self.next[p] = nx;
        if nx != END {
            self.prev[nx] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, nx) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if nx != END {
            self.prev[nx] = i;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_at[op]);
        self.unlink(self.ret_at[op]);
    }

    /// Exact inverse of `lift` (dancing links: restore in reverse order).
    fn unlift(&mut self, op: usize) {
        self.relink(self.ret_at[op]);
        self.relink(self.call_at[op]);
    }

    /// The candidates of the current list, or `None` when every definite op
    /// is linearized (the first return left is an unknown op's, at +inf).
    ///
    /// Of the unknown candidates with the same action only the earliest is
    /// offered: they are interchangeable (same effect, both return at +inf,
    /// and a candidate stays one in every later frame, since the first return
    /// left only moves later), so trying the others would only explore
    /// mirror images of the same futures.
    fn frame(&self, definite: &[bool], actions: &[Action]) -> Option<Frame> {
        let (mut sure, mut maybe) = (Vec::new(), Vec::new());
        let mut i = self.head();
        while i != END {
            let e = self.events[i];
            if !e.call {
                if !definite[e.op] {
                    return None;
                }
                sure.append(&mut maybe);
                return Some(Frame {
                    cands: sure,
                    next: 0,
                    blocker: e.op,
                });
            }
            if definite[e.op] {
                sure.push(e.op);
            } else if !maybe.iter().any(|&m| actions[m] == actions[e.op]) {
                maybe.push(e.op);
            }
            i = self.next[i];
        }
        None
    }
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
