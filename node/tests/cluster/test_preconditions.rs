//! Hole 5 of issue 11: a membership change states which membership it was
//! computed from, and a learner is promoted only while it answers the leader.

use std::time::Duration;

use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 20400;

fn voters_of(s: &pb::StatusResponse) -> Vec<u64> {
    s.membership
        .as_ref()
        .map(|m| m.voters.iter().map(|v| v.node_id).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_from_a_stale_view_or_to_a_dead_learner_is_refused() {
    let mut c = TestCluster::start(3, PORT_BASE).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let mut admin = c.cluster(leader);

    // The view a slow caller (a paused operator, an old raftctl) computed from.
    let before = c.status(leader).await;
    let stale_index = before.membership.as_ref().unwrap().log_index;
    let learner = c.add_node().await;
    let ls = c.status(learner).await;
    admin
        .add_learner(pb::AddLearnerRequest {
            member: Some(TestCluster::member(&ls)),
        })
        .await
        .expect("add learner");
    tracing::info!(
        stale_index,
        now = c.status(leader).await.membership.unwrap().log_index,
        "membership indexes"
    );
    let mut promoted = voters_of(&before);
    promoted.push(ls.node_id);

    tracing::info!("--- a change computed from the membership before AddLearner is refused");
    let e = admin
        .change_membership(pb::ChangeMembershipRequest {
            voter_ids: promoted.clone(),
            retain: false,
            expected_membership_index: Some(stale_index),
        })
        .await
        .expect_err("a change from a stale membership must be refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("membership changed"), "{e}");

    tracing::info!("--- the learner dies: its matched index stays high, but it is not promoted");
    c.kill(learner);
    let now_index = c.status(leader).await.membership.unwrap().log_index;
    // The rule is about time: "answered within two election timeouts" (800 ms
    // by default). Let that pass.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let e = admin
        .change_membership(pb::ChangeMembershipRequest {
            voter_ids: promoted.clone(),
            retain: false,
            expected_membership_index: Some(now_index),
        })
        .await
        .expect_err("a dead learner must not be promoted");
    assert!(
        e.message().contains("answered"),
        "refused for another reason: {e}"
    );
    tracing::info!(refusal = e.message(), "dead learner");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let after = c.status(leader).await;
    assert_eq!(voters_of(&after), voters_of(&before), "voters unchanged");
    assert!(
        !after.membership.unwrap().joint,
        "no joint configuration left"
    );

    tracing::info!("--- back up, with the current index: promoted");
    c.spawn(learner).await;
    let index = c.status(leader).await.membership.unwrap().log_index;
    wait_for(
        "the learner promoted once it answers",
        Duration::from_secs(10),
        || {
            let mut admin = admin.clone();
            let voters = promoted.clone();
            async move {
                admin
                    .change_membership(pb::ChangeMembershipRequest {
                        voter_ids: voters,
                        retain: false,
                        expected_membership_index: Some(index),
                    })
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert!(voters_of(&c.status(leader).await).contains(&ls.node_id));
}
