//! The Cluster administration service. Membership calls are executed by the
//! leader; other nodes forward them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use raftkv_proto::v1 as pb;
use raftkv_proto::v1::cluster_client::ClusterClient;
use raftkv_proto::v1::cluster_server::Cluster;
use tonic::{Request, Response, Status};

use crate::grpc::errors;
use crate::grpc::route;
use crate::membership;
use crate::node::{Node, matched_index};
use crate::typ::{RaftMetrics, StoredMembership};
use crate::{NodeId, NodeInfo};

pub struct ClusterService {
    node: Arc<Node>,
}

pub fn member(id: NodeId, n: &NodeInfo) -> pb::Member {
    pb::Member {
        node_id: id,
        client_addr: n.client_addr.clone(),
        peer_addr: n.peer_addr.clone(),
        name: n.name.clone(),
    }
}

pub fn membership_pb(sm: &StoredMembership) -> pb::Membership {
    let m = sm.membership();
    let voters: BTreeSet<NodeId> = m.voter_ids().collect();
    let node = |id: &NodeId| member(*id, m.get_node(id).unwrap_or(&NodeInfo::default()));
    pb::Membership {
        log_index: sm.log_id().map(|l| l.index).unwrap_or(0),
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::VoterConfig {
                voter_ids: c.iter().copied().collect(),
            })
            .collect(),
        voters: voters.iter().map(node).collect(),
        learners: m.learner_ids().map(|id| node(&id)).collect(),
        joint: m.get_joint_config().len() > 1,
    }
}

