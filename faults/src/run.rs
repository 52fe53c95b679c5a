//! One run: network, nodes, workload, nemesis, heal, end-of-run checks,
//! history check, and the run folder.
//!
//! The run folder `<out>/<nemesis>-n<N>-s<seed>[-break-<mode>]` holds
//! history.jsonl, checker.txt, nemesis.log, summary.json, nodes/*.log and,
//! when the check found anomalies, timeline.html (`timeline`). It
//! is deleted after a clean run unless `--keep`; a run with anomalies or a
//! harness error keeps it (node data directories are always deleted).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use raftkv_proto::v1 as pb;
use raftkv_proto::v1::kv_client::KvClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::{self, Report};
use crate::cluster::Cluster;
use crate::history::{self, Level, Op, OpKind, Outcome};
use crate::monitor;
use crate::nemesis::{Kind, Plan, Runner};
use crate::netns::Net;
use crate::workload::{Break, Recorder, Targets, Worker};

/// After every fault is healed the cluster must accept a write within this.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// How long members get to apply the same log after the heal.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a joint configuration may stay after the heal.
const JOINT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub node_bin: PathBuf,
    pub nodes: usize,
    pub seed: u64,
    pub duration: Duration,
    pub plan: Plan,
    pub out: PathBuf,
    pub workers: u32,
    pub keys: usize,
    pub broken: Option<Break>,
    pub keep: bool,
    pub budget: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub nemesis: String,
    pub nodes: usize,
    pub seed: u64,
    pub broken: Option<Break>,
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
    pub faults: usize,
    pub anomalies: usize,
    pub anomaly_kinds: String,
    pub inconclusive_keys: Vec<String>,
    pub leader_changes: usize,
    pub longest_no_ack_write_ms: u64,
    pub recovery_ms: Option<u64>,
    pub harness_error: Option<String>,
    pub dir: PathBuf,
    pub kept: bool,
}

impl Summary {
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} n{} seed {}{}: ops {} (ok {} fail {} unknown {}), faults {}, anomalies {}{}, leader changes {}, longest without an acknowledged write {:.2}s, write after heal {}",
            self.nemesis,
            self.nodes,
            self.seed,
            self.broken
                .map(|b| format!(
                    " break={}",
                    serde_json::to_value(b)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?")
                ))
                .unwrap_or_default(),
            self.ops,
            self.ok,
            self.fail,
            self.unknown,
            self.faults,
            self.anomalies,
            if self.anomaly_kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.anomaly_kinds)
            },
            self.leader_changes,
            self.longest_no_ack_write_ms as f64 / 1e3,
            self.recovery_ms
                .map(|m| format!("{:.2}s", m as f64 / 1e3))
                .unwrap_or_else(|| "-".into()),
        );
        if !self.inconclusive_keys.is_empty() {
            let _ = write!(s, ", INCONCLUSIVE keys {:?}", self.inconclusive_keys);
        }
        if let Some(e) = &self.harness_error {
            let _ = write!(s, ", HARNESS ERROR: {e}");
        }
        if self.kept {
            let _ = write!(s, "\n    kept in {}", self.dir.display());
        }
        s
    }
}

pub fn run_dir(cfg: &RunConfig) -> PathBuf {
    let mut name = format!("{}-n{}-s{}", cfg.plan.name(), cfg.nodes, cfg.seed);
    if let Some(b) = cfg.broken {
        let b = serde_json::to_value(b).unwrap_or_default();
        let _ = write!(name, "-break-{}", b.as_str().unwrap_or("x"));
    }
    cfg.out.join(name)
}

/// Everything one run measured before the history check.
struct Outcomes {
    ops: Vec<Op>,
    report: Report,
    faults: usize,
    leader_changes: usize,
    recovery_ms: Option<u64>,
    events: Vec<crate::nemesis::Event>,
}

