//! The nemeses: each step injects one fault, holds it for a seeded random
//! time, and heals it. `mixed` picks a nemesis at random per step. At the end
//! [`Runner::heal_all`] undoes whatever is left, whatever happened.
//!
//! Fault knobs of raft-node (RAFTKV_FAULT_*) are read once at process start,
//! so the peer-fault and fsync nemeses restart a node (SIGTERM) with the
//! knobs on, and heal by restarting it with them off.

pub mod membership;
pub mod partition;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{Cluster, ELECTION_TIMEOUT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    PeerFaults,
    Fsync,
    Wipe,
    Membership,
    Abandon,
    /// One node's filesystem fills up (ENOSPC), then is freed.
    DiskFull,
    /// Steady state: 300 ms on every RPC to one voter, a follower restarted
    /// a third of the way in; no leader change allowed.
    SlowLink,
    /// Steady state: every fsync on every node stalls 300 ms; no leader
    /// change allowed.
    FsyncStall,
}

impl Kind {
    /// Conditions a healthy cluster must ride out without a leader change
    /// (issue 11: "a 60 s run ... shows zero leader changes"). Not faults to
    /// heal: the knobs stay on until the end, and a leader change is an
    /// anomaly. Not part of `all` or `mixed`.
    pub const STEADY: [Kind; 2] = [Kind::SlowLink, Kind::FsyncStall];

    pub fn is_steady(self) -> bool {
        Kind::STEADY.contains(&self)
    }

    pub const ALL: [Kind; 9] = [
        Kind::Kill,
        Kind::Pause,
        Kind::Partition,
        Kind::PeerFaults,
        Kind::Fsync,
        Kind::Wipe,
        Kind::Membership,
        Kind::Abandon,
        Kind::DiskFull,
    ];

    /// What `mixed` draws from: every nemesis (`abandon-membership` too,
    /// since hole 1 of issue 11 is fixed).
    pub const MIXED: [Kind; 9] = Kind::ALL;

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::PeerFaults => "peer-faults",
            Kind::Fsync => "fsync",
            Kind::Wipe => "wipe",
            Kind::Membership => "membership",
            Kind::Abandon => "abandon-membership",
            Kind::DiskFull => "disk-full",
            Kind::SlowLink => "slow-link",
            Kind::FsyncStall => "fsync-stall",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .chain(Kind::STEADY)
            .find(|k| k.name() == s)
    }

    /// The fault knobs every node of a steady run starts with (`voters`: the
    /// cluster's voters; the slow link leads to the last of them). The Raft
    /// timings are the defaults (heartbeat 50 ms, election 200-400 ms): a
    /// 300 ms disk or link must slow the cluster down, not stop it (issue 11,
    /// hole 7; until its fix these runs needed a 1 s heartbeat and 3-6 s
    /// elections).
    pub fn start_env(self, cluster: &Cluster, voters: usize) -> Vec<(String, String)> {
        match self {
            Kind::SlowLink => vec![
                ("RAFTKV_FAULT_PEER_DELAY".into(), "300ms".into()),
                (
                    "RAFTKV_FAULT_PEER_ONLY_TO".into(),
                    cluster.nodes[voters - 1].peer_addr.clone(),
                ),
            ],
            Kind::FsyncStall => vec![
                ("RAFTKV_FAULT_FSYNC_DELAY_PCT".into(), "100".into()),
                ("RAFTKV_FAULT_FSYNC_DELAY".into(), "300ms".into()),
            ],
            _ => Vec::new(),
        }
    }
}

/// What `--nemesis` selected for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    None,
    One(Kind),
    Mixed,
}

impl Plan {
    pub fn name(&self) -> String {
        match self {
            Plan::None => "none".into(),
            Plan::One(k) => k.name().into(),
            Plan::Mixed => "mixed".into(),
        }
    }

    /// The steady-state condition this run holds, if it is one.
    pub fn steady(&self) -> Option<Kind> {
        match self {
            Plan::One(k) if k.is_steady() => Some(*k),
            _ => None,
        }
    }

