//! gRPC `Cluster` client for raft-node, with short timeouts, and the conversion of
//! its replies into the planner's types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use raftkv_client::channel::ChannelSettings;
use raftkv_proto::v1 as pb;
use raftkv_proto::v1::cluster_client::ClusterClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::planner::{MemberInfo, MembershipView, NewMember, NodeId, NodeStatus, Role};
use crate::{Error, Result};

/// Bounds of node RPCs.
pub mod limits {
    use std::time::Duration;
    /// Connecting to a pod: a pod that cannot accept a TCP connection this fast is
    /// treated as unreachable for this reconcile.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
    /// `Status` is local on the node and must answer quickly.
    pub const STATUS_TIMEOUT: Duration = Duration::from_millis(2000);
    /// Membership RPCs wait for a commit (and AddLearner for the learner to be added).
    pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);
}

/// A pod's client listener as the operator reaches it.
#[derive(Clone)]
pub struct Target {
    /// `host:port` dialed (the pod's DNS name or IP).
    pub addr: String,
    /// TLS with the operator's admin certificate, and the name the pod's
    /// certificate is verified for (`None`: plaintext).
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl Target {
    pub fn plaintext(addr: impl Into<String>) -> Target {
        Target {
            addr: addr.into(),
            tls: None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            Some((_, name)) => write!(f, "{} (TLS, certificate name {name})", self.addr),
            None => f.write_str(&self.addr),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Every request carries the reconcile's W3C `traceparent`.
type Client = ClusterClient<InterceptedService<Channel, Interceptor>>;
type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

async fn connect(target: &Target, timeout: Duration) -> Result<Client> {
    let channel = ChannelSettings::new(limits::CONNECT_TIMEOUT)
        .with_request_timeout(timeout)
        .with_tls(target.tls.as_ref().map(|(c, _)| c.clone()))
        .with_tls_server_name(target.tls.as_ref().map(|(_, n)| n.clone()))
        .connect(&target.addr)
        .await
        .map_err(|e| Error::NodeConnect {
            target: target.to_string(),
            message: e.to_string(),
        })?;
    let interceptor: Interceptor = crate::telemetry::interceptor;
    Ok(ClusterClient::with_interceptor(channel, interceptor))
}

fn rpc_err(addr: &Target) -> impl Fn(tonic::Status) -> Error + '_ {
    move |status| Error::NodeRpc {
        target: addr.addr.clone(),
        status: Box::new(status),
    }
}

/// `Status` of the node at `addr` (host:port).
pub async fn status(addr: &Target) -> Result<NodeStatus> {
    let mut c = connect(addr, limits::STATUS_TIMEOUT).await?;
    let reply = c
        .status(pb::StatusRequest {})
        .await
        .map_err(rpc_err(addr))?
        .into_inner();
    Ok(node_status(reply))
}

pub fn node_status(r: pb::StatusResponse) -> NodeStatus {
    let role = match pb::Role::try_from(r.role).unwrap_or(pb::Role::Unspecified) {
        pb::Role::Uninitialized => Role::Uninitialized,
        pb::Role::Leader => Role::Leader,
        pb::Role::Follower => Role::Follower,
        pb::Role::Candidate => Role::Candidate,
        pb::Role::Learner => Role::Learner,
        pb::Role::Shutdown => Role::Shutdown,
        pb::Role::Unspecified => Role::Unknown,
    };
    NodeStatus {
        node_id: r.node_id,
        cluster_id: r.cluster_id,
        role,
        term: r.term,
        leader_id: (r.leader_id != 0).then_some(r.leader_id),
        commit_index: r.commit_index,
        applied_index: r.applied_index,
        membership: r.membership.map(membership),
        progress: r.progress.iter().map(|p| (p.node_id, p.lag)).collect(),
        healthy: r.healthy,
    }
}

fn membership(m: pb::Membership) -> MembershipView {
    let info = |m: &pb::Member| MemberInfo {
        node_id: m.node_id,
        name: m.name.clone(),
    };
    MembershipView {
        log_index: m.log_index,
        configs: m.configs.iter().map(|c| c.voter_ids.clone()).collect(),
        voters: m.voters.iter().map(info).collect(),
        learners: m.learners.iter().map(info).collect(),
        joint: m.joint,
    }
}

/// The membership record of a pod: addresses are its stable DNS name.
pub fn member(m: &NewMember, dns: &str, client_port: i32, peer_port: i32) -> pb::Member {
    pb::Member {
        node_id: m.node_id,
        client_addr: format!("{dns}:{client_port}"),
        peer_addr: format!("{dns}:{peer_port}"),
        name: m.name.clone(),
    }
}

pub async fn initialize(addr: &Target, members: Vec<pb::Member>) -> Result<()> {
    let mut c = connect(addr, limits::MEMBERSHIP_TIMEOUT).await?;
    c.initialize(pb::InitializeRequest { members })
        .await
        .map_err(rpc_err(addr))?;
    Ok(())
}

pub async fn add_learner(addr: &Target, member: pb::Member) -> Result<()> {
    let mut c = connect(addr, limits::MEMBERSHIP_TIMEOUT).await?;
    c.add_learner(pb::AddLearnerRequest {
        member: Some(member),
    })
    .await
    .map_err(rpc_err(addr))?;
    Ok(())
}

/// `expected_membership_index`: the log index of the membership the change was
/// planned from; the leader refuses the change if it has moved on since.
pub async fn change_membership(
    addr: &Target,
    voter_ids: Vec<NodeId>,
    expected_membership_index: Option<u64>,
) -> Result<()> {
    let mut c = connect(addr, limits::MEMBERSHIP_TIMEOUT).await?;
    c.change_membership(pb::ChangeMembershipRequest {
        voter_ids,
        retain: false,
        expected_membership_index,
    })
    .await
    .map_err(rpc_err(addr))?;
    Ok(())
}

pub async fn remove_member(addr: &Target, node_id: NodeId) -> Result<()> {
    let mut c = connect(addr, limits::MEMBERSHIP_TIMEOUT).await?;
    c.remove_member(pb::RemoveMemberRequest { node_id })
        .await
        .map_err(rpc_err(addr))?;
    Ok(())
}

pub async fn transfer_leader(addr: &Target, target_node_id: NodeId) -> Result<()> {
    let mut c = connect(addr, limits::MEMBERSHIP_TIMEOUT).await?;
    c.transfer_leader(pb::TransferLeaderRequest { target_node_id })
        .await
        .map_err(rpc_err(addr))?;
    Ok(())
}

/// `ForceNewCluster` on the node at `addr`: it accepts only while it sees no
/// leader and belongs to `cluster_id`, then exits to rebuild itself.
pub async fn force_new_cluster(
    addr: &Target,
    cluster_id: &str,
) -> Result<pb::ForceNewClusterResponse> {
    let mut c = connect(addr, limits::STATUS_TIMEOUT).await?;
    let reply = c
        .force_new_cluster(pb::ForceNewClusterRequest {
            expected_cluster_id: cluster_id.to_string(),
            confirm: true,
        })
        .await
        .map_err(rpc_err(addr))?
        .into_inner();
    Ok(reply)
}

/// `Restore` on the node at `addr`: streams `chunks` (a backup file's bytes in
/// order) to a node of no cluster, which verifies all of it, replies, and exits
/// to restart as the first voter of a new cluster. The whole transfer is bounded
/// by `timeout` (a large backup takes a while).
pub async fn restore<S>(addr: &Target, chunks: S, timeout: Duration) -> Result<pb::RestoreResponse>
where
    S: futures::Stream<Item = pb::BackupChunk> + Send + 'static,
{
    let mut c = connect(addr, timeout).await?;
    let reply = c.restore(chunks).await.map_err(rpc_err(addr))?.into_inner();
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reply_becomes_the_planners_view() {
        let reply = pb::StatusResponse {
            node_id: 7,
            cluster_id: "c1".into(),
            role: pb::Role::Leader as i32,
            term: 3,
            leader_id: 7,
            commit_index: 10,
            applied_index: 9,
            membership: Some(pb::Membership {
                log_index: 4,
                configs: vec![pb::VoterConfig {
                    voter_ids: vec![7, 8],
                }],
                voters: vec![pb::Member {
                    node_id: 7,
                    name: "demo-0".into(),
                    ..Default::default()
                }],
                learners: vec![],
                joint: false,
            }),
            progress: vec![pb::PeerProgress {
                node_id: 8,
                matched_index: 8,
                lag: 2,
            }],
            healthy: true,
            ..Default::default()
        };
        let s = node_status(reply);
        assert_eq!(s.role, Role::Leader);
        assert_eq!(s.leader_id, Some(7));
        assert_eq!(s.progress, vec![(8, 2)]);
        let m = s.membership.unwrap();
        assert_eq!(m.configs, vec![vec![7, 8]]);
        assert_eq!(m.name_of(7), Some("demo-0"));
        let none = node_status(pb::StatusResponse {
            role: pb::Role::Uninitialized as i32,
            ..Default::default()
        });
        assert_eq!(none.role, Role::Uninitialized);
        assert_eq!(none.leader_id, None, "0 means no leader");
    }
}
