//! `raft-node local`: a throwaway N-node cluster on loopback.
//!
//! Spawns N `raft-node` processes (this same executable), waits until each
//! answers Status, initializes them as one cluster through the client (only if
//! none is initialized yet: a re-run with the same data directory restarts the
//! same cluster), prints the client endpoints, restarts a node that dies (after
//! `--restart-delay`), and on Ctrl-C/SIGTERM stops them all (SIGTERM, then
//! SIGKILL after `--stop-timeout`).
//!
//! With `--tls` it first makes a throwaway CA and certificates in
//! `<data-dir>/tls/` (kept for re-runs): one node certificate per node, an
//! `admin` and a `kv` client certificate; the nodes run with TLS and the
//! printed `RAFTCTL_*` variables point raftctl at them.
//!
//! Port layout: node `i` (0-based) serves clients on `127.0.0.1:<base-port + 2i>`
//! and peers on `127.0.0.1:<base-port + 2i + 1>`; the defaults give clients
//! 7000, 7002, 7004 (raftctl's default endpoints).

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftkv_proto::v1;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use raftkv_client::{self as client, ClientOptions, RaftClient};

/// A node that exits this soon after it started counts as a quick exit.
const QUICK_EXIT: Duration = Duration::from_secs(5);
/// After this many quick exits in a row a node is not restarted again.
const QUICK_EXITS_MAX: u32 = 3;
/// How often the supervisor checks its children.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(200);
/// Lines of a node's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;
/// File in the data directory recording the layout it was created with.
const LAYOUT_FILE: &str = "local-layout.json";

/// Flags of `raft-node local`. Node `i` (0-based) listens for clients on
/// `127.0.0.1:<base-port + 2i>` and for peers on `127.0.0.1:<base-port + 2i + 1>`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Number of nodes (voters).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub nodes: u16,
    /// Directory holding one data directory per node (`node-<i>`) and their logs.
    /// Re-running with the same directory restarts the same cluster.
    #[arg(long, default_value = "raftkv-local")]
    pub data_dir: PathBuf,
    /// First port: node i gets client port base+2i and peer port base+2i+1.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Serve Prometheus metrics of node i on 127.0.0.1:<metrics-base-port + i>.
    #[arg(long)]
    pub metrics_base_port: Option<u16>,
    /// Where node logs go: `files` (<data-dir>/node-<i>.log) or `stdout` (prefixed with the node name).
    #[arg(long, value_enum, default_value_t = LogTarget::Files)]
    pub logs: LogTarget,
    /// Delete the data directory first (start a brand-new cluster).
    #[arg(long)]
    pub fresh: bool,
    /// Start a NEW cluster from a backup file (`raftctl snapshot save`):
    /// node-0 restores it (`raft-node --restore`), the others join as learners
    /// and are promoted. Needs a fresh data directory the first time.
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// Restart a node that exits this long after it died (`0s`: at once).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub restart_delay: Duration,
    /// Do not restart nodes that exit (print how to restart them instead).
    #[arg(long)]
    pub no_restart: bool,
    /// How long to wait after SIGTERM before killing a node.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub stop_timeout: Duration,
    /// How long to wait for nodes to answer and a leader to be elected.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub ready_timeout: Duration,
    /// Run with TLS: make a throwaway CA and certificates in <data-dir>/tls
    /// (kept for re-runs), start the nodes with them and print the raftctl
    /// flags to use.
    #[arg(long)]
    pub tls: bool,
}

/// The cluster identity of `raft-node local --tls` certificates.
pub const LOCAL_NAMESPACE: &str = "local";
pub const LOCAL_CLUSTER: &str = "local";

