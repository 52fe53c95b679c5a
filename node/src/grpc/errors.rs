//! How node-side failures become gRPC statuses a person (or raftctl) can act on.

use openraft::error::{
    ChangeMembershipError, ClientWriteError, Fatal, ForwardToLeader, InitializeError, RaftError,
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
        ChangeMembershipError::InProgress(_) => {
            Status::failed_precondition(format!("another membership change is in progress: {c}"))
        }
        ChangeMembershipError::EmptyMembership(_) => Status::invalid_argument(c.to_string()),
        ChangeMembershipError::LearnerNotFound(_) => {
            Status::failed_precondition(format!("{c}; add the node as a learner first"))
        }
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
