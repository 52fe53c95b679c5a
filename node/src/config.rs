//! Everything a node is configured with, and every bound it runs under, in one
//! place (flags and environment variables both land here).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::kv::KvLimits;
use crate::security::server::ClientAuth;

/// Flags of `raft-node` (the server). Raft timings may also come from the
/// environment so the operator can set them without touching the command line.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Directory holding the node's identity, Raft log and snapshots.
    #[arg(long, env = "RAFT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Listen address of the client services (KV, Cluster, health).
    #[arg(long, env = "RAFT_CLIENT_ADDR", default_value = "127.0.0.1:7000")]
    pub client_addr: SocketAddr,
    /// Listen address of the internal Raft peer service.
    #[arg(long, env = "RAFT_PEER_ADDR", default_value = "127.0.0.1:7001")]
    pub peer_addr: SocketAddr,
    /// Client address other nodes and clients use to reach this node
    /// (default: --client-addr). In Kubernetes: the pod's stable DNS name.
    #[arg(long, env = "RAFT_ADVERTISE_CLIENT")]
    pub advertise_client: Option<String>,
    /// Peer address other nodes use to reach this node (default: --peer-addr).
    #[arg(long, env = "RAFT_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Human name kept in the membership (e.g. the pod name).
    #[arg(long, env = "RAFT_NAME")]
    pub name: Option<String>,
    /// Prometheus metrics listen address (disabled if unset).
    #[arg(long, env = "RAFT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Leader heartbeat interval.
    #[arg(long, env = "RAFT_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    #[arg(long, env = "RAFT_ELECTION_TIMEOUT_MIN_MS", default_value_t = 200)]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout (also the leader lease).
    #[arg(long, env = "RAFT_ELECTION_TIMEOUT_MAX_MS", default_value_t = 400)]
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log behind it) every this many applied entries.
    #[arg(long, env = "RAFT_SNAPSHOT_THRESHOLD", default_value_t = 20_000)]
    pub snapshot_threshold: u64,
    /// Largest accepted value, in bytes.
    #[arg(long, env = "RAFT_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    pub max_value_bytes: usize,
    /// Start a NEW cluster from a backup file (`raftctl snapshot save`): on an
    /// empty data directory, verify the file, then become the one voter of a
    /// new cluster (new cluster ID, new node ID) holding its keys. Others join
    /// as learners. Repeating it on the directory it restored changes nothing.
    #[arg(long, env = "RAFT_RESTORE", value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// Restore only on the node whose --name is NAME; every other node ignores
    /// --restore and starts as usual (to join as a learner). For a
    /// StatefulSet, whose pods share one template: NAME = `<cluster>-0`.
    #[arg(
        long,
        env = "RAFT_RESTORE_NODE_NAME",
        value_name = "NAME",
        requires = "restore"
    )]
    pub restore_node_name: Option<String>,
    /// This node's certificate (PEM, a `raftkv://<ns>/<cluster>/peer/<name>`
    /// URI SAN). With --tls-key and --tls-ca it turns TLS on for both
    /// listeners and for this node's own connections; without, plaintext.
    /// Reread when the file changes (docs/security.md).
    #[arg(long, env = "RAFT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "RAFT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): verifies peers, clients, and the
    /// servers this node connects to.
    #[arg(long, env = "RAFT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificates on the client listener: `required` (the
    /// handshake fails without one) or `optional` (clients without one may
    /// use KV and Status; Cluster changes always need an admin certificate).
    #[arg(long, env = "RAFT_CLIENT_AUTH", value_enum, default_value_t = ClientAuth::Required)]
    pub client_auth: ClientAuth,
}

/// TLS settings of a node (docs/security.md).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub files: raftkv_client::tls::TlsFiles,
    pub client_auth: ClientAuth,
}

/// Resolved configuration of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub client_listen: SocketAddr,
    pub peer_listen: SocketAddr,
    pub advertise_client: String,
    pub advertise_peer: String,
    pub name: String,
    pub metrics_listen: Option<SocketAddr>,
    /// `--restore FILE`: restore this backup into the (empty) data directory first.
    pub restore: Option<PathBuf>,
    pub limits: Limits,
    /// `None`: plaintext on both listeners.
    pub tls: Option<TlsConfig>,
    /// Fault injection; off by default.
    pub faults: crate::observability::faults::FaultArgs,
}

