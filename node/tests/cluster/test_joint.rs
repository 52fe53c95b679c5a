//! Hole 1 of issue 11: a joint configuration must never be left forever.
//! openraft proposes the second (uniform) configuration of a change from the
//! future that asked for it; before the fix that future was the RPC handler, so
//! a caller whose deadline fired between the two phases left the cluster joint,
//! and every later change was refused.

use std::time::{Duration, Instant};

use raftkv_proto::v1 as pb;

use crate::util::*;

const PORT_BASE: u16 = 20100;

fn voters(m: &pb::Membership) -> Vec<u64> {
    let mut v: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_whose_caller_gives_up_still_finishes() {
    // Every fsync takes 60 ms, so each phase of the change takes that long and
    // a 30 ms caller gives up in the middle.
    let env = vec![
        (
            "RAFTKV_FAULT_FSYNC_DELAY_PCT".to_string(),
            "100".to_string(),
        ),
        ("RAFTKV_FAULT_FSYNC_DELAY".to_string(), "60ms".to_string()),
    ];
    let mut c = TestCluster::start_with_env(3, PORT_BASE, env).await;
    c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;
    let learner = c.add_node().await;
    let s = c.status(learner).await;
    let learner_id = s.node_id;
    let mut admin = c.cluster(leader);
    admin
        .add_learner(pb::AddLearnerRequest {
            member: Some(TestCluster::member(&s)),
        })
        .await
        .expect("add learner");
    let original = voters(&c.status(leader).await.membership.unwrap());
    let mut target = original.clone();
    target.push(learner_id);
    target.sort();

    let mut attempts = 0;
    let started = Instant::now();
    loop {
        let m = c.status(leader).await.membership.unwrap();
        if !m.joint && voters(&m) == target {
            break;
        }
        if !m.joint && voters(&m) == original && attempts < 5 {
            // The change has not started (or the learner is not caught up
            // yet): ask again, giving up after 30 ms as a hurried caller does.
            attempts += 1;
            let mut req = tonic::Request::new(pb::ChangeMembershipRequest {
                voter_ids: target.clone(),
                retain: false,
                ..Default::default()
            });
            req.set_timeout(Duration::from_millis(30));
            let r = admin.change_membership(req).await;
            tracing::info!(attempts, ok = r.is_ok(), "hurried change_membership");
        }
        if started.elapsed() > WAIT {
            c.dump_logs();
            panic!(
                "membership still {:?} (joint: {}) after {WAIT:?}; wanted voters {target:?}",
                voters(&m),
                m.joint
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the cluster takes the next change (once the uniform entry commits).
    wait_for("a later change to be accepted", WAIT, || {
        let mut admin = admin.clone();
        let original = original.clone();
        async move {
            admin
                .change_membership(pb::ChangeMembershipRequest {
                    voter_ids: original,
                    retain: false,
                    ..Default::default()
                })
                .await
                .ok()
        }
    })
    .await;
    let m = c.status(leader).await.membership.unwrap();
    assert_eq!(voters(&m), original);
    assert!(!m.joint);
}
