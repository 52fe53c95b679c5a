//! Fault injection for the reliability suite: drop or delay outgoing peer
//! RPCs, fail or delay fsyncs. Off by default; [`FaultArgs::warn_if_on`] logs
//! loudly at start when any knob is on; every injected fault is recorded as a
//! `fault.injected` event on the affected span and counted in the metrics.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::observability::semconv::{EVENT_FAULT_INJECTED, FAULT_KIND};
use crate::storage::FsyncFaults;

/// Fault-injection flags of `raft-node` (each also an environment variable).
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct FaultArgs {
    /// Percentage of outgoing peer RPCs (AppendEntries, Vote, InstallSnapshot)
    /// dropped without being sent (the sender sees a network error).
    #[arg(long, env = "RAFTKV_FAULT_PEER_DROP_PCT", default_value_t = 0.0, value_parser = parse_pct)]
    pub fault_peer_drop_pct: f64,
    /// Percentage of outgoing peer RPCs delayed by a random time in
    /// `--fault-peer-delay` (default 100 when a delay range is given).
    #[arg(long, env = "RAFTKV_FAULT_PEER_DELAY_PCT", value_parser = parse_pct)]
    pub fault_peer_delay_pct: Option<f64>,
    /// Delay range for peer RPCs, `MIN..MAX` or one value, e.g. `5ms..50ms`.
    #[arg(long, env = "RAFTKV_FAULT_PEER_DELAY", value_parser = parse_delay_range)]
    pub fault_peer_delay: Option<DelayRange>,
    /// Apply the peer drop and delay only to RPCs sent to these peer addresses
    /// (comma-separated `host:port`): one slow link instead of a slow node.
    #[arg(long, env = "RAFTKV_FAULT_PEER_ONLY_TO", value_delimiter = ',')]
    pub fault_peer_only_to: Vec<String>,
    /// Percentage of fsyncs that fail (the log writer then stops; the node
    /// must restart and recover, as after a real fsync failure).
    #[arg(long, env = "RAFTKV_FAULT_FSYNC_FAIL_PCT", default_value_t = 0.0, value_parser = parse_pct)]
    pub fault_fsync_fail_pct: f64,
    /// Every fsync after the first N of the process fails (a disk that breaks
    /// while the node runs).
    #[arg(long, env = "RAFTKV_FAULT_FSYNC_FAIL_AFTER")]
    pub fault_fsync_fail_after: Option<u64>,
    /// Percentage of fsyncs delayed by `--fault-fsync-delay`.
    #[arg(long, env = "RAFTKV_FAULT_FSYNC_DELAY_PCT", default_value_t = 0.0, value_parser = parse_pct)]
    pub fault_fsync_delay_pct: f64,
    /// How long a delayed fsync sleeps first, e.g. `20ms`.
    #[arg(long, env = "RAFTKV_FAULT_FSYNC_DELAY", value_parser = humantime::parse_duration, default_value = "0s")]
    pub fault_fsync_delay: Duration,
}

/// An inclusive range of delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayRange(pub RangeInclusive<Duration>);

fn parse_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{s:?} is not a percentage in [0, 100]"));
    }
    Ok(v)
}

fn parse_delay_range(s: &str) -> Result<DelayRange, String> {
    let d = |x: &str| humantime::parse_duration(x.trim()).map_err(|e| format!("{x:?}: {e}"));
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (d(a)?, d(b.trim_start_matches('='))?),
        None => (d(s)?, d(s)?),
    };
    if lo > hi {
        return Err(format!("delay range {s:?} has MIN above MAX"));
    }
    Ok(DelayRange(lo..=hi))
}

