//! raft-node: a Raft-replicated key-value server.
//!
//! Layout (one concern per module; lower layers never import higher ones):
//! - [`typ`]: the openraft type configuration and concrete aliases.
//! - [`kv`]: the key-value data model and the commands that go through the log.
//! - [`storage`]: durable Raft log, vote, state machine, snapshots, node identity.
//! - [`raft`]: consensus on top of openraft: the pre-vote, leader transfer, read
//!   admission and quorum counting, each a pure decision plus its driver.
//! - [`peer`]: the peer plane (client and server of the internal Raft service).
//! - [`node`]: a running node's shared state behind narrow methods.
//! - [`grpc`]: the client-facing KV and Cluster services and their routing.
//! - [`health`]: the gRPC health (readiness) predicate and reporter.
//! - [`observability`]: traces, metrics, fault injection.
//! - [`security`]: TLS on both listeners and who may call what.
//! - [`force_new_cluster`]: the way out of a lost quorum (one survivor
//!   becomes a new one-voter cluster).
//! - [`app`]: `start_node`, the wiring of all of the above.
//! - [`local`]: `raft-node local`, an N-process cluster on loopback.

pub mod app;
pub mod backup;
pub mod bootstrap_restore;
pub mod config;
pub mod force_new_cluster;
pub mod grpc;
pub mod health;
pub mod kv;
pub mod local;
pub mod membership;
pub mod node;
pub mod observability;
pub mod peer;
pub mod raft;
pub mod security;
pub mod storage;
pub mod telemetry;
pub mod typ;

pub use typ::{NodeId, NodeInfo, TypeConfig};
