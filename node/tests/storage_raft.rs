//! The storage under a real (single-node) openraft: writes, snapshot, purge,
//! restart. The state after a restart is the snapshot plus the re-applied log.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{Config, SnapshotPolicy};
use raftkv_node::kv::{Command, CommandResult};
use raftkv_node::storage::{self, StorageOptions};
use raftkv_node::typ::Raft;
use raftkv_node::{NodeId, NodeInfo, TypeConfig};

/// A single-node cluster never talks to peers.
struct NoPeers;

fn no_peer<E: std::error::Error>() -> RPCError<NodeId, NodeInfo, E> {
    RPCError::Network(NetworkError::new(&io::Error::other(
        "single-node test has no peers",
    )))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: NodeId, _node: &NodeInfo) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        Err(no_peer())
    }
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(no_peer())
    }
    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        Err(no_peer())
    }
}

async fn start(dir: &std::path::Path) -> (Raft, storage::KvReader, NodeId) {
    let s = storage::open(dir, StorageOptions::default()).unwrap();
    let id = s.identity.node_id();
    let reader = s.state_machine.reader();
    let config = Config {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(50),
        max_in_snapshot_log_to_keep: 10,
        purge_batch_size: 1,
        ..Default::default()
    };
    let raft = Raft::new(
        id,
        Arc::new(config.validate().unwrap()),
        NoPeers,
        s.log,
        s.state_machine,
    )
    .await
    .unwrap();
    (raft, reader, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_raft_survives_restart_with_snapshot_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Some(Duration::from_secs(10));
    let (before, last_index) = {
        let (raft, reader, id) = start(dir.path()).await;
        raft.initialize(BTreeMap::from([(id, NodeInfo::default())]))
            .await
            .unwrap();
        raft.wait(timeout)
            .current_leader(id, "leader")
            .await
            .unwrap();
        for i in 0..120u64 {
            let cmd = Command::Put {
                key: format!("k{:03}", i % 70).into_bytes(),
                value: i.to_le_bytes().to_vec(),
            };
            let r = raft.client_write(cmd).await.unwrap();
            assert!(matches!(r.data, CommandResult::Put { .. }));
        }
        let r = raft
            .client_write(Command::Delete {
                key: b"k000".to_vec(),
            })
            .await
            .unwrap();
        assert!(matches!(
            r.data,
            CommandResult::Delete {
                deleted: true,
                revision: 121
            }
        ));
        let last_index = r.log_id.index;
        // A snapshot was taken (policy: every 50 logs) and the log purged behind it.
        let m = raft
            .wait(timeout)
            .metrics(|m| m.purged.is_some() && m.snapshot.is_some(), "purged")
            .await
            .unwrap();
        assert!(m.purged.unwrap().index <= m.snapshot.unwrap().index);
        raft.wait(timeout)
            .applied_index(Some(last_index), "applied")
            .await
            .unwrap();
        let (all, more) = reader.range(b"", None, 0);
        assert!(!more);
        assert_eq!(reader.applied().revision, 121);
        raft.shutdown().await.unwrap();
        (all, last_index)
    };
    let files = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(files, 1);

    let (raft, reader, _id) = start(dir.path()).await;
    // The snapshot is loaded and the log after it re-applied once committed again.
    raft.wait(timeout)
        .applied_index_at_least(Some(last_index), "re-applied")
        .await
        .unwrap();
    let (all, _) = reader.range(b"", None, 0);
    assert_eq!(all, before);
    assert_eq!(reader.applied().revision, 121);
    assert_eq!(reader.get(b"k000"), None);
    let keys: BTreeSet<Vec<u8>> = all.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys.len(), 69);
    raft.shutdown().await.unwrap();
}
