//! `raftctl cluster force-new-cluster` against real `raft-node` processes:
//! its confirmations and exit codes, the refusal while a leader exists, and a
//! survivor forced into a new cluster (this test restarts it, as a supervisor
//! would) that keeps its keys.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{LogsOnPanic, Procs, RAFTCTL, Ran, WAIT, ctl, endpoint, ok, spawn_node, wait_until};
use serde_json::Value;

/// Ports of this file (raftctl_cli.rs uses 26000-26199, tls.rs 26500-26699).
const PORT_BASE: u16 = 27400;

/// The client address of node `i`.
fn client(i: u16) -> String {
    endpoint(PORT_BASE, i)
}

fn status(endpoint: &str) -> Option<Value> {
    let r = ctl(endpoint, &["status", "-o", "json", "--timeout", "1s"]);
    (r.code == 0).then(|| serde_json::from_str(&r.stdout).expect("status JSON"))
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
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let mut procs = Procs(
        (0..3)
            .map(|i| spawn_node(dir.path(), i, PORT_BASE, &[]))
            .collect(),
    );
    let all = (0..3).map(client).collect::<Vec<_>>().join(",");
    wait_until("three nodes answering", || {
        (0..3).all(|i| status(&client(i)).is_some())
    });
    ok(&all, &["cluster", "init"]);
    for i in 0..20 {
        ok(&all, &["put", &format!("k{i}"), &format!("v{i}")]);
    }

    // Usage errors: exit 2, nothing sent.
    let one = client(1);
    let Ran {
        code, stderr: err, ..
    } = ctl(&one, &["cluster", "force-new-cluster"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("WARNING"), "a loud warning: {err}");
    assert!(
        err.lines().last().unwrap().contains("without --yes"),
        "{err}"
    );
    let Ran {
        code, stderr: err, ..
    } = ctl(&all, &["cluster", "force-new-cluster", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exactly one node"), "{err}");

    // A leader exists: the node refuses, exit 1, one Error line last.
    let Ran {
        code, stderr: err, ..
    } = ctl(
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
        .filter_map(|i| leader_commit(&client(i)))
        .max()
        .unwrap();
    wait_until("node 1 to know the last commit", || {
        leader_commit(&one).is_some_and(|c| c >= want)
    });
    let old = row(&one).unwrap();
    let old_cluster = status(&one).unwrap()["cluster_id"].clone();
    for i in [0, 2] {
        let _ = procs.0[i].kill();
        let _ = procs.0[i].wait();
        std::fs::remove_dir_all(dir.path().join(format!("node-{i}"))).unwrap();
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
        procs.0[1].try_wait().unwrap().is_some()
    });
    procs.0[1] = spawn_node(dir.path(), 1, PORT_BASE, &[]);
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
