//! Unit tests: one per planner case, driven through the in-memory [`Sim`].

use super::sim::Sim;
use super::*;

/// The observed pod `name`, to change what a test's observation says of it.
fn pod_mut<'a>(obs: &'a mut Observed, name: &str) -> &'a mut PodState {
    obs.pods
        .iter_mut()
        .find(|p| p.name == name)
        .expect("the pod is observed")
}

fn kinds(plans: &[Plan]) -> Vec<&'static str> {
    plans
        .iter()
        .filter_map(|p| p.step.as_ref().map(Step::kind))
        .collect()
}

fn reasons(plans: &[Plan]) -> Vec<String> {
    plans
        .iter()
        .filter_map(|p| p.event.as_ref().map(|e| e.reason.clone()))
        .collect()
}

#[test]
fn bootstrap_initializes_once_with_all_initial_voters() {
    let mut sim = Sim::new("demo", 3);
    let plans = sim.settle(10);
    assert_eq!(kinds(&plans), ["scale_statefulset", "initialize"]);
    let Some(Step::Initialize { pod, members }) = &plans[1].step else {
        panic!("expected Initialize");
    };
    assert_eq!(pod, "demo-0");
    assert_eq!(members.len(), 3);
    assert_eq!(reasons(&plans)[1], "Bootstrapped");
    assert_eq!(sim.voter_count(), 3);
    // Settled: nothing more to do, and never a second Initialize.
    assert!(sim.step().step.is_none());
}

#[test]
fn bootstrap_waits_for_every_initial_voter() {
    let mut sim = Sim::new("demo", 3);
    sim.step(); // StatefulSet created
    sim.pod_down("demo-2");
    let plan = sim.step();
    assert!(plan.step.is_none());
    assert_eq!(plan.status.phase, Some(crate::crd::Phase::Bootstrapping));
}

#[test]
fn never_initializes_when_any_member_reports_a_cluster_id() {
    let mut sim = Sim::new("demo", 3);
    sim.step();
    sim.pods.get_mut("demo-1").unwrap().joined = true;
    let plan = sim.step();
    assert!(
        !matches!(plan.step, Some(Step::Initialize { .. })),
        "{plan:?}"
    );
}

// --- bootstrap from a backup (issue 14) ----------------------------------------------

const BACKUP: &str = "object e2e/ns/demo/demo-manual.rkvb";

#[test]
fn a_cluster_from_a_backup_is_restored_into_its_first_pod_and_grows_by_learners() {
    let mut sim = Sim::new("demo", 3);
    sim.spec.from_backup = Some(BACKUP.into());
    let plans = sim.settle(20);
    let k = kinds(&plans);
    assert_eq!(k[..2], ["scale_statefulset", "restore"], "{k:?}");
    assert!(!k.contains(&"initialize"), "never initialized empty: {k:?}");
    let Some(Step::Restore { pod, source }) = &plans[1].step else {
        panic!("expected Restore");
    };
    assert_eq!((pod.as_str(), source.as_str()), ("demo-0", BACKUP));
    assert_eq!(reasons(&plans)[1], "Restoring");
    let recorded = plans[1].status.restore.as_ref().expect("status.restore");
    assert_eq!(
        (recorded.pod.as_str(), recorded.source.as_str()),
        ("demo-0", BACKUP)
    );
    // The others join the restored node the ordinary way.
    assert!(k.contains(&"add_learner"), "{k:?}");
    assert!(k.contains(&"change_membership"), "{k:?}");
    assert_eq!(sim.voter_count(), 3);
    assert_eq!(k.iter().filter(|s| **s == "restore").count(), 1);
}

#[test]
fn a_backup_waits_for_the_first_pod_only() {
    let mut sim = Sim::new("demo", 3);
    sim.spec.from_backup = Some(BACKUP.into());
    sim.step(); // StatefulSet created
    sim.pod_down("demo-2");
    let plan = sim.step();
    assert!(
        matches!(&plan.step, Some(Step::Restore { pod, .. }) if pod == "demo-0"),
        "{plan:?}"
    );
    // Without the first pod, nothing: the backup goes nowhere else.
    let mut sim = Sim::new("demo", 3);
    sim.spec.from_backup = Some(BACKUP.into());
    sim.step();
    sim.pod_down("demo-0");
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
}

