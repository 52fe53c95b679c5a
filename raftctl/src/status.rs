//! `status` (one row per member) and `cluster init`.

use std::time::Duration;

use raftkv_proto::v1;
use serde_json::{Value, json};

use super::CtlError;
use super::output::{OutputFormat, json_doc, role_name, table};
use raftkv_client::{self as client, ClientOptions, RaftClient, StatusAll};

/// One member (or one endpoint that is not a member) as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberRow {
    pub id: Option<u64>,
    pub name: String,
    pub client_addr: String,
    pub peer_addr: String,
    /// None when the node is not in the membership.
    pub voter: Option<bool>,
    /// Role name, or `unreachable`.
    pub role: String,
    pub status: Option<v1::StatusResponse>,
    /// Replication lag as the leader sees it.
    pub lag: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    pub cluster_id: String,
    /// 0 = no leader known.
    pub leader_id: u64,
    pub membership: Option<v1::Membership>,
    pub rows: Vec<MemberRow>,
}

/// The reply to trust for cluster-wide facts: the leader's (highest term), else
/// the one with the newest membership.
fn reference(statuses: &StatusAll) -> Option<&v1::StatusResponse> {
    let ok = || statuses.iter().filter_map(|(_, r)| r.as_ref().ok());
    ok().filter(|s| s.role == v1::Role::Leader as i32)
        .max_by_key(|s| s.term)
        .or_else(|| {
            ok().max_by_key(|s| {
                (
                    s.membership.as_ref().map(|m| m.log_index).unwrap_or(0),
                    s.term,
                )
            })
        })
}

/// Build the view from every Status reply we have. Pure.
pub fn build_view(statuses: &StatusAll) -> StatusView {
    let mut view = StatusView::default();
    let reference = reference(statuses);
    if let Some(r) = reference {
        view.cluster_id = r.cluster_id.clone();
        view.leader_id = r.leader_id;
        view.membership = r
            .membership
            .clone()
            .filter(|m| !m.voters.is_empty() || !m.learners.is_empty());
    }
    let leader = statuses
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| s.role == v1::Role::Leader as i32 && s.node_id == view.leader_id);
    let mut used = vec![false; statuses.len()];
    if let Some(m) = &view.membership {
        let members = m
            .voters
            .iter()
            .map(|v| (v, true))
            .chain(m.learners.iter().map(|l| (l, false)));
        for (member, voter) in members {
            let mut row = MemberRow {
                id: Some(member.node_id),
                name: member.name.clone(),
                client_addr: member.client_addr.clone(),
                peer_addr: member.peer_addr.clone(),
                voter: Some(voter),
                role: "unknown".into(),
                lag: leader
                    .and_then(|l| l.progress.iter().find(|p| p.node_id == member.node_id))
                    .map(|p| p.lag),
                ..Default::default()
            };
            let by_id = statuses
                .iter()
                .position(|(_, r)| r.as_ref().is_ok_and(|s| s.node_id == member.node_id));
            let by_addr = || {
                statuses
                    .iter()
                    .position(|(ep, r)| r.is_err() && *ep == member.client_addr)
            };
            if let Some(i) = by_id.or_else(by_addr) {
                used[i] = true;
                fill(&mut row, &statuses[i].1);
            }
            view.rows.push(row);
        }
    }
    for (i, (ep, res)) in statuses.iter().enumerate() {
        if used[i] {
            continue;
        }
        let mut row = MemberRow {
            client_addr: ep.clone(),
            ..Default::default()
        };
        if let Ok(s) = res {
            row.id = Some(s.node_id);
            row.name = s.name.clone();
            row.peer_addr = s.peer_addr.clone();
            if !s.client_addr.is_empty() {
                row.client_addr = s.client_addr.clone();
            }
        }
        fill(&mut row, res);
        view.rows.push(row);
    }
    view
}

fn fill(row: &mut MemberRow, res: &client::Result<v1::StatusResponse>) {
    match res {
        Ok(s) => {
            row.role = role_name(s.role).to_string();
            row.status = Some(s.clone());
        }
        Err(e) => {
            row.role = "unreachable".into();
            row.error = Some(e.to_string());
        }
    }
}

