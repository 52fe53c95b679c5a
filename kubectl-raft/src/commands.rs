//! The patches the commands send: metadata annotations the operator already honours
//! (`raftkv.dev/paused`, `raftkv.dev/restartedAt`). Pure, so the tests pin the exact
//! bodies.

use raft_operator::crd::{PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION};
use serde_json::{Value, json};

/// `pause`: the operator takes no action on the cluster (status still updates).
pub fn pause_patch() -> Value {
    json!({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}})
}

/// `resume`: removes the annotation (a merge patch deletes a key set to null).
pub fn resume_patch() -> Value {
    json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}})
}

/// `restart`: a new `restartedAt` value rolls every pod, one at a time, leader last
/// (the operator copies it onto the pod template, like `kubectl rollout restart`).
pub fn restart_patch(now_rfc3339: &str) -> Value {
    json!({"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now_rfc3339}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_set_and_clear_the_operators_annotations() {
        assert_eq!(
            pause_patch().to_string(),
            r#"{"metadata":{"annotations":{"raftkv.dev/paused":"true"}}}"#
        );
        assert_eq!(
            resume_patch().to_string(),
            r#"{"metadata":{"annotations":{"raftkv.dev/paused":null}}}"#
        );
        assert_eq!(
            restart_patch("2026-12-07T18:00:00Z").to_string(),
            r#"{"metadata":{"annotations":{"raftkv.dev/restartedAt":"2026-12-07T18:00:00Z"}}}"#
        );
    }
}

/// `transfer-leader NAME [--to POD]`: the `kubectl` arguments that run the node
/// image's `raftctl member transfer-leader` next to the current leader (no port
/// forward: the leader's own client port, as in docs/operations.md). Leadership only,
/// never membership: the operator owns the membership and would undo a manual change.
pub fn transfer_leader_exec(
    rc: &raft_operator::crd::RaftCluster,
    namespace: &str,
    to: Option<&str>,
) -> Result<Vec<String>, String> {
    let name = rc.metadata.name.clone().unwrap_or_default();
    let status = rc.status.as_ref().ok_or_else(|| {
        format!("{name} has no status yet: is the operator running and watching {namespace}?")
    })?;
    let leader = status.leader.clone().ok_or_else(|| {
        format!("{name} has no leader in its status: nothing to transfer (see kubectl raft status {name})")
    })?;
    if let Some(to) = to {
        let member = status.members.iter().find(|m| m.pod == to);
        match member {
            Some(m) if m.pod == leader => {
                return Err(format!("{to} already leads {name}"));
            }
            Some(m) if m.role == "follower" && m.healthy => {}
            Some(m) => {
                return Err(format!(
                    "{to} is {} and {}: only a healthy follower (a voter) can take over",
                    m.role,
                    if m.healthy { "healthy" } else { "not healthy" }
                ));
            }
            None => return Err(format!("{to} is not a member of {name}")),
        }
    }
    let mut args: Vec<String> = [
        "exec",
        "-n",
        namespace,
        &leader,
        "-c",
        "raft-node",
        "--",
        "raftctl",
        "--endpoints",
        "localhost:7000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if rc.spec.tls.enabled {
        // The node's own certificate, as mounted in its pod: a peer certificate
        // may make every client-plane call, and it lists `localhost`.
        args.extend(crate::tls::node_pod_raftctl_args());
    }
    args.extend(["member".to_string(), "transfer-leader".to_string()]);
    // Without a target the leader picks the most caught-up voter. Member names are
    // pod names, which raftctl resolves to node IDs.
    args.extend(to.map(str::to_string));
    Ok(args)
}

#[cfg(test)]
mod transfer_tests {
    use super::*;

    fn rc() -> raft_operator::crd::RaftCluster {
        serde_json::from_value(json!({
            "apiVersion": "raftkv.dev/v1alpha1", "kind": "RaftCluster",
            "metadata": {"name": "demo"},
            "spec": {"replicas": 3},
            "status": {"leader": "demo-0", "members": [
                {"pod": "demo-0", "role": "leader", "healthy": true},
                {"pod": "demo-1", "role": "follower", "healthy": true},
                {"pod": "demo-2", "role": "follower", "healthy": false},
                {"pod": "demo-read-0", "role": "learner", "healthy": true},
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn transfer_runs_raftctl_next_to_the_leader() {
        assert_eq!(
            transfer_leader_exec(&rc(), "prod", Some("demo-1"))
                .unwrap()
                .join(" "),
            "exec -n prod demo-0 -c raft-node -- raftctl --endpoints localhost:7000 \
             --cacert /etc/raftkv/tls/ca.crt --cert /etc/raftkv/tls/tls.crt --key /etc/raftkv/tls/tls.key \
             member transfer-leader demo-1"
        );
        let mut plain = rc();
        plain.spec.tls.enabled = false;
        assert_eq!(
            transfer_leader_exec(&plain, "prod", Some("demo-1"))
                .unwrap()
                .join(" "),
            "exec -n prod demo-0 -c raft-node -- raftctl --endpoints localhost:7000 member transfer-leader demo-1"
        );
        assert!(
            transfer_leader_exec(&rc(), "prod", None)
                .unwrap()
                .join(" ")
                .ends_with("member transfer-leader")
        );
    }

    #[test]
    fn transfer_refuses_targets_that_cannot_lead() {
        for (to, why) in [
            ("demo-0", "already leads"),
            ("demo-2", "not healthy"),
            ("demo-read-0", "is learner"),
            ("nope", "not a member"),
        ] {
            let e = transfer_leader_exec(&rc(), "prod", Some(to)).unwrap_err();
            assert!(e.contains(why), "{to}: {e}");
        }
        let mut no_leader = rc();
        no_leader.status.as_mut().unwrap().leader = None;
        assert!(
            transfer_leader_exec(&no_leader, "prod", None)
                .unwrap_err()
                .contains("no leader")
        );
    }
}
