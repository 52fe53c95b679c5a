//! `raftctl cluster force-new-cluster` against real `raft-node` processes:
//! its confirmations and exit codes, the refusal while a leader exists, and a
//! survivor forced into a new cluster (this test restarts it, as a supervisor
//! would) that keeps its keys.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const RAFTCTL: &str = env!("CARGO_BIN_EXE_raftctl");
/// Ports of this file (raftctl_cli.rs uses 26000-26199, tls.rs 26500-26699).
const PORT_BASE: u16 = 27400;
const WAIT: Duration = Duration::from_secs(30);

/// `raft-node` is another package's binary: see raftctl_cli.rs.
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
        "{} not found: run `cargo build -p raftkv-node --bin raft-node` first (or set RAFTKV_BIN_DIR)",
        bin.display()
    );
    bin
}

struct Nodes {
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl Nodes {
    fn client(i: usize) -> String {
        format!("127.0.0.1:{}", PORT_BASE + 2 * i as u16)
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{i}.log")))
            .unwrap();
        let child = Command::new(raft_node())
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node-{i}")))
            .args(["--client-addr", &Self::client(i)])
            .args([
                "--peer-addr",
                &format!("127.0.0.1:{}", PORT_BASE + 2 * i as u16 + 1),
            ])
            .args(["--name", &format!("node-{i}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting raft-node");
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for i in 0..self.children.len() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("node-{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!(
                    "--- node-{i}.log\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
}

fn ctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(RAFTCTL)
        .args(["--endpoints", endpoints])
        .args(args)
        .env_remove("RAFTCTL_ENDPOINTS")
        .output()
        .expect("running raftctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(endpoints: &str, args: &[&str]) -> String {
    let (code, out, err) = ctl(endpoints, args);
    assert_eq!(code, 0, "raftctl {args:?}: stdout={out:?} stderr={err:?}");
    out
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(endpoint: &str) -> Option<Value> {
    let (code, out, _) = ctl(endpoint, &["status", "-o", "json", "--timeout", "1s"]);
    (code == 0).then(|| serde_json::from_str(&out).expect("status JSON"))
}

/// The row of `status -o json` of the node at `endpoint`, if it answered.
fn row(endpoint: &str) -> Option<Value> {
    let s = status(endpoint)?;
    s["members"]
        .as_array()?
        .iter()
        .find(|r| r["client_addr"] == endpoint && !r["commit_index"].is_null())
        .cloned()
}

#[test]
fn force_new_cluster_confirms_refuses_and_rebuilds_a_survivor() {
    let mut n = Nodes {
        dir: tempfile::tempdir().unwrap(),
        children: (0..3).map(|_| None).collect(),
    };
    for i in 0..3 {
        n.spawn(i);
    }
    let all = (0..3).map(Nodes::client).collect::<Vec<_>>().join(",");
    wait_until("three nodes answering", || {
        (0..3).all(|i| status(&Nodes::client(i)).is_some())
    });
    ok(&all, &["cluster", "init"]);
    for i in 0..20 {
        ok(&all, &["put", &format!("k{i}"), &format!("v{i}")]);
    }

    // Usage errors: exit 2, nothing sent.
    let one = Nodes::client(1);
    let (code, _, err) = ctl(&one, &["cluster", "force-new-cluster"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("WARNING"), "a loud warning: {err}");
    assert!(
        err.lines().last().unwrap().contains("without --yes"),
        "{err}"
    );
    let (code, _, err) = ctl(&all, &["cluster", "force-new-cluster", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exactly one node"), "{err}");

    // A leader exists: the node refuses, exit 1, one Error line last.
    let (code, _, err) = ctl(
        &one,
        &["cluster", "force-new-cluster", "--yes", "--wait", "0s"],
    );
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("Error: ") && last.contains("leads this cluster"),
        "{err}"
    );

    // Wait until node 1 knows every write committed, then lose the others.
    let leader_commit = |e: &str| row(e).and_then(|r| r["commit_index"].as_u64());
    let want = (0..3)
        .filter_map(|i| leader_commit(&Nodes::client(i)))
        .max()
        .unwrap();
    wait_until("node 1 to know the last commit", || {
        leader_commit(&one).is_some_and(|c| c >= want)
    });
    let old = row(&one).unwrap();
    let old_cluster = status(&one).unwrap()["cluster_id"].clone();
    for i in [0, 2] {
        n.kill(i);
        std::fs::remove_dir_all(n.dir.path().join(format!("node-{i}"))).unwrap();
    }
    wait_until("node 1 to see no leader", || {
        row(&one).is_some_and(|r| r["leader_id"].as_u64() == Some(0))
    });

    // Forced: raftctl waits for the node to come back; this test restarts it
    // when it exits, as a supervisor would.
    let mut forced = Command::new(RAFTCTL)
        .args(["--endpoints", &one, "-o", "json"])
        .args(["cluster", "force-new-cluster", "--yes", "--wait", "30s"])
        .env_remove("RAFTCTL_ENDPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("node 1 to exit after accepting", || {
        n.children[1]
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_some()
    });
    n.children[1] = None;
    n.spawn(1);
    let deadline = Instant::now() + WAIT;
    while forced.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "raftctl did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = forced.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(doc["before"]["cluster_id"], old_cluster);
    assert_eq!(doc["before"]["node_id"], old["id"]);
    assert!(doc["before"]["commit_index"].as_u64().unwrap() >= want);
    assert_ne!(doc["after"]["cluster_id"], old_cluster);
    assert_ne!(doc["after"]["node_id"], old["id"]);
    assert_eq!(doc["after"]["leader_id"], doc["after"]["node_id"]);

    for i in 0..20 {
        assert_eq!(ok(&one, &["get", &format!("k{i}")]), format!("v{i}\n"));
    }
    assert_eq!(ok(&one, &["put", "after", "yes"]), "OK\n");
}
