//! The oracle for the linearizability search: try every order of the ops that
//! respects real time, with its own copy of the register semantics on strings
//! (so a bug in the model's interning or in the search cannot hide in both).
//! Exponential; only for the small histories of the property tests.

use crate::history::{Expect, Level, Op, OpKind, Outcome};

/// Does some real-time-respecting order of the ops explain every result?
pub fn linearizable(ops: &[Op]) -> bool {
    let ops: Vec<&Op> = ops
        .iter()
        .filter(|o| match o.outcome() {
            Outcome::Fail => false,
            Outcome::Unknown => o.kind() != OpKind::Get,
            Outcome::Ok => {
                o.kind() != OpKind::Get || matches!(o.level, None | Some(Level::Linearizable))
            }
        })
        .collect();
    let mut done = vec![false; ops.len()];
    search(&ops, &mut done, None)
}

fn search(ops: &[&Op], done: &mut [bool], state: Option<String>) -> bool {
    // Finished once every op with a definite outcome is placed; unknown ops
    // left over simply never happened.
    if ops
        .iter()
        .zip(done.iter())
        .all(|(o, d)| *d || o.outcome() == Outcome::Unknown)
    {
        return true;
    }
    for i in 0..ops.len() {
        if done[i] {
            continue;
        }
        // i may go next only if no pending op returned before i was called.
        let blocked = ops.iter().enumerate().any(|(j, o)| {
            !done[j] && j != i && o.complete_ns.is_some_and(|r| r < ops[i].invoke_ns)
        });
        if blocked {
            continue;
        }
        if let Some(next) = apply(ops[i], &state) {
            done[i] = true;
            let found = search(ops, done, next);
            done[i] = false;
            if found {
                return true;
            }
        }
    }
    false
}

