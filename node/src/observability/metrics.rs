//! Prometheus metrics of the node, and the `/metrics` HTTP server.
//!
//! One process-wide [`NodeMetrics`] ([`node()`]); call sites record into it,
//! [`watch_raft`] keeps the Raft gauges current from openraft's metrics
//! channel, and the storage counters (`storage::stats()`) are read at scrape
//! time. [`serve`] answers `GET /metrics` in the OpenMetrics text format.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use openraft::ServerState;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::typ::RaftMetrics;
use crate::{NodeId, storage};

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The node's metrics. Cheap to record into (atomics).
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    pub term: Gauge,
    /// 1 for the current role, 0 for the others.
    pub role: Family<Labels, Gauge>,
    pub leader_changes: Counter,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub last_log_index: Gauge,
    /// Proposals by result (`ok`, `error`).
    pub proposals: Family<Labels, Counter>,
    /// The `ok` and `error` series of `proposals`, looked up once: the lookup
    /// hashes the labels under the family's lock, on every write otherwise.
    /// Filled on first use, so a series still appears only once counted.
    proposals_by_result: [std::sync::OnceLock<Counter>; 2],
    /// Proposal latency (client_write until committed and applied).
    pub proposal_seconds: Histogram,
    /// Peer RPC errors by method and kind (`unreachable`, `network`, `timeout`,
    /// `refused`, `remote`, `injected_drop`).
    pub peer_rpc_errors: Family<Labels2, Counter>,
    pub snapshots_built: Counter,
    pub snapshots_installed: Counter,
    pub faults_injected: Family<Labels, Counter>,
    /// State of [`watch_raft`]: the last leader seen.
    last_leader: Mutex<Option<Option<NodeId>>>,
}

/// The roles a node reports in `raftkv_raft_role`.
pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// Latency buckets: 100 µs .. ~6.5 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 17)
}

impl NodeMetrics {
    fn new() -> Self {
        let m = NodeMetrics {
            registry: Mutex::new(Registry::with_prefix("raftkv")),
            term: Gauge::default(),
            role: Family::default(),
            leader_changes: Counter::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            proposals: Family::default(),
            proposals_by_result: Default::default(),
            proposal_seconds: Histogram::new(latency_buckets()),
            peer_rpc_errors: Family::default(),
            snapshots_built: Counter::default(),
            snapshots_installed: Counter::default(),
            faults_injected: Family::default(),
            last_leader: Mutex::new(None),
        };
        {
            let mut r = m.registry.lock();
            r.register("raft_term", "Current Raft term", m.term.clone());
            r.register(
                "raft_role",
                "1 for the node's current Raft role",
                m.role.clone(),
            );
            r.register(
                "raft_leader_changes",
                "Times the known leader changed",
                m.leader_changes.clone(),
            );
            r.register(
                "raft_commit_index",
                "Highest log index known committed",
                m.commit_index.clone(),
            );
            r.register(
                "raft_applied_index",
                "Highest log index applied to the state machine",
                m.applied_index.clone(),
            );
            r.register(
                "raft_last_log_index",
                "Highest log index in the local log",
                m.last_log_index.clone(),
            );
            r.register(
                "raft_proposals",
                "Client writes proposed by this node as leader, by result",
                m.proposals.clone(),
            );
            r.register_with_unit(
                "raft_proposal_duration",
                "Proposal latency: proposed until committed and applied",
                prometheus_client::registry::Unit::Seconds,
                m.proposal_seconds.clone(),
            );
            r.register(
                "peer_rpc_errors",
                "Failed outgoing peer RPCs by method and kind",
                m.peer_rpc_errors.clone(),
            );
            r.register(
                "raft_snapshots_built",
                "Snapshots built by this node",
                m.snapshots_built.clone(),
            );
            r.register(
                "raft_snapshots_installed",
                "Snapshots installed from a leader",
                m.snapshots_installed.clone(),
            );
            r.register(
                "faults_injected",
                "Faults injected on purpose, by kind",
                m.faults_injected.clone(),
            );
            r.register_collector(Box::new(StorageCollector));
            r.register_collector(Box::new(CertificateExpiryCollector));
        }
        for role in ROLES {
            m.role.get_or_create(&[("role", role)]).set(0);
        }
        m
    }