pub fn render_table(view: &StatusView) -> String {
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = view
        .rows
        .iter()
        .map(|r| {
            let s = r.status.as_ref();
            let num = |f: fn(&v1::StatusResponse) -> u64| {
                s.map(|s| f(s).to_string()).unwrap_or_else(dash)
            };
            let role = match (r.voter, r.role.as_str()) {
                (Some(false), "unreachable") => "learner (unreachable)".to_string(),
                (None, role) if s.is_some() => format!("{role} (not a member)"),
                (_, role) => role.to_string(),
            };
            vec![
                r.id.map(|i| i.to_string()).unwrap_or_else(dash),
                if r.name.is_empty() {
                    dash()
                } else {
                    r.name.clone()
                },
                r.client_addr.clone(),
                role,
                num(|s| s.term),
                s.map(|s| {
                    if s.leader_id == 0 {
                        dash()
                    } else {
                        s.leader_id.to_string()
                    }
                })
                .unwrap_or_else(dash),
                num(|s| s.commit_index),
                num(|s| s.applied_index),
                num(|s| s.revision),
                r.lag.map(|l| l.to_string()).unwrap_or_else(dash),
                s.map(|s| s.healthy.to_string()).unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID", "NAME", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "REVISION",
            "LAG", "HEALTHY",
        ],
        &rows,
    );
    if let Some(m) = &view.membership {
        out.push_str(&format!(
            "cluster {}, leader {}, membership at log index {}{}\n",
            if view.cluster_id.is_empty() {
                "-"
            } else {
                &view.cluster_id
            },
            if view.leader_id == 0 {
                "none".to_string()
            } else {
                view.leader_id.to_string()
            },
            m.log_index,
            if m.joint {
                " (joint consensus in progress)"
            } else {
                ""
            }
        ));
    }
    out
}

pub fn render_json(view: &StatusView) -> Value {
    let members: Vec<Value> = view
        .rows
        .iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            let reachable = r.status.is_some();
            let mut m = json!({
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "voter": r.voter,
                "client_addr": r.client_addr,
                "peer_addr": r.peer_addr,
                "term": reachable.then_some(s.term),
                "leader_id": reachable.then_some(s.leader_id),
                "commit_index": reachable.then_some(s.commit_index),
                "applied_index": reachable.then_some(s.applied_index),
                "last_log_index": reachable.then_some(s.last_log_index),
                "snapshot_index": reachable.then_some(s.snapshot_index),
                "revision": reachable.then_some(s.revision),
                "healthy": reachable.then_some(s.healthy),
                "lag": r.lag,
            });
            if let Some(e) = &r.error {
                m["error"] = json!(e);
            }
            m
        })
        .collect();
    let membership = view.membership.as_ref().map(|m| {
        json!({
            "log_index": m.log_index,
            "joint": m.joint,
            "voters": m.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
            "learners": m.learners.iter().map(|v| v.node_id).collect::<Vec<_>>(),
        })
    });
    let leader_addr = view
        .rows
        .iter()
        .find(|r| view.leader_id != 0 && r.id == Some(view.leader_id))
        .map(|r| r.client_addr.clone());
    json!({
        "cluster_id": view.cluster_id,
        "leader_id": view.leader_id,
        "leader_addr": leader_addr,
        "membership": membership,
        "members": members,
    })
}

/// Status of the given endpoints plus any member they name that was not asked.
pub async fn collect(c: &RaftClient) -> StatusAll {
    let mut all = c.status_all().await;
    let asked: Vec<String> = all.iter().map(|(ep, _)| ep.clone()).collect();
    let view = build_view(&all);
    let missing: Vec<String> = view
        .rows
        .iter()
        .filter(|r| r.voter.is_some() && r.status.is_none() && r.error.is_none())
        .map(|r| r.client_addr.clone())
        .filter(|a| !a.is_empty() && !asked.contains(a))
        .collect();
    for addr in missing {
        let res = c.status(&addr).await;
        all.push((addr, res));
    }
    all
}

pub async fn status(c: &RaftClient, out: OutputFormat) -> Result<(), CtlError> {
    let all = collect(c).await;
    if all.iter().all(|(_, r)| r.is_err()) {
        let errs: Vec<String> = all
            .iter()
            .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        return Err(CtlError::failed(format!(
            "no endpoint answered: {}",
            errs.join("; ")
        )));
    }
    let view = build_view(&all);
    match out {
        OutputFormat::Table => {
            print!("{}", render_table(&view));
            for r in view.rows.iter().filter(|r| r.error.is_some()) {
                eprintln!("warning: {}", r.error.as_deref().unwrap_or_default());
            }
        }
        OutputFormat::Json => print!("{}", json_doc(&render_json(&view))),
    }
    Ok(())
}

