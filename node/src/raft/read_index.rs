//! Reads: the ReadIndex confirmation (Raft §6.4) and when a node may serve a
//! read at each consistency level.
//!
//! [`ReadIndexBatcher`] coalesces concurrent ReadIndex requests: one leadership
//! confirmation ([`confirm`]: a quorum round on the leader, one RPC to the
//! leader elsewhere) serves every read that arrived before it started.
//!
//! Linearizability: a read joins the batch that is *taken* after it arrived,
//! and that batch's confirmation starts after the take, so every read gets a
//! read index confirmed after its own arrival. Reads that arrive while a
//! confirmation is in flight wait for the next one.

use std::future::Future;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tonic::Status;

use crate::grpc::errors;
use crate::peer::envelope;
use crate::peer::network::PeerNetwork;
use crate::raft::contact::Contact;
use crate::typ::Raft;

/// One confirmation: on the leader, a quorum round (openraft's
/// `get_read_log_id`); elsewhere, asked of the leader over the peer plane.
pub async fn confirm(raft: &Raft, net: &PeerNetwork, rpc_timeout: Duration) -> Result<u64, Status> {
    let m = raft.metrics().borrow().clone();
    if m.state.is_leader() {
        let (read, _applied) = raft
            .get_read_log_id()
            .await
            .map_err(errors::check_is_leader)?;
        return Ok(read.map(|l| l.index).unwrap_or(0));
    }
    let leader = m.current_leader.and_then(|id| {
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    });
    let (leader, info) =
        leader.ok_or_else(|| Status::unavailable("no leader is known right now; retry shortly"))?;
    let mut client = net.side_client(&info.peer_addr).map_err(Status::internal)?;
    let req = net.request(leader, Vec::new(), rpc_timeout);
    let reply = client.read_index(req).await.map_err(|s| {
        errors::unavailable_with_hint(
            format!(
                "leader {leader} did not confirm a read index: {}",
                s.message()
            ),
            Some(&info.client_addr),
        )
    })?;
    envelope::decode::<u64>(&reply.into_inner().payload)
}

/// Whether the leader may serve a bounded-staleness read of at most
/// `max_staleness`: a quorum acknowledged it within the bound (so no newer
/// leader can have committed anything it lacks for longer than that), and it
/// has applied everything it knows committed.
pub fn bounded_on_leader(
    quorum_ack_age: Option<Duration>,
    max_staleness: Duration,
    applied: u64,
    commit: u64,
) -> Result<(), String> {
    match quorum_ack_age {
        Some(age) if age <= max_staleness => {}
        Some(age) => {
            return Err(format!(
                "a quorum last acknowledged this leader {} ms ago, more than the allowed staleness of {} ms",
                age.as_millis(),
                max_staleness.as_millis()
            ));
        }
        None => {
            return Err(
                "no quorum has acknowledged this leader in its term yet (or it has not applied an entry of its term)"
                    .into(),
            );
        }
    }
    if applied < commit {
        return Err(format!(
            "applied index {applied} is behind the commit index {commit}"
        ));
    }
    Ok(())
}

/// Whether a follower or learner may serve a bounded-staleness read: it heard
/// from a leader within the bound and has applied what that leader had
/// committed then (freshness covers the index lag, not only the time).
pub fn bounded_on_follower(
    contact: Option<Contact>,
    applied: u64,
    now: Instant,
    max_staleness: Duration,
) -> Result<(), String> {
    let Some(c) = contact else {
        return Err("this node has not heard from a leader yet".into());
    };
    let age = now.saturating_duration_since(c.at);
    if age > max_staleness {
        return Err(format!(
            "last contact with leader {} was {} ms ago, more than the allowed staleness of {} ms",
            c.leader,
            age.as_millis(),
            max_staleness.as_millis()
        ));
    }
    if applied < c.leader_commit {
        return Err(format!(
            "applied index {} is behind the leader's commit index {} at last contact",
            applied, c.leader_commit
        ));
    }
    Ok(())
}

type Waiter = oneshot::Sender<Result<u64, Status>>;

#[derive(Default)]
pub struct ReadIndexBatcher {
    waiting: Mutex<Vec<Waiter>>,
    wake: Notify,
}

