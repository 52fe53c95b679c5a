//! Issue 14 item 3, the node's half: `Cluster/Restore` streams a backup to a
//! node of no cluster, which verifies it whole and restarts as the one voter
//! of a new cluster holding exactly the backup's state (what a RaftCluster's
//! `spec.bootstrap.fromBackup` does through the operator). A damaged or
//! truncated file, or a node that is a member, is refused and nothing changes.

use futures::StreamExt;
use raftkv_proto::v1 as pb;
use tonic::Code;

use crate::util::*;

const PORT_BASE: u16 = 28000;

fn value_of(k: &str) -> String {
    format!("restored-value-of-{k}")
}

/// The whole backup file, as `Cluster/Backup` through node `i` streams it.
async fn take_backup(c: &TestCluster, i: usize) -> Vec<u8> {
    let mut stream = c
        .cluster(i)
        .backup(pb::BackupRequest {})
        .await
        .expect("Backup")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("backup chunk");
        assert_eq!(chunk.offset, bytes.len() as u64, "chunks in order");
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

/// `bytes` as `Cluster/Restore` chunks of 4 KiB (several, to exercise the order check).
fn chunks(bytes: &[u8]) -> impl futures::Stream<Item = pb::BackupChunk> + Send + 'static {
    let owned: Vec<pb::BackupChunk> = bytes
        .chunks(4096)
        .enumerate()
        .map(|(n, d)| pb::BackupChunk {
            offset: (n * 4096) as u64,
            data: d.to_vec().into(),
        })
        .collect();
    futures::stream::iter(owned)
}

async fn restore(
    c: &TestCluster,
    i: usize,
    bytes: &[u8],
) -> Result<pb::RestoreResponse, tonic::Status> {
    c.cluster(i)
        .restore(chunks(bytes))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_streamed_to_an_empty_node_becomes_a_new_cluster_with_exactly_its_state() {
    // Nodes 0..2 form the source cluster; node 3 stays uninitialized: the
    // empty pod a new RaftCluster starts with.
    let mut c = TestCluster::start(4, PORT_BASE).await;
    let source = c.init(&[0, 1, 2]).await;
    let leader = c.wait_leader(&[0, 1, 2]).await;

    tracing::info!("--- 200 keys, a backup, then 20 more keys the backup must not hold");
    let keys: Vec<String> = (0..200).map(|n| format!("k{n:04}")).collect();
    let later: Vec<String> = (0..20).map(|n| format!("later{n:02}")).collect();
    {
        let mut kv = c.kv(leader);
        for k in &keys {
            put(&mut kv, k, &value_of(k)).await.expect("put");
        }
    }
    let bytes = take_backup(&c, leader).await;
    {
        let mut kv = c.kv(leader);
        for k in &later {
            put(&mut kv, k, &value_of(k)).await.expect("put");
        }
    }
    let empty = 3;
    let before = c.status(empty).await;
    assert!(
        before.cluster_id.is_empty(),
        "node 3 is uninitialized: {before:?}"
    );

    tracing::info!("--- refused: a member of a cluster");
    let e = restore(&c, leader, &bytes).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("belongs to cluster"), "{e}");

    tracing::info!("--- refused: a damaged file (one byte flipped), naming the problem");
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let e = restore(&c, empty, &damaged).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("not a usable backup"), "{e}");

    tracing::info!("--- refused: a truncated file");
    let e = restore(&c, empty, &bytes[..bytes.len() - 100])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("not a usable backup"), "{e}");

    tracing::info!("--- refused: chunks out of order");
    let swapped = {
        let mut v: Vec<pb::BackupChunk> = chunks(&bytes).collect().await;
        assert!(v.len() > 2, "the backup spans several chunks");
        v.swap(0, 1);
        futures::stream::iter(v)
    };
    let e = c.cluster(empty).restore(swapped).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("in order"), "{e}");

    // None of the refusals changed the node: still running, of no cluster.
    let s = c.status(empty).await;
    assert!(
        s.cluster_id.is_empty() && s.node_id == before.node_id,
        "{s:?}"
    );
    assert!(c.nodes[empty].child.is_some());

    tracing::info!("--- accepted: the verified file's summary, then the node exits");
    let resp = restore(&c, empty, &bytes)
        .await
        .expect("Restore to a node of no cluster");
    assert_eq!(resp.source_cluster_id, source.cluster_id);
    assert_eq!(resp.keys, keys.len() as u64, "{resp:?}");
    assert_eq!(resp.bytes, bytes.len() as u64);
    let exit = wait_exit(&mut c, empty).await;
    assert!(
        !exit.success(),
        "it exits non-zero so supervisors restart it"
    );

    tracing::info!("--- restarted (as a supervisor would): a new one-voter cluster");
    c.spawn(empty).await;
    c.wait_leader(&[empty]).await;
    let s = c.status(empty).await;
    assert!(!s.cluster_id.is_empty());
    assert_ne!(s.cluster_id, source.cluster_id, "a new cluster ID");
    assert_ne!(s.node_id, before.node_id, "a new node ID");
    let m = s.membership.clone().expect("a membership");
    assert_eq!(
        m.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
        vec![s.node_id]
    );
    assert_eq!(s.revision, resp.revision, "the backup's revision");

    tracing::info!("--- exactly the backup's keys, with their values");
    let mut kv = c.kv(empty);
    for k in &keys {
        let r = get(&mut kv, k, linearizable())
            .await
            .unwrap_or_else(|e| panic!("read of {k}: {e}"));
        let v =
            r.kv.unwrap_or_else(|| panic!("{k} missing after the restore"))
                .value;
        assert_eq!(String::from_utf8_lossy(&v), value_of(k), "value of {k}");
    }
    for k in &later {
        match get(&mut kv, k, linearizable()).await {
            Err(e) if e.code() == Code::NotFound => {}
            other => panic!("{k} was written after the backup, yet: {other:?}"),
        }
    }
    put(&mut kv, "after-restore", "x")
        .await
        .expect("the restored cluster takes writes");

    tracing::info!("--- a second Restore to the restored node is refused");
    let e = restore(&c, empty, &bytes).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    // The source cluster never noticed.
    assert_eq!(c.status(leader).await.cluster_id, source.cluster_id);
}
