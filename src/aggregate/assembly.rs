//! Trace assembly: label every run with its chain (the trace's root run).
//!
//! Exporters send a child span when it *ends*, so children usually arrive
//! before their root, often in an earlier export request. A child is held
//! here until its root arrives, then released labelled with the root's name.
//! Holding is bounded three ways, each visible in a metric:
//!   * time: after `trace_timeout` the trace is released anyway, with its
//!     top-most span taken as the root (LangSmith, for instance, can parent
//!     its root to a span it never exports);
//!   * traces and spans held: past either cap the oldest trace is released
//!     the same way;
//!   * finished traces are remembered (chain name only) for `completed_ttl`,
//!     and at most `max_traces` of them, so a late child still gets its chain;
//!   * bytes held: a parked run owns copies of its few text fields (see
//!     [`park`]) instead of slices of the request it came in, and past
//!     `max_held_bytes` of those the oldest trace is released early. So a
//!     tiny waiting span never keeps a large request body (or a
//!     connection's read buffer) alive: memory is bounded by the limits
//!     above, not by the bytes received within `trace_timeout`.

use crate::config::AssemblyConfig;
use crate::normalize::{ChainRun, TraceId};
// foldhash: seeded per process (so hash flooding from network-chosen keys is
// not predictable) and several times faster than SipHash on short keys.
use foldhash::fast::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A run ready for aggregation.
#[derive(Debug)]
pub struct Labeled {
    pub run: ChainRun,
    /// The name of the trace's root run.
    pub chain: Arc<str>,
    /// This run is the trace's root and an invocation of the app (not a
    /// framework set-up span): it counts as one request.
    pub is_request: bool,
    /// This run is *the* record of one provider call: it counts as one LLM
    /// (or embedding) call, with its tokens and cost. `false` for every
    /// other run, including LLM spans that wrap another LLM span of the same
    /// call (see `calls`).
    pub billed: bool,
}

impl Labeled {
    pub fn new(run: ChainRun, chain: Arc<str>, root: bool) -> Labeled {
        Labeled {
            is_request: root && !run.setup,
            billed: run.kind.bills_tokens(),
            run,
            chain,
        }
    }
}

/// Why a trace left the buffer without its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Timeout,
    Capacity,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblyStats {
    pub evicted_timeout: u64,
    pub evicted_capacity: u64,
    pub inferred_roots: u64,
    pub late_spans: u64,
}

struct Pending {
    runs: Vec<ChainRun>,
    bytes: usize,
    since: Instant,
}

/// Detaches a run that is about to wait: every text field is copied out of
/// the request buffer it slices (so the buffer can be freed), and inputs /
/// outputs, which only forwarding reads (from the request itself, before
/// assembly), are dropped. Returns the bytes the run now holds.
pub fn park(run: &mut ChainRun) -> usize {
    use crate::normalize::Text;
    fn own(t: &mut Text) -> usize {
        *t = Text::from(t.as_str());
        t.len()
    }
    fn own_opt(t: &mut Option<Text>) -> usize {
        t.as_mut().map_or(0, own)
    }
    run.inputs = None;
    run.outputs = None;
    let mut bytes = std::mem::size_of::<ChainRun>() + own(&mut run.name);
    bytes += own_opt(&mut run.model) + own_opt(&mut run.response_model);
    bytes += own_opt(&mut run.provider) + own_opt(&mut run.error_type);
    bytes += own_opt(&mut run.session_id) + own_opt(&mut run.user_id);
    for t in &mut run.tags {
        bytes += own(t) + std::mem::size_of::<Text>();
    }
    for (k, v) in &mut run.metadata {
        bytes += own(k) + own(v) + 2 * std::mem::size_of::<Text>();
    }
    bytes
}

pub struct Assembler {
    pending: HashMap<TraceId, Pending, RandomState>,
    /// Pending traces in arrival order (entries of released traces are
    /// skipped lazily).
    order: VecDeque<(TraceId, Instant)>,
    completed: HashMap<TraceId, (Arc<str>, Instant), RandomState>,
    completed_order: VecDeque<(TraceId, Instant)>,
    spans_held: usize,
    bytes_held: usize,
    max_bytes: usize,
    timeout: Duration,
    completed_ttl: Duration,
    max_traces: usize,
    max_spans: usize,
    pub stats: AssemblyStats,
}

impl Assembler {
    pub fn new(cfg: &AssemblyConfig) -> Self {
        Assembler {
            pending: HashMap::default(),
            order: VecDeque::new(),
            completed: HashMap::default(),
            completed_order: VecDeque::new(),
            spans_held: 0,
            bytes_held: 0,
            max_bytes: cfg.max_held_bytes,
            timeout: cfg.trace_timeout(),
            completed_ttl: cfg.completed_ttl(),
            max_traces: cfg.max_traces,
            max_spans: cfg.max_spans,
            stats: AssemblyStats::default(),
        }
    }

    pub fn traces_held(&self) -> usize {
        self.pending.len()
    }

    pub fn spans_held(&self) -> usize {
        self.spans_held
    }

    /// Bytes the parked runs hold (their copied text fields).
    pub fn bytes_held(&self) -> usize {
        self.bytes_held
    }

