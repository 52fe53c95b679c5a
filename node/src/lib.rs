//! raft-node: a Raft-replicated key-value server.
//!
//! Layout (one concern per module):
//! - [`typ`]: the openraft type configuration and concrete aliases.
//! - [`kv`]: the key-value data model and the commands that go through the log.
//! - [`storage`]: durable Raft log, vote, state machine, snapshots, node identity.
//! - [`raft`]: the peer network (client and server of the internal Raft service).
//! - [`grpc`]: the client-facing KV and Cluster services.
//! - [`client`]: a gRPC client used by `raftctl`, tests and node-to-node forwarding.
//! - [`local`]: `raft-node local`, an N-process cluster on loopback.

pub mod app;
pub mod client;
pub mod config;
pub mod ctl;
pub mod grpc;
pub mod health;
pub mod kv;
pub mod local;
pub mod observability;
pub mod raft;
pub mod read_batch;
pub mod storage;
pub mod telemetry;
pub mod typ;

pub use typ::{NodeId, NodeInfo, TypeConfig};
