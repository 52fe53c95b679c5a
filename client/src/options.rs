//! Client settings (every bound in one place) and the request option types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use raftkv_proto::v1;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

use super::error::{Error, Result};

/// Called on the metadata of every outgoing request (each attempt). This is
/// the hook for W3C trace context (`traceparent`) injection.
pub type RequestHook = Arc<dyn Fn(&mut MetadataMap) + Send + Sync>;

/// The default hook: the current span's trace context. Without an installed
/// OpenTelemetry layer spans have no valid context and nothing is written, so
/// no process-wide switch is needed.
fn trace_context_hook() -> RequestHook {
    Arc::new(raftkv_telemetry::propagation::inject)
}

#[derive(Clone)]
pub struct ClientOptions {
    /// TCP connect timeout per endpoint. Short, so a dead endpoint is skipped fast.
    pub connect_timeout: Duration,
    /// Timeout of one attempt (one RPC to one endpoint).
    pub request_timeout: Duration,
    /// Total time one call may spend on retries before it fails with the last error.
    pub retry_deadline: Duration,
    /// Upper bound on attempts per call; 0 = bounded only by `retry_deadline`.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Jump to the endpoint named in an `x-raftkv-leader` hint.
    pub follow_leader_hints: bool,
    /// Largest reply accepted (a Range reply can hold many values).
    pub max_decoding_message_bytes: usize,
    /// Metadata added to every request (e.g. `x-raftkv-forwarded` for node-to-node use).
    pub metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    /// See [`RequestHook`]. Defaults to W3C trace-context injection.
    pub request_hook: Option<RequestHook>,
    /// TLS for every channel (`tls::Credentials::client_config`); `None`
    /// speaks plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name every server certificate is verified for instead of the host
    /// dialed: for endpoints the certificate cannot list (a port-forward on
    /// `127.0.0.1`, as `kubectl raft` uses).
    pub tls_server_name: Option<String>,
    /// Send a write session with every Put, Delete and CAS (exactly-once:
    /// a retry of a write whose outcome was unknown is not applied twice, so
    /// CAS is retried then too). Off: at-least-once, as against a server
    /// older than sessions (which ignores them anyway).
    pub write_sessions: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(15),
            max_attempts: 0,
            backoff: Backoff::default(),
            follow_leader_hints: true,
            max_decoding_message_bytes: 64 * 1024 * 1024,
            metadata: Vec::new(),
            request_hook: Some(trace_context_hook()),
            tls: None,
            tls_server_name: None,
            write_sessions: true,
        }
    }
}

impl ClientOptions {
    /// Options for talking to exactly one node, once: no hint following, no
    /// retries (the caller, e.g. a node forwarding a write, has its own policy).
    pub fn single_attempt() -> Self {
        ClientOptions {
            max_attempts: 1,
            follow_leader_hints: false,
            ..Default::default()
        }
    }

