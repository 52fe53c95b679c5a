//! `cluster init`: the one-time bootstrap of fresh nodes (invariant 2 of docs/design.md:
//! refused if any node already has a cluster ID or a membership).

use std::time::{Duration, Instant};

use raftkv_proto::v1;

use super::{ClientOptions, Error, RaftClient, Result, StatusAll};

/// How often `wait_for_leader` polls.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub cluster_id: String,
    pub leader_id: u64,
    /// The leader's client address.
    pub leader_addr: String,
    pub members: Vec<v1::Member>,
}

/// Decide the initial voters from every endpoint's Status, or refuse with a
/// message naming the node at fault. Pure: no I/O.
pub fn plan_init(statuses: &StatusAll) -> Result<Vec<v1::Member>> {
    let mut members: Vec<v1::Member> = Vec::new();
    let mut seen: Vec<(u64, &str)> = Vec::new();
    if statuses.is_empty() {
        return Err(Error::NoEndpoints);
    }
    for (ep, res) in statuses {
        let st = res.as_ref().map_err(|e| {
            Error::InitRefused(format!(
                "{ep} is unreachable ({e}); every node must answer before init"
            ))
        })?;
        if !st.cluster_id.is_empty() {
            return Err(Error::InitRefused(format!(
                "node {} at {ep} already belongs to cluster {}; nothing was changed",
                st.node_id, st.cluster_id
            )));
        }
        if let Some(m) = &st.membership
            && (!m.voters.is_empty() || !m.learners.is_empty())
        {
            let ids: Vec<String> = m
                .voters
                .iter()
                .chain(&m.learners)
                .map(|m| m.node_id.to_string())
                .collect();
            return Err(Error::InitRefused(format!(
                "node {} at {ep} already has a membership (members {}); nothing was changed",
                st.node_id,
                ids.join(",")
            )));
        }
        if st.node_id == 0 {
            return Err(Error::InitRefused(format!(
                "node at {ep} reports node id 0"
            )));
        }
        if let Some((_, other)) = seen.iter().find(|(id, _)| *id == st.node_id) {
            return Err(Error::InitRefused(format!(
                "{other} and {ep} are the same node (id {}); list each node once",
                st.node_id
            )));
        }
        if st.peer_addr.is_empty() {
            return Err(Error::InitRefused(format!(
                "node {} at {ep} reports no peer address",
                st.node_id
            )));
        }
        seen.push((st.node_id, ep));
        members.push(v1::Member {
            node_id: st.node_id,
            client_addr: if st.client_addr.is_empty() {
                ep.clone()
            } else {
                st.client_addr.clone()
            },
            peer_addr: st.peer_addr.clone(),
            name: st.name.clone(),
        });
    }
    Ok(members)
}

/// Bootstrap a cluster of the nodes at `endpoints`: check every node is fresh,
/// send Initialize with all of them as voters to the first endpoint, and wait
/// (up to `leader_timeout`) until a leader is elected.
pub async fn cluster_init(
    endpoints: Vec<String>,
    opts: ClientOptions,
    leader_timeout: Duration,
) -> Result<InitOutcome> {
    let client = RaftClient::connect(endpoints, opts)?;
    let statuses = client.status_all().await;
    let members = plan_init(&statuses)?;
    let first = statuses[0].0.clone();
    tracing::debug!(endpoint = %first, members = members.len(), "initializing cluster");
    let resp = client.initialize(&first, members.clone()).await?;
    let (leader_addr, leader) = wait_for_leader(&client, leader_timeout).await?;
    Ok(InitOutcome {
        cluster_id: resp.cluster_id,
        leader_id: leader.node_id,
        leader_addr,
        members,
    })
}

/// Poll the client's endpoints until one reports itself leader; returns its
/// address and Status.
pub async fn wait_for_leader(
    client: &RaftClient,
    timeout: Duration,
) -> Result<(String, v1::StatusResponse)> {
    let started = Instant::now();
    loop {
        match client.leader_status().await {
            Ok(found) => return Ok(found),
            Err(e) if started.elapsed() >= timeout => {
                let last = match e {
                    Error::NoLeader { last, .. } => last,
                    other => other.to_string(),
                };
                return Err(Error::NoLeader {
                    waited: started.elapsed(),
                    last,
                });
            }
            Err(_) => tokio::time::sleep(LEADER_POLL_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(id: u64, port: u16) -> v1::StatusResponse {
        v1::StatusResponse {
            node_id: id,
            role: v1::Role::Uninitialized as i32,
            client_addr: format!("127.0.0.1:{port}"),
            peer_addr: format!("127.0.0.1:{}", port + 1),
            name: format!("node-{id}"),
            ..Default::default()
        }
    }

    fn ep(port: u16) -> String {
        format!("127.0.0.1:{port}")
    }

    #[test]
    fn fresh_nodes_become_the_initial_voters() {
        let all: StatusAll = vec![
            (ep(7000), Ok(fresh(11, 7000))),
            (ep(7002), Ok(fresh(22, 7002))),
        ];
        let m = plan_init(&all).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].node_id, 11);
        assert_eq!(m[1].peer_addr, "127.0.0.1:7003");
        assert_eq!(m[1].name, "node-22");
    }

    #[test]
    fn a_node_with_a_cluster_id_is_refused_by_name() {
        let mut b = fresh(22, 7002);
        b.cluster_id = "c-1".into();
        let all: StatusAll = vec![(ep(7000), Ok(fresh(11, 7000))), (ep(7002), Ok(b))];
        let e = plan_init(&all).unwrap_err().to_string();
        assert!(
            e.contains("node 22 at 127.0.0.1:7002 already belongs to cluster c-1"),
            "{e}"
        );
    }

    #[test]
    fn a_node_with_a_membership_is_refused() {
        let mut b = fresh(22, 7002);
        b.membership = Some(v1::Membership {
            voters: vec![v1::Member {
                node_id: 5,
                ..Default::default()
            }],
            ..Default::default()
        });
        let all: StatusAll = vec![(ep(7002), Ok(b))];
        let e = plan_init(&all).unwrap_err().to_string();
        assert!(e.contains("already has a membership (members 5)"), "{e}");
    }

    #[test]
    fn an_unreachable_node_is_refused() {
        let down = Error::Rpc {
            code: tonic::Code::Unavailable,
            message: "connection refused".into(),
            endpoint: ep(7004),
            leader_hint: None,
            attempts: 1,
        };
        let all: StatusAll = vec![(ep(7000), Ok(fresh(11, 7000))), (ep(7004), Err(down))];
        let e = plan_init(&all).unwrap_err().to_string();
        assert!(e.contains("127.0.0.1:7004 is unreachable"), "{e}");
    }

    #[test]
    fn the_same_node_twice_is_refused() {
        let all: StatusAll = vec![
            (ep(7000), Ok(fresh(11, 7000))),
            ("localhost:7000".into(), Ok(fresh(11, 7000))),
        ];
        let e = plan_init(&all).unwrap_err().to_string();
        assert!(e.contains("are the same node (id 11)"), "{e}");
    }
}
