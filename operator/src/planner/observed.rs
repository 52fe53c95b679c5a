//! What the planner sees: the desired spec, the Kubernetes objects and each member's
//! own report. Plain data, built by `observe.rs` in the controller and by hand in tests.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::limits;
use crate::crd::{ForcedNewCluster, IndexMark, MembershipChange, Phase, RestoreStatus};

/// A Raft node ID (random 53-bit, created with the node's data directory).
pub type NodeId = u64;

/// Which StatefulSet a pod belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Set {
    /// `<name>`: the voters.
    Voters,
    /// `<name>-read`: the read replicas (learners).
    Read,
}

impl Set {
    pub fn as_str(self) -> &'static str {
        match self {
            Set::Voters => "voters",
            Set::Read => "read",
        }
    }
}

/// Everything one reconcile observed. No client, no clock: `now_ms` is an input.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub name: String,
    pub generation: Option<i64>,
    pub spec: DesiredSpec,
    pub paused: bool,
    /// Wall-clock time of the observation, Unix milliseconds.
    pub now_ms: i64,
    pub voters_sts: Option<StsState>,
    pub read_sts: Option<StsState>,
    pub pods: Vec<PodState>,
    /// Conditions currently in status (to keep `lastTransitionTime` stable).
    pub previous_conditions: Vec<Condition>,
    /// `status.lastMembershipChange` as currently written.
    pub previous_membership_change: Option<MembershipChange>,
    /// `status.phase` as currently written (a rolling update lasts until its last
    /// restarted pod is back).
    pub previous_phase: Option<Phase>,
    /// The members' PersistentVolumeClaims, listed only while `spec.storage.size`
    /// differs from a StatefulSet's claim template or an expansion is reported.
    pub pvcs: Option<Vec<super::volumes::PvcState>>,
    /// Why the nodes (their zones) could not be read, e.g. a namespaced install
    /// without the ClusterRole: placement is then unknown, never a failure.
    pub nodes_unreadable: Option<String>,
    /// The `raftkv.dev/force-new-cluster` annotation: the pod it names.
    pub force_new_cluster: Option<String>,
    /// `status.highestCommit` as currently written.
    pub previous_highest_commit: Option<IndexMark>,
    /// `status.forcedNewCluster` as currently written.
    pub previous_forced: Option<ForcedNewCluster>,
    /// `status.restore` as currently written: the backup was accepted once.
    pub previous_restore: Option<RestoreStatus>,
    /// `status.clusterId` as currently written: the cluster existed.
    pub previous_cluster_id: Option<String>,
}

/// The part of the spec the planner decides on.
#[derive(Clone, Debug, Default)]
pub struct DesiredSpec {
    pub replicas: u32,
    pub read_replicas: u32,
    /// `Some(after)` when autoReplace is enabled.
    pub auto_replace_after_ms: Option<i64>,
    /// `spec.storage.size`.
    pub storage_size: String,
    /// `spec.bootstrap.fromBackup`, described (`FromBackup::describe`): the
    /// cluster starts from that backup instead of empty.
    pub from_backup: Option<String>,
}

