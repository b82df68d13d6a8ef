//! Tail sampling: which traces are forwarded, decided once the root is in.
//!
//! The decision needs the whole trace (did anything fail, how long did the
//! root take, what did it cost), which only the aggregator knows, when the
//! trace's root arrives or the assembly buffer gives up waiting. So the
//! aggregator publishes each finished trace's summary through
//! [`TraceSubscriber`] (defined on its side), the sampler subscribes and
//! decides, and each destination's sender asks [`Sampler::lookup`] for the
//! traces of the request it is about to send.
//!
//! Queued requests keep their spans on disk or in memory until then: a span
//! waits at most `decision_wait` for its trace's decision, after which it is
//! forwarded (kept) — a decision lost to a restart, or a root that never
//! comes, errs on the side of keeping data. Metrics never depend on this:
//! they are recorded from every span before anything is queued.

use super::config::SamplingConfig;
use crate::aggregate::finished::{TraceSubscriber, TraceSummary};
use crate::export::names::SAMPLING_DECISIONS;
use crate::export::Registry;
use crate::normalize::TraceId;
use foldhash::fast::RandomState;
use metrics::Counter;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Why a trace was kept or dropped (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Error,
    Slow,
    Cost,
    Probability,
    /// No decision in time (root never came, or decided before a restart).
    Undecided,
}

impl Reason {
    const ALL: [Reason; 5] = [
        Reason::Error,
        Reason::Slow,
        Reason::Cost,
        Reason::Probability,
        Reason::Undecided,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Reason::Error => "error",
            Reason::Slow => "slow",
            Reason::Cost => "cost",
            Reason::Probability => "probability",
            Reason::Undecided => "undecided",
        }
    }
}

struct Table {
    keep: HashMap<TraceId, bool, RandomState>,
    order: VecDeque<TraceId>,
}

pub struct Sampler {
    cfg: SamplingConfig,
    wait: Duration,
    table: Mutex<Table>,
    /// (decision, reason) → counter; index = reason * 2 + keep.
    counters: Vec<Counter>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").field("cfg", &self.cfg).finish()
    }
}

impl Sampler {
    /// `None` when sampling is off (every span is forwarded unexamined).
    pub fn new(
        cfg: &SamplingConfig,
        trace_timeout: Duration,
        registry: &Registry,
    ) -> Option<Sampler> {
        if !cfg.enabled {
            return None;
        }
        let wait = if cfg.decision_wait_ms == 0 {
            trace_timeout + Duration::from_secs(2)
        } else {
            Duration::from_millis(cfg.decision_wait_ms)
        };
        let mut counters = Vec::new();
        for r in Reason::ALL {
            for keep in [false, true] {
                let decision = if keep { "keep" } else { "drop" };
                counters.push(registry.counter(
                    SAMPLING_DECISIONS,
                    &[("decision", decision), ("reason", r.as_str())],
                ));
            }
        }
        Some(Sampler {
            cfg: cfg.clone(),
            wait,
            table: Mutex::new(Table {
                keep: HashMap::default(),
                order: VecDeque::new(),
            }),
            counters,
        })
    }

    /// How long a queued span may wait for its decision.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The policy, without side effects.
    pub fn policy(&self, trace: &TraceId, s: &TraceSummary) -> (bool, Reason) {
        let c = &self.cfg;
        if c.keep_errors && s.error {
            return (true, Reason::Error);
        }
        if c.slower_than_ms > 0 && s.duration_s * 1000.0 > c.slower_than_ms as f64 {
            return (true, Reason::Slow);
        }
        if c.costlier_than_usd > 0.0 && s.cost_usd.is_some_and(|u| u > c.costlier_than_usd) {
            return (true, Reason::Cost);
        }
        (by_probability(trace, c.probability), Reason::Probability)
    }

    /// Decides for a trace whose root has been recorded; the first decision
    /// for a trace wins (a retried export does not flip it).
    pub fn decide(&self, trace: TraceId, s: &TraceSummary) -> bool {
        let (keep, reason) = self.policy(&trace, s);
        self.record(trace, keep, reason)
    }

    /// A queued span's trace got no decision within `wait`: keep it, once.
    pub fn decide_undecided(&self, trace: TraceId) -> bool {
        self.record(trace, true, Reason::Undecided)
    }

