//! The real `raftctl` binary against a real 3-node cluster of `raft-node`
//! processes on loopback: output formats, exit codes and one-line errors; and
//! `raft-node local` bringing up, serving and stopping a cluster.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    LogsOnPanic, Procs, RAFTCTL, WAIT, ctl, endpoint, fails, json, ok, spawn_local, spawn_node,
    wait_until,
};
use serde_json::Value;

/// Port ranges of this file (node/tests/cluster uses 21000-25999).
const CLI_PORT_BASE: u16 = 26000;
const LOCAL_PORT_BASE: u16 = 26100;

#[test]
fn raftctl_against_a_real_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let mut procs = Procs(
        (0..3)
            .map(|i| spawn_node(dir.path(), i, CLI_PORT_BASE, &[]))
            .collect(),
    );
    let eps: Vec<String> = (0..3).map(|i| endpoint(CLI_PORT_BASE, i)).collect();
    let all = eps.join(",");

    // --- every node answers Status before init
    for ep in &eps {
        wait_until(&format!("{ep} to answer status"), || {
            ctl(ep, &["status", "-o", "json"]).code == 0
        });
    }

    // --- cluster init, once
    let out = ok(&all, &["cluster", "init"]);
    assert!(out.contains("initialized with 3 voters"), "{out}");
    let err = fails(&all, &["cluster", "init"]);
    assert!(err.contains("already belongs to cluster"), "{err}");

    // --- status -o json: one leader, three members with the documented fields
    let st = json(&ok(&all, &["status", "-o", "json"]));
    let leader_id = st["leader_id"].as_u64().expect("leader_id");
    assert_ne!(leader_id, 0, "{st}");
    let members = st["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{st}");
    for m in members {
        for field in [
            "id",
            "role",
            "client_addr",
            "term",
            "commit_index",
            "applied_index",
        ] {
            assert!(!m[field].is_null(), "member lacks {field}: {m}");
        }
    }
    assert_eq!(
        members.iter().filter(|m| m["role"] == "leader").count(),
        1,
        "{st}"
    );
    assert!(
        members
            .iter()
            .any(|m| m["id"].as_u64() == Some(leader_id) && m["role"] == "leader")
    );
    let table = ok(&all, &["status"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("127.0.0.1:")).count(),
        3,
        "{table}"
    );

    // --- put / get, through every endpoint (followers forward writes)
    for (i, ep) in eps.iter().enumerate() {
        assert_eq!(
            ok(ep, &["put", &format!("k/{i}"), &format!("v{i}")]),
            "OK\n"
        );
    }
    assert_eq!(ok(&all, &["get", "k/0"]), "v0\n");
    let g = json(&ok(&all, &["get", "k/1", "-o", "json"]));
    assert_eq!(g["key"], "k/1");
    assert_eq!(g["value"], "v1");
    let rev = g["mod_revision"].as_u64().unwrap();
    assert!(rev > 0, "{g}");
    let p = json(&ok(&all, &["put", "k/2", "v2b", "-o", "json"]));
    assert!(p["header"]["revision"].as_u64().unwrap() > rev, "{p}");
    // Reads at every level on a follower, read-your-writes with --min-revision.
    let follower = members.iter().find(|m| m["role"] == "follower").unwrap()["client_addr"]
        .as_str()
        .unwrap();
    let put_rev = p["header"]["revision"].as_u64().unwrap().to_string();
    assert_eq!(ok(follower, &["get", "k/2"]), "v2b\n");
    assert_eq!(
        ok(
            follower,
            &[
                "get",
                "k/2",
                "--consistency",
                "stale",
                "--min-revision",
                &put_rev
            ]
        ),
        "v2b\n"
    );
    let b = ctl(
        follower,
        &[
            "get",
            "k/2",
            "--consistency",
            "bounded",
            "--max-staleness",
            "5s",
        ],
    );
    assert!(
        b.code == 0 && b.stdout == "v2b\n",
        "bounded read: {:?} {:?}",
        b.stdout,
        b.stderr
    );

    // --- errors: one line, exit 1
    assert_eq!(
        fails(&all, &["get", "missing"]),
        "Error: key \"missing\" not found"
    );
    let empty = fails(&all, &["put", "", "x"]);
    assert!(empty.to_lowercase().contains("empty"), "{empty}");
    let dead = fails("127.0.0.1:1", &["--timeout", "200ms", "get", "x"]);
    assert!(dead.contains("127.0.0.1:1"), "{dead}");
    assert_eq!(
        ctl(&all, &["cas", "k/0", "x"]).code,
        2,
        "a usage error exits 2"
    );

    // --- cas: value, absent, revision; mismatches name the current revision
    assert_eq!(ok(&all, &["cas", "k/0", "v0b", "--expect", "v0"]), "OK\n");
    let mismatch = fails(&all, &["cas", "k/0", "v0c", "--expect", "v0"]);
    assert!(mismatch.contains("mod_revision"), "{mismatch}");
    assert_eq!(ok(&all, &["cas", "new", "1", "--expect-absent"]), "OK\n");
    let exists = fails(&all, &["cas", "new", "2", "--expect-absent"]);
    assert!(exists.contains("\"new\""), "{exists}");
    let cur = json(&ok(&all, &["get", "new", "-o", "json"]))["mod_revision"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ok(
            &all,
            &["cas", "new", "3", "--expect-revision", &cur.to_string()]
        ),
        "OK\n"
    );
    fails(
        &all,
        &["cas", "new", "4", "--expect-revision", &cur.to_string()],
    );
    assert_eq!(ok(&all, &["get", "new"]), "3\n");

    // --- range: prefix, limit, key range
    let r = json(&ok(&all, &["range", "k/", "-o", "json"]));
    let keys: Vec<&str> = r["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k/0", "k/1", "k/2"]);
    assert_eq!(r["more"], false);
    let r = json(&ok(&all, &["range", "k/", "--limit", "2", "-o", "json"]));
    assert_eq!(r["kvs"].as_array().unwrap().len(), 2);
    assert_eq!(r["more"], true);
    let r = json(&ok(
        &all,
        &["range", "--from", "k/1", "--to", "k/2", "-o", "json"],
    ));
    assert_eq!(r["kvs"][0]["key"], "k/1");
    assert_eq!(r["kvs"].as_array().unwrap().len(), 1);
    let t = ok(&all, &["range", "k/"]);
    assert_eq!(t.lines().count(), 4, "header + 3 rows: {t}");

    // --- del
    assert_eq!(ok(&all, &["del", "k/0"]), "OK\n");
    fails(&all, &["get", "k/0"]);
    let d = json(&ok(&all, &["del", "k/0", "-o", "json"]));
    assert_eq!(d["deleted"], false);

    // --- watch: says where and from which revision it starts, then one JSON
    // object a line for each change under its prefix; exits 0 after --count
    {
        use std::io::{BufRead, BufReader};
        let mut w = Command::new(RAFTCTL)
            .args(["--endpoints", &eps[1]])
            .args(["watch", "w/", "-o", "json", "--count", "2"])
            .env_remove("RAFTCTL_ENDPOINTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running raftctl watch");
        let mut stderr = BufReader::new(w.stderr.take().unwrap());
        let mut started = String::new();
        // Blocks until the watch is attached: its start line is the readiness signal.
        stderr.read_line(&mut started).unwrap();
        assert!(
            started.starts_with("watching prefix \"w/\" on node ")
                && started.contains(" after revision "),
            "{started:?}"
        );
        ok(&all, &["put", "x/outside", "1"]);
        ok(&all, &["put", "w/a", "1"]);
        ok(&all, &["del", "w/a"]);
        let out = w.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(json)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            (
                lines[0]["type"].as_str(),
                lines[0]["key"].as_str(),
                lines[0]["value"].as_str()
            ),
            (Some("PUT"), Some("w/a"), Some("1"))
        );
        assert_eq!(
            (lines[1]["type"].as_str(), lines[1]["key"].as_str()),
            (Some("DELETE"), Some("w/a"))
        );
        assert_eq!(
            lines[1]["revision"].as_u64().unwrap(),
            lines[0]["revision"].as_u64().unwrap() + 1
        );
        // A start revision already applied: refused with exit 1, saying so.
        let e = fails(&eps[1], &["watch", "w/", "--from-revision", "1"]);
        assert!(e.contains("keeps no history"), "{e}");
    }

    // --- RAFTCTL_ENDPOINTS replaces --endpoints
    let out = Command::new(RAFTCTL)
        .args(["get", "k/1"])
        .env("RAFTCTL_ENDPOINTS", &all)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "v1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --- membership: a fourth node joins as a learner, is promoted, removed
    procs.0.push(spawn_node(dir.path(), 3, CLI_PORT_BASE, &[]));
    let ep4 = endpoint(CLI_PORT_BASE, 3);
    wait_until("the fourth node to answer", || {
        ctl(&ep4, &["status"]).code == 0
    });
    let id4 = json(&ok(&ep4, &["status", "-o", "json"]))["members"][0]["id"]
        .as_u64()
        .unwrap();
    let out = ok(&all, &["member", "add-learner", &ep4]);
    assert!(out.starts_with(&format!("added learner {id4}")), "{out}");
    let st = json(&ok(&all, &["status", "-o", "json"]));
    assert_eq!(
        st["membership"]["learners"],
        serde_json::json!([id4]),
        "{st}"
    );
    wait_until("the learner to catch up", || {
        let st = json(&ok(&all, &["status", "-o", "json"]));
        st["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"].as_u64() == Some(id4) && m["healthy"] == true)
    });
    ok(&all, &["member", "promote", "node-3"]);
    let st = json(&ok(&all, &["status", "-o", "json"]));
    assert_eq!(
        st["membership"]["voters"].as_array().unwrap().len(),
        4,
        "{st}"
    );
    assert!(
        st["membership"]["voters"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(id4))
    );
    let err = fails(&all, &["member", "promote", "424242"]);
    assert!(err.contains("424242"), "{err}");
    ok(&all, &["member", "remove", &id4.to_string()]);
    let st = json(&ok(&all, &["status", "-o", "json"]));
    assert_eq!(
        st["membership"]["voters"].as_array().unwrap().len(),
        3,
        "{st}"
    );
    let old_leader = st["leader_id"].as_u64().unwrap();
    let out = ok(&all, &["member", "transfer-leader", "-o", "json"]);
    let t = json(&out);
    assert_eq!(t["previous_leader_id"].as_u64(), Some(old_leader), "{t}");
    assert_ne!(t["new_leader_id"].as_u64(), Some(old_leader), "{t}");
    assert_eq!(
        ok(&all, &["get", "k/1"]),
        "v1\n",
        "reads work after the transfer"
    );

    // --- bench prints its figures
    let b = ok(
        &all,
        &[
            "bench",
            "put",
            "--clients",
            "4",
            "--duration",
            "1s",
            "--keys",
            "50",
        ],
    );
    assert!(b.contains("ops/s") && b.contains("p99.9"), "{b}");
    let bj = json(&ok(
        &all,
        &[
            "bench",
            "get",
            "--clients",
            "2",
            "--duration",
            "1s",
            "--keys",
            "20",
            "-o",
            "json",
        ],
    ));
    assert!(bj["ops"].as_u64().unwrap() > 0, "{bj}");
    assert_eq!(bj["errors"], 0, "{bj}");
    // --skip-preload reads without writing the keys first (vs-etcd.sh measures
    // the nodes' CPU over the whole run, which the preload's writes would skew):
    // on keys nobody wrote, every read is NotFound and the run fails.
    let skipped = ctl(
        &all,
        &[
            "bench",
            "get",
            "--clients",
            "2",
            "--duration",
            "1s",
            "--keys",
            "5",
            "--key-prefix",
            "unwritten/",
            "--skip-preload",
            "-o",
            "json",
        ],
    );
    assert_eq!(skipped.code, 1, "stderr: {}", skipped.stderr);
    let doc = json(&skipped.stdout);
    assert_eq!(doc["ops"], 0, "{doc}");
    assert!(
        doc["error_kinds"]["NotFound"]["count"].as_u64().unwrap() > 0,
        "{doc}"
    );
}

