//! The session table against a brute-force oracle (proptest), plus the
//! exactly-once property for well-behaved clients.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const SMALL: SessionLimits = SessionLimits {
    ttl_ms: 500,
    sessions_max: 2,
    replies_per_session_max: 3,
};

/// No expiry in practice, no session eviction with three clients, few answers.
const FEW_ANSWERS: SessionLimits = SessionLimits {
    ttl_ms: 1_000_000,
    sessions_max: 3,
    replies_per_session_max: 2,
};

const ROOMY: SessionLimits = SessionLimits {
    ttl_ms: u64::MAX,
    sessions_max: usize::MAX,
    replies_per_session_max: usize::MAX,
};

/// One request as it reaches apply.
#[derive(Debug, Clone)]
struct Req {
    id: WriteSession,
    at_ms: u64,
    fingerprint: u32,
}

/// The oracle: the same rules written the dumbest way, over plain vectors
/// scanned in full (no maps, no split_off, no early exits).
/// (client, last_active, floor, answers as (seq, fingerprint, reply)).
type OracleSession = (u64, u64, u64, Vec<(u64, u32, u64)>);

#[derive(Default)]
struct Oracle {
    clock: u64,
    sessions: Vec<OracleSession>,
}

impl Oracle {
    fn once(
        &mut self,
        r: &Req,
        l: &SessionLimits,
        applied: &mut u64,
    ) -> Result<Answer<u64>, SessionRefusal> {
        let id = r.id;
        if id.client_id == 0
            || id.seq == 0
            || id.first_incomplete == 0
            || id.first_incomplete > id.seq
        {
            return Err(SessionRefusal::Invalid(String::new()));
        }
        self.clock = self.clock.max(r.at_ms);
        let now = self.clock;
        let pos = self.sessions.iter().position(|s| s.0 == id.client_id);
        let live = pos.is_some_and(|p| now.saturating_sub(self.sessions[p].1) <= l.ttl_ms);
        if !live {
            self.sessions.retain(|s| s.0 != id.client_id);
            if self.sessions.len() >= l.sessions_max {
                self.sessions
                    .retain(|s| now.saturating_sub(s.1) <= l.ttl_ms);
            }
            while self.sessions.len() >= l.sessions_max {
                let mut oldest = 0;
                for i in 0..self.sessions.len() {
                    let (a, b) = (&self.sessions[i], &self.sessions[oldest]);
                    if (a.1, a.0) < (b.1, b.0) {
                        oldest = i;
                    }
                }
                self.sessions.remove(oldest);
            }
            self.sessions
                .push((id.client_id, now, id.first_incomplete, Vec::new()));
        }
        let p = self
            .sessions
            .iter()
            .position(|s| s.0 == id.client_id)
            .unwrap();
        let s = &mut self.sessions[p];
        s.1 = now;
        if id.first_incomplete > s.2 {
            s.2 = id.first_incomplete;
        }
        let floor = s.2;
        s.3.retain(|a| a.0 >= floor);
        if id.seq < s.2 {
            return Err(SessionRefusal::TooOld {
                seq: id.seq,
                floor: s.2,
            });
        }
        for a in &s.3 {
            if a.0 == id.seq {
                if a.1 != r.fingerprint {
                    return Err(SessionRefusal::Reused { seq: id.seq });
                }
                return Ok(Answer::Replayed(a.2));
            }
        }
        *applied += 1;
        s.3.push((id.seq, r.fingerprint, *applied));
        while s.3.len() > l.replies_per_session_max {
            let lowest = s.3.iter().map(|a| a.0).min().unwrap();
            s.3.retain(|a| a.0 != lowest);
            s.2 = lowest + 1;
        }
        Ok(Answer::Fresh(*applied))
    }
}

fn same(a: &Result<Answer<u64>, SessionRefusal>, b: &Result<Answer<u64>, SessionRefusal>) -> bool {
    match (a, b) {
        // The oracle does not spell out messages.
        (Err(SessionRefusal::Invalid(_)), Err(SessionRefusal::Invalid(_))) => true,
        _ => a == b,
    }
}

fn arb_req() -> impl Strategy<Value = Req> {
    (0u64..10, 0u64..7, 0u64..7, 0u64..1000, 0u32..2).prop_map(
        |(client, seq, back, at_ms, fingerprint)| Req {
            id: WriteSession {
                // Three clients, and now and then the invalid ID 0.
                client_id: if client == 0 { 0 } else { 1 + client % 3 },
                seq,
                // Mostly valid (1..=seq), sometimes 0 (invalid).
                first_incomplete: if back == 6 {
                    0
                } else {
                    seq.saturating_sub(back).max(1)
                },
            },
            at_ms,
            fingerprint,
        },
    )
}

