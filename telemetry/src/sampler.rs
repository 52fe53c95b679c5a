//! Trace sampling: parent-based, with a trace-ID ratio AND a per-process rate
//! limit on new traces for root spans.
//!
//! The decision is taken once, at the root of a trace, and every child follows
//! it (on this node through the span tree, on other nodes through the sampled
//! flag of the W3C `traceparent`), so traces are kept whole or not at all.
//!
//! Root decision, in order:
//! 1. a span named in the caller's `never_root` list is never the root of a
//!    trace (on a node: a heartbeat AppendEntries that carries no traced write
//!    must not start a trace, or heartbeats would use up the rate limit). The
//!    names come from the caller (the node's `observability::sampler::NEVER_ROOT`),
//!    so this crate knows no span names;
//! 2. the trace-ID ratio (`OTEL_TRACES_SAMPLER_ARG`), deterministic per trace ID
//!    like the SDK's `TraceIdRatioBased`;
//! 3. the token bucket ([`TokenBucket`]): `rate_per_min` new traces per minute,
//!    with a burst of one minute's budget. Only roots that passed the ratio take
//!    a token.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};
use parking_lot::Mutex;

/// Default `RAFTKV_TRACE_RATE_PER_MIN`.
pub const TRACE_RATE_PER_MIN_DEFAULT: u32 = 20;
/// Upper bound of `RAFTKV_TRACE_RATE_PER_MIN` (1000 new traces per second).
/// Above this the limit protects nothing; use 0 (unlimited) instead.
pub const TRACE_RATE_PER_MIN_MAX: u32 = 60_000;

/// A monotonic clock, injectable so the bucket can be tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A token bucket: `capacity` tokens, refilled continuously at
/// `capacity` per `period`. Pure: time is passed in. Exact integer
/// arithmetic: one token is `period` nanoseconds of credit, and every elapsed
/// nanosecond adds `capacity` credit.
///
/// Over any window of length `t` it admits at most `capacity * (1 + t/period)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    capacity: u128,
    period_nanos: u128,
    credit: u128,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(capacity: u32, period: Duration, now: Duration) -> Self {
        assert!(capacity > 0, "a token bucket needs a positive capacity");
        assert!(!period.is_zero(), "a token bucket needs a positive period");
        let (capacity, period_nanos) = (u128::from(capacity), period.as_nanos());
        TokenBucket {
            capacity,
            period_nanos,
            credit: capacity * period_nanos,
            last: now,
        }
    }

    /// `rate_per_min` tokens a minute, burst of one minute's budget.
    pub fn per_minute(rate_per_min: u32, now: Duration) -> Self {
        Self::new(rate_per_min, Duration::from_secs(60), now)
    }

    /// Whether [`TokenBucket::try_take`] at `now` would succeed (takes nothing).
    pub fn has_token(&self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_nanos();
        let full = self.capacity * self.period_nanos;
        let credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(self.capacity))
            .min(full);
        credit >= self.period_nanos
    }

    /// Takes one token if there is one. A `now` earlier than the last call
    /// (a clock that went back) refills nothing.
    pub fn try_take(&mut self, now: Duration) -> bool {
        if now > self.last {
            let elapsed = (now - self.last).as_nanos();
            let full = self.capacity * self.period_nanos;
            self.credit = self
                .credit
                .saturating_add(elapsed.saturating_mul(self.capacity))
                .min(full);
            self.last = now;
        }
        if self.credit >= self.period_nanos {
            self.credit -= self.period_nanos;
            true
        } else {
            false
        }
    }
}

/// Sampling settings, from `OTEL_TRACES_SAMPLER{,_ARG}` and
/// `RAFTKV_TRACE_RATE_PER_MIN` (see [`SamplingConfig::from_env`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// Fraction of new traces kept before the rate limit, in [0, 1].
    pub ratio: f64,
    /// New traces per minute; `None` = unlimited.
    pub rate_per_min: Option<u32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            ratio: 1.0,
            rate_per_min: Some(TRACE_RATE_PER_MIN_DEFAULT),
        }
    }
}

