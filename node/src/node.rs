//! A running node's shared state: the Raft instance and the handles the
//! services work on, behind narrow methods. What the node *does* lives in the
//! modules that use it (`grpc`, `raft::election`, `raft::transfer`, `health`);
//! this file imports none of them, so nothing imports back into it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raftkv_client::channel::ChannelSettings;
use tonic::Status;
use tonic::transport::Channel;

use crate::config::{Limits, NodeConfig};
use crate::observability::links::TraceLinks;
use crate::peer::network::PeerNetwork;
use crate::raft::contact::LeaderContact;
use crate::raft::quorum;
use crate::raft::read_index::{self, ReadIndexBatcher};
use crate::storage::{IdentityStore, KvReader, LogStore};
use crate::typ::{Raft, RaftMetrics};
use crate::{NodeId, NodeInfo};

pub struct Node {
    id: NodeId,
    raft: Raft,
    identity: std::sync::Arc<IdentityStore>,
    reader: KvReader,
    config: NodeConfig,
    contact: LeaderContact,
    net: PeerNetwork,
    /// A handle on the Raft log (shared with openraft) for the pre-vote's
    /// last-log comparison.
    log: LogStore,
    /// Set on the leader while it hands leadership off: new writes and
    /// membership changes are refused (UNAVAILABLE, retryable) so the target
    /// can catch up completely.
    transferring: AtomicBool,
    /// Set on a leader-transfer target while it campaigns: it then refuses
    /// pre-votes, so a third voter cannot win the race the transfer started.
    transfer_campaign: AtomicBool,
    /// Membership changes this node is running (see `crate::membership`).
    membership_changes: AtomicUsize,
    /// Coalesces concurrent linearizable reads into one confirmation.
    read_batcher: ReadIndexBatcher,
    /// Channels to other nodes' client listeners, for forwarding.
    forward_channels: Mutex<HashMap<String, Channel>>,
    /// Traces of writes across openraft's tasks (shared with the peer network
    /// and the storage hooks).
    links: std::sync::Arc<TraceLinks>,
    /// When this process's node started (a pre-vote is refused within a lease of it).
    started: Instant,
    /// Set once a forced new cluster was accepted: the process exits so its
    /// supervisor restarts it into the rebuild (`crate::force_new_cluster`).
    restart: tokio::sync::watch::Sender<bool>,
}

/// The parts a node is made of (see `app::start_node`).
pub struct Parts {
    pub raft: Raft,
    pub identity: std::sync::Arc<IdentityStore>,
    pub reader: KvReader,
    pub config: NodeConfig,
    pub net: PeerNetwork,
    pub log: LogStore,
    pub links: std::sync::Arc<TraceLinks>,
}

impl Node {
    pub fn new(p: Parts) -> Self {
        Node {
            id: p.identity.node_id(),
            raft: p.raft,
            identity: p.identity,
            reader: p.reader,
            config: p.config,
            contact: LeaderContact::default(),
            net: p.net,
            log: p.log,
            transferring: AtomicBool::new(false),
            transfer_campaign: AtomicBool::new(false),
            membership_changes: AtomicUsize::new(0),
            read_batcher: ReadIndexBatcher::default(),
            forward_channels: Mutex::new(HashMap::new()),
            links: p.links,
            started: Instant::now(),
            restart: tokio::sync::watch::channel(false).0,
        }
    }

    /// Asks the process to exit (and its supervisor to restart it).
    pub fn request_restart(&self) {
        self.restart.send_replace(true);
    }

