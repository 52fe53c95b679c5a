//! Keeps a client write's trace alive across openraft's internal tasks.
//!
//! openraft proposes, replicates and applies in its own tasks, so the span of
//! the gRPC call that proposed a command is not the current span when the
//! entry is sent to followers or applied. [`TraceLinks`] (one per node, held
//! by the node, its peer network and its storage hooks) remembers the span
//! context of each *sampled* proposal (by a hash of the command) and of each
//! traced log index, so the peer client, the peer server and the apply loop
//! can make their spans children of the write's trace:
//!
//! - leader, proposal: [`Proposal::start`] registers `hash(command) -> span`;
//! - leader, AppendEntries out: [`TraceLinks::parent_for_entries`] finds the
//!   traced entries of a request (and remembers their indexes);
//! - follower, AppendEntries in: [`TraceLinks::remember_indexes`] with the
//!   server span;
//! - any node, apply: [`TraceLinks::apply_span`] (through the storage hooks,
//!   [`NodeStorageHooks`]) opens a child span for a traced index.
//!
//! Bounded ([`TRACED_ENTRIES_MAX`], oldest evicted first). When nothing is
//! traced (the common case with the default rate limit) every lookup is one
//! atomic load.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use parking_lot::Mutex;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::semconv::{
    EVENT_COMMITTED, SPAN_APPLY, SPAN_ELECTION, SPAN_MEMBERSHIP, SPAN_PROPOSE, SPAN_SNAPSHOT_BUILD,
};
use crate::NodeId;
use crate::kv::Command;
use crate::storage::StorageHooks;
use crate::typ::Entry;

/// Upper bound on remembered traced commands plus traced log indexes. At the
/// default rate limit (20 traces/min) a handful are in use; at ratio 1.0
/// under load the oldest are evicted (those writes lose their follower-side
/// spans, nothing else). Costs about 100 bytes each.
pub const TRACED_ENTRIES_MAX: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Key {
    Command(u64),
    Index(u64),
    /// The membership change in progress (one at a time).
    Membership,
}

#[derive(Default)]
struct Table {
    map: HashMap<Key, SpanContext>,
    order: VecDeque<Key>,
}

/// The trace links of one node.
pub struct TraceLinks {
    node_id: NodeId,
    table: Mutex<Table>,
    /// `table.map.len()`, readable without the lock: when nothing is traced
    /// (the common case) every lookup is one atomic load.
    len: AtomicUsize,
    /// The candidate's campaign span of a term (see [`TraceLinks::election_parent`]).
    election: Mutex<Option<(u64, Span)>>,
}

impl TraceLinks {
    pub fn new(node_id: NodeId) -> Arc<TraceLinks> {
        Arc::new(TraceLinks {
            node_id,
            table: Mutex::new(Table::default()),
            len: AtomicUsize::new(0),
            election: Mutex::new(None),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn with_table<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut t = self.table.lock();
        let r = f(&mut t);
        self.len.store(t.map.len(), Ordering::Relaxed);
        r
    }

    fn insert(&self, key: Key, sc: SpanContext) {
        self.with_table(|t| {
            if t.map.insert(key, sc).is_none() {
                t.order.push_back(key);
            }
            while t.map.len() > TRACED_ENTRIES_MAX {
                match t.order.pop_front() {
                    Some(k) => {
                        t.map.remove(&k);
                    }
                    None => break,
                }
            }
            // Keys removed explicitly stay in `order` until popped; keep it bounded too.
            if t.order.len() > 2 * TRACED_ENTRIES_MAX {
                let map = &t.map;
                t.order.retain(|k| map.contains_key(k));
            }
        })
    }

    fn remove(&self, key: Key) -> Option<SpanContext> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.with_table(|t| t.map.remove(&key))
    }

    fn get(&self, key: Key) -> Option<SpanContext> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.with_table(|t| t.map.get(&key).cloned())
    }
}

