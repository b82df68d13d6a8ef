//! Stage 3: chain runs become KPIs.
//!
//! `assembly` labels each run with its chain (held until the trace's root
//! arrives); `calls` makes one provider call one LLM call however many
//! spans describe it, and `orphans` re-attaches provider spans that lost
//! their parent; `requests` settles the outcome of a request whose root does
//! not say it truthfully; `recorder` turns labelled runs into metric
//! observations through `series`, the cardinality-guarded handle cache;
//! `kpi` keeps the KPI API's figures per (service, chain) over the sliding
//! windows `1m`, `5m`, `15m`, `1h` and `all` (since start; `window` holds one
//! ring of slots per window: 6 × 10 s, 10 × 30 s, 10 × 90 s, 10 × 360 s),
//! plus the top spenders; `history` reads those rings slot by slot (the
//! live page's charts). Each finished trace's summary is published to a
//! [`finished::TraceSubscriber`] (the forwarder's tail sampler), so this
//! stage never depends on a later one.

pub mod assembly;
pub mod calls;
pub mod finished;
pub mod history;
pub mod kpi;
pub mod orphans;
pub mod recent;
pub mod recorder;
pub mod requests;
pub mod series;
pub mod sketch;
pub mod topk;
pub mod window;

use crate::config::Config;
use crate::export::names::*;
use crate::export::Registry;
use crate::normalize::ChainRun;
use crate::normalize::TraceId;
use crate::pricing::PriceTable;
use assembly::{Assembler, AssemblyStats, Labeled};
use finished::{TraceSubscriber, TraceSummary};
use kpi::{KpiTracker, RequestRecord};
use metrics::{Counter, Gauge};
use recorder::Recorder;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Per-trace totals of one release batch, for the request-level figures.
#[derive(Default)]
struct TraceTotals {
    /// Where the trace's runs were counted (for runs released without their
    /// request: late spans).
    service: Option<Arc<str>>,
    chain: Option<Arc<str>>,
    error: bool,
    cost_usd: f64,
    unpriced: bool,
    tokens_in: u64,
    tokens_out: u64,
    cache_hits: u64,
    cache_misses: u64,
}

/// Assembly plus recording, driven under one lock by the pipeline.
pub struct Aggregator {
    assembler: Assembler,
    recorder: Recorder,
    kpi: KpiTracker,
    ready: Vec<Labeled>,
    totals: HashMap<TraceId, TraceTotals, foldhash::fast::RandomState>,
    reported: AssemblyStats,
    traces_held: Gauge,
    spans_held: Gauge,
    evicted_timeout: Counter,
    evicted_capacity: Counter,
    inferred_roots: Counter,
    late_spans: Counter,
    orphans_adopted: Counter,
    subscriber: Option<Arc<dyn TraceSubscriber>>,
}

impl Aggregator {
    pub fn new(
        config: &Config,
        registry: Arc<Registry>,
        prices: PriceTable,
        subscriber: Option<Arc<dyn TraceSubscriber>>,
    ) -> Self {
        let reason = |r: &'static str| registry.counter(ASSEMBLY_EVICTIONS, &[("reason", r)]);
        Aggregator {
            assembler: Assembler::new(&config.assembly),
            ready: Vec::new(),
            totals: HashMap::default(),
            kpi: KpiTracker::new(config, registry.clone()),
            reported: AssemblyStats::default(),
            traces_held: registry.gauge(ASSEMBLY_TRACES, &[]),
            spans_held: registry.gauge(ASSEMBLY_SPANS, &[]),
            evicted_timeout: reason("timeout"),
            evicted_capacity: reason("capacity"),
            inferred_roots: registry.counter(ASSEMBLY_INFERRED_ROOTS, &[]),
            late_spans: registry.counter(ASSEMBLY_LATE_SPANS, &[]),
            orphans_adopted: registry.counter(ASSEMBLY_ORPHANS_ADOPTED, &[]),
            recorder: Recorder::new(registry, config, prices),
            subscriber,
        }
    }

    /// Takes the runs of one export request.
    pub fn accept(&mut self, runs: Vec<ChainRun>, now: Instant) {
        self.assembler.note_nesting(&runs);
        for run in runs {
            self.assembler.accept(run, now, &mut self.ready);
        }
        self.flush();
    }

    /// Releases traces whose root did not arrive in time.
    pub fn sweep(&mut self, now: Instant) {
        self.assembler.sweep(now, &mut self.ready);
        self.flush();
    }

