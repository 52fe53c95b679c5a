//! Elections with a pre-vote (Raft thesis §9.6), driven by this node instead
//! of openraft's own election timer (which is turned off: `enable_elect =
//! false`; openraft 0.9 has no pre-vote).
//!
//! Without a pre-vote, a follower that cannot hear the leader — a restarted
//! pod whose DNS name other nodes cannot resolve yet, a one-way partition —
//! campaigns, raises its term, and when connectivity returns its higher term
//! makes the healthy leader step down: a spurious election on every rolling
//! restart. Here a voter that has not heard from a leader for a randomized
//! election timeout first asks the other voters whether they would vote for
//! it; it campaigns (through openraft, `trigger().elect()`) only when a
//! majority of every active configuration says yes. Refusing a pre-vote never
//! affects safety, only when an election may start.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::storage::RaftLogStorage;
use rand::Rng;

use crate::NodeId;
use crate::node::Node;
use crate::peer::envelope;
use crate::raft::contact::HoldKind;
use crate::raft::prevote::{self, PreVoteRequest, VoterState};
use crate::typ::{LogId, RaftMetrics};

/// Receiver side of a pre-vote: this node's state, then the pure rule.
pub async fn grant(node: &Node, req: &PreVoteRequest) -> bool {
    let state = VoterState {
        is_leader: node.metrics().state.is_leader(),
        transfer_campaign: node.in_transfer_campaign(),
        quiet_for: node.quiet_for(Instant::now()),
        lease: Duration::from_millis(node.limits().election_timeout_ms_max),
        since_start: node.started().elapsed(),
    };
    prevote::grant(&state, last_log_id(node).await, req)
}

/// The last log id in this node's log (`None` inside: an empty log; outer
/// `None`: the log could not be read).
async fn last_log_id(node: &Node) -> Option<Option<LogId>> {
    let mut log = node.log();
    log.get_log_state().await.ok().map(|s| s.last_log_id)
}

