//! Issue 17: after quorum loss no member reports a leader, so neither the
//! operator's role labels nor `raftctl status` show one.

use std::time::Duration;

use raftkv_proto::v1 as pb;

use crate::util::*;

const PORT_BASE: u16 = 20300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_quorum_no_member_reports_a_leader() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let s = c.status(leader).await;
    assert_eq!(s.role, pb::Role::Leader as i32);
    assert!(s.healthy, "a leader with its quorum is healthy");

    tracing::info!("--- the two followers die: the leader is alone");
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &f in &followers {
        c.kill(f);
    }
    let s = wait_for(
        "the lone leader to stop reporting itself as leader",
        Duration::from_secs(10),
        || async {
            let s = c.status(leader).await;
            (s.role != pb::Role::Leader as i32).then_some(s)
        },
    )
    .await;
    assert_eq!(s.leader_id, 0, "it names no leader: {s:?}");
    assert!(!s.healthy, "a leader without a quorum is not healthy");

    tracing::info!("--- one follower comes back: the quorum, and the leader, return");
    c.spawn(followers[0]).await;
    let back = c.wait_leader(&[leader, followers[0]]).await;
    assert!(c.status(back).await.healthy);

    tracing::info!("--- the leader dies: the follower left names no leader");
    c.kill(back);
    let alone = if back == leader { followers[0] } else { leader };
    let s = wait_for(
        "the survivor to stop naming a leader",
        Duration::from_secs(10),
        || async {
            let s = c.status(alone).await;
            (s.leader_id == 0).then_some(s)
        },
    )
    .await;
    assert_ne!(s.role, pb::Role::Leader as i32, "{s:?}");
}
