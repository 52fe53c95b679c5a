//! A learner that joins long after the log was compacted catches up through a
//! snapshot install, and serves reads afterwards.

use raftkv_proto::v1 as pb;

use crate::util::*;

const PORT_BASE: u16 = 25000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_far_behind_learner_catches_up_through_a_snapshot() {
    let env = vec![("RAFT_SNAPSHOT_THRESHOLD".to_string(), "200".to_string())];
    let mut c = TestCluster::start_with_env(3, PORT_BASE, env).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let mut kv = c.kv(leader);
    let n = 1500;
    for i in 0..n {
        put(&mut kv, &format!("s{i:05}"), &format!("value-{i}"))
            .await
            .unwrap();
    }
    let s = c.status(leader).await;
    wait_for("leader to snapshot and purge its log", WAIT, || async {
        let s = status_of(&c.nodes[leader].client_addr).await.ok()?;
        (s.snapshot_index > 1000 && s.purged_index > 0).then_some(())
    })
    .await;
    tracing::info!(
        snapshot = s.snapshot_index,
        purged = s.purged_index,
        "compacted"
    );

    tracing::info!("--- add a fresh learner");
    let l = c.add_node().await;
    let ls = c.status(l).await;
    c.cluster(leader)
        .add_learner(pb::AddLearnerRequest {
            member: Some(TestCluster::member(&ls)),
        })
        .await
        .expect("add learner");
    let target = c.status(leader).await.commit_index;
    wait_for("learner to catch up", WAIT, || async {
        let s = status_of(&c.nodes[l].client_addr).await.ok()?;
        (s.applied_index >= target).then_some(s)
    })
    .await;
    let s = c.status(l).await;
    assert!(
        s.snapshot_index > 0,
        "the learner got a snapshot (snapshot index {})",
        s.snapshot_index
    );
    assert_eq!(s.role, pb::Role::Learner as i32);
    assert_eq!(s.revision, n as u64);

    tracing::info!("--- the learner serves linearizable and stale reads");
    let mut lkv = c.kv(l);
    for i in [0, n / 2, n - 1] {
        let got = get(&mut lkv, &format!("s{i:05}"), linearizable())
            .await
            .unwrap();
        assert_eq!(got.kv.unwrap().value, format!("value-{i}").as_bytes());
    }
    let got = get(&mut lkv, "s00007", stale()).await.unwrap();
    assert_eq!(got.header.unwrap().node_id, s.node_id);
}
