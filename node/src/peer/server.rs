//! The inbound side of the peer protocol: every message is checked against
//! the envelope rules before openraft sees it.

use std::sync::Arc;
use std::time::Instant;

use raftkv_proto::v1::raft_peer_server::RaftPeer;
use raftkv_proto::v1::{RaftReply, RaftRequest};
use tonic::{Request, Response, Status};

use crate::NodeId;
use crate::node::Node;
use crate::observability::{metrics, semconv};
use crate::peer::envelope;
use crate::raft::contact::{Contact, HoldKind};
use crate::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};

pub struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    pub fn new(node: Arc<Node>) -> Self {
        PeerService { node }
    }

    fn open(&self, req: &RaftRequest) -> Result<(), Status> {
        envelope::check(
            self.node.identity(),
            &req.cluster_id,
            req.target_node_id,
            req.from_node_id,
        )
        .map_err(|e| {
            tracing::warn!(from = req.from_node_id, "refused peer message: {e}");
            Status::from(e)
        })
    }
}

impl PeerService {
    /// A valid message from the current leader, dated when it arrived.
    fn contact(&self, at: Instant, leader: NodeId, term: u64, leader_commit: u64) {
        record_contact(&self.node, at, leader, term, leader_commit);
    }
}

fn record_contact(node: &Node, at: Instant, leader: NodeId, term: u64, leader_commit: u64) {
    node.contact().record(Contact {
        at,
        leader,
        term,
        leader_commit,
    });
}