#[test]
fn a_backup_is_restored_once_and_never_into_a_cluster_that_existed() {
    let mut sim = Sim::new("demo", 3);
    sim.spec.from_backup = Some(BACKUP.into());
    sim.step();
    // Accepted once (status.restore written): while the pod restarts, or if
    // every volume is lost later, nothing is restored or initialized again.
    let mut obs = sim.observe();
    obs.previous_restore = Some(crate::crd::RestoreStatus {
        pod: "demo-0".into(),
        source: BACKUP.into(),
        time: "2026-12-08T00:00:00Z".into(),
    });
    let p = plan(&obs);
    assert!(p.step.is_none(), "{p:?}");
    // A cluster that had an ID is never restored into (nor initialized empty).
    let mut obs = sim.observe();
    obs.previous_cluster_id = Some("c-1".into());
    let p = plan(&obs);
    assert!(p.step.is_none(), "{p:?}");
    assert!(p.blocked.is_some(), "says why: {p:?}");
    // The safety check refuses both on its own.
    let view = ClusterView::new(&obs);
    let restore = Step::Restore {
        pod: "demo-0".into(),
        source: BACKUP.into(),
    };
    assert!(safety::check(&restore, &view).is_err());
    let obs = sim.observe();
    let view = ClusterView::new(&obs);
    assert!(safety::check(&restore, &view).is_ok());
    let init = Step::Initialize {
        pod: "demo-0".into(),
        members: vec![NewMember {
            node_id: sim.id_of("demo-0"),
            name: "demo-0".into(),
        }],
    };
    let refused = safety::check(&init, &view).unwrap_err();
    assert!(
        refused.0.contains("never initialize it empty"),
        "{refused:?}"
    );
}

#[test]
fn scale_out_adds_learners_then_promotes_in_one_change() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.replicas = 5;
    let plans = sim.settle(20);
    assert_eq!(
        kinds(&plans),
        [
            "scale_statefulset",
            "add_learner",
            "add_learner",
            "change_membership"
        ]
    );
    assert_eq!(
        reasons(&plans),
        [
            "StatefulSetScaled",
            "LearnerAdded",
            "LearnerAdded",
            "MemberPromoted"
        ]
    );
    assert_eq!(sim.voter_count(), 5);
    assert!(sim.learners.is_empty());
}

#[test]
fn scale_out_waits_until_learners_catch_up() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.replicas = 5;
    sim.settle(3); // scale + two learners
    sim.pods.get_mut("demo-4").unwrap().lag = 10_000;
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
    let progressing = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert!(
        progressing.message.contains("catching up"),
        "{progressing:?}"
    );
    sim.pods.get_mut("demo-4").unwrap().lag = 0;
    assert!(matches!(
        sim.step().step,
        Some(Step::ChangeMembership { .. })
    ));
}

#[test]
fn scale_in_removes_highest_ordinals_then_shrinks_the_statefulset() {
    let mut sim = Sim::running("demo", 5);
    sim.spec.replicas = 3;
    let (id3, id4) = (sim.id_of("demo-3"), sim.id_of("demo-4"));
    let plans = sim.settle(10);
    assert_eq!(
        kinds(&plans),
        ["stop_serving", "change_membership", "scale_statefulset"]
    );
    assert_eq!(
        plans[0].step,
        Some(Step::StopServing {
            pods: vec!["demo-3".into(), "demo-4".into()]
        })
    );
    let Some(Step::ChangeMembership { removed, .. }) = &plans[1].step else {
        panic!()
    };
    assert_eq!(removed, &vec![id3, id4]);
    assert_eq!(reasons(&plans)[..2], ["MemberDraining", "MemberRemoved"]);
    assert_eq!(sim.voters_sts, Some(3));
}

#[test]
fn scale_in_hands_leadership_off_before_removing_the_leader() {
    let mut sim = Sim::running("demo", 5);
    sim.leader = Some(sim.id_of("demo-4"));
    sim.spec.replicas = 3;
    let plans = sim.settle(10);
    assert_eq!(
        kinds(&plans),
        [
            "transfer_leader",
            "stop_serving",
            "change_membership",
            "scale_statefulset"
        ]
    );
    assert_eq!(reasons(&plans)[0], "LeaderTransferred");
}