#[test]
fn raft_node_local_serves_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let out_log = dir.path().join("local.out");
    let mut procs = Procs(vec![spawn_local(&data, LOCAL_PORT_BASE, &[], &out_log)]);
    let _logs = LogsOnPanic(&data);
    let eps: String = (0..3)
        .map(|i| endpoint(LOCAL_PORT_BASE, i))
        .collect::<Vec<_>>()
        .join(",");

    wait_until("raft-node local to print its export line", || {
        std::fs::read_to_string(&out_log)
            .unwrap_or_default()
            .contains("export RAFTCTL_ENDPOINTS=")
    });
    let out = std::fs::read_to_string(&out_log).unwrap();
    assert!(
        out.contains(&format!("export RAFTCTL_ENDPOINTS={eps}")),
        "{out}"
    );
    let st = json(&ok(&eps, &["status", "-o", "json"]));
    assert_ne!(st["leader_id"].as_u64().unwrap(), 0, "{st}");
    assert_eq!(ok(&eps, &["put", "local", "yes"]), "OK\n");
    assert_eq!(ok(&eps, &["get", "local"]), "yes\n");

    // SIGTERM: every node stops, local exits 0.
    let pid = procs.0[0].id() as i32;
    // SAFETY: signalling a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = procs.0[0].try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "raft-node local did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "raft-node local exited with {status}");
    let out = std::fs::read_to_string(&out_log).unwrap();
    assert!(out.contains("stopped"), "{out}");
    for i in 0..3 {
        let addr = endpoint(LOCAL_PORT_BASE, i);
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "{addr} still accepts connections after stop"
        );
    }
    assert!(data.join("node-0.log").exists());
}