pub async fn cluster_init(
    endpoints: Vec<String>,
    opts: ClientOptions,
    wait: Duration,
    out: OutputFormat,
) -> Result<(), CtlError> {
    let outcome = client::cluster_init(endpoints, opts, wait).await?;
    match out {
        OutputFormat::Table => {
            println!(
                "cluster {} initialized with {} voters; leader {} at {}",
                outcome.cluster_id,
                outcome.members.len(),
                outcome.leader_id,
                outcome.leader_addr
            );
            let rows: Vec<Vec<String>> = outcome
                .members
                .iter()
                .map(|m| {
                    vec![
                        m.node_id.to_string(),
                        m.name.clone(),
                        m.client_addr.clone(),
                        m.peer_addr.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["ID", "NAME", "CLIENT ADDRESS", "PEER ADDRESS"], &rows)
            );
        }
        OutputFormat::Json => print!(
            "{}",
            json_doc(&json!({
                "cluster_id": outcome.cluster_id,
                "leader_id": outcome.leader_id,
                "leader_addr": outcome.leader_addr,
                "members": outcome.members.iter().map(|m| json!({
                    "id": m.node_id, "name": m.name, "client_addr": m.client_addr, "peer_addr": m.peer_addr,
                })).collect::<Vec<_>>(),
            }))
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> v1::Member {
        v1::Member {
            node_id: id,
            client_addr: format!("127.0.0.1:{}", 7000 + 2 * id),
            peer_addr: format!("127.0.0.1:{}", 7001 + 2 * id),
            name: format!("node-{id}"),
        }
    }

    fn st(id: u64, role: v1::Role, leader: u64) -> v1::StatusResponse {
        v1::StatusResponse {
            node_id: id,
            cluster_id: "c1".into(),
            role: role as i32,
            term: 3,
            leader_id: leader,
            commit_index: 10,
            applied_index: 10,
            client_addr: member(id).client_addr,
            membership: Some(v1::Membership {
                log_index: 1,
                voters: vec![member(1), member(2)],
                learners: vec![member(3)],
                ..Default::default()
            }),
            progress: vec![v1::PeerProgress {
                node_id: 2,
                matched_index: 9,
                lag: 1,
            }],
            healthy: true,
            ..Default::default()
        }
    }

    fn down(ep: &str) -> client::Result<v1::StatusResponse> {
        Err(client::Error::Rpc {
            code: tonic::Code::Unavailable,
            message: "connection refused".into(),
            endpoint: ep.into(),
            leader_hint: None,
            attempts: 1,
        })
    }

    fn sample() -> StatusAll {
        vec![
            ("127.0.0.1:7002".into(), Ok(st(1, v1::Role::Leader, 1))),
            ("127.0.0.1:7004".into(), Ok(st(2, v1::Role::Follower, 1))),
            ("127.0.0.1:7006".into(), down("127.0.0.1:7006")),
        ]
    }

    #[test]
    fn view_has_one_row_per_member_in_membership_order() {
        let v = build_view(&sample());
        assert_eq!(v.leader_id, 1);
        assert_eq!(v.cluster_id, "c1");
        assert_eq!(v.rows.len(), 3);
        assert_eq!(v.rows[0].role, "leader");
        assert_eq!(v.rows[1].lag, Some(1));
        assert_eq!(v.rows[2].role, "unreachable");
        assert_eq!(v.rows[2].voter, Some(false));
        assert!(
            v.rows[2]
                .error
                .as_deref()
                .unwrap()
                .contains("connection refused")
        );
    }

    #[test]
    fn json_has_leader_and_member_fields() {
        let doc = render_json(&build_view(&sample()));
        assert_eq!(doc["leader_id"], 1);
        assert_eq!(doc["leader_addr"], "127.0.0.1:7002");
        let m = &doc["members"][1];
        for field in [
            "id",
            "role",
            "client_addr",
            "term",
            "commit_index",
            "applied_index",
        ] {
            assert!(!m[field].is_null(), "{field} missing in {m}");
        }
        assert_eq!(m["role"], "follower");
        assert_eq!(doc["members"][2]["term"], Value::Null);
        assert_eq!(doc["membership"]["learners"][0], 3);
    }

    #[test]
    fn table_shows_every_member_and_a_footer() {
        let t = render_table(&build_view(&sample()));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("leader"));
        assert!(lines[3].contains("learner (unreachable)"));
        assert!(
            lines[4].starts_with("cluster c1, leader 1, membership at log index 1"),
            "{t}"
        );
    }

    #[test]
    fn fresh_nodes_are_listed_without_a_membership() {
        let fresh = v1::StatusResponse {
            node_id: 42,
            role: v1::Role::Uninitialized as i32,
            client_addr: "127.0.0.1:7000".into(),
            ..Default::default()
        };
        let v = build_view(&vec![("127.0.0.1:7000".into(), Ok(fresh))]);
        assert!(v.membership.is_none());
        assert_eq!(v.rows.len(), 1);
        assert_eq!(v.rows[0].id, Some(42));
        assert!(render_table(&v).contains("uninitialized (not a member)"));
    }
}