pub async fn run_one(cfg: &RunConfig, cancel: tokio::sync::watch::Receiver<bool>) -> Summary {
    let dir = run_dir(cfg);
    let mut summary = Summary {
        nemesis: cfg.plan.name(),
        nodes: cfg.nodes,
        seed: cfg.seed,
        broken: cfg.broken,
        dir: dir.clone(),
        ..Default::default()
    };
    println!(
        "==> run {} (seed {}, {} nodes, {:?})",
        cfg.plan.name(),
        cfg.seed,
        cfg.nodes,
        cfg.duration
    );
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => execute(cfg, &dir, cancel).await,
        Err(e) => Err(anyhow::anyhow!("creating {}: {e}", dir.display())),
    };
    let _ = std::fs::remove_dir_all(dir.join("data"));
    match result {
        Ok(o) => {
            summary.ops = o.ops.len();
            for op in &o.ops {
                match op.outcome() {
                    Outcome::Ok => summary.ok += 1,
                    Outcome::Fail => summary.fail += 1,
                    Outcome::Unknown => summary.unknown += 1,
                }
            }
            summary.faults = o.faults;
            summary.anomalies = o.report.anomalies.len();
            summary.anomaly_kinds = o.report.by_kind();
            summary.inconclusive_keys = o.report.inconclusive.clone();
            summary.leader_changes = o.leader_changes;
            summary.recovery_ms = o.recovery_ms;
            summary.longest_no_ack_write_ms = longest_without_write(&o.ops) / 1_000_000;
            if let Err(e) = write_outputs(&dir, &o) {
                summary.harness_error = Some(format!("writing the run folder: {e:#}"));
            }
        }
        Err(e) => summary.harness_error = Some(format!("{e:#}")),
    }
    let failed = summary.anomalies > 0
        || summary.harness_error.is_some()
        || !summary.inconclusive_keys.is_empty();
    summary.kept = failed || cfg.keep;
    let _ = std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    );
    if !summary.kept {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("==> {}", summary.line());
    summary
}

fn write_outputs(dir: &Path, o: &Outcomes) -> anyhow::Result<()> {
    history::write_jsonl(&dir.join("history.jsonl"), &o.ops)?;
    std::fs::write(dir.join("checker.txt"), &o.report.text)?;
    let mut log = String::new();
    for e in &o.events {
        let _ = writeln!(log, "{:>9.3}s {}", e.t_ms as f64 / 1e3, e.what);
    }
    std::fs::write(dir.join("nemesis.log"), log)?;
    if !o.report.anomalies.is_empty() {
        std::fs::write(
            dir.join("timeline.html"),
            crate::timeline::render(&o.ops, &o.report.anomalies, &o.events),
        )?;
    }
    Ok(())
}

/// The longest stretch (ns) of the workload with no acknowledged write: from
/// the first invocation to the last completion, gaps between completions of
/// ok puts, deletes and swapped CASes.
pub fn longest_without_write(ops: &[Op]) -> u64 {
    let Some(start) = ops.iter().map(|o| o.invoke_ns).min() else {
        return 0;
    };
    let end = ops
        .iter()
        .filter_map(|o| o.complete_ns)
        .max()
        .unwrap_or(start);
    let mut acks: Vec<u64> = ops
        .iter()
        .filter(|o| {
            o.outcome() == Outcome::Ok
                && match o.kind() {
                    OpKind::Put | OpKind::Delete => true,
                    OpKind::Cas => o.swapped == Some(true),
                    OpKind::Get => false,
                }
        })
        .filter_map(|o| o.complete_ns)
        .collect();
    acks.sort_unstable();
    let mut prev = start;
    let mut longest = 0;
    for t in acks.into_iter().chain([end]) {
        longest = longest.max(t.saturating_sub(prev));
        prev = t;
    }
    longest
}

/// Size of each node's own filesystem in disk-full and mixed runs.
const SMALL_DISK_MIB: u64 = 256;

