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

use super::orphans::{self, Frame, Orphans};
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
    /// An unbilled provider span of a call that was already counted without
    /// a time to first token: it adds only that (see `orphans`).
    pub ttft_only: bool,
}

impl Labeled {
    pub fn new(run: ChainRun, chain: Arc<str>, root: bool) -> Labeled {
        Labeled {
            is_request: root && !run.setup,
            billed: run.kind.bills_tokens(),
            ttft_only: false,
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
    pub orphans_adopted: u64,
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
    fn own(t: &mut Text) {
        *t = Text::from(t.as_str());
    }
    run.inputs = None;
    run.outputs = None;
    own(&mut run.name);
    for t in [
        &mut run.model,
        &mut run.response_model,
        &mut run.provider,
        &mut run.error_type,
        &mut run.session_id,
        &mut run.user_id,
    ]
    .into_iter()
    .flatten()
    {
        own(t);
    }
    for t in &mut run.tags {
        own(t);
    }
    for (k, v) in &mut run.metadata {
        own(k);
        own(v);
    }
    held_size(run)
}

/// The bytes a parked run holds (what [`park`] returns).
pub fn held_size(run: &ChainRun) -> usize {
    use crate::normalize::Text;
    let opt = |t: &Option<Text>| t.as_ref().map_or(0, |t| t.len());
    std::mem::size_of::<ChainRun>()
        + run.name.len()
        + opt(&run.model)
        + opt(&run.response_model)
        + opt(&run.provider)
        + opt(&run.error_type)
        + opt(&run.session_id)
        + opt(&run.user_id)
        + run
            .tags
            .iter()
            .map(|t| t.len() + std::mem::size_of::<Text>())
            .sum::<usize>()
        + run
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<Text>())
            .sum::<usize>()
}

pub struct Assembler {
    pending: HashMap<TraceId, Pending, RandomState>,
    /// Pending traces in arrival order (entries of released traces are
    /// skipped lazily).
    order: VecDeque<(TraceId, Instant)>,
    /// Released traces: chain name, release time, and whether the root was
    /// inferred (the real root may still arrive).
    completed: HashMap<TraceId, (Arc<str>, Instant, bool), RandomState>,
    completed_order: VecDeque<(TraceId, Instant)>,
    spans_held: usize,
    bytes_held: usize,
    max_bytes: usize,
    timeout: Duration,
    completed_ttl: Duration,
    max_traces: usize,
    max_spans: usize,
    /// Parentless provider spans waiting for the framework span they belong
    /// to (see `orphans`).
    orphans: Orphans,
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
            orphans: Orphans::default(),
            stats: AssemblyStats::default(),
        }
    }

    pub fn traces_held(&self) -> usize {
        self.pending.len()
    }

    pub fn spans_held(&self) -> usize {
        self.spans_held
    }

    /// Notes, before a request's runs are placed, which services are
    /// framework apps (they send nested steps of a known kind: a prompt, a
    /// chain, an LLM span with a parent), so a parentless provider span —
    /// in this request or a later one — is held for its framework span
    /// rather than released as a request. A direct SDK app sends parentless
    /// LLM spans and at most HTTP client spans (kind `other`) beneath them.
    pub fn note_nesting(&mut self, runs: &[ChainRun]) {
        for r in runs {
            let framework_step = !r.is_root() && r.kind != crate::normalize::RunKind::Other;
            if framework_step && !self.orphans.may_nest(&r.service) {
                self.orphans.note_nesting(&r.service);
            }
        }
    }

    /// Bytes the parked runs hold (their copied text fields).
    pub fn bytes_held(&self) -> usize {
        self.bytes_held
    }

    /// Takes one run; appends whatever became ready to `out`.
    pub fn accept(&mut self, run: ChainRun, now: Instant, out: &mut Vec<Labeled>) {
        // The real root of a trace already released with an inferred root
        // (after the timeout) is late: the trace was counted as a request
        // once and must not be counted twice.
        if let (true, Some((chain, _, true))) = (run.is_root(), self.completed.get(&run.trace_id)) {
            self.stats.late_spans += 1;
            out.push(Labeled::new(run, chain.clone(), false));
            return;
        }
        if run.is_root() && run.kind.bills_tokens() && self.orphans.may_nest(&run.service) {
            self.take_orphan(run, now, out);
            return;
        }
        if run.is_root() {
            self.release_root(run, now, out);
            return;
        }
        if let Some((chain, _, _)) = self.completed.get(&run.trace_id) {
            self.stats.late_spans += 1;
            out.push(Labeled::new(run, chain.clone(), false));
            return;
        }
        let frame = run.kind.bills_tokens().then(|| Frame::of(&run));
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
        if let Some(frame) = frame {
            match self.orphans.claim(&frame) {
                // Already counted in `spans_held` while it waited.
                Some(orphan) => {
                    self.stats.orphans_adopted += 1;
                    self.adopt(orphan, &frame, out);
                }
                None => self.orphans.note_frame(frame),
            }
        }
        self.enforce_capacity(now, out);
    }

    /// A parentless provider span of a service that nests LLM spans: placed
    /// beneath the framework span it belongs to, or held until it arrives.
    fn take_orphan(&mut self, run: ChainRun, now: Instant, out: &mut Vec<Labeled>) {
        // With provider spans of its own beneath it, it is a wrapper, not a
        // detached call: the root of its trace.
        let wraps_calls = self
            .pending
            .get(&run.trace_id)
            .is_some_and(|p| p.runs.iter().any(|r| r.kind.bills_tokens()));
        if wraps_calls {
            self.release_root(run, now, out);
            return;
        }
        let mut run = run;
        self.bytes_held += park(&mut run);
        self.spans_held += 1;
        let (pending, completed) = (&self.pending, &self.completed);
        let frame = self.orphans.take_frame(&run, |f| {
            pending.contains_key(&f.trace_id) || completed.contains_key(&f.trace_id)
        });
        let Some(frame) = frame else {
            self.orphans.hold(run, now);
            self.enforce_capacity(now, out);
            return;
        };
        self.stats.orphans_adopted += 1;
        self.adopt(run, &frame, out);
    }

    /// Places `orphan` (parked, counted in `spans_held` and `bytes_held`)
    /// and the spans that waited
    /// beneath it in `frame`'s trace: pending with it, or — when that trace
    /// was already released, its call counted from the framework span — as
    /// late, unbilled steps of its chain.
    fn adopt(&mut self, orphan: ChainRun, frame: &Frame, out: &mut Vec<Labeled>) {
        let own = orphan.trace_id;
        let (beneath, beneath_bytes) = self
            .pending
            .remove(&own)
            .map(|p| (p.runs, p.bytes))
            .unwrap_or_default();
        let bytes = held_size(&orphan) + beneath_bytes;
        if let Some(p) = self.pending.get_mut(&frame.trace_id) {
            p.bytes += bytes;
            p.runs.push(orphans::adopt(orphan, frame));
            p.runs.extend(beneath.into_iter().map(|mut r| {
                r.trace_id = frame.trace_id;
                r
            }));
            return;
        }
        // Released already: the call was counted from the framework span.
        // The provider span keeps its own trace (so nothing takes it for a
        // call nested in the released one) and is an unbilled step.
        let chain = match self.completed.get(&frame.trace_id) {
            Some((chain, _, _)) => chain.clone(),
            None => Arc::from(frame.service.as_ref()),
        };
        let n = 1 + beneath.len();
        self.spans_held -= n;
        self.bytes_held -= bytes;
        self.stats.late_spans += n as u64;
        let adds_ttft = !frame.has_ttft && orphan.time_to_first_token_s.is_some();
        out.extend(
            std::iter::once(orphan)
                .chain(beneath)
                .enumerate()
                .map(|(i, r)| {
                    let mut l = Labeled::new(r, chain.clone(), false);
                    l.billed = false;
                    l.ttft_only = i == 0 && adds_ttft;
                    l
                }),
        );
    }

    /// A trace's root: released with everything that waited for it.
    fn release_root(&mut self, run: ChainRun, now: Instant, out: &mut Vec<Labeled>) {
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
        self.remember(trace_id, chain, now, false);
    }

    fn enforce_capacity(&mut self, now: Instant, out: &mut Vec<Labeled>) {
        while self.pending.len() > self.max_traces
            || self.spans_held > self.max_spans
            || self.bytes_held > self.max_bytes
        {
            if !self.evict_oldest(Eviction::Capacity, now, out) {
                match self.orphans.pop_oldest() {
                    Some(o) => {
                        self.spans_held -= 1;
                        self.bytes_held -= held_size(&o);
                        self.stats.evicted_capacity += 1;
                        self.release_root(o, now, out);
                    }
                    None => break,
                }
            }
        }
    }

    /// Releases traces that waited longer than the timeout, and forgets old
    /// completed traces. Call periodically.
    pub fn sweep(&mut self, now: Instant, out: &mut Vec<Labeled>) {
        let timeout = self.timeout;
        for orphan in self
            .orphans
            .expire(|since| now.duration_since(since) >= timeout)
        {
            self.spans_held -= 1;
            self.bytes_held -= held_size(&orphan);
            self.release_root(orphan, now, out);
        }
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
            if self.completed.get(&id).is_some_and(|(_, t, _)| *t == at) {
                self.completed.remove(&id);
            }
        }
    }

    /// Releases everything held (shutdown).
    pub fn drain(&mut self, now: Instant, out: &mut Vec<Labeled>) {
        while self.evict_oldest(Eviction::Timeout, now, out) {}
        while let Some(orphan) = self.orphans.pop_oldest() {
            self.spans_held -= 1;
            self.bytes_held -= held_size(&orphan);
            self.release_root(orphan, now, out);
        }
    }

    fn remember(&mut self, trace_id: TraceId, chain: Arc<str>, now: Instant, inferred: bool) {
        self.completed.insert(trace_id, (chain, now, inferred));
        self.completed_order.push_back((trace_id, now));
        while self.completed_order.len() > self.max_traces {
            if let Some((id, at)) = self.completed_order.pop_front() {
                if self.completed.get(&id).is_some_and(|(_, t, _)| *t == at) {
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
        self.remember(trace_id, chain, now, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::RunKind;

    #[test]
    fn a_late_real_root_after_an_inferred_one_is_not_a_second_request() {
        let mut a = Assembler::new(&AssemblyConfig::default());
        let now = Instant::now();
        let mut out = Vec::new();
        a.accept(
            ChainRun::for_test(1, 2, Some(1), RunKind::Tool),
            now,
            &mut out,
        );
        a.sweep(now + Duration::from_secs(11), &mut out);
        assert_eq!(out.iter().filter(|l| l.is_request).count(), 1, "inferred");
        out.clear();
        a.accept(
            ChainRun::for_test(1, 1, None, RunKind::Chain),
            now,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(!out[0].is_request, "counted once");
        assert_eq!(a.stats.late_spans, 1);
        // A trace whose real root was seen counts a re-sent root again (an
        // exporter's retry is the client's call, as before).
        out.clear();
        a.accept(
            ChainRun::for_test(3, 1, None, RunKind::Chain),
            now,
            &mut out,
        );
        a.accept(
            ChainRun::for_test(3, 1, None, RunKind::Chain),
            now,
            &mut out,
        );
        assert_eq!(out.iter().filter(|l| l.is_request).count(), 2);
    }

    #[test]
    fn a_parent_cycle_is_released_with_a_root() {
        let mut a = Assembler::new(&AssemblyConfig::default());
        let now = Instant::now();
        let mut out = Vec::new();
        a.accept(
            ChainRun::for_test(1, 1, Some(2), RunKind::Chain),
            now,
            &mut out,
        );
        a.accept(
            ChainRun::for_test(1, 2, Some(1), RunKind::Chain),
            now,
            &mut out,
        );
        a.accept(
            ChainRun::for_test(4, 4, Some(4), RunKind::Chain),
            now,
            &mut out,
        );
        a.sweep(now + Duration::from_secs(11), &mut out);
        assert_eq!(out.len(), 3, "every span counted");
        assert_eq!(out.iter().filter(|l| l.is_request).count(), 2);
        assert_eq!(a.spans_held(), 0);
    }
}