impl DesiredSpec {
    /// Pods the spec wants in `set`.
    pub fn wanted(&self, set: Set) -> u32 {
        match set {
            Set::Voters => self.replicas,
            Set::Read => self.read_replicas,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct StsState {
    pub replicas: u32,
    /// `status.updateRevision`: the revision every pod should run.
    pub update_revision: Option<String>,
    /// Why the StatefulSet cannot create its missing pods: the message of its latest
    /// recent `FailedCreate` Event, while pods are missing.
    pub create_failure: Option<String>,
    /// The size its volumeClaimTemplate requests (immutable once created).
    pub claim_size: Option<String>,
}

/// One pod and, when reachable, the node's `Status` reply.
#[derive(Clone, Debug)]
pub struct PodState {
    pub name: String,
    pub set: Set,
    pub ordinal: u32,
    pub ready: bool,
    /// The pod's Ready condition has been false since (Unix ms), if not ready.
    pub not_ready_since_ms: Option<i64>,
    /// The pod's Ready condition has been true since (Unix ms), if ready.
    pub ready_since_ms: Option<i64>,
    pub terminating: bool,
    /// `controller-revision-hash` label.
    pub revision: Option<String>,
    /// Current value of the `raftkv.dev/role` label.
    pub role_label: Option<String>,
    /// The `raftkv.dev/serving` label: the client and read Services select
    /// `"true"` (see `drain`); `None` on a pod from before the label existed.
    pub serving: Option<bool>,
    /// When the operator stopped the pod serving (Unix ms), from its
    /// `raftkv.dev/serving-stopped-at-ms` annotation.
    pub serving_stopped_ms: Option<i64>,
    /// An EndpointSlice of the client or read Service lists the pod as ready.
    pub in_services: bool,
    /// `None`: the node did not answer `Status`.
    pub node: Option<NodeStatus>,
    /// The container cannot run: `CrashLoopBackOff`, an image pull error, ...
    /// with the kubelet's message or the last lines the node logged before exiting.
    pub failing: Option<String>,
    /// `topology.kubernetes.io/zone` of the node the pod is scheduled on, if known.
    pub zone: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Uninitialized,
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Uninitialized => "uninitialized",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
            Role::Unknown => "unknown",
        }
    }
}

/// A node's own report (the gRPC `StatusResponse`, reduced).
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub node_id: NodeId,
    /// Empty until the node joined a cluster.
    pub cluster_id: String,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub membership: Option<MembershipView>,
    /// Only on the leader: (peer, lag in entries).
    pub progress: Vec<(NodeId, u64)>,
    pub healthy: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberInfo {
    pub node_id: NodeId,
    /// The pod name kept in the membership.
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipView {
    pub log_index: u64,
    /// One config normally, two during a joint change.
    pub configs: Vec<Vec<NodeId>>,
    pub voters: Vec<MemberInfo>,
    pub learners: Vec<MemberInfo>,
    pub joint: bool,
}

impl MembershipView {
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.learners.is_empty() && self.configs.is_empty()
    }
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.configs.iter().flatten().copied().collect()
    }
    pub fn learner_ids(&self) -> BTreeSet<NodeId> {
        self.learners.iter().map(|m| m.node_id).collect()
    }
    pub fn name_of(&self, id: NodeId) -> Option<&str> {
        self.voters
            .iter()
            .chain(&self.learners)
            .find(|m| m.node_id == id)
            .map(|m| m.name.as_str())
    }
    pub fn contains(&self, id: NodeId) -> bool {
        self.voter_ids().contains(&id) || self.learner_ids().contains(&id)
    }
}

/// Derived facts every decision uses, computed once per plan.
#[derive(Clone, Debug)]
pub struct ClusterView<'a> {
    pub obs: &'a Observed,
    /// The reachable pod that reports leadership at the highest term.
    pub leader: Option<(&'a PodState, &'a NodeStatus)>,
    /// The leader's membership (authoritative).
    pub membership: Option<&'a MembershipView>,
    /// Some member reports a membership or a cluster ID.
    pub initialized: bool,
    /// The leader's membership entry is committed.
    pub membership_committed: bool,
}

impl<'a> ClusterView<'a> {
    pub fn new(obs: &'a Observed) -> Self {
        // A leader of the cluster a forced new cluster left behind (its
        // members came back with their data) is never the leader we follow.
        let abandoned = obs
            .previous_forced
            .as_ref()
            .map(|f| f.from_cluster_id.as_str());
        let leader = obs
            .pods
            .iter()
            .filter_map(|p| p.node.as_ref().map(|n| (p, n)))
            .filter(|(_, n)| n.role == Role::Leader)
            .filter(|(_, n)| Some(n.cluster_id.as_str()) != abandoned)
            .max_by_key(|(_, n)| n.term);
        let membership = leader.and_then(|(_, n)| n.membership.as_ref());
        let initialized = obs.pods.iter().filter_map(|p| p.node.as_ref()).any(|n| {
            !n.cluster_id.is_empty() || n.membership.as_ref().is_some_and(|m| !m.is_empty())
        });
        let membership_committed = match (leader, membership) {
            (Some((_, n)), Some(m)) => m.log_index <= n.commit_index,
            _ => false,
        };
        ClusterView {
            obs,
            leader,
            membership,
            initialized,
            membership_committed,
        }
    }

