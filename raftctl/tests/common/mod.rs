//! What raftctl's integration tests share: the `raftctl` and `raft-node`
//! binaries, a guard that kills the processes a test started, running
//! `raftctl` and checking its exit code and one-line errors, waiting, and the
//! node logs printed when a test fails. Each test file does `mod common;`;
//! its port ranges stay in the file.

// Every test file is a crate of its own that compiles this module and uses a
// subset of it: what one of them leaves unused is not dead code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const RAFTCTL: &str = env!("CARGO_BIN_EXE_raftctl");

/// `raft-node` is another package's binary, so cargo gives no path for it:
/// `cargo test --workspace` builds it next to this test's own target dir;
/// `RAFTKV_BIN_DIR` names another directory.
pub static RAFT_NODE: LazyLock<PathBuf> = LazyLock::new(|| {
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
        "{} not found: run `cargo test --workspace` or `cargo build -p raftkv-node --bin raft-node` first (or set RAFTKV_BIN_DIR)",
        bin.display()
    );
    bin
});

/// How long `wait_until` waits.
pub const WAIT: Duration = Duration::from_secs(30);

/// Processes killed when the test ends, however it ends.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The client address of node `i` of the cluster whose ports start at `base`
/// (node `i` listens for clients on `base + 2i`, for peers on `base + 2i + 1`).
pub fn endpoint(base: u16, i: u16) -> String {
    format!("127.0.0.1:{}", base + 2 * i)
}

/// `raft-node` number `i` of the cluster at `base`, named `node-<i>`, its data
/// in `<dir>/node-<i>`, logging to `<dir>/node-<i>.log` (appended to, so a
/// restarted node keeps its earlier lines); `extra` goes after the flags.
pub fn spawn_node(dir: &Path, i: u16, base: u16, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("node-{i}.log")))
        .unwrap();
    Command::new(&*RAFT_NODE)
        .arg("--data-dir")
        .arg(dir.join(format!("node-{i}")))
        .args(["--client-addr", &endpoint(base, i)])
        .args(["--peer-addr", &format!("127.0.0.1:{}", base + 2 * i + 1)])
        .args(["--name", &format!("node-{i}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting raft-node")
}

/// `raft-node local`: 3 nodes from port `base`, their data and logs under
/// `data`, `extra` after those flags; its stdout (the `export` lines) goes to
/// `out_log`.
pub fn spawn_local(data: &Path, base: u16, extra: &[&str], out_log: &Path) -> Child {
    Command::new(&*RAFT_NODE)
        .arg("local")
        .args(["--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out_log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting raft-node local")
}

/// What one `raftctl` run did.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `raftctl --endpoints <endpoints> <args>`.
pub fn ctl(endpoints: &str, args: &[&str]) -> Ran {
    ctl_args(endpoints, &[], args)
}

/// `raftctl --endpoints <endpoints> <extra> <args>`, with no endpoint or TLS
/// files from the environment and text diagnostics.
pub fn ctl_args(endpoints: &str, extra: &[String], args: &[&str]) -> Ran {
    let out = Command::new(RAFTCTL)
        .args(["--endpoints", endpoints])
        .args(extra)
        .args(args)
        .env_remove("RAFTCTL_ENDPOINTS")
        .env_remove("RAFTCTL_CACERT")
        .env_remove("RAFTCTL_CERT")
        .env_remove("RAFTCTL_KEY")
        .env("RAFTCTL_LOG_FORMAT", "text")
        .output()
        .expect("running raftctl");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// raftctl that must succeed; returns stdout.
pub fn ok(endpoints: &str, args: &[&str]) -> String {
    ok_args(endpoints, &[], args)
}

/// `ok` with `extra` flags (see `ctl_args`).
pub fn ok_args(endpoints: &str, extra: &[String], args: &[&str]) -> String {
    let r = ctl_args(endpoints, extra, args);
    assert_eq!(
        r.code, 0,
        "raftctl {args:?} failed: stdout={:?} stderr={:?}",
        r.stdout, r.stderr
    );
    r.stdout
}

/// raftctl that must fail with exit code 1 and exactly one `Error: ` line; returns it.
pub fn fails(endpoints: &str, args: &[&str]) -> String {
    fails_args(endpoints, &[], args)
}

/// `fails` with `extra` flags (see `ctl_args`).
pub fn fails_args(endpoints: &str, extra: &[String], args: &[&str]) -> String {
    let stderr = exits_1_args(endpoints, extra, args);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "raftctl {args:?}: stderr must be one line: {stderr:?}"
    );
    assert!(
        lines[0].starts_with("Error: "),
        "raftctl {args:?}: {stderr:?}"
    );
    lines[0].to_string()
}

/// raftctl that must exit with code 1, whatever it prints; returns its stderr.
pub fn exits_1_args(endpoints: &str, extra: &[String], args: &[&str]) -> String {
    let r = ctl_args(endpoints, extra, args);
    assert_eq!(
        r.code, 1,
        "raftctl {args:?}: expected exit 1, got {}: stdout={:?} stderr={:?}",
        r.code, r.stdout, r.stderr
    );
    r.stderr
}

pub fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Polls `f` every 100 ms until it holds; fails the test after `WAIT`.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prints the node logs under `dir` if the test panics. Declared before the
/// `Procs` guard, it is dropped after it: the logs end with the processes.
pub struct LogsOnPanic<'a>(pub &'a Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(self.0);
        }
    }
}

/// The last lines of every `*.log` and `*.out` file under `dir`, at any depth.
pub fn print_logs(dir: &Path) {
    let mut logs: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log" || e == "out"))
        .collect();
    logs.sort();
    for p in logs {
        if let Ok(s) = std::fs::read_to_string(&p) {
            let tail: Vec<&str> = s.lines().rev().take(30).collect();
            eprintln!(
                "--- {} (last lines)\n{}",
                p.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Every file under `dir`, at any depth.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
