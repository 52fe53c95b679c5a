//! Leader loss: `kill -9` of the leader under a steady writer loses no
//! acknowledged write, a new leader takes writes, and the old leader rejoins
//! under its old ID. Leader transfer hands off to the chosen voter.

use std::time::{Duration, Instant};

use raftkv_proto::v1 as pb;

use crate::util::*;

const PORT_BASE: u16 = 22000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let old_id = c.status(leader).await.node_id;

    tracing::info!("--- writer running");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(run_writer(c.endpoints(), "w".into(), stop));
    wait_for("some writes", WAIT, || async {
        let s = status_of(&c.nodes[leader].client_addr).await.ok()?;
        (s.revision >= 50).then_some(())
    })
    .await;

    tracing::info!("--- kill -9 the leader {leader}");
    let killed_at = Instant::now();
    c.kill(leader);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = c.wait_leader(&others).await;
    let kv = c.kv(new_leader);
    wait_for("a write acknowledged by the new leader", WAIT, || {
        let mut kv = kv.clone();
        async move { put(&mut kv, "after-failover", "1").await.ok() }
    })
    .await;
    let failover = killed_at.elapsed();
    tracing::info!(?failover, "new leader took a write");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );

    tracing::info!("--- restart the old leader: same ID, catches up, no membership change");
    let membership_before = c.status(new_leader).await.membership.unwrap();
    c.spawn(leader).await;
    let s = c.status(leader).await;
    assert_eq!(s.node_id, old_id, "a restarted node keeps its ID");
    stop_tx.send(true).unwrap();
    let acked = writer.await.unwrap();
    assert!(
        acked.len() > 50,
        "writer made progress ({} writes)",
        acked.len()
    );
    let target = c.status(new_leader).await.commit_index;
    wait_for("old leader to catch up", WAIT, || async {
        let s = status_of(&c.nodes[leader].client_addr).await.ok()?;
        (s.applied_index >= target && s.role == pb::Role::Follower as i32).then_some(())
    })
    .await;
    let membership_after = c.status(new_leader).await.membership.unwrap();
    assert_eq!(
        membership_before.voters, membership_after.voters,
        "restart changed no membership"
    );

    tracing::info!("--- every acknowledged write is on every node");
    for i in 0..3 {
        assert_all_present(&c, i, &acked).await;
    }
    // The cluster still takes writes, at whichever node leads now. Leadership
    // moved once more after the restart in one CI run of 2026-12-02 (under load;
    // no write lost): logged so a regression in that is visible, not failed on.
    let leader_now = c.wait_leader(&[0, 1, 2]).await;
    if leader_now != new_leader {
        tracing::warn!(
            new_leader,
            leader_now,
            "leadership moved again after the restart"
        );
    }
    let _ = put(&mut c.kv(leader_now), "done", "1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_to_the_chosen_voter() {
    let c = TestCluster::start(3, PORT_BASE + 20).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    put(&mut c.kv(leader), "k", "v").await.unwrap();
    let target = (leader + 1) % 3;
    let target_id = c.status(target).await.node_id;
    let before = c.status(leader).await.term;

    tracing::info!("--- transfer through a follower (forwarded to the leader)");
    let via = (leader + 2) % 3;
    let resp = c
        .cluster(via)
        .transfer_leader(pb::TransferLeaderRequest {
            target_node_id: target_id,
        })
        .await
        .expect("transfer leader")
        .into_inner();
    assert_eq!(resp.new_leader_id, target_id);
    assert!(resp.term > before);
    assert_eq!(c.wait_leader(&[0, 1, 2]).await, target);
    let got = get(&mut c.kv(leader), "k", linearizable()).await.unwrap();
    assert_eq!(got.kv.unwrap().value, b"v");
    put(&mut c.kv(leader), "k2", "v2")
        .await
        .expect("writes work after the transfer");
}

/// A follower that can reach the others but that the leader cannot reach (a
/// restarted pod whose new address is not in DNS yet) must not unseat the
/// leader: its pre-votes are refused, so it never raises the term.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_the_leader_cannot_reach_does_not_unseat_it() {
    let mut c = TestCluster::start(3, PORT_BASE + 40).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    put(&mut c.kv(leader), "k", "v").await.unwrap();
    let before = c.status(leader).await;
    let f = (leader + 1) % 3;

    tracing::info!("--- restart follower {f} on a peer port the membership does not know");
    let known_peer = c.nodes[f].peer_addr.clone();
    c.kill(f);
    c.nodes[f].peer_addr = format!("127.0.0.1:{}", PORT_BASE + 40 + 30);
    c.spawn(f).await;
    // Watch for ten election timeouts: the leader and the term must hold.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let s = c.status(leader).await;
        assert_eq!(s.role, pb::Role::Leader as i32, "the leader was unseated");
        assert_eq!(
            s.term, before.term,
            "the term moved while the follower was cut off"
        );
        let fs = c.status(f).await;
        assert!(
            fs.term <= before.term,
            "the cut-off follower raised its term to {}",
            fs.term
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tracing::info!("--- back on its known address it simply catches up");
    c.kill(f);
    c.nodes[f].peer_addr = known_peer;
    c.spawn(f).await;
    put(&mut c.kv(leader), "k2", "v2").await.unwrap();
    let target = c.status(leader).await.commit_index;
    wait_for("the follower to catch up", WAIT, || async {
        let s = status_of(&c.nodes[f].client_addr).await.ok()?;
        (s.applied_index >= target).then_some(())
    })
    .await;
    let after = c.status(leader).await;
    assert_eq!(after.term, before.term);
    assert_eq!(after.node_id, before.node_id);
}

/// A leader that receives SIGTERM (a pod being deleted) hands leadership off
/// before it exits, so the others do not wait out an election timeout and a
/// quickly restarted pod does not resume leading at the same term.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_leader_hands_off_before_exiting() {
    let mut c = TestCluster::start(3, PORT_BASE + 80).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    put(&mut c.kv(leader), "k", "v").await.unwrap();
    let before = c.status(leader).await;

    tracing::info!("--- SIGTERM the leader {leader}");
    assert!(c.terminate(leader), "the leader exits cleanly");
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Already handed off by the time the process exited: no election wait.
    let mut new_leader = None;
    for &i in &others {
        let s = c.status(i).await;
        if s.role == pb::Role::Leader as i32 {
            new_leader = Some((i, s));
        }
    }
    let (i, s) = new_leader.expect("a new leader was in place when the old one exited");
    assert!(s.term > before.term);
    put(&mut c.kv(i), "after", "1")
        .await
        .expect("the new leader takes writes");

    tracing::info!("--- restarted, the old leader follows");
    c.spawn(leader).await;
    put(&mut c.kv(i), "after2", "1").await.unwrap();
    let target = c.status(i).await.commit_index;
    wait_for("the old leader to catch up as a follower", WAIT, || async {
        let s = status_of(&c.nodes[leader].client_addr).await.ok()?;
        (s.applied_index >= target && s.role == pb::Role::Follower as i32).then_some(())
    })
    .await;
}
