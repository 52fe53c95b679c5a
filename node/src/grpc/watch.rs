//! `KV/Watch`: the changes this member applies, streamed as it applies them
//! (docs/design.md "Watch"). Served where it arrives, never forwarded: a
//! watcher on a follower costs the leader nothing.
//!
//! The stream is the watcher itself, polled by the server: a client that
//! stops reading stops the polling, its cursor falls behind the shared ring
//! and the stream ends with OUT_OF_RANGE, so a slow reader never holds the
//! node's memory or the apply path. It also ends when the node stops (a
//! stream open forever would hold the server's graceful shutdown).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use raftkv_proto::v1 as pb;
use tokio::sync::watch;
use tonic::Status;

use crate::kv::watch::{Change, ChangeKind, WatchEnd};
use crate::kv::{KvLimits, WatchFilter};
use crate::node::Node;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

/// The request's keys, or INVALID_ARGUMENT saying what is wrong.
pub fn filter_of(req: &pb::WatchRequest, limits: &KvLimits) -> Result<WatchFilter, Status> {
    if !req.key.is_empty() {
        if !req.prefix.is_empty() {
            return Err(Status::invalid_argument(
                "give either a key or a prefix to watch, not both",
            ));
        }
        limits
            .check_key(&req.key)
            .map_err(crate::grpc::errors::input)?;
        return Ok(WatchFilter::Key(req.key.clone()));
    }
    if req.prefix.len() > limits.key_bytes_max {
        return Err(Status::invalid_argument(format!(
            "prefix is {} bytes, the key limit is {} bytes",
            req.prefix.len(),
            limits.key_bytes_max
        )));
    }
    Ok(WatchFilter::Prefix(req.prefix.clone()))
}

/// The status a watch ends with.
pub fn end_status(end: WatchEnd) -> Status {
    match end {
        WatchEnd::Behind { next } => Status::out_of_range(format!(
            "watch fell behind at revision {next}: the watcher read more slowly than this member applied; restart from a get"
        )),
        WatchEnd::Replaced { revision } => Status::out_of_range(format!(
            "watch ended: this member installed a snapshot at revision {revision}, the changes before it were not seen one by one; restart from a get"
        )),
        WatchEnd::Closed => Status::unavailable("this node is shutting down"),
    }
}

fn to_event(c: Change) -> pb::WatchEvent {
    let kind = match c.kind {
        ChangeKind::Put => pb::watch_event::EventType::Put,
        ChangeKind::Delete => pb::watch_event::EventType::Delete,
    };
    // Field by field like `grpc::kv::to_pb` (which this module cannot use:
    // `grpc::kv` serves Watch through this module).
    let kv = c.kv;
    pb::WatchEvent {
        r#type: kind as i32,
        kv: Some(pb::KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }),
    }
}

fn header(node: &Node, revision: u64) -> pb::ResponseHeader {
    // Borrowed, not cloned: one header per applied entry a watcher wants.
    let (leader_id, term) = node.with_metrics(|m| (m.current_leader.unwrap_or(0), m.current_term));
    pb::ResponseHeader {
        node_id: node.id(),
        revision,
        applied_index: node.reader().applied().index,
        leader_id,
        term,
        cluster_id: node.cluster_id(),
    }
}

/// Starts a watch: the first message (no events, the revision it starts
/// after), then one message per applied entry with matching changes.
pub fn start(
    node: Arc<Node>,
    req: pb::WatchRequest,
    stop: Option<watch::Receiver<bool>>,
) -> Result<WatchStream, Status> {
    let filter = filter_of(&req, &node.limits().kv)?;
    let (watcher, applied) = node
        .reader()
        .watch(filter, req.start_revision)
        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
    if req.start_revision != 0 && req.start_revision <= applied.revision {
        return Err(Status::out_of_range(format!(
            "start_revision {}: member {} has applied up to revision {} and keeps no history; get, then watch from revision {}",
            req.start_revision,
            node.id(),
            applied.revision,
            applied.revision + 1
        )));
    }
    let after = req.start_revision.max(applied.revision + 1) - 1;
    let first = pb::WatchResponse {
        header: Some(header(&node, after)),
        events: Vec::new(),
    };
    struct State {
        node: Arc<Node>,
        watcher: crate::kv::Watcher,
        stop: Option<watch::Receiver<bool>>,
        first: Option<pb::WatchResponse>,
        done: bool,
    }
    let state = State {
        node,
        watcher,
        stop,
        first: Some(first),
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(first) = st.first.take() {
            return Some((Ok(first), st));
        }
        let next = match st.stop.as_mut() {
            Some(stop) => tokio::select! {
                n = st.watcher.next() => n,
                _ = stop.wait_for(|s| *s) => Err(WatchEnd::Closed),
            },
            None => st.watcher.next().await,
        };
        let item = match next {
            Ok(changes) => {
                let revision = changes.last().map_or(0, Change::revision);
                Ok(pb::WatchResponse {
                    header: Some(header(&st.node, revision)),
                    events: changes.into_iter().map(to_event).collect(),
                })
            }
            Err(end) => {
                st.done = true;
                Err(end_status(end))
            }
        };
        Some((item, st))
    });
    Ok(Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_key_or_a_prefix_within_the_key_limit() {
        let l = KvLimits::default();
        let req = |key: &[u8], prefix: &[u8]| pb::WatchRequest {
            key: key.to_vec(),
            prefix: prefix.to_vec(),
            start_revision: 0,
        };
        assert_eq!(
            filter_of(&req(b"k", b""), &l).unwrap(),
            WatchFilter::Key(b"k".to_vec())
        );
        assert_eq!(
            filter_of(&req(b"", b"p/"), &l).unwrap(),
            WatchFilter::Prefix(b"p/".to_vec())
        );
        assert_eq!(
            filter_of(&req(b"", b""), &l).unwrap(),
            WatchFilter::Prefix(vec![])
        );
        let both = filter_of(&req(b"k", b"p"), &l).unwrap_err();
        assert_eq!(both.code(), tonic::Code::InvalidArgument);
        let long = filter_of(&req(b"", &vec![b'p'; 4097]), &l).unwrap_err();
        assert!(long.message().contains("4097 bytes"), "{long:?}");
        let key = filter_of(&req(&vec![b'k'; 4097], b""), &l).unwrap_err();
        assert_eq!(key.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_watch_ends_with_a_status_saying_where_to_restart() {
        let s = end_status(WatchEnd::Behind { next: 42 });
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert!(s.message().contains("fell behind at revision 42"), "{s:?}");
        let s = end_status(WatchEnd::Replaced { revision: 7 });
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert!(s.message().contains("snapshot at revision 7"), "{s:?}");
        assert_eq!(
            end_status(WatchEnd::Closed).code(),
            tonic::Code::Unavailable
        );
    }
}