fn reply(payload: Vec<u8>) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply {
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        // Contact is dated when the message arrived, not after our own fsync.
        let arrived = Instant::now();
        let req = request.into_inner();
        self.open(&req)?;
        let rpc: AppendEntriesRequest = envelope::decode(&req.payload)?;
        let (leader, term) = (rpc.vote.leader_id().node_id, rpc.vote.leader_id().term);
        let leader_commit = rpc.leader_commit.map(|l| l.index).unwrap_or(0);
        if req.seq != 0 {
            self.node.contact().arrived(leader, term, req.seq, arrived);
        }
        // The SERVER span comes from observability::server_layer; entries of a
        // traced write get a log-append span and are remembered for apply.
        let span = tracing::Span::current();
        span.record("raft.node_id", self.node.id());
        span.record("raft.term", term);
        span.record("raft.entries", rpc.entries.len());
        span.record("raft.bytes", req.payload.len());
        let append = rpc.entries.first().map(|first| {
            span.record("raft.index", first.log_id.index);
            self.node
                .links()
                .remember_indexes(&span, rpc.entries.iter().map(|e| e.log_id.index));
            tracing::debug_span!(
                semconv::SPAN_LOG_APPEND,
                raft.index = first.log_id.index,
                raft.entries = rpc.entries.len()
            )
        });
        // Until answered, the leader waits for this node (its fsync), not
        // the other way round: the election clock stands still. The work runs
        // in a task of its own so that the hold lasts as long as this node's
        // disk does, even when the leader gives up on the call (its deadline
        // adapts: `peer::rto`) and tonic drops this handler.
        let node = self.node.clone();
        let confirmed_seq = req.confirmed_seq;
        let work = async move {
            let hold = node.contact().hold(HoldKind::AppendEntries);
            let res = match append {
                Some(s) => {
                    tracing::Instrument::instrument(node.raft().append_entries(rpc), s).await
                }
                None => node.raft().append_entries(rpc).await,
            };
            if let Ok(r) = &res
                && !matches!(r, AppendEntriesResponse::HigherVote(_))
            {
                record_contact(&node, arrived, leader, term, leader_commit);
                if confirmed_seq != 0 {
                    node.contact()
                        .confirm(leader, term, confirmed_seq, leader_commit);
                }
                hold.answered(Instant::now());
            }
            res
        };
        let res = tokio::spawn(tracing::Instrument::in_current_span(work))
            .await
            .map_err(|e| Status::internal(format!("append task: {e}")))?;
        reply(envelope::encode(&res)?)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.open(&req)?;
        let rpc: VoteRequest = envelope::decode(&req.payload)?;
        let span = tracing::Span::current();
        span.record("raft.node_id", self.node.id());
        span.record("raft.term", rpc.vote.leader_id().term);
        // Persisting the vote can take a slow disk's fsync: meanwhile this
        // node neither campaigns nor grants pre-votes to others (in a task of
        // its own, like an AppendEntries, so a caller giving up ends nothing).
        let node = self.node.clone();
        let work = async move {
            let _hold = node.contact().hold(HoldKind::Vote);
            let res = node.raft().vote(rpc).await;
            if let Ok(r) = &res
                && r.vote_granted
            {
                node.contact().voted(Instant::now());
            }
            res
        };
        let res = tokio::spawn(tracing::Instrument::in_current_span(work))
            .await
            .map_err(|e| Status::internal(format!("vote task: {e}")))?;
        reply(envelope::encode(&res)?)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let arrived = Instant::now();
        let req = request.into_inner();
        self.open(&req)?;
        let rpc: InstallSnapshotRequest = envelope::decode(&req.payload)?;
        let (leader, term) = (rpc.vote.leader_id().node_id, rpc.vote.leader_id().term);
        let sent_vote = rpc.vote;
        let snapshot_index = rpc.meta.last_log_id.map_or(0, |l| l.index);
        let span = tracing::Span::current();
        span.record("raft.node_id", self.node.id());
        span.record("raft.term", rpc.vote.leader_id().term);
        span.record("raft.bytes", req.payload.len());
        let done = rpc.done;
        let res = if done {
            // The last chunk installs the snapshot.
            let install = tracing::debug_span!(
                semconv::SPAN_SNAPSHOT_INSTALL,
                raft.index = rpc.meta.last_log_id.map_or(0, |l| l.index),
                raft.bytes = rpc.offset + rpc.data.len() as u64
            );
            let res =
                tracing::Instrument::instrument(self.node.raft().install_snapshot(rpc), install)
                    .await;
            if res.is_ok() {
                metrics::node().snapshots_installed.inc();
            }
            res
        } else {
            self.node.raft().install_snapshot(rpc).await
        };
        // A snapshot chunk from the current leader is leader contact too (a
        // follower catching up by snapshot must not campaign meanwhile).
        if let Ok(r) = &res
            && r.vote <= sent_vote
        {
            self.contact(arrived, leader, term, snapshot_index);
        }
        reply(envelope::encode(&res)?)
    }

    async fn read_index(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.open(&req)?;
        if !self.node.metrics().state.is_leader() {
            return Err(Status::unavailable("not the leader"));
        }
        let index = self.node.read_index().await?;
        reply(envelope::encode(&index)?)
    }

    /// Leader transfer, target side: campaign until a leader other than the
    /// old one (ideally this node) is in place, or the attempt times out.
    async fn timeout_now(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.open(&req)?;
        let old_term: u64 = envelope::decode(&req.payload)?;
        let m = self.node.metrics();
        if !self.node.is_voter(&m) {
            return Err(Status::failed_precondition("this node is not a voter"));
        }
        // Only the leader this node follows, at the term it leads, may hand
        // leadership over (hole 2 of issue 11: anyone could make it campaign).
        if m.current_leader != Some(req.from_node_id) || m.current_term != old_term {
            return Err(Status::failed_precondition(format!(
                "TimeoutNow refused: node {} is not this node's leader at term {old_term} (leader {:?}, term {})",
                req.from_node_id, m.current_leader, m.current_term
            )));
        }
        // Answer at once; the campaign runs on its own.
        tokio::spawn(crate::raft::transfer::campaign(
            self.node.clone(),
            old_term,
            req.from_node_id,
        ));
        reply(Vec::new())
    }

    async fn pre_vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.open(&req)?;
        let pre: crate::raft::prevote::PreVoteRequest = envelope::decode(&req.payload)?;
        let granted = crate::raft::election::grant(&self.node, &pre).await;
        tracing::debug!(from = req.from_node_id, granted, "pre-vote");
        reply(envelope::encode(&granted)?)
    }
}
