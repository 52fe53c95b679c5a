//! Client-facing gRPC services: KV ([`kv`]) and Cluster ([`cluster`]),
//! plus the mapping of errors to gRPC codes ([`errors`]).

pub mod cluster;
pub mod errors;
pub mod kv;
