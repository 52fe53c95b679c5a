//! Issue 11, hole 7: a disk that is slow but working slows the cluster down;
//! it must not stop it. Every fsync of every node here takes 400 ms, longer
//! than the default vote timeout openraft 0.9 asks for (election timeout min,
//! 200 ms) and eight heartbeats (50 ms), at the default timings.

use std::time::{Duration, Instant};

use crate::util::*;

const PORT_BASE: u16 = 20700;

/// Before the fix no leader was ever elected: each vote's fsync outlasted the
/// 200 ms vote RPC timeout, so every election timed out (and had it won, each
/// AppendEntries carrying entries outlasted the 50 ms heartbeat timeout, so
/// nothing would have committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_400ms_fsyncs_on_every_node_a_leader_is_elected_and_kept_at_default_timings() {
    let env = [
        ("RAFTKV_FAULT_FSYNC_DELAY_PCT", "100"),
        ("RAFTKV_FAULT_FSYNC_DELAY", "400ms"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let c = TestCluster::start_with_env(3, PORT_BASE, env).await;
    // `init` waits (30 s) for a leader every node agrees on.
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let term = c.status(leader).await.term;

    // Writes commit: each one costs the leader's fsync and a follower's.
    let mut kv = c.kv(leader);
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(4) {
        put(&mut kv, &format!("k{written}"), "v")
            .await
            .unwrap_or_else(|e| panic!("write {written} on a slow but working disk: {e}"));
        written += 1;
    }
    assert!(written >= 2, "only {written} writes in 4 s");

    // ...and the leader keeps its term: followers whose own disk holds the
    // leader's message for 400 ms must not take that for a silent leader.
    for i in 0..3 {
        let s = c.status(i).await;
        assert_eq!(
            (s.term, s.leader_id),
            (term, c.status(leader).await.node_id),
            "node {i} after {written} writes: {s:?}"
        );
    }
    assert_all_present(
        &c,
        leader,
        &(0..written).map(|n| format!("k{n}")).collect::<Vec<_>>(),
    )
    .await;
}
