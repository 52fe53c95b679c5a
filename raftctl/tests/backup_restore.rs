//! Backups and restore with real processes on loopback: `raftctl snapshot
//! save | inspect` against a real `raft-node` cluster, and the restored
//! state served by a NEW cluster (`raft-node --restore`, `raft-node local
//! --restore`). Bad files are refused naming the problem, and a backup taken
//! while writes run and the leader is killed holds a prefix of the history.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    LogsOnPanic, Procs, RAFT_NODE, RAFTCTL, ctl, endpoint, fails, json, ok, spawn_local,
    spawn_node, wait_until,
};
use raftkv_client::{ClientOptions, RaftClient, ReadOptions};
use serde_json::Value;

/// Port ranges of this file (raftctl_cli.rs uses 26000-26199).
const ROUND_TRIP_BASE: u16 = 26200;
const PREFIX_BASE: u16 = 26300;

/// A 3-voter cluster of `raft-node` processes under `dir`; returns the procs
/// and the endpoints joined by commas.
fn three_node_cluster(dir: &Path, base: u16) -> (Procs, String) {
    let procs = Procs((0..3).map(|i| spawn_node(dir, i, base, &[])).collect());
    let eps: Vec<String> = (0..3).map(|i| endpoint(base, i)).collect();
    for ep in &eps {
        wait_until(&format!("{ep} to answer"), || {
            ctl(ep, &["status"]).code == 0
        });
    }
    let all = eps.join(",");
    ok(&all, &["cluster", "init"]);
    (procs, all)
}

