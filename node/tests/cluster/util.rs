//! Harness for multi-process tests: real `raft-node` processes on loopback,
//! driven over real gRPC. Each test gets its own port range and temp dir;
//! node logs go to `<tmp>/node-<i>.log` and are printed when a test fails.

#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use raftkv_proto::v1 as pb;
use raftkv_proto::v1::cluster_client::ClusterClient;
use raftkv_proto::v1::kv_client::KvClient;
use tempfile::TempDir;
use tonic::transport::Channel;

pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_raft-node");

/// A binary of another workspace package (e.g. `raftctl`): cargo gives no path
/// for those, and `cargo test --workspace` builds them next to this test's
/// target dir. `RAFTKV_BIN_DIR` points elsewhere (e.g. a release build).
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("RAFTKV_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(NODE_BIN)
                .parent()
                .expect("target dir")
                .to_path_buf()
        });
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: run `cargo test --workspace` or `cargo build --bin {name}` first (or set RAFTKV_BIN_DIR)",
        bin.display()
    );
    bin
}

/// Upper bound for anything a test waits on (elections, catch-up, restarts).
pub const WAIT: Duration = Duration::from_secs(30);

static TRACING: Once = Once::new();

pub fn init_tracing() {
    TRACING.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_test_writer()
            .try_init();
    });
}

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct NodeProc {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub client_addr: String,
    pub peer_addr: String,
    pub name: String,
}

pub struct TestCluster {
    pub dir: TempDir,
    pub nodes: Vec<NodeProc>,
    base_port: u16,
    /// Extra environment for every node (e.g. a low snapshot threshold).
    pub env: Vec<(String, String)>,
}

impl TestCluster {
    /// Start `n` fresh (uninitialized) nodes; ports `base_port + 2i` (client)
    /// and `base_port + 2i + 1` (peer).
    pub async fn start(n: usize, base_port: u16) -> Self {
        Self::start_with_env(n, base_port, Vec::new()).await
    }