    /// Whether each node needs a small filesystem of its own (disk-full).
    pub fn needs_small_disks(&self) -> bool {
        matches!(self, Plan::One(Kind::DiskFull) | Plan::Mixed)
    }

    pub fn needs_spare(&self) -> bool {
        matches!(
            self,
            Plan::One(Kind::Membership | Kind::Abandon) | Plan::Mixed
        )
    }
}

/// One line of nemesis.log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub t_ms: u64,
    pub what: String,
}

pub struct Runner {
    pub cluster: Cluster,
    pub rng: StdRng,
    /// The voter count the cluster started with (membership churn keeps it).
    pub voters: usize,
    /// A started, uninitialized node membership churn adds and removes.
    pub spare: Option<usize>,
    pub events: Vec<Event>,
    pub faults: usize,
    start: Instant,
}

/// Peer RPC faults of one process start: drop 20%, delay all by 10-300 ms.
fn peer_fault_env() -> Vec<(String, String)> {
    vec![
        ("RAFTKV_FAULT_PEER_DROP_PCT".into(), "20".into()),
        ("RAFTKV_FAULT_PEER_DELAY".into(), "10ms..300ms".into()),
    ]
}

impl Runner {
    pub fn new(cluster: Cluster, seed: u64, voters: usize, start: Instant) -> Runner {
        Runner {
            cluster,
            // Distinct stream from the workers' (seeded from the same --seed).
            rng: StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973),
            voters,
            spare: None,
            events: Vec::new(),
            faults: 0,
            start,
        }
    }

    pub fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        let t_ms = self.start.elapsed().as_millis() as u64;
        println!("    [{:>7.3}s] {what}", t_ms as f64 / 1e3);
        self.events.push(Event { t_ms, what });
    }

    fn hold(&mut self, min: Duration, max: Duration) -> Duration {
        let ms = self
            .rng
            .random_range(min.as_millis() as u64..=max.as_millis() as u64);
        Duration::from_millis(ms)
    }

    /// Pick a running member: the leader, a follower or any, at random.
    async fn victim(&mut self) -> Option<(usize, &'static str)> {
        let members = self.running_members().await;
        if members.is_empty() {
            return None;
        }
        let leader = self.cluster.leader().await.map(|(i, _)| i);
        let followers: Vec<usize> = members
            .iter()
            .copied()
            .filter(|m| Some(*m) != leader)
            .collect();
        match self.rng.random_range(0..3) {
            0 if leader.is_some() => Some((leader.unwrap_or(members[0]), "leader")),
            1 if !followers.is_empty() => Some((
                followers[self.rng.random_range(0..followers.len())],
                "follower",
            )),
            _ => Some((members[self.rng.random_range(0..members.len())], "random")),
        }
    }

    /// Members (voters and learners) that are running, by node index.
    pub async fn running_members(&self) -> Vec<usize> {
        match self.cluster.membership().await {
            Some((v, l, _)) => v
                .into_iter()
                .chain(l)
                .filter(|i| self.cluster.nodes[*i].running())
                .collect(),
            None => self
                .cluster
                .nodes
                .iter()
                .filter(|n| n.running() && Some(n.index) != self.spare)
                .map(|n| n.index)
                .collect(),
        }
    }

    /// One step of `kind`: inject, hold, heal. Errors are noted, not fatal:
    /// under overlapping faults a step may legitimately fail.
    pub async fn step(&mut self, kind: Kind) {
        self.faults += 1;
        if let Err(e) = self.try_step(kind).await {
            self.note(format!("{} step did not complete: {e:#}", kind.name()));
        }
    }

    async fn try_step(&mut self, kind: Kind) -> anyhow::Result<()> {
        match kind {
            Kind::Kill => {
                let Some((i, role)) = self.victim().await else {
                    return Ok(());
                };
                self.cluster.kill(i);
                self.note(format!("kill -9 node {i} ({role})"));
                let d = self.hold(Duration::from_millis(300), Duration::from_secs(2));
                tokio::time::sleep(d).await;
                let env = self.cluster.nodes[i].env.clone();
                self.cluster.start(i, env).await?;
                self.note(format!("restarted node {i}"));
            }
            Kind::Pause => {
                let Some((i, role)) = self.victim().await else {
                    return Ok(());
                };
                self.cluster.pause(i)?;
                self.note(format!("SIGSTOP node {i} ({role})"));
                let d = self.hold(ELECTION_TIMEOUT * 2, Duration::from_secs(3));
                tokio::time::sleep(d).await;
                self.cluster.resume(i)?;
                self.note(format!("SIGCONT node {i} after {d:?}"));
            }
            Kind::Partition => {
                let members = self.running_members().await;
                if members.len() < 2 {
                    return Ok(());
                }
                let leader = self.cluster.leader().await.map(|(i, _)| i);
                let shapes = partition::Shape::for_size(members.len());
                let shape = shapes[self.rng.random_range(0..shapes.len())];
                let cut = partition::plan(shape, &members, leader, &mut self.rng);
                self.cluster.net.cut(&cut)?;
                self.note(format!(
                    "partition {} (leader {leader:?}): cut {cut:?}",
                    shape.name()
                ));
                let d = self.hold(ELECTION_TIMEOUT * 3, Duration::from_secs(6));
                tokio::time::sleep(d).await;
                self.cluster.net.heal()?;
                self.note(format!("healed partition after {d:?}"));
            }
            Kind::PeerFaults | Kind::Fsync => {
                let Some((i, role)) = self.victim().await else {
                    return Ok(());
                };
                let env = if kind == Kind::PeerFaults {
                    peer_fault_env()
                } else if self.rng.random_ratio(1, 3) {
                    // A failed fsync stops the log writer; the node must be
                    // restarted to recover (the heal does that).
                    vec![("RAFTKV_FAULT_FSYNC_FAIL_PCT".into(), "2".into())]
                } else {
                    let ms = [50, 100, 200][self.rng.random_range(0..3)];
                    vec![
                        ("RAFTKV_FAULT_FSYNC_DELAY_PCT".into(), "100".into()),
                        ("RAFTKV_FAULT_FSYNC_DELAY".into(), format!("{ms}ms")),
                    ]
                };
                let desc: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.cluster.terminate(i).await;
                self.cluster.start(i, env).await?;
                self.note(format!(
                    "restarted node {i} ({role}) with {}",
                    desc.join(" ")
                ));
                let d = self.hold(Duration::from_secs(2), Duration::from_secs(5));
                tokio::time::sleep(d).await;
                self.cluster.terminate(i).await;
                self.cluster.start(i, Vec::new()).await?;
                self.note(format!("restarted node {i} without fault knobs"));
            }
            Kind::Wipe => {
                let Some((i, role)) = self.victim().await else {
                    return Ok(());
                };
                let old_id = self.cluster.nodes[i].node_id;
                self.cluster.wipe(i)?;
                self.note(format!("wiped node {i} ({role}, id {old_id})"));
                let d = self.hold(Duration::from_millis(200), Duration::from_secs(1));
                tokio::time::sleep(d).await;
                self.cluster.start(i, Vec::new()).await?;
                let new_id = self.cluster.nodes[i].node_id;
                self.note(format!(
                    "node {i} is back empty as id {new_id}; replacing {old_id}"
                ));
                membership::replace(self, i, old_id).await?;
                self.note(format!(
                    "node {i} (id {new_id}) replaced id {old_id} as a voter"
                ));
            }
            Kind::DiskFull => {
                let Some((i, role)) = self.victim().await else {
                    return Ok(());
                };
                let filled = self.cluster.fill_disk(i)?;
                self.note(format!(
                    "filled node {i}'s disk ({role}; {} MiB of filler, ENOSPC)",
                    filled >> 20
                ));
                let d = self.hold(Duration::from_secs(1), Duration::from_secs(3));
                tokio::time::sleep(d).await;
                self.cluster.free_disk(i)?;
                // A node whose append failed exits non-zero (a fatal storage
                // error, hole 6); a supervisor (the kubelet) starts it again.
                let exited = self.cluster.reap_exited();
                for (j, code) in &exited {
                    self.note(format!("node {j} exited on its own ({code})"));
                }
                if !self.cluster.nodes[i].running() {
                    let env = self.cluster.nodes[i].env.clone();
                    self.cluster.start(i, env).await?;
                    self.note(format!("freed node {i}'s disk after {d:?}; restarted it"));
                } else {
                    self.note(format!(
                        "freed node {i}'s disk after {d:?}; it kept running"
                    ));
                }
            }
            Kind::Membership => membership::churn(self).await?,
            Kind::Abandon => membership::abandon(self).await?,
            Kind::SlowLink => {
                // The follower behind the slow link if it is one, else another.
                let leader = self.cluster.leader().await.map(|(i, _)| i);
                let slow = self.voters - 1;
                let Some(i) = [slow, 0, 1]
                    .into_iter()
                    .find(|i| Some(*i) != leader && self.cluster.nodes[*i].running())
                else {
                    return Ok(());
                };
                let env = self.cluster.nodes[i].env.clone();
                self.cluster.terminate(i).await;
                self.cluster.start(i, env).await?;
                self.note(format!("restarted follower node {i} (SIGTERM, same knobs)"));
            }
            Kind::FsyncStall => self.note("fsyncs keep stalling 300 ms on every node"),
        }
        Ok(())
    }

    /// Undo every fault: network, pauses, fault knobs, dead nodes. Returns
    /// what could not be undone (a node that does not start again is a
    /// finding, not a harness error); whether the cluster recovered is
    /// measured by the caller.
    pub async fn heal_all(&mut self, keep_knobs: bool) -> Vec<String> {
        let mut failed = Vec::new();
        if let Err(e) = self.cluster.net.heal() {
            failed.push(format!("removing partitions: {e:#}"));
        }
        for i in 0..self.cluster.nodes.len() {
            if self.cluster.nodes[i].paused
                && let Err(e) = self.cluster.resume(i)
            {
                failed.push(format!("resuming node {i}: {e:#}"));
            }
            if !keep_knobs && !self.cluster.nodes[i].env.is_empty() {
                self.cluster.terminate(i).await;
            }
            let env = if keep_knobs {
                self.cluster.nodes[i].env.clone()
            } else {
                Vec::new()
            };
            if !self.cluster.nodes[i].running()
                && let Err(e) = self.cluster.start(i, env).await
            {
                failed.push(format!("restarting node {i}: {e:#}"));
            }
        }
        self.note(if failed.is_empty() {
            if keep_knobs {
                "healed: network restored, every node running (steady run: knobs kept)".to_string()
            } else {
                "healed: network restored, every node running without fault knobs".to_string()
            }
        } else {
            format!("heal incomplete: {}", failed.join("; "))
        });
        failed
    }

    /// After heal: finish half-done replacements (a wiped node that is not a
    /// member while its old ID still is a voter).
    pub async fn repair_membership(&mut self) -> anyhow::Result<()> {
        let Some((_, _, m)) = self.cluster.membership().await else {
            anyhow::bail!("no leader to read the membership from");
        };
        let member_ids: Vec<u64> = m
            .voters
            .iter()
            .chain(&m.learners)
            .map(|v| v.node_id)
            .collect();
        let current: Vec<u64> = self.cluster.nodes.iter().map(|n| n.node_id).collect();
        let mut stale = m
            .voters
            .iter()
            .map(|v| v.node_id)
            .filter(|id| !current.contains(id));
        for i in 0..self.cluster.nodes.len() {
            if Some(i) == self.spare || member_ids.contains(&self.cluster.nodes[i].node_id) {
                continue;
            }
            let Some(old) = stale.next() else { break };
            self.note(format!("repair: node {i} replaces stale voter id {old}"));
            membership::replace(self, i, old).await?;
        }
        Ok(())
    }
}