    /// Records one proposal (leader `client_write`).
    pub fn proposal_done(&self, elapsed: Duration, ok: bool) {
        let (slot, result) = if ok { (0, "ok") } else { (1, "error") };
        // A clone of a series shares its value with the family's.
        self.proposals_by_result[slot]
            .get_or_init(|| self.proposals.get_or_create(&[("result", result)]).clone())
            .inc();
        self.proposal_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn peer_rpc_error(&self, method: &'static str, kind: &'static str) {
        self.peer_rpc_errors
            .get_or_create(&[("method", method), ("kind", kind)])
            .inc();
    }

    pub fn fault_injected(&self, kind: &'static str) {
        self.faults_injected.get_or_create(&[("kind", kind)]).inc();
    }

    /// Updates the Raft gauges from one openraft metrics report (openraft 0.9
    /// does not report the commit index; the caller computes it).
    pub fn observe_raft(&self, m: &RaftMetrics, commit_index: u64) {
        self.term.set(m.current_term as i64);
        self.commit_index.set(commit_index as i64);
        self.applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        for r in ROLES {
            self.role
                .get_or_create(&[("role", r)])
                .set(i64::from(r == role));
        }
        let mut last = self.last_leader.lock();
        match *last {
            // The first report sets the baseline; a change of a known leader counts.
            None => *last = Some(m.current_leader),
            Some(prev) if prev != m.current_leader => {
                if m.current_leader.is_some() {
                    self.leader_changes.inc();
                }
                *last = Some(m.current_leader);
            }
            Some(_) => {}
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock())
            .expect("writing to a String");
        out
    }
}

/// The process-wide node metrics.
pub fn node() -> &'static NodeMetrics {
    static M: OnceLock<NodeMetrics> = OnceLock::new();
    M.get_or_init(NodeMetrics::new)
}