#[test]
fn scale_in_is_blocked_without_a_healthy_quorum_of_the_new_config() {
    let mut sim = Sim::running("demo", 5);
    sim.pod_down("demo-1");
    sim.pod_down("demo-2");
    sim.spec.replicas = 3;
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
    let (reason, message) = plan.blocked.expect("blocked");
    assert_eq!(reason, "ScaleInBlocked");
    assert!(message.contains("only 1 of 3"), "{message}");
    let event = plan.event.expect("event");
    assert!(event.warning);
    assert_eq!(event.reason, "ScaleInBlocked");
    assert_eq!(sim.voter_count(), 5);
}

#[test]
fn pod_restarted_with_its_volume_needs_no_membership_change() {
    let mut sim = Sim::running("demo", 3);
    let id = sim.id_of("demo-1");
    assert!(
        !sim.step().busy,
        "a healthy, settled cluster is polled slowly"
    );
    sim.pod_down("demo-1");
    let plan = sim.step();
    assert!(plan.step.is_none());
    // Its return raises no Kubernetes event when only its DNS name starts resolving
    // again: the operator must look again soon, not at the idle interval.
    assert!(
        plan.busy,
        "a member that does not answer is polled at the busy interval"
    );
    sim.pod_up("demo-1");
    let plan = sim.step();
    assert!(plan.step.is_none());
    assert!(!plan.busy);
    assert_eq!(sim.id_of("demo-1"), id);
    assert_eq!(sim.voter_count(), 3);
}

#[test]
fn pod_with_empty_volume_is_swapped_in_by_one_joint_change() {
    let mut sim = Sim::running("demo", 3);
    let old = sim.id_of("demo-2");
    sim.pod_lost_volume("demo-2");
    let new = sim.id_of("demo-2");
    let plans = sim.settle(10);
    assert_eq!(kinds(&plans), ["add_learner", "change_membership"]);
    let Some(Step::ChangeMembership { added, removed, .. }) = &plans[1].step else {
        panic!()
    };
    assert_eq!(added, &vec![new]);
    assert_eq!(removed, &vec![old]);
    assert_eq!(reasons(&plans)[1], "MemberReplaced");
    assert!(sim.voters.iter().any(|m| m.node_id == new));
    assert!(!sim.voters.iter().any(|m| m.node_id == old));
}

#[test]
fn replaced_leader_pod_gets_a_new_leader_first() {
    let mut sim = Sim::running("demo", 3);
    sim.pod_lost_volume("demo-0"); // the leader
    let plans = sim.settle(10);
    assert_eq!(kinds(&plans), ["add_learner", "change_membership"]);
    assert_eq!(sim.voter_count(), 3);
}

#[test]
fn auto_replace_deletes_pod_and_pvc_after_the_duration_only() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.auto_replace_after_ms = Some(60_000);
    sim.pod_down("demo-1");
    assert!(sim.step().step.is_none());
    sim.now_ms += 60_000;
    let plan = sim.step();
    assert_eq!(
        plan.step,
        Some(Step::DeletePod {
            pod: "demo-1".into(),
            delete_pvc: true,
            reason: DeleteReason::AutoReplace
        })
    );
    let plans = sim.settle(10);
    assert_eq!(kinds(&plans), ["add_learner", "change_membership"]);
}

#[test]
fn auto_replace_is_off_by_default() {
    let mut sim = Sim::running("demo", 3);
    sim.pod_down("demo-1");
    sim.now_ms += 24 * 3_600_000;
    assert!(sim.step().step.is_none());
}

#[test]
fn auto_replace_never_breaks_the_quorum() {
    let mut sim = Sim::running("demo", 5);
    sim.spec.auto_replace_after_ms = Some(1);
    sim.pod_down("demo-3");
    sim.pod_down("demo-4");
    sim.pods.get_mut("demo-2").unwrap().lag = 10_000; // slow, not healthy
    sim.now_ms += 10;
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
    assert_eq!(plan.blocked.unwrap().0, "AutoReplaceBlocked");
}