/// Leader times that mostly grow, sometimes step back (another leader's clock).
fn with_time(reqs: Vec<Req>) -> Vec<Req> {
    let mut t = 0u64;
    reqs.into_iter()
        .map(|mut r| {
            t += r.at_ms % 300;
            r.at_ms = if r.at_ms % 7 == 0 {
                t.saturating_sub(400)
            } else {
                t
            };
            r
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_table_answers_every_request_as_the_oracle_does(reqs in prop::collection::vec(arb_req(), 1..80)) {
        for limits in [SMALL, FEW_ANSWERS, ROOMY] {
            let mut table = SessionTable::<u64>::default();
            let mut oracle = Oracle::default();
            let (mut applied_t, mut applied_o) = (0u64, 0u64);
            for (i, r) in with_time(reqs.clone()).iter().enumerate() {
                let got = table.once(r.id, r.at_ms, r.fingerprint, &limits, || { applied_t += 1; applied_t });
                let want = oracle.once(r, &limits, &mut applied_o);
                prop_assert!(same(&got, &want), "request {i} {r:?}: table {got:?}, oracle {want:?}");
                prop_assert!(table.len() <= limits.sessions_max);
                for s in table.sessions.values() {
                    prop_assert!(s.replies.len() <= limits.replies_per_session_max);
                    prop_assert!(s.replies.keys().all(|seq| *seq >= s.floor));
                }
            }
        }
    }

    /// Clients that follow the protocol (seqs from 1, retries of writes
    /// still in flight, an honest watermark), under no table pressure: every
    /// write is applied exactly once and every retry gets the first answer.
    #[test]
    fn a_well_behaved_client_never_has_a_write_applied_twice(
        steps in prop::collection::vec((0u64..3, 0u8..4, 0usize..8), 1..150),
    ) {
        let mut table = SessionTable::<u64>::default();
        let mut applied = 0u64;
        // Per client: next seq, in-flight seqs.
        let mut clients: BTreeMap<u64, (u64, Vec<u64>)> = BTreeMap::new();
        let mut answers: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        let mut times_applied: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        for (t, (client, action, pick)) in steps.into_iter().enumerate() {
            let client = client + 1;
            let (next, inflight) = clients.entry(client).or_insert((1, Vec::new()));
            let seq = match action {
                // A new write.
                0 | 1 => { inflight.push(*next); *next += 1; *next - 1 }
                // A retry of one in flight.
                2 if !inflight.is_empty() => inflight[pick % inflight.len()],
                // One completes (the client got its answer; never sent again).
                _ => {
                    if !inflight.is_empty() { inflight.remove(pick % inflight.len()); }
                    continue;
                }
            };
            let first_incomplete = inflight.iter().copied().min().unwrap_or(seq);
            let id = WriteSession { client_id: client, seq, first_incomplete };
            let mut ran = false;
            let got = table.once(id, t as u64, 0, &ROOMY, || { ran = true; applied += 1; applied });
            let reply = match got {
                Ok(Answer::Fresh(r)) => { prop_assert!(ran); r }
                Ok(Answer::Replayed(r)) => { prop_assert!(!ran); r }
                Err(e) => { prop_assert!(false, "{id:?} refused: {e}"); unreachable!() }
            };
            *times_applied.entry((client, seq)).or_default() += u32::from(ran);
            prop_assert_eq!(*answers.entry((client, seq)).or_insert(reply), reply, "{:?} answered differently", id);
            prop_assert_eq!(table.replay(id, 0, &ROOMY), Some(reply));
        }
        prop_assert!(times_applied.values().all(|n| *n == 1), "{:?}", times_applied);
    }
}

#[test]
fn a_retry_below_the_watermark_is_refused_not_applied() {
    let mut t = SessionTable::<u64>::default();
    let id = |seq, first_incomplete| WriteSession {
        client_id: 9,
        seq,
        first_incomplete,
    };
    assert_eq!(t.once(id(1, 1), 10, 0, &SMALL, || 1), Ok(Answer::Fresh(1)));
    assert_eq!(t.once(id(2, 2), 11, 0, &SMALL, || 2), Ok(Answer::Fresh(2)));
    assert_eq!(
        t.once(id(1, 1), 12, 0, &SMALL, || panic!("applied twice")),
        Err(SessionRefusal::TooOld { seq: 1, floor: 2 })
    );
    assert_eq!(
        t.once(id(2, 2), 13, 0, &SMALL, || panic!("applied twice")),
        Ok(Answer::Replayed(2))
    );
    assert_eq!(
        t.once(id(2, 2), 14, 1, &SMALL, || panic!("applied")),
        Err(SessionRefusal::Reused { seq: 2 })
    );
}

#[test]
fn sessions_expire_by_leader_time_only() {
    let mut t = SessionTable::<u64>::default();
    let id = WriteSession {
        client_id: 5,
        seq: 1,
        first_incomplete: 1,
    };
    assert_eq!(t.once(id, 1_000, 0, &SMALL, || 1), Ok(Answer::Fresh(1)));
    // Another client's entry moves the clock to exactly the TTL: still alive.
    let other = WriteSession {
        client_id: 6,
        seq: 1,
        first_incomplete: 1,
    };
    t.once(other, 1_500, 0, &SMALL, || 0).unwrap();
    assert_eq!(t.replay(id, 0, &SMALL), Some(1));
    // A stamp from the past (an earlier leader's clock) does not move it back.
    t.once(
        WriteSession {
            seq: 2,
            first_incomplete: 2,
            ..other
        },
        10,
        0,
        &SMALL,
        || 0,
    )
    .unwrap();
    t.once(
        WriteSession {
            seq: 3,
            first_incomplete: 3,
            ..other
        },
        1_501,
        0,
        &SMALL,
        || 0,
    )
    .unwrap();
    assert_eq!(
        t.replay(id, 0, &SMALL),
        None,
        "expired one millisecond past the TTL"
    );
    assert_eq!(t.once(id, 1_501, 0, &SMALL, || 7), Ok(Answer::Fresh(7)));
}

#[test]
fn invalid_sessions_are_refused_and_change_nothing() {
    let mut t = SessionTable::<u64>::default();
    for bad in [
        WriteSession {
            client_id: 0,
            seq: 1,
            first_incomplete: 1,
        },
        WriteSession {
            client_id: 1,
            seq: 0,
            first_incomplete: 0,
        },
        WriteSession {
            client_id: 1,
            seq: 3,
            first_incomplete: 4,
        },
    ] {
        assert!(matches!(
            t.once(bad, 99, 0, &SMALL, || panic!("applied")),
            Err(SessionRefusal::Invalid(_))
        ));
    }
    assert_eq!(t, SessionTable::default());
}
