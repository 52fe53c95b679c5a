//! Which pod a data command goes to, and whether `promote` may run: pure
//! decisions on the RaftCluster's status, as the operator wrote it.

use raft_operator::crd::{MemberStatus, PAUSED_ANNOTATION, RaftCluster};

/// What the command does with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Writes, backups, membership: the leader (a follower would forward
    /// writes, but a backup and a membership change are the leader's).
    Leader,
    /// Reads and watches: any serving member, followers and read replicas
    /// first so the leader is spared.
    Serving,
}

fn name_of(rc: &RaftCluster) -> String {
    rc.metadata.name.clone().unwrap_or_default()
}

fn serving(m: &MemberStatus) -> bool {
    m.healthy && matches!(m.role.as_str(), "leader" | "follower" | "learner")
}

/// The pod for `purpose`, or why there is none.
pub fn pick_pod(rc: &RaftCluster, purpose: Purpose) -> Result<String, String> {
    let name = name_of(rc);
    let status = rc.status.as_ref().ok_or_else(|| {
        format!("{name} has no status yet: is the operator running and watching its namespace?")
    })?;
    let leader = status.leader.clone().filter(|l| {
        status
            .members
            .iter()
            .any(|m| &m.pod == l && m.role == "leader" && m.healthy)
    });
    match purpose {
        Purpose::Leader => leader.ok_or_else(|| {
            format!(
                "{name} has no healthy leader in its status (see kubectl raft status {name}); retry when it has one"
            )
        }),
        Purpose::Serving => status
            .members
            .iter()
            .filter(|m| serving(m) && m.role != "leader")
            .map(|m| m.pod.clone())
            .next()
            .or(leader)
            .ok_or_else(|| {
                format!(
                    "no member of {name} is healthy and serving in its status (see kubectl raft status {name})"
                )
            }),
    }
}