/// Bounds and timings. Each one has a reason and a cost; `validate` checks the
/// relationships between them at startup.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Leader heartbeat; followers notice a dead leader within an election timeout.
    pub heartbeat_interval_ms: u64,
    /// Randomized election timeout range. The upper bound is also the leader
    /// lease: a follower refuses votes for that long after hearing a leader, so
    /// failover takes at least `election_timeout_ms_max` after the last heartbeat.
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    /// Entries between snapshots; more means longer replay on restart and more
    /// log on disk, fewer means more snapshot work.
    pub snapshot_threshold_entries: u64,
    /// Entries per AppendEntries message; bounds the message size together with
    /// the value limit (keep `batch_entries_max * value_bytes_max` sane).
    pub batch_entries_max: u64,
    pub kv: KvLimits,
    /// How long a read waits for this node to apply up to a read index or a
    /// requested revision before giving up.
    pub read_wait_max: Duration,
    /// Default `max_staleness` of a bounded read that names none.
    pub bounded_staleness_default: Duration,
    /// "Caught up for promotion" (docs/design.md): a member is healthy
    /// (Ready) and may become a voter when it trails the leader's commit index
    /// by at most this many entries. The node's own guard; the operator waits
    /// for the stricter "in sync" before it asks (`IN_SYNC_LAG_MAX` there).
    pub caught_up_lag_max: u64,
    /// Timeout of one peer RPC (Vote, ReadIndex), and the most an
    /// AppendEntries may take: its deadline adapts per peer between the
    /// heartbeat and this (`peer::rto`), so that a slow but working disk or
    /// link slows the cluster down instead of stopping it (issue 11, hole 7).
    pub peer_rpc_timeout: Duration,
    /// Timeout of a forwarded client request.
    pub forward_timeout: Duration,
    /// Upper bound on a leader transfer before it is reported as failed.
    pub transfer_timeout: Duration,
    /// Largest gRPC message accepted or sent (a batch of entries or a snapshot chunk).
    pub grpc_message_bytes_max: usize,
    /// Connecting to a peer's listener: a peer that cannot accept a connection
    /// this fast is skipped for this message (openraft retries on its schedule).
    pub peer_connect_timeout: Duration,
    /// Connecting to the leader's client listener when forwarding: a leader
    /// that cannot accept a connection this fast is as good as unknown.
    pub forward_connect_timeout: Duration,
    /// Cached forwarding channels (one per distinct leader address seen).
    pub forward_channels_max: usize,
    /// Longest a stopping leader spends handing leadership off (well inside
    /// Kubernetes' default 30 s termination grace period).
    pub step_down_max: Duration,
    /// How long a `Snapshot` request waits for the snapshot to be built.
    pub snapshot_wait_max: Duration,
    /// Bytes of a backup file per streamed `Backup` message: far below every
    /// client's decoding limit (4 MiB by default in tonic), large enough that
    /// per-message cost does not matter.
    pub backup_chunk_bytes: usize,
    /// Chunks encoded ahead of a slow backup reader: bounds the memory one
    /// backup holds beyond its copy-on-write view of the store.
    pub backup_chunks_in_flight: usize,
    /// A backup whose reader takes no chunk for this long is abandoned: it
    /// holds a blocking thread and pins the store's copy-on-write view.
    pub backup_stall_max: Duration,
    /// The health (readiness) status is re-evaluated at least this often:
    /// the age of the last leader contact changes without a metrics change.
    pub health_recheck: Duration,
    /// Writes carried by one proposal (one log entry, one leader fsync) at
    /// most (`grpc::batcher`): openraft 0.9 waits for each append's fsync
    /// before the next, so without batching a leader does one fsync per write.
    pub propose_batch_writes_max: usize,
    /// Key and value bytes of one proposal batch at most (a single larger
    /// write goes alone): keeps a batch entry no larger than the largest
    /// single write, so the AppendEntries bound above still holds.
    pub propose_batch_bytes_max: usize,
    /// Proposals in flight at once. While they are, new writes wait and form
    /// the next batch: more in flight means lower latency at low load and
    /// smaller batches (more fsyncs) at high load.
    pub proposals_in_flight_max: usize,
    /// After accepting `ForceNewCluster`, how long the process goes on before
    /// it exits into the rebuild: long enough for the reply to reach the
    /// caller, short enough that the node takes no part in the old cluster
    /// meanwhile worth speaking of (it already sees no leader).
    pub force_exit_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            heartbeat_interval_ms: 50,
            election_timeout_ms_min: 200,
            election_timeout_ms_max: 400,
            snapshot_threshold_entries: 20_000,
            batch_entries_max: 128,
            kv: KvLimits::default(),
            read_wait_max: Duration::from_secs(5),
            bounded_staleness_default: Duration::from_millis(500),
            caught_up_lag_max: 1_000,
            peer_rpc_timeout: Duration::from_secs(2),
            forward_timeout: Duration::from_secs(10),
            transfer_timeout: Duration::from_secs(10),
            grpc_message_bytes_max: 160 * 1024 * 1024,
            peer_connect_timeout: Duration::from_secs(2),
            forward_connect_timeout: Duration::from_secs(2),
            forward_channels_max: 64,
            step_down_max: Duration::from_secs(5),
            snapshot_wait_max: Duration::from_secs(30),
            health_recheck: Duration::from_millis(250),
            backup_chunk_bytes: 1024 * 1024,
            backup_chunks_in_flight: 4,
            backup_stall_max: Duration::from_secs(60),
            propose_batch_writes_max: 256,
            propose_batch_bytes_max: 1024 * 1024,
            proposals_in_flight_max: 2,
            force_exit_delay: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Limits {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat interval must be > 0".into());
        }
        // A follower must see several heartbeats per election timeout, or a busy
        // machine starts spurious elections.
        if self.election_timeout_ms_min < 3 * self.heartbeat_interval_ms {
            return bad(format!(
                "election timeout min ({} ms) must be at least 3x the heartbeat ({} ms)",
                self.election_timeout_ms_min, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_ms_max <= self.election_timeout_ms_min {
            return bad(format!(
                "election timeout max ({} ms) must be above min ({} ms)",
                self.election_timeout_ms_max, self.election_timeout_ms_min
            ));
        }
        // openraft's own timeouts never cut a peer RPC before this floor
        // (raft::runtime); the network's deadlines must end first.
        if self.peer_rpc_timeout > crate::raft::runtime::TIMEOUT_FLOOR {
            return bad(format!(
                "the peer RPC timeout ({:?}) must be at most {:?}",
                self.peer_rpc_timeout,
                crate::raft::runtime::TIMEOUT_FLOOR
            ));
        }
        if self.snapshot_threshold_entries == 0 || self.batch_entries_max == 0 {
            return bad("snapshot threshold and batch size must be > 0".into());
        }
        if self.backup_chunk_bytes == 0
            || self.backup_chunk_bytes > 4 * 1024 * 1024
            || self.backup_chunks_in_flight == 0
        {
            return bad(format!(
                "backup chunks must be 1 byte to 4 MiB (a client's default message limit), {} given, and at least one in flight",
                self.backup_chunk_bytes
            ));
        }
        if self.propose_batch_writes_max == 0 || self.proposals_in_flight_max == 0 {
            return bad(
                "proposal batches need room for one write and one proposal in flight".into(),
            );
        }
        if self.propose_batch_bytes_max > self.kv.request_bytes_max() {
            return bad(format!(
                "a proposal batch of {} bytes would be larger than the largest single write ({} bytes)",
                self.propose_batch_bytes_max,
                self.kv.request_bytes_max()
            ));
        }
        let batch_bytes =
            self.batch_entries_max as usize * (self.kv.value_bytes_max + self.kv.key_bytes_max);
        if batch_bytes > self.grpc_message_bytes_max {
            return bad(format!(
                "a full batch ({} entries of up to {} bytes) exceeds the gRPC message limit ({} bytes)",
                self.batch_entries_max, self.kv.value_bytes_max, self.grpc_message_bytes_max
            ));
        }
        Ok(())
    }

    /// The openraft configuration derived from these limits.
    pub fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let c = openraft::Config {
            cluster_name: "raftkv".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_ms_min,
            election_timeout_max: self.election_timeout_ms_max,
            max_payload_entries: self.batch_entries_max,
            replication_lag_threshold: self.caught_up_lag_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                self.snapshot_threshold_entries,
            ),
            // Keep some log behind the snapshot so a briefly lagging follower
            // catches up from the log instead of a full snapshot.
            max_in_snapshot_log_to_keep: 1_000,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            install_snapshot_timeout: 10_000,
            // Elections start only after a pre-vote (raft::election);
            // openraft's own timer would campaign without one.
            enable_elect: false,
            ..Default::default()
        };
        c.validate().map_err(|e| ConfigError(e.to_string()))
    }
}