/// Every key with its value and revisions, and the store revision, read
/// linearizably (one page: these tests stay below the server's page size).
fn dump(endpoints: &str) -> (BTreeMap<String, Value>, u64) {
    let r = json(&ok(endpoints, &["range", "", "-o", "json"]));
    assert_eq!(r["more"], false, "one page expected");
    let kvs = r["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv.clone()))
        .collect();
    (kvs, r["header"]["revision"].as_u64().unwrap())
}

#[test]
fn save_inspect_and_restore_as_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let src = dir.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    let (_source, all) = three_node_cluster(&src, ROUND_TRIP_BASE);

    tracing_phase("--- a store with history: puts, overwrites, a delete, a large value");
    for i in 0..40 {
        ok(&all, &["put", &format!("k/{i:02}"), &format!("v{i}")]);
    }
    ok(&all, &["put", "k/01", "v1-again"]);
    ok(&all, &["put", "k/01", "v1-third"]);
    ok(&all, &["del", "k/02"]);
    let big = "b".repeat(600 * 1024);
    let mut put_big = Command::new(RAFTCTL)
        .args(["--endpoints", &all, "put", "big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut put_big.stdin.take().unwrap(), big.as_bytes()).unwrap();
    assert!(put_big.wait().unwrap().success());
    let (before, revision) = dump(&all);
    assert_eq!(before.len(), 40, "39 k/ keys and big");
    let st = json(&ok(&all, &["status", "-o", "json"]));
    let source_cluster = st["cluster_id"].as_str().unwrap().to_string();
    let source_ids: Vec<u64> = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    let follower = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "follower")
        .unwrap()["client_addr"]
        .as_str()
        .unwrap()
        .to_string();

    tracing_phase("--- save through a follower (it forwards to the leader)");
    let file = dir.path().join("backup.rkv");
    let f = file.to_str().unwrap();
    let saved = json(&ok(&follower, &["snapshot", "save", f, "-o", "json"]));
    assert!(file.exists());
    assert!(!dir.path().join("backup.rkv.part").exists());
    assert_eq!(saved["keys"], 40, "{saved}");
    assert_eq!(saved["revision"].as_u64(), Some(revision), "{saved}");
    assert_eq!(saved["cluster_id"], source_cluster.as_str());
    let table = ok(&all, &["snapshot", "save", f]);
    assert!(table.starts_with(&format!("saved {f}: 40 keys")), "{table}");

    tracing_phase("--- inspect: header for people and for scripts");
    let i = json(&ok(
        "127.0.0.1:1",
        &["snapshot", "inspect", f, "-o", "json"],
    ));
    assert_eq!(i["format_version"], 1);
    assert_eq!(i["verified"], true);
    assert_eq!(i["keys"], 40);
    assert_eq!(i["revision"].as_u64(), Some(revision));
    assert_eq!(i["cluster_id"], source_cluster.as_str());
    assert_eq!(
        i["bytes"].as_u64(),
        Some(std::fs::metadata(&file).unwrap().len())
    );
    assert_eq!(
        i["membership"]["members"].as_array().unwrap().len(),
        3,
        "{i}"
    );
    assert!(i["log_index"].as_u64().unwrap() > 40, "{i}");
    assert!(i["log_term"].as_u64().unwrap() >= 1, "{i}");
    assert!(
        i["checksum"].as_str().unwrap().starts_with("crc32c:"),
        "{i}"
    );
    let t = ok("127.0.0.1:1", &["snapshot", "inspect", f]);
    assert!(
        t.contains("(verified)") && t.contains(&source_cluster),
        "{t}"
    );

    tracing_phase("--- raft-node --restore: a new one-voter cluster with the same keys");
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let base = ROUND_TRIP_BASE + 20;
    let mut one = Procs(vec![spawn_node(&restored, 0, base, &["--restore", f])]);
    let ep = endpoint(base, 0);
    wait_until("the restored node to lead", || {
        let r = ctl(&ep, &["status", "-o", "json"]);
        r.code == 0 && json(&r.stdout)["leader_id"].as_u64().unwrap_or(0) != 0
    });
    let st = json(&ok(&ep, &["status", "-o", "json"]));
    let new_cluster = st["cluster_id"].as_str().unwrap().to_string();
    assert!(!new_cluster.is_empty());
    assert_ne!(new_cluster, source_cluster, "a restore makes a NEW cluster");
    let new_id = st["leader_id"].as_u64().unwrap();
    assert!(!source_ids.contains(&new_id), "new node ID {new_id}");
    assert_eq!(st["membership"]["voters"], serde_json::json!([new_id]));
    let (after, after_revision) = dump(&ep);
    assert_eq!(after_revision, revision, "the store revision is kept");
    assert_eq!(after, before, "every key, value and revision is back");
    let p = json(&ok(&ep, &["put", "after", "restore", "-o", "json"]));
    assert_eq!(p["header"]["revision"].as_u64(), Some(revision + 1), "{p}");
    assert_eq!(ok(&ep, &["get", "after"]), "restore\n");

    tracing_phase("--- the same --restore again on its data directory: the same cluster");
    let _ = one.0[0].kill();
    let _ = one.0[0].wait();
    one.0[0] = spawn_node(&restored, 0, base, &["--restore", f]);
    wait_until("the restarted node to lead", || {
        let r = ctl(&ep, &["status", "-o", "json"]);
        r.code == 0 && json(&r.stdout)["leader_id"].as_u64() == Some(new_id)
    });
    assert_eq!(
        json(&ok(&ep, &["status", "-o", "json"]))["cluster_id"],
        new_cluster.as_str()
    );
    assert_eq!(ok(&ep, &["get", "after"]), "restore\n");
    drop(one);

    tracing_phase("--- raft-node local --restore: three voters with the same keys");
    let base = ROUND_TRIP_BASE + 40;
    let out_log = dir.path().join("local.out");
    let local = spawn_local(&dir.path().join("local"), base, &["--restore", f], &out_log);
    let _local = Procs(vec![local]);
    wait_until("raft-node local --restore to be ready", || {
        std::fs::read_to_string(&out_log)
            .unwrap_or_default()
            .contains("export RAFTCTL_ENDPOINTS=")
    });
    let eps = (0..3)
        .map(|i| endpoint(base, i))
        .collect::<Vec<_>>()
        .join(",");
    let st = json(&ok(&eps, &["status", "-o", "json"]));
    assert_eq!(
        st["membership"]["voters"].as_array().unwrap().len(),
        3,
        "{st}"
    );
    let local_cluster = st["cluster_id"].as_str().unwrap();
    assert_ne!(local_cluster, source_cluster);
    assert_ne!(local_cluster, new_cluster);
    let (after, _) = dump(&eps);
    assert_eq!(after, before);
    // Every member holds the data: a stale read on the last one.
    let last = endpoint(base, 2);
    wait_until("the last member to have applied the restored state", || {
        ctl(&last, &["get", "k/01", "--consistency", "stale"]).stdout == "v1-third\n"
    });
    ok(&eps, &["put", "k/99", "new"]);
}

/// A phase marker in the test output (the tests run as one sequence of phases).
fn tracing_phase(what: &str) {
    eprintln!("{what}");
}

/// A valid backup of three keys, made with the format crate itself.
fn valid_backup() -> Vec<u8> {
    let entries: Vec<raftkv_backup::Entry> = (1..=3u64)
        .map(|i| raftkv_backup::Entry {
            key: format!("key{i}").into_bytes(),
            value: vec![b'x'; 100],
            create_revision: i,
            mod_revision: i,
            version: 1,
        })
        .collect();
    let header = raftkv_backup::Header {
        cluster_id: "0123".into(),
        node_id: 1,
        revision: 3,
        log_index: 5,
        log_term: 1,
        keys: 3,
        ..Default::default()
    };
    raftkv_backup::encode_all(&header, &entries).unwrap()
}

#[test]
fn corrupted_and_truncated_files_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_backup();
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x20;
    let truncated = good[..good.len() - 7].to_vec();
    let mut magic = good.clone();
    magic[0..4].copy_from_slice(b"NOPE");
    let mut version = good.clone();
    version[8..12].copy_from_slice(&7u32.to_le_bytes());
    let cases: [(&str, Vec<u8>, String); 4] = [
        (
            "flipped",
            flipped,
            "checksum mismatch in the frame at byte".into(),
        ),
        (
            "truncated",
            truncated,
            format!("truncated at byte {}", good.len() - 7),
        ),
        ("magic", magic, "bad magic".into()),
        ("version", version, "unsupported format version 7".into()),
    ];
    // The good file passes, so the refusals below are about the damage.
    let g = dir.path().join("good.rkv");
    std::fs::write(&g, &good).unwrap();
    let i = json(&ok(
        "127.0.0.1:1",
        &["snapshot", "inspect", g.to_str().unwrap(), "-o", "json"],
    ));
    assert_eq!(i["keys"], 3);

    for (n, (name, bytes, want)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("{name}.rkv"));
        std::fs::write(&file, &bytes).unwrap();
        let f = file.to_str().unwrap();
        let err = fails("127.0.0.1:1", &["snapshot", "inspect", f]);
        assert!(err.contains(&want), "{name}: {err}");

        // raft-node --restore refuses it and writes nothing: neither a
        // missing data directory nor an empty one gets anything.
        let data = dir.path().join(format!("data-{name}"));
        if n % 2 == 1 {
            std::fs::create_dir(&data).unwrap();
        }
        let port = PREFIX_BASE + 90 + 2 * n as u16;
        let out = Command::new(&*RAFT_NODE)
            .arg("--data-dir")
            .arg(&data)
            .args(["--client-addr", &format!("127.0.0.1:{port}")])
            .args(["--peer-addr", &format!("127.0.0.1:{}", port + 1)])
            .args(["--restore", f])
            .env("RAFT_LOG_FORMAT", "text")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: raft-node accepted it");
        assert!(stderr.contains(&want), "{name}: {stderr}");
        assert!(stderr.contains("refusing to restore"), "{name}: {stderr}");
        if n % 2 == 1 {
            assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "{name}");
        } else {
            assert!(!data.exists(), "{name}: {} was created", data.display());
        }
    }

    // A save that cannot reach a leader fails in one line and leaves no file.
    let nowhere = dir.path().join("nowhere.rkv");
    let err = fails(
        "127.0.0.1:1",
        &[
            "--timeout",
            "300ms",
            "snapshot",
            "save",
            nowhere.to_str().unwrap(),
        ],
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!nowhere.exists());
    assert!(!dir.path().join("nowhere.rkv.part").exists());

    // A good file into a data directory that is not empty: refused.
    let data = dir.path().join("data-used");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("something"), b"x").unwrap();
    let out = Command::new(&*RAFT_NODE)
        .arg("--data-dir")
        .arg(&data)
        .args(["--client-addr", &format!("127.0.0.1:{}", PREFIX_BASE + 98)])
        .args(["--peer-addr", &format!("127.0.0.1:{}", PREFIX_BASE + 99)])
        .args(["--restore", g.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
}

/// One writer's history: writes `w<id>/<n>` = `<n>` for n = 0, 1, ... each
/// retried until acknowledged before the next is attempted, so its
/// acknowledged writes are always a prefix 0..acked.
struct Writer {
    acked: AtomicU64,
    attempted: AtomicU64,
}

async fn write_until(c: RaftClient, id: usize, w: Arc<Writer>, stop: Arc<AtomicU64>) {
    let mut n = 0u64;
    while stop.load(Ordering::Acquire) == 0 {
        w.attempted.store(n + 1, Ordering::Release);
        if c.put(format!("w{id}/{n:06}"), n.to_string()).await.is_ok() {
            w.acked.store(n + 1, Ordering::Release);
            n += 1;
        }
    }
}

#[test]
fn a_backup_under_writes_and_a_leader_kill_restores_a_prefix_of_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let src = dir.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    let (mut procs, all) = three_node_cluster(&src, PREFIX_BASE);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Lazy gRPC channels are made inside the runtime.
    let _rt = rt.enter();

    tracing_phase("--- two writers run");
    let opts = ClientOptions::default().with_timeout(Duration::from_secs(2));
    let client =
        RaftClient::connect(all.split(',').map(str::to_string).collect(), opts.clone()).unwrap();
    let stop = Arc::new(AtomicU64::new(0));
    let writers: Vec<Arc<Writer>> = (0..2)
        .map(|_| {
            Arc::new(Writer {
                acked: AtomicU64::new(0),
                attempted: AtomicU64::new(0),
            })
        })
        .collect();
    let tasks: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(id, w)| rt.spawn(write_until(client.clone(), id, w.clone(), stop.clone())))
        .collect();
    wait_until("some writes to be acknowledged", || {
        writers
            .iter()
            .all(|w| w.acked.load(Ordering::Acquire) >= 20)
    });

    tracing_phase("--- kill -9 the leader, then save at once, writes still running");
    let st = json(&ok(&all, &["status", "-o", "json"]));
    let leader_addr = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "leader")
        .unwrap()["client_addr"]
        .as_str()
        .unwrap()
        .to_string();
    let leader = (0..3)
        .position(|i| endpoint(PREFIX_BASE, i) == leader_addr)
        .unwrap();
    let file = dir.path().join("under-writes.rkv");
    let f = file.to_str().unwrap().to_string();
    procs.0[leader].kill().unwrap();
    procs.0[leader].wait().unwrap();
    // The save starts during the election: the new leader serves it, and its
    // read point must cover everything the old leader acknowledged.
    let acked_before: Vec<u64> = writers
        .iter()
        .map(|w| w.acked.load(Ordering::Acquire))
        .collect();
    let saved = json(&ok(&all, &["snapshot", "save", &f, "-o", "json"]));
    assert_ne!(
        saved["node_id"].as_u64(),
        st["leader_id"].as_u64(),
        "the killed leader served the backup"
    );
    wait_until("writes to go on after the failover", || {
        writers
            .iter()
            .zip(&acked_before)
            .all(|(w, b)| w.acked.load(Ordering::Acquire) > b + 10)
    });
    stop.store(1, Ordering::Release);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    let attempted: Vec<u64> = writers
        .iter()
        .map(|w| w.attempted.load(Ordering::Acquire))
        .collect();

    tracing_phase("--- restore and compare with the history");
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let base = PREFIX_BASE + 20;
    let _one = Procs(vec![spawn_node(&restored, 0, base, &["--restore", &f])]);
    let ep = endpoint(base, 0);
    wait_until("the restored node to lead", || {
        let r = ctl(&ep, &["status", "-o", "json"]);
        r.code == 0 && json(&r.stdout)["leader_id"].as_u64().unwrap_or(0) != 0
    });
    let rc = RaftClient::connect(vec![ep.clone()], opts).unwrap();
    for (id, (before, tried)) in acked_before.iter().zip(&attempted).enumerate() {
        let r = rt
            .block_on(rc.range_prefix(format!("w{id}/"), 0, ReadOptions::default()))
            .unwrap();
        assert!(!r.more, "one page expected");
        let got: Vec<(String, String)> = r
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8(kv.key.clone()).unwrap(),
                    String::from_utf8(kv.value.clone()).unwrap(),
                )
            })
            .collect();
        let n = got.len() as u64;
        // A prefix 0..n of writer id's history, with the values written.
        for (i, (k, v)) in got.iter().enumerate() {
            assert_eq!(k, &format!("w{id}/{i:06}"), "writer {id}: a hole");
            assert_eq!(v, &i.to_string(), "writer {id}: key {k}");
        }
        assert!(
            n >= *before,
            "writer {id}: {before} writes acknowledged before the save started, {n} restored"
        );
        assert!(
            n <= *tried,
            "writer {id}: {n} restored but only {tried} attempted"
        );
        eprintln!(
            "writer {id}: acknowledged before the save {before}, restored {n}, attempted {tried}"
        );
    }
    let (all_keys, _) = dump(&ep);
    assert!(
        all_keys
            .keys()
            .all(|k| k.starts_with("w0/") || k.starts_with("w1/")),
        "nothing that was not written"
    );
}
