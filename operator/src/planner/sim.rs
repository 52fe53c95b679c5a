//! A dumb, in-memory model of a raftkv cluster on Kubernetes, for planner tests only
//! (unit, text scenarios and property tests). It turns its state into an [`Observed`]
//! and applies [`Step`]s the way the real system would, without timing.

use std::collections::BTreeMap;

use super::observed::*;
use super::{Plan, Step, plan};

#[derive(Clone, Debug)]
pub struct SimPod {
    pub set: Set,
    pub ordinal: u32,
    pub node_id: NodeId,
    /// Joined a cluster (has a cluster ID).
    pub joined: bool,
    /// Answers `Status`.
    pub up: bool,
    pub ready_since_down: Option<i64>,
    pub lag: u64,
    pub revision: String,
    pub role_label: Option<String>,
    /// The `raftkv.dev/serving` label (the StatefulSet template sets it to true).
    pub serving: bool,
    /// The container cannot run (e.g. `CrashLoopBackOff: ...`).
    pub failing: Option<String>,
    /// Zone of the pod's node.
    pub zone: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Sim {
    pub name: String,
    pub spec: DesiredSpec,
    pub paused: bool,
    pub now_ms: i64,
    pub voters_sts: Option<u32>,
    pub read_sts: Option<u32>,
    pub revision: String,
    pub pods: BTreeMap<String, SimPod>,
    pub voters: Vec<MemberInfo>,
    pub learners: Vec<MemberInfo>,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub log_index: u64,
    /// A change is in flight: the membership is joint / uncommitted.
    pub joint: bool,
    pub next_id: NodeId,
    /// The voters' StatefulSet reports `FailedCreate` with this message.
    pub create_failure: Option<String>,
    /// `status.phase` the last plan wrote.
    pub previous_phase: Option<crate::crd::Phase>,
    /// The `raftkv.dev/force-new-cluster` annotation.
    pub force_new_cluster: Option<String>,
}

impl Sim {
    pub fn new(name: &str, replicas: u32) -> Sim {
        Sim {
            name: name.into(),
            spec: DesiredSpec {
                replicas,
                read_replicas: 0,
                auto_replace_after_ms: None,
                storage_size: "1Gi".into(),
                from_backup: None,
            },
            paused: false,
            now_ms: 1_700_000_000_000,
            voters_sts: None,
            read_sts: None,
            revision: "r1".into(),
            pods: BTreeMap::new(),
            voters: vec![],
            learners: vec![],
            leader: None,
            term: 0,
            log_index: 0,
            joint: false,
            next_id: 1,
            create_failure: None,
            previous_phase: None,
            force_new_cluster: None,
        }
    }

    /// A bootstrapped, settled cluster of `replicas` voters.
    pub fn running(name: &str, replicas: u32) -> Sim {
        let mut sim = Sim::new(name, replicas);
        sim.settle(50);
        assert_eq!(sim.voter_count(), replicas as usize, "bootstrap failed");
        sim
    }

    pub fn voter_count(&self) -> usize {
        self.voters.len()
    }

    pub fn id_of(&self, pod: &str) -> NodeId {
        self.pods[pod].node_id
    }

    fn in_membership(&self, id: NodeId) -> bool {
        self.voters
            .iter()
            .chain(&self.learners)
            .any(|m| m.node_id == id)
    }

    fn membership(&self) -> MembershipView {
        MembershipView {
            log_index: self.log_index,
            configs: if self.voters.is_empty() {
                vec![]
            } else {
                vec![self.voters.iter().map(|m| m.node_id).collect()]
            },
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            joint: self.joint,
        }
    }

