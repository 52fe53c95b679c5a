//! Span names and attribute keys, in one place.
//!
//! RPC spans follow the OpenTelemetry RPC semantic conventions as they stand
//! after the 2025-26 renames (semconv 1.39+, RPC "release candidate"):
//! - span name = `rpc.method` = the fully qualified method,
//!   `package.Service/Method` (`rpc.service` is gone);
//! - `rpc.system.name` = `"grpc"` (was `rpc.system`);
//! - `rpc.response.status_code` = the gRPC status code name (`"OK"`,
//!   `"UNAVAILABLE"`), `error.type` set to the same when the call failed;
//! - `server.address` / `server.port` on client spans, `client.address` on
//!   server spans; span kind CLIENT / SERVER (`otel.kind` in `tracing`).
//!
//! Raft attributes use the `raft.` namespace.

// --- RPC semantic conventions -------------------------------------------------
pub const RPC_SYSTEM_NAME: &str = "rpc.system.name";
pub const RPC_SYSTEM_GRPC: &str = "grpc";
pub const RPC_METHOD: &str = "rpc.method";
pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
pub const ERROR_TYPE: &str = "error.type";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const CLIENT_ADDRESS: &str = "client.address";

// --- raftkv RPC span names (= rpc.method) --------------------------------------
pub const PEER_APPEND_ENTRIES: &str = "raftkv.v1.RaftPeer/AppendEntries";
pub const PEER_VOTE: &str = "raftkv.v1.RaftPeer/Vote";
pub const PEER_PRE_VOTE: &str = "raftkv.v1.RaftPeer/PreVote";
pub const PEER_INSTALL_SNAPSHOT: &str = "raftkv.v1.RaftPeer/InstallSnapshot";
pub const PEER_READ_INDEX: &str = "raftkv.v1.RaftPeer/ReadIndex";
pub const KV_PUT: &str = "raftkv.v1.KV/Put";
pub const KV_DELETE: &str = "raftkv.v1.KV/Delete";
pub const KV_COMPARE_AND_SWAP: &str = "raftkv.v1.KV/CompareAndSwap";
pub const CLUSTER_STATUS: &str = "raftkv.v1.Cluster/Status";

// --- internal (non-RPC) span names ---------------------------------------------
/// The leader's `client_write` of one command: proposal until committed and applied.
pub const SPAN_PROPOSE: &str = "raft.propose";
/// A follower appending received entries to its log (write + fsync).
pub const SPAN_LOG_APPEND: &str = "raft.log.append";
/// Applying a committed entry to the state machine.
pub const SPAN_APPLY: &str = "raft.apply";
pub const SPAN_SNAPSHOT_BUILD: &str = "raft.snapshot.build";
pub const SPAN_SNAPSHOT_INSTALL: &str = "raft.snapshot.install";
/// A membership change on the leader, until joint and final configs commit.
pub const SPAN_MEMBERSHIP: &str = "raft.membership";
/// A candidate's campaign (parent of its Vote requests).
pub const SPAN_ELECTION: &str = "raft.election";

// --- Raft attributes -------------------------------------------------------------
pub const RAFT_NODE_ID: &str = "raft.node_id";
pub const RAFT_TARGET_NODE_ID: &str = "raft.target_node_id";
pub const RAFT_TERM: &str = "raft.term";
pub const RAFT_INDEX: &str = "raft.index";
pub const RAFT_ENTRIES: &str = "raft.entries";
pub const RAFT_BYTES: &str = "raft.bytes";

// --- span events -------------------------------------------------------------------
/// An injected fault (see `faults.rs`); attribute `fault.kind`.
pub const EVENT_FAULT_INJECTED: &str = "fault.injected";
pub const FAULT_KIND: &str = "fault.kind";
pub const EVENT_COMMITTED: &str = "raft.committed";

/// The gRPC status code name used for `rpc.response.status_code`.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