impl SamplingConfig {
    /// Reads the standard variables plus `RAFTKV_TRACE_RATE_PER_MIN`.
    pub fn from_env() -> Result<Self, String> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self::parse(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            get("RAFTKV_TRACE_RATE_PER_MIN").as_deref(),
        )
    }

    /// Decisions are always parent-based (children follow their parent, so
    /// traces stay whole); the sampler name picks the root ratio:
    /// `always_on`/`parentbased_always_on` = 1, `always_off`/`parentbased_always_off`
    /// = 0, `traceidratio`/`parentbased_traceidratio` = `arg` (default 1).
    /// Rate: a number of new traces per minute, `0` or `unlimited` for no limit.
    pub fn parse(
        sampler: Option<&str>,
        arg: Option<&str>,
        rate: Option<&str>,
    ) -> Result<Self, String> {
        let ratio = match sampler.map(str::trim).unwrap_or("parentbased_always_on") {
            "always_on" | "parentbased_always_on" => 1.0,
            "always_off" | "parentbased_always_off" => 0.0,
            "traceidratio" | "parentbased_traceidratio" => match arg.map(str::trim) {
                None => 1.0,
                Some(a) => {
                    let r: f64 = a.parse().map_err(|_| {
                        format!("OTEL_TRACES_SAMPLER_ARG {a:?} is not a number in [0, 1]")
                    })?;
                    if !(0.0..=1.0).contains(&r) {
                        return Err(format!("OTEL_TRACES_SAMPLER_ARG {a:?} is not in [0, 1]"));
                    }
                    r
                }
            },
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER {other:?} is not supported (use always_on, always_off, traceidratio \
                     or their parentbased_ forms)"
                ));
            }
        };
        let rate_per_min = match rate.map(str::trim) {
            None => Some(TRACE_RATE_PER_MIN_DEFAULT),
            Some("0") | Some("unlimited") => None,
            Some(r) => {
                let n: u32 = r.parse().map_err(|_| {
                    format!("RAFTKV_TRACE_RATE_PER_MIN {r:?} is not a count of traces per minute")
                })?;
                if n > TRACE_RATE_PER_MIN_MAX {
                    return Err(format!(
                        "RAFTKV_TRACE_RATE_PER_MIN {n} is above {TRACE_RATE_PER_MIN_MAX}; use 0 for no limit"
                    ));
                }
                Some(n)
            }
        };
        Ok(SamplingConfig {
            ratio,
            rate_per_min,
        })
    }

    /// The SDK sampler: parent-based around a [`RootSampler`] that never lets
    /// a span named in `never_root` start a trace. Also makes that root
    /// sampler the process's [`root_may_sample`] gate.
    pub fn sampler(&self, clock: Arc<dyn Clock>, never_root: &'static [&'static str]) -> Sampler {
        let root = RootSampler::new(*self, clock, never_root);
        let _ = GATE.set(root.clone());
        Sampler::ParentBased(Box::new(root))
    }
}

static GATE: std::sync::OnceLock<RootSampler> = std::sync::OnceLock::new();

/// A cheap pre-check before creating the root span of a would-be trace: false
/// when the installed sampler would certainly drop it (ratio 0, or no token in
/// the bucket right now), so the caller can skip the span and its children.
/// Takes no token (the sampler does, when the span starts). True when no
/// sampler is installed.
pub fn root_may_sample() -> bool {
    match GATE.get() {
        None => true,
        Some(s) => s.may_sample(),
    }
}

/// The decision for spans without a (valid) parent. Wrap it in
/// `Sampler::ParentBased` (as [`SamplingConfig::sampler`] does).
#[derive(Clone, Debug)]
pub struct RootSampler {
    /// `ratio * 2^63`, compared with the top 63 bits of the trace ID's low half.
    ratio_bound: u64,
    bucket: Option<Arc<Mutex<TokenBucket>>>,
    clock: Arc<dyn Clock>,
    /// Span names that never start a trace (they are only kept as children).
    never_root: &'static [&'static str],
}