fn role(node: &Node, m: &RaftMetrics) -> pb::Role {
    use openraft::ServerState;
    if m.membership_config
        .membership()
        .voter_ids()
        .next()
        .is_none()
    {
        return pb::Role::Uninitialized;
    }
    match m.state {
        // Not confirmed by a quorum within an election timeout: trying to
        // lead, not leading (issue 17).
        ServerState::Leader if node.holds_lease(m) => pb::Role::Leader,
        ServerState::Leader => pb::Role::Candidate,
        ServerState::Candidate => pb::Role::Candidate,
        ServerState::Shutdown => pb::Role::Shutdown,
        ServerState::Learner if node.is_member(m) => pb::Role::Learner,
        ServerState::Learner => pb::Role::Uninitialized,
        ServerState::Follower => pb::Role::Follower,
    }
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> Self {
        ClusterService { node }
    }

    /// `Some(client)` for the leader when this node is not it (see `grpc::route`).
    fn route<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Option<ClusterClient<tonic::transport::Channel>>, Status> {
        Ok(route::route(&self.node, req)?.map(|leader| ClusterClient::new(leader.channel)))
    }

    fn membership_response(&self) -> pb::MembershipResponse {
        let m = self.node.metrics();
        pb::MembershipResponse {
            leader_id: m.current_leader.unwrap_or(0),
            membership: Some(membership_pb(&m.membership_config)),
        }
    }

    /// Invariant 3 (docs/design.md), node side: one change at a time; every new voter
    /// must be a caught-up learner or voter; the leader never removes itself.
    fn check_voter_change(
        &self,
        m: &RaftMetrics,
        new_voters: &BTreeSet<NodeId>,
    ) -> Result<(), Status> {
        let membership = m.membership_config.membership();
        let configs = membership.get_joint_config();
        // The one change allowed during a joint configuration is the one that
        // finishes it (a retry of a change whose caller went away).
        let finishing = configs.len() > 1 && configs.last() == Some(new_voters);
        if crate::raft::quorum::is_joint(configs) && !finishing {
            return Err(Status::failed_precondition(
                "a membership change is already in progress",
            ));
        }
        if new_voters.is_empty() {
            return Err(Status::invalid_argument("the voter set must not be empty"));
        }
        if !new_voters.contains(&self.node.id()) {
            return Err(Status::failed_precondition(format!(
                "the leader {} is not in the new voter set; transfer leadership first",
                self.node.id()
            )));
        }
        let last = m.last_log_index.unwrap_or(0);
        let lag_max = self.node.limits().caught_up_lag_max;
        let answer_max = Duration::from_millis(2 * self.node.limits().election_timeout_ms_max);
        let now = Instant::now();
        for id in new_voters {
            if membership.get_node(id).is_none() {
                return Err(Status::failed_precondition(format!(
                    "node {id} is not a member; add it as a learner first"
                )));
            }
            if *id == self.node.id() {
                continue;
            }
            let matched = matched_index(m, *id);
            if matched + lag_max < last {
                return Err(Status::failed_precondition(format!(
                    "node {id} is {} entries behind the leader (limit {lag_max}); wait until it catches up",
                    last - matched
                )));
            }
            // A learner's matched index stays high after it dies: promotion
            // also needs a recent answer (hole 5 of issue 11), so a dead
            // learner is never made a voter.
            let promoted = !membership.voter_ids().any(|v| v == *id);
            let answered = self
                .node
                .net()
                .lease()
                .last_answer(*id, m.current_term)
                .map(|at| now.saturating_duration_since(at));
            if promoted && answered.is_none_or(|age| age > answer_max) {
                return Err(Status::failed_precondition(match answered {
                    Some(age) => format!(
                        "node {id} last answered the leader {} ms ago (limit {} ms); it must be up to be promoted",
                        age.as_millis(),
                        answer_max.as_millis()
                    ),
                    None => format!(
                        "node {id} has not answered this leader yet; it must be up to be promoted (retry shortly if the leader just changed)"
                    ),
                }));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let node = &self.node;
        let m = node.metrics();
        let last = m.last_log_index.unwrap_or(0);
        let progress = match (&m.replication, m.state.is_leader()) {
            (Some(r), true) => r
                .iter()
                .map(|(id, l)| {
                    let matched = l.map(|l| l.index).unwrap_or(0);
                    pb::PeerProgress {
                        node_id: *id,
                        matched_index: matched,
                        lag: last.saturating_sub(matched),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let leader_contact_age_ms = if m.state.is_leader() {
            Some(0)
        } else {
            node.contact()
                .age(Instant::now())
                .map(|a| a.as_millis() as u64)
        };
        let applied = node.reader().applied();
        Ok(Response::new(pb::StatusResponse {
            node_id: node.id(),
            cluster_id: node.cluster_id(),
            role: role(node, &m) as i32,
            term: m.current_term,
            leader_id: node.known_leader(&m).unwrap_or(0),
            commit_index: node.commit_index(&m),
            applied_index: applied.index,
            last_log_index: last,
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            membership: Some(membership_pb(&m.membership_config)),
            progress,
            client_addr: node.config().advertise_client.clone(),
            peer_addr: node.config().advertise_peer.clone(),
            name: node.config().name.clone(),
            revision: applied.revision,
            leader_contact_age_ms,
            healthy: crate::health::is_healthy(node, &m),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn initialize(
        &self,
        request: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeResponse>, Status> {
        let node = &self.node;
        let req = request.into_inner();
        // Invariant 2 (docs/design.md): nobody bootstraps twice.
        if let Some(id) = node.identity().cluster_id() {
            return Err(Status::failed_precondition(format!(
                "this node already belongs to cluster {id}; refusing to initialize"
            )));
        }
        if node
            .raft()
            .is_initialized()
            .await
            .map_err(|e| errors::fatal(&e))?
        {
            return Err(Status::failed_precondition(
                "this node already has a membership; refusing to initialize",
            ));
        }
        let mut members = BTreeMap::new();
        for m in &req.members {
            if m.node_id == 0 || m.peer_addr.is_empty() || m.client_addr.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "member {m:?} needs a node_id, a client_addr and a peer_addr"
                )));
            }
            let info = NodeInfo {
                client_addr: m.client_addr.clone(),
                peer_addr: m.peer_addr.clone(),
                name: m.name.clone(),
            };
            if members.insert(m.node_id, info).is_some() {
                return Err(Status::invalid_argument(format!(
                    "node {} is listed twice",
                    m.node_id
                )));
            }
        }
        if !members.contains_key(&node.id()) {
            return Err(Status::invalid_argument(format!(
                "the members must include the node receiving Initialize ({})",
                node.id()
            )));
        }
        let cluster_id = crate::storage::new_cluster_id();
        node.identity()
            .set_cluster_id(&cluster_id)
            .map_err(|e| Status::internal(format!("cannot persist cluster ID: {e}")))?;
        node.raft()
            .initialize(members)
            .await
            .map_err(errors::initialize)?;
        tracing::info!(
            cluster_id,
            voters = req.members.len(),
            "cluster initialized"
        );
        let m = node.metrics();
        Ok(Response::new(pb::InitializeResponse {
            cluster_id,
            membership: Some(membership_pb(&m.membership_config)),
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let Some(member) = request.get_ref().member.clone() else {
            return Err(Status::invalid_argument("member is required"));
        };
        if member.node_id == 0 || member.peer_addr.is_empty() || member.client_addr.is_empty() {
            return Err(Status::invalid_argument(
                "the learner needs a node_id, a client_addr and a peer_addr",
            ));
        }
        if let Some(mut leader) = self.route(&request)? {
            return leader.add_learner(to_leader(request.into_inner())).await;
        }
        let m = self.node.metrics();
        let membership = m.membership_config.membership();
        let info = NodeInfo {
            client_addr: member.client_addr,
            peer_addr: member.peer_addr,
            name: member.name,
        };
        if membership.voter_ids().any(|v| v == member.node_id) {
            return Err(Status::already_exists(format!(
                "node {} is already a voter",
                member.node_id
            )));
        }
        if membership.get_node(&member.node_id) == Some(&info) {
            return Ok(Response::new(self.membership_response()));
        }
        self.node
            .links()
            .membership_change(
                "add_learner",
                self.node.raft().add_learner(member.node_id, info, false),
            )
            .await
            .map_err(errors::client_write)?;
        Ok(Response::new(self.membership_response()))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        if let Some(mut leader) = self.route(&request)? {
            return leader
                .change_membership(to_leader(request.into_inner()))
                .await;
        }
        let req = request.into_inner();
        let new_voters: BTreeSet<NodeId> = req.voter_ids.iter().copied().collect();
        let m = self.node.metrics();
        // The change was computed from a membership; refuse it if that one is
        // gone (hole 5 of issue 11: a paused operator or an old raftctl).
        let current = m.membership_config.log_id().map_or(0, |l| l.index);
        if let Some(expected) = req.expected_membership_index
            && expected != current
        {
            return Err(Status::failed_precondition(format!(
                "the membership changed since the caller read it (expected log index {expected}, now {current}); read it again and recompute the change"
            )));
        }
        self.check_voter_change(&m, &new_voters)?;
        tracing::info!(voters = ?new_voters, retain = req.retain, "changing membership (joint consensus)");
        membership::change(&self.node, "change_voters", new_voters.into(), req.retain)
            .await
            .map_err(errors::client_write)?;
        Ok(Response::new(self.membership_response()))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        if let Some(mut leader) = self.route(&request)? {
            return leader.remove_member(to_leader(request.into_inner())).await;
        }
        let id = request.into_inner().node_id;
        let m = self.node.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(Status::not_found(format!("node {id} is not a member")));
        }
        if id == self.node.id() {
            return Err(Status::failed_precondition(format!(
                "node {id} is the leader; transfer leadership before removing it"
            )));
        }
        if membership.voter_ids().any(|v| v == id) {
            let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != id).collect();
            self.check_voter_change(&m, &voters)?;
            membership::change(&self.node, "remove_voter", voters.into(), false)
                .await
                .map_err(errors::client_write)?;
        } else {
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            membership::change(&self.node, "remove_learner", change, false)
                .await
                .map_err(errors::client_write)?;
        }
        Ok(Response::new(self.membership_response()))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        if let Some(mut leader) = self.route(&request)? {
            return leader
                .transfer_leader(to_leader(request.into_inner()))
                .await;
        }
        let target = request.into_inner().target_node_id;
        let (previous, new, term) = crate::raft::transfer::hand_off(&self.node, target).await?;
        Ok(Response::new(pb::TransferLeaderResponse {
            previous_leader_id: previous,
            new_leader_id: new,
            term,
        }))
    }

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let node = &self.node;
        let applied = node.metrics().last_applied.map(|l| l.index).unwrap_or(0);
        node.raft()
            .trigger()
            .snapshot()
            .await
            .map_err(|e| errors::fatal(&e))?;
        let mut metrics = node.raft().metrics();
        let wait = metrics.wait_for(|m| m.snapshot.map(|l| l.index).unwrap_or(0) >= applied);
        let max = node.limits().snapshot_wait_max;
        let snap = match tokio::time::timeout(max, wait).await {
            Ok(Ok(m)) => m.snapshot.map(|l| l.index).unwrap_or(0),
            _ => {
                return Err(Status::deadline_exceeded(format!(
                    "snapshot did not complete within {max:?}"
                )));
            }
        };
        Ok(Response::new(pb::SnapshotResponse {
            node_id: node.id(),
            snapshot_index: snap,
        }))
    }

    type BackupStream = crate::backup::ChunkStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        if let Some(mut leader) = self.route(&request)? {
            let chunks = leader.backup(to_leader(request.into_inner())).await?;
            return Ok(Response::new(Box::pin(chunks.into_inner())));
        }
        Ok(Response::new(crate::backup::stream(&self.node).await?))
    }

    async fn force_new_cluster(
        &self,
        request: Request<pb::ForceNewClusterRequest>,
    ) -> Result<Response<pb::ForceNewClusterResponse>, Status> {
        // Never forwarded: it is about the receiving node's own data.
        let resp = crate::force_new_cluster::accept(&self.node, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn restore(
        &self,
        request: Request<tonic::Streaming<pb::BackupChunk>>,
    ) -> Result<Response<pb::RestoreResponse>, Status> {
        // Never forwarded: it turns the receiving node into a new cluster.
        let resp = crate::bootstrap_restore::accept(&self.node, request.into_inner()).await?;
        Ok(Response::new(resp))
    }
}

/// A forwarded admin call, carrying the caller's trace context.
fn to_leader<T>(inner: T) -> Request<T> {
    let mut r = route::forwarded(inner);
    crate::observability::propagation::inject(r.metadata_mut());
    r
}