/// `Some(new state)` if `op`'s result is possible in `state`.
fn apply(op: &Op, state: &Option<String>) -> Option<Option<String>> {
    let known = op.outcome() == Outcome::Ok;
    match op.kind() {
        OpKind::Put => Some(op.value.clone()),
        OpKind::Get => (op.read == *state).then(|| state.clone()),
        OpKind::Delete => {
            if known && op.deleted != Some(state.is_some()) {
                return None;
            }
            Some(None)
        }
        OpKind::Cas => {
            let holds = match op.expect.as_ref().unwrap() {
                Expect::Absent => state.is_none(),
                Expect::Value(v) => state.as_deref() == Some(v.as_str()),
            };
            if known && op.swapped != Some(holds) {
                return None;
            }
            Some(if holds {
                op.value.clone()
            } else {
                state.clone()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linearizable::{Verdict, check};
    use proptest::prelude::*;

    /// A random op over values v0..v2 on one key, with arbitrary (mostly
    /// impossible) results: exercises the "not linearizable" side.
    fn arb_op() -> impl Strategy<Value = Op> {
        (
            0u8..4,
            0u8..3,
            0u8..4,
            any::<bool>(),
            0u64..20,
            1u64..8,
            0u8..10,
        )
            .prop_map(|(kind, val, res, flag, call, dur, unk)| {
                let v = |i: u8| format!("v{i}");
                let unknown = unk < 2;
                let mut op = Op {
                    key: "k".into(),
                    invoke_ns: call,
                    complete_ns: (!unknown).then_some(call + dur),
                    outcome: Some(if unknown {
                        Outcome::Unknown
                    } else {
                        Outcome::Ok
                    }),
                    ..Default::default()
                };
                match kind {
                    0 => {
                        op.kind = Some(OpKind::Put);
                        op.value = Some(v(val));
                    }
                    1 => {
                        op.kind = Some(OpKind::Get);
                        op.level = Some(Level::Linearizable);
                        op.read = (res < 3).then(|| v(res));
                        if unknown {
                            op.outcome = Some(Outcome::Fail);
                        }
                    }
                    2 => {
                        op.kind = Some(OpKind::Cas);
                        op.value = Some(format!("w{val}"));
                        op.expect = Some(if res < 3 {
                            Expect::Value(v(res))
                        } else {
                            Expect::Absent
                        });
                        op.swapped = (!unknown).then_some(flag);
                    }
                    _ => {
                        op.kind = Some(OpKind::Delete);
                        op.deleted = (!unknown).then_some(flag);
                    }
                }
                op
            })
    }

    /// A history produced by a real sequential execution: each op takes
    /// effect at a point inside its interval, results come from the model, so
    /// it is linearizable by construction (then possibly perturbed).
    fn arb_executed() -> impl Strategy<Value = (Vec<Op>, Option<(usize, u8)>)> {
        (
            prop::collection::vec((arb_op(), 0u64..6, 0u64..6), 1..8),
            prop::option::of((0usize..8, 0u8..4)),
        )
            .prop_map(|(raw, perturb)| {
                // Linearization points are the op's position * 20; intervals
                // stretch around them so ops overlap.
                let mut state: Option<String> = None;
                let mut ops = Vec::new();
                for (i, (mut op, before, after)) in raw.into_iter().enumerate() {
                    let point = 20 * i as u64 + 20;
                    op.invoke_ns = point - before * 3;
                    let unknown = op.outcome() == Outcome::Unknown;
                    op.complete_ns = (!unknown).then_some(point + after * 3);
                    if op.kind() == OpKind::Get {
                        op.outcome = Some(Outcome::Ok);
                        op.complete_ns = Some(point + after * 3);
                        op.read = state.clone();
                    }
                    // Unknown writes: half of them never take effect.
                    let applies = !unknown || after % 2 == 0;
                    if op.kind() == OpKind::Delete && !unknown {
                        op.deleted = Some(state.is_some());
                    }
                    if op.kind() == OpKind::Cas {
                        let holds = match op.expect.as_ref().unwrap() {
                            Expect::Absent => state.is_none(),
                            Expect::Value(v) => state.as_deref() == Some(v.as_str()),
                        };
                        if !unknown {
                            op.swapped = Some(holds);
                        }
                        if holds && applies {
                            state = op.value.clone();
                        }
                    } else if applies {
                        match op.kind() {
                            OpKind::Put => state = op.value.clone(),
                            OpKind::Delete => state = None,
                            _ => {}
                        }
                    }
                    op.id = i as u64;
                    ops.push(op);
                }
                (ops, perturb)
            })
    }

    fn fast(ops: &[Op]) -> bool {
        match check(ops, 10_000_000) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable(_) => false,
            v => panic!("{v:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn search_agrees_with_brute_force_on_random_histories(
            ops in prop::collection::vec(arb_op(), 1..8)
        ) {
            let ops: Vec<Op> = ops.into_iter().enumerate()
                .map(|(i, o)| Op { id: i as u64, ..o }).collect();
            prop_assert_eq!(fast(&ops), linearizable(&ops), "history: {:#?}", ops);
        }

        #[test]
        fn executed_histories_are_linearizable_and_perturbations_agree(
            (mut ops, perturb) in arb_executed()
        ) {
            prop_assert!(linearizable(&ops), "oracle rejects an executed history: {:#?}", ops);
            prop_assert!(fast(&ops), "search rejects an executed history: {:#?}", ops);
            if let Some((i, how)) = perturb {
                let i = i % ops.len();
                let op = &mut ops[i];
                match how {
                    0 => op.read = Some("v9".into()),
                    1 => op.swapped = op.swapped.map(|s| !s),
                    2 => op.deleted = op.deleted.map(|d| !d),
                    _ => {
                        // Shrink the op to its call instant: changes real-time order.
                        op.invoke_ns += 7;
                        if let Some(c) = op.complete_ns.as_mut() {
                            *c = (*c).max(op.invoke_ns);
                        }
                    }
                }
                prop_assert_eq!(fast(&ops), linearizable(&ops), "history: {:#?}", ops);
            }
        }
    }
}