impl RootSampler {
    /// `never_root`: span names that never start a trace (heartbeats and polls
    /// would otherwise use up the rate limit); they are still kept as children.
    pub fn new(
        cfg: SamplingConfig,
        clock: Arc<dyn Clock>,
        never_root: &'static [&'static str],
    ) -> Self {
        let ratio_bound = if cfg.ratio >= 1.0 {
            u64::MAX
        } else {
            (cfg.ratio.max(0.0) * (1u64 << 63) as f64) as u64
        };
        let bucket = cfg
            .rate_per_min
            .filter(|r| *r > 0)
            .map(|r| Arc::new(Mutex::new(TokenBucket::per_minute(r, clock.now()))));
        RootSampler {
            ratio_bound,
            bucket,
            clock,
            never_root,
        }
    }

    /// See [`root_may_sample`].
    pub fn may_sample(&self) -> bool {
        self.ratio_bound > 0
            && self
                .bucket
                .as_ref()
                .is_none_or(|b| b.lock().has_token(self.clock.now()))
    }

    /// The pure part of the decision (rules 1 and 2 of the module docs).
    fn passes_name_and_ratio(&self, name: &str, trace_id: TraceId) -> bool {
        if self.never_root.contains(&name) {
            return false;
        }
        if self.ratio_bound == u64::MAX {
            return true;
        }
        let bytes = trace_id.to_bytes();
        let low = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) >> 1;
        low < self.ratio_bound
    }
}

