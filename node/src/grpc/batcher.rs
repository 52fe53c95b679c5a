//! Leader group commit: writes that arrive while proposals are in flight are
//! carried by one log entry ([`Command::Batch`]).
//!
//! openraft 0.9 appends a client write to the leader's log and waits for that
//! append's fsync before it takes the next one (`RaftCore::append_to_log`), so
//! the log writer's own group commit never sees two leader appends at once:
//! one fsync per write on the leader (followers already get entries in
//! batches). Here at most `proposals_in_flight_max` proposals run at once;
//! writes that arrive meanwhile queue, and the next proposal takes all of them
//! (up to `propose_batch_writes_max` writes and `propose_batch_bytes_max`
//! bytes) as one entry. Each write still gets its own result, in the batch's
//! order, once the entry is committed and applied: acknowledged still means
//! fsynced on a quorum. A write that arrives when a proposal slot is free is
//! proposed at once, alone, so an idle cluster adds no latency.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::Status;

use crate::grpc::errors;
use crate::kv::{Command, CommandResult};
use crate::node::Node;
use crate::observability::links::Proposal;

/// One write waiting for a proposal.
struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Result<CommandResult, Status>>,
}

/// Bounds of one batch (from `config::Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub writes_max: usize,
    pub bytes_max: usize,
}

/// Takes the next batch from the front of `queue`: at least one item, then
/// more while the count and byte bounds hold. Order is kept, within the batch
/// and between batches.
pub fn take_batch<T>(
    queue: &mut VecDeque<T>,
    limits: BatchLimits,
    bytes: impl Fn(&T) -> usize,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(next) = queue.front() {
        let size = bytes(next);
        if !out.is_empty()
            && (out.len() == limits.writes_max || total.saturating_add(size) > limits.bytes_max)
        {
            break;
        }
        total = total.saturating_add(size);
        out.push(queue.pop_front().expect("front exists"));
    }
    out
}

/// Hands writes to the proposing task. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts the proposing task (inside a Tokio runtime). It ends when every
    /// `Batcher` is dropped.
    pub fn start(node: Arc<Node>) -> Batcher {
        let l = node.limits();
        let limits = BatchLimits {
            writes_max: l.propose_batch_writes_max,
            bytes_max: l.propose_batch_bytes_max,
        };
        let in_flight = l.proposals_in_flight_max;
        // Room for a full batch per proposal slot, and one being formed:
        // beyond it a write waits to be queued (backpressure, no unbounded queue).
        let (tx, rx) = mpsc::channel(limits.writes_max * (in_flight + 1));
        tokio::spawn(run(node, rx, limits, in_flight));
        Batcher { tx }
    }

    /// Proposes `cmd` (in a batch with whatever else is waiting) and returns
    /// its own result once its entry is applied.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { cmd, reply })
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("the node is shutting down"))?
    }
}

async fn run(
    node: Arc<Node>,
    mut rx: mpsc::Receiver<Pending>,
    limits: BatchLimits,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut queue: VecDeque<Pending> = VecDeque::with_capacity(limits.writes_max);
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        // While every slot is taken, writes pile up in the channel: that
        // wait is what forms a batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        while queue.len() < limits.writes_max {
            match rx.try_recv() {
                Ok(p) => queue.push_back(p),
                Err(_) => break,
            }
        }
        // A caller that gave up (deadline passed, connection gone) while its
        // write waited here was told nothing definite: not proposing it is
        // one of the outcomes it must already allow, and spares a stalled
        // leader a backlog of writes nobody waits for.
        queue.retain(|p| !p.reply.is_closed());
        if queue.is_empty() {
            continue;
        }
        let batch = take_batch(&mut queue, limits, |p| p.cmd.payload_bytes());
        let node = node.clone();
        tokio::spawn(async move {
            propose(&node, batch).await;
            drop(slot);
        });
    }
}

/// Proposes one batch and answers each of its writes.
async fn propose(node: &Node, mut batch: Vec<Pending>) {
    let (cmds, replies): (Vec<Command>, Vec<_>) = if batch.len() == 1 {
        let p = batch.pop().expect("one");
        (vec![p.cmd], vec![p.reply])
    } else {
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip()
    };
    let cmd = if cmds.len() == 1 {
        cmds.into_iter().next().expect("one")
    } else {
        Command::Batch(cmds)
    };
    let count = replies.len();
    let proposal = Proposal::start(node.links(), &cmd);
    let resp = node.raft().client_write(cmd).await;
    proposal.finish(
        resp.as_ref()
            .ok()
            .map(|r| (r.log_id.leader_id.term, r.log_id.index)),
    );
    let results: Vec<Result<CommandResult, Status>> = match resp {
        Err(e) => {
            let status = errors::client_write(e);
            vec![Err(status); count]
        }
        Ok(r) => match r.data {
            CommandResult::Batch(results) if count > 1 && results.len() == count => {
                results.into_iter().map(Ok).collect()
            }
            other if count == 1 => vec![Ok(other)],
            other => vec![
                Err(Status::internal(format!(
                    "a batch of {count} writes was answered with {other:?}"
                )));
                count
            ],
        },
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have gone (its deadline passed): nothing to do.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Batches cut the queue into consecutive pieces (nothing lost,
        /// duplicated or reordered), each within the bounds unless it is a
        /// single write larger than the byte bound, and never empty.
        #[test]
        fn batches_keep_order_and_bounds(
            sizes in prop::collection::vec(0usize..300, 0..60),
            writes_max in 1usize..8,
            bytes_max in 1usize..600,
        ) {
            let limits = BatchLimits { writes_max, bytes_max };
            let mut queue: VecDeque<(usize, usize)> = sizes.iter().copied().enumerate().collect();
            let mut seen = Vec::new();
            while !queue.is_empty() {
                let before = queue.len();
                let b = take_batch(&mut queue, limits, |(_, s)| *s);
                prop_assert!(!b.is_empty());
                prop_assert_eq!(before - queue.len(), b.len());
                prop_assert!(b.len() <= writes_max);
                let total: usize = b.iter().map(|(_, s)| *s).sum();
                prop_assert!(b.len() == 1 || total <= bytes_max, "{:?} over {}", b, bytes_max);
                // Greedy: the next write would not have fit.
                if let Some((_, next)) = queue.front() {
                    prop_assert!(b.len() == writes_max || total + next > bytes_max);
                }
                seen.extend(b.into_iter().map(|(i, _)| i));
            }
            prop_assert_eq!(seen, (0..sizes.len()).collect::<Vec<_>>());
        }
    }
}