    pub fn observe(&self) -> Observed {
        let membership = self.membership();
        let mut pods = Vec::new();
        for (name, p) in &self.pods {
            let node = p.up.then(|| {
                let is_voter = self.voters.iter().any(|m| m.node_id == p.node_id);
                let role = if !p.joined {
                    Role::Uninitialized
                } else if self.leader == Some(p.node_id) {
                    Role::Leader
                } else if is_voter {
                    Role::Follower
                } else {
                    Role::Learner
                };
                let progress = if role == Role::Leader {
                    self.pods
                        .values()
                        .filter(|q| q.up && q.joined && self.in_membership(q.node_id))
                        .filter(|q| q.node_id != p.node_id)
                        .map(|q| (q.node_id, q.lag))
                        .collect()
                } else {
                    vec![]
                };
                NodeStatus {
                    node_id: p.node_id,
                    cluster_id: if p.joined { "c1".into() } else { String::new() },
                    role,
                    term: self.term,
                    leader_id: self.leader,
                    commit_index: if self.joint {
                        self.log_index - 1
                    } else {
                        self.log_index
                    },
                    applied_index: self.log_index.saturating_sub(p.lag),
                    membership: p.joined.then(|| membership.clone()),
                    progress,
                    healthy: p.joined && p.lag <= super::limits::IN_SYNC_LAG_MAX,
                }
            });
            pods.push(PodState {
                name: name.clone(),
                set: p.set,
                ordinal: p.ordinal,
                ready: p.up && p.joined && p.lag == 0,
                not_ready_since_ms: if p.up && p.joined && p.lag == 0 {
                    None
                } else {
                    Some(p.ready_since_down.unwrap_or(self.now_ms))
                },
                // Ready long enough to be promoted unless a test says otherwise.
                ready_since_ms: (p.up && p.joined && p.lag == 0)
                    .then_some(self.now_ms - super::limits::PROMOTION_STABILIZATION_MS),
                terminating: false,
                revision: Some(p.revision.clone()),
                role_label: p.role_label.clone(),
                serving: Some(p.serving),
                // No grace in the simulation: its endpoints follow instantly.
                serving_stopped_ms: None,
                // The endpoints controller, instantly.
                in_services: p.serving && p.up && p.joined && p.lag == 0,
                node,
                failing: p.failing.clone(),
                zone: p.zone.clone(),
            });
        }
        Observed {
            name: self.name.clone(),
            generation: Some(1),
            spec: self.spec.clone(),
            paused: self.paused,
            now_ms: self.now_ms,
            voters_sts: self.voters_sts.map(|r| StsState {
                replicas: r,
                update_revision: Some(self.revision.clone()),
                create_failure: self.create_failure.clone(),
                claim_size: None,
            }),
            read_sts: self.read_sts.map(|r| StsState {
                replicas: r,
                update_revision: Some(self.revision.clone()),
                create_failure: None,
                claim_size: None,
            }),
            pods,
            previous_conditions: vec![],
            previous_membership_change: None,
            previous_phase: self.previous_phase,
            pvcs: None,
            nodes_unreadable: None,
            force_new_cluster: self.force_new_cluster.clone(),
            previous_highest_commit: None,
            previous_forced: None,
            previous_restore: None,
            previous_cluster_id: None,
        }
    }

    fn fresh_pod(&mut self, set: Set, ordinal: u32) -> SimPod {
        let id = self.next_id;
        self.next_id += 1;
        SimPod {
            set,
            ordinal,
            node_id: id,
            joined: false,
            up: true,
            ready_since_down: None,
            lag: 0,
            revision: self.revision.clone(),
            role_label: None,
            serving: true,
            failing: None,
            zone: None,
        }
    }

    fn scale(&mut self, set: Set, replicas: u32) {
        let cur = match set {
            Set::Voters => self.voters_sts.replace(replicas),
            Set::Read => self.read_sts.replace(replicas),
        }
        .unwrap_or(0);
        for ordinal in cur..replicas {
            let pod = self.fresh_pod(set, ordinal);
            self.pods.insert(pod_name(&self.name, set, ordinal), pod);
        }
        for ordinal in replicas..cur {
            // The StatefulSet deletes the pod and (whenScaled: Delete) its PVC.
            self.pods.remove(&pod_name(&self.name, set, ordinal));
        }
    }

