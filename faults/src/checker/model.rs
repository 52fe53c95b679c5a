//! The sequential specification the linearizability check holds each key to:
//! a register that can be absent, with put, delete, get and compare-and-swap.
//! Values are interned to small integers per key so a state is one `u32`
//! (`ABSENT` = the key does not exist) and the search cache stays cheap.

use std::collections::HashMap;

use crate::history::{Expect, Op, OpKind, Outcome};

pub type State = u32;
pub const ABSENT: State = 0;
/// Every value no op of the key ever compares against (no read returned it,
/// no CAS expected it). No op can tell two such values apart, so they are one
/// state: the search then sees blind writes as interchangeable.
pub const UNOBSERVED: State = State::MAX;

/// One operation as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Put(State),
    /// `deleted` is the observed result (`None` when the outcome is unknown).
    Delete {
        deleted: Option<bool>,
    },
    /// `swapped` is the observed result (`None` when the outcome is unknown).
    Cas {
        expect: State,
        new: State,
        swapped: Option<bool>,
    },
    /// A read that returned `State` (`ABSENT` = not found).
    Get(State),
}

/// The model's transition: the new state, or `None` if the observed result is
/// impossible in `state`. An action with an unknown result is always
/// possible (it either applies or does nothing, as the server would).
pub fn step(state: State, action: Action) -> Option<State> {
    match action {
        Action::Put(v) => Some(v),
        Action::Delete { deleted } => match deleted {
            Some(true) if state == ABSENT => None,
            Some(false) if state != ABSENT => None,
            _ => Some(ABSENT),
        },
        Action::Cas {
            expect,
            new,
            swapped,
        } => {
            let holds = state == expect;
            match swapped {
                Some(s) if s != holds => None,
                _ => Some(if holds { new } else { state }),
            }
        }
        Action::Get(v) => (v == state).then_some(state),
    }
}

/// Interns a key's values: `ABSENT` is 0, every distinct value gets the next id.
#[derive(Debug, Default)]
pub struct Values {
    ids: HashMap<String, State>,
    names: Vec<String>,
}

impl Values {
    pub fn id(&mut self, v: &str) -> State {
        if let Some(id) = self.ids.get(v) {
            return *id;
        }
        self.names.push(v.to_string());
        let id = self.names.len() as State;
        self.ids.insert(v.to_string(), id);
        id
    }

    pub fn name(&self, s: State) -> String {
        if s == ABSENT {
            "<absent>".into()
        } else if s == UNOBSERVED {
            "<a value no op observed>".into()
        } else {
            self.names[s as usize - 1].clone()
        }
    }
}

/// Replaces written values that no action compares against by
/// [`UNOBSERVED`] (see there); the transitions give the same results.
pub fn merge_unobserved(actions: &mut [Action]) {
    let mut observed = std::collections::HashSet::new();
    for a in actions.iter() {
        match *a {
            Action::Get(v) => {
                observed.insert(v);
            }
            Action::Cas { expect, .. } => {
                observed.insert(expect);
            }
            _ => {}
        }
    }
    for a in actions.iter_mut() {
        match a {
            Action::Put(v) if !observed.contains(v) => *v = UNOBSERVED,
            Action::Cas { new, .. } if !observed.contains(new) => *new = UNOBSERVED,
            _ => {}
        }
    }
}

/// The model's view of a recorded op, or `None` if the op is not part of the
/// linearizability check: failed ops (they did not happen), reads that did
/// not succeed, and reads at a level that does not promise linearizability.
pub fn action_of(op: &Op, values: &mut Values) -> Option<Action> {
    let outcome = op.outcome();
    if outcome == Outcome::Fail {
        return None;
    }
    let known = outcome == Outcome::Ok;
    match op.kind() {
        OpKind::Put => Some(Action::Put(values.id(op.value.as_deref()?))),
        OpKind::Delete => Some(Action::Delete {
            deleted: if known { op.deleted } else { None },
        }),
        OpKind::Cas => Some(Action::Cas {
            expect: match op.expect.as_ref()? {
                Expect::Value(v) => values.id(v),
                Expect::Absent => ABSENT,
            },
            new: values.id(op.value.as_deref()?),
            swapped: if known { op.swapped } else { None },
        }),
        OpKind::Get => {
            let linearizable = matches!(op.level, None | Some(crate::history::Level::Linearizable));
            if !known || !linearizable {
                return None;
            }
            Some(Action::Get(match &op.read {
                Some(v) => values.id(v),
                None => ABSENT,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_register_with_cas() {
        assert_eq!(step(ABSENT, Action::Put(3)), Some(3));
        assert_eq!(step(3, Action::Get(3)), Some(3));
        assert_eq!(step(3, Action::Get(ABSENT)), None);
        assert_eq!(
            step(
                3,
                Action::Delete {
                    deleted: Some(true)
                }
            ),
            Some(ABSENT)
        );
        assert_eq!(
            step(
                ABSENT,
                Action::Delete {
                    deleted: Some(true)
                }
            ),
            None
        );
        assert_eq!(
            step(
                ABSENT,
                Action::Delete {
                    deleted: Some(false)
                }
            ),
            Some(ABSENT)
        );
        let cas = |expect, swapped| Action::Cas {
            expect,
            new: 9,
            swapped,
        };
        assert_eq!(step(3, cas(3, Some(true))), Some(9));
        assert_eq!(step(3, cas(4, Some(true))), None);
        assert_eq!(step(3, cas(4, Some(false))), Some(3));
        assert_eq!(step(3, cas(3, Some(false))), None);
        assert_eq!(step(ABSENT, cas(ABSENT, Some(true))), Some(9));
        // Unknown outcomes apply when the comparison holds, else do nothing.
        assert_eq!(step(3, cas(3, None)), Some(9));
        assert_eq!(step(3, cas(4, None)), Some(3));
    }
}