#[test]
fn rolling_update_restarts_followers_first_and_the_leader_last() {
    let mut sim = Sim::running("demo", 3);
    sim.revision = "r2".into();
    let plans = sim.settle(10);
    let order: Vec<String> = plans
        .iter()
        .map(|p| match &p.step {
            Some(Step::DeletePod { pod, .. }) => pod.clone(),
            Some(s) => s.kind().to_string(),
            None => unreachable!(),
        })
        .collect();
    assert_eq!(
        order,
        ["demo-2", "demo-1", "transfer_leader", "demo-0"],
        "followers by descending ordinal, then handoff, then the old leader"
    );
    assert!(sim.pods.values().all(|p| p.revision == "r2"));
}

#[test]
fn rolling_update_waits_until_the_restarted_pod_is_caught_up() {
    let mut sim = Sim::running("demo", 3);
    sim.revision = "r2".into();
    sim.step(); // deletes demo-2
    sim.pods.get_mut("demo-2").unwrap().lag = 5_000;
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
}

#[test]
fn every_member_pod_gets_its_role_label() {
    let mut sim = Sim::running("demo", 3);
    sim.step();
    let labels: Vec<_> = sim.pods.values().map(|p| p.role_label.clone()).collect();
    assert_eq!(
        labels,
        [
            Some("leader".into()),
            Some("follower".into()),
            Some("follower".into())
        ]
    );
    sim.apply(&Step::TransferLeader {
        from: sim.id_of("demo-0"),
        target: sim.id_of("demo-1"),
    });
    let plan = sim.step();
    assert_eq!(plan.labels.len(), 2, "{:?}", plan.labels);
}

#[test]
fn pause_stops_every_action_but_status_still_updates() {
    let mut sim = Sim::running("demo", 3);
    sim.paused = true;
    sim.spec.replicas = 5;
    let plan = sim.step();
    assert!(plan.step.is_none());
    assert_eq!(plan.status.phase, Some(crate::crd::Phase::Paused));
    assert_eq!(plan.status.replicas, 3);
    assert!(plan.status.conditions.iter().any(|c| c.type_ == "Paused"));
}

#[test]
fn nothing_starts_while_a_membership_change_is_in_flight() {
    let mut sim = Sim::running("demo", 3);
    sim.joint = true;
    sim.spec.replicas = 1;
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
    let progressing = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing");
    assert!(progressing.unwrap().message.contains("in flight"));
    sim.joint = false;
    assert!(matches!(sim.step().step, Some(Step::StopServing { .. })));
    assert!(matches!(
        sim.step().step,
        Some(Step::ChangeMembership { .. })
    ));
}

#[test]
fn read_replicas_join_as_learners_and_leave_on_scale_in() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.read_replicas = 2;
    let plans = sim.settle(10);
    assert_eq!(
        kinds(&plans),
        ["scale_statefulset", "add_learner", "add_learner"]
    );
    assert_eq!(sim.learners.len(), 2);
    assert_eq!(sim.voter_count(), 3);
    sim.spec.read_replicas = 0;
    let plans = sim.settle(10);
    assert_eq!(
        kinds(&plans),
        [
            "stop_serving",
            "remove_learner",
            "stop_serving",
            "remove_learner",
            "scale_statefulset"
        ]
    );
    assert!(sim.learners.is_empty());
}

#[test]
fn a_leaving_member_waits_until_no_endpoint_slice_lists_it() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.read_replicas = 1;
    sim.settle(10);
    sim.spec.read_replicas = 0;
    let plan = sim.step();
    assert_eq!(
        plan.step,
        Some(Step::StopServing {
            pods: vec!["demo-read-0".into()]
        })
    );
    assert_eq!(plan.event.as_ref().unwrap().reason, "MemberDraining");
    // The label is off but the endpoints controller has not caught up yet.
    let mut obs = sim.observe();
    let pod = pod_mut(&mut obs, "demo-read-0");
    assert_eq!(pod.serving, Some(false));
    pod.in_services = true;
    let plan = super::plan(&obs);
    assert_eq!(plan.step, None, "{plan:?}");
    let progressing = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert!(
        progressing
            .message
            .contains("waiting for demo-read-0 to leave the Services"),
        "{progressing:?}"
    );
    // Gone from the EndpointSlices: now it is removed.
    pod_mut(&mut obs, "demo-read-0").in_services = false;
    assert!(matches!(
        super::plan(&obs).step,
        Some(Step::RemoveLearner { .. })
    ));
}

