//! The way out of a lost quorum: `Cluster/ForceNewCluster` makes one
//! surviving voter the one voter of a NEW cluster holding its own state
//! (docs/operations.md, "A majority of volumes lost"; docs/design.md,
//! "Forcing a new cluster").
//!
//! Two halves, on either side of a process restart:
//!
//! 1. [`accept`] (the RPC): checks the request ([`refusal`], pure), writes
//!    the request marker into the data directory, and asks the process to
//!    exit; its supervisor (kubelet, a test harness) starts it again.
//! 2. [`resume`] (at start, before storage is opened for serving): with a
//!    marker present, computes the state as of the last commit index this
//!    node knows, writes it as a backup file next to the marker, clears the
//!    old state, and runs the ordinary restore path on that file (verified
//!    checksum and version; new cluster ID, new node ID). Then it removes the
//!    marker. A crash anywhere repeats the unfinished steps (`storage::force`
//!    says which files mark which step); nothing serves before the end.
//!
//! Only committed entries are kept, as etcd's `--force-new-cluster` discards
//! uncommitted ones: an entry this node holds but never saw committed may
//! never have been acknowledged to anyone, or may have been replaced in the
//! other members' logs; applying it would invent a write.

use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use openraft::storage::{RaftLogReader, RaftStateMachine};
use raftkv_proto::v1 as pb;
use tonic::Status;

use crate::NodeId;
use crate::config::NodeConfig;
use crate::node::Node;
use crate::storage::{self, Restored, StorageOptions, force};

/// Entries read from the log and applied per step of the rebuild: bounds the
/// entries held in memory at once.
const REPLAY_ENTRIES_MAX: u64 = 1024;

/// What the RPC's decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub confirm: bool,
    pub expected_cluster_id: String,
    /// This node's cluster ID ("" if it belongs to none).
    pub cluster_id: String,
    pub is_voter: bool,
    /// The leader this node can vouch for (itself while it holds the lease,
    /// or one heard from within an election timeout).
    pub known_leader: Option<NodeId>,
    /// A forced new cluster is already pending on this node.
    pub pending: bool,
}

/// Why the RPC is refused, if it is. Pure.
pub fn refusal(f: &Facts) -> Option<Status> {
    if !f.confirm {
        return Some(Status::invalid_argument(
            "ForceNewCluster needs confirm=true: the new cluster keeps only this node's committed state; writes it had not seen committed, and the other members' data, are lost",
        ));
    }
    if f.cluster_id.is_empty() {
        return Some(Status::failed_precondition(
            "this node belongs to no cluster; there is nothing to force",
        ));
    }
    if f.expected_cluster_id != f.cluster_id {
        return Some(Status::failed_precondition(format!(
            "this node belongs to cluster {}, not the expected {:?}; read its Status again",
            f.cluster_id, f.expected_cluster_id
        )));
    }
    if f.pending {
        return Some(Status::failed_precondition(
            "a forced new cluster is already pending on this node; it rebuilds when its process restarts",
        ));
    }
    if !f.is_voter {
        return Some(Status::failed_precondition(
            "this node is not a voter: a learner's data may trail the cluster by any amount; force a surviving voter",
        ));
    }
    if let Some(leader) = f.known_leader {
        // With a leader there is a quorum: forcing would split the cluster
        // in two, each taking writes.
        return Some(Status::failed_precondition(format!(
            "node {leader} leads this cluster: a quorum of voters is up; replace lost members the normal way instead"
        )));
    }
    None
}

