//! The gRPC contract shared by `raft-node`, `raftctl` and `raft-operator`.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod v1 {
    tonic::include_proto!("raftkv.v1");
}

pub use v1::*;

/// Metadata key on UNAVAILABLE errors: the client address of the leader, if known.
pub const LEADER_HINT_HEADER: &str = "x-raftkv-leader";
/// Metadata key set on a request a node forwards to the leader, so it is never
/// forwarded twice.
pub const FORWARDED_HEADER: &str = "x-raftkv-forwarded";