#[test]
fn a_leaving_member_is_removed_only_a_grace_after_it_stopped_serving() {
    use super::limits::DRAIN_GRACE_MS;
    let mut sim = Sim::running("demo", 3);
    sim.spec.read_replicas = 1;
    sim.settle(10);
    sim.spec.read_replicas = 0;
    assert!(matches!(sim.step().step, Some(Step::StopServing { .. })));
    // Out of the EndpointSlices at once, but kube-proxy may still route to it.
    let mut obs = sim.observe();
    let now = obs.now_ms;
    let pod = pod_mut(&mut obs, "demo-read-0");
    assert!(!pod.in_services);
    for (stopped_ago, removed) in [
        (0, false),
        (DRAIN_GRACE_MS - 1, false),
        (DRAIN_GRACE_MS, true),
        (10 * DRAIN_GRACE_MS, true),
    ] {
        pod_mut(&mut obs, "demo-read-0").serving_stopped_ms = Some(now - stopped_ago);
        let plan = super::plan(&obs);
        if removed {
            assert!(
                matches!(plan.step, Some(Step::RemoveLearner { .. })),
                "{stopped_ago} ms after: {plan:?}"
            );
        } else {
            assert_eq!(plan.step, None, "{stopped_ago} ms after: {plan:?}");
            let progressing = plan
                .status
                .conditions
                .iter()
                .find(|c| c.type_ == "Progressing")
                .unwrap();
            assert!(
                progressing.message.contains("kube-proxy catching up"),
                "{progressing:?}"
            );
        }
    }
    // A pod drained by an operator from before the annotation: no grace known.
    pod_mut(&mut obs, "demo-read-0").serving_stopped_ms = None;
    assert!(matches!(
        super::plan(&obs).step,
        Some(Step::RemoveLearner { .. })
    ));
}

#[test]
fn a_drained_pod_serves_again_when_the_spec_grows_back_and_old_pods_get_the_label() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.read_replicas = 1;
    sim.settle(10);
    sim.spec.read_replicas = 0;
    assert!(matches!(sim.step().step, Some(Step::StopServing { .. })));
    assert!(!sim.pods["demo-read-0"].serving);
    sim.spec.read_replicas = 1;
    let plan = sim.step();
    assert_eq!(plan.serve_again, vec!["demo-read-0".to_string()]);
    assert!(sim.pods["demo-read-0"].serving);
    // A pod from before the label existed is labelled, whatever the plan.
    let mut obs = sim.observe();
    obs.pods[0].serving = None;
    assert_eq!(
        super::plan(&obs).serve_again,
        vec![obs.pods[0].name.clone()]
    );
}

#[test]
fn a_replaced_members_pod_keeps_serving() {
    // The pod reports a new node (wiped disk): the old member is removed but the
    // pod stays, as the new member, in the Services.
    let mut sim = Sim::running("demo", 3);
    sim.pod_lost_volume("demo-1");
    let plans = sim.settle(20);
    assert!(
        !kinds(&plans).contains(&"stop_serving"),
        "{:?}",
        kinds(&plans)
    );
    assert!(sim.pods["demo-1"].serving);
}

#[test]
fn status_reports_members_leader_and_counts() {
    let mut sim = Sim::running("demo", 3);
    let plan = sim.step();
    let s = plan.status;
    assert_eq!(s.leader.as_deref(), Some("demo-0"));
    assert_eq!(s.replicas, 3);
    assert_eq!(s.ready_replicas, 3);
    assert_eq!(s.members.len(), 3);
    assert_eq!(s.phase, Some(crate::crd::Phase::Running));
    let available = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "True");
}

#[test]
fn a_learner_out_of_contact_with_the_leader_is_not_promoted() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.replicas = 4;
    sim.settle(2); // scale + learner
    let mut obs = sim.observe();
    let pod = obs.pods.iter_mut().find(|p| p.name == "demo-3").unwrap();
    pod.node.as_mut().unwrap().healthy = false; // lag 0 but no recent leader contact
    let plan = plan(&obs);
    assert!(plan.step.is_none(), "{plan:?}");
    assert!(sim.step().step.is_some(), "promoted once healthy again");
}

