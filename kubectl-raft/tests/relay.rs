//! The relay of `kubectl raft get/put/del/watch/backup/promote`, driven
//! exactly as the plugin drives it but with a TCP opener in place of the
//! Kubernetes port-forward: a real `raft-node` process behind it, raftctl's
//! commands and the raftkv client in front of it, over real sockets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubectl_raft::relay::{Relay, TcpOpener};
use kubectl_raft::through::run_raftctl;
use raftkv_client::{ClientOptions, RaftClient, ReadOptions};

/// This file's ports (node/tests/cluster and raftctl/tests use others).
const CLIENT_PORT: u16 = 26700;
const PEER_PORT: u16 = 26701;
const WAIT: Duration = Duration::from_secs(30);

/// `raft-node` is another package's binary: cargo gives no path for it.
fn raft_node() -> PathBuf {
    let dir = std::env::var_os("RAFTKV_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        });
    let bin = dir.join("raft-node");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p raftkv-node --bin raft-node` (or `cargo test --workspace`) first, or set RAFTKV_BIN_DIR",
        bin.display()
    );
    bin
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftctl_commands_run_through_the_relay_against_a_real_node() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let _node = Node(
        Command::new(raft_node())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--client-addr", &format!("127.0.0.1:{CLIENT_PORT}")])
            .args(["--peer-addr", &format!("127.0.0.1:{PEER_PORT}")])
            .args(["--name", "node-0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting raft-node"),
    );
    let relay = Relay::start(Arc::new(TcpOpener(
        format!("127.0.0.1:{CLIENT_PORT}").parse().unwrap(),
    )))
    .await
    .unwrap();
    assert!(relay.endpoint().starts_with("127.0.0.1:"));
    assert_ne!(relay.endpoint(), format!("127.0.0.1:{CLIENT_PORT}"));

    // --- the node answers through the relay, then a one-node cluster
    until("the node to answer status through the relay", || async {
        run_raftctl(&relay, true, &strings(&["status"])).await == 0
    })
    .await;
    assert_eq!(
        run_raftctl(&relay, false, &strings(&["cluster", "init"])).await,
        0
    );

    // --- put and get as kubectl raft runs them; a missing key exits 1
    assert_eq!(
        run_raftctl(&relay, false, &strings(&["put", "--", "greeting", "hello"])).await,
        0
    );
    assert_eq!(
        run_raftctl(&relay, true, &strings(&["get", "--", "greeting"])).await,
        0
    );
    assert_eq!(
        run_raftctl(&relay, false, &strings(&["get", "--", "missing"])).await,
        1
    );
    let client = RaftClient::connect(vec![relay.endpoint()], ClientOptions::default()).unwrap();
    let kv = client
        .get("greeting", ReadOptions::default())
        .await
        .unwrap()
        .kv
        .unwrap();
    assert_eq!(kv.value, b"hello");

    // --- many connections at once, each its own stream to the node
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ep = relay.endpoint();
        tasks.push(tokio::spawn(async move {
            let c = RaftClient::connect(vec![ep], ClientOptions::default()).unwrap();
            c.put(format!("c/{i}"), format!("{i}")).await.unwrap();
            c.get(format!("c/{i}"), ReadOptions::default())
                .await
                .unwrap()
                .kv
                .unwrap()
                .value
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), format!("{i}").into_bytes());
    }

    // --- watch: exits 0 once it has seen a put made meanwhile
    let watch = {
        tokio::spawn(async move {
            // Its own relay, as `kubectl raft watch` has.
            let r = Relay::start(Arc::new(TcpOpener(
                format!("127.0.0.1:{CLIENT_PORT}").parse().unwrap(),
            )))
            .await
            .unwrap();
            run_raftctl(&r, true, &strings(&["watch", "--count", "1", "--", "w/"])).await
        })
    };
    // Writes until the watcher has seen one (it may attach after the first).
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    while !watch.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the watch saw no put in {WAIT:?}"
        );
        client.put(format!("w/{n}"), "x").await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(watch.await.unwrap(), 0, "watch --count 1 exit code");

    // --- backup through the relay, then inspected as raftctl does
    let file = dir.path().join("b.rkv");
    let f = file.to_str().unwrap();
    assert_eq!(
        run_raftctl(
            &relay,
            false,
            &strings(&["snapshot", "save", "--progress", "--", f])
        )
        .await,
        0
    );
    assert!(file.exists());
    assert!(!dir.path().join("b.rkv.part").exists());
    assert_eq!(
        run_raftctl(&relay, true, &strings(&["snapshot", "inspect", "--", f])).await,
        0
    );
    let summary = raftkv_backup::Decoder::open(std::fs::File::open(&file).unwrap())
        .and_then(raftkv_backup::Decoder::verify)
        .unwrap();
    // greeting, c/0..c/7 and the w/ keys the watch test wrote.
    assert_eq!(summary.header.keys, 1 + 8 + n);
}

#[tokio::test]
async fn a_relay_that_cannot_reach_its_pod_says_why() {
    // A port nothing listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let relay = Relay::start(Arc::new(TcpOpener(
        format!("127.0.0.1:{port}").parse().unwrap(),
    )))
    .await
    .unwrap();
    let code = run_raftctl(
        &relay,
        false,
        &strings(&["--timeout", "1s", "get", "--", "k"]),
    )
    .await;
    assert_eq!(code, 1);
    // run_raftctl printed it on its error line and cleared it; try again.
    let opts = ClientOptions::default().with_timeout(Duration::from_secs(1));
    let c = RaftClient::connect(vec![relay.endpoint()], opts).unwrap();
    assert!(c.put("k", "v").await.is_err());
    let why = relay.take_error().expect("the relay recorded why");
    assert!(why.contains("cannot open a stream to 127.0.0.1:"), "{why}");
}