fn pct_to_ppm(p: f64) -> u32 {
    (p * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32
}

impl FaultArgs {
    pub fn peer(&self) -> PeerFaults {
        let delay = self.fault_peer_delay.clone().map(|r| r.0);
        let delay_pct = match (&delay, self.fault_peer_delay_pct) {
            (None, _) => 0.0,
            (Some(_), None) => 100.0,
            (Some(_), Some(p)) => p,
        };
        PeerFaults {
            drop_ppm: pct_to_ppm(self.fault_peer_drop_pct),
            delay_ppm: pct_to_ppm(delay_pct),
            delay: delay.unwrap_or(Duration::ZERO..=Duration::ZERO),
            only_to: self.fault_peer_only_to.clone(),
        }
    }

    /// For `StorageOptions.fsync_faults`.
    pub fn fsync(&self) -> FsyncFaults {
        FsyncFaults {
            fail_ppm: pct_to_ppm(self.fault_fsync_fail_pct),
            delay_ppm: pct_to_ppm(self.fault_fsync_delay_pct),
            delay: self.fault_fsync_delay,
            fail_after: self.fault_fsync_fail_after,
        }
    }

    pub fn is_on(&self) -> bool {
        self.peer().is_on() || self.fsync().is_on()
    }

    /// The loud start-up warning (docs/design.md: fault knobs log loudly when on).
    pub fn warn_if_on(&self) {
        let (peer, fsync) = (self.peer(), self.fsync());
        if peer.is_on() {
            tracing::warn!(
                drop_pct = self.fault_peer_drop_pct,
                delay_pct = peer.delay_ppm as f64 / 10_000.0,
                delay = ?peer.delay,
                only_to = ?peer.only_to,
                "FAULT INJECTION ON: outgoing peer RPCs are dropped/delayed on purpose; never run like this in production"
            );
        }
        if fsync.is_on() {
            tracing::warn!(
                fail_pct = self.fault_fsync_fail_pct,
                fail_after = ?self.fault_fsync_fail_after,
                delay_pct = self.fault_fsync_delay_pct,
                delay = ?self.fault_fsync_delay,
                "FAULT INJECTION ON: fsyncs fail/are delayed on purpose; never run like this in production"
            );
        }
    }
}

/// Faults for outgoing peer RPCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFaults {
    pub drop_ppm: u32,
    pub delay_ppm: u32,
    pub delay: RangeInclusive<Duration>,
    /// Peer addresses the faults apply to; empty: every peer.
    pub only_to: Vec<String>,
}

impl Default for PeerFaults {
    fn default() -> Self {
        PeerFaults {
            drop_ppm: 0,
            delay_ppm: 0,
            delay: Duration::ZERO..=Duration::ZERO,
            only_to: Vec::new(),
        }
    }
}

/// What to do with one outgoing peer RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    None,
    Drop,
    Delay(Duration),
}

impl PeerFaults {
    pub fn is_on(&self) -> bool {
        self.drop_ppm > 0 || (self.delay_ppm > 0 && !self.delay.end().is_zero())
    }

    /// The decision for one RPC (pure given `rng`). A drop wins over a delay.
    pub fn decide_with<R: Rng + ?Sized>(&self, rng: &mut R) -> PeerFault {
        if self.drop_ppm > 0 && rng.random_range(0..1_000_000) < self.drop_ppm {
            return PeerFault::Drop;
        }
        if self.delay_ppm > 0 && rng.random_range(0..1_000_000) < self.delay_ppm {
            let (lo, hi) = (
                self.delay.start().as_nanos() as u64,
                self.delay.end().as_nanos() as u64,
            );
            return PeerFault::Delay(Duration::from_nanos(rng.random_range(lo..=hi)));
        }
        PeerFault::None
    }

    /// Whether RPCs to the peer at `addr` are subject to the faults.
    pub fn applies_to(&self, addr: &str) -> bool {
        self.only_to.is_empty() || self.only_to.iter().any(|a| a == addr)
    }

    /// Decides for one RPC to `method` sent to the peer at `target` and carries
    /// it out: sleeps for a delay; returns `true` when the RPC must be dropped.
    /// Both are recorded as a `fault.injected` event on `span` and counted in
    /// the metrics.
    pub async fn apply(&self, method: &'static str, target: &str, span: &tracing::Span) -> bool {
        if !self.is_on() || !self.applies_to(target) {
            return false;
        }
        let fault = self.decide_with(&mut rand::rng());
        match fault {
            PeerFault::None => false,
            PeerFault::Drop => {
                record(span, "peer_rpc_drop", method, None);
                true
            }
            PeerFault::Delay(d) => {
                record(span, "peer_rpc_delay", method, Some(d));
                tokio::time::sleep(d).await;
                false
            }
        }
    }
}