#[test]
fn a_caught_up_learner_is_promoted_only_after_the_stabilization_time() {
    let mut sim = Sim::running("demo", 3);
    sim.spec.replicas = 4;
    sim.settle(2); // scale + learner
    let mut obs = sim.observe();
    let pod = obs.pods.iter_mut().find(|p| p.name == "demo-3").unwrap();
    pod.ready_since_ms = Some(obs.now_ms - limits::PROMOTION_STABILIZATION_MS + 1);
    let plan = plan(&obs);
    assert!(plan.step.is_none(), "{plan:?}");
    let progressing = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing");
    assert!(progressing.unwrap().message.contains("stabilizing"));
    obs.now_ms += 1;
    assert!(matches!(
        super::plan(&obs).step,
        Some(Step::ChangeMembership { .. })
    ));
}

// --- conditions and columns (issue 17) ---------------------------------------------

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::Phase;

fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", plan.status.conditions))
}

/// (status, reason, message) of a condition.
fn said(plan: &Plan, type_: &str) -> (String, String, String) {
    let c = condition(plan, type_);
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[test]
fn paused_with_a_step_due_says_paused_and_what_is_due() {
    let mut sim = Sim::running("demo", 3);
    sim.paused = true;
    sim.spec.replicas = 5;
    let plan = sim.step();
    let (status, reason, message) = said(&plan, "Progressing");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Paused"));
    assert!(
        message.ends_with("scaling voters StatefulSet to 5"),
        "{message}"
    );
    // The VOTERS column: voters in the membership, not spec.replicas.
    assert_eq!(plan.status.replicas, 3);
}

#[test]
fn paused_with_nothing_due_is_settled() {
    let mut sim = Sim::running("demo", 3);
    sim.paused = true;
    let plan = sim.step();
    assert_eq!(said(&plan, "Progressing").1, "Settled");
}

/// The refused scale-in: 3 -> 1 while the only voter that stays is down and
/// another pod leads. Nothing changes; every signal says why.
#[test]
fn a_refused_scale_in_says_blocked_and_keeps_counting_the_members() {
    let mut sim = Sim::running("demo", 3);
    sim.leader = Some(sim.id_of("demo-2"));
    sim.pod_down("demo-0");
    sim.spec.replicas = 1;
    let plan = sim.step();
    assert!(plan.step.is_none(), "{plan:?}");
    let (status, reason, message) = said(&plan, "Progressing");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Blocked"));
    assert_eq!(
        message,
        "ScaleInBlocked: the leader must leave but no healthy voter can take over"
    );
    assert_eq!(said(&plan, "Degraded").1, "ScaleInBlocked");
    assert_eq!(plan.status.phase, Some(Phase::Degraded));
    assert_eq!(plan.status.replicas, 3, "VOTERS: 3 are still members");
}

#[test]
fn without_a_leader_voters_are_the_last_reported_membership() {
    let mut sim = Sim::running("demo", 3);
    sim.pod_down("demo-0"); // the leader
    sim.pod_down("demo-1");
    let plan = sim.step();
    assert!(plan.status.leader.is_none());
    assert_eq!(plan.status.replicas, 3);
    assert_eq!(said(&plan, "Available").0, "False");
}

#[test]
fn a_rolling_update_is_updating_until_the_last_restarted_pod_is_back() {
    let mut sim = Sim::running("demo", 3);
    sim.revision = "r2".into();
    let mut last = None;
    for _ in 0..10 {
        let plan = sim.step();
        assert_eq!(plan.status.phase, Some(Phase::Updating), "{plan:?}");
        assert_eq!(said(&plan, "Degraded").0, "False", "{plan:?}");
        if let Some(Step::DeletePod { pod, .. }) = &plan.step {
            // The restarted pod takes a while to come back.
            sim.pod_down(pod);
            last = Some(pod.clone());
            let waiting = sim.step();
            assert_eq!(waiting.status.phase, Some(Phase::Updating), "{waiting:?}");
            let (status, reason, _) = said(&waiting, "Degraded");
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "RollingUpdate")
            );
            assert_eq!(said(&waiting, "Progressing").0, "True");
            sim.pod_up(pod);
            if pod == "demo-0" {
                break;
            }
        }
    }
    assert_eq!(last.as_deref(), Some("demo-0"), "the old leader rolls last");
    let done = sim.step();
    assert_eq!(done.status.phase, Some(Phase::Running));
    assert_eq!(said(&done, "Progressing").1, "Settled");
}