    /// Applies a step as the real system would (instantly).
    pub fn apply(&mut self, step: &Step) {
        match step {
            Step::Initialize { members, .. } => {
                for m in members {
                    self.pods.get_mut(&m.name).expect("pod").joined = true;
                }
                self.voters = members
                    .iter()
                    .map(|m| MemberInfo {
                        node_id: m.node_id,
                        name: m.name.clone(),
                    })
                    .collect();
                self.leader = Some(members[0].node_id);
                self.term = 1;
                self.log_index = 1;
            }
            Step::AddLearner { member } => {
                let pod = self.pods.get_mut(&member.name).expect("pod");
                pod.joined = true;
                self.learners.push(MemberInfo {
                    node_id: member.node_id,
                    name: member.name.clone(),
                });
                self.log_index += 1;
            }
            Step::ChangeMembership { voters, .. } => {
                let all: Vec<MemberInfo> =
                    self.voters.iter().chain(&self.learners).cloned().collect();
                let find = |id: &NodeId| all.iter().find(|m| m.node_id == *id).cloned();
                self.voters = voters.iter().filter_map(find).collect();
                self.learners.retain(|l| !voters.contains(&l.node_id));
                self.log_index += 2;
            }
            Step::RemoveLearner { node_id, .. } => {
                self.learners.retain(|l| l.node_id != *node_id);
                self.log_index += 1;
            }
            Step::TransferLeader { target, .. } => {
                self.leader = Some(*target);
                self.term += 1;
            }
            Step::ScaleStatefulSet { set, replicas } => self.scale(*set, *replicas),
            Step::DeletePod {
                pod, delete_pvc, ..
            } => {
                let old = self.pods[pod].clone();
                let new = if *delete_pvc {
                    self.fresh_pod(old.set, old.ordinal)
                } else {
                    SimPod {
                        up: true,
                        ready_since_down: None,
                        revision: self.revision.clone(),
                        role_label: None,
                        serving: true,
                        ..old
                    }
                };
                self.pods.insert(pod.clone(), new);
            }
            Step::StopServing { pods } => {
                for pod in pods {
                    self.pods.get_mut(pod).expect("pod").serving = false;
                }
            }
            Step::ForceNewCluster { pod, .. } => {
                // The annotation goes first; the survivor restarts as the one
                // voter of a new cluster under a new node ID.
                self.force_new_cluster = None;
                let id = self.next_id;
                self.next_id += 1;
                self.pods.get_mut(pod).expect("pod").node_id = id;
                self.voters = vec![MemberInfo {
                    node_id: id,
                    name: pod.clone(),
                }];
                self.learners.clear();
                self.leader = Some(id);
                self.joint = false;
                self.term += 1;
                self.log_index += 1;
            }
            Step::Restore { pod, .. } => {
                // The pod restarts as the one voter of a new cluster under a
                // new node ID.
                let id = self.next_id;
                self.next_id += 1;
                let p = self.pods.get_mut(pod).expect("pod");
                p.node_id = id;
                p.joined = true;
                self.voters = vec![MemberInfo {
                    node_id: id,
                    name: pod.clone(),
                }];
                self.learners.clear();
                self.leader = Some(id);
                self.term = 1;
                self.log_index = 1;
            }
        }
    }

    /// Labels as the executor would set them.
    pub fn apply_labels(&mut self, plan: &Plan) {
        for (pod, role) in &plan.labels {
            if let Some(p) = self.pods.get_mut(pod) {
                p.role_label = Some(role.clone());
            }
        }
        for pod in &plan.serve_again {
            if let Some(p) = self.pods.get_mut(pod) {
                p.serving = true;
            }
        }
    }

    /// Plans and applies once. Returns the plan.
    pub fn step(&mut self) -> Plan {
        self.elect();
        let plan = plan(&self.observe());
        self.previous_phase = plan.status.phase;
        self.apply_labels(&plan);
        if let Some(step) = &plan.step {
            self.apply(step);
        }
        plan
    }

    /// Steps until nothing is left to do (or `max` steps). Returns the plans that acted.
    pub fn settle(&mut self, max: usize) -> Vec<Plan> {
        let mut out = Vec::new();
        for _ in 0..max {
            let plan = self.step();
            if plan.step.is_none() {
                break;
            }
            out.push(plan);
        }
        out
    }