    /// Resolves once [`Node::request_restart`] was called.
    pub async fn restart_requested(&self) {
        let mut rx = self.restart.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn reader(&self) -> &KvReader {
        &self.reader
    }

    pub fn identity(&self) -> &IdentityStore {
        &self.identity
    }

    pub fn cluster_id(&self) -> String {
        self.identity.cluster_id().unwrap_or_default()
    }

    pub fn contact(&self) -> &LeaderContact {
        &self.contact
    }

    pub fn net(&self) -> &PeerNetwork {
        &self.net
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn links(&self) -> &std::sync::Arc<TraceLinks> {
        &self.links
    }

    pub fn log(&self) -> LogStore {
        self.log.clone()
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// `f` of the latest metrics, read in place: for per-request paths, where
    /// [`Node::metrics`]'s clone of the membership and replication maps costs
    /// more than the decision taken from them. `f` runs under the watch's read
    /// lock: keep it short and never await in it.
    pub fn with_metrics<R>(&self, f: impl FnOnce(&RaftMetrics) -> R) -> R {
        f(&self.raft.metrics().borrow())
    }

    /// The leader this node knows of, with its membership entry.
    pub fn leader(&self, m: &RaftMetrics) -> Option<(NodeId, NodeInfo)> {
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    /// Whether this node leads with a quorum behind it: openraft says leader
    /// and a quorum acknowledged it within an election timeout (Raft's
    /// check-quorum window). A leader cut off from its majority, or restored
    /// as leader after a restart with nobody answering, fails this; it is
    /// then never reported as leader (issue 17).
    pub fn holds_lease(&self, m: &RaftMetrics) -> bool {
        let now = Instant::now();
        m.state.is_leader()
            && self
                .net
                .lease()
                .quorum_age(m.current_term, now)
                .is_some_and(|age| age <= self.check_quorum_window(m.current_term, now))
    }

    /// How long a leader may go without a quorum's acknowledgement before it
    /// counts as cut off: an election timeout, plus twice the time a quorum
    /// recently took to answer (a follower answers after its fsync, and the
    /// next message goes out only then: on a 300 ms disk a healthy quorum's
    /// acknowledgements are 300-600 ms apart; issue 11, hole 7). Refusing
    /// work and reporting the role only; bounded reads use the lease's age
    /// against their own bound.
    fn check_quorum_window(&self, term: u64, now: Instant) -> Duration {
        self.lease_window() + 2 * self.net.lease().quorum_answer_time(term, now)
    }

    /// How long this leader has gone unheard by a quorum, when that is more
    /// than an election timeout (Raft's check-quorum): it cannot commit, and a
    /// majority elsewhere may have elected another leader. openraft 0.9 has no
    /// step-down, so the request paths refuse work at once instead of letting
    /// it wait for a commit that cannot come (hole 3 of issue 11). `None` on a
    /// follower, and on a leader heard from recently.
    pub fn cut_off_for(&self, m: &RaftMetrics) -> Option<Duration> {
        if !m.state.is_leader() {
            return None;
        }
        let now = Instant::now();
        self.net
            .lease()
            .quorum_silence(m.current_term, now)
            .filter(|silence| *silence > self.check_quorum_window(m.current_term, now))
    }

    /// The leader this node can vouch for: itself while it holds the lease,
    /// or the leader it heard from within an election timeout.
    pub fn known_leader(&self, m: &RaftMetrics) -> Option<NodeId> {
        if m.state.is_leader() {
            return self.holds_lease(m).then_some(self.id);
        }
        let recent = self
            .contact
            .age(Instant::now())
            .is_some_and(|age| age <= self.lease_window());
        m.current_leader.filter(|_| recent)
    }

    fn lease_window(&self) -> Duration {
        Duration::from_millis(self.config.limits.election_timeout_ms_max)
    }

    pub fn is_member(&self, m: &RaftMetrics) -> bool {
        m.membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    pub fn is_voter(&self, m: &RaftMetrics) -> bool {
        m.membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
    }

    pub fn is_transferring(&self) -> bool {
        self.transferring.load(Ordering::Acquire)
    }

    /// Marks this leader as handing off until the guard drops.
    pub fn begin_transfer(&self) -> FlagGuard<'_> {
        FlagGuard::raise(&self.transferring)
    }

    /// This node campaigns as a leader-transfer target until the guard drops.
    pub fn begin_transfer_campaign(&self) -> FlagGuard<'_> {
        FlagGuard::raise(&self.transfer_campaign)
    }

    /// Counts a membership change as running until the guard drops.
    pub fn begin_membership_change(&self) -> CountGuard<'_> {
        self.membership_changes.fetch_add(1, Ordering::AcqRel);
        CountGuard {
            count: &self.membership_changes,
        }
    }

    pub fn membership_change_running(&self) -> bool {
        self.membership_changes.load(Ordering::Acquire) > 0
    }

    pub fn in_transfer_campaign(&self) -> bool {
        self.transfer_campaign.load(Ordering::Acquire)
    }

    /// A channel to another node's client listener (cached).
    pub fn forward_channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.forward_channels.lock();
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        if map.len() >= self.config.limits.forward_channels_max {
            map.clear();
        }
        let ch = ChannelSettings::new(self.config.limits.forward_connect_timeout)
            .with_request_timeout(self.config.limits.forward_timeout)
            .with_tls(self.net.client_tls())
            .lazy(addr)
            .map_err(|e| Status::internal(format!("leader address: {e}")))?;
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The commit index as this node knows it: on the leader, the highest index
    /// replicated to a joint majority; elsewhere, what the leader last told us
    /// (bounded by our own log).
    pub fn commit_index(&self, m: &RaftMetrics) -> u64 {
        let last = m.last_log_index.unwrap_or(0);
        if m.current_leader == Some(self.id) && m.state.is_leader() {
            let configs = m.membership_config.membership().get_joint_config();
            quorum::committed_index(configs, |id| {
                if id == self.id {
                    last
                } else {
                    matched_index(m, id)
                }
            })
        } else {
            self.contact
                .last()
                .map(|c| c.leader_commit.min(last))
                .unwrap_or(0)
        }
    }

    /// Wait until this node has applied `index`, bounded by the read wait limit.
    pub async fn wait_applied(&self, index: u64) -> Result<(), Status> {
        let mut rx = self.reader.subscribe();
        let wait = rx.wait_for(|a| a.index >= index);
        match tokio::time::timeout(self.config.limits.read_wait_max, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Status::unavailable("this node is shutting down")),
            Err(_) => Err(Status::unavailable(format!(
                "this node has applied up to {} but needs {index}; it is catching up, retry or read elsewhere",
                self.reader.applied().index
            ))),
        }
    }

    /// Wait until the store has reached `revision` (read-your-writes).
    pub async fn wait_revision(&self, revision: u64) -> Result<(), Status> {
        let mut rx = self.reader.subscribe();
        let wait = rx.wait_for(|a| a.revision >= revision);
        match tokio::time::timeout(self.config.limits.read_wait_max, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Status::unavailable("this node is shutting down")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "revision {revision} not reached on this node within {:?} (at {})",
                self.config.limits.read_wait_max,
                self.reader.applied().revision
            ))),
        }
    }

    /// ReadIndex: the index this node must apply before a linearizable read,
    /// confirmed after this call started (batched with concurrent reads).
    pub async fn read_index(&self) -> Result<u64, Status> {
        self.read_batcher.read_index().await
    }

    /// The one task that confirms read indexes for every batch, until `stop`.
    pub async fn run_read_confirmations(&self, stop: impl std::future::Future<Output = ()>) {
        let fetch =
            || read_index::confirm(&self.raft, &self.net, self.config.limits.peer_rpc_timeout);
        self.read_batcher
            .run(fetch, self.config.limits.read_wait_max, stop)
            .await
    }

    /// How long since this node last heard from a leader or granted a vote.
    pub fn quiet_for(&self, now: Instant) -> Option<Duration> {
        self.contact.quiet_for(now)
    }
}

/// What the leader knows `id` holds (0 if unknown).
pub fn matched_index(m: &RaftMetrics, id: NodeId) -> u64 {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|l| l.index)
        .unwrap_or(0)
}

/// Decrements a counter when dropped, however the scope ends.
pub struct CountGuard<'a> {
    count: &'a AtomicUsize,
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lowers a flag when dropped, however the scope ends.
pub struct FlagGuard<'a> {
    flag: &'a AtomicBool,
}

impl<'a> FlagGuard<'a> {
    fn raise(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        FlagGuard { flag }
    }
}

impl Drop for FlagGuard<'_> {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
    }
}