/// Identifies a command for the table (a hash of its content).
pub fn command_key(cmd: &Command) -> u64 {
    use crate::kv::Expect;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match cmd {
        Command::Put { key, value } => (0u8, key, value).hash(&mut h),
        Command::Delete { key } => (1u8, key).hash(&mut h),
        Command::CompareAndSwap { key, value, expect } => {
            (2u8, key, value).hash(&mut h);
            match expect {
                Expect::Value(v) => (0u8, v).hash(&mut h),
                Expect::Absent => 1u8.hash(&mut h),
                Expect::Revision(r) => (2u8, r).hash(&mut h),
            }
        }
        Command::WithSession {
            session,
            at_ms,
            write,
        } => (3u8, session, at_ms, command_key(write)).hash(&mut h),
        Command::Batch(writes) => {
            4u8.hash(&mut h);
            for w in writes {
                command_key(w).hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Whether the current span (a request's) is being traced: its proposal then
/// goes alone, so replication and apply can join its trace.
pub fn current_is_traced() -> bool {
    let span = Span::current();
    !span.is_none() && sampled_context(&span).is_some()
}

fn sampled_context(span: &Span) -> Option<SpanContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then_some(sc)
}

/// A leader's proposal of one command: a `raft.propose` span (child of the
/// current span) from `client_write` until it returns, registered in the
/// table so replication and apply join the trace. Also feeds the proposal
/// metrics.
pub struct Proposal {
    links: Arc<TraceLinks>,
    span: Span,
    key: Option<u64>,
    start: Instant,
}

impl Proposal {
    pub fn start(links: &Arc<TraceLinks>, cmd: &Command) -> Self {
        // Only inside a request's span (the server layer skips requests the
        // sampler would drop; a proposal must not start a trace of its own).
        let span = if tracing::Span::current().is_none() {
            Span::none()
        } else {
            tracing::debug_span!(
                SPAN_PROPOSE,
                raft.node_id = tracing::field::Empty,
                raft.index = tracing::field::Empty,
                raft.term = tracing::field::Empty,
                raft.bytes = tracing::field::Empty,
            )
        };
        let key = sampled_context(&span).map(|sc| {
            let k = command_key(cmd);
            links.insert(Key::Command(k), sc);
            k
        });
        if key.is_some() {
            span.record("raft.bytes", command_bytes(cmd));
            span.record("raft.node_id", links.node_id);
        }
        Proposal {
            links: links.clone(),
            span,
            key,
            start: Instant::now(),
        }
    }

    /// The span to instrument `client_write` with.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Ends the proposal; `log_id` is `(term, index)` of the committed entry.
    pub fn finish(self, log_id: Option<(u64, u64)>) {
        super::metrics::node().proposal_done(self.start.elapsed(), log_id.is_some());
        if let Some(k) = self.key {
            self.links.remove(Key::Command(k));
            if let Some((term, index)) = log_id {
                self.span.record("raft.term", term);
                self.span.record("raft.index", index);
                self.span.add_event(
                    EVENT_COMMITTED,
                    vec![opentelemetry::KeyValue::new("raft.index", index as i64)],
                );
            }
        }
    }
}

fn command_bytes(cmd: &Command) -> u64 {
    match cmd {
        Command::Put { key, value } | Command::CompareAndSwap { key, value, .. } => {
            (key.len() + value.len()) as u64
        }
        Command::Delete { key } => key.len() as u64,
        Command::WithSession { write, .. } => command_bytes(write),
        Command::Batch(writes) => writes.iter().map(command_bytes).sum(),
    }
}

/// How long a `raft.election` span stays open at most (a campaign that
/// neither wins nor sees a leader within this is ended anyway).
pub const ELECTION_SPAN_MAX: std::time::Duration = std::time::Duration::from_secs(3);

impl TraceLinks {
    /// The traced entries among `entries` (leader side of AppendEntries): their
    /// span contexts, first one first. Remembers their indexes for apply.
    pub fn parent_for_entries(&self, entries: &[Entry]) -> Vec<SpanContext> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut found: Vec<SpanContext> = Vec::new();
        for e in entries {
            let index = e.log_id.index;
            let sc = self.get(Key::Index(index)).or_else(|| {
                let sc = match &e.payload {
                    openraft::EntryPayload::Normal(cmd) => {
                        self.get(Key::Command(command_key(cmd)))?
                    }
                    openraft::EntryPayload::Membership(_) => self.get(Key::Membership)?,
                    openraft::EntryPayload::Blank => return None,
                };
                self.insert(Key::Index(index), sc.clone());
                Some(sc)
            });
            if let Some(sc) = sc
                && !found.iter().any(|f| f.span_id() == sc.span_id())
            {
                found.push(sc);
            }
        }
        found
    }

    /// Follower side: the received `indexes` belong to the trace of `span` (the
    /// AppendEntries server span), if it is sampled.
    pub fn remember_indexes(&self, span: &Span, indexes: impl IntoIterator<Item = u64>) {
        if let Some(sc) = sampled_context(span) {
            for i in indexes {
                self.insert(Key::Index(i), sc.clone());
            }
        }
    }

    /// A `raft.apply` span for the entry at `index` if it belongs to a sampled
    /// trace (and forgets the index). `None` costs one atomic load.
    pub fn apply_span(&self, index: u64) -> Option<Span> {
        let sc = self.remove(Key::Index(index))?;
        let span =
            tracing::debug_span!(SPAN_APPLY, raft.index = index, raft.node_id = self.node_id);
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
        Some(span)
    }

    /// A membership change on the leader (`kind`: add_learner, change_voters,
    /// ...): a `raft.membership` span around openraft's call, which returns once
    /// the joint and the final configuration are committed. Its entries join the
    /// span's trace on every node (like a proposal's).
    pub async fn membership_change<E>(
        &self,
        kind: &'static str,
        fut: impl std::future::Future<Output = Result<crate::typ::ClientWriteResponse, E>>,
    ) -> Result<crate::typ::ClientWriteResponse, E> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            SPAN_MEMBERSHIP,
            raft.membership.change = kind,
            raft.index = tracing::field::Empty
        );
        let traced = sampled_context(&span)
            .map(|sc| self.insert(Key::Membership, sc))
            .is_some();
        let r = fut.instrument(span.clone()).await;
        if traced {
            self.remove(Key::Membership);
        }
        if let Ok(resp) = &r {
            span.record("raft.index", resp.log_id.index);
            span.add_event(
                EVENT_COMMITTED,
                vec![opentelemetry::KeyValue::new(
                    "raft.index",
                    resp.log_id.index as i64,
                )],
            );
        }
        r
    }

    /// The candidate's campaign for `term`: a root `raft.election` span shared by
    /// the Vote requests of that term (the first call opens it). Returns its
    /// context if sampled.
    pub fn election_parent(self: &Arc<Self>, term: u64) -> Vec<SpanContext> {
        let me = self.node_id;
        let mut g = self.election.lock();
        if let Some((t, span)) = &*g
            && *t == term
        {
            return sampled_context(span).into_iter().collect();
        }
        let span =
            tracing::debug_span!(parent: None, SPAN_ELECTION, raft.node_id = me, raft.term = term);
        let sc = sampled_context(&span);
        *g = Some((term, span));
        drop(g);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let links = self.clone();
            rt.spawn(async move {
                tokio::time::sleep(ELECTION_SPAN_MAX).await;
                links.end_election(term, "timeout");
            });
        }
        sc.into_iter().collect()
    }

    /// Ends the campaign span of `term` or older (a leader is known, or a later
    /// term started), with its outcome as an event.
    pub fn end_election(&self, term: u64, outcome: &'static str) {
        let mut g = self.election.lock();
        if let Some((t, span)) = &*g
            && *t <= term
        {
            span.add_event(
                "raft.election.end",
                vec![opentelemetry::KeyValue::new(
                    "raft.election.outcome",
                    outcome,
                )],
            );
            *g = None;
        }
    }
}