/// The RPC: decide, write the marker, ask the process to restart.
pub async fn accept(
    node: &Node,
    req: pb::ForceNewClusterRequest,
) -> Result<pb::ForceNewClusterResponse, Status> {
    let dir = node.config().data_dir.clone();
    let pending = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || force::pending(&d))
            .await
            .map_err(|e| Status::internal(format!("marker check task: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?
            .is_some()
    };
    let m = node.metrics();
    let facts = Facts {
        confirm: req.confirm,
        expected_cluster_id: req.expected_cluster_id,
        cluster_id: node.cluster_id(),
        is_voter: node.is_voter(&m),
        known_leader: node.known_leader(&m),
        pending,
    };
    if let Some(no) = refusal(&facts) {
        tracing::warn!(reason = no.message(), "ForceNewCluster refused");
        return Err(no);
    }
    // Entries up to here are committed: openraft's commit index as this node
    // holds it, or what its state machine applied (only committed entries are
    // applied).
    let applied_index = node.reader().applied().index;
    let (_, _, committed) = node.log().recovered_state();
    let keep_index = committed.map_or(0, |c| c.index).max(applied_index);
    let request = force::ForceRequest {
        cluster_id: facts.cluster_id.clone(),
        node_id: node.id(),
        commit_index: keep_index,
        requested_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    tokio::task::spawn_blocking(move || force::mark(&dir, &request, &Default::default()))
        .await
        .map_err(|e| Status::internal(format!("marker task: {e}")))?
        .map_err(|e| Status::internal(format!("cannot write the request marker: {e}")))?;
    let last_log_index = m.last_log_index.unwrap_or(0);
    tracing::warn!(
        cluster_id = facts.cluster_id,
        commit_index = keep_index,
        last_log_index,
        "FORCE NEW CLUSTER accepted: this node restarts as the one voter of a new cluster with its state as of commit index {keep_index}; entries after it are discarded"
    );
    node.request_restart();
    Ok(pb::ForceNewClusterResponse {
        node_id: node.id(),
        cluster_id: facts.cluster_id,
        commit_index: keep_index,
        last_log_index,
        applied_index,
    })
}

/// At start: finishes a pending forced new cluster (see the module doc).
/// Returns whether there was one. Blocking I/O; `rt` runs the storage's
/// async reads.
pub fn resume(
    config: &NodeConfig,
    opts: StorageOptions,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<Option<Restored>> {
    let dir = &config.data_dir;
    if !dir.exists() {
        return Ok(None);
    }
    let Some(req) = force::pending(dir)? else {
        force::remove_stray_state(dir)?;
        return Ok(None);
    };
    tracing::warn!(
        old_cluster_id = req.cluster_id,
        old_node_id = req.node_id,
        "a forced new cluster is pending: rebuilding this node from its own committed state"
    );
    let state = prepare(config, &opts, &req, rt)?;
    force::clear_old_state(dir)?;
    let restored = crate::backup::restore(config, &state, opts)
        .context("restoring this node's committed state as a new cluster")?;
    force::finish(dir)?;
    if let Restored::New {
        node_id,
        cluster_id,
    } = &restored
    {
        tracing::warn!(
            node_id,
            cluster_id,
            old_node_id = req.node_id,
            old_cluster_id = req.cluster_id,
            "forced new cluster: this node is the one voter of a new cluster; add members back as learners"
        );
    }
    Ok(Some(restored))
}

/// Step 1: the committed state as a backup file next to the marker, unless a
/// previous attempt wrote it already. Returns its path.
fn prepare(
    config: &NodeConfig,
    opts: &StorageOptions,
    req: &force::ForceRequest,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<std::path::PathBuf> {
    let dir = &config.data_dir;
    let state = dir.join(force::STATE_FILE);
    if state.exists() {
        return Ok(state);
    }
    let s = storage::open(dir, opts.clone())
        .with_context(|| format!("opening {} to force a new cluster", dir.display()))?;
    anyhow::ensure!(
        s.identity.cluster_id().as_deref() == Some(req.cluster_id.as_str())
            && s.identity.node_id() == req.node_id,
        "{} holds node {} of cluster {:?}, but {} names node {} of cluster {}: refusing; remove {} to start the node as it is",
        dir.display(),
        s.identity.node_id(),
        s.identity.cluster_id(),
        force::MARKER_FILE,
        req.node_id,
        req.cluster_id,
        force::MARKER_FILE,
    );
    let bytes = rt.block_on(committed_backup(s, req))?;
    force::write_state(dir, &bytes, &opts.fsync_faults)?;
    Ok(state)
}

/// The state as of the last commit this node knows (its snapshot, then its
/// log up to the commit index), encoded as a backup file.
async fn committed_backup(
    mut s: storage::Storage,
    req: &force::ForceRequest,
) -> anyhow::Result<Vec<u8>> {
    let snapshot = s
        .state_machine
        .current_snapshot_meta()
        .and_then(|m| m.last_log_id)
        .map(|l| l.index);
    let (_, last_log, committed) = s.log.recovered_state();
    // The log records the commit index lazily; the request holds what the
    // node knew when it accepted. Never beyond the log itself.
    let committed = committed
        .map(|l| l.index)
        .max((req.commit_index > 0).then_some(req.commit_index))
        .map(|c| c.min(last_log.map_or(0, |l| l.index)));
    let Some(range) = replay_range(snapshot, committed) else {
        tracing::info!(
            ?snapshot,
            ?committed,
            "nothing to replay beyond the snapshot"
        );
        return encode(&s, req);
    };
    tracing::info!(
        ?snapshot,
        ?committed,
        last_log = last_log.map(|l| l.index),
        discarded = last_log.map_or(0, |l| l.index.saturating_sub(*range.end())),
        "replaying the committed log"
    );
    let mut next = *range.start();
    while next <= *range.end() {
        let upto = (next + REPLAY_ENTRIES_MAX - 1).min(*range.end());
        let entries = s.log.try_get_log_entries(next..=upto).await?;
        anyhow::ensure!(
            entries.len() as u64 == upto - next + 1,
            "the log lacks entries {next}..={upto} it recorded as committed"
        );
        s.state_machine.apply(entries).await?;
        next = upto + 1;
    }
    encode(&s, req)
}

fn encode(s: &storage::Storage, req: &force::ForceRequest) -> anyhow::Result<Vec<u8>> {
    let pit = s.state_machine.reader().point_in_time();
    let header = crate::backup::header(req.cluster_id.clone(), req.node_id, &pit);
    tracing::info!(
        log_index = header.log_index,
        revision = header.revision,
        keys = header.keys,
        "the committed state of this node"
    );
    crate::backup::encode_to_vec(&header, &pit.kv)
}

/// Log indexes to apply on top of the snapshot: those after it up to the
/// commit index, if any. Pure.
pub fn replay_range(snapshot: Option<u64>, committed: Option<u64>) -> Option<RangeInclusive<u64>> {
    let committed = committed?;
    // Without a snapshot the log starts at index 0 (openraft's first
    // membership entry).
    let from = snapshot.map_or(0, |s| s + 1);
    (from <= committed).then_some(from..=committed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Facts {
        Facts {
            confirm: true,
            expected_cluster_id: "c1".into(),
            cluster_id: "c1".into(),
            is_voter: true,
            known_leader: None,
            pending: false,
        }
    }

    #[test]
    fn a_voter_that_sees_no_leader_is_forced_when_confirmed() {
        assert!(refusal(&ok()).is_none());
    }

    #[test]
    fn every_missing_condition_is_refused_with_its_reason() {
        let cases: Vec<(Facts, tonic::Code, &str)> = vec![
            (
                Facts {
                    confirm: false,
                    ..ok()
                },
                tonic::Code::InvalidArgument,
                "confirm=true",
            ),
            (
                Facts {
                    cluster_id: "".into(),
                    ..ok()
                },
                tonic::Code::FailedPrecondition,
                "no cluster",
            ),
            (
                Facts {
                    expected_cluster_id: "c0".into(),
                    ..ok()
                },
                tonic::Code::FailedPrecondition,
                "not the expected \"c0\"",
            ),
            (
                Facts {
                    pending: true,
                    ..ok()
                },
                tonic::Code::FailedPrecondition,
                "already pending",
            ),
            (
                Facts {
                    is_voter: false,
                    ..ok()
                },
                tonic::Code::FailedPrecondition,
                "not a voter",
            ),
            (
                Facts {
                    known_leader: Some(9),
                    ..ok()
                },
                tonic::Code::FailedPrecondition,
                "node 9 leads this cluster",
            ),
        ];
        for (facts, code, why) in cases {
            let e = refusal(&facts).unwrap_or_else(|| panic!("{facts:?} was accepted"));
            assert_eq!(e.code(), code, "{facts:?}");
            assert!(e.message().contains(why), "{}", e.message());
        }
    }

    mod crash {
        use super::super::*;
        use crate::kv::{Command, KvStore};
        use crate::storage::RestoreSource;

        fn config(dir: &std::path::Path) -> NodeConfig {
            NodeConfig {
                data_dir: dir.to_path_buf(),
                client_listen: "127.0.0.1:1".parse().unwrap(),
                peer_listen: "127.0.0.1:2".parse().unwrap(),
                advertise_client: "127.0.0.1:1".into(),
                advertise_peer: "127.0.0.1:2".into(),
                name: "n".into(),
                metrics_listen: None,
                restore: None,
                limits: Default::default(),
                tls: None,
                faults: Default::default(),
            }
        }

        /// A data directory of a one-voter cluster holding `k = v`; its request.
        fn cluster_dir(dir: &std::path::Path) -> force::ForceRequest {
            let mut kv = KvStore::new();
            kv.apply(&Command::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            });
            let source = RestoreSource {
                checksum: 1,
                source_cluster_id: "older".into(),
                revision: 1,
                keys: 1,
            };
            let me = crate::NodeInfo {
                client_addr: "127.0.0.1:1".into(),
                peer_addr: "127.0.0.1:2".into(),
                name: "n".into(),
            };
            let Restored::New {
                node_id,
                cluster_id,
            } = storage::restore(dir, StorageOptions::default(), &source, kv, me).unwrap()
            else {
                panic!("a new cluster");
            };
            let req = force::ForceRequest {
                cluster_id,
                node_id,
                commit_index: 0,
                requested_at_unix_ms: 0,
            };
            force::mark(dir, &req, &Default::default()).unwrap();
            req
        }

        fn check_rebuilt(dir: &std::path::Path, req: &force::ForceRequest, r: Option<Restored>) {
            let Some(Restored::New {
                node_id,
                cluster_id,
            }) = r
            else {
                panic!("expected a new cluster, got {r:?}");
            };
            assert_ne!(node_id, req.node_id);
            assert_ne!(cluster_id, req.cluster_id);
            assert!(!dir.join(force::MARKER_FILE).exists());
            assert!(!dir.join(force::STATE_FILE).exists());
            let s = storage::open(dir, StorageOptions::default()).unwrap();
            assert_eq!(s.identity.node_id(), node_id);
            let kv = s.state_machine.reader().get(b"k").expect("k kept");
            assert_eq!(kv.value, b"v");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_marked_directory_is_rebuilt_once_as_a_new_cluster() {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            let req = cluster_dir(&d);
            let rt = tokio::runtime::Handle::current();
            let (c, rt2) = (config(&d), rt.clone());
            let r =
                tokio::task::spawn_blocking(move || resume(&c, StorageOptions::default(), &rt2))
                    .await
                    .unwrap()
                    .unwrap();
            check_rebuilt(&d, &req, r);
            // The next start finds no marker: nothing happens again.
            let c = config(&d);
            let again =
                tokio::task::spawn_blocking(move || resume(&c, StorageOptions::default(), &rt))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(again, None);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_crash_after_the_state_was_written_and_partly_cleared_is_finished() {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            let req = cluster_dir(&d);
            let rt = tokio::runtime::Handle::current();
            let (c, r2, rq) = (config(&d), req.clone(), rt.clone());
            tokio::task::spawn_blocking(move || {
                prepare(&c, &StorageOptions::default(), &r2, &rq).unwrap()
            })
            .await
            .unwrap();
            // The crash hit in the middle of clearing the old state.
            std::fs::remove_file(d.join("identity.json")).unwrap();
            let c = config(&d);
            let r = tokio::task::spawn_blocking(move || resume(&c, StorageOptions::default(), &rt))
                .await
                .unwrap()
                .unwrap();
            check_rebuilt(&d, &req, r);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_marker_for_other_data_is_refused_and_nothing_is_touched() {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            let mut req = cluster_dir(&d);
            req.cluster_id = "someone-else".into();
            force::mark(&d, &req, &Default::default()).unwrap();
            let rt = tokio::runtime::Handle::current();
            let c = config(&d);
            let e = tokio::task::spawn_blocking(move || resume(&c, StorageOptions::default(), &rt))
                .await
                .unwrap()
                .unwrap_err();
            assert!(format!("{e:#}").contains("refusing"), "{e:#}");
            assert!(d.join("identity.json").exists());
            assert!(d.join(force::MARKER_FILE).exists());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_state_file_left_without_its_marker_is_removed() {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            std::fs::write(d.join(force::STATE_FILE), b"stale").unwrap();
            let rt = tokio::runtime::Handle::current();
            let c = config(&d);
            let r = tokio::task::spawn_blocking(move || resume(&c, StorageOptions::default(), &rt))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r, None);
            assert!(!d.join(force::STATE_FILE).exists());
        }
    }

    #[test]
    fn the_replay_covers_exactly_the_committed_entries_after_the_snapshot() {
        assert_eq!(replay_range(None, None), None);
        assert_eq!(replay_range(None, Some(0)), Some(0..=0));
        assert_eq!(replay_range(None, Some(7)), Some(0..=7));
        assert_eq!(replay_range(Some(5), Some(9)), Some(6..=9));
        assert_eq!(replay_range(Some(9), Some(9)), None);
        // A snapshot beyond the recorded commit (installed from the leader)
        // is committed itself: nothing more to apply.
        assert_eq!(replay_range(Some(12), Some(9)), None);
        assert_eq!(replay_range(Some(12), None), None);
    }
}
