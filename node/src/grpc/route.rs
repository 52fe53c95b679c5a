//! Where a write or an administrative call is executed: here (this node leads)
//! or forwarded to the leader. One rule for the KV and the Cluster services.

use std::time::Duration;

use raftkv_proto::FORWARDED_HEADER;
use tonic::Request;
use tonic::Status;
use tonic::transport::Channel;

use crate::NodeId;
use crate::grpc::errors;
use crate::node::Node;

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local,
    Forward { leader: NodeId, client_addr: String },
}

/// Why a request cannot be executed or forwarded right now (all retryable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This leader is handing leadership off.
    Transferring,
    /// This node leads, but no quorum has answered it for longer than an
    /// election timeout: nothing it proposes can commit.
    CutOff {
        silent: Duration,
    },
    NoLeader,
    /// A forwarded request reached a node that does not lead: never forward twice.
    ForwardedToFollower {
        leader: NodeId,
        client_addr: String,
    },
}

/// What the node knows when a request arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    pub is_leader: bool,
    pub transferring: bool,
    /// On a leader: how long a quorum has been silent, when longer than an
    /// election timeout (`Node::cut_off_for`).
    pub cut_off: Option<Duration>,
    /// The known leader and its client address.
    pub leader: Option<(NodeId, String)>,
    /// The request was already forwarded once.
    pub forwarded: bool,
}

/// The rule: a leader executes unless it is handing off; a follower forwards
/// to the leader it knows, once.
pub fn decide(v: &RouteView) -> Result<Route, Refusal> {
    if v.is_leader {
        if v.transferring {
            return Err(Refusal::Transferring);
        }
        if let Some(silent) = v.cut_off {
            return Err(Refusal::CutOff { silent });
        }
        return Ok(Route::Local);
    }
    let Some((leader, client_addr)) = v.leader.clone() else {
        return Err(Refusal::NoLeader);
    };
    if v.forwarded {
        return Err(Refusal::ForwardedToFollower {
            leader,
            client_addr,
        });
    }
    Ok(Route::Forward {
        leader,
        client_addr,
    })
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Transferring => {
                Status::unavailable("leadership is being handed off; retry shortly")
            }
            Refusal::CutOff { silent } => Status::unavailable(format!(
                "this node leads but no quorum of voters has answered it for {} ms \
                 (more than an election timeout): it cannot commit; retry on another \
                 member, a reachable majority elects a new leader",
                silent.as_millis()
            )),
            Refusal::NoLeader => Status::unavailable(
                "no leader is known right now (election in progress?); retry shortly",
            ),
            Refusal::ForwardedToFollower {
                leader,
                client_addr,
            } => errors::unavailable_with_hint(
                format!("forwarded request reached a non-leader; the leader is {leader}"),
                Some(&client_addr),
            ),
        }
    }
}

/// The leader a request is forwarded to.
pub struct Leader {
    pub id: NodeId,
    pub client_addr: String,
    pub channel: Channel,
}

/// Routes `req` on `node`: `None` to execute here, or the leader to forward to.
pub fn route<T>(node: &Node, req: &Request<T>) -> Result<Option<Leader>, Status> {
    // Read in place, not cloned: a RaftMetrics clone copies the membership
    // and replication maps, on every request (it showed in the write profile,
    // docs/performance.md). A leader's view needs neither the leader's
    // address nor the forwarded mark (`decide` reads them on followers only),
    // so those lookups are skipped there too.
    let view = node.with_metrics(|m| {
        let is_leader = m.state.is_leader();
        RouteView {
            is_leader,
            transferring: node.is_transferring(),
            cut_off: node.cut_off_for(m),
            leader: if is_leader {
                None
            } else {
                node.leader(m).map(|(id, info)| (id, info.client_addr))
            },
            forwarded: !is_leader && req.metadata().contains_key(FORWARDED_HEADER),
        }
    });
    match decide(&view)? {
        Route::Local => Ok(None),
        Route::Forward {
            leader,
            client_addr,
        } => Ok(Some(Leader {
            id: leader,
            channel: node.forward_channel(&client_addr)?,
            client_addr,
        })),
    }
}

/// A request on its way to the leader, marked so that it is never forwarded a
/// second time.
pub fn forwarded<T>(inner: T) -> Request<T> {
    let mut r = Request::new(inner);
    r.metadata_mut().insert(
        FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const SILENT: Duration = Duration::from_millis(900);

    fn view(
        is_leader: bool,
        transferring: bool,
        cut_off: bool,
        leader: bool,
        forwarded: bool,
    ) -> RouteView {
        RouteView {
            is_leader,
            transferring,
            cut_off: cut_off.then_some(SILENT),
            leader: leader.then(|| (7, "10.0.0.7:7000".to_string())),
            forwarded,
        }
    }

    /// Every combination of the five inputs, against the rule written as a table.
    #[test]
    fn every_combination_routes_by_the_table() {
        for bits in 0..32u8 {
            let (l, t, c, k, f) = (
                bits & 1 != 0,
                bits & 2 != 0,
                bits & 4 != 0,
                bits & 8 != 0,
                bits & 16 != 0,
            );
            let got = decide(&view(l, t, c, k, f));
            let fwd = Route::Forward {
                leader: 7,
                client_addr: "10.0.0.7:7000".into(),
            };
            let expect = match (l, t, c, k, f) {
                (true, true, _, _, _) => Err(Refusal::Transferring),
                (true, false, true, _, _) => Err(Refusal::CutOff { silent: SILENT }),
                (true, false, false, _, _) => Ok(Route::Local),
                (false, _, _, false, _) => Err(Refusal::NoLeader),
                (false, _, _, true, true) => Err(Refusal::ForwardedToFollower {
                    leader: 7,
                    client_addr: "10.0.0.7:7000".into(),
                }),
                (false, _, _, true, false) => Ok(fwd),
            };
            assert_eq!(
                got, expect,
                "leader={l} transferring={t} cut_off={c} known={k} forwarded={f}"
            );
        }
    }

    #[test]
    fn a_cut_off_leader_refuses_with_a_retryable_error_that_says_why() {
        let s = Status::from(Refusal::CutOff { silent: SILENT });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(s.message().contains("no quorum"), "{}", s.message());
        assert!(s.message().contains("900 ms"), "{}", s.message());
    }

    #[test]
    fn refusals_are_retryable_and_hint_the_leader() {
        let s = Status::from(Refusal::ForwardedToFollower {
            leader: 7,
            client_addr: "10.0.0.7:7000".into(),
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(
            s.metadata()
                .get(raftkv_proto::LEADER_HINT_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("10.0.0.7:7000")
        );
    }
}
