//! The peer plane: the internal `RaftPeer` gRPC service between members. The
//! client side openraft (and the pre-vote, transfer and ReadIndex code in
//! `raft/`) uses to reach other members ([`network`]), the server side
//! ([`server`]), and the envelope every peer RPC travels in ([`envelope`]:
//! cluster and node IDs checked before openraft sees a message). Transport
//! concerns live here, traces and fault injection of peer RPCs included, so
//! that `raft/` holds decisions only.

pub mod envelope;
pub mod network;
pub mod rto;
pub mod server;
