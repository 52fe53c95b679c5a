//! What `kubectl raft status` prints and which exit code it returns. Pure: a
//! RaftCluster in, text out.

use raft_operator::crd::{MemberStatus, RaftCluster};

/// Exit codes, like kubectl: 0 ok, 1 the command failed; and for `status`, 3 when the
/// cluster is not Available (scripts can `kubectl raft status demo || page`).
pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_UNAVAILABLE: i32 = 3;

/// `status`'s exit code: [`EXIT_OK`] when the `Available` condition is `True`.
pub fn status_exit_code(rc: &RaftCluster) -> i32 {
    let available = rc
        .status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        })
        .unwrap_or(false);
    if available { EXIT_OK } else { EXIT_UNAVAILABLE }
}

/// Columns padded to their widest cell, separated by 3 spaces (kubectl's printer).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n") + "\n"
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn member_row(m: &MemberStatus) -> Vec<String> {
    vec![
        m.pod.clone(),
        or_dash(m.node_id.as_deref()),
        m.role.clone(),
        or_dash(m.applied_index),
        or_dash(m.lag),
        if m.healthy { "yes" } else { "no" }.into(),
    ]
}

/// The human form of `kubectl raft status NAME`: the cluster line, one row per
/// member, the last membership change (with its trace ID) and the conditions.
pub fn status_text(rc: &RaftCluster) -> String {
    let name = rc.metadata.name.clone().unwrap_or_default();
    let Some(s) = &rc.status else {
        return format!(
            "{name}: no status yet (is the operator running and watching this namespace?)\n"
        );
    };
    let mut out = table(
        &[
            "NAME",
            "PHASE",
            "LEADER",
            "TERM",
            "VOTERS",
            "READY",
            "READ-REPLICAS",
        ],
        &[vec![
            name,
            or_dash(s.phase.map(|p| format!("{p:?}"))),
            or_dash(s.leader.as_deref()),
            or_dash(s.term),
            format!("{}/{}", s.replicas, rc.spec.replicas),
            s.ready_replicas.to_string(),
            format!("{}/{}", s.read_replicas, rc.spec.read_replicas),
        ]],
    );
    out.push('\n');
    let rows: Vec<Vec<String>> = s.members.iter().map(member_row).collect();
    out += &table(
        &["POD", "NODE ID", "ROLE", "APPLIED", "LAG", "HEALTHY"],
        &rows,
    );
    out.push('\n');
    match &s.last_membership_change {
        Some(c) => {
            out += &format!(
                "Last membership change: {} at {}: {}",
                c.kind, c.time, c.message
            );
            if let Some(id) = &c.trace_id {
                out += &format!(" (trace {id}; raftctl trace get {id})");
            }
            out.push('\n');
        }
        None => out += "Last membership change: none\n",
    }
    if let Some(st) = &s.storage {
        out += &format!(
            "Volumes: {} of {} at {}: {}\n",
            st.resized, st.volumes, st.size, st.message
        );
    }
    out += "Conditions:\n";
    let rows: Vec<Vec<String>> = s
        .conditions
        .iter()
        .map(|c| {
            vec![
                format!("  {}", c.type_),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        })
        .collect();
    out += &table(&["  TYPE", "STATUS", "REASON", "MESSAGE"], &rows);
    out
}

/// `-o json`: the name, namespace, spec'd sizes and the whole status, as the operator
/// wrote it (integers of node IDs stay strings, as in the status).
pub fn status_json(rc: &RaftCluster) -> serde_json::Value {
    serde_json::json!({
        "name": rc.metadata.name,
        "namespace": rc.metadata.namespace,
        "replicas": rc.spec.replicas,
        "readReplicas": rc.spec.read_replicas,
        "paused": rc.metadata.annotations.as_ref()
            .and_then(|a| a.get(raft_operator::crd::PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true"),
        "status": rc.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-voter cluster as the operator reports it, one follower lagging.
    fn fixture(available: bool) -> RaftCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCluster",
            "metadata": {"name": "demo", "namespace": "prod"},
            "spec": {"replicas": 3, "readReplicas": 1},
            "status": {
                "phase": "Running",
                "leader": "demo-0",
                "term": 7,
                "replicas": 3,
                "readyReplicas": 2,
                "readReplicas": 1,
                "members": [
                    {"pod": "demo-0", "nodeId": "4521", "role": "leader", "appliedIndex": 120, "lag": 0, "healthy": true},
                    {"pod": "demo-1", "nodeId": "88", "role": "follower", "appliedIndex": 20, "lag": 100, "healthy": false},
                    {"pod": "demo-2", "role": "unreachable", "healthy": false},
                ],
                "conditions": [
                    {"type": "Available", "status": if available { "True" } else { "False" },
                     "reason": "QuorumHealthy", "message": "2 of 3 voters healthy",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                ],
                "lastMembershipChange": {"kind": "MemberPromoted", "message": "promoted [88]",
                    "time": "2026-01-01T00:00:00Z", "traceId": "0af7651916cd43dd8448eb211c80319c"},
            }
        }))
        .unwrap()
    }

    #[test]
    fn status_table_shows_members_leader_lag_and_the_traced_change() {
        let text = status_text(&fixture(true));
        let expected = "\
NAME   PHASE     LEADER   TERM   VOTERS   READY   READ-REPLICAS
demo   Running   demo-0   7      3/3      2       1/1

POD      NODE ID   ROLE          APPLIED   LAG   HEALTHY
demo-0   4521      leader        120       0     yes
demo-1   88        follower      20        100   no
demo-2   -         unreachable   -         -     no

Last membership change: MemberPromoted at 2026-01-01T00:00:00Z: promoted [88] (trace 0af7651916cd43dd8448eb211c80319c; raftctl trace get 0af7651916cd43dd8448eb211c80319c)
Conditions:
  TYPE        STATUS   REASON          MESSAGE
  Available   True     QuorumHealthy   2 of 3 voters healthy
";
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn exit_code_says_whether_the_cluster_is_available() {
        assert_eq!(status_exit_code(&fixture(true)), EXIT_OK);
        assert_eq!(status_exit_code(&fixture(false)), EXIT_UNAVAILABLE);
        let mut fresh = fixture(true);
        fresh.status = None;
        assert_eq!(status_exit_code(&fresh), EXIT_UNAVAILABLE);
        assert!(status_text(&fresh).contains("no status yet"));
    }

    #[test]
    fn json_output_keeps_the_status_as_written() {
        let v = status_json(&fixture(true));
        assert_eq!(v["name"], "demo");
        assert_eq!(v["status"]["members"][0]["nodeId"], "4521");
        assert_eq!(
            v["status"]["lastMembershipChange"]["traceId"],
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(v["paused"], false);
    }
}