    pub async fn start_with_env(n: usize, base_port: u16, env: Vec<(String, String)>) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = TestCluster {
            dir,
            nodes: Vec::new(),
            base_port,
            env,
        };
        for _ in 0..n {
            c.add_node().await;
        }
        c
    }

    /// Start one more fresh node and wait until it answers Status.
    pub async fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let client_port = self.base_port + 2 * i as u16;
        let node = NodeProc {
            child: None,
            data_dir: self.dir.path().join(format!("node-{i}")),
            log: self.dir.path().join(format!("node-{i}.log")),
            client_addr: format!("127.0.0.1:{client_port}"),
            peer_addr: format!("127.0.0.1:{}", client_port + 1),
            name: format!("node-{i}"),
        };
        self.nodes.push(node);
        self.spawn(i).await;
        i
    }

    /// (Re)start process `i` on its data dir and wait until it answers.
    pub async fn spawn(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "node {i} is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("log file");
        let mut cmd = Command::new(NODE_BIN);
        cmd.args(["--data-dir", n.data_dir.to_str().unwrap()])
            .args(["--client-addr", &n.client_addr])
            .args(["--peer-addr", &n.peer_addr])
            .args(["--name", &n.name])
            .args(["--log-format", "text"])
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        n.child = Some(cmd.spawn().expect("spawn raft-node"));
        let addr = n.client_addr.clone();
        let deadline = Instant::now() + WAIT;
        while status_of(&addr).await.is_err() {
            let exited = self.nodes[i]
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .expect("try_wait");
            if let Some(code) = exited {
                self.nodes[i].child = None;
                let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
                panic!("node {i} exited with {code} before answering Status; its log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for node {i} to answer Status"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` (what Kubernetes sends a pod it deletes) and wait for
    /// it to exit; returns whether it exited successfully.
    pub fn terminate(&mut self, i: usize) -> bool {
        let mut c = self.nodes[i].child.take().expect("node is running");
        // SAFETY: plain kill(2) on a child we own and have not reaped.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM node {i}");
        c.wait().expect("wait for node").success()
    }

    /// Kill node `i` and delete its data directory (a lost volume).
    pub fn wipe(&mut self, i: usize) {
        self.kill(i);
        std::fs::remove_dir_all(&self.nodes[i].data_dir).expect("remove data dir");
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .collect()
    }

    pub async fn status(&self, i: usize) -> pb::StatusResponse {
        status_of(&self.nodes[i].client_addr)
            .await
            .unwrap_or_else(|e| panic!("status of node {i}: {e}"))
    }

    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(channel(&self.nodes[i].client_addr))
    }

    pub fn cluster(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(channel(&self.nodes[i].client_addr))
    }

    /// Initialize a cluster of the given nodes as voters, through node `first`.
    pub async fn init(&self, voters: &[usize]) -> pb::InitializeResponse {
        let mut members = Vec::new();
        for &i in voters {
            let s = self.status(i).await;
            members.push(pb::Member {
                node_id: s.node_id,
                client_addr: s.client_addr,
                peer_addr: s.peer_addr,
                name: s.name,
            });
        }
        let resp = self
            .cluster(voters[0])
            .initialize(pb::InitializeRequest { members })
            .await
            .expect("initialize")
            .into_inner();
        self.wait_leader(voters).await;
        resp
    }

    /// Wait until every running node in `among` agrees on one leader; returns its index.
    pub async fn wait_leader(&self, among: &[usize]) -> usize {
        let among: Vec<usize> = among
            .iter()
            .copied()
            .filter(|i| self.nodes[*i].child.is_some())
            .collect();
        wait_for("a leader all nodes agree on", WAIT, || async {
            let mut leader = None;
            for &i in &among {
                let s = status_of(&self.nodes[i].client_addr).await.ok()?;
                if s.leader_id == 0 || leader.is_some_and(|l| l != s.leader_id) {
                    return None;
                }
                leader = Some(s.leader_id);
            }
            let leader = leader?;
            for &i in &among {
                let s = status_of(&self.nodes[i].client_addr).await.ok()?;
                if s.node_id == leader && s.role == pb::Role::Leader as i32 {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    /// Index of the node with this Raft ID.
    pub async fn index_of(&self, node_id: u64) -> Option<usize> {
        for i in self.running() {
            if status_of(&self.nodes[i].client_addr).await.ok()?.node_id == node_id {
                return Some(i);
            }
        }
        None
    }

    pub fn member(s: &pb::StatusResponse) -> pb::Member {
        pb::Member {
            node_id: s.node_id,
            client_addr: s.client_addr.clone(),
            peer_addr: s.peer_addr.clone(),
            name: s.name.clone(),
        }
    }

    /// Print every node's log (called on failure paths).
    pub fn dump_logs(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("===== node {i} ({}) last log lines =====", n.client_addr);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

pub fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

pub async fn status_of(addr: &str) -> Result<pb::StatusResponse, tonic::Status> {
    Ok(ClusterClient::new(channel(addr))
        .status(pb::StatusRequest {})
        .await?
        .into_inner())
}

pub fn linearizable() -> Option<pb::ReadOptions> {
    Some(pb::ReadOptions {
        consistency: pb::Consistency::Linearizable as i32,
        ..Default::default()
    })
}

pub fn stale() -> Option<pb::ReadOptions> {
    Some(pb::ReadOptions {
        consistency: pb::Consistency::Stale as i32,
        ..Default::default()
    })
}

pub async fn put(
    kv: &mut KvClient<Channel>,
    k: &str,
    v: &str,
) -> Result<pb::PutResponse, tonic::Status> {
    Ok(kv
        .put(pb::PutRequest {
            session: None,
            key: k.into(),
            value: v.into(),
        })
        .await?
        .into_inner())
}

pub async fn get(
    kv: &mut KvClient<Channel>,
    k: &str,
    read: Option<pb::ReadOptions>,
) -> Result<pb::GetResponse, tonic::Status> {
    Ok(kv
        .get(pb::GetRequest {
            key: k.into(),
            read,
        })
        .await?
        .into_inner())
}

/// Writes `<prefix>-<n>` keys one after another through whichever endpoint
/// answers, until `stop` is set; returns the keys whose writes were
/// acknowledged (the ones that must never be lost).
pub async fn run_writer(
    endpoints: Vec<String>,
    prefix: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let mut clients: Vec<KvClient<Channel>> = endpoints
        .iter()
        .map(|e| KvClient::new(channel(e)))
        .collect();
    let mut acked = Vec::new();
    let mut at = 0usize;
    let mut n = 0u64;
    while !*stop.borrow() {
        let key = format!("{prefix}-{n:06}");
        let req = pb::PutRequest {
            session: None,
            key: key.clone().into_bytes(),
            value: b"x".to_vec(),
        };
        match clients[at].put(req).await {
            Ok(_) => {
                acked.push(key);
                n += 1;
            }
            Err(_) => {
                // Try the next node; a failed write may or may not have been
                // applied, so it is retried under a new key.
                at = (at + 1) % clients.len();
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

/// Assert every key is readable (linearizably) through node `i`.
pub async fn assert_all_present(c: &TestCluster, i: usize, keys: &[String]) {
    let mut kv = c.kv(i);
    let mut missing = Vec::new();
    for k in keys {
        match get(&mut kv, k, linearizable()).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => missing.push(k.clone()),
            Err(s) => panic!("read of {k} through node {i} failed: {s}"),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged keys lost (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Waits for node `i`'s process to exit by itself; returns its exit status.
pub async fn wait_exit(c: &mut TestCluster, i: usize) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let child = c.nodes[i].child.as_mut().expect("node is running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            c.nodes[i].child = None;
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "node {i} did not exit within {WAIT:?} after accepting the request (ForceNewCluster, Restore)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