/// `promote NAME MEMBER`: the node ID to promote, or why not.
///
/// The operator owns the membership (voters follow `spec.replicas`, read
/// replicas `spec.readReplicas`) and would undo a promotion it did not plan,
/// so this is for a paused cluster only (`kubectl raft pause`), where an
/// operator of the cluster takes over by hand. `MEMBER` is a pod name or a
/// node ID; it must be a healthy learner.
pub fn promote_target(rc: &RaftCluster, member: &str) -> Result<u64, String> {
    let name = name_of(rc);
    let paused = rc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v == "true");
    if !paused {
        return Err(format!(
            "{name} is not paused: the operator owns its membership and would undo a promotion that is not in its spec. \
             Raise spec.replicas instead, or `kubectl raft pause {name}` first to take over by hand"
        ));
    }
    let status = rc
        .status
        .as_ref()
        .ok_or_else(|| format!("{name} has no status yet: nothing to promote"))?;
    let m = status
        .members
        .iter()
        .find(|m| m.pod == member || m.node_id.as_deref() == Some(member))
        .ok_or_else(|| format!("{member} is not a member of {name}"))?;
    if m.role != "learner" {
        return Err(format!(
            "{member} is a {}: only a learner (a read replica) can be promoted",
            m.role
        ));
    }
    if !m.healthy {
        return Err(format!(
            "{member} is not healthy: a promoted voter that cannot keep up would weaken the quorum"
        ));
    }
    let id = m
        .node_id
        .as_deref()
        .ok_or_else(|| format!("{member} has no node ID in the status yet"))?;
    id.parse()
        .map_err(|_| format!("{member}'s node ID {id:?} in the status is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(paused: bool, members: serde_json::Value, leader: Option<&str>) -> RaftCluster {
        let mut annotations = json!({});
        if paused {
            annotations = json!({PAUSED_ANNOTATION: "true"});
        }
        serde_json::from_value(json!({
            "apiVersion": "raftkv.dev/v1alpha1", "kind": "RaftCluster",
            "metadata": {"name": "demo", "annotations": annotations},
            "spec": {"replicas": 3},
            "status": {"leader": leader, "members": members},
        }))
        .unwrap()
    }

    fn members() -> serde_json::Value {
        json!([
            {"pod": "demo-0", "nodeId": "11", "role": "leader", "healthy": true},
            {"pod": "demo-1", "nodeId": "12", "role": "follower", "healthy": false},
            {"pod": "demo-2", "nodeId": "13", "role": "follower", "healthy": true},
            {"pod": "demo-read-0", "nodeId": "14", "role": "learner", "healthy": true},
            {"pod": "demo-read-1", "role": "learner", "healthy": true},
            {"pod": "demo-read-2", "nodeId": "16", "role": "learner", "healthy": false},
        ])
    }

    #[test]
    fn writes_go_to_the_leader_and_reads_to_a_healthy_non_leader_first() {
        let c = rc(false, members(), Some("demo-0"));
        assert_eq!(pick_pod(&c, Purpose::Leader).unwrap(), "demo-0");
        assert_eq!(pick_pod(&c, Purpose::Serving).unwrap(), "demo-2");
        // Only the leader serves: reads go there too.
        let lone = rc(
            false,
            json!([{"pod": "demo-0", "role": "leader", "healthy": true},
                   {"pod": "demo-1", "role": "unreachable", "healthy": false}]),
            Some("demo-0"),
        );
        assert_eq!(pick_pod(&lone, Purpose::Serving).unwrap(), "demo-0");
    }

    /// Brute force over every role/health of a 3-member status: the choice
    /// is always a healthy serving member, the leader only for Leader (or when
    /// no other serves), and an error exactly when no such member exists.
    #[test]
    fn the_chosen_pod_always_serves_and_errors_only_when_none_does() {
        let roles = ["leader", "follower", "learner", "candidate", "unreachable"];
        let mut cases = 0;
        for code in 0..(roles.len() * 2).pow(3) {
            let mut c = code;
            let mut ms = Vec::new();
            for i in 0..3 {
                let (role, healthy) = (roles[c % roles.len()], (c / roles.len()) % 2 == 1);
                c /= roles.len() * 2;
                ms.push(json!({"pod": format!("p{i}"), "role": role, "healthy": healthy}));
            }
            for leader in [None, Some("p0"), Some("p1")] {
                cases += 1;
                let cluster = rc(false, json!(ms), leader);
                let st = cluster.status.as_ref().unwrap();
                let is = |pod: &str, f: &dyn Fn(&MemberStatus) -> bool| {
                    st.members.iter().any(|m| m.pod == pod && f(m))
                };
                let healthy_leader = leader.filter(|l| is(l, &|m| m.role == "leader" && m.healthy));
                match pick_pod(&cluster, Purpose::Leader) {
                    Ok(p) => assert_eq!(Some(p.as_str()), healthy_leader),
                    Err(e) => {
                        assert!(healthy_leader.is_none());
                        assert!(e.contains("no healthy leader"), "{e}");
                    }
                }
                let others: Vec<&str> = st
                    .members
                    .iter()
                    .filter(|m| serving(m) && m.role != "leader")
                    .map(|m| m.pod.as_str())
                    .collect();
                match pick_pod(&cluster, Purpose::Serving) {
                    Ok(p) => {
                        assert!(is(&p, &serving), "{p} does not serve: {ms:?}");
                        if !others.is_empty() {
                            assert_ne!(Some(p.as_str()), healthy_leader);
                        }
                    }
                    Err(_) => assert!(others.is_empty() && healthy_leader.is_none()),
                }
            }
        }
        assert_eq!(cases, 1000 * 3);
    }

    #[test]
    fn no_status_is_a_clear_error() {
        let mut c = rc(false, members(), None);
        c.status = None;
        assert!(
            pick_pod(&c, Purpose::Serving)
                .unwrap_err()
                .contains("no status yet")
        );
    }

    #[test]
    fn promote_needs_a_paused_cluster_and_a_healthy_learner() {
        let unpaused = rc(false, members(), Some("demo-0"));
        let e = promote_target(&unpaused, "demo-read-0").unwrap_err();
        assert!(
            e.contains("not paused") && e.contains("kubectl raft pause demo"),
            "{e}"
        );
        let c = rc(true, members(), Some("demo-0"));
        assert_eq!(promote_target(&c, "demo-read-0").unwrap(), 14);
        assert_eq!(promote_target(&c, "14").unwrap(), 14);
        for (member, why) in [
            ("demo-2", "is a follower"),
            ("demo-0", "is a leader"),
            ("demo-read-2", "not healthy"),
            ("demo-read-1", "no node ID"),
            ("nope", "not a member"),
        ] {
            let e = promote_target(&c, member).unwrap_err();
            assert!(e.contains(why), "{member}: {e}");
        }
    }
}
