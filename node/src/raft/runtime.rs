//! openraft's async runtime: tokio, except that openraft may not cut a call
//! short before [`TIMEOUT_FLOOR`] (issue 11, hole 7).
//!
//! openraft 0.9 wraps every peer RPC in `AsyncRuntime::timeout` with a
//! duration of its own choosing: one heartbeat interval for an AppendEntries
//! (replication/mod.rs, `send_log_entries`; core/raft_core.rs,
//! `handle_check_is_leader_request`) and `election_timeout_min` for a vote
//! (core/raft_core.rs, `spawn_parallel_vote_requests`). A follower answers an
//! AppendEntries only once the entries are fsynced, and a vote only once the
//! vote is, so at the default timings (50 ms, 200 ms) a disk or a link slower
//! than that made every answer arrive after openraft had given up: no commit
//! and no election, ever. The duration is the only thing openraft tells the
//! runtime, so the rule here is blunt and global: no openraft timeout is
//! shorter than the floor. The deadline of each RPC is then decided by the
//! network, which knows the target (`peer::rto`: adaptive per peer, never
//! above `Limits::peer_rpc_timeout`, which `Limits::validate` keeps within
//! the floor).
//!
//! Every other use of `AsyncRuntime::timeout` in openraft 0.9.25 was checked:
//! the snapshot transfer (`install_snapshot_timeout`, 10 s here: above the
//! floor, unchanged) and `RaftInner::wait_core_stopped` (1 s, on a path where
//! a responder was dropped while the core runs: it now waits 2 s before
//! reporting that). Elections, heartbeats, leases and the metrics waits use
//! `sleep`/`sleep_until`, which are tokio's, untouched.

use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};

/// The shortest timeout openraft gets; the hard cap of a peer RPC's deadline.
pub const TIMEOUT_FLOOR: Duration = Duration::from_secs(2);

/// The timeout openraft gets when it asks for `asked`.
pub fn floored(asked: Duration) -> Duration {
    asked.max(TIMEOUT_FLOOR)
}

/// tokio, with [`floored`] timeouts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RaftRuntime;

type Tokio = TokioRuntime;

impl AsyncRuntime for RaftRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Tokio as AsyncRuntime>::ThreadLocalRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(floored(duration), future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        // Not used by openraft 0.9.25 (checked); a deadline carries no
        // duration to floor, so it is passed through.
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Tokio::thread_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_timeouts_are_never_below_the_floor() {
        // The defaults: heartbeat (AppendEntries), election timeout min (Vote).
        assert_eq!(floored(Duration::from_millis(50)), TIMEOUT_FLOOR);
        assert_eq!(floored(Duration::from_millis(200)), TIMEOUT_FLOOR);
        // The snapshot timeout is above it and stays.
        assert_eq!(floored(Duration::from_secs(10)), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_call_slower_than_the_asked_timeout_completes() {
        // Real time (tokio's paused clock needs a feature this crate does
        // not enable): a 400 ms answer, a 50 ms ask.
        let slow = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            7
        };
        let r = RaftRuntime::timeout(Duration::from_millis(50), slow).await;
        assert_eq!(r.unwrap(), 7);
        let hung = std::future::pending::<()>();
        assert!(
            RaftRuntime::timeout(Duration::from_millis(50), hung)
                .await
                .is_err(),
            "a call that never ends still ends at the floor"
        );
    }
}
