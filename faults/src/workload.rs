//! The clients: a few concurrent workers, each attached to a random member
//! (re-picked now and then and after errors), issuing put / get at every
//! consistency level / CAS / delete over a handful of keys with values unique
//! across the run. Each op has its own deadline; the outcome classification
//! below decides what the checker may assume, so it errs towards "unknown".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raftkv_proto::v1 as pb;
use raftkv_proto::v1::kv_client::KvClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::cluster::channel;
use crate::history::{Expect, Level, Op, OpKind, Outcome};

/// Deadline of one operation. Longer than an election (so a write proposed
/// during one usually completes), shorter than the server's forward timeout.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// The bound asked of bounded reads (the server's default).
pub const BOUNDED_MS: u64 = 500;
/// Further attempts of a write whose outcome is unknown, each to a member
/// picked afresh, with the same write session: the server applies the write
/// at most once, so an answer to a retry is the write's own answer and the op
/// is recorded as definite (invocation of the first attempt, completion of
/// the last).
pub const WRITE_RETRIES_MAX: u32 = 2;

/// Deliberately broken recording, to prove the checker bites.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Break {
    /// Reads that should be linearizable are sent as stale reads to followers
    /// but recorded as linearizable.
    StaleAsLinearizable,
    /// One acknowledged put in five is recorded as never invoked.
    DropAcks,
}

/// Members the workers may attach to: (node index, client address).
#[derive(Default)]
pub struct Targets {
    inner: RwLock<Vec<(usize, String)>>,
    /// Leader's index as last seen by the monitor (for the broken mode).
    pub leader: AtomicU64,
}

impl Targets {
    pub fn set(&self, t: Vec<(usize, String)>) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = t;
    }
    pub fn get(&self) -> Vec<(usize, String)> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Where completed ops go, with the clock every time is measured on.
pub struct Recorder {
    pub start: Instant,
    ops: std::sync::Mutex<Vec<Op>>,
    next_id: AtomicU64,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            ops: std::sync::Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        })
    }
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    pub fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }
    pub fn take(&self) -> Vec<Op> {
        let mut ops = std::mem::take(&mut *self.ops.lock().unwrap_or_else(|e| e.into_inner()));
        ops.sort_by_key(|o| (o.invoke_ns, o.id));
        ops
    }
}

pub struct Worker {
    pub process: u32,
    pub keys: usize,
    pub rng: StdRng,
    pub targets: Arc<Targets>,
    pub rec: Arc<Recorder>,
    pub broken: Option<Break>,
    /// Per key: the last value this worker saw (for CAS expectations).
    seen: Vec<Option<String>>,
    /// Highest store revision this worker saw in any reply.
    revision: u64,
    seq: u64,
    attached: Option<(usize, KvClient<tonic::transport::Channel>)>,
    /// This worker's write-session client ID (random per run and worker).
    client_id: u64,
    /// Sequence number of the last write sent.
    write_seq: u64,
}

/// One write, as sent on every attempt.
enum WriteReq {
    Put(pb::PutRequest),
    Cas(pb::CompareAndSwapRequest),
    Delete(pb::DeleteRequest),
}

enum WriteResp {
    Put(pb::PutResponse),
    Cas(pb::CompareAndSwapResponse),
    Delete(pb::DeleteResponse),
}

impl WriteReq {
    async fn send(
        &self,
        c: &mut KvClient<tonic::transport::Channel>,
    ) -> Result<WriteResp, tonic::Status> {
        Ok(match self {
            WriteReq::Put(r) => WriteResp::Put(c.put(req(r.clone())).await?.into_inner()),
            WriteReq::Cas(r) => {
                WriteResp::Cas(c.compare_and_swap(req(r.clone())).await?.into_inner())
            }
            WriteReq::Delete(r) => WriteResp::Delete(c.delete(req(r.clone())).await?.into_inner()),
        })
    }
}

impl Worker {
    pub fn new(
        process: u32,
        keys: usize,
        seed: u64,
        targets: Arc<Targets>,
        rec: Arc<Recorder>,
        broken: Option<Break>,
    ) -> Worker {
        Worker {
            process,
            keys,
            rng: StdRng::seed_from_u64(seed),
            targets,
            rec,
            broken,
            seen: vec![None; keys],
            revision: 0,
            seq: 0,
            attached: None,
            client_id: rand::random::<u64>().max(1),
            write_seq: 0,
        }
    }