    /// A pod stops answering and is not ready from now on.
    pub fn pod_down(&mut self, pod: &str) {
        let now = self.now_ms;
        let p = self.pods.get_mut(pod).expect("pod");
        p.up = false;
        p.ready_since_down = Some(now);
        if self.leader == Some(p.node_id) {
            self.leader = None;
        }
    }

    /// Elect the healthy voter with the lowest ID if there is no leader and a quorum is up.
    pub fn elect(&mut self) {
        if self.leader.is_some() {
            return;
        }
        let up: Vec<NodeId> = self
            .voters
            .iter()
            .filter(|m| self.pods.values().any(|p| p.node_id == m.node_id && p.up))
            .map(|m| m.node_id)
            .collect();
        if 2 * up.len() > self.voters.len() {
            self.leader = up.into_iter().min();
            self.term += 1;
        }
    }

    pub fn pod_up(&mut self, pod: &str) {
        let p = self.pods.get_mut(pod).expect("pod");
        p.up = true;
        p.ready_since_down = None;
    }

    /// The pod comes back with an empty volume: a new, uninitialized node ID.
    pub fn pod_lost_volume(&mut self, pod: &str) {
        let old = self.pods[pod].clone();
        if self.leader == Some(old.node_id) {
            self.leader = None;
        }
        let new = self.fresh_pod(old.set, old.ordinal);
        self.pods.insert(pod.into(), new);
    }

    /// One line per voter/learner: `voters=[demo-0:1 ...] learners=[...] leader=demo-0`.
    pub fn describe(&self) -> String {
        let list = |ms: &[MemberInfo]| {
            ms.iter()
                .map(|m| format!("{}:{}", m.name, m.node_id))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let leader = self
            .leader
            .and_then(|id| self.voters.iter().find(|m| m.node_id == id))
            .map_or("none".to_string(), |m| m.name.clone());
        format!(
            "voters=[{}] learners=[{}] leader={} sts={}/{}",
            list(&self.voters),
            list(&self.learners),
            leader,
            self.voters_sts.unwrap_or(0),
            self.read_sts.unwrap_or(0)
        )
    }
}

/// One line for a plan: the step (or why none), as the text scenarios print it.
pub fn describe_plan(plan: &Plan) -> String {
    let step = match &plan.step {
        None => "none".to_string(),
        Some(Step::Initialize { pod, members }) => format!(
            "Initialize via {pod} voters=[{}]",
            members
                .iter()
                .map(|m| format!("{}:{}", m.name, m.node_id))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(Step::AddLearner { member }) => {
            format!("AddLearner {}:{}", member.name, member.node_id)
        }
        Some(Step::ChangeMembership {
            voters,
            added,
            removed,
            ..
        }) => format!("ChangeMembership voters={voters:?} added={added:?} removed={removed:?}"),
        Some(Step::RemoveLearner { node_id, name }) => format!("RemoveLearner {name}:{node_id}"),
        Some(Step::TransferLeader { from, target }) => format!("TransferLeader {from} -> {target}"),
        Some(Step::ScaleStatefulSet { set, replicas }) => {
            format!("ScaleStatefulSet {} {replicas}", set.as_str())
        }
        Some(Step::DeletePod {
            pod,
            delete_pvc,
            reason,
        }) => format!("DeletePod {pod} delete_pvc={delete_pvc} reason={reason:?}"),
        Some(Step::StopServing { pods }) => format!("StopServing {}", pods.join(" ")),
        Some(Step::Restore { pod, source }) => format!("Restore {pod} from {source}"),
        Some(Step::ForceNewCluster {
            pod, cluster_id, ..
        }) => {
            format!("ForceNewCluster {pod} from={cluster_id}")
        }
    };
    let mut out = format!("step: {step}");
    if let Some(ev) = &plan.event {
        out.push_str(&format!("\nevent: {} {}", ev.reason, ev.note));
    }
    if let Some(phase) = plan.status.phase {
        out.push_str(&format!("\nphase: {phase:?}"));
    }
    out
}
