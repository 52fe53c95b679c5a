//! gRPC client for raftkv, used by `raftctl`, `raft-node local`, tests and
//! node-to-node forwarding.
//!
//! A [`RaftClient`] holds one lazily connected channel per endpoint. Each call
//! starts at the endpoint that last answered, tries the others in turn, jumps
//! to the leader named by an `x-raftkv-leader` hint, and retries UNAVAILABLE
//! with capped exponential backoff between rounds until
//! [`ClientOptions::retry_deadline`]. Final errors keep the gRPC code and
//! message ([`Error::Rpc`]).
//!
//! Retry semantics: UNAVAILABLE (sent by a server, or a connection that was
//! refused) is retried for every call. A call whose outcome is unknown (the
//! connection broke mid-call, or no answer within the timeout) is retried only
//! if applying it twice is harmless: reads, Status, AddLearner,
//! ChangeMembership, and Put, Delete and CAS, which carry a write session
//! ([`ClientOptions::write_sessions`], on by default): every attempt of one
//! write sends the same (client ID, sequence number), so the server applies it
//! once and answers a retry with the first answer. Without sessions a retried
//! Put may bump the revision twice, and CAS is not retried. RemoveMember and
//! TransferLeader then fail with the transport error.
//!
//! Trace context: every request passes through [`ClientOptions::request_hook`]
//! (default: [`raftkv_telemetry::propagation::inject`], which writes the current
//! span's W3C `traceparent`, and nothing when no trace is being exported).
//!
//! ```no_run
//! # async fn f() -> raftkv_client::Result<()> {
//! use raftkv_client::{ClientOptions, RaftClient, ReadOptions};
//! let c = RaftClient::connect(vec!["127.0.0.1:7000".into()], ClientOptions::default())?;
//! c.put("k", "v").await?;
//! let kv = c.get("k", ReadOptions::default()).await?.kv.unwrap();
//! # Ok(()) }
//! ```

pub mod channel;
mod endpoint;
mod error;
mod init;
mod options;
mod retry;
mod session;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use raftkv_proto::v1::{self, cluster_client::ClusterClient, kv_client::KvClient};
use tonic::transport::Channel;

pub use endpoint::{
    leader_hint, normalize as normalize_endpoint, parse_list as parse_endpoints, wants_tls,
};
pub use error::{Error, Result};
pub use init::{InitOutcome, cluster_init, plan_init, wait_for_leader};
pub use options::{Backoff, ClientOptions, Consistency, Expect, ReadOptions, RequestHook};
use retry::{Cursor, Failure, Idempotency};

/// The endpoints of `raft-node local` with its default flags: raftctl's default.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7000,127.0.0.1:7002,127.0.0.1:7004";

/// Endpoints learned from leader hints are added to the pool up to this size.
const ENDPOINTS_MAX: usize = 64;

#[derive(Clone)]
pub struct RaftClient {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ClientOptions,
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
    /// Index of the endpoint that answered last; calls start there.
    preferred: AtomicUsize,
    /// `None` when [`ClientOptions::write_sessions`] is off.
    sessions: Option<Arc<session::Sessions>>,
}

struct Endpoint {
    addr: String,
    channel: Channel,
}

impl std::fmt::Debug for RaftClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftClient")
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

/// One Status reply (or error) per endpoint, in endpoint order.
pub type StatusAll = Vec<(String, Result<v1::StatusResponse>)>;