    /// A new write's session. One write at a time per worker, so the
    /// worker waits for nothing older.
    fn session(&mut self) -> Option<pb::WriteSession> {
        self.write_seq += 1;
        Some(pb::WriteSession {
            client_id: self.client_id,
            seq: self.write_seq,
            first_incomplete: self.write_seq,
        })
    }

    /// Sends `w`, and again (same session, another member) while the
    /// outcome is unknown, up to [`WRITE_RETRIES_MAX`] times. After an
    /// unknown attempt a refusal no longer proves the write did nothing, so
    /// it is returned as a timeout (unknown).
    async fn write(
        &mut self,
        kind: OpKind,
        mut c: KvClient<tonic::transport::Channel>,
        w: &WriteReq,
    ) -> Result<WriteResp, tonic::Status> {
        let mut retries = 0;
        loop {
            let r = w.send(&mut c).await;
            let unknown = match &r {
                Ok(_) => return r,
                Err(s) if kind == OpKind::Cas && s.code() == Code::Aborted => return r,
                Err(s) => classify(kind, s) == Outcome::Unknown,
            };
            if retries > 0 && !unknown {
                let s = r.err().expect("an error");
                return Err(tonic::Status::deadline_exceeded(format!(
                    "an earlier attempt's outcome is unknown; the last one: {:?}: {}",
                    s.code(),
                    s.message()
                )));
            }
            if !unknown || retries == WRITE_RETRIES_MAX {
                return r;
            }
            retries += 1;
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(50..150))).await;
            let t = self.targets.get();
            if !t.is_empty() {
                let (_, addr) = &t[self.rng.random_range(0..t.len())];
                c = KvClient::new(channel(addr));
            }
        }
    }

    fn attach(&mut self) -> Option<(usize, KvClient<tonic::transport::Channel>)> {
        if self.attached.is_none() || self.rng.random_ratio(1, 50) {
            let t = self.targets.get();
            if t.is_empty() {
                return None;
            }
            let (i, addr) = &t[self.rng.random_range(0..t.len())];
            self.attached = Some((*i, KvClient::new(channel(addr))));
        }
        self.attached.clone()
    }

    pub async fn run(mut self, stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() {
            let Some((node, client)) = self.attach() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let op = self.one(node, client).await;
            if op.outcome() != Outcome::Ok {
                // Sometimes re-pick a member: clients of a dead member move
                // on, but some stay with a minority or a paused node, as real
                // clients do (re-picking on every error would drain the
                // minority side of a partition of all clients). Back off a
                // little so a dead member does not become a busy loop.
                if self.rng.random_ratio(1, 3) {
                    self.attached = None;
                }
                // A client backs off after a refusal. A fast refusal of a
                // write is still an unknown op (the server's "no leader is
                // known" reads the same before and after proposing), and
                // every unknown op widens the checker's search: retrying at
                // once would add hundreds per election for no new coverage.
                let pause = if op.outcome() == Outcome::Unknown {
                    self.rng.random_range(50..150)
                } else {
                    self.rng.random_range(5..30)
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let dropped = self.broken == Some(Break::DropAcks)
                && op.kind() == OpKind::Put
                && op.outcome() == Outcome::Ok
                && self.rng.random_ratio(1, 5);
            if !dropped {
                self.rec.record(op);
            }
        }
    }

    async fn one(&mut self, node: usize, mut c: KvClient<tonic::transport::Channel>) -> Op {
        let k = self.rng.random_range(0..self.keys);
        let key = format!("k{k}");
        self.seq += 1;
        let value = format!("p{}-{}", self.process, self.seq);
        let mut op = Op {
            id: self.rec.id(),
            process: self.process,
            node,
            key: key.clone(),
            ..Default::default()
        };
        let roll = self.rng.random_range(0..100);
        let result: Result<(), tonic::Status>;
        if roll < 50 {
            op.kind = Some(OpKind::Get);
            let (level, read) = self.pick_level();
            op.level = Some(level);
            match level {
                Level::Bounded => op.max_staleness_ms = Some(BOUNDED_MS),
                Level::MinRevision => op.min_revision = Some(read.min_revision),
                _ => {}
            }
            let mut read = read;
            if self.broken == Some(Break::StaleAsLinearizable) && level == Level::Linearizable {
                // The lie: served locally, recorded as linearizable.
                read.consistency = pb::Consistency::Stale as i32;
            }
            op.invoke_ns = self.rec.now();
            let r = c
                .get(req(pb::GetRequest {
                    key: key.clone().into_bytes(),
                    read: Some(read),
                }))
                .await;
            op.complete_ns = Some(self.rec.now());
            result = match r {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    self.header(&mut op, resp.header.as_ref());
                    let kv = resp.kv.unwrap_or_default();
                    op.read = Some(String::from_utf8_lossy(&kv.value).into_owned());
                    op.mod_revision = Some(kv.mod_revision);
                    self.seen[k] = op.read.clone();
                    Ok(())
                }
                Err(s) if s.code() == Code::NotFound => {
                    op.read = None;
                    self.seen[k] = None;
                    Ok(())
                }
                Err(s) => Err(s),
            };
        } else if roll < 70 {
            op.kind = Some(OpKind::Put);
            op.value = Some(value.clone());
            let w = WriteReq::Put(pb::PutRequest {
                session: self.session(),
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
            });
            op.invoke_ns = self.rec.now();
            let r = self.write(OpKind::Put, c, &w).await;
            op.complete_ns = Some(self.rec.now());
            result = r.map(|resp| {
                let WriteResp::Put(resp) = resp else {
                    unreachable!("a put's answer")
                };
                self.header(&mut op, resp.header.as_ref());
                op.mod_revision = resp.kv.map(|kv| kv.mod_revision);
                self.seen[k] = Some(value.clone());
            });
        } else if roll < 90 {
            op.kind = Some(OpKind::Cas);
            op.value = Some(value.clone());
            let expect = match &self.seen[k] {
                Some(v) if self.rng.random_ratio(4, 5) => Expect::Value(v.clone()),
                _ => Expect::Absent,
            };
            op.expect = Some(expect.clone());
            let pe = match expect {
                Expect::Value(v) => {
                    pb::compare_and_swap_request::Expect::ExpectValue(v.into_bytes())
                }
                Expect::Absent => pb::compare_and_swap_request::Expect::ExpectAbsent(true),
            };
            let w = WriteReq::Cas(pb::CompareAndSwapRequest {
                session: self.session(),
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                expect: Some(pe),
            });
            op.invoke_ns = self.rec.now();
            let r = self.write(OpKind::Cas, c, &w).await;
            op.complete_ns = Some(self.rec.now());
            result = match r {
                Ok(resp) => {
                    let WriteResp::Cas(resp) = resp else {
                        unreachable!("a CAS's answer")
                    };
                    self.header(&mut op, resp.header.as_ref());
                    op.mod_revision = resp.kv.map(|kv| kv.mod_revision);
                    op.swapped = Some(true);
                    self.seen[k] = Some(value.clone());
                    Ok(())
                }
                // The comparison was evaluated by the state machine and did
                // not hold: a definite result.
                Err(s) if s.code() == Code::Aborted => {
                    op.swapped = Some(false);
                    op.error = Some(s.message().to_string());
                    Ok(())
                }
                Err(s) => Err(s),
            };
        } else {
            op.kind = Some(OpKind::Delete);
            let w = WriteReq::Delete(pb::DeleteRequest {
                session: self.session(),
                key: key.clone().into_bytes(),
            });
            op.invoke_ns = self.rec.now();
            let r = self.write(OpKind::Delete, c, &w).await;
            op.complete_ns = Some(self.rec.now());
            result = r.map(|resp| {
                let WriteResp::Delete(resp) = resp else {
                    unreachable!("a delete's answer")
                };
                self.header(&mut op, resp.header.as_ref());
                op.deleted = Some(resp.deleted);
                self.seen[k] = None;
            });
        }
        match result {
            Ok(()) => op.outcome = Some(Outcome::Ok),
            Err(s) => {
                op.error = Some(format!("{:?}: {}", s.code(), s.message()));
                op.outcome = Some(classify(op.kind(), &s));
                if op.outcome == Some(Outcome::Unknown) {
                    op.complete_ns = None;
                }
            }
        }
        op
    }

    fn pick_level(&mut self) -> (Level, pb::ReadOptions) {
        let roll = self.rng.random_range(0..10);
        let (level, consistency) = match roll {
            0..=3 => (Level::Linearizable, pb::Consistency::Linearizable),
            4..=5 => (Level::Bounded, pb::Consistency::Bounded),
            6..=7 => (Level::Stale, pb::Consistency::Stale),
            _ => (Level::MinRevision, pb::Consistency::Stale),
        };
        (
            level,
            pb::ReadOptions {
                consistency: consistency as i32,
                max_staleness_ms: if level == Level::Bounded {
                    BOUNDED_MS
                } else {
                    0
                },
                min_revision: if level == Level::MinRevision {
                    self.revision.max(1)
                } else {
                    0
                },
            },
        )
    }

    fn header(&mut self, op: &mut Op, h: Option<&pb::ResponseHeader>) {
        if let Some(h) = h {
            op.revision = Some(h.revision);
            op.served_by = Some(h.node_id);
            self.revision = self.revision.max(h.revision);
        }
    }
}

fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(OP_TIMEOUT);
    r
}

/// What an error means for the op's effect.
///
/// Reads have no effect, so any error is a failure (the op is dropped from the
/// check). For writes only refusals that happen before the command is
/// proposed are definite failures:
///   - INVALID_ARGUMENT, FAILED_PRECONDITION: input or node-state checks that
///     run before routing;
///   - UNAVAILABLE "leadership is being handed off" (refused by the leader
///     before proposing) and "forwarded request reached a non-leader"
///     (refused by the forward target before proposing);
///   - a connection that could not be established (the request never left).
///
/// Everything else is unknown: UNAVAILABLE "not the leader"/"no leader is
/// known" can come from openraft after the entry was appended on a leader
/// that then stepped down (it may still commit), a forwarded write can
/// commit and lose its reply, and a timeout says nothing.
pub fn classify(kind: OpKind, s: &tonic::Status) -> Outcome {
    if kind == OpKind::Get {
        return Outcome::Fail;
    }
    let msg = s.message();
    match s.code() {
        // A write session whose answer is gone: it may have been applied.
        Code::FailedPrecondition if msg.contains("write session") => Outcome::Unknown,
        Code::InvalidArgument | Code::FailedPrecondition => Outcome::Fail,
        Code::Unavailable
            if msg.contains("leadership is being handed off")
                || msg.contains("forwarded request reached a non-leader")
                || never_sent(s) =>
        {
            Outcome::Fail
        }
        _ => Outcome::Unknown,
    }
}