#[test]
fn a_member_down_outside_an_update_is_degraded() {
    let mut sim = Sim::running("demo", 3);
    sim.pod_down("demo-2");
    let plan = sim.step();
    assert_eq!(plan.status.phase, Some(Phase::Degraded));
    let (status, reason, message) = said(&plan, "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "MembersUnhealthy")
    );
    assert_eq!(message, "2 of 3 voters healthy");
}

#[test]
fn an_updated_pod_that_crash_loops_is_degraded_not_updating() {
    let mut sim = Sim::running("demo", 3);
    sim.revision = "r2".into();
    let plan = sim.step();
    let Some(Step::DeletePod { pod, .. }) = plan.step else {
        panic!("{plan:?}")
    };
    sim.pod_down(&pod);
    sim.pods.get_mut(&pod).unwrap().failing = Some("CrashLoopBackOff: bad flag".into());
    let plan = sim.step();
    assert_eq!(plan.status.phase, Some(Phase::Degraded));
    let (status, reason, message) = said(&plan, "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "PodsFailing"));
    assert_eq!(message, format!("{pod}: CrashLoopBackOff: bad flag"));
}

#[test]
fn crash_looping_pods_of_a_new_cluster_are_reported() {
    let mut sim = Sim::new("demo", 3);
    sim.step(); // the StatefulSet
    for p in ["demo-0", "demo-1", "demo-2"] {
        sim.pod_down(p);
        sim.pods.get_mut(p).unwrap().failing = Some(
            "CrashLoopBackOff: Error: invalid configuration: election timeout min (200 ms) must be at least 3x the heartbeat (500 ms)".into(),
        );
    }
    let plan = sim.step();
    assert_eq!(plan.status.phase, Some(Phase::Pending));
    let (status, reason, message) = said(&plan, "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "PodsFailing"));
    assert!(
        message.starts_with(
            "demo-0: CrashLoopBackOff: Error: invalid configuration: election timeout min (200 ms)"
        ),
        "{message}"
    );
    assert_eq!(message.matches("CrashLoopBackOff").count(), 3, "{message}");
}

#[test]
fn pods_the_statefulset_cannot_create_are_reported() {
    let mut sim = Sim::new("demo", 3);
    sim.step();
    sim.create_failure =
        Some("create Pod demo-0 in StatefulSet demo failed error: forbidden".into());
    let plan = sim.step();
    let (status, reason, message) = said(&plan, "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PodsNotCreated")
    );
    assert_eq!(
        message,
        "StatefulSet demo cannot create its pods: create Pod demo-0 in StatefulSet demo failed error: forbidden"
    );
    // Nothing wrong: no problem reported.
    sim.create_failure = None;
    let plan = sim.step();
    assert_eq!(said(&plan, "Degraded").0, "False");
}

#[test]
fn a_failure_after_planning_is_degraded_with_its_message_and_a_warning() {
    let mut sim = Sim::running("demo", 3);
    let mut status = sim.step().status;
    assert_eq!(status.phase, Some(Phase::Running));
    let previous = status.conditions.clone();
    let later = sim.now_ms + 5_000;
    let ev = record_failure(
        &mut status,
        &previous,
        later,
        "AddLearner",
        "NodeRpcFailed",
        "node RPC to demo-0:7000 failed: Unavailable: not the leader",
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
    let degraded: Vec<_> = status
        .conditions
        .iter()
        .filter(|c| c.type_ == "Degraded")
        .collect();
    assert_eq!(degraded.len(), 1);
    assert_eq!(degraded[0].status, "True");
    assert_eq!(degraded[0].reason, "NodeRpcFailed");
    assert_eq!(degraded[0].observed_generation, Some(1));
    let first = degraded[0].last_transition_time.clone();
    assert_eq!(
        first.0.as_millisecond(),
        later,
        "False -> True is a transition"
    );
    assert!(ev.warning);
    assert_eq!(
        (ev.reason.as_str(), ev.action.as_str()),
        ("NodeRpcFailed", "AddLearner")
    );
    assert_eq!(
        ev.note,
        "node RPC to demo-0:7000 failed: Unavailable: not the leader"
    );

    // The same failure again: the transition time stays.
    let previous = status.conditions.clone();
    record_failure(
        &mut status,
        &previous,
        later + 5_000,
        "AddLearner",
        "NodeRpcFailed",
        "again",
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.last_transition_time, first);

    // A cluster that does not exist yet stays Pending.
    let mut pending = Sim::new("demo", 3).step().status;
    record_failure(
        &mut pending,
        &[],
        later,
        "Apply",
        "ApplyFailed",
        "Service \"x-peer\" is invalid",
    );
    assert_eq!(pending.phase, Some(Phase::Pending));
}

// --- day-2: disruption budget, placement, volumes (issue 16) ----------------------------

fn zone_risk(plan: &Plan) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == "ZoneRisk")
        .expect("a ZoneRisk condition")
}