    /// Releases everything held (on shutdown).
    pub fn drain(&mut self, now: Instant) {
        self.assembler.drain(now, &mut self.ready);
        self.flush();
    }

    pub fn kpi(&self) -> &KpiTracker {
        &self.kpi
    }

    pub fn prices(&self) -> &PriceTable {
        self.recorder.prices()
    }

    /// Records every released run, then each released request's totals
    /// (cost, tokens, cache lookups summed over the runs of its trace that
    /// were released with it — normally all of them, since a root is the
    /// last span of its trace to end).
    fn flush(&mut self) {
        if self.ready.is_empty() {
            self.publish_stats();
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        calls::resolve(&mut ready);
        requests::resolve(&mut ready);
        for l in &ready {
            let cost = self.recorder.record(l);
            if l.billed {
                let t = l.run.tokens;
                let model = l.run.model.as_deref().unwrap_or("unknown");
                self.kpi
                    .record_llm_call(model, t.input + t.output, cost.usd);
            }
            let totals = self.totals.entry(l.run.trace_id).or_default();
            if totals.chain.is_none() {
                totals.service = Some(l.run.service.clone());
                totals.chain = Some(l.chain.clone());
            }
            if l.billed {
                totals.tokens_in += l.run.tokens.input;
                totals.tokens_out += l.run.tokens.output;
            }
            totals.error |= l.run.status == crate::normalize::RunStatus::Error;
            totals.cost_usd += cost.usd.unwrap_or(0.0);
            totals.unpriced |= cost.unpriced;
            match cost.cache_hit {
                Some(true) => totals.cache_hits += 1,
                Some(false) => totals.cache_misses += 1,
                None => {}
            }
        }
        for l in ready.iter().filter(|l| l.is_request) {
            let t = self.totals.remove(&l.run.trace_id).unwrap_or_default();
            let cost = (!t.unpriced).then_some(t.cost_usd);
            if let Some(s) = &self.subscriber {
                s.trace_finished(
                    l.run.trace_id,
                    &TraceSummary {
                        error: t.error,
                        duration_s: l.run.duration_s(),
                        cost_usd: cost,
                    },
                );
            }
            self.recorder
                .record_request_totals(l, cost, t.cache_hits, t.cache_misses);
            let lookups = t.cache_hits + t.cache_misses;
            self.kpi.record_request(&RequestRecord {
                service: &l.run.service,
                chain: &l.chain,
                latency_s: l.run.duration_s(),
                error: l.run.status == crate::normalize::RunStatus::Error,
                tokens_in: t.tokens_in,
                tokens_out: t.tokens_out,
                cost_usd: cost,
                partial_cost_usd: t.cost_usd,
                cache_hit: (lookups > 0).then_some(t.cache_hits > 0),
                user: l.run.user_id.as_deref(),
                session: l.run.session_id.as_deref(),
                trace_id: l.run.trace_id,
                span_id: l.run.span_id,
                ended_at_unix_ms: l.run.end_unix_nano / 1_000_000,
                error_type: l.run.error_type.as_deref(),
            });
        }
        // Late children (after their root) leave totals no request reads:
        // their usage is already in the Prometheus counters, so it goes into
        // the chain's KPIs too (not as a request).
        for (_, t) in self.totals.drain() {
            let (Some(service), Some(chain)) = (t.service, t.chain) else {
                continue;
            };
            if t.tokens_in + t.tokens_out > 0 || t.cost_usd > 0.0 {
                self.kpi.record_late_usage(
                    &service,
                    &chain,
                    kpi::LateUsage {
                        tokens_in: t.tokens_in,
                        tokens_out: t.tokens_out,
                        cost_usd: t.cost_usd,
                    },
                );
            }
        }
        self.ready = ready;
        self.ready.clear();
        self.publish_stats();
    }

    fn publish_stats(&mut self) {
        let s = self.assembler.stats;
        let r = self.reported;
        self.evicted_timeout
            .increment(s.evicted_timeout - r.evicted_timeout);
        self.evicted_capacity
            .increment(s.evicted_capacity - r.evicted_capacity);
        self.inferred_roots
            .increment(s.inferred_roots - r.inferred_roots);
        self.late_spans.increment(s.late_spans - r.late_spans);
        self.orphans_adopted
            .increment(s.orphans_adopted - r.orphans_adopted);
        self.reported = s;
        self.traces_held.set(self.assembler.traces_held() as f64);
        self.spans_held.set(self.assembler.spans_held() as f64);
    }
}
