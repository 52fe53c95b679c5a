//! A backup taken the operator's way (`backup::take`: the node's stream
//! uploaded chunk by chunk) from a real `raft-node` process into a real object
//! store, then downloaded and decoded: `object_store`'s local file system
//! here; an S3 server with `hack/backup/s3-smoke.sh`, which runs the ignored
//! test below against one it started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raft_operator::backup::destination::object_name;
use raft_operator::backup::take::take;
use raft_operator::node_client::Target;
use raftkv_backup::store::{self, Destination, S3Destination};
use raftkv_client::{ClientOptions, RaftClient, ReadOptions};
use raftkv_proto::v1;

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
        "{} not found: run `cargo build -p raftkv-node --bin raft-node` first (or set RAFTKV_BIN_DIR)",
        bin.display()
    );
    bin
}

/// Ports of this file: 27700-27701 (filesystem), 27710-27711 (S3).
const FS_PORT: u16 = 27700;
const S3_PORT: u16 = 27710;
const WAIT: Duration = Duration::from_secs(30);
/// Enough keys for several 256 KiB frames and several chunks of the stream.
const KEYS: usize = 1_000;
const VALUE_BYTES: usize = 1_000;

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A one-voter cluster on `port` (client) and `port + 1` (peer) with `KEYS`
/// keys; the node and its client endpoint.
async fn node_with_keys(dir: &Path, port: u16) -> (Node, String) {
    let client_addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let node = Node(
        Command::new(raft_node())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--client-addr", &client_addr])
            .args(["--peer-addr", &format!("127.0.0.1:{}", port + 1)])
            .args(["--name", "node-0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting raft-node"),
    );
    let c = RaftClient::connect(vec![client_addr.clone()], ClientOptions::default()).unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        match c.status(&client_addr).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "raft-node never answered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let me = v1::Member {
        node_id: status.node_id,
        client_addr: client_addr.clone(),
        peer_addr: format!("127.0.0.1:{}", port + 1),
        name: "node-0".into(),
    };
    c.initialize(&client_addr, vec![me])
        .await
        .expect("initialized");
    for i in 0..KEYS {
        let value = vec![b'a' + (i % 26) as u8; VALUE_BYTES];
        loop {
            match c.put(format!("k/{i:05}"), value.clone()).await {
                Ok(_) => break,
                // The first writes may race the election.
                Err(e) => {
                    assert!(Instant::now() < deadline, "put failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    let last = c
        .get("k/00999", ReadOptions::default())
        .await
        .expect("read back");
    assert!(last.kv.is_some(), "the last key reads back");
    (node, client_addr)
}

/// Takes a backup into `dest`, then downloads it and checks every key.
async fn round_trip(dest: Destination, addr: &str, work: &Path) {
    let opened = store::open(&dest).expect("destination opens");
    let name = object_name("ns", "demo", "demo-manual");
    let (summary, key) = take(&[Target::plaintext(addr)], &opened, &name)
        .await
        .expect("backup taken");
    assert_eq!(summary.header.keys, KEYS as u64);
    assert!(summary.header.revision >= KEYS as u64, "{summary:?}");
    assert!(summary.bytes > (KEYS * VALUE_BYTES) as u64, "{summary:?}");
    assert_eq!(
        store::size(&*opened.store, &store::Key::parse(&key).unwrap())
            .await
            .unwrap(),
        Some(summary.bytes),
        "the stored object has the backup's size"
    );

    let file = work.join("downloaded.rkvb");
    let down = store::download(&*opened.store, &store::Key::parse(&key).unwrap(), &file)
        .await
        .expect("downloaded and verified");
    assert_eq!(down, summary);
    let (_, entries) =
        raftkv_backup::decode_all(std::fs::File::open(&file).unwrap()).expect("decodes");
    assert_eq!(entries.len(), KEYS);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.key, format!("k/{i:05}").into_bytes());
        assert_eq!(e.value, vec![b'a' + (i % 26) as u8; VALUE_BYTES]);
    }
    if let Some(keep) = std::env::var_os("RAFTKV_S3_SMOKE_KEEP") {
        std::fs::copy(&file, keep).expect("copy for raftctl snapshot inspect");
    }
}

#[tokio::test]
async fn a_backup_streams_from_a_real_node_into_a_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = node_with_keys(dir.path(), FS_PORT).await;
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    round_trip(
        Destination::Filesystem {
            directory: backups.clone(),
        },
        &addr,
        dir.path(),
    )
    .await;
    assert!(backups.join("ns/demo/demo-manual.rkvb").is_file());

    // A member that does not answer: the next address serves it.
    let opened = store::open(&Destination::Filesystem {
        directory: backups.clone(),
    })
    .unwrap();
    let (summary, _) = take(
        &[
            Target::plaintext("127.0.0.1:1"),
            Target::plaintext(addr.clone()),
        ],
        &opened,
        "second.rkvb",
    )
    .await
    .expect("the second address serves");
    assert_eq!(summary.header.keys, KEYS as u64);
    // None answers: the reason names each address, and nothing is stored.
    let e = take(&[Target::plaintext("127.0.0.1:1")], &opened, "third.rkvb")
        .await
        .expect_err("no member");
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(!backups.join("third.rkvb").exists());
}

/// Run by hack/backup/s3-smoke.sh with an S3 server it started
/// (`RAFTKV_S3_ENDPOINT`, `RAFTKV_S3_BUCKET`, `RAFTKV_S3_ACCESS_KEY`,
/// `RAFTKV_S3_SECRET_KEY`).
#[tokio::test]
#[ignore = "needs an S3 server: run hack/backup/s3-smoke.sh"]
async fn a_backup_streams_from_a_real_node_into_an_s3_server() {
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run hack/backup/s3-smoke.sh"))
    };
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = node_with_keys(dir.path(), S3_PORT).await;
    let dest = Destination::S3(S3Destination {
        endpoint: Some(env("RAFTKV_S3_ENDPOINT")),
        bucket: env("RAFTKV_S3_BUCKET"),
        prefix: "smoke".into(),
        region: None,
        force_path_style: true,
        access_key_id: env("RAFTKV_S3_ACCESS_KEY"),
        secret_access_key: env("RAFTKV_S3_SECRET_KEY"),
    });
    round_trip(dest.clone(), &addr, dir.path()).await;

    // Wrong credentials: refused by the server, named in the error.
    let Destination::S3(s3) = dest else {
        unreachable!()
    };
    let bad = store::open(&Destination::S3(S3Destination {
        secret_access_key: "wrong".into(),
        ..s3
    }))
    .unwrap();
    let e = take(&[Target::plaintext(addr)], &bad, "refused.rkvb")
        .await
        .expect_err("wrong secret refused");
    assert!(e.contains("refused.rkvb"), "{e}");
}
