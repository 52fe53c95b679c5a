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

/// Hole 3 of issue 11 (check-quorum): a leader that no quorum has answered
/// for an election timeout refuses writes at once, with a retryable error
/// that says why, instead of accepting a proposal that cannot commit and
/// holding the client until its deadline. Before the fix the write below was
/// accepted by openraft and waited for the whole 5 s client deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_quorum_refuses_writes_at_once() {
    let mut c = TestCluster::start(3, PORT_BASE + 20).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let mut kv = c.kv(leader);
    put(&mut kv, "before", "1")
        .await
        .expect("a write with a quorum");

    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &f in &followers {
        c.kill(f);
    }
    // openraft still calls it leader: no one has told it otherwise.
    wait_for(
        "the lone leader to notice that no quorum answers",
        Duration::from_secs(10),
        || async { (c.status(leader).await.role != pb::Role::Leader as i32).then_some(()) },
    )
    .await;

    let mut req = tonic::Request::new(pb::PutRequest {
        session: None,
        key: "cut-off".into(),
        value: "x".into(),
    });
    req.set_timeout(Duration::from_secs(5));
    let t0 = std::time::Instant::now();
    let err = kv
        .put(req)
        .await
        .expect_err("a cut-off leader cannot commit");
    let took = t0.elapsed();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no quorum"), "{err:?}");
    assert!(
        took < Duration::from_secs(2),
        "refused at once, not after the client's deadline: took {took:?}"
    );

    tracing::info!("--- a follower comes back: the same member accepts writes again");
    c.spawn(followers[0]).await;
    let back = c.wait_leader(&[leader, followers[0]]).await;
    let mut kv = c.kv(back);
    wait_for("a write to succeed again", Duration::from_secs(10), || {
        let mut kv = kv.clone();
        async move { put(&mut kv, "after", "2").await.ok() }
    })
    .await;
    let got = get(&mut kv, "before", linearizable()).await.unwrap();
    assert_eq!(got.kv.map(|kv| kv.value), Some(b"1".to_vec()));
}
