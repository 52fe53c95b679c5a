//! The `raft-node` processes of one run: start (inside their namespaces),
//! kill, pause, wipe, and the Cluster-service calls the harness needs.
//!
//! Node i listens on 10.77.S.<10+i>:7000 (clients) and :7001 (peers); the
//! addresses are stable across restarts and wipes, as a StatefulSet pod's
//! DNS name is. Each node logs to `<run>/nodes/node-<i>.log` (appended across
//! restarts) and keeps its data in `<run>/data/node-<i>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftkv_proto::v1 as pb;
use raftkv_proto::v1::cluster_client::ClusterClient;
use std::sync::Mutex;
use tonic::transport::Channel;

use crate::netns::Net;

pub const CLIENT_PORT: u16 = 7000;
pub const PEER_PORT: u16 = 7001;
/// Upper bound on a node answering Status after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Election timeout upper bound of the nodes (raft-node default); pauses and
/// partitions are held longer than this so they force elections.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(400);

pub struct Node {
    pub index: usize,
    pub client_addr: String,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
    /// Raft node ID reported at the last start (changes when wiped).
    pub node_id: u64,
    /// Fault knobs of the current process start (RAFTKV_FAULT_*).
    pub env: Vec<(String, String)>,
    /// The small filesystem of its own the data directory lives on, when
    /// the run has one per node (`Cluster::small_disks`, the disk-full
    /// nemesis): its mount point, which also holds the filler file.
    pub disk: Option<PathBuf>,
}

impl Node {
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

pub struct Cluster {
    pub net: Net,
    pub nodes: Vec<Node>,
    bin: PathBuf,
    dir: PathBuf,
    channels: Mutex<HashMap<String, Channel>>,
}

/// A shared handle: workers and the monitor read, the nemesis mutates.
pub type Shared = Arc<tokio::sync::Mutex<Cluster>>;

pub fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("node addresses are valid URIs")
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect_lazy()
}

