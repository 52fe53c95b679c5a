//! Invariant 1 (docs/design.md): a node's ID belongs to its data. A node that comes back
//! with an empty data directory is a new, uninitialized node with a new ID;
//! it never votes under the old one, and joins only when added.

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 23000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_an_empty_disk_is_a_new_member() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    for i in 0..20 {
        put(&mut c.kv(leader), &format!("k{i}"), "v").await.unwrap();
    }
    let victim = (leader + 1) % 3;
    let old_id = c.status(victim).await.node_id;

    tracing::info!("--- wipe node {victim} and restart it at the same address");
    c.wipe(victim);
    c.spawn(victim).await;
    let s = c.status(victim).await;
    assert_ne!(s.node_id, old_id, "a wiped node must get a new ID");
    assert_eq!(s.role, pb::Role::Uninitialized as i32);
    assert!(
        s.cluster_id.is_empty(),
        "peer messages for the old ID must not make it join"
    );
    assert!(!s.healthy);

    tracing::info!("--- the cluster still has the old ID as a voter; the new node is not one");
    let m = c.status(leader).await.membership.unwrap();
    let voters: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
    assert!(voters.contains(&old_id));
    assert!(!voters.contains(&s.node_id));
    // It must not be able to initialize a cluster of its own with the others either.
    let others: Vec<pb::Member> = vec![
        TestCluster::member(&s),
        TestCluster::member(&c.status(leader).await),
    ];
    let e = c
        .cluster(leader)
        .initialize(pb::InitializeRequest { members: others })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    tracing::info!(
        "--- add it as a learner, then swap the old ID for the new one by joint consensus"
    );
    c.cluster(leader)
        .add_learner(pb::AddLearnerRequest {
            member: Some(TestCluster::member(&s)),
        })
        .await
        .expect("add learner");
    let new_id = s.node_id;
    wait_for("new member to catch up", WAIT, || async {
        let st = status_of(&c.nodes[victim].client_addr).await.ok()?;
        (st.role == pb::Role::Learner as i32 && st.revision >= 20).then_some(())
    })
    .await;
    let mut voters: Vec<u64> = voters.into_iter().filter(|v| *v != old_id).collect();
    voters.push(new_id);
    c.cluster(leader)
        .change_membership(pb::ChangeMembershipRequest {
            voter_ids: voters.clone(),
            retain: false,
            ..Default::default()
        })
        .await
        .expect("swap members");
    let m = c.status(leader).await.membership.unwrap();
    let mut now: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
    now.sort();
    voters.sort();
    assert_eq!(now, voters);
    assert!(!m.joint);
    let st = c.status(victim).await;
    assert_eq!(st.role, pb::Role::Follower as i32);
    assert_all_present(
        &c,
        victim,
        &(0..20).map(|i| format!("k{i}")).collect::<Vec<_>>(),
    )
    .await;
}
