//! The internal Raft peer protocol: the client side used by openraft to reach
//! other members ([`network`]), the server side ([`server`]), the envelope
//! every peer RPC travels in ([`envelope`]) and what a follower remembers of
//! its last contact with a leader ([`contact`]).

pub mod contact;
pub mod election;
pub mod envelope;
pub mod network;
pub mod server;