/// True if the error is a failure to connect (nothing was sent).
fn never_sent(s: &tonic::Status) -> bool {
    let mut text = s.message().to_string();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        text.push_str(&format!(" | {e}"));
        src = e.source();
    }
    text.contains("tcp connect error") || text.contains("Connection refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pre_proposal_refusals_of_writes_are_failures() {
        let un = |m: &str| tonic::Status::unavailable(m.to_string());
        assert_eq!(
            classify(
                OpKind::Put,
                &un("leadership is being handed off; retry shortly")
            ),
            Outcome::Fail
        );
        assert_eq!(
            classify(
                OpKind::Cas,
                &un("forwarded request reached a non-leader; the leader is 3")
            ),
            Outcome::Fail
        );
        assert_eq!(
            classify(
                OpKind::Put,
                &un("no leader is known right now (election in progress?); retry shortly")
            ),
            Outcome::Unknown
        );
        assert_eq!(
            classify(OpKind::Delete, &tonic::Status::deadline_exceeded("t")),
            Outcome::Unknown
        );
        assert_eq!(
            classify(OpKind::Put, &tonic::Status::invalid_argument("too big")),
            Outcome::Fail
        );
        assert_eq!(
            classify(
                OpKind::Cas,
                &tonic::Status::failed_precondition(
                    "write session seq 3 is below 4, the lowest this client may still retry; its outcome is no longer known"
                )
            ),
            Outcome::Unknown
        );
        assert_eq!(
            classify(OpKind::Get, &tonic::Status::deadline_exceeded("t")),
            Outcome::Fail
        );
    }
}
