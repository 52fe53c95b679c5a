//! gRPC client for raftkv (used by raftctl, `raft-node local`, tests and forwarding).
