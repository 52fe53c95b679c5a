//! Coalesces concurrent ReadIndex requests: one leadership confirmation (a
//! quorum round on the leader, one RPC to the leader elsewhere) serves every
//! read that arrived before it started.
//!
//! Linearizability: a read joins the batch that is *taken* after it arrived,
//! and that batch's confirmation starts after the take, so every read gets a
//! read index confirmed after its own arrival. Reads that arrive while a
//! confirmation is in flight wait for the next one.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tonic::Status;

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

    use super::*;

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
