//! Trace sampling: the node's policy (which spans never start a trace) on top
//! of the shared sampler, parent-based with a ratio and a per-process rate
//! limit ([`raftkv_telemetry::sampler`], re-exported here).

pub use raftkv_telemetry::sampler::*;

use super::semconv;

/// Span names that never start a trace (they are only kept as children).
/// Heartbeats and polls would otherwise use up the rate limit. So would
/// pre-votes: while a dead leader's lease runs out, every follower asks every
/// 50 ms and each refusal was a one-span trace on the voter (ten per failover
/// seen), taking tokens the election's own trace needs.
pub const NEVER_ROOT: &[&str] = &[
    semconv::PEER_APPEND_ENTRIES,
    semconv::PEER_PRE_VOTE,
    semconv::PEER_READ_INDEX,
    semconv::CLUSTER_STATUS,
    semconv::SPAN_APPLY,
    semconv::SPAN_LOG_APPEND,
];