/// Keeps the Raft gauges current until the metrics channel closes (the Raft
/// instance shut down). `commit_index` computes the commit index from a report
/// (e.g. `app::Node::commit_index`).
/// `also` sees every report too (the trace links end a campaign span there).
pub async fn watch_raft(
    mut rx: tokio::sync::watch::Receiver<RaftMetrics>,
    commit_index: impl Fn(&RaftMetrics) -> u64 + Send + 'static,
    also: impl Fn(&RaftMetrics) + Send + 'static,
) {
    loop {
        {
            let m = rx.borrow_and_update();
            node().observe_raft(&m, commit_index(&m));
            also(&m);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Storage counters (`storage::stats()`), read at scrape time.
#[derive(Debug)]
struct StorageCollector;

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = storage::stats().snapshot();
        let counter = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
        };
        counter(
            &mut encoder,
            "storage_fsyncs",
            "fsync/fdatasync calls",
            s.fsyncs,
        )?;
        counter(
            &mut encoder,
            "storage_fsync_failures",
            "Failed fsyncs (real or injected)",
            s.fsync_failures,
        )?;
        counter(
            &mut encoder,
            "storage_log_batches",
            "Group commits of the log writer",
            s.log_batches,
        )?;
        counter(
            &mut encoder,
            "storage_log_requests",
            "Log requests carried by group commits",
            s.log_requests,
        )?;
        counter(
            &mut encoder,
            "storage_log_bytes",
            "Bytes written to log segments",
            s.log_bytes,
        )?;
        let secs = |n: u64| n as f64 / 1e9;
        let c = ConstCounter::new(secs(s.fsync_nanos_total));
        c.encode(encoder.encode_descriptor(
            "storage_fsync_seconds",
            "Time spent in fsync",
            None,
            c.metric_type(),
        )?)?;
        let counts = storage::fsync_histogram();
        let mut buckets: Vec<(f64, u64)> = storage::FSYNC_BUCKET_BOUNDS_NANOS
            .iter()
            .zip(counts)
            .map(|(b, n)| (secs(*b), n))
            .collect();
        buckets.push((f64::INFINITY, counts[counts.len() - 1]));
        encoder
            .encode_descriptor(
                "storage_fsync_duration",
                "fsync latency",
                Some(&prometheus_client::registry::Unit::Seconds),
                prometheus_client::metrics::MetricType::Histogram,
            )?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                secs(s.fsync_nanos_total),
                counts.iter().sum(),
                &buckets,
                None,
            )?;
        let g = ConstGauge::new(secs(s.fsync_nanos_max));
        g.encode(encoder.encode_descriptor(
            "storage_fsync_max_seconds",
            "Longest fsync since start",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

/// When the node's own TLS certificate expires (`security::expiry`), read at
/// scrape time so a rotated certificate shows at once; absent without TLS.
/// The certificates-expiring alert (charts/raft-operator/files/prometheus/rules.yaml)
/// reads it.
#[derive(Debug)]
struct CertificateExpiryCollector;

impl Collector for CertificateExpiryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(not_after) = crate::security::expiry::current_not_after() else {
            return Ok(());
        };
        let g = ConstGauge::new(not_after);
        g.encode(encoder.encode_descriptor(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of this node's TLS certificate, seconds since the Unix epoch",
            None,
            g.metric_type(),
        )?)
    }
}

/// `200 ok` or `503` with what is not yet so: the body is for people running
/// `curl`; kubelet reads only the status.
fn probe_reply(ok: bool, what: &'static str) -> (axum::http::StatusCode, &'static str) {
    if ok {
        (axum::http::StatusCode::OK, "ok\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, what)
    }
}

/// Serves `GET /metrics` (and `/`) on `listener` until `shutdown` resolves,
/// and the probes `GET /readyz` (the default gRPC health service: a caught-up
/// member with a leader) and `GET /livez` (the `liveness` service: the Raft
/// core runs). They are here, on the plaintext listener, because kubelet's
/// probes cannot present a client certificate to the TLS client port.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let handler = || async {
        (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            node().encode(),
        )
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(handler))
        .route("/", axum::routing::get(handler))
        .route(
            "/readyz",
            axum::routing::get(|| async {
                probe_reply(
                    super::probes::PROBES.ready(),
                    "not ready: not a caught-up member of a cluster with a leader\n",
                )
            }),
        )
        .route(
            "/livez",
            axum::routing::get(|| async {
                probe_reply(
                    super::probes::PROBES.alive(),
                    "not live: the Raft core is not running (yet)\n",
                )
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and spawns [`serve`]; returns the bound address.
pub async fn spawn_server(
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "metrics server listening on /metrics");
    Ok((local, tokio::spawn(serve(listener, shutdown))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    #[test]
    fn raft_gauges_follow_openraft_metrics_and_count_leader_changes() {
        let m = NodeMetrics::new();
        let mut r = RaftMetrics::new_initial(1);
        r.current_term = 3;
        r.state = ServerState::Follower;
        r.current_leader = Some(2);
        r.last_applied = Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(3, 2),
            9,
        ));
        m.observe_raft(&r, 10);
        m.observe_raft(&r, 10);
        r.current_leader = None;
        r.state = ServerState::Candidate;
        m.observe_raft(&r, 10);
        r.current_leader = Some(1);
        r.current_term = 4;
        r.state = ServerState::Leader;
        m.observe_raft(&r, 10);
        m.proposal_done(Duration::from_millis(3), true);
        m.proposal_done(Duration::from_millis(30), false);
        m.peer_rpc_error("AppendEntries", "unreachable");
        let t = m.encode();
        assert_eq!(value(&t, "raftkv_raft_term"), Some(4.0), "{t}");
        assert_eq!(
            value(&t, r#"raftkv_raft_role{role="leader"}"#),
            Some(1.0),
            "{t}"
        );
        assert_eq!(
            value(&t, r#"raftkv_raft_role{role="candidate"}"#),
            Some(0.0),
            "{t}"
        );
        assert_eq!(
            value(&t, "raftkv_raft_leader_changes_total"),
            Some(1.0),
            "{t}"
        );
        assert_eq!(value(&t, "raftkv_raft_commit_index"), Some(10.0), "{t}");
        assert_eq!(value(&t, "raftkv_raft_applied_index"), Some(9.0), "{t}");
        assert_eq!(
            value(&t, r#"raftkv_raft_proposals_total{result="ok"}"#),
            Some(1.0),
            "{t}"
        );
        assert_eq!(
            value(&t, "raftkv_raft_proposal_duration_seconds_count"),
            Some(2.0),
            "{t}"
        );
        assert_eq!(
            value(
                &t,
                r#"raftkv_peer_rpc_errors_total{method="AppendEntries",kind="unreachable"}"#
            ),
            Some(1.0),
            "{t}"
        );
        assert!(t.contains("raftkv_storage_fsyncs_total"), "{t}");
        assert!(
            t.contains("raftkv_storage_fsync_duration_seconds_bucket{le=\"5.0e-5\"}")
                || t.contains("raftkv_storage_fsync_duration_seconds_bucket{le=\"0.00005\"}"),
            "{t}"
        );
        assert!(
            t.contains("raftkv_storage_fsync_duration_seconds_count"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[tokio::test]
    async fn the_metrics_server_answers_over_http() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = spawn_server("127.0.0.1:0".parse().unwrap(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        node().snapshots_built.inc();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("application/openmetrics-text"), "{body}");
        assert!(body.contains("raftkv_raft_snapshots_built_total"), "{body}");
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
