//! `member add-learner | promote | remove | transfer-leader`.

use raftkv_proto::v1;
use serde_json::json;

use super::output::{OutputFormat, json_doc};
use super::{CtlError, MemberCommand};
use raftkv_client::RaftClient;

/// Resolve a member given as a node ID, a name or a client address. Pure.
pub fn resolve(membership: &v1::Membership, given: &str) -> Result<u64, CtlError> {
    let all = || membership.voters.iter().chain(&membership.learners);
    if let Ok(id) = given.parse::<u64>() {
        return Ok(id);
    }
    let found: Vec<u64> = all()
        .filter(|m| m.name == given || m.client_addr == given)
        .map(|m| m.node_id)
        .collect();
    match found.as_slice() {
        [id] => Ok(*id),
        [] => Err(CtlError::failed(format!(
            "no member with id, name or address {given:?}"
        ))),
        _ => Err(CtlError::failed(format!(
            "{given:?} names more than one member; use the node id"
        ))),
    }
}

/// The voter set after promoting `ids`: current voters plus `ids`, which must
/// be learners (or voters already). Pure.
pub fn promoted_voters(membership: &v1::Membership, ids: &[u64]) -> Result<Vec<u64>, CtlError> {
    if membership.joint {
        return Err(CtlError::failed(
            "a membership change is in progress (joint consensus); retry when it is done",
        ));
    }
    let mut voters: Vec<u64> = membership.voters.iter().map(|m| m.node_id).collect();
    for id in ids {
        if voters.contains(id) {
            continue;
        }
        if !membership.learners.iter().any(|m| m.node_id == *id) {
            return Err(CtlError::failed(format!(
                "node {id} is not a learner; add it first with `raftctl member add-learner <client-addr>`"
            )));
        }
        voters.push(*id);
    }
    Ok(voters)
}

fn describe(m: Option<&v1::Membership>) -> String {
    let Some(m) = m else {
        return "membership unknown".into();
    };
    let ids = |v: &[v1::Member]| {
        v.iter()
            .map(|m| m.node_id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "voters [{}], learners [{}]{}",
        ids(&m.voters),
        ids(&m.learners),
        if m.joint { " (joint)" } else { "" }
    )
}

fn print_membership(what: String, resp: &v1::MembershipResponse, out: OutputFormat) {
    match out {
        OutputFormat::Table => println!("{what}; {}", describe(resp.membership.as_ref())),
        OutputFormat::Json => {
            let m = resp.membership.clone().unwrap_or_default();
            print!(
                "{}",
                json_doc(&json!({
                    "leader_id": resp.leader_id,
                    "joint": m.joint,
                    "log_index": m.log_index,
                    "voters": m.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
                    "learners": m.learners.iter().map(|v| v.node_id).collect::<Vec<_>>(),
                }))
            )
        }
    }
}

pub async fn run(c: &RaftClient, cmd: MemberCommand, out: OutputFormat) -> Result<(), CtlError> {
    match cmd {
        MemberCommand::AddLearner { client_addr } => {
            let st = c.status(&client_addr).await.map_err(|e| {
                CtlError::failed(format!("asking {client_addr} for its identity: {e}"))
            })?;
            if !st.cluster_id.is_empty() {
                let (_, leader) = c.leader_status().await?;
                if st.cluster_id != leader.cluster_id {
                    return Err(CtlError::failed(format!(
                        "node {} at {client_addr} belongs to another cluster ({})",
                        st.node_id, st.cluster_id
                    )));
                }
            }
            let member = v1::Member {
                node_id: st.node_id,
                client_addr: if st.client_addr.is_empty() {
                    client_addr.clone()
                } else {
                    st.client_addr.clone()
                },
                peer_addr: st.peer_addr.clone(),
                name: st.name.clone(),
            };
            let resp = c.add_learner(member).await?;
            print_membership(
                format!("added learner {} ({client_addr})", st.node_id),
                &resp,
                out,
            );
        }
        MemberCommand::Promote { ids } => {
            let (_, leader) = c.leader_status().await?;
            let m = leader.membership.unwrap_or_default();
            let ids = ids
                .iter()
                .map(|s| resolve(&m, s))
                .collect::<Result<Vec<_>, _>>()?;
            let voters = promoted_voters(&m, &ids)?;
            // Refused by the leader if the membership moved on since we read it.
            let resp = c
                .change_membership(voters, false, Some(m.log_index))
                .await?;
            let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            print_membership(format!("promoted {list}"), &resp, out);
        }
        MemberCommand::Remove { id } => {
            let (_, leader) = c.leader_status().await?;
            let id = resolve(&leader.membership.unwrap_or_default(), &id)?;
            let resp = c.remove_member(id).await?;
            print_membership(format!("removed {id}"), &resp, out);
        }
        MemberCommand::TransferLeader { id } => {
            let target = match id {
                None => 0,
                Some(id) => {
                    let (_, leader) = c.leader_status().await?;
                    resolve(&leader.membership.unwrap_or_default(), &id)?
                }
            };
            let resp = c.transfer_leader(target).await?;
            match out {
                OutputFormat::Table => println!(
                    "leadership moved from {} to {} (term {})",
                    resp.previous_leader_id, resp.new_leader_id, resp.term
                ),
                OutputFormat::Json => print!(
                    "{}",
                    json_doc(&json!({
                        "previous_leader_id": resp.previous_leader_id,
                        "new_leader_id": resp.new_leader_id,
                        "term": resp.term,
                    }))
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str) -> v1::Member {
        v1::Member {
            node_id: id,
            name: name.into(),
            client_addr: format!("10.0.0.{id}:7000"),
            peer_addr: String::new(),
        }
    }

    fn membership() -> v1::Membership {
        v1::Membership {
            voters: vec![m(1, "a"), m(2, "b")],
            learners: vec![m(3, "c")],
            ..Default::default()
        }
    }

    #[test]
    fn members_resolve_by_id_name_or_address() {
        assert_eq!(resolve(&membership(), "77").unwrap(), 77);
        assert_eq!(resolve(&membership(), "c").unwrap(), 3);
        assert_eq!(resolve(&membership(), "10.0.0.2:7000").unwrap(), 2);
        assert!(
            resolve(&membership(), "zz")
                .unwrap_err()
                .message
                .contains("no member")
        );
    }

    #[test]
    fn promotion_adds_learners_to_the_voters() {
        assert_eq!(promoted_voters(&membership(), &[3]).unwrap(), vec![1, 2, 3]);
        assert_eq!(promoted_voters(&membership(), &[2]).unwrap(), vec![1, 2]);
        let e = promoted_voters(&membership(), &[9]).unwrap_err();
        assert!(
            e.message.contains("node 9 is not a learner"),
            "{}",
            e.message
        );
        let mut joint = membership();
        joint.joint = true;
        assert!(promoted_voters(&joint, &[3]).is_err());
    }
}
