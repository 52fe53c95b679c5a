//! Membership changes through the Cluster service, as an operator would make
//! them: add a learner, wait until it caught up, promote it by a joint
//! change, remove a voter, hand leadership over. Each call has its own
//! deadline; a change that times out is left as the server left it (that is
//! the fault the hole 1 is about), and the end-of-run checks notice a
//! joint configuration that never finishes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftkv_proto::v1 as pb;
use rand::Rng;
use tonic::Code;

use super::Runner;
use crate::cluster::member_of;

/// Deadline of one membership RPC (raftctl's retry budget is similar).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replacement may take end to end (catch-up included).
const REPLACE_TIMEOUT: Duration = Duration::from_secs(30);

fn call<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}

async fn leader(r: &Runner) -> anyhow::Result<(usize, pb::StatusResponse)> {
    r.cluster.wait_leader(Duration::from_secs(10)).await
}

fn voter_ids(m: &pb::Membership) -> Vec<u64> {
    m.voters.iter().map(|v| v.node_id).collect()
}

/// Add node `i` as a learner (already being one is fine).
pub async fn add_learner(r: &mut Runner, i: usize) -> anyhow::Result<()> {
    let st = r.cluster.status(i).await?;
    let (l, _) = leader(r).await?;
    match r
        .cluster
        .cluster_client(l)
        .add_learner(call(pb::AddLearnerRequest {
            member: Some(member_of(&st)),
        }))
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => bail!("AddLearner node {i}: {:?} {}", s.code(), s.message()),
    }
}

/// Set the voters to `ids`, retrying refusals that clear up by themselves
/// (learner not caught up yet, no leader, another change finishing) until
/// `deadline`.
pub async fn change_voters(r: &mut Runner, ids: Vec<u64>, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let (l, _) = leader(r).await?;
        let res = r
            .cluster
            .cluster_client(l)
            .change_membership(call(pb::ChangeMembershipRequest {
                voter_ids: ids.clone(),
                retain: false,
                ..Default::default()
            }))
            .await;
        match res {
            Ok(_) => return Ok(()),
            Err(s)
                if matches!(s.code(), Code::FailedPrecondition | Code::Unavailable)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("ChangeMembership {ids:?}: {:?} {}", s.code(), s.message()),
        }
    }
}

/// Node `i` (fresh, new ID) takes the voter seat of `old_id`.
pub async fn replace(r: &mut Runner, i: usize, old_id: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + REPLACE_TIMEOUT;
    add_learner(r, i)
        .await
        .context("adding the replacement as a learner")?;
    let new_id = r.cluster.nodes[i].node_id;
    let (_, ls) = leader(r).await?;
    let mut voters: Vec<u64> = ls
        .membership
        .as_ref()
        .map(voter_ids)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| *v != old_id && *v != new_id)
        .collect();
    voters.push(new_id);
    change_voters(r, voters, deadline)
        .await
        .context("promoting the replacement")
}

/// One membership change, chosen so the voter count oscillates around the
/// starting size: remove an extra voter, promote a learner, add the spare,
/// or transfer leadership.
pub async fn churn(r: &mut Runner) -> anyhow::Result<()> {
    let (li, ls) = leader(r).await?;
    let m = ls.membership.clone().unwrap_or_default();
    let voters = voter_ids(&m);
    let learners: Vec<u64> = m.learners.iter().map(|l| l.node_id).collect();
    let deadline = Instant::now() + REPLACE_TIMEOUT;
    if m.joint {
        r.note("membership: a joint config is in progress; not starting another change");
        return Ok(());
    }
    if r.rng.random_ratio(1, 4)
        || (voters.len() <= r.voters && learners.is_empty() && r.spare.is_none())
    {
        let others: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|v| *v != ls.node_id)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let target = others[r.rng.random_range(0..others.len())];
        r.note(format!(
            "membership: transfer leadership from {} to {target}",
            ls.node_id
        ));
        let res = r
            .cluster
            .cluster_client(li)
            .transfer_leader(call(pb::TransferLeaderRequest {
                target_node_id: target,
            }))
            .await;
        match res {
            Ok(t) => r.note(format!(
                "membership: leader is now {}",
                t.into_inner().new_leader_id
            )),
            Err(s) => r.note(format!(
                "membership: transfer refused: {:?} {}",
                s.code(),
                s.message()
            )),
        }
        return Ok(());
    }
    if voters.len() > r.voters {
        // Remove a voter other than the leader, then recycle it as the spare.
        let others: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|v| *v != ls.node_id)
            .collect();
        let gone = others[r.rng.random_range(0..others.len())];
        let keep: Vec<u64> = voters.iter().copied().filter(|v| *v != gone).collect();
        r.note(format!("membership: remove voter {gone} (voters {keep:?})"));
        change_voters(r, keep, deadline).await?;
        if let Some(i) = r.cluster.index_of(gone) {
            r.cluster.wipe(i)?;
            r.cluster.start(i, Vec::new()).await?;
            r.spare = Some(i);
            r.note(format!(
                "membership: node {i} wiped and restarted as the spare (id {})",
                r.cluster.nodes[i].node_id
            ));
        }
        return Ok(());
    }
    if let Some(&learner) = learners.first() {
        let mut ids = voters.clone();
        ids.push(learner);
        r.note(format!(
            "membership: promote learner {learner} (voters {ids:?})"
        ));
        change_voters(r, ids, deadline).await?;
        if r.cluster.index_of(learner) == r.spare {
            r.spare = None;
        }
        return Ok(());
    }
    if let Some(s) = r.spare {
        r.note(format!(
            "membership: add node {s} (id {}) as a learner",
            r.cluster.nodes[s].node_id
        ));
        add_learner(r, s).await?;
        r.spare = None;
    }
    Ok(())
}