fn record(span: &tracing::Span, kind: &'static str, method: &'static str, delay: Option<Duration>) {
    let mut attrs = vec![opentelemetry::KeyValue::new(FAULT_KIND, kind)];
    if let Some(d) = delay {
        attrs.push(opentelemetry::KeyValue::new(
            "fault.delay_ms",
            d.as_secs_f64() * 1e3,
        ));
    }
    span.add_event(EVENT_FAULT_INJECTED, attrs);
    crate::observability::metrics::node().fault_injected(kind);
    tracing::debug!(parent: span, fault.kind = kind, rpc.method = method, ?delay, "fault injected");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rand::SeedableRng;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        f: FaultArgs,
    }

    fn parse(args: &[&str]) -> Result<FaultArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.f)
    }

    #[test]
    fn faults_are_off_by_default() {
        let f = parse(&[]).unwrap();
        assert!(!f.is_on());
        assert_eq!(f.peer(), PeerFaults::default());
        assert_eq!(f.fsync(), FsyncFaults::default());
    }

    #[test]
    fn flags_turn_into_peer_and_fsync_faults() {
        let f = parse(&[
            "--fault-peer-drop-pct",
            "12.5",
            "--fault-peer-delay",
            "5ms..50ms",
            "--fault-fsync-fail-pct",
            "1",
            "--fault-fsync-delay-pct",
            "50",
            "--fault-fsync-delay",
            "20ms",
        ])
        .unwrap();
        assert!(f.is_on());
        let p = f.peer();
        assert_eq!(p.drop_ppm, 125_000);
        assert_eq!(
            p.delay_ppm, 1_000_000,
            "a delay range alone delays every RPC"
        );
        assert_eq!(
            p.delay,
            Duration::from_millis(5)..=Duration::from_millis(50)
        );
        let s = f.fsync();
        assert_eq!(
            (s.fail_ppm, s.delay_ppm, s.delay),
            (10_000, 500_000, Duration::from_millis(20))
        );
        assert!(
            p.applies_to("10.0.0.9:7001"),
            "no --fault-peer-only-to: every peer"
        );
        let one = parse(&[
            "--fault-peer-delay",
            "300ms",
            "--fault-peer-only-to",
            "10.0.0.2:7001,10.0.0.3:7001",
        ])
        .unwrap()
        .peer();
        assert!(one.applies_to("10.0.0.3:7001"));
        assert!(!one.applies_to("10.0.0.4:7001"));
        assert!(parse(&["--fault-peer-drop-pct", "101"]).is_err());
        assert!(parse(&["--fault-peer-delay", "50ms..5ms"]).is_err());
    }

    #[test]
    fn decisions_follow_the_rates() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let p = PeerFaults {
            drop_ppm: 200_000,
            delay_ppm: 500_000,
            delay: Duration::from_millis(1)..=Duration::from_millis(3),
            only_to: Vec::new(),
        };
        let (mut drops, mut delays) = (0, 0);
        for _ in 0..10_000 {
            match p.decide_with(&mut rng) {
                PeerFault::Drop => drops += 1,
                PeerFault::Delay(d) => {
                    assert!(p.delay.contains(&d), "{d:?}");
                    delays += 1;
                }
                PeerFault::None => {}
            }
        }
        // 20% drops; 50% of the remaining 80% delayed.
        assert!((1_800..=2_200).contains(&drops), "{drops}");
        assert!((3_700..=4_300).contains(&delays), "{delays}");
        let all = PeerFaults {
            drop_ppm: 1_000_000,
            ..PeerFaults::default()
        };
        assert_eq!(all.decide_with(&mut rng), PeerFault::Drop);
        assert_eq!(PeerFaults::default().decide_with(&mut rng), PeerFault::None);
    }
}