async fn execute(
    cfg: &RunConfig,
    dir: &Path,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Outcomes> {
    let net = Net::create()?;
    let mut cluster = Cluster::new(net, cfg.node_bin.clone(), dir)?;
    let total = cfg.nodes + usize::from(cfg.plan.needs_spare());
    for _ in 0..total {
        cluster.add_node()?;
    }
    if cfg.plan.needs_small_disks() {
        // Room for a run's log and snapshots many times over; small enough to
        // fill in a moment.
        cluster.small_disks(SMALL_DISK_MIB)?;
    }
    let steady = cfg.plan.steady();
    let start_env = steady
        .map(|k| k.start_env(&cluster, cfg.nodes))
        .unwrap_or_default();
    for i in 0..total {
        cluster.start(i, start_env.clone()).await?;
    }
    let voters: Vec<usize> = (0..cfg.nodes).collect();
    cluster
        .init(&voters)
        .await
        .context("initializing the cluster")?;
    println!(
        "    cluster up on 10.77.{}.0/24 (namespaces rkf{}n*), logs in {}",
        cluster.net.slot,
        cluster.net.slot,
        dir.join("nodes").display()
    );
    let all_nodes: Vec<(usize, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.index, n.client_addr.clone()))
        .collect();
    let rec = Recorder::new();
    let mut runner = Runner::new(cluster, cfg.seed, cfg.nodes, rec.start);
    if cfg.plan.needs_spare() {
        runner.spare = Some(cfg.nodes);
    }

    let targets = Arc::new(Targets::default());
    targets.set(all_nodes[..cfg.nodes].to_vec());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let monitor_changes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let monitor = tokio::spawn(monitor::run(
        all_nodes.clone(),
        targets.clone(),
        monitor_changes.clone(),
        stop_rx.clone(),
    ));
    let workers: Vec<_> = (0..cfg.workers)
        .map(|p| {
            let w = Worker::new(
                p,
                cfg.keys,
                cfg.seed.wrapping_mul(1_000).wrapping_add(u64::from(p)),
                targets.clone(),
                rec.clone(),
                cfg.broken,
            );
            tokio::spawn(w.run(stop_rx.clone()))
        })
        .collect();

    // The fault schedule. Sleeps here are the schedule itself (quiet time
    // between faults), not waits for readiness.
    let end = Instant::now() + cfg.duration;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x0073_6368_6564);
    let mut interrupted = false;
    if let Some(kind) = steady {
        // One action a third of the way in; otherwise the conditions hold.
        let mut c = cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(cfg.duration / 3) => runner.step(kind).await,
            _ = c.wait_for(|v| *v) => interrupted = true,
        }
        let mut c = cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(end.saturating_duration_since(Instant::now())) => {}
            _ = c.wait_for(|v| *v) => interrupted = true,
        }
    }
    while steady.is_none() && !interrupted && Instant::now() < end {
        let quiet = Duration::from_millis(rng.random_range(300..1200));
        let mut c = cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(quiet.min(end.saturating_duration_since(Instant::now()))) => {}
            _ = c.wait_for(|v| *v) => { interrupted = true; break; }
        }
        for (i, code) in runner.cluster.reap_exited() {
            runner.note(format!("node {i} exited on its own ({code})"));
        }
        if Instant::now() >= end {
            break;
        }
        let kind = match &cfg.plan {
            Plan::None => continue,
            Plan::One(k) => *k,
            Plan::Mixed => Kind::MIXED[rng.random_range(0..Kind::MIXED.len())],
        };
        runner.step(kind).await;
    }
    if interrupted {
        let _ = stop_tx.send(true);
        anyhow::bail!("interrupted");
    }

    // Heal everything, then hold the cluster to its promises.
    let mut report = Report::default();
    for (i, code) in runner.cluster.reap_exited() {
        runner.note(format!("node {i} exited on its own ({code})"));
    }
    let changes_before_heal = monitor_changes.load(std::sync::atomic::Ordering::Relaxed);
    if steady.is_some() && changes_before_heal > 0 {
        report.add(
            "leader-changed",
            format!(
                "{changes_before_heal} leader change(s) under a condition a healthy cluster must ride out"
            ),
        );
    }
    for failure in runner.heal_all(steady.is_some()).await {
        report.add("heal-failed", failure);
    }
    let healed = Instant::now();
    // Short attempts find the new leader fast after a heal; under steady
    // 300 ms fsync stalls one write takes two of them or more.
    let attempt = match steady {
        Some(Kind::FsyncStall) => Duration::from_secs(3),
        _ => Duration::from_millis(500),
    };
    let recovery = first_write_after(&runner.cluster, healed, attempt).await;
    let recovery_ms = match recovery {
        Some(d) => {
            runner.note(format!("first write after heal acknowledged after {d:?}"));
            Some(d.as_millis() as u64)
        }
        None => {
            report.add(
                "no-write-after-heal",
                format!("no write was acknowledged within {RECOVERY_BOUND:?} after every fault was healed"),
            );
            None
        }
    };

    if let Err(e) = runner.repair_membership().await {
        runner.note(format!("membership repair failed: {e:#}"));
    }
    wait_not_joint(&mut runner, &mut report).await;

    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    let seen = monitor.await.unwrap_or_default();
    final_reads(&runner.cluster, &rec, cfg.keys).await;
    compare_members(&mut runner, &mut report).await;

    let faults = runner.faults;
    let events = std::mem::take(&mut runner.events);
    drop(runner); // stops the nodes and removes the namespaces

    let ops = rec.take();
    // The history is on disk before the check starts, so a check that takes
    // too long (or is interrupted) still leaves it behind.
    history::write_jsonl(&dir.join("history.jsonl"), &ops)?;
    println!("    checking {} ops", ops.len());
    let mut checked = checker::check(&ops, cfg.budget);
    checked.anomalies.extend(report.anomalies);
    checked.text.push_str(&report.text);
    Ok(Outcomes {
        ops,
        report: checked,
        faults,
        leader_changes: seen.leader_changes(),
        recovery_ms,
        events,
    })
}

