//! The client KV service. Writes go through Raft on the leader (a follower
//! forwards them); reads are served by the receiving node at the consistency
//! the request names.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raftkv_proto::v1 as pb;
use raftkv_proto::v1::kv_client::KvClient;
use raftkv_proto::v1::kv_server::Kv;
use tonic::{Request, Response, Status};

use crate::grpc::batcher::Batcher;
use crate::grpc::errors;
use crate::grpc::route::{self, forwarded};
use crate::kv::{Command, CommandResult, Expect, KeyValue, SessionRefusal, WriteSession};
use crate::node::Node;
use crate::observability::links::{self, Proposal};
use crate::observability::{propagation, rpc, semconv};
use crate::raft::read_index;
use crate::storage::prefix_end;

pub struct KvService {
    node: Arc<Node>,
    batcher: Batcher,
    /// Ends open watches when the node stops (`with_stop`).
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl KvService {
    /// Starts the write batcher: call inside a Tokio runtime.
    pub fn new(node: Arc<Node>) -> Self {
        let batcher = Batcher::start(node.clone());
        KvService {
            node,
            batcher,
            stop: None,
        }
    }

    /// Open watches end when `stop` turns true (the node's shutdown).
    pub fn with_stop(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn header(&self, revision: u64) -> pb::ResponseHeader {
        let applied_index = self.node.reader().applied().index;
        self.header_at(revision, applied_index)
    }

    /// A read's header: the revision and applied index of the state it read.
    fn header_at(&self, revision: u64, applied_index: u64) -> pb::ResponseHeader {
        let m = self.node.metrics();
        pb::ResponseHeader {
            node_id: self.node.id(),
            revision,
            applied_index,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            cluster_id: self.node.cluster_id(),
        }
    }

    fn forward_client(
        &self,
        channel: tonic::transport::Channel,
    ) -> KvClient<tonic::transport::Channel> {
        let max = self.node.limits().grpc_message_bytes_max;
        KvClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Proposes `cmd`, at most once per write session if it has one (see
    /// `kv::session`). A retry of a write this node has applied is answered
    /// from the session table without a new entry: the answer is of a
    /// committed entry, so any member may give it.
    async fn propose_write(
        &self,
        cmd: Command,
        session: Option<pb::WriteSession>,
    ) -> Result<CommandResult, Status> {
        let session = match session {
            // The fault knob: propose as before sessions existed.
            Some(_) if self.node.config().faults.fault_disable_dedup => None,
            Some(s) => Some(write_session(s)?),
            None => None,
        };
        let Some(session) = session else {
            return self.propose(cmd).await;
        };
        if let Some(r) = self.node.reader().session_replay(session, &cmd) {
            return Ok(r);
        }
        // The leader's clock: the table's only time (docs/design.md
        // "Client sessions").
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let r = self
            .propose(Command::WithSession {
                session,
                at_ms,
                write: Box::new(cmd),
            })
            .await?;
        match r {
            CommandResult::Refused(SessionRefusal::Invalid(why)) => {
                Err(Status::invalid_argument(why))
            }
            CommandResult::Refused(why) => Err(Status::failed_precondition(why.to_string())),
            other => Ok(other),
        }
    }

    /// Proposes `cmd` in a batch with the writes that arrive meanwhile
    /// (`grpc::batcher`); a traced write alone, so its trace shows its own
    /// proposal, replication and apply.
    async fn propose(&self, cmd: Command) -> Result<CommandResult, Status> {
        if links::current_is_traced() {
            return self.propose_alone(cmd).await;
        }
        self.batcher.propose(cmd).await
    }

    async fn propose_alone(&self, cmd: Command) -> Result<CommandResult, Status> {
        // A `raft.propose` span that replication and apply on every node join
        // (observability::links), plus the proposal metrics.
        let proposal = Proposal::start(self.node.links(), &cmd);
        let resp = tracing::Instrument::instrument(
            self.node.raft().client_write(cmd),
            proposal.span().clone(),
        )
        .await;
        proposal.finish(
            resp.as_ref()
                .ok()
                .map(|r| (r.log_id.leader_id.term, r.log_id.index)),
        );
        Ok(resp.map_err(errors::client_write)?.data)
    }

    /// Forwards a write to the leader in a CLIENT span whose
    /// context travels in `traceparent`.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        leader: route::Leader,
        inner: Req,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(KvClient<tonic::transport::Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let span = rpc::client_span(method, &leader.client_addr);
        let mut req = forwarded(inner);
        propagation::inject_span(&span, req.metadata_mut());
        rpc::traced(span, call(self.forward_client(leader.channel), req)).await
    }

    /// Consistency barrier before a read; see docs/design.md "Reads".
    async fn read_barrier(&self, opts: Option<&pb::ReadOptions>) -> Result<(), Status> {
        let default = pb::ReadOptions::default();
        let opts = opts.unwrap_or(&default);
        let consistency = pb::Consistency::try_from(opts.consistency).map_err(|_| {
            Status::invalid_argument(format!("unknown consistency level {}", opts.consistency))
        })?;
        match consistency {
            pb::Consistency::Unspecified | pb::Consistency::Linearizable => {
                let index = self.node.read_index().await?;
                self.node.wait_applied(index).await?;
            }
            pb::Consistency::Bounded => {
                let max = if opts.max_staleness_ms == 0 {
                    self.node.limits().bounded_staleness_default
                } else {
                    Duration::from_millis(opts.max_staleness_ms)
                };
                self.bounded_check(max)?;
            }
            pb::Consistency::Stale => {}
        }
        if opts.min_revision > 0 {
            self.node.wait_revision(opts.min_revision).await?;
        }
        Ok(())
    }

    fn bounded_check(&self, max: Duration) -> Result<(), Status> {
        let m = self.node.metrics();
        let applied = self.node.reader().applied().index;
        let (admitted, role) = if m.state.is_leader() {
            // The lease on this node's own clock, not openraft's
            // `millis_since_quorum_ack`: a snapshot published before a pause
            // still looks fresh after it (hole 3 of issue 11).
            let ack = self
                .node
                .net()
                .lease()
                .quorum_age(m.current_term, Instant::now());
            let commit = self.node.commit_index(&m);
            (
                read_index::bounded_on_leader(ack, max, applied, commit),
                "leader",
            )
        } else {
            let contact = self.node.contact().confirmed();
            (
                read_index::bounded_on_follower(contact, applied, Instant::now(), max),
                "node",
            )
        };
        admitted.map_err(|why| {
            Status::failed_precondition(format!(
                "bounded read refused on {role} {}: {why}; use linearizable or stale, or a larger max staleness",
                self.node.id()
            ))
        })
    }
}

pub fn to_pb(kv: KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    }
}

/// A request's session, or INVALID_ARGUMENT saying what is wrong with it.
fn write_session(s: pb::WriteSession) -> Result<WriteSession, Status> {
    let session = WriteSession {
        client_id: s.client_id,
        seq: s.seq,
        first_incomplete: s.first_incomplete,
    };
    match session.invalid() {
        Some(why) => Err(Status::invalid_argument(why)),
        None => Ok(session),
    }
}

fn unexpected(r: CommandResult) -> Status {
    Status::internal(format!(
        "state machine returned an unexpected result: {r:?}"
    ))
}

#[tonic::async_trait]
impl Kv for KvService {
    type WatchStream = crate::grpc::watch::WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        crate::grpc::watch::start(self.node.clone(), request.into_inner(), self.stop.clone())
            .map(Response::new)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let limits = &self.node.limits().kv;
        limits
            .check_key(&request.get_ref().key)
            .map_err(errors::input)?;
        limits
            .check_value(&request.get_ref().value)
            .map_err(errors::input)?;
        if let Some(leader) = route::route(&self.node, &request)? {
            return self
                .forward(
                    semconv::KV_PUT,
                    leader,
                    request.into_inner(),
                    |mut c, r| async move { c.put(r).await },
                )
                .await;
        }
        let req = request.into_inner();
        match self
            .propose_write(
                Command::Put {
                    key: req.key,
                    value: req.value,
                },
                req.session,
            )
            .await?
        {
            CommandResult::Put { kv, revision } => Ok(Response::new(pb::PutResponse {
                header: Some(self.header(revision)),
                kv: Some(to_pb(kv)),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.node
            .limits()
            .kv
            .check_key(&request.get_ref().key)
            .map_err(errors::input)?;
        if let Some(leader) = route::route(&self.node, &request)? {
            return self
                .forward(
                    semconv::KV_DELETE,
                    leader,
                    request.into_inner(),
                    |mut c, r| async move { c.delete(r).await },
                )
                .await;
        }
        let req = request.into_inner();
        match self
            .propose_write(Command::Delete { key: req.key }, req.session)
            .await?
        {
            CommandResult::Delete { deleted, revision } => Ok(Response::new(pb::DeleteResponse {
                header: Some(self.header(revision)),
                deleted,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        let limits = &self.node.limits().kv;
        limits
            .check_key(&request.get_ref().key)
            .map_err(errors::input)?;
        limits
            .check_value(&request.get_ref().value)
            .map_err(errors::input)?;
        let expect = match &request.get_ref().expect {
            Some(pb::compare_and_swap_request::Expect::ExpectValue(v)) => {
                limits.check_expected_value(v).map_err(errors::input)?;
                Expect::Value(v.clone())
            }
            Some(pb::compare_and_swap_request::Expect::ExpectAbsent(true)) => Expect::Absent,
            Some(pb::compare_and_swap_request::Expect::ExpectAbsent(false)) => {
                return Err(Status::invalid_argument(
                    "expect_absent must be true when set",
                ));
            }
            Some(pb::compare_and_swap_request::Expect::ExpectRevision(r)) => Expect::Revision(*r),
            None => {
                return Err(Status::invalid_argument(
                    "compare-and-swap needs an expectation: expect_value, expect_absent or expect_revision",
                ));
            }
        };
        if let Some(leader) = route::route(&self.node, &request)? {
            return self
                .forward(
                    semconv::KV_COMPARE_AND_SWAP,
                    leader,
                    request.into_inner(),
                    |mut c, r| async move { c.compare_and_swap(r).await },
                )
                .await;
        }
        let req = request.into_inner();
        match self
            .propose_write(
                Command::CompareAndSwap {
                    key: req.key,
                    value: req.value,
                    expect,
                },
                req.session,
            )
            .await?
        {
            CommandResult::Swapped { kv, revision } => {
                Ok(Response::new(pb::CompareAndSwapResponse {
                    header: Some(self.header(revision)),
                    kv: Some(to_pb(kv)),
                }))
            }
            CommandResult::CompareFailed { current, revision } => {
                let now = match current {
                    Some(kv) => format!(
                        "key exists with mod_revision {} and a {}-byte value",
                        kv.mod_revision, kv.value_len
                    ),
                    None => "key does not exist".to_string(),
                };
                Err(Status::aborted(format!(
                    "compare failed: {now} (store revision {revision})"
                )))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        self.node
            .limits()
            .kv
            .check_key(&req.key)
            .map_err(errors::input)?;
        self.read_barrier(req.read.as_ref()).await?;
        // The header's revision and the value come from the same state.
        let (kv, applied) = self.node.reader().get_at(&req.key);
        let revision = applied.revision;
        match kv {
            Some(kv) => Ok(Response::new(pb::GetResponse {
                header: Some(self.header_at(revision, applied.index)),
                kv: Some(to_pb(kv)),
            })),
            None => Err(Status::not_found(format!(
                "key {:?} not found",
                String::from_utf8_lossy(&req.key)
            ))),
        }
    }

    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let req = request.into_inner();
        let max = self.node.limits().kv.range_limit_max;
        let limit = if req.limit == 0 {
            max
        } else {
            req.limit.min(max)
        } as usize;
        let (start, end) = if !req.prefix.is_empty() {
            if !req.start.is_empty() || !req.end.is_empty() {
                return Err(Status::invalid_argument(
                    "give either a prefix or a start/end range, not both",
                ));
            }
            (req.prefix.clone(), prefix_end(&req.prefix))
        } else {
            let end = if req.end.is_empty() {
                None
            } else {
                Some(req.end.clone())
            };
            if let Some(e) = &end
                && e <= &req.start
            {
                return Err(Status::invalid_argument(
                    "range end must be greater than start",
                ));
            }
            (req.start.clone(), end)
        };
        self.read_barrier(req.read.as_ref()).await?;
        let bytes_max = self.node.limits().kv.range_bytes_max;
        let (kvs, more, applied) =
            self.node
                .reader()
                .range_at(&start, end.as_deref(), limit, bytes_max);
        let revision = applied.revision;
        Ok(Response::new(pb::RangeResponse {
            header: Some(self.header_at(revision, applied.index)),
            kvs: kvs.into_iter().map(to_pb).collect(),
            more,
        }))
    }
}
