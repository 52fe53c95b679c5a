//! Retry policy as pure code: which failures are retried, and which endpoint is
//! tried next. The I/O loop lives in `RaftClient::call`.

use tonic::Code;

/// Consecutive leader-hint jumps allowed without a full round in between
/// (stops two nodes with stale views from bouncing a call back and forth).
pub(crate) const HINT_JUMPS_PER_ROUND_MAX: u32 = 2;

/// What repeating a call that may already have been applied can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads and Status: always safe to repeat.
    Idempotent,
    /// Put, Delete, AddLearner, ChangeMembership: applying twice leaves the
    /// same state (a Put's revision may be bumped twice). Retried also when the
    /// outcome is unknown (connection lost mid-call, timeout).
    Repeatable,
    /// CompareAndSwap, RemoveMember, TransferLeader, Initialize: a second
    /// application could report a false failure or do more than asked.
    /// Retried only on UNAVAILABLE (refused before it took effect).
    NonRepeatable,
}

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A status the server sent.
    Server(Code),
    /// The connection failed (refused, reset, closed mid-call); tonic made up
    /// the status. UNAVAILABLE means it never connected.
    Transport(Code),
    /// No answer within the per-attempt timeout.
    Timeout,
    /// The TLS handshake failed on a certificate (ours or the server's):
    /// another attempt fails the same way until someone fixes it.
    Certificate,
}

impl Failure {
    pub(crate) fn of(status: &tonic::Status) -> Self {
        // Statuses decoded from a server's trailers carry no source error;
        // those made from a transport error do.
        if crate::tls::certificate_problem(status).is_some() {
            Failure::Certificate
        } else if std::error::Error::source(status).is_some() {
            Failure::Transport(status.code())
        } else {
            Failure::Server(status.code())
        }
    }
}

pub(crate) fn is_retryable(failure: Failure, idem: Idempotency) -> bool {
    match failure {
        Failure::Server(code) | Failure::Transport(code) if code == Code::Unavailable => true,
        Failure::Server(_) => false,
        Failure::Transport(_) | Failure::Timeout => idem != Idempotency::NonRepeatable,
        Failure::Certificate => false,
    }
}

/// Which endpoint to try next. A round is every endpoint tried once; the
/// caller sleeps (backoff) between rounds, not between endpoints, so a dead
/// endpoint costs one connect timeout and no extra wait.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    idx: usize,
    tried_in_round: usize,
    round: u32,
    hint_jumps: u32,
}

impl Cursor {
    pub(crate) fn new(start: usize) -> Self {
        Cursor {
            idx: start,
            tried_in_round: 0,
            round: 0,
            hint_jumps: 0,
        }
    }

    pub(crate) fn current(&self) -> usize {
        self.idx
    }

    /// Move on after a retryable failure at the current endpoint. `hint` is the
    /// index of the endpoint a leader hint named (if any); `len` the number of
    /// endpoints now known. Returns `Some(round)` when a round is complete and
    /// the caller should back off for that round before the next attempt.
    pub(crate) fn advance(&mut self, hint: Option<usize>, len: usize) -> Option<u32> {
        assert!(len > 0);
        if let Some(h) = hint
            && h != self.idx
            && h < len
            && self.hint_jumps < HINT_JUMPS_PER_ROUND_MAX
        {
            self.idx = h;
            self.hint_jumps += 1;
            return None;
        }
        self.tried_in_round += 1;
        self.idx = (self.idx + 1) % len;
        if self.tried_in_round >= len {
            let finished = self.round;
            self.round += 1;
            self.tried_in_round = 0;
            self.hint_jumps = 0;
            return Some(finished);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_other_than_unavailable_are_final() {
        use Idempotency::*;
        for idem in [Idempotent, Repeatable, NonRepeatable] {
            assert!(is_retryable(Failure::Server(Code::Unavailable), idem));
            assert!(is_retryable(Failure::Transport(Code::Unavailable), idem));
            for code in [
                Code::NotFound,
                Code::Aborted,
                Code::InvalidArgument,
                Code::FailedPrecondition,
            ] {
                assert!(!is_retryable(Failure::Server(code), idem), "{code:?}");
            }
        }
    }

    #[test]
    fn unknown_outcomes_are_retried_only_when_repeating_is_harmless() {
        use Idempotency::*;
        for failure in [
            Failure::Timeout,
            Failure::Transport(Code::Cancelled),
            Failure::Transport(Code::Unknown),
        ] {
            assert!(is_retryable(failure, Idempotent), "{failure:?}");
            assert!(is_retryable(failure, Repeatable), "{failure:?}");
            assert!(!is_retryable(failure, NonRepeatable), "{failure:?}");
        }
    }

    #[test]
    fn transport_errors_are_told_from_server_statuses() {
        let server = tonic::Status::cancelled("server said so");
        assert_eq!(Failure::of(&server), Failure::Server(Code::Cancelled));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let transport = tonic::Status::from_error(Box::new(io));
        assert!(
            matches!(Failure::of(&transport), Failure::Transport(_)),
            "{transport:?}"
        );
    }

    #[test]
    fn every_endpoint_is_tried_once_per_round_starting_at_the_preferred_one() {
        let mut c = Cursor::new(1);
        let mut seen = vec![c.current()];
        assert_eq!(c.advance(None, 3), None);
        seen.push(c.current());
        assert_eq!(c.advance(None, 3), None);
        seen.push(c.current());
        assert_eq!(seen, vec![1, 2, 0]);
        assert_eq!(
            c.advance(None, 3),
            Some(0),
            "a full round ends with a backoff"
        );
        assert_eq!(c.current(), 1);
        c.advance(None, 3);
        c.advance(None, 3);
        assert_eq!(c.advance(None, 3), Some(1), "round numbers grow");
    }

    #[test]
    fn a_hint_is_followed_at_once_but_not_forever() {
        let mut c = Cursor::new(0);
        assert_eq!(c.advance(Some(2), 3), None);
        assert_eq!(c.current(), 2);
        assert_eq!(c.advance(Some(0), 3), None);
        assert_eq!(c.current(), 0);
        // Third jump in the same round is ignored: move on normally instead.
        assert_eq!(c.advance(Some(2), 3), None);
        assert_eq!(c.current(), 1);
        // A hint naming the endpoint that just failed is not a jump.
        let mut c = Cursor::new(0);
        c.advance(Some(0), 2);
        assert_eq!(c.current(), 1);
    }

    #[test]
    fn a_single_endpoint_backs_off_after_every_attempt() {
        let mut c = Cursor::new(0);
        for round in 0..5 {
            assert_eq!(c.advance(None, 1), Some(round));
            assert_eq!(c.current(), 0);
        }
    }
}