impl ReadIndexBatcher {
    /// A read index confirmed after this call started.
    pub async fn read_index(&self) -> Result<u64, Status> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().push(tx);
        self.wake.notify_one();
        rx.await
            .map_err(|_| Status::unavailable("this node is shutting down"))?
    }

    /// The one task that confirms read indexes, batch after batch, until `stop`.
    pub async fn run<F, Fut>(&self, fetch: F, timeout: Duration, stop: impl Future<Output = ()>)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, Status>>,
    {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = &mut stop => return,
            }
            loop {
                let batch = std::mem::take(&mut *self.waiting.lock());
                if batch.is_empty() {
                    break;
                }
                let result = match tokio::time::timeout(timeout, fetch()).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::unavailable(format!(
                        "leadership not confirmed within {timeout:?} (quorum unreachable?)"
                    ))),
                };
                for tx in batch {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::raft::contact::contact;

    #[test]
    fn bounded_read_needs_recent_contact_and_applied_commit() {
        let t0 = Instant::now();
        let max = Duration::from_millis(500);
        assert!(bounded_on_follower(None, 10, t0, max).is_err());
        let ms = Duration::from_millis;
        assert!(bounded_on_follower(Some(contact(t0, 10)), 10, t0 + ms(100), max).is_ok());
        let too_old = bounded_on_follower(Some(contact(t0, 10)), 10, t0 + ms(600), max);
        assert!(
            too_old
                .unwrap_err()
                .contains("more than the allowed staleness")
        );
        let behind = bounded_on_follower(Some(contact(t0, 11)), 10, t0, max);
        assert!(
            behind
                .unwrap_err()
                .contains("behind the leader's commit index")
        );
    }

    #[test]
    fn a_leader_without_a_recent_quorum_refuses_bounded_reads() {
        let ms = Duration::from_millis;
        assert!(bounded_on_leader(Some(ms(100)), ms(500), 7, 7).is_ok());
        assert!(bounded_on_leader(None, ms(500), 7, 7).is_err());
        let stale = bounded_on_leader(Some(ms(600)), ms(500), 7, 7).unwrap_err();
        assert!(stale.contains("more than the allowed staleness"), "{stale}");
        assert!(bounded_on_leader(Some(ms(1)), ms(500), 6, 7).is_err());
    }

    proptest! {
        /// Read admission against its definition, enumerated: a bounded read is
        /// admitted exactly when the evidence is no older than the bound and
        /// nothing known committed is missing; and admission is monotone (a
        /// looser bound or more applied never turns an admission into a refusal).
        #[test]
        fn bounded_admission_matches_its_definition(
            age_ms in prop::option::of(0u64..1000),
            max_ms in 0u64..1000,
            applied in 0u64..20,
            commit in 0u64..20,
        ) {
            let ms = Duration::from_millis;
            let t0 = Instant::now();
            let expect = age_ms.is_some_and(|a| a <= max_ms) && applied >= commit;
            let leader = bounded_on_leader(age_ms.map(ms), ms(max_ms), applied, commit);
            prop_assert_eq!(leader.is_ok(), expect);
            let c = age_ms.map(|_| contact(t0, commit));
            let now = t0 + ms(age_ms.unwrap_or(0));
            let follower = bounded_on_follower(c, applied, now, ms(max_ms));
            prop_assert_eq!(follower.is_ok(), expect);
            if expect {
                prop_assert!(bounded_on_leader(age_ms.map(ms), ms(max_ms + 1), applied + 1, commit).is_ok());
                prop_assert!(bounded_on_follower(c, applied + 1, now, ms(max_ms + 1)).is_ok());
            }
        }
    }

    #[tokio::test]
    async fn reads_arriving_during_a_confirmation_wait_for_the_next_one() {
        let b = Arc::new(ReadIndexBatcher::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let runner = {
            let (b, rounds, gate) = (b.clone(), rounds.clone(), gate.clone());
            tokio::spawn(async move {
                let fetch = || {
                    let (rounds, gate) = (rounds.clone(), gate.clone());
                    async move {
                        // The index a confirmation returns is its round number.
                        let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                        gate.acquire().await.unwrap().forget();
                        Ok(n)
                    }
                };
                b.run(fetch, Duration::from_secs(5), std::future::pending())
                    .await
            })
        };
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.read_index().await }
        });
        // Wait until round 1 is in flight, then queue more reads behind it.
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = (0..10)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.read_index().await })
            })
            .collect();
        while b.waiting.lock().len() < 10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        for r in later {
            assert_eq!(
                r.await.unwrap().unwrap(),
                2,
                "later reads share the next confirmation"
            );
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        runner.abort();
    }

    #[tokio::test]
    async fn a_confirmation_that_hangs_fails_its_batch() {
        let b = Arc::new(ReadIndexBatcher::default());
        let runner = {
            let b = b.clone();
            tokio::spawn(async move {
                let fetch = || std::future::pending::<Result<u64, Status>>();
                b.run(fetch, Duration::from_millis(50), std::future::pending())
                    .await
            })
        };
        let e = b.read_index().await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        runner.abort();
    }
}