    /// Takes one run; appends whatever became ready to `out`.
    pub fn accept(&mut self, run: ChainRun, now: Instant, out: &mut Vec<Labeled>) {
        // A root whose trace was already released (its root inferred after
        // the timeout, or a second parentless span) is late: the trace was
        // counted as a request once and must not be counted twice.
        if let (true, Some((chain, _))) = (run.is_root(), self.completed.get(&run.trace_id)) {
            self.stats.late_spans += 1;
            out.push(Labeled::new(run, chain.clone(), false));
            return;
        }
        if run.is_root() {
            let chain: Arc<str> = Arc::from(run.name.as_str());
            let trace_id = run.trace_id;
            out.push(Labeled::new(run, chain.clone(), true));
            if let Some(p) = self.pending.remove(&trace_id) {
                self.spans_held -= p.runs.len();
                self.bytes_held -= p.bytes;
                out.extend(
                    p.runs
                        .into_iter()
                        .map(|run| Labeled::new(run, chain.clone(), false)),
                );
            }
            self.remember(trace_id, chain, now);
            return;
        }
        if let Some((chain, _)) = self.completed.get(&run.trace_id) {
            self.stats.late_spans += 1;
            out.push(Labeled::new(run, chain.clone(), false));
            return;
        }
        let trace_id = run.trace_id;
        let mut run = run;
        let bytes = park(&mut run);
        let pending = self.pending.entry(trace_id).or_insert_with(|| {
            self.order.push_back((trace_id, now));
            Pending {
                runs: Vec::new(),
                bytes: 0,
                since: now,
            }
        });
        pending.runs.push(run);
        pending.bytes += bytes;
        self.spans_held += 1;
        self.bytes_held += bytes;
        while self.pending.len() > self.max_traces
            || self.spans_held > self.max_spans
            || self.bytes_held > self.max_bytes
        {
            if !self.evict_oldest(Eviction::Capacity, now, out) {
                break;
            }
        }
    }

    /// Releases traces that waited longer than the timeout, and forgets old
    /// completed traces. Call periodically.
    pub fn sweep(&mut self, now: Instant, out: &mut Vec<Labeled>) {
        while let Some(&(_, since)) = self.order.front() {
            if now.duration_since(since) < self.timeout {
                break;
            }
            self.evict_oldest(Eviction::Timeout, now, out);
        }
        while let Some(&(id, at)) = self.completed_order.front() {
            if now.duration_since(at) < self.completed_ttl
                && self.completed_order.len() <= self.max_traces
            {
                break;
            }
            self.completed_order.pop_front();
            if self.completed.get(&id).is_some_and(|(_, t)| *t == at) {
                self.completed.remove(&id);
            }
        }
    }

    /// Releases everything held (shutdown).
    pub fn drain(&mut self, now: Instant, out: &mut Vec<Labeled>) {
        while self.evict_oldest(Eviction::Timeout, now, out) {}
    }

    fn remember(&mut self, trace_id: TraceId, chain: Arc<str>, now: Instant) {
        self.completed.insert(trace_id, (chain, now));
        self.completed_order.push_back((trace_id, now));
        while self.completed_order.len() > self.max_traces {
            if let Some((id, at)) = self.completed_order.pop_front() {
                if self.completed.get(&id).is_some_and(|(_, t)| *t == at) {
                    self.completed.remove(&id);
                }
            }
        }
    }

    /// Releases the oldest pending trace with an inferred root. Returns
    /// false when nothing is pending.
    fn evict_oldest(&mut self, why: Eviction, now: Instant, out: &mut Vec<Labeled>) -> bool {
        while let Some((id, since)) = self.order.pop_front() {
            let current = self.pending.get(&id).is_some_and(|p| p.since == since);
            if !current {
                continue; // released earlier by its root
            }
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            self.spans_held -= p.runs.len();
            self.bytes_held -= p.bytes;
            match why {
                Eviction::Timeout => self.stats.evicted_timeout += 1,
                Eviction::Capacity => self.stats.evicted_capacity += 1,
            }
            self.release_without_root(id, p.runs, now, out);
            return true;
        }
        false
    }

    /// The top-most run (its parent is not in the trace; earliest start,
    /// then longest) stands in for the root: it names the chain and counts
    /// as the request.
    fn release_without_root(
        &mut self,
        trace_id: TraceId,
        runs: Vec<ChainRun>,
        now: Instant,
        out: &mut Vec<Labeled>,
    ) {
        let ids: HashSet<[u8; 8], RandomState> = runs.iter().map(|r| r.span_id).collect();
        let root = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.parent_span_id.is_none_or(|p| !ids.contains(&p)))
            .min_by_key(|(_, r)| (r.start_unix_nano, std::cmp::Reverse(r.end_unix_nano)))
            .map(|(i, _)| i)
            // Every run's parent is in the trace: a parent cycle (or a span
            // that is its own parent). The earliest run stands in, so the
            // spans are still counted.
            .or_else(|| {
                runs.iter()
                    .enumerate()
                    .min_by_key(|(_, r)| (r.start_unix_nano, std::cmp::Reverse(r.end_unix_nano)))
                    .map(|(i, _)| i)
            });
        let Some(root) = root else { return };
        self.stats.inferred_roots += 1;
        let chain: Arc<str> = Arc::from(runs[root].name.as_str());
        out.extend(
            runs.into_iter()
                .enumerate()
                .map(|(i, run)| Labeled::new(run, chain.clone(), i == root)),
        );
        self.remember(trace_id, chain, now);
    }
}