impl RaftClient {
    /// A client over `endpoints` (`host:port` or `http://host:port`). Channels
    /// connect lazily, so this never blocks; it must be called inside a Tokio runtime.
    pub fn connect(endpoints: Vec<String>, opts: ClientOptions) -> Result<Self> {
        let mut addrs: Vec<String> = Vec::new();
        for e in &endpoints {
            let a = endpoint::normalize(e)?;
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let eps = addrs
            .into_iter()
            .map(|addr| {
                Ok(Arc::new(Endpoint {
                    channel: make_channel(&addr, &opts)?,
                    addr,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let sessions = opts
            .write_sessions
            .then(|| Arc::new(session::Sessions::new()));
        Ok(RaftClient {
            inner: Arc::new(Inner {
                opts,
                endpoints: RwLock::new(eps),
                preferred: AtomicUsize::new(0),
                sessions,
            }),
        })
    }

    /// A client for exactly one node that tries once and never follows hints:
    /// for node-to-node use such as forwarding a write to the leader.
    pub fn single(addr: &str) -> Result<Self> {
        Self::connect(vec![addr.to_string()], ClientOptions::single_attempt())
    }

    /// Start calls at the endpoint with this index (mod the count), e.g. to
    /// spread benchmark clients over the nodes.
    pub fn prefer(self, index: usize) -> Self {
        let n = self.inner.endpoints.read().len();
        self.inner.preferred.store(index % n, Ordering::Relaxed);
        self
    }

    /// The known endpoints (the given ones, then any learned from hints).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .read()
            .iter()
            .map(|e| e.addr.clone())
            .collect()
    }

    /// The endpoint the next call starts at.
    pub fn preferred_endpoint(&self) -> String {
        let eps = self.inner.endpoints.read();
        eps[self.inner.preferred.load(Ordering::Relaxed) % eps.len()]
            .addr
            .clone()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The channel of the preferred endpoint, for direct use of the generated
    /// `KvClient` / `ClusterClient` (no retries, no hook).
    pub fn channel(&self) -> Channel {
        let eps = self.inner.endpoints.read();
        eps[self.inner.preferred.load(Ordering::Relaxed) % eps.len()]
            .channel
            .clone()
    }

    /// This client's session ID (`None` with sessions off).
    pub fn client_id(&self) -> Option<u64> {
        self.inner.sessions.as_ref().map(|s| s.client_id())
    }

    /// A new write's session (held for the whole call, retries included),
    /// and how repeatable the write is with it.
    fn write_session(&self, without: Idempotency) -> (Option<session::Ticket>, Idempotency) {
        match &self.inner.sessions {
            Some(s) => (Some(s.start()), Idempotency::Repeatable),
            None => (None, without),
        }
    }

    fn kv(&self, ch: Channel) -> KvClient<Channel> {
        KvClient::new(ch).max_decoding_message_size(self.inner.opts.max_decoding_message_bytes)
    }

    fn cluster(&self, ch: Channel) -> ClusterClient<Channel> {
        ClusterClient::new(ch).max_decoding_message_size(self.inner.opts.max_decoding_message_bytes)
    }

    // ---- KV -------------------------------------------------------------

    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<v1::PutResponse> {
        let (ticket, idem) = self.write_session(Idempotency::Repeatable);
        let req = v1::PutRequest {
            key: key.into(),
            value: value.into(),
            session: ticket.as_ref().map(|t| t.session),
        };
        self.call(idem, req, |c, r| async move { self.kv(c).put(r).await })
            .await
    }

    /// A missing key is `Err` with code NOT_FOUND (see [`Error::is_not_found`]).
    pub async fn get(&self, key: impl Into<Vec<u8>>, read: ReadOptions) -> Result<v1::GetResponse> {
        let req = v1::GetRequest {
            key: key.into(),
            read: Some(read.into()),
        };
        self.call(Idempotency::Idempotent, req, |c, r| async move {
            self.kv(c).get(r).await
        })
        .await
    }

    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<v1::DeleteResponse> {
        let (ticket, idem) = self.write_session(Idempotency::Repeatable);
        let req = v1::DeleteRequest {
            key: key.into(),
            session: ticket.as_ref().map(|t| t.session),
        };
        self.call(idem, req, |c, r| async move { self.kv(c).delete(r).await })
            .await
    }

    /// A failed comparison is `Err` with code ABORTED; the message names the
    /// current revision. With write sessions a retry after an unknown
    /// outcome returns the first attempt's answer (never a false ABORTED
    /// caused by its own first attempt).
    pub async fn cas(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        expect: Expect,
    ) -> Result<v1::CompareAndSwapResponse> {
        let (ticket, idem) = self.write_session(Idempotency::NonRepeatable);
        let req = v1::CompareAndSwapRequest {
            key: key.into(),
            value: value.into(),
            expect: Some(expect.into()),
            session: ticket.as_ref().map(|t| t.session),
        };
        self.call(idem, req, |c, r| async move {
            self.kv(c).compare_and_swap(r).await
        })
        .await
    }

    /// A raw range request (prefix, or `[start, end)`).
    pub async fn range(&self, req: v1::RangeRequest) -> Result<v1::RangeResponse> {
        self.call(Idempotency::Idempotent, req, |c, r| async move {
            self.kv(c).range(r).await
        })
        .await
    }

    /// Keys starting with `prefix` (all keys if empty), at most `limit` (0 = server maximum).
    pub async fn range_prefix(
        &self,
        prefix: impl Into<Vec<u8>>,
        limit: u32,
        read: ReadOptions,
    ) -> Result<v1::RangeResponse> {
        let req = v1::RangeRequest {
            prefix: prefix.into(),
            limit,
            read: Some(read.into()),
            ..Default::default()
        };
        self.range(req).await
    }

    // ---- Cluster --------------------------------------------------------

    /// Status of every known endpoint, asked concurrently, once each; errors
    /// are kept per endpoint.
    pub async fn status_all(&self) -> StatusAll {
        let eps: Vec<Arc<Endpoint>> = self.inner.endpoints.read().clone();
        let calls = eps.iter().map(|ep| async move {
            let res = self
                .attempt_once(
                    &ep.addr,
                    ep.channel.clone(),
                    v1::StatusRequest {},
                    |c, r| async move { self.cluster(c).status(r).await },
                )
                .await;
            (ep.addr.clone(), res)
        });
        futures::future::join_all(calls).await
    }

    /// Status of one node (which need not be one of this client's endpoints).
    pub async fn status(&self, endpoint: &str) -> Result<v1::StatusResponse> {
        let (addr, ch) = self.channel_for(endpoint)?;
        self.attempt_once(&addr, ch, v1::StatusRequest {}, |c, r| async move {
            self.cluster(c).status(r).await
        })
        .await
    }

    /// The leader's Status: asks every endpoint, then the leader they name if
    /// it is not among them. Errors if no node knows a leader.
    pub async fn leader_status(&self) -> Result<(String, v1::StatusResponse)> {
        let all = self.status_all().await;
        if let Some((addr, st)) = all
            .iter()
            .filter_map(|(a, r)| r.as_ref().ok().map(|s| (a, s)))
            .filter(|(_, s)| s.role == v1::Role::Leader as i32)
            .max_by_key(|(_, s)| s.term)
        {
            return Ok((addr.clone(), st.clone()));
        }
        let named = all
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .filter(|s| s.leader_id != 0)
            .max_by_key(|s| s.term)
            .and_then(|s| {
                let m = s.membership.as_ref()?;
                m.voters
                    .iter()
                    .chain(&m.learners)
                    .find(|m| m.node_id == s.leader_id)
                    .map(|m| m.client_addr.clone())
            });
        if let Some(addr) = named {
            let st = self.status(&addr).await?;
            if st.role == v1::Role::Leader as i32 {
                return Ok((endpoint::normalize(&addr)?, st));
            }
        }
        let last = all
            .iter()
            .map(|(a, r)| match r {
                Ok(s) => format!("{a}: leader_id={}", s.leader_id),
                Err(e) => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::NoLeader {
            waited: Duration::ZERO,
            last,
        })
    }

    /// One-time bootstrap, sent to `endpoint` only (never retried elsewhere).
    pub async fn initialize(
        &self,
        endpoint: &str,
        members: Vec<v1::Member>,
    ) -> Result<v1::InitializeResponse> {
        let (addr, ch) = self.channel_for(endpoint)?;
        let req = v1::InitializeRequest { members };
        self.attempt_once(&addr, ch, req, |c, r| async move {
            self.cluster(c).initialize(r).await
        })
        .await
    }

    pub async fn add_learner(&self, member: v1::Member) -> Result<v1::MembershipResponse> {
        let req = v1::AddLearnerRequest {
            member: Some(member),
        };
        self.call(Idempotency::Repeatable, req, |c, r| async move {
            self.cluster(c).add_learner(r).await
        })
        .await
    }

    pub async fn change_membership(
        &self,
        voter_ids: Vec<u64>,
        retain: bool,
        expected_membership_index: Option<u64>,
    ) -> Result<v1::MembershipResponse> {
        let req = v1::ChangeMembershipRequest {
            voter_ids,
            retain,
            expected_membership_index,
        };
        self.call(Idempotency::Repeatable, req, |c, r| async move {
            self.cluster(c).change_membership(r).await
        })
        .await
    }

    pub async fn remove_member(&self, node_id: u64) -> Result<v1::MembershipResponse> {
        let req = v1::RemoveMemberRequest { node_id };
        self.call(Idempotency::NonRepeatable, req, |c, r| async move {
            self.cluster(c).remove_member(r).await
        })
        .await
    }

    /// `target_node_id` 0 = the most caught-up healthy voter.
    pub async fn transfer_leader(&self, target_node_id: u64) -> Result<v1::TransferLeaderResponse> {
        let req = v1::TransferLeaderRequest { target_node_id };
        self.call(Idempotency::NonRepeatable, req, |c, r| async move {
            self.cluster(c).transfer_leader(r).await
        })
        .await
    }

    /// Build a snapshot now on `endpoint`.
    pub async fn snapshot(&self, endpoint: &str) -> Result<v1::SnapshotResponse> {
        let (addr, ch) = self.channel_for(endpoint)?;
        self.attempt_once(&addr, ch, v1::SnapshotRequest {}, |c, r| async move {
            self.cluster(c).snapshot(r).await
        })
        .await
    }

    /// A consistent backup, as a stream of file chunks from the leader (a
    /// follower forwards the call). Only opening the stream is retried; a
    /// stream that breaks fails the reader, who starts over.
    pub async fn backup(&self) -> Result<tonic::Streaming<v1::BackupChunk>> {
        self.call(
            Idempotency::Repeatable,
            v1::BackupRequest {},
            |c, r| async move { self.cluster(c).backup(r).await },
        )
        .await
    }

    // ---- plumbing -------------------------------------------------------

    /// The pool's channel for `endpoint`, or a new one (not added to the pool).
    fn channel_for(&self, endpoint: &str) -> Result<(String, Channel)> {
        let addr = endpoint::normalize(endpoint)?;
        if let Some(ep) = self.inner.endpoints.read().iter().find(|e| e.addr == addr) {
            return Ok((addr, ep.channel.clone()));
        }
        let ch = make_channel(&addr, &self.inner.opts)?;
        Ok((addr, ch))
    }

    /// Index of `addr` in the pool, adding it if there is room.
    fn index_of_or_add(&self, addr: &str) -> Option<usize> {
        if let Some(i) = self
            .inner
            .endpoints
            .read()
            .iter()
            .position(|e| e.addr == addr)
        {
            return Some(i);
        }
        let mut eps = self.inner.endpoints.write();
        if let Some(i) = eps.iter().position(|e| e.addr == addr) {
            return Some(i);
        }
        if eps.len() >= ENDPOINTS_MAX {
            return None;
        }
        let channel = make_channel(addr, &self.inner.opts).ok()?;
        eps.push(Arc::new(Endpoint {
            addr: addr.to_string(),
            channel,
        }));
        Some(eps.len() - 1)
    }

    fn request<Req>(&self, msg: Req) -> tonic::Request<Req> {
        let mut r = tonic::Request::new(msg);
        self.inner.opts.decorate(r.metadata_mut());
        r
    }

    /// One attempt at one endpoint with the per-attempt timeout.
    async fn attempt_once<Req, Resp, F, Fut>(
        &self,
        addr: &str,
        ch: Channel,
        req: Req,
        f: F,
    ) -> Result<Resp>
    where
        F: FnOnce(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let timeout = self.inner.opts.request_timeout;
        match tokio::time::timeout(timeout, f(ch, self.request(req))).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(&status, addr, 1, leader_hint(&status))),
            Err(_) => Err(Error::Timeout {
                endpoint: addr.to_string(),
                timeout,
                attempts: 1,
            }),
        }
    }

    /// The retry loop: see the module docs.
    async fn call<Req, Resp, F, Fut>(&self, idem: Idempotency, req: Req, f: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let opts = &self.inner.opts;
        let deadline = Instant::now() + opts.retry_deadline;
        let mut cursor = Cursor::new(self.inner.preferred.load(Ordering::Relaxed));
        let mut attempts: u32 = 0;
        loop {
            let ep = {
                let eps = self.inner.endpoints.read();
                eps[cursor.current() % eps.len()].clone()
            };
            attempts += 1;
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let timeout = opts.request_timeout.min(remaining);
            let outcome =
                tokio::time::timeout(timeout, f(ep.channel.clone(), self.request(req.clone())))
                    .await;
            let (failure, err) = match outcome {
                Ok(Ok(resp)) => {
                    self.inner
                        .preferred
                        .store(cursor.current(), Ordering::Relaxed);
                    return Ok(resp.into_inner());
                }
                Ok(Err(status)) => (
                    Failure::of(&status),
                    Error::from_status(&status, &ep.addr, attempts, leader_hint(&status)),
                ),
                Err(_) => (
                    Failure::Timeout,
                    Error::Timeout {
                        endpoint: ep.addr.clone(),
                        timeout,
                        attempts,
                    },
                ),
            };
            let out_of_budget = Instant::now() >= deadline
                || (opts.max_attempts > 0 && attempts >= opts.max_attempts);
            if !retry::is_retryable(failure, idem) || out_of_budget {
                return Err(err);
            }
            tracing::debug!(endpoint = %ep.addr, attempts, error = %err, "retrying");
            let hint = match err.leader_hint() {
                Some(h) if opts.follow_leader_hints => self.index_of_or_add(h),
                _ => None,
            };
            let len = self.inner.endpoints.read().len();
            if let Some(round) = cursor.advance(hint, len) {
                let delay = opts.backoff.delay(round, 0.5 + rand::random::<f64>() / 2.0);
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining <= delay {
                    return Err(err);
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn make_channel(addr: &str, opts: &ClientOptions) -> Result<Channel> {
    channel::ChannelSettings::new(opts.connect_timeout)
        .with_tls(opts.tls.clone())
        .with_tls_server_name(opts.tls_server_name.clone())
        .lazy(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on: bind, read the port, close.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn unreachable_endpoints_fail_with_unavailable_within_the_deadline() {
        let eps = vec![
            format!("127.0.0.1:{}", closed_port()),
            format!("127.0.0.1:{}", closed_port()),
        ];
        let opts = ClientOptions {
            retry_deadline: Duration::from_millis(400),
            ..Default::default()
        };
        let c = RaftClient::connect(eps, opts).unwrap();
        let started = Instant::now();
        let err = c.put("k", "v").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        match err {
            Error::Rpc { attempts, .. } => assert!(attempts >= 2, "tried {attempts} times"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn single_tries_once() {
        let c = RaftClient::single(&format!("127.0.0.1:{}", closed_port())).unwrap();
        match c.get("k", ReadOptions::default()).await.unwrap_err() {
            Error::Rpc { attempts, code, .. } => {
                assert_eq!(attempts, 1);
                assert_eq!(code, tonic::Code::Unavailable);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn status_all_keeps_an_error_per_endpoint() {
        let eps = vec![
            format!("127.0.0.1:{}", closed_port()),
            format!("http://127.0.0.1:{}", closed_port()),
        ];
        let c = RaftClient::connect(eps.clone(), ClientOptions::default()).unwrap();
        let all = c.status_all().await;
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].0, eps[1].trim_start_matches("http://"));
        assert!(all.iter().all(|(_, r)| r.is_err()));
    }
}