impl TraceLinks {
    /// A metrics report: a known leader ends the campaign span of its term.
    pub fn observe(&self, m: &crate::typ::RaftMetrics) {
        if let Some(leader) = m.current_leader {
            let outcome = if leader == m.id {
                "won"
            } else {
                "leader_elected"
            };
            self.end_election(m.current_term, outcome);
        }
    }
}

/// The node's [`StorageHooks`]: apply spans of traced writes, and snapshot
/// spans and counters.
pub struct NodeStorageHooks {
    pub links: Arc<TraceLinks>,
}

impl StorageHooks for NodeStorageHooks {
    fn apply_span(&self, index: u64) -> Option<Span> {
        self.links.apply_span(index)
    }

    fn snapshot_build_span(&self) -> Span {
        tracing::debug_span!(SPAN_SNAPSHOT_BUILD, raft.index = tracing::field::Empty)
    }

    fn snapshot_built(&self, _index: u64) {
        super::metrics::node().snapshots_built.inc();
    }
}

/// Makes `span` a child of the first context and links the others (an
/// AppendEntries that carries entries of several traced writes).
pub fn adopt(span: &Span, contexts: &[SpanContext]) {
    if let Some((first, rest)) = contexts.split_first() {
        let _ =
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(first.clone()));
        for sc in rest.iter().take(16) {
            span.add_link(sc.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    fn sc(n: u64) -> SpanContext {
        SpanContext::new(
            TraceId::from(u128::from(n)),
            SpanId::from(n),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    }

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(cmd),
        }
    }

    fn put(k: &str) -> Command {
        Command::Put {
            key: k.as_bytes().to_vec(),
            value: b"v".to_vec(),
        }
    }

    #[test]
    fn traced_commands_are_found_by_content_then_by_index_and_the_table_is_bounded() {
        let links = TraceLinks::new(1);
        let cmd = put("links-test-a");
        links.insert(Key::Command(command_key(&cmd)), sc(41));
        let entries = vec![
            entry(900_001, put("links-test-untraced")),
            entry(900_002, cmd.clone()),
        ];
        let found = links.parent_for_entries(&entries);
        assert_eq!(found, vec![sc(41)]);
        // The index is now known, even after the proposal is done.
        links.remove(Key::Command(command_key(&cmd)));
        assert_eq!(links.parent_for_entries(&entries[1..]), vec![sc(41)]);
        assert_eq!(links.get(Key::Index(900_002)), Some(sc(41)));
        assert_eq!(links.get(Key::Index(900_001)), None);
        assert_ne!(
            command_key(&put("a")),
            command_key(&Command::Delete { key: b"a".to_vec() })
        );

        for i in 0..(TRACED_ENTRIES_MAX as u64 + 100) {
            links.insert(Key::Index(800_000 + i), sc(7));
        }
        assert!(links.with_table(|t| t.map.len()) <= TRACED_ENTRIES_MAX);
        assert!(links.with_table(|t| t.order.len()) <= 2 * TRACED_ENTRIES_MAX + 1);
        // The oldest went first.
        assert_eq!(links.get(Key::Index(800_000)), None);
        assert_eq!(
            links.get(Key::Index(800_000 + TRACED_ENTRIES_MAX as u64 + 99)),
            Some(sc(7))
        );
    }
}