    /// The membership to show when no leader reports one: the newest membership any
    /// reachable member reports (status only; decisions use [`Self::membership`]).
    pub fn reported_membership(&self) -> Option<&'a MembershipView> {
        self.membership.or_else(|| {
            self.obs
                .pods
                .iter()
                .filter_map(|p| p.node.as_ref()?.membership.as_ref())
                .filter(|m| !m.is_empty())
                .max_by_key(|m| m.log_index)
        })
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader.map(|(_, n)| n.node_id)
    }

    /// The pod that currently reports `id` (reachable and identified).
    pub fn pod_of(&self, id: NodeId) -> Option<&'a PodState> {
        self.obs
            .pods
            .iter()
            .find(|p| p.node.as_ref().is_some_and(|n| n.node_id == id))
    }

    pub fn pod_named(&self, name: &str) -> Option<&'a PodState> {
        self.obs.pods.iter().find(|p| p.name == name)
    }

    /// Replication lag of `id` as the leader reports it (0 for the leader).
    pub fn lag(&self, id: NodeId) -> Option<u64> {
        let (_, leader) = self.leader?;
        if leader.node_id == id {
            return Some(0);
        }
        leader
            .progress
            .iter()
            .find(|(peer, _)| *peer == id)
            .map(|(_, lag)| *lag)
    }

    /// Reachable, reporting this ID, a member in the node's own view, in recent contact
    /// with the leader, and caught up.
    pub fn is_healthy(&self, id: NodeId) -> bool {
        let Some(pod) = self.pod_of(id) else {
            return false;
        };
        let Some(node) = pod.node.as_ref() else {
            return false;
        };
        if pod.terminating {
            return false;
        }
        // Autopilot's two thresholds: the node's own `healthy` (a member that heard
        // from the leader recently and applied nearly all it knows is committed) and
        // the trailing log as the leader sees it.
        let member_role = matches!(node.role, Role::Leader | Role::Follower | Role::Learner);
        member_role
            && node.healthy
            && self
                .lag(id)
                .is_some_and(|lag| lag <= limits::IN_SYNC_LAG_MAX)
    }

    /// Healthy members (voters and learners) of the current membership.
    pub fn healthy_voters_or_learners(&self) -> BTreeSet<NodeId> {
        self.membership
            .map(|m| {
                m.voter_ids()
                    .into_iter()
                    .chain(m.learner_ids())
                    .filter(|id| self.is_healthy(*id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Healthy voters of the current membership (all configs).
    pub fn healthy_voters(&self) -> BTreeSet<NodeId> {
        self.membership
            .map(|m| {
                m.voter_ids()
                    .into_iter()
                    .filter(|id| self.is_healthy(*id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `name-3` -> 3 for the voters, `name-read-3` -> 3 for the read replicas.
pub fn parse_pod_name(cluster: &str, pod: &str) -> Option<(Set, u32)> {
    let rest = pod.strip_prefix(cluster)?.strip_prefix('-')?;
    if let Some(ordinal) = rest.strip_prefix("read-") {
        return ordinal.parse().ok().map(|o| (Set::Read, o));
    }
    rest.parse().ok().map(|o| (Set::Voters, o))
}

/// The pod name of `ordinal` in `set`.
pub fn pod_name(cluster: &str, set: Set, ordinal: u32) -> String {
    match set {
        Set::Voters => format!("{cluster}-{ordinal}"),
        Set::Read => format!("{cluster}-read-{ordinal}"),
    }
}

/// Node IDs are shown as 16 hex digits, like raft-node's logs.
pub fn fmt_id(id: NodeId) -> String {
    id.to_string()
}
