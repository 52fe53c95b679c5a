//! Issue 14 item 4: the way out of a lost quorum. Two of three voters are
//! gone with their data; `ForceNewCluster` makes the survivor the one voter of
//! a new cluster holding every write it had, and the cluster grows back by
//! the ordinary learner → voter path. While a leader exists it is refused.

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 27300;

fn force(cluster_id: &str, confirm: bool) -> pb::ForceNewClusterRequest {
    pb::ForceNewClusterRequest {
        expected_cluster_id: cluster_id.to_string(),
        confirm,
    }
}

fn value_of(k: &str) -> String {
    format!("value-of-{k}")
}

/// Every key with its value, read through node `i` (stale: a learner may
/// serve it once it applied `revision`).
async fn assert_values(c: &TestCluster, i: usize, keys: &[String], read: Option<pb::ReadOptions>) {
    let mut kv = c.kv(i);
    for k in keys {
        let r = get(&mut kv, k, read)
            .await
            .unwrap_or_else(|e| panic!("read of {k} through node {i}: {e}"));
        let v = r.kv.unwrap_or_else(|| panic!("{k} has no value")).value;
        assert_eq!(
            String::from_utf8_lossy(&v),
            value_of(k),
            "value of {k} on node {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_survivor_becomes_a_new_cluster_with_every_write_it_had() {
    // A low snapshot threshold: the rebuild starts from a snapshot and
    // replays the committed log after it.
    let env = vec![("RAFT_SNAPSHOT_THRESHOLD".to_string(), "64".to_string())];
    let mut c = TestCluster::start_with_env(3, PORT_BASE, env).await;
    let init = c.init(&[0, 1, 2]).await;
    let old_cluster = init.cluster_id.clone();
    let leader = c.wait_leader(&[0, 1, 2]).await;

    tracing::info!("--- acknowledged writes");
    let keys: Vec<String> = (0..300).map(|n| format!("k{n:04}")).collect();
    {
        let mut kv = c.kv(leader);
        for k in &keys {
            put(&mut kv, k, &value_of(k)).await.expect("put");
        }
    }

    tracing::info!("--- refused while a leader exists, on every node; refused unconfirmed");
    for i in 0..3 {
        let e = c
            .cluster(i)
            .force_new_cluster(force(&old_cluster, true))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "node {i}: {e}");
        assert!(e.message().contains("leads this cluster"), "{e}");
        let e = c
            .cluster(i)
            .force_new_cluster(force(&old_cluster, false))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "node {i}: {e}");
    }
    // Nothing was marked: every node still serves the old cluster.
    for i in 0..3 {
        assert_eq!(c.status(i).await.cluster_id, old_cluster);
        assert!(c.nodes[i].child.is_some());
    }

    tracing::info!("--- the survivor (a follower) learns the commit index of every write");
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let committed = c.status(leader).await.commit_index;
    wait_for("the survivor to know the last commit", WAIT, || async {
        (c.status(survivor).await.commit_index >= committed).then_some(())
    })
    .await;
    let before = c.status(survivor).await;

    tracing::info!("--- two voters are gone with their volumes");
    for i in (0..3).filter(|i| *i != survivor) {
        c.wipe(i);
    }
    wait_for("the survivor to see no leader", WAIT, || async {
        (c.status(survivor).await.leader_id == 0).then_some(())
    })
    .await;
    let e = c
        .cluster(survivor)
        .force_new_cluster(force("another-cluster", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    tracing::info!("--- force the survivor: it accepts, then exits");
    let resp = c
        .cluster(survivor)
        .force_new_cluster(force(&old_cluster, true))
        .await
        .expect("ForceNewCluster on a voter without a leader")
        .into_inner();
    assert_eq!(resp.cluster_id, old_cluster);
    assert_eq!(resp.node_id, before.node_id);
    assert!(resp.commit_index >= committed, "{resp:?} vs {committed}");
    // Until it exits a second request is refused as already pending (or
    // finds the process gone): never a second acceptance.
    let again = c
        .cluster(survivor)
        .force_new_cluster(force(&old_cluster, true))
        .await;
    assert!(again.is_err(), "{again:?}");
    let exit = wait_exit(&mut c, survivor).await;
    assert!(
        !exit.success(),
        "it exits non-zero so supervisors restart it"
    );

    tracing::info!("--- restarted (as a supervisor would): a new one-voter cluster");
    c.spawn(survivor).await;
    c.wait_leader(&[survivor]).await;
    let s = c.status(survivor).await;
    assert_ne!(s.cluster_id, old_cluster, "a new cluster ID");
    assert!(!s.cluster_id.is_empty());
    assert_ne!(s.node_id, before.node_id, "a new node ID");
    let m = s.membership.clone().unwrap();
    assert_eq!(
        m.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
        vec![s.node_id]
    );
    assert!(m.learners.is_empty());
    assert!(s.revision >= before.revision, "{s:?} vs {before:?}");
    assert_values(&c, survivor, &keys, linearizable()).await;
    let mut kv = c.kv(survivor);
    put(&mut kv, "after-force", &value_of("after-force"))
        .await
        .expect("the new cluster takes writes");
    let mut all = keys.clone();
    all.push("after-force".to_string());

    tracing::info!("--- two fresh nodes join as learners and are promoted");
    let mut admin = c.cluster(survivor);
    let mut voters = vec![s.node_id];
    for i in (0..3).filter(|i| *i != survivor) {
        c.spawn(i).await;
        let st = c.status(i).await;
        assert!(st.cluster_id.is_empty(), "an empty volume: {st:?}");
        admin
            .add_learner(pb::AddLearnerRequest {
                member: Some(TestCluster::member(&st)),
            })
            .await
            .expect("add learner");
        voters.push(st.node_id);
    }
    voters.sort();
    wait_for("both learners promoted", WAIT, || {
        let mut admin = admin.clone();
        let voters = voters.clone();
        async move {
            admin
                .change_membership(pb::ChangeMembershipRequest {
                    voter_ids: voters,
                    retain: false,
                    ..Default::default()
                })
                .await
                .ok()
        }
    })
    .await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let s = c.status(leader).await;
    let mut got: Vec<u64> = s
        .membership
        .unwrap()
        .voters
        .iter()
        .map(|v| v.node_id)
        .collect();
    got.sort();
    assert_eq!(got, voters, "three voters again");
    for i in 0..3 {
        assert_eq!(c.status(i).await.cluster_id, s.cluster_id);
        assert_values(&c, i, &all, linearizable()).await;
    }
    put(&mut c.kv(leader), "grown-back", "yes")
        .await
        .expect("writes work with three voters");
}
