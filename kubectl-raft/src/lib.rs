//! `kubectl raft`: commands over a RaftCluster through the API server, as kubectl
//! does. The rendering and the exit-code decision are pure ([`render`]); `main.rs`
//! fetches and patches.

pub mod commands;
pub mod render;
