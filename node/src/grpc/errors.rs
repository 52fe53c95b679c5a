//! How node-side failures become gRPC statuses a person (or raftctl) can act on.

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader,
    InitializeError, RaftError,
};
use raftkv_proto::LEADER_HINT_HEADER;
use tonic::Status;

use crate::kv::InputError;
use crate::{NodeId, NodeInfo};

pub fn unavailable_with_hint(msg: impl Into<String>, leader_addr: Option<&str>) -> Status {
    let mut s = Status::unavailable(msg.into());
    if let Some(addr) = leader_addr
        && let Ok(v) = addr.parse()
    {
        s.metadata_mut().insert(LEADER_HINT_HEADER, v);
    }
    s
}

pub fn not_leader(f: &ForwardToLeader<NodeId, NodeInfo>) -> Status {
    match (&f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => unavailable_with_hint(
            format!(
                "this node is not the leader; the leader is {id} at {}",
                node.client_addr
            ),
            Some(&node.client_addr),
        ),
        _ => Status::unavailable(
            "no leader is known right now (election in progress?); retry shortly",
        ),
    }
}

pub fn fatal(f: &Fatal<NodeId>) -> Status {
    match f {
        Fatal::Stopped => Status::unavailable("this node is shutting down"),
        other => Status::internal(format!("raft stopped on this node: {other}")),
    }
}

pub fn input(e: InputError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn client_write(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => change_membership(&c),
        RaftError::Fatal(f) => fatal(&f),
    }
}

pub fn change_membership(c: &ChangeMembershipError<NodeId>) -> Status {
    match c {
        ChangeMembershipError::InProgress(p) => Status::failed_precondition(format!(
            "another membership change (log index {}) has not committed yet; retry when it has",
            p.membership_log_id.map_or(0, |l| l.index)
        )),
        ChangeMembershipError::EmptyMembership(_) => Status::invalid_argument(c.to_string()),
        ChangeMembershipError::LearnerNotFound(_) => {
            Status::failed_precondition(format!("{c}; add the node as a learner first"))
        }
    }
}

/// A linearizable read's leadership check, in words rather than openraft's
/// debug dump of the membership.
pub fn check_is_leader(e: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeInfo>>) -> Status {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            let answered: Vec<String> = q.got.iter().map(|id| id.to_string()).collect();
            Status::unavailable(format!(
                "this leader could not confirm it still leads: only [{}] answered, not a quorum (majority lost or partitioned?); retry, or read with stale consistency",
                answered.join(", ")
            ))
        }
        RaftError::Fatal(f) => fatal(&f),
    }
}

pub fn initialize(e: RaftError<NodeId, InitializeError<NodeId, NodeInfo>>) -> Status {
    match e {
        RaftError::APIError(InitializeError::NotAllowed(n)) => Status::failed_precondition(
            format!("this node already has a membership, refusing to initialize: {n}"),
        ),
        RaftError::APIError(InitializeError::NotInMembers(n)) => {
            Status::invalid_argument(n.to_string())
        }
        RaftError::Fatal(f) => fatal(&f),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::error::{InProgress, QuorumNotEnough};

    use super::*;

    #[test]
    fn a_read_without_quorum_says_so_without_a_membership_dump() {
        let e = RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(QuorumNotEnough {
            cluster: "{voters:[{1:NodeInfo { client_addr: \"x\" }}]}".into(),
            got: BTreeSet::from([1]),
        }));
        let s = check_is_leader(e);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(s.message().contains("only [1] answered"), "{}", s.message());
        assert!(!s.message().contains("NodeInfo"), "{}", s.message());
    }

    #[test]
    fn a_change_in_progress_names_its_log_index() {
        let c = ChangeMembershipError::InProgress(InProgress {
            committed: None,
            membership_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 1),
                42,
            )),
        });
        let s = change_membership(&c);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("log index 42"), "{}", s.message());
        assert!(!s.message().contains("LogId"), "{}", s.message());
    }
}