    fn record(&self, trace: TraceId, keep: bool, reason: Reason) -> bool {
        let mut t = self.table.lock();
        if let Some(&k) = t.keep.get(&trace) {
            return k;
        }
        t.keep.insert(trace, keep);
        t.order.push_back(trace);
        while t.order.len() > self.cfg.max_decisions.get() {
            if let Some(old) = t.order.pop_front() {
                t.keep.remove(&old);
            }
        }
        drop(t);
        let idx =
            Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0) * 2 + usize::from(keep);
        if let Some(c) = self.counters.get(idx) {
            c.increment(1);
        }
        keep
    }

    #[cfg(test)]
    pub fn record_for_test(&self, trace: TraceId, keep: bool) -> bool {
        self.record(trace, keep, Reason::Probability)
    }

    pub fn lookup(&self, trace: &TraceId) -> Option<bool> {
        self.table.lock().keep.get(trace).copied()
    }

    #[cfg(test)]
    pub fn decisions_held(&self) -> usize {
        self.table.lock().keep.len()
    }
}

/// Deterministic in the trace id (W3C trace ids are random), so every
/// chainpulse replica and every destination agrees on the same traces.
/// The aggregator's finished traces become decisions.
impl TraceSubscriber for Sampler {
    fn trace_finished(&self, trace: TraceId, summary: &TraceSummary) {
        self.decide(trace, summary);
    }
}

fn by_probability(trace: &TraceId, p: f64) -> bool {
    if p >= 1.0 {
        return true;
    }
    if p <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace[8..16]);
    let x = u64::from_be_bytes(low);
    (x as f64) < p * (u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::text;

    fn cfg() -> SamplingConfig {
        SamplingConfig {
            enabled: true,
            keep_errors: true,
            slower_than_ms: 2000,
            costlier_than_usd: 0.05,
            probability: 0.0,
            decision_wait_ms: 0,
            max_decisions: std::num::NonZeroUsize::new(3).expect("non-zero"),
        }
    }

    fn id(n: u8) -> TraceId {
        let mut t = [0u8; 16];
        t[0] = n;
        t[15] = n;
        t
    }

    #[test]
    fn rules_in_order_and_counted() {
        let reg = Registry::new();
        let s = Sampler::new(&cfg(), Duration::from_secs(10), &reg).expect("enabled");
        assert_eq!(s.wait(), Duration::from_secs(12));
        let ok = TraceSummary {
            error: false,
            duration_s: 0.5,
            cost_usd: Some(0.001),
        };
        assert!(s.decide(id(1), &TraceSummary { error: true, ..ok }));
        assert!(s.decide(
            id(2),
            &TraceSummary {
                duration_s: 2.5,
                ..ok
            }
        ));
        assert!(s.decide(
            id(3),
            &TraceSummary {
                cost_usd: Some(0.06),
                ..ok
            }
        ));
        assert!(!s.decide(id(4), &ok));
        assert!(!s.decide(
            id(5),
            &TraceSummary {
                cost_usd: None,
                ..ok
            }
        ));
        // First decision wins.
        assert!(!s.decide(id(5), &TraceSummary { error: true, ..ok }));
        // Bounded: only the last 3 are remembered.
        assert_eq!(s.decisions_held(), 3);
        assert_eq!(s.lookup(&id(1)), None);
        assert_eq!(s.lookup(&id(4)), Some(false));
        assert!(s.decide_undecided(id(9)));
        let m = text::parse(&reg.render());
        let v =
            |d: &str, r: &str| text::sum(&m, SAMPLING_DECISIONS, &[("decision", d), ("reason", r)]);
        assert_eq!(v("keep", "error"), 1.0);
        assert_eq!(v("keep", "slow"), 1.0);
        assert_eq!(v("keep", "cost"), 1.0);
        assert_eq!(v("drop", "probability"), 2.0);
        assert_eq!(v("keep", "undecided"), 1.0);
    }

    #[test]
    fn probability_is_deterministic_and_roughly_right() {
        let mut kept = 0;
        for i in 0..10_000u32 {
            let mut t = [0u8; 16];
            // A well-mixed low half, like a random W3C id.
            let x = (u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            t[8..16].copy_from_slice(&x.to_be_bytes());
            if by_probability(&t, 0.25) {
                kept += 1;
            }
            assert_eq!(by_probability(&t, 0.25), by_probability(&t, 0.25));
        }
        assert!((2300..2700).contains(&kept), "{kept}");
        assert!(by_probability(&[0xff; 16], 1.0));
        assert!(!by_probability(&[0; 16], 0.0));
    }

    #[test]
    fn off_by_default() {
        let reg = Registry::new();
        assert!(Sampler::new(&SamplingConfig::default(), Duration::from_secs(1), &reg).is_none());
    }
}
