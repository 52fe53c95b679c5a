//! 3 -> 5 -> 3 voters by joint consensus while a client keeps writing: learners
//! first, one change at a time, no acknowledged write lost. The node refuses
//! unsafe changes (removing the leader, promoting a non-member).

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 24000;

fn voter_ids(m: &pb::Membership) -> Vec<u64> {
    let mut v: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_to_five_to_three_voters_under_writes() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(run_writer(c.endpoints(), "m".into(), stop));

    tracing::info!("--- start two more nodes and add them as learners");
    let a = c.add_node().await;
    let b = c.add_node().await;
    let mut admin = c.cluster(0);
    let mut new_ids = Vec::new();
    for i in [a, b] {
        let s = c.status(i).await;
        new_ids.push(s.node_id);
        admin
            .add_learner(pb::AddLearnerRequest {
                member: Some(TestCluster::member(&s)),
            })
            .await
            .expect("add learner");
    }

    tracing::info!("--- promoting a node that is not a member is refused");
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let mut voters = voter_ids(&c.status(leader).await.membership.unwrap());
    let mut bogus = voters.clone();
    bogus.push(12345);
    let e = admin
        .change_membership(pb::ChangeMembershipRequest {
            voter_ids: bogus,
            retain: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    tracing::info!("--- promote both learners in one joint-consensus change");
    voters.extend(&new_ids);
    voters.sort();
    wait_for("promotion accepted once learners caught up", WAIT, || {
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
    let m = c.status(leader).await.membership.unwrap();
    assert_eq!(voter_ids(&m), voters);
    assert!(
        !m.joint,
        "change_membership returns after the final config is committed"
    );
    assert!(m.learners.is_empty());

    tracing::info!("--- removing the leader directly is refused");
    let leader = c.wait_leader(&[0, 1, 2, a, b]).await;
    let leader_id = c.status(leader).await.node_id;
    let e = admin
        .remove_member(pb::RemoveMemberRequest { node_id: leader_id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    tracing::info!("--- shrink back to the three original voters");
    let mut original = Vec::new();
    for i in 0..3 {
        original.push(c.status(i).await.node_id);
    }
    original.sort();
    if !original.contains(&leader_id) {
        admin
            .transfer_leader(pb::TransferLeaderRequest {
                target_node_id: original[0],
            })
            .await
            .expect("hand off before removal");
    }
    admin
        .change_membership(pb::ChangeMembershipRequest {
            voter_ids: original.clone(),
            retain: false,
            ..Default::default()
        })
        .await
        .expect("shrink to 3");
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let m = c.status(leader).await.membership.unwrap();
    assert_eq!(voter_ids(&m), original);
    assert!(
        m.learners.is_empty(),
        "removed voters are not kept as learners"
    );

    wait_for(
        "the writer to keep writing after the changes",
        WAIT,
        || async {
            let s = status_of(&c.nodes[leader].client_addr).await.ok()?;
            (s.revision >= 60).then_some(())
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    let acked = writer.await.unwrap();
    assert!(
        acked.len() > 20,
        "writer made progress ({} writes)",
        acked.len()
    );
    for i in 0..3 {
        assert_all_present(&c, i, &acked).await;
    }
    c.kill(a);
    c.kill(b);
}