/// Where `raft-node local --tls` keeps its certificates.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Makes the CA and every certificate in `dir` unless the CA is there
/// already (a re-run keeps them): `ca.crt`, `node-<i>.{crt,key}` valid for
/// 127.0.0.1 and localhost, `admin.{crt,key}` and `kv.{crt,key}`.
pub fn ensure_local_certs(dir: &Path, nodes: u16) -> anyhow::Result<()> {
    use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, LeafRequest, Role, Validity};
    let ca_path = dir.join("ca.crt");
    let have_all =
        ca_path.exists() && (0..nodes).all(|i| dir.join(format!("node-{i}.key")).exists());
    if have_all {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cluster = ClusterRef::new(LOCAL_NAMESPACE, LOCAL_CLUSTER)?;
    let ca = Ca::generate(&cluster, Validity::from_now(CA_VALIDITY))?;
    let localhost: std::net::IpAddr = [127, 0, 0, 1].into();
    for i in 0..nodes {
        let name = format!("node-{i}");
        let req = LeafRequest::node(&cluster, &name, &["localhost"], &[localhost])?;
        ca.issue(&req)?.write(dir, &name)?;
    }
    for role in [Role::Admin, Role::Kv] {
        let req = LeafRequest::client(&cluster, role, role.name())?;
        ca.issue(&req)?.write(dir, role.name())?;
    }
    raftkv_certs::Issued {
        cert_pem: ca.cert_pem().to_string(),
        key_pem: ca.key_pem().to_string(),
    }
    .write(dir, "ca")?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    Files,
    Stdout,
}

/// Client and peer port of node `i`.
pub fn ports(base_port: u16, i: u16) -> anyhow::Result<(u16, u16)> {
    let client = u32::from(base_port) + 2 * u32::from(i);
    if client + 1 > u32::from(u16::MAX) {
        bail!("--base-port {base_port} leaves no room for node {i}'s ports");
    }
    Ok((client as u16, (client + 1) as u16))
}

/// One child `raft-node`.
struct LocalNode {
    index: u16,
    name: String,
    dir: PathBuf,
    client_addr: String,
    peer_addr: String,
    log_path: Option<PathBuf>,
    child: Option<Child>,
    started: Instant,
    /// When it died, if it is down.
    died: Option<Instant>,
    quick_exits: u32,
}

impl LocalNode {
    fn new(args: &LocalArgs, index: u16) -> anyhow::Result<Self> {
        let (client, peer) = ports(args.base_port, index)?;
        let name = format!("node-{index}");
        Ok(LocalNode {
            index,
            dir: args.data_dir.join(&name),
            log_path: (args.logs == LogTarget::Files)
                .then(|| args.data_dir.join(format!("{name}.log"))),
            name,
            client_addr: format!("127.0.0.1:{client}"),
            peer_addr: format!("127.0.0.1:{peer}"),
            child: None,
            started: Instant::now(),
            died: None,
            quick_exits: 0,
        })
    }

    /// The server flags of this node.
    fn node_args(&self, args: &LocalArgs) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--data-dir".into(),
            self.dir.clone().into(),
            "--client-addr".into(),
            self.client_addr.clone().into(),
            "--peer-addr".into(),
            self.peer_addr.clone().into(),
            "--name".into(),
            self.name.clone().into(),
        ];
        if let (0, Some(file)) = (self.index, &args.restore) {
            a.push("--restore".into());
            a.push(file.clone().into());
        }
        if args.tls {
            let dir = tls_dir(&args.data_dir);
            for (flag, file) in [
                ("--tls-cert", format!("{}.crt", self.name)),
                ("--tls-key", format!("{}.key", self.name)),
                ("--tls-ca", "ca.crt".to_string()),
            ] {
                a.push(flag.into());
                a.push(dir.join(file).into());
            }
        }
        if let Some(base) = args.metrics_base_port {
            a.push("--metrics-addr".into());
            a.push(format!("127.0.0.1:{}", u32::from(base) + u32::from(self.index)).into());
        }
        // Readable logs unless the user chose a format through the environment.
        if std::env::var_os("RAFT_LOG_FORMAT").is_none() {
            a.push("--log-format".into());
            a.push("text".into());
        }
        a
    }

    fn command_line(&self, exe: &Path, args: &LocalArgs) -> String {
        std::iter::once(exe.as_os_str().to_owned())
            .chain(self.node_args(args))
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn spawn(&mut self, exe: &Path, args: &LocalArgs) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(self.node_args(args))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // Own process group: a Ctrl-C in the terminal reaches only us, and we
        // stop the nodes in order.
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Die with us even if we are SIGKILLed.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match &self.log_path {
            Some(path) => {
                // Plain text in files (tracing-subscriber honours NO_COLOR).
                cmd.env("NO_COLOR", "1");
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                if !std::io::stdout().is_terminal() {
                    cmd.env("NO_COLOR", "1");
                }
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, exe.display()))?;
        if self.log_path.is_none() {
            forward_lines(&self.name, child.stdout.take());
            forward_lines(&self.name, child.stderr.take());
        }
        self.child = Some(child);
        self.started = Instant::now();
        self.died = None;
        Ok(())
    }

    /// Exit status if the process has ended.
    fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn log_tail(&self) -> String {
        match &self.log_path {
            Some(p) => tail(p, LOG_TAIL_LINES).unwrap_or_default(),
            None => String::new(),
        }
    }
}

