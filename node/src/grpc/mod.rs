//! Client-facing gRPC services: KV ([`kv`], its streaming [`watch`]) and Cluster ([`cluster`]), where
//! their requests run ([`route`]), leader group commit of writes
//! ([`batcher`]), and the mapping of errors to gRPC codes ([`errors`]).

pub mod batcher;
pub mod cluster;
pub mod errors;
pub mod kv;
pub mod route;
pub mod watch;