/// Issue 11, hole 1: a membership change whose caller gives up after a few
/// milliseconds (an operator SIGTERMed mid-upgrade, a raftctl timeout). The
/// server runs the two-phase change in the RPC handler, so a dropped call can
/// leave the joint configuration in place; the end-of-run check then reports
/// `joint-config-stuck`. One step: get a learner ready (add the spare), or
/// promote a learner / remove an extra voter with a 1-30 ms deadline.
pub async fn abandon(r: &mut Runner) -> anyhow::Result<()> {
    let (li, ls) = leader(r).await?;
    let m = ls.membership.clone().unwrap_or_default();
    if m.joint {
        r.note("abandon: the membership is joint; waiting for it to finish");
        return Ok(());
    }
    let voters = voter_ids(&m);
    let learners: Vec<u64> = m.learners.iter().map(|l| l.node_id).collect();
    let (what, ids, removed) = if voters.len() > r.voters {
        let others: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|v| *v != ls.node_id)
            .collect();
        let gone = others[r.rng.random_range(0..others.len())];
        let keep: Vec<u64> = voters.iter().copied().filter(|v| *v != gone).collect();
        (format!("remove voter {gone}"), keep, Some(gone))
    } else if let Some(&learner) = learners.first() {
        let mut ids = voters.clone();
        ids.push(learner);
        (format!("promote learner {learner}"), ids, None)
    } else if let Some(s) = r.spare {
        r.note(format!(
            "abandon: add node {s} as a learner (full deadline)"
        ));
        add_learner(r, s).await?;
        r.spare = None;
        return Ok(());
    } else {
        return Ok(());
    };
    let ms = r.rng.random_range(1..=30u64);
    let deadline = Duration::from_millis(ms);
    let mut req = tonic::Request::new(pb::ChangeMembershipRequest {
        voter_ids: ids,
        retain: false,
        ..Default::default()
    });
    req.set_timeout(deadline);
    let mut client = r.cluster.cluster_client(li);
    let res = tokio::time::timeout(deadline, client.change_membership(req)).await;
    let outcome = match res {
        Ok(Ok(_)) => "completed in time".to_string(),
        Ok(Err(s)) => format!("{:?} {}", s.code(), s.message()),
        Err(_) => "abandoned by the caller".to_string(),
    };
    r.note(format!(
        "abandon: {what} with a {ms} ms deadline: {outcome}"
    ));
    // A voter that did leave is recycled as the spare, as churn does.
    if let Some(gone) = removed {
        let settle = Instant::now() + Duration::from_secs(2);
        while Instant::now() < settle {
            if let Some((_, _, m)) = r.cluster.membership().await
                && !m.joint
            {
                if !voter_ids(&m).contains(&gone)
                    && let Some(i) = r.cluster.index_of(gone)
                {
                    r.cluster.wipe(i)?;
                    r.cluster.start(i, Vec::new()).await?;
                    r.spare = Some(i);
                    r.note(format!(
                        "abandon: node {i} left; wiped and kept as the spare"
                    ));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
