//! Short real runs of the suite against the real raft-node: a clean run must
//! find nothing, and runs with a deliberately broken recording must find
//! anomalies (the suite bites).
//!
//! Needs root (network namespaces) and a built raft-node next to this
//! crate's binary (`cargo build -p raftkv-node --bin raft-node`). Without
//! either the tests FAIL with a message saying so; they never skip silently.

use std::path::{Path, PathBuf};
use std::process::Command;

const SUITE: &str = env!("CARGO_BIN_EXE_raftkv-faults");

fn preconditions() -> PathBuf {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (network namespaces, veth, iptables): run `sudo -E cargo test -p raftkv-faults --test real_runs`"
    );
    let node = std::env::var_os("RAFTKV_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(SUITE).with_file_name("raft-node"));
    assert!(
        node.is_file(),
        "raft-node not found at {}; build it first: cargo build -p raftkv-node --bin raft-node",
        node.display()
    );
    node
}

struct Run {
    code: i32,
    summary: serde_json::Value,
    stdout: String,
}

/// One run at a time: the machine is small and the runs measure timing.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(name: &str, args: &[&str]) -> Run {
    let node = preconditions();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out =
        std::env::temp_dir().join(format!("raftkv-faults-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(SUITE)
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--node-bin")
        .arg(&node)
        .output()
        .expect("running raftkv-faults");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let summary = std::fs::read_to_string(out.join("summary.jsonl"))
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| serde_json::from_str(l).ok()))
        .unwrap_or_else(|| panic!("no summary.jsonl; stdout:\n{stdout}\nstderr:\n{stderr}"));
    let r = Run {
        code: o.status.code().unwrap_or(-1),
        summary,
        stdout: format!("{stdout}\n{stderr}"),
    };
    if r.code == 0 || r.code == 1 {
        let _ = std::fs::remove_dir_all(&out);
    }
    r
}

#[test]
fn a_clean_run_without_faults_finds_no_anomaly() {
    let r = run(
        "clean",
        &["--nemesis", "none", "--seed", "1", "--duration", "8s"],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.summary["anomalies"], 0, "{}", r.stdout);
    assert!(r.summary["ops"].as_u64().unwrap() > 100, "{}", r.stdout);
    assert!(r.summary["recovery_ms"].as_u64().unwrap() < 10_000);
}

#[test]
fn stale_reads_labelled_linearizable_are_caught_under_partitions() {
    let r = run(
        "stale",
        &[
            "--nemesis",
            "partition",
            "--seed",
            "2",
            "--duration",
            "12s",
            "--break",
            "stale-as-linearizable",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.summary["anomalies"].as_u64().unwrap() > 0, "{}", r.stdout);
    assert!(
        r.summary["anomaly_kinds"]
            .as_str()
            .unwrap()
            .contains("not-linearizable"),
        "{}",
        r.stdout
    );
}

#[test]
fn dropped_acknowledgements_are_caught() {
    let r = run(
        "drop",
        &[
            "--nemesis",
            "none",
            "--seed",
            "3",
            "--duration",
            "6s",
            "--break",
            "drop-acks",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.summary["anomalies"].as_u64().unwrap() > 0, "{}", r.stdout);
}
