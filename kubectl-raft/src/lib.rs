//! `kubectl raft`: commands over a RaftCluster through the API server, as kubectl
//! does. The rendering and the exit-code decision are pure ([`render`]), so is
//! the choice of pod ([`target`]); the data commands run raftctl's own
//! commands ([`through`]) through a local relay ([`relay`]) whose streams are
//! port-forwards to that pod ([`portforward`]). `main.rs` fetches, patches and
//! wires.

pub mod commands;
pub mod portforward;
pub mod relay;
pub mod render;
pub mod target;
pub mod through;
pub mod tls;
