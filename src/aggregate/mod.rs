//! Stage 3: chain runs become KPIs.
//!
//! `assembly` labels each run with its chain (held until the trace's root
//! arrives); `recorder` turns labelled runs into metric observations through
//! `series`, the cardinality-guarded handle cache.

pub mod assembly;
pub mod recorder;
pub mod series;
pub mod sketch;
pub mod topk;
pub mod window;

use crate::config::Config;
use crate::export::names::*;
use crate::export::Registry;
use crate::normalize::ChainRun;
use assembly::{Assembler, AssemblyStats, Labeled};
use metrics::{Counter, Gauge};
use recorder::Recorder;
use std::sync::Arc;
use std::time::Instant;

/// Assembly plus recording, driven under one lock by the pipeline.
pub struct Aggregator {
    assembler: Assembler,
    recorder: Recorder,
    ready: Vec<Labeled>,
    reported: AssemblyStats,
    traces_held: Gauge,
    spans_held: Gauge,
    evicted_timeout: Counter,
    evicted_capacity: Counter,
    inferred_roots: Counter,
    late_spans: Counter,
}

impl Aggregator {
    pub fn new(config: &Config, registry: Arc<Registry>) -> Self {
        let reason = |r: &'static str| registry.counter(ASSEMBLY_EVICTIONS, &[("reason", r)]);
        Aggregator {
            assembler: Assembler::new(&config.assembly),
            ready: Vec::new(),
            reported: AssemblyStats::default(),
            traces_held: registry.gauge(ASSEMBLY_TRACES, &[]),
            spans_held: registry.gauge(ASSEMBLY_SPANS, &[]),
            evicted_timeout: reason("timeout"),
            evicted_capacity: reason("capacity"),
            inferred_roots: registry.counter(ASSEMBLY_INFERRED_ROOTS, &[]),
            late_spans: registry.counter(ASSEMBLY_LATE_SPANS, &[]),
            recorder: Recorder::new(
                registry,
                &config.labels,
                config.cardinality.max_series_per_family,
            ),
        }
    }

    /// Takes the runs of one export request.
    pub fn accept(&mut self, runs: Vec<ChainRun>, now: Instant) {
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

    fn flush(&mut self) {
        for labeled in self.ready.drain(..) {
            self.recorder.record(&labeled);
        }
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
        self.reported = s;
        self.traces_held.set(self.assembler.traces_held() as f64);
        self.spans_held.set(self.assembler.spans_held() as f64);
    }
}