#[test]
fn the_voters_budget_follows_the_healthy_quorum() {
    let mut sim = Sim::running("demo", 3);
    let plan = sim.step();
    assert_eq!(
        plan.disruption,
        disruption::Budget {
            allowed: 1,
            min_available: 2
        }
    );
    sim.pod_down("demo-2");
    let plan = sim.step();
    assert_eq!(plan.disruption.allowed, 0, "one of 3 down: none may go");
    let mut five = Sim::running("demo", 5);
    assert_eq!(five.step().disruption.allowed, 2);
}

#[test]
fn zone_risk_is_reported_with_one_warning_and_unknown_without_nodes() {
    let mut sim = Sim::running("demo", 3);
    for (pod, zone) in [("demo-0", "a"), ("demo-1", "a"), ("demo-2", "b")] {
        sim.pods.get_mut(pod).unwrap().zone = Some(zone.into());
    }
    let plan = sim.step();
    let c = zone_risk(&plan);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "QuorumInOneZone")
    );
    assert_eq!(plan.warnings.len(), 1);
    assert_eq!(plan.warnings[0].reason, "ZoneRisk");

    // Nodes unreadable (a namespaced install): Unknown, no warning, still a plan.
    let mut obs = sim.observe();
    obs.nodes_unreadable = Some("nodes is forbidden".into());
    let plan = plan_of(&obs);
    let c = zone_risk(&plan);
    assert_eq!(c.status, "Unknown");
    assert!(c.message.contains("cannot read nodes"), "{}", c.message);
    assert!(plan.warnings.is_empty());
    assert_eq!(plan.status.phase, Some(crate::crd::Phase::Running));
}

#[test]
fn grown_storage_patches_the_smaller_claims_and_keeps_the_claim_templates() {
    let sim = Sim::running("demo", 3);
    let mut obs = sim.observe();
    obs.spec.storage_size = "2Gi".into();
    if let Some(sts) = &mut obs.voters_sts {
        sts.claim_size = Some("1Gi".into());
    }
    obs.pvcs = Some(
        ["data-demo-0", "data-demo-1", "data-demo-2"]
            .into_iter()
            .map(|name| volumes::PvcState {
                name: name.into(),
                requested: Some(if name == "data-demo-0" { "2Gi" } else { "1Gi" }.into()),
                capacity: Some("1Gi".into()),
                condition: None,
            })
            .collect(),
    );
    let plan = plan_of(&obs);
    assert_eq!(plan.grow_pvcs, ["data-demo-1", "data-demo-2"]);
    assert_eq!(plan.claim_sizes.0.as_deref(), Some("1Gi"), "template kept");
    let storage = plan.status.storage.expect("progress in status");
    assert_eq!((storage.resized, storage.volumes), (0, 3));
    // Not listed (nothing grown): nothing to do, nothing reported.
    let plan = plan_of(&sim.observe());
    assert!(plan.grow_pvcs.is_empty());
    assert_eq!(plan.status.storage, None);
}

/// `plan`, callable where a local `plan` shadows the function.
fn plan_of(obs: &Observed) -> Plan {
    plan(obs)
}