/// Runs until `stop`: wait for a randomized election timeout without leader
/// contact, pre-vote, campaign on a majority.
pub async fn run(node: Arc<Node>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let started = Instant::now();
    let limits = node.limits().clone();
    let retry_after_refusal = Duration::from_millis(limits.heartbeat_interval_ms);
    let mut timeout = random_timeout(
        limits.election_timeout_ms_min,
        limits.election_timeout_ms_max,
    );
    // The term this node last saw and since when: a new term (this node's
    // own candidacy, openraft's at Initialize included, or anyone's) restarts
    // the election clock, as in Raft; on a slow disk a campaign takes longer
    // than the election timeout, and a node that campaigned again meanwhile
    // cancelled its own election (issue 11, hole 7).
    let mut term_seen = (node.with_metrics(|m| m.current_term), started);
    // Where in the slow-disk allowance this node's timeout falls (see
    // `effective_timeout`), drawn with each random timeout.
    let mut spread: f64 = rand::rng().random_range(0.0..=1.0);
    loop {
        let now = Instant::now();
        let term = node.with_metrics(|m| m.current_term);
        if term != term_seen.0 {
            term_seen = (term, now);
        }
        // The election clock (`LeaderContact::quiet_for`): leader contact or a
        // granted vote restart it, and it stands still while this node's own
        // disk holds a leader's or a candidate's message.
        let since_start = now.saturating_duration_since(started);
        let since_term = now.saturating_duration_since(term_seen.1);
        let quiet = node
            .quiet_for(now)
            .map_or(since_start, |q| q.min(since_start))
            .min(since_term);
        let effective = effective_timeout(timeout, node.contact().vote_time(), spread);
        let wait = if quiet >= effective {
            Duration::ZERO
        } else {
            effective - quiet
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => return,
            }
            continue;
        }
        let m = node.metrics();
        if m.state.is_leader() || !node.is_voter(&m) || node.is_transferring() {
            // Nothing to do; look again after a timeout.
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = &mut stop => return,
            }
            continue;
        }
        let heard_before = node.contact().last().map(|c| c.at);
        let round_started = Instant::now();
        if pre_vote(&node, &m).await {
            // Re-check right before campaigning: a leader heard from during the
            // round, or a new term meanwhile, makes the campaign needless.
            let now = node.metrics();
            let heard_since = node.contact().last().map(|c| c.at) != heard_before;
            // A vote granted during the round: another candidate that won its
            // pre-vote too is campaigning; competing would only split the
            // vote and cost a term (seen by the guide's election experiment:
            // the metrics' term lags the granted vote by a few ms).
            let voted_since = node
                .contact()
                .voted_at()
                .is_some_and(|t| t >= round_started);
            // (Not `current_leader`: a follower keeps naming a dead leader
            // until a new term starts.)
            if heard_since
                || voted_since
                || now.current_term != m.current_term
                || now.state.is_leader()
            {
                tracing::info!(
                    term = now.current_term,
                    "pre-vote won, but a leader appeared; not campaigning"
                );
                continue;
            }
            tracing::info!(term = m.current_term, "pre-vote won, campaigning");
            let campaign = Instant::now();
            // Campaigning is voting for itself: until that vote is persisted
            // this node grants no pre-vote (competing candidates on slow disks
            // otherwise kept splitting the vote).
            let hold = node.contact().hold(HoldKind::Vote);
            let _ = node.raft().trigger().elect().await;
            // openraft sends the vote requests once this node's own vote is
            // fsynced; the election timeout counts from then, or a slow disk
            // makes every campaign end before its votes could come back.
            let persisted =
                own_vote_persisted(&node, m.current_term, limits.peer_rpc_timeout).await;
            hold.answered(Instant::now());
            let took = campaign.elapsed();
            if let Some(why) = slow_vote_warning(
                took,
                persisted,
                Duration::from_millis(limits.election_timeout_ms_min),
            ) {
                tracing::warn!(term = m.current_term + 1, "{why}");
            }
            timeout = random_timeout(
                limits.election_timeout_ms_min,
                limits.election_timeout_ms_max,
            );
            spread = rand::rng().random_range(0.0..=1.0);
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = &mut stop => return,
            }
        } else {
            // A refused pre-vote costs nothing; ask again soon (the voters'
            // leases on a dead leader run out at slightly different times).
            tokio::select! {
                _ = tokio::time::sleep(retry_after_refusal) => {}
                _ = &mut stop => return,
            }
        }
    }
}

/// Waits (at most `bound`) until the metrics show a term above `term`, or this
/// node leading (openraft ignores the campaign of a leader whose metrics had
/// not said so yet): openraft publishes metrics after the commands of a round
/// ran, so after the campaign's own vote was saved. False if neither happened
/// within `bound`.
async fn own_vote_persisted(node: &Node, term: u64, bound: Duration) -> bool {
    let mut rx = node.raft().metrics();
    let moved = rx.wait_for(|m| m.current_term > term || m.state.is_leader());
    matches!(tokio::time::timeout(bound, moved).await, Ok(Ok(_)))
}

/// What this node says when persisting its own vote outlasted the election
/// timeout (issue 11, hole 7: every voter's answer costs the same fsync, so
/// elections take that much longer; before the fix they never ended).
pub fn slow_vote_warning(
    took: Duration,
    persisted: bool,
    election_timeout_min: Duration,
) -> Option<String> {
    if persisted && took <= election_timeout_min {
        return None;
    }
    let what = if persisted {
        format!("took {} ms", took.as_millis())
    } else {
        format!("did not finish within {} ms", took.as_millis())
    };
    Some(format!(
        "persisting this node's vote {what}, more than the election timeout min ({} ms): \
         the disk is slower than the Raft timings, and every voter's answer waits for the \
         same fsync, so elections take that much longer (storage::slow_disk says more)",
        election_timeout_min.as_millis()
    ))
}