impl Cluster {
    pub fn new(net: Net, bin: PathBuf, dir: &Path) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir.join("nodes"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        Ok(Cluster {
            net,
            nodes: Vec::new(),
            bin,
            dir: dir.to_path_buf(),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// A lazily connected channel to a client address (cached per address).
    pub fn channel(&self, addr: &str) -> Channel {
        // A poisoned lock only means a panicking holder; the map is still fine.
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_insert_with(|| channel(addr))
            .clone()
    }

    /// Create node `i`'s namespace and bookkeeping (not started).
    pub fn add_node(&mut self) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        self.net.add_node(i)?;
        let ip = self.net.ip(i);
        self.nodes.push(Node {
            index: i,
            client_addr: format!("{ip}:{CLIENT_PORT}"),
            peer_addr: format!("{ip}:{PEER_PORT}"),
            data_dir: self.dir.join("data").join(format!("node-{i}")),
            log: self.dir.join("nodes").join(format!("node-{i}.log")),
            child: None,
            paused: false,
            node_id: 0,
            env: Vec::new(),
            disk: None,
        });
        Ok(i)
    }

    /// Puts every node's data directory on a small filesystem of its own (a
    /// tmpfs of `mib` MiB), so that one node's disk can be filled without
    /// touching the others. Call before the nodes start.
    pub fn small_disks(&mut self, mib: u64) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            let mount = self.dir.join("disks").join(format!("node-{}", n.index));
            std::fs::create_dir_all(&mount)?;
            let status = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={mib}m,mode=0700"),
                    "tmpfs",
                ])
                .arg(&mount)
                .status()
                .context("running mount (util-linux)")?;
            if !status.success() {
                bail!("mount -t tmpfs at {} failed ({status})", mount.display());
            }
            n.data_dir = mount.join("data");
            n.disk = Some(mount);
        }
        Ok(())
    }

    /// Fills node `i`'s filesystem until the kernel says it is full
    /// (ENOSPC); returns the bytes written.
    pub fn fill_disk(&self, i: usize) -> anyhow::Result<u64> {
        use std::io::Write;
        let Some(mount) = &self.nodes[i].disk else {
            bail!("node {i} has no filesystem of its own (small_disks not called)");
        };
        let mut f = std::fs::File::create(mount.join("filler"))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => return Ok(written),
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
                Err(e) => return Err(e).context("filling the disk"),
            }
        }
    }

    /// Frees what `fill_disk` took.
    pub fn free_disk(&self, i: usize) -> anyhow::Result<()> {
        if let Some(mount) = &self.nodes[i].disk {
            match std::fs::remove_file(mount.join("filler")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Start node `i` with `env` (fault knobs for this process start) and
    /// wait until it answers Status.
    pub async fn start(&mut self, i: usize, env: Vec<(String, String)>) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        if n.child.is_some() {
            bail!("node {i} is already running");
        }
        std::fs::create_dir_all(&n.data_dir)?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .with_context(|| format!("opening {}", n.log.display()))?;
        use std::io::Write;
        let mut note = log.try_clone()?;
        let _ = writeln!(
            note,
            "==== raftkv-faults: starting node {i}{} ====",
            if env.is_empty() {
                String::new()
            } else {
                format!(
                    " with {}",
                    env.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        );
        let prefix = self.net.exec_prefix(i);
        let mut cmd = Command::new(&prefix[0]);
        cmd.args(&prefix[1..])
            .arg(&self.bin)
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--client-addr", &n.client_addr])
            .args(["--peer-addr", &n.peer_addr])
            .args(["--name", &format!("node-{i}")])
            .args(["--log-format", "text"])
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("RAFTKV_FAULTS_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal Ctrl-C reaches only the harness,
            // which then stops the nodes and removes the namespaces in order.
            .process_group(0);
        // SAFETY: prctl(2) is async-signal-safe and touches no parent memory.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // Die with the harness even if it is SIGKILLed.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        use std::os::unix::process::CommandExt as _;
        n.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.bin.display()))?,
        );
        n.paused = false;
        n.env = env;
        let addr = n.client_addr.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(st) = self.status(i).await {
                self.nodes[i].node_id = st.node_id;
                return Ok(());
            }
            if let Some(code) = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.nodes[i].child = None;
                bail!(
                    "node {i} exited ({code}) before answering Status; last lines of {}:\n{}",
                    self.nodes[i].log.display(),
                    tail(&self.nodes[i].log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!("node {i} did not answer Status at {addr} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, i: usize, sig: i32) -> anyhow::Result<()> {
        let Some(pid) = self.nodes[i].pid() else {
            bail!("node {i} is not running");
        };
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        if unsafe { libc::kill(pid, sig) } != 0 {
            bail!(
                "kill -{sig} node {i} (pid {pid}): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// kill -9 and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// SIGTERM (a graceful stop, as Kubernetes does), SIGKILL after 5 s.
    pub async fn terminate(&mut self, i: usize) {
        let _ = self.resume(i);
        if self.signal(i, libc::SIGTERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let done = self.nodes[i]
                    .child
                    .as_mut()
                    .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
                if done {
                    self.nodes[i].child = None;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.kill(i);
    }

    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, libc::SIGSTOP)?;
        self.nodes[i].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT)?;
            self.nodes[i].paused = false;
        }
        Ok(())
    }

    /// kill -9 and delete the data directory (a lost volume).
    pub fn wipe(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        if self.nodes[i].data_dir.exists() {
            std::fs::remove_dir_all(&self.nodes[i].data_dir)?;
        }
        Ok(())
    }

    /// Nodes that died without being told to (crash, fatal error exit).
    pub fn reap_exited(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(code)) = c.try_wait()
            {
                out.push((n.index, code.to_string()));
                n.child = None;
                n.paused = false;
            }
        }
        out
    }

    pub fn cluster_client(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel(&self.nodes[i].client_addr))
    }

    pub async fn status(&self, i: usize) -> anyhow::Result<pb::StatusResponse> {
        status_at(self.channel(&self.nodes[i].client_addr)).await
    }

    /// Status of every running, unpaused node.
    pub async fn statuses(&self) -> Vec<(usize, pb::StatusResponse)> {
        let futs = self
            .nodes
            .iter()
            .filter(|n| n.running() && !n.paused)
            .map(|n| {
                let ch = self.channel(&n.client_addr);
                let i = n.index;
                async move { status_at(ch).await.ok().map(|s| (i, s)) }
            });
        futures::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The node that reports itself leader at the highest term, if any.
    pub async fn leader(&self) -> Option<(usize, pb::StatusResponse)> {
        self.statuses()
            .await
            .into_iter()
            .filter(|(_, s)| s.role == pb::Role::Leader as i32)
            .max_by_key(|(_, s)| s.term)
    }

    pub async fn wait_leader(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(usize, pb::StatusResponse)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Initialize the given nodes as the voters of a new cluster, the way
    /// `raftctl cluster init` does: every node must answer Status and be
    /// fresh; Initialize goes to the first with all of them as members.
    pub async fn init(&mut self, voters: &[usize]) -> anyhow::Result<()> {
        let mut members = Vec::new();
        for &i in voters {
            let s = self.status(i).await?;
            if !s.cluster_id.is_empty() {
                bail!("node {i} already belongs to cluster {}", s.cluster_id);
            }
            members.push(member_of(&s));
        }
        self.cluster_client(voters[0])
            .initialize(pb::InitializeRequest { members })
            .await
            .context("Initialize")?;
        self.wait_leader(START_TIMEOUT).await?;
        Ok(())
    }

    pub fn index_of(&self, node_id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.node_id == node_id)
    }

    /// Indexes of the members (voters and learners) of the leader's
    /// membership, and whether it is joint.
    pub async fn membership(&self) -> Option<(Vec<usize>, Vec<usize>, pb::Membership)> {
        let (_, st) = self.leader().await?;
        let m = st.membership?;
        let idx = |ms: &[pb::Member]| -> Vec<usize> {
            ms.iter().filter_map(|m| self.index_of(m.node_id)).collect()
        };
        Some((idx(&m.voters), idx(&m.learners), m))
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                let _ = self.resume(i);
            }
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        self.net.teardown();
        for n in &self.nodes {
            if let Some(mount) = &n.disk {
                // Lazy: a node process the kernel has not reaped yet may
                // still hold a file there.
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(mount)
                    .status();
            }
        }
    }
}

pub fn member_of(s: &pb::StatusResponse) -> pb::Member {
    pb::Member {
        node_id: s.node_id,
        client_addr: s.client_addr.clone(),
        peer_addr: s.peer_addr.clone(),
        name: s.name.clone(),
    }
}

pub async fn status_at(ch: Channel) -> anyhow::Result<pb::StatusResponse> {
    let mut req = tonic::Request::new(pb::StatusRequest {});
    req.set_timeout(Duration::from_millis(500));
    let mut client = ClusterClient::new(ch);
    match tokio::time::timeout(Duration::from_millis(700), client.status(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => bail!("{}: {}", s.code(), s.message()),
        Err(_) => bail!("Status timed out"),
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
