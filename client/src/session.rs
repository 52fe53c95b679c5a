//! Write sessions: the client side of exactly-once writes (the node's
//! `kv::session` has the other side and docs/design.md "Client sessions" the
//! whole story).
//!
//! One random client ID per [`crate::RaftClient`] (shared by its clones) and
//! one sequence number per logical write; every attempt of a write, retries
//! included, sends the same pair, so the state machine applies it once and
//! answers a retry with the first answer. The client also sends the lowest
//! sequence number it still waits for, which lets the server forget older
//! answers.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;
use raftkv_proto::v1;

/// The writes of one client instance.
#[derive(Debug)]
pub(crate) struct Sessions {
    client_id: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    /// Writes whose caller has not had its final answer yet.
    in_flight: BTreeSet<u64>,
}

/// One logical write: in flight until dropped (the call returned, whatever
/// its outcome: the caller will never send it again).
#[derive(Debug)]
pub(crate) struct Ticket {
    sessions: Arc<Sessions>,
    pub(crate) session: v1::WriteSession,
}

impl Sessions {
    pub(crate) fn new() -> Self {
        // Never 0 (the server refuses it); 64 random bits make two live
        // clients sharing an ID vanishingly unlikely (~1 in 10^11 for 10,000).
        Self::with_id(rand::random::<u64>().max(1))
    }

    pub(crate) fn with_id(client_id: u64) -> Self {
        assert_ne!(client_id, 0, "client_id 0 is not a session");
        Sessions {
            client_id,
            state: Mutex::new(State {
                next_seq: 1,
                in_flight: BTreeSet::new(),
            }),
        }
    }

    pub(crate) fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The session of a new write.
    pub(crate) fn start(self: &Arc<Self>) -> Ticket {
        let mut s = self.state.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.in_flight.insert(seq);
        let first_incomplete = *s.in_flight.first().expect("holds seq");
        Ticket {
            sessions: self.clone(),
            session: v1::WriteSession {
                client_id: self.client_id,
                seq,
                first_incomplete,
            },
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.sessions
            .state
            .lock()
            .in_flight
            .remove(&self.session.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_grow_and_the_watermark_is_the_oldest_write_in_flight() {
        let s = Arc::new(Sessions::with_id(7));
        let a = s.start();
        let b = s.start();
        assert_eq!((a.session.seq, a.session.first_incomplete), (1, 1));
        assert_eq!((b.session.seq, b.session.first_incomplete), (2, 1));
        drop(a);
        let c = s.start();
        assert_eq!((c.session.seq, c.session.first_incomplete), (3, 2));
        drop(b);
        drop(c);
        let d = s.start();
        assert_eq!((d.session.seq, d.session.first_incomplete), (4, 4));
        assert_eq!(d.session.client_id, 7);
    }

    #[test]
    fn client_ids_are_random_and_never_zero() {
        let (a, b) = (Sessions::new(), Sessions::new());
        assert_ne!(a.client_id(), 0);
        assert_ne!(a.client_id(), b.client_id());
    }
}
