//! The calls a node makes outside openraft (ReadIndex, pre-vote, TimeoutNow)
//! reuse one kept connection per peer: a linearizable read on a follower used
//! to open (and close) a TCP connection to the leader per ReadIndex round,
//! with TLS a full handshake each, which halved TLS read throughput.

use crate::util::*;

const PORT_BASE: u16 = 28100;

/// TCP sockets of this machine (IPv4 and IPv6, any state, TIME_WAIT included)
/// whose remote end is 127.0.0.1:`port`: connections made to that listener
/// that are open or recently closed.
fn sockets_to(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|remote| remote.ends_with(&hex))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_reads_reuse_one_connection_to_the_leader() {
    let c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let leader_peer_port: u16 = c.nodes[leader]
        .peer_addr
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    {
        let mut kv = c.kv(leader);
        put(&mut kv, "k", "v").await.expect("put");
    }
    let mut kv = c.kv(follower);
    // One read first: whatever connections exist after it are the steady ones.
    get(&mut kv, "k", linearizable()).await.expect("read");
    let before = sockets_to(leader_peer_port);
    const READS: usize = 200;
    for _ in 0..READS {
        // Sequential: each read is its own ReadIndex round to the leader.
        get(&mut kv, "k", linearizable())
            .await
            .expect("linearizable read on a follower");
    }
    let after = sockets_to(leader_peer_port);
    // Replication (2 followers) and the kept side channels: a handful, not
    // one per read (a closed connection stays in TIME_WAIT for a minute).
    assert!(
        after <= before + 4,
        "{READS} follower reads left {after} sockets to the leader's peer port (before: {before}): a connection per ReadIndex round"
    );
}