async fn wait_not_joint(runner: &mut Runner, report: &mut Report) {
    let deadline = Instant::now() + JOINT_TIMEOUT;
    loop {
        match runner.cluster.membership().await {
            Some((_, _, m)) if !m.joint => return,
            Some((_, _, m)) if Instant::now() > deadline => {
                report.add(
                    "joint-config-stuck",
                    format!(
                        "the membership is still joint {JOINT_TIMEOUT:?} after the heal (log index {}, configs {:?})",
                        m.log_index,
                        m.configs.iter().map(|c| c.voter_ids.clone()).collect::<Vec<_>>()
                    ),
                );
                return;
            }
            None if Instant::now() > deadline => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Time from `healed` to the first acknowledged put, trying each node in
/// turn, each attempt bounded by `attempt`; `None` if none within
/// [`RECOVERY_BOUND`].
async fn first_write_after(c: &Cluster, healed: Instant, attempt: Duration) -> Option<Duration> {
    let deadline = healed + RECOVERY_BOUND;
    let mut n = 0usize;
    while Instant::now() < deadline {
        let node = &c.nodes[n % c.nodes.len()];
        n += 1;
        let mut kv = KvClient::new(c.channel(&node.client_addr));
        let mut req = tonic::Request::new(pb::PutRequest {
            session: None,
            key: b"heal-probe".to_vec(),
            value: format!("{n}").into_bytes(),
        });
        req.set_timeout(attempt);
        if kv.put(req).await.is_ok() {
            return Some(healed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A linearizable read of every key through the leader, after the workers
/// stopped: the final state, recorded in the history like any other read.
async fn final_reads(c: &Cluster, rec: &Recorder, keys: usize) {
    let Ok((li, _)) = c.wait_leader(Duration::from_secs(5)).await else {
        return;
    };
    let mut kv = KvClient::new(c.channel(&c.nodes[li].client_addr));
    for k in 0..keys {
        let key = format!("k{k}");
        let mut op = Op {
            id: rec.id(),
            process: u32::MAX,
            node: li,
            kind: Some(OpKind::Get),
            key: key.clone(),
            level: Some(Level::Linearizable),
            invoke_ns: rec.now(),
            ..Default::default()
        };
        let mut req = tonic::Request::new(pb::GetRequest {
            key: key.into_bytes(),
            read: Some(pb::ReadOptions {
                consistency: pb::Consistency::Linearizable as i32,
                ..Default::default()
            }),
        });
        req.set_timeout(Duration::from_secs(2));
        let r = kv.get(req).await;
        op.complete_ns = Some(rec.now());
        match r {
            Ok(resp) => {
                let resp = resp.into_inner();
                let kv = resp.kv.unwrap_or_default();
                op.read = Some(String::from_utf8_lossy(&kv.value).into_owned());
                op.mod_revision = Some(kv.mod_revision);
                op.revision = resp.header.map(|h| h.revision);
                op.outcome = Some(Outcome::Ok);
            }
            Err(s) if s.code() == tonic::Code::NotFound => op.outcome = Some(Outcome::Ok),
            Err(s) => {
                op.outcome = Some(Outcome::Fail);
                op.error = Some(format!("{:?}: {}", s.code(), s.message()));
            }
        }
        rec.record(op);
    }
}

/// Every member applies the same log: once their applied indexes agree
/// (polled up to [`CONVERGE_TIMEOUT`]), a full stale Range on each must
/// return the same keys, values and revisions.
async fn compare_members(runner: &mut Runner, report: &mut Report) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let members = runner.running_members().await;
    let last;
    loop {
        let mut applied = BTreeMap::new();
        for &i in &members {
            if let Ok(s) = runner.cluster.status(i).await {
                applied.insert(i, (s.applied_index, s.revision));
            }
        }
        let agree = applied.len() == members.len()
            && applied
                .values()
                .map(|v| v.0)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 1;
        if agree {
            last = format!(
                "applied index {}",
                applied.values().next().map(|v| v.0).unwrap_or(0)
            );
            break;
        }
        if Instant::now() > deadline {
            report.add(
                "members-not-converged",
                format!(
                    "members {members:?} did not reach the same applied index within {CONVERGE_TIMEOUT:?}: (applied, revision) {applied:?}"
                ),
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut digests: BTreeMap<usize, (u64, String)> = BTreeMap::new();
    for &i in &members {
        let mut kv = KvClient::new(runner.cluster.channel(&runner.cluster.nodes[i].client_addr));
        let mut req = tonic::Request::new(pb::RangeRequest {
            read: Some(pb::ReadOptions {
                consistency: pb::Consistency::Stale as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(2));
        match kv.range(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let mut d = String::new();
                for e in &r.kvs {
                    let _ = write!(
                        d,
                        "{}={}@{}/{};",
                        String::from_utf8_lossy(&e.key),
                        String::from_utf8_lossy(&e.value),
                        e.create_revision,
                        e.mod_revision
                    );
                }
                digests.insert(i, (r.header.map(|h| h.revision).unwrap_or(0), d));
            }
            Err(s) => runner.note(format!("final range on node {i} failed: {s}")),
        }
    }
    let distinct: std::collections::BTreeSet<&(u64, String)> = digests.values().collect();
    if distinct.len() > 1 {
        let mut detail =
            String::from("members disagree on the state after applying the same log:\n");
        for (i, (rev, d)) in &digests {
            let _ = writeln!(detail, "    node {i}: revision {rev}: {d}");
        }
        report.add("divergent-state", detail);
    } else {
        let _ = writeln!(
            report.text,
            "final state: {} members agree ({last})",
            digests.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, call: u64, ret: Option<u64>, outcome: Outcome) -> Op {
        Op {
            kind: Some(kind),
            invoke_ns: call,
            complete_ns: ret,
            outcome: Some(outcome),
            ..Default::default()
        }
    }

    #[test]
    fn the_longest_gap_counts_only_acknowledged_writes() {
        let ops = vec![
            op(OpKind::Put, 0, Some(10), Outcome::Ok),
            op(OpKind::Get, 20, Some(25), Outcome::Ok),
            op(OpKind::Put, 30, None, Outcome::Unknown),
            op(OpKind::Delete, 40, Some(100), Outcome::Ok),
            Op {
                swapped: Some(false),
                ..op(OpKind::Cas, 100, Some(105), Outcome::Ok)
            },
            op(OpKind::Get, 110, Some(130), Outcome::Ok),
        ];
        // Acks at 10 and 100; the end is 130: the gap 10..100 is the longest.
        assert_eq!(longest_without_write(&ops), 90);
        assert_eq!(longest_without_write(&[]), 0);
    }
}