fn forward_lines<R>(name: &str, stream: Option<R>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let Some(stream) = stream else { return };
    let name = name.to_string();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{name}] {line}");
        }
    });
}

/// The last `n` lines of a file (reads at most its last 64 KiB).
fn tail(path: &Path, n: usize) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .collect();
    Ok(lines[lines.len().saturating_sub(n)..].join("\n"))
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!(
            "signal {sig}{}",
            if sig == libc::SIGKILL {
                " (SIGKILL)"
            } else {
                ""
            }
        ),
        _ => status.to_string(),
    }
}

/// Refuse a data directory made with another layout (the membership holds the
/// old addresses, so the nodes could not find each other).
fn check_layout(args: &LocalArgs) -> anyhow::Result<()> {
    let path = args.data_dir.join(LAYOUT_FILE);
    let want = serde_json::json!({ "nodes": args.nodes, "base_port": args.base_port });
    match std::fs::read(&path) {
        Ok(bytes) => {
            let have: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if have != want {
                bail!(
                    "{} was created with --nodes {} --base-port {}; use the same flags, or --fresh to start over",
                    args.data_dir.display(),
                    have["nodes"],
                    have["base_port"]
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, serde_json::to_vec_pretty(&want)?)
                .with_context(|| format!("writing {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub async fn run(mut args: LocalArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the raft-node executable")?;
    if let Some(file) = &args.restore {
        // The nodes may run elsewhere than here: give them an absolute path.
        args.restore = Some(
            std::fs::canonicalize(file)
                .with_context(|| format!("backup file {}", file.display()))?,
        );
    }
    if args.fresh && args.data_dir.exists() {
        println!("==> removing {} (--fresh)", args.data_dir.display());
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("removing {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    check_layout(&args)?;
    if args.tls {
        ensure_local_certs(&tls_dir(&args.data_dir), args.nodes)?;
    }
    let mut nodes = (0..args.nodes)
        .map(|i| LocalNode::new(&args, i))
        .collect::<anyhow::Result<Vec<_>>>()?;

    println!(
        "==> starting {} nodes in {}",
        nodes.len(),
        args.data_dir.display()
    );
    for n in &mut nodes {
        n.spawn(&exe, &args)?;
        let logs = n
            .log_path
            .as_ref()
            .map(|p| format!(", log {}", p.display()))
            .unwrap_or_default();
        println!(
            "    {} pid {} client {} peer {}{logs}",
            n.name,
            n.pid().unwrap_or(0),
            n.client_addr,
            n.peer_addr
        );
    }

    let result = bring_up(&args, &mut nodes).await;
    if result.is_err() {
        println!("==> startup failed; stopping the nodes");
        stop_all(&mut nodes, args.stop_timeout).await;
        return result;
    }
    print_ready(&args, &nodes);

    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => supervise(&exe, &args, &mut nodes),
        }
    }
    println!("==> stopping {} nodes", nodes.len());
    stop_all(&mut nodes, args.stop_timeout).await;
    println!(
        "==> stopped; data kept in {} (run again to restart the same cluster)",
        args.data_dir.display()
    );
    Ok(())
}

/// Wait for every node, then initialize (fresh nodes) or wait for a leader (restart).
async fn bring_up(args: &LocalArgs, nodes: &mut [LocalNode]) -> anyhow::Result<()> {
    let endpoints: Vec<String> = nodes.iter().map(|n| n.client_addr.clone()).collect();
    let tls = if args.tls {
        let dir = tls_dir(&args.data_dir);
        let files = client::tls::TlsFiles::new(dir.join("ca.crt"))
            .with_identity(dir.join("admin.crt"), dir.join("admin.key"));
        Some(client::tls::Credentials::load(files)?.client_config()?)
    } else {
        None
    };
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(1),
        tls,
        ..Default::default()
    };
    let client = RaftClient::connect(endpoints.clone(), opts.clone())?;
    let deadline = Instant::now() + args.ready_timeout;

    println!("==> waiting for the nodes to answer");
    let mut statuses: Vec<Option<v1::StatusResponse>> = vec![None; nodes.len()];
    while statuses.iter().any(Option::is_none) {
        for (i, n) in nodes.iter_mut().enumerate() {
            if statuses[i].is_some() {
                continue;
            }
            if let Some(status) = n.exited() {
                bail!(
                    "{} exited during startup ({}); last lines of its log:\n{}",
                    n.name,
                    describe_exit(status),
                    n.log_tail()
                );
            }
            if let Ok(st) = client.status(&n.client_addr).await {
                println!(
                    "    {} is up: node id {}, role {}",
                    n.name,
                    st.node_id,
                    role(&st)
                );
                statuses[i] = Some(st);
            }
        }
        if Instant::now() >= deadline {
            let slow: Vec<&str> = nodes
                .iter()
                .zip(&statuses)
                .filter(|(_, s)| s.is_none())
                .map(|(n, _)| n.name.as_str())
                .collect();
            bail!(
                "{} did not answer within {}",
                slow.join(", "),
                humantime::format_duration(args.ready_timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses: Vec<v1::StatusResponse> = statuses.into_iter().flatten().collect();
    let initialized: Vec<&v1::StatusResponse> = statuses
        .iter()
        .filter(|s| !s.cluster_id.is_empty())
        .collect();

    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    if args.restore.is_some() {
        join_restored(&client, nodes, &statuses, remaining).await?;
    } else if initialized.is_empty() {
        println!("==> initializing a new cluster of {} voters", nodes.len());
        let outcome = client::cluster_init(endpoints, opts, remaining).await?;
        println!(
            "    cluster {} elected leader {} ({})",
            outcome.cluster_id, outcome.leader_id, outcome.leader_addr
        );
    } else {
        println!(
            "==> existing cluster {}: waiting for a leader",
            initialized[0].cluster_id
        );
        for (n, s) in nodes.iter().zip(&statuses) {
            if s.cluster_id.is_empty() {
                println!(
                    "    warning: {} (node {}) is not a member; add it with: raftctl member add-learner {}",
                    n.name, s.node_id, n.client_addr
                );
            }
        }
        let (addr, leader) = client::wait_for_leader(&client, remaining).await?;
        println!(
            "    leader {} ({addr}), term {}",
            leader.node_id, leader.term
        );
    }
    Ok(())
}

/// node-0 restored a backup as a one-voter cluster: the nodes that belong to
/// no cluster yet join it as learners, and once caught up all become voters.
async fn join_restored(
    client: &RaftClient,
    nodes: &[LocalNode],
    statuses: &[v1::StatusResponse],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let (addr, leader) = client::wait_for_leader(client, timeout).await?;
    let fresh: Vec<&v1::StatusResponse> = statuses
        .iter()
        .filter(|s| s.cluster_id.is_empty())
        .collect();
    if fresh.is_empty() {
        println!(
            "==> restored cluster {}: leader {} ({addr}), term {}",
            leader.cluster_id, leader.node_id, leader.term
        );
        return Ok(());
    }
    println!(
        "==> restored cluster {} on {}: adding {} nodes as learners",
        leader.cluster_id,
        nodes[0].name,
        fresh.len()
    );
    for s in &fresh {
        let member = v1::Member {
            node_id: s.node_id,
            client_addr: s.client_addr.clone(),
            peer_addr: s.peer_addr.clone(),
            name: s.name.clone(),
        };
        client.add_learner(member).await?;
        loop {
            let st = client.status(&s.client_addr).await;
            if st.as_ref().is_ok_and(|st| st.healthy) {
                break;
            }
            if Instant::now() >= deadline {
                bail!("{} did not catch up in time: {st:?}", s.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("    {} (node {}) caught up", s.name, s.node_id);
    }
    let voters: Vec<u64> = statuses.iter().map(|s| s.node_id).collect();
    client.change_membership(voters, false, None).await?;
    println!("    {} voters", statuses.len());
    Ok(())
}

fn role(st: &v1::StatusResponse) -> &'static str {
    match v1::Role::try_from(st.role).unwrap_or(v1::Role::Unspecified) {
        v1::Role::Uninitialized => "uninitialized",
        v1::Role::Leader => "leader",
        v1::Role::Follower => "follower",
        v1::Role::Candidate => "candidate",
        v1::Role::Learner => "learner",
        v1::Role::Shutdown => "shutdown",
        v1::Role::Unspecified => "unknown",
    }
}

fn print_ready(args: &LocalArgs, nodes: &[LocalNode]) {
    println!("==> ready\n");
    // Fixed columns: node names, PIDs and loopback addresses have bounded widths.
    println!(
        "{:<8} {:<8} {:<21} {:<21} LOG",
        "NAME", "PID", "CLIENT", "PEER"
    );
    for n in nodes {
        let pid = n.pid().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let log = n
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdout".into());
        println!(
            "{:<8} {:<8} {:<21} {:<21} {log}",
            n.name, pid, n.client_addr, n.peer_addr
        );
    }
    let scheme = if args.tls { "https://" } else { "" };
    let eps: Vec<String> = nodes
        .iter()
        .map(|n| format!("{scheme}{}", n.client_addr))
        .collect();
    println!("\nexport RAFTCTL_ENDPOINTS={}", eps.join(","));
    if args.tls {
        let dir = tls_dir(&args.data_dir);
        let dir = dir.canonicalize().unwrap_or(dir);
        println!("export RAFTCTL_CACERT={}", dir.join("ca.crt").display());
        println!("export RAFTCTL_CERT={}", dir.join("admin.crt").display());
        println!("export RAFTCTL_KEY={}", dir.join("admin.key").display());
        println!(
            "# KV-only client (no membership changes): RAFTCTL_CERT={0} RAFTCTL_KEY={1}",
            dir.join("kv.crt").display(),
            dir.join("kv.key").display()
        );
    }
    println!();
    println!("Try: raftctl put hello world && raftctl get hello && raftctl status");
    println!("Press Ctrl-C to stop all nodes.");
}

/// Notice dead nodes and restart them (unless told not to, or they keep dying).
fn supervise(exe: &Path, args: &LocalArgs, nodes: &mut [LocalNode]) {
    for n in nodes.iter_mut() {
        if let Some(status) = n.exited() {
            let lived = n.started.elapsed();
            n.died = Some(Instant::now());
            n.quick_exits = if lived < QUICK_EXIT {
                n.quick_exits + 1
            } else {
                0
            };
            let why = describe_exit(status);
            if args.no_restart || n.quick_exits >= QUICK_EXITS_MAX {
                let reason = if args.no_restart {
                    "--no-restart"
                } else {
                    "it keeps exiting"
                };
                println!(
                    "==> {} exited ({why}); not restarting ({reason}). Start it by hand with:",
                    n.name
                );
                println!("    {}", n.command_line(exe, args));
                let tail = n.log_tail();
                if !tail.is_empty() {
                    println!("    last lines of its log:\n{tail}");
                }
                n.died = None; // never restart
                n.quick_exits = QUICK_EXITS_MAX;
            } else {
                println!(
                    "==> {} exited ({why}); restarting it in {}",
                    n.name,
                    humantime::format_duration(args.restart_delay)
                );
            }
        }
        if n.child.is_none()
            && let Some(died) = n.died
            && died.elapsed() >= args.restart_delay
        {
            match n.spawn(exe, args) {
                Ok(()) => println!("==> restarted {} (pid {})", n.name, n.pid().unwrap_or(0)),
                Err(e) => {
                    println!("==> could not restart {}: {e:#}", n.name);
                    n.died = None;
                }
            }
        }
    }
}

/// SIGTERM every node, wait up to `timeout` for all, SIGKILL the rest.
async fn stop_all(nodes: &mut [LocalNode], timeout: Duration) {
    for n in nodes.iter() {
        if let Some(pid) = n.pid() {
            // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for n in nodes.iter_mut() {
        let Some(child) = n.child.as_mut() else {
            continue;
        };
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => println!("    {} stopped ({})", n.name, describe_exit(status)),
            Ok(Err(e)) => println!("    {}: waiting failed: {e}", n.name),
            Err(_) => {
                let _ = child.kill().await;
                println!(
                    "    {} did not stop within {}; killed",
                    n.name,
                    humantime::format_duration(timeout)
                );
            }
        }
        n.child = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        local: LocalArgs,
    }

    fn parse(a: &[&str]) -> LocalArgs {
        Wrapper::try_parse_from(std::iter::once("local").chain(a.iter().copied()))
            .unwrap()
            .local
    }

    #[test]
    fn defaults_match_raftctl_default_endpoints() {
        let a = parse(&[]);
        assert_eq!(a.nodes, 3);
        assert_eq!(a.base_port, 7000);
        let eps: Vec<String> = (0..a.nodes)
            .map(|i| format!("127.0.0.1:{}", ports(a.base_port, i).unwrap().0))
            .collect();
        assert_eq!(eps.join(","), raftkv_client::DEFAULT_ENDPOINTS);
    }

    #[test]
    fn ports_are_interleaved_and_bounded() {
        assert_eq!(ports(7000, 0).unwrap(), (7000, 7001));
        assert_eq!(ports(7000, 2).unwrap(), (7004, 7005));
        assert!(ports(65534, 1).is_err());
        assert!(Wrapper::try_parse_from(["local", "--nodes", "0"]).is_err());
    }

    #[test]
    fn node_args_carry_the_server_flags() {
        let a = parse(&[
            "--data-dir",
            "/tmp/x",
            "--base-port",
            "9000",
            "--metrics-base-port",
            "9100",
        ]);
        let n = LocalNode::new(&a, 1).unwrap();
        let args: Vec<String> = n
            .node_args(&a)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let pos = |f: &str| args.iter().position(|x| x == f).unwrap();
        assert_eq!(args[pos("--data-dir") + 1], "/tmp/x/node-1");
        assert_eq!(args[pos("--client-addr") + 1], "127.0.0.1:9002");
        assert_eq!(args[pos("--peer-addr") + 1], "127.0.0.1:9003");
        assert_eq!(args[pos("--name") + 1], "node-1");
        assert_eq!(args[pos("--metrics-addr") + 1], "127.0.0.1:9101");
        assert_eq!(n.log_path.as_deref(), Some(Path::new("/tmp/x/node-1.log")));
    }

    #[test]
    fn only_node_0_restores() {
        let a = parse(&["--restore", "/b.rkv"]);
        let has_restore = |i| {
            LocalNode::new(&a, i)
                .unwrap()
                .node_args(&a)
                .windows(2)
                .any(|w| w[0] == "--restore" && w[1] == "/b.rkv")
        };
        assert!(has_restore(0));
        assert!(!has_restore(1));
        assert!(!has_restore(2));
    }

    #[test]
    fn a_data_dir_remembers_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        check_layout(&parse(&["--data-dir", d])).unwrap();
        check_layout(&parse(&["--data-dir", d])).unwrap();
        let e = check_layout(&parse(&["--data-dir", d, "--nodes", "5"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("was created with --nodes 3 --base-port 7000"),
            "{e}"
        );
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(
            &p,
            (1..=30).map(|i| format!("line {i}\n")).collect::<String>(),
        )
        .unwrap();
        let t = tail(&p, 3).unwrap();
        assert_eq!(t, "line 28\nline 29\nline 30");
    }
}