/// The election timeout on a disk that takes `vote` to persist a vote
/// (`LeaderContact::vote_time`: this node's last own or granted vote), for a
/// configured random `timeout` and a random `spread` in 0..=1. Raft needs its
/// election timeouts well above the time an election takes, and spread wider
/// than it, or candidates keep splitting the vote: an election costs the
/// candidate's fsync and then a voter's, about `2 * vote`, and a new leader's
/// first act is to persist its vote again, holding its heartbeats meanwhile.
/// So the timeout moves up by `2 * vote` and spreads over `2 * vote` more. On
/// a healthy disk (`vote` a few ms) this is the configured timeout.
pub fn effective_timeout(timeout: Duration, vote: Duration, spread: f64) -> Duration {
    timeout + vote * 2 + vote.mul_f64(2.0 * spread.clamp(0.0, 1.0))
}

fn random_timeout(min_ms: u64, max_ms: u64) -> Duration {
    Duration::from_millis(rand::rng().random_range(min_ms..=max_ms))
}

/// Ask every other voter; true as soon as the granted voters (with this node)
/// form a majority of every active configuration. Each ask is bounded here, on
/// the client side: a request's `grpc-timeout` is only a hint to the server, and
/// a peer behind a partition that drops packets would otherwise hold the round
/// for the whole connect timeout (seen by the fault suite as seconds-long
/// elections under partitions).
async fn pre_vote(node: &Arc<Node>, m: &RaftMetrics) -> bool {
    let membership = m.membership_config.membership();
    let Some(last_log_id) = last_log_id(node).await else {
        return false;
    };
    let req = PreVoteRequest { last_log_id };
    let Ok(payload) = envelope::encode(&req) else {
        return false;
    };
    let timeout = Duration::from_millis(node.limits().election_timeout_ms_min);
    let me = node.id();
    let configs = membership.get_joint_config();
    let mut asks: FuturesUnordered<_> = membership
        .voter_ids()
        .filter(|v| *v != me)
        .map(|id| {
            let peer = membership
                .get_node(&id)
                .map(|n| n.peer_addr.clone())
                .unwrap_or_default();
            let payload = payload.clone();
            let ask = async move {
                let mut client = node.net().side_client(&peer).ok()?;
                let reply = client
                    .pre_vote(node.net().request(id, payload, timeout))
                    .await
                    .ok()?;
                envelope::decode::<bool>(&reply.into_inner().payload)
                    .ok()?
                    .then_some(id)
            };
            async move { tokio::time::timeout(timeout, ask).await.ok().flatten() }
        })
        .collect();
    let mut granted: BTreeSet<NodeId> = BTreeSet::new();
    if prevote::won(configs, me, &granted) {
        return true; // a single-voter configuration
    }
    while let Some(answer) = asks.next().await {
        if let Some(id) = answer {
            granted.insert(id);
            if prevote::won(configs, me, &granted) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_election_timeout_grows_and_widens_with_the_vote_time() {
        let ms = Duration::from_millis;
        // Healthy disk: the configured timeout, give or take the vote's ms.
        assert_eq!(effective_timeout(ms(300), ms(0), 0.5), ms(300));
        assert_eq!(effective_timeout(ms(300), ms(2), 1.0), ms(308));
        // 400 ms fsyncs: an election takes ~800 ms; the timeouts of a
        // 200-400 ms range now span 1000-2000 ms, wider than an election.
        assert_eq!(effective_timeout(ms(200), ms(400), 0.0), ms(1000));
        assert_eq!(effective_timeout(ms(400), ms(400), 1.0), ms(2000));
    }

    #[test]
    fn a_slow_vote_is_named_with_the_timing_it_outlasted() {
        let ms = Duration::from_millis;
        assert_eq!(slow_vote_warning(ms(3), true, ms(200)), None);
        let w = slow_vote_warning(ms(420), true, ms(200)).unwrap();
        assert!(w.contains("took 420 ms") && w.contains("(200 ms)"), "{w}");
        let w = slow_vote_warning(ms(2000), false, ms(200)).unwrap();
        assert!(w.contains("did not finish within 2000 ms"), "{w}");
    }
}
