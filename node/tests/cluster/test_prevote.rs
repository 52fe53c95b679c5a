//! Hole 2 of issue 11 ("the pre-vote gate leaks"): only the current leader, at
//! its current term, may make a follower campaign with TimeoutNow. Before the
//! fix any peer could, at any term, and unseat a healthy leader.

use raftkv_proto::v1 as pb;
use raftkv_proto::v1::raft_peer_client::RaftPeerClient;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 20200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeout_now_is_refused_unless_it_comes_from_the_current_leader() {
    let c = TestCluster::start(3, PORT_BASE).await;
    let init = c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let term = c.status(leader).await.term;
    let (a_id, b_id, leader_id) = (
        c.status(a).await.node_id,
        c.status(b).await.node_id,
        c.status(leader).await.node_id,
    );
    let timeout_now = |from: u64, term: u64| pb::RaftRequest {
        cluster_id: init.cluster_id.clone(),
        target_node_id: a_id,
        from_node_id: from,
        payload: raftkv_node::peer::envelope::encode(&term)
            .expect("encode")
            .into(),
        ..Default::default()
    };
    let mut peer = RaftPeerClient::new(channel(&c.nodes[a].peer_addr));

    // A follower is not the leader: refused.
    let e = peer
        .timeout_now(timeout_now(b_id, term))
        .await
        .expect_err("TimeoutNow from a follower must be refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    // The leader, but at another term: refused.
    let e = peer
        .timeout_now(timeout_now(leader_id, term + 7))
        .await
        .expect_err("TimeoutNow at a wrong term must be refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    let s = c.status(leader).await;
    assert_eq!(s.role, pb::Role::Leader as i32, "the leader still leads");
    assert_eq!(s.term, term, "nobody campaigned");
}
