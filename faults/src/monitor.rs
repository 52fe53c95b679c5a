//! Watches the cluster while the run goes: polls every node's Status, counts
//! leader changes (distinct (term, leader) pairs seen), and keeps the
//! workers' target list equal to the current membership (voters and
//! learners), so clients attach to members only.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftkv_proto::v1 as pb;

use crate::cluster::{channel, status_at};
use crate::workload::Targets;

const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// (term, leader node id) pairs reported by any node.
    pub leaders: BTreeSet<(u64, u64)>,
}

impl Seen {
    pub fn leader_changes(&self) -> usize {
        self.leaders.len().saturating_sub(1)
    }
}

/// Runs until `stop`; `nodes` is every node's (index, client address).
/// `changes` follows the leader changes seen so far (for a count taken
/// before the heal).
pub async fn run(
    nodes: Vec<(usize, String)>,
    targets: Arc<Targets>,
    changes: Arc<std::sync::atomic::AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    let chans: Vec<_> = nodes
        .iter()
        .map(|(i, a)| (*i, a.clone(), channel(a)))
        .collect();
    let mut seen = Seen::default();
    loop {
        let polls = chans.iter().map(|(i, _, ch)| {
            let ch = ch.clone();
            let i = *i;
            async move { status_at(ch).await.ok().map(|s| (i, s)) }
        });
        let statuses: Vec<(usize, pb::StatusResponse)> = futures::future::join_all(polls)
            .await
            .into_iter()
            .flatten()
            .collect();
        for (_, s) in &statuses {
            if s.leader_id != 0 {
                seen.leaders.insert((s.term, s.leader_id));
            }
        }
        changes.store(seen.leader_changes(), Ordering::Relaxed);
        if let Some((li, ls)) = statuses
            .iter()
            .filter(|(_, s)| s.role == pb::Role::Leader as i32)
            .max_by_key(|(_, s)| s.term)
        {
            targets.leader.store(*li as u64, Ordering::Relaxed);
            if let Some(m) = &ls.membership {
                let members: Vec<(usize, String)> = m
                    .voters
                    .iter()
                    .chain(&m.learners)
                    .filter_map(|mem| {
                        chans
                            .iter()
                            .find(|(_, a, _)| *a == mem.client_addr)
                            .map(|(i, a, _)| (*i, a.clone()))
                    })
                    .collect();
                if !members.is_empty() {
                    targets.set(members);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return seen,
        }
        if *stop.borrow() {
            return seen;
        }
    }
}