impl ShouldSample for RootSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let keep = self.passes_name_and_ratio(name, trace_id)
            && self
                .bucket
                .as_ref()
                .is_none_or(|b| b.lock().try_take(self.clock.now()));
        let trace_state = match parent_context {
            Some(cx) if cx.has_active_span() => cx.span().span_context().trace_state().clone(),
            _ => TraceState::default(),
        };
        SamplingResult {
            decision: if keep {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};

    const MIN: Duration = Duration::from_secs(60);
    /// A never-root name as a node passes it (a heartbeat).
    const HEARTBEAT: &str = "raftkv.v1.RaftPeer/AppendEntries";
    const NEVER_ROOT: &[&str] = &[HEARTBEAT];

    #[derive(Debug, Default)]
    struct ManualClock(Mutex<Duration>);
    impl ManualClock {
        fn advance(&self, d: Duration) {
            *self.0.lock() += d;
        }
    }
    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            *self.0.lock()
        }
    }

    fn take_all(b: &mut TokenBucket, now: Duration) -> u32 {
        let mut n = 0;
        while b.try_take(now) {
            n += 1;
            assert!(n < 1_000_000, "bucket never empties");
        }
        n
    }

    #[test]
    fn bucket_starts_full_and_admits_its_capacity_in_a_burst() {
        let mut b = TokenBucket::per_minute(20, Duration::ZERO);
        assert_eq!(take_all(&mut b, Duration::ZERO), 20);
        assert!(!b.try_take(Duration::ZERO));
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let mut b = TokenBucket::per_minute(20, Duration::ZERO);
        take_all(&mut b, Duration::ZERO);
        // 20/min = one token every 3 s.
        assert!(!b.try_take(Duration::from_millis(2_999)));
        assert!(b.try_take(Duration::from_millis(3_000)));
        assert!(!b.try_take(Duration::from_millis(3_001)));
        assert_eq!(take_all(&mut b, Duration::from_secs(30)), 9);
    }

    #[test]
    fn has_token_predicts_try_take_without_taking() {
        let mut b = TokenBucket::per_minute(2, Duration::ZERO);
        for _ in 0..2 {
            assert!(b.has_token(Duration::ZERO));
            assert!(b.has_token(Duration::ZERO), "peeking takes nothing");
            assert!(b.try_take(Duration::ZERO));
        }
        assert!(!b.has_token(Duration::ZERO));
        assert!(!b.has_token(Duration::from_millis(29_999)));
        assert!(b.has_token(Duration::from_secs(30)));
        assert!(b.try_take(Duration::from_secs(30)));
    }

    #[test]
    fn the_gate_says_no_when_the_sampler_would_drop_a_root() {
        let clock = Arc::new(ManualClock::default());
        let s = RootSampler::new(cfg(1.0, Some(1)), clock.clone(), NEVER_ROOT);
        assert!(s.may_sample());
        assert_eq!(root(&s, "r", 1), SamplingDecision::RecordAndSample);
        assert!(!s.may_sample());
        clock.advance(MIN);
        assert!(s.may_sample());
        assert!(!RootSampler::new(cfg(0.0, None), clock.clone(), NEVER_ROOT).may_sample());
        assert!(RootSampler::new(cfg(0.5, None), clock, NEVER_ROOT).may_sample());
    }

    #[test]
    fn bucket_never_holds_more_than_its_capacity() {
        let mut b = TokenBucket::per_minute(5, Duration::ZERO);
        assert_eq!(take_all(&mut b, Duration::from_secs(3600)), 5);
    }

    #[test]
    fn bucket_ignores_a_clock_that_goes_back() {
        let mut b = TokenBucket::per_minute(1, Duration::from_secs(100));
        assert!(b.try_take(Duration::from_secs(100)));
        assert!(!b.try_take(Duration::from_secs(10)));
        assert!(!b.try_take(Duration::from_secs(159)));
        assert!(b.try_take(Duration::from_secs(160)));
    }

    #[test]
    fn bucket_admits_at_most_capacity_times_one_plus_window_over_period() {
        // Property over a steady stream of attempts every 100 ms for 10 minutes.
        let mut b = TokenBucket::per_minute(20, Duration::ZERO);
        let mut admitted = Vec::new();
        for i in 0..6000u64 {
            let now = Duration::from_millis(i * 100);
            if b.try_take(now) {
                admitted.push(now);
            }
        }
        for (i, start) in admitted.iter().enumerate() {
            let end = *start + MIN;
            let in_window = admitted[i..].iter().take_while(|t| **t < end).count();
            assert!(
                in_window <= 40,
                "{in_window} admitted in the minute from {start:?}"
            );
        }
        // The long-run rate is the configured one: 20 + 20/min * 10 min.
        assert!(admitted.len() <= 20 + 200 + 1, "{}", admitted.len());
        assert!(admitted.len() >= 200, "{}", admitted.len());
    }

    fn root(s: &RootSampler, name: &str, trace_id: u128) -> SamplingDecision {
        s.should_sample(
            None,
            TraceId::from(trace_id),
            name,
            &SpanKind::Server,
            &[],
            &[],
        )
        .decision
    }

    fn cfg(ratio: f64, rate: Option<u32>) -> SamplingConfig {
        SamplingConfig {
            ratio,
            rate_per_min: rate,
        }
    }

    #[test]
    fn root_sampler_applies_the_rate_limit_to_new_traces() {
        let clock = Arc::new(ManualClock::default());
        let s = RootSampler::new(cfg(1.0, Some(3)), clock.clone(), NEVER_ROOT);
        let kept = (1..=10u128)
            .filter(|t| root(&s, "raftkv.v1.KV/Put", *t) == SamplingDecision::RecordAndSample);
        assert_eq!(kept.count(), 3);
        clock.advance(Duration::from_secs(20));
        assert_eq!(
            root(&s, "raftkv.v1.KV/Put", 11),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(root(&s, "raftkv.v1.KV/Put", 12), SamplingDecision::Drop);
    }

    #[test]
    fn root_sampler_ratio_zero_keeps_nothing_and_one_keeps_everything() {
        let clock = Arc::new(ManualClock::default());
        let none = RootSampler::new(cfg(0.0, None), clock.clone(), NEVER_ROOT);
        let all = RootSampler::new(cfg(1.0, None), clock, NEVER_ROOT);
        for t in [1u128, u128::MAX, 0x1234_5678_9abc_def0_1234_5678_9abc_def0] {
            assert_eq!(root(&none, "x", t), SamplingDecision::Drop);
            assert_eq!(root(&all, "x", t), SamplingDecision::RecordAndSample);
        }
    }

    #[test]
    fn root_sampler_ratio_is_about_right_and_drops_take_no_tokens() {
        let clock = Arc::new(ManualClock::default());
        let s = RootSampler::new(cfg(0.25, Some(TRACE_RATE_PER_MIN_MAX)), clock, NEVER_ROOT);
        let mut kept = 0;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if root(&s, "x", u128::from(x) << 64 | u128::from(x))
                == SamplingDecision::RecordAndSample
            {
                kept += 1;
            }
        }
        // 25% of 20000 = 5000, all within the bucket (60000 tokens).
        assert!((4_500..=5_500).contains(&kept), "{kept}");
    }

    #[test]
    fn never_root_spans_do_not_start_traces_or_take_tokens() {
        let clock = Arc::new(ManualClock::default());
        let s = RootSampler::new(cfg(1.0, Some(1)), clock, NEVER_ROOT);
        assert_eq!(root(&s, HEARTBEAT, 1), SamplingDecision::Drop);
        assert_eq!(
            root(&s, "raftkv.v1.KV/Put", 2),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn children_follow_the_parent_decision_without_taking_tokens() {
        let clock = Arc::new(ManualClock::default());
        let sampler = cfg(1.0, Some(1)).sampler(clock, NEVER_ROOT);
        let parent = |flags| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            ))
        };
        let sampled = parent(TraceFlags::SAMPLED);
        let unsampled = parent(TraceFlags::default());
        for _ in 0..10 {
            let d = sampler.should_sample(
                Some(&sampled),
                TraceId::from(7u128),
                "c",
                &SpanKind::Server,
                &[],
                &[],
            );
            assert_eq!(d.decision, SamplingDecision::RecordAndSample);
            // Even a never-root span is kept as a child of a sampled trace.
            let d = sampler.should_sample(
                Some(&sampled),
                TraceId::from(7u128),
                HEARTBEAT,
                &SpanKind::Client,
                &[],
                &[],
            );
            assert_eq!(d.decision, SamplingDecision::RecordAndSample);
            let d = sampler.should_sample(
                Some(&unsampled),
                TraceId::from(7u128),
                "c",
                &SpanKind::Server,
                &[],
                &[],
            );
            assert_eq!(d.decision, SamplingDecision::Drop);
        }
        // The single token is still there for a root.
        let d = sampler.should_sample(None, TraceId::from(8u128), "r", &SpanKind::Server, &[], &[]);
        assert_eq!(d.decision, SamplingDecision::RecordAndSample);
        let d = sampler.should_sample(None, TraceId::from(9u128), "r", &SpanKind::Server, &[], &[]);
        assert_eq!(d.decision, SamplingDecision::Drop);
    }

    #[test]
    fn config_parses_the_standard_variables() {
        assert_eq!(
            SamplingConfig::parse(None, None, None).unwrap(),
            SamplingConfig::default()
        );
        let c = SamplingConfig::parse(Some("parentbased_traceidratio"), Some("0.5"), Some("0"))
            .unwrap();
        assert_eq!(c, cfg(0.5, None));
        assert_eq!(
            SamplingConfig::parse(Some("always_off"), None, Some("7")).unwrap(),
            cfg(0.0, Some(7))
        );
        assert_eq!(
            SamplingConfig::parse(Some("traceidratio"), None, Some("unlimited")).unwrap(),
            cfg(1.0, None)
        );
        assert!(SamplingConfig::parse(Some("traceidratio"), Some("1.5"), None).is_err());
        assert!(SamplingConfig::parse(Some("traceidratio"), Some("x"), None).is_err());
        assert!(SamplingConfig::parse(Some("jaeger_remote"), None, None).is_err());
        assert!(SamplingConfig::parse(None, None, Some("-1")).is_err());
        assert!(SamplingConfig::parse(None, None, Some("60001")).is_err());
    }
}