    /// Set the per-attempt timeout and a total retry deadline of twice that
    /// (at least the default), as raftctl's `--timeout` does.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self.retry_deadline = timeout.max(Duration::from_millis(1)) * 2;
        self
    }

    /// Add a metadata entry sent with every request.
    pub fn with_metadata(mut self, key: &str, value: &str) -> Result<Self> {
        let bad = |what: &str| Error::InvalidEndpoint {
            endpoint: key.to_string(),
            reason: what.to_string(),
        };
        let k = AsciiMetadataKey::from_bytes(key.as_bytes())
            .map_err(|_| bad("invalid metadata key"))?;
        let v = AsciiMetadataValue::try_from(value).map_err(|_| bad("invalid metadata value"))?;
        self.metadata.push((k, v));
        Ok(self)
    }

    pub(crate) fn decorate(&self, md: &mut MetadataMap) {
        for (k, v) in &self.metadata {
            md.insert(k.clone(), v.clone());
        }
        if let Some(hook) = &self.request_hook {
            hook(md);
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry_deadline", &self.retry_deadline)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("follow_leader_hints", &self.follow_leader_hints)
            .field("metadata", &self.metadata)
            .field("request_hook", &self.request_hook.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Exponential backoff between retry rounds (a round = every endpoint tried once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed round.
    pub initial: Duration,
    /// Cap on one delay. Kept well under an election timeout (400-800 ms by
    /// default): after a leader dies the client notices the new one at most
    /// this late, and this is part of the failover time users see. Costs one
    /// RPC per endpoint per delay per waiting client while there is no leader.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// Delay before retry round `round` (0 = the first retry round):
    /// `min(max, initial * 2^round)` scaled by `jitter` (clamped to [0.5, 1]),
    /// so concurrent clients do not retry in lockstep.
    pub fn delay(&self, round: u32, jitter: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(round.min(20)).unwrap_or(u32::MAX));
        let capped = base.min(self.max);
        capped.mul_f64(jitter.clamp(0.5, 1.0))
    }
}

/// How a read is served (see docs/design.md, "Reads").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex through the leader; the default.
    #[default]
    Linearizable,
    /// Served locally if the node is at most `max_staleness` behind a current
    /// leader; zero means the server's default bound.
    Bounded { max_staleness: Duration },
    /// Whatever the serving node has applied.
    Stale,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub consistency: Consistency,
    /// Read-your-writes: the serving node waits until it has applied this store
    /// revision (0 = no wait).
    pub min_revision: u64,
}

impl ReadOptions {
    pub fn linearizable() -> Self {
        ReadOptions::default()
    }
    pub fn bounded(max_staleness: Duration) -> Self {
        ReadOptions {
            consistency: Consistency::Bounded { max_staleness },
            min_revision: 0,
        }
    }
    pub fn stale() -> Self {
        ReadOptions {
            consistency: Consistency::Stale,
            min_revision: 0,
        }
    }
    pub fn with_min_revision(mut self, revision: u64) -> Self {
        self.min_revision = revision;
        self
    }
}

impl From<ReadOptions> for v1::ReadOptions {
    fn from(r: ReadOptions) -> Self {
        let (consistency, max_staleness_ms) = match r.consistency {
            Consistency::Linearizable => (v1::Consistency::Linearizable, 0),
            Consistency::Bounded { max_staleness } => (
                v1::Consistency::Bounded,
                u64::try_from(max_staleness.as_millis()).unwrap_or(u64::MAX),
            ),
            Consistency::Stale => (v1::Consistency::Stale, 0),
        };
        v1::ReadOptions {
            consistency: consistency as i32,
            max_staleness_ms,
            min_revision: r.min_revision,
        }
    }
}

/// The condition of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The current value equals this.
    Value(Vec<u8>),
    /// The key does not exist.
    Absent,
    /// The key's `mod_revision` equals this.
    Revision(u64),
}

impl From<Expect> for v1::compare_and_swap_request::Expect {
    fn from(e: Expect) -> Self {
        use v1::compare_and_swap_request::Expect as P;
        match e {
            Expect::Value(v) => P::ExpectValue(v),
            Expect::Absent => P::ExpectAbsent(true),
            Expect::Revision(r) => P::ExpectRevision(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(50));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(4, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(5, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn backoff_jitter_stays_within_half_and_full_delay() {
        let b = Backoff::default();
        for round in 0..40 {
            for jitter in [-1.0, 0.0, 0.3, 0.5, 0.77, 1.0, 7.0] {
                let d = b.delay(round, jitter);
                let full = b.delay(round, 1.0);
                assert!(d <= full, "round {round} jitter {jitter}: {d:?} > {full:?}");
                assert!(
                    d >= full / 2,
                    "round {round} jitter {jitter}: {d:?} < half of {full:?}"
                );
                assert!(d <= b.max);
            }
        }
    }

    #[test]
    fn read_options_map_to_proto() {
        let p = v1::ReadOptions::from(
            ReadOptions::bounded(Duration::from_millis(500)).with_min_revision(7),
        );
        assert_eq!(p.consistency, v1::Consistency::Bounded as i32);
        assert_eq!(p.max_staleness_ms, 500);
        assert_eq!(p.min_revision, 7);
        let p = v1::ReadOptions::from(ReadOptions::default());
        assert_eq!(p.consistency, v1::Consistency::Linearizable as i32);
        assert_eq!(
            v1::ReadOptions::from(ReadOptions::stale()).consistency,
            v1::Consistency::Stale as i32
        );
    }

    #[test]
    fn with_timeout_sets_attempt_and_total_deadline() {
        let o = ClientOptions::default().with_timeout(Duration::from_secs(3));
        assert_eq!(o.request_timeout, Duration::from_secs(3));
        assert_eq!(o.retry_deadline, Duration::from_secs(6));
    }

    #[test]
    fn metadata_and_hook_are_applied() {
        let hook: RequestHook = Arc::new(|md: &mut MetadataMap| {
            md.insert(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                    .parse()
                    .unwrap(),
            );
        });
        let mut o = ClientOptions::default()
            .with_metadata("x-raftkv-forwarded", "1")
            .unwrap();
        o.request_hook = Some(hook);
        let mut md = MetadataMap::new();
        o.decorate(&mut md);
        assert_eq!(md.get("x-raftkv-forwarded").unwrap(), "1");
        assert!(md.get("traceparent").is_some());
        assert!(
            ClientOptions::default()
                .with_metadata("bad key", "1")
                .is_err()
        );
    }
}
