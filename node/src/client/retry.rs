//! Retry policy as pure code: which failures are retried, and which endpoint is
//! tried next. The I/O loop lives in `RaftClient::call`.

use tonic::Code;

/// Consecutive leader-hint jumps allowed without a full round in between
/// (stops two nodes with stale views from bouncing a call back and forth).
pub(crate) const HINT_JUMPS_PER_ROUND_MAX: u32 = 2;

/// Whether repeating a call can change the outcome beyond what one call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads and Status: always safe to repeat.
    Idempotent,
    /// Writes and membership changes. Retried on UNAVAILABLE (the server or the
    /// transport refused it, usually before it reached Raft), never after a
    /// timeout, whose outcome is unknown.
    Mutating,
}

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Code(Code),
    /// No answer within the per-attempt timeout.
    Timeout,
}

pub(crate) fn is_retryable(failure: Failure, idem: Idempotency) -> bool {
    match failure {
        Failure::Code(Code::Unavailable) => true,
        Failure::Timeout => idem == Idempotency::Idempotent,
        Failure::Code(_) => false,
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
    fn only_unavailable_and_idempotent_timeouts_are_retried() {
        use Idempotency::*;
        assert!(is_retryable(Failure::Code(Code::Unavailable), Mutating));
        assert!(is_retryable(Failure::Code(Code::Unavailable), Idempotent));
        assert!(is_retryable(Failure::Timeout, Idempotent));
        assert!(!is_retryable(Failure::Timeout, Mutating));
        for code in [
            Code::NotFound,
            Code::Aborted,
            Code::InvalidArgument,
            Code::FailedPrecondition,
        ] {
            assert!(!is_retryable(Failure::Code(code), Idempotent), "{code:?}");
        }
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