impl NodeArgs {
    /// `--name`, else the advertised client address: how logs, traces and the
    /// membership name this node.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.advertise_client.clone())
            .unwrap_or_else(|| self.client_addr.to_string())
    }

    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let kv = KvLimits {
            value_bytes_max: self.max_value_bytes,
            ..KvLimits::default()
        };
        let limits = Limits {
            heartbeat_interval_ms: self.heartbeat_ms,
            election_timeout_ms_min: self.election_timeout_min_ms,
            election_timeout_ms_max: self.election_timeout_max_ms,
            snapshot_threshold_entries: self.snapshot_threshold,
            // Smaller values make smaller batches: a batch entry stays within
            // the largest single write.
            propose_batch_bytes_max: Limits::default()
                .propose_batch_bytes_max
                .min(kv.request_bytes_max()),
            kv,
            ..Limits::default()
        };
        limits.validate()?;
        let name = self.display_name();
        let restore = match &self.restore_node_name {
            Some(only) if *only != name => None,
            _ => self.restore,
        };
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsConfig {
                files: raftkv_client::tls::TlsFiles::new(ca).with_identity(cert, key),
                client_auth: self.client_auth,
            }),
            _ => {
                return Err(ConfigError(
                    "TLS needs all three of --tls-cert, --tls-key and --tls-ca (or none, for plaintext)"
                        .into(),
                ));
            }
        };
        let advertise_client = self
            .advertise_client
            .unwrap_or_else(|| self.client_addr.to_string());
        let advertise_peer = self
            .advertise_peer
            .unwrap_or_else(|| self.peer_addr.to_string());
        Ok(NodeConfig {
            data_dir: self.data_dir,
            client_listen: self.client_addr,
            peer_listen: self.peer_addr,
            advertise_client,
            advertise_peer,
            name,
            metrics_listen: self.metrics_addr,
            restore,
            limits,
            tls,
            // Set by the binary from its own flags (a flatten nested in
            // `Option<NodeArgs>` would make clap drop NodeArgs).
            faults: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        Limits::default().validate().unwrap();
        Limits::default().raft_config().unwrap();
    }

    #[test]
    fn election_timeout_must_be_well_above_heartbeat() {
        let l = Limits {
            heartbeat_interval_ms: 200,
            election_timeout_ms_min: 400,
            ..Limits::default()
        };
        let e = l.validate().unwrap_err().to_string();
        assert!(e.contains("at least 3x the heartbeat"), "{e}");
    }

    #[test]
    fn restore_applies_only_to_the_named_node() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            node: NodeArgs,
        }
        let resolve = |name: &str| {
            let args = [
                "raft-node",
                "--data-dir",
                "/d",
                "--name",
                name,
                "--restore",
                "/b.rkv",
                "--restore-node-name",
                "demo-0",
            ];
            <Cli as clap::Parser>::try_parse_from(args)
                .unwrap()
                .node
                .resolve()
                .unwrap()
                .restore
        };
        assert_eq!(resolve("demo-0"), Some(PathBuf::from("/b.rkv")));
        assert_eq!(resolve("demo-1"), None);
    }

    #[test]
    fn batch_must_fit_in_a_grpc_message() {
        let l = Limits {
            batch_entries_max: 10_000,
            ..Limits::default()
        };
        assert!(l.validate().is_err());
    }
}
