//! A Prometheus registry owned by one chainpulse instance.
//!
//! The recorder is *not* installed globally: each `Registry` is its own, so
//! several collectors (tests, the demo) can live in one process. Handles are
//! created once per label set and cached by `aggregate::series`, because the
//! `metrics` macros hash the whole label set on every call.

use super::names::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new("chainpulse", Level::INFO, None);

pub struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("static bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        let registry = Registry { recorder, handle };
        registry.describe();
        registry
    }

    fn describe(&self) {
        let r = &self.recorder;
        let c = |name: &'static str, help: &'static str| {
            r.describe_counter(KeyName::from_const_str(name), None, help.into())
        };
        let g = |name: &'static str, help: &'static str| {
            r.describe_gauge(KeyName::from_const_str(name), None, help.into())
        };
        let h = |name: &'static str, help: &'static str| {
            r.describe_histogram(
                KeyName::from_const_str(name),
                Some(Unit::Seconds),
                help.into(),
            )
        };
        c(REQUESTS_TOTAL, "Requests (root chain runs) by outcome.");
        h(REQUEST_DURATION, "Duration of requests (root chain runs).");
        c(RUNS_TOTAL, "Runs (every span, by step) by outcome.");
        h(RUN_DURATION, "Duration of runs by step.");
        c(LLM_CALLS_TOTAL, "LLM calls by outcome.");
        h(LLM_DURATION, "Duration of LLM calls.");
        h(
            LLM_TTFT,
            "Time to first token of streamed LLM calls that report it.",
        );
        c(
            LLM_TOKENS_TOTAL,
            "Tokens used by LLM and embedding runs; input includes cached tokens.",
        );
        c(ERRORS_TOTAL, "Failed runs by error type (exception class).");
        c(SPANS_RECEIVED, "Spans received, by protocol.");
        c(
            SPANS_REJECTED,
            "Spans rejected (partial success), by reason.",
        );
        c(
            EXPORT_REQUESTS,
            "OTLP export requests received, by protocol.",
        );
        c(
            REQUESTS_REJECTED,
            "OTLP export requests rejected whole, by protocol and reason.",
        );
        g(
            ASSEMBLY_TRACES,
            "Traces held in the assembly buffer waiting for their root.",
        );
        g(
            ASSEMBLY_SPANS,
            "Spans held in the assembly buffer waiting for their root.",
        );
        c(
            ASSEMBLY_EVICTIONS,
            "Traces released without their root, by reason (timeout, capacity).",
        );
        c(
            ASSEMBLY_INFERRED_ROOTS,
            "Requests whose root was inferred (top-most span) at eviction.",
        );
        c(
            ASSEMBLY_LATE_SPANS,
            "Spans that arrived after their trace was released.",
        );
        g(CARDINALITY_SERIES, "Label sets in use, by metric family.");
        g(CARDINALITY_LIMIT, "Label-set limit, by metric family.");
        c(
            CARDINALITY_OVERFLOW,
            "Observations folded into the overflow series, by metric family.",
        );
        g(INFLIGHT_REQUESTS, "OTLP export requests being processed.");
        g(BUILD_INFO, "chainpulse build information.");
        g(PROCESS_RSS, "Resident memory of the chainpulse process.");
        g(
            PROCESS_CPU,
            "CPU time (user + system) used by the chainpulse process.",
        );
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect();
        Key::from_parts(name, labels)
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &META)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &META)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &META)
    }

    /// Counters and histograms with label names chosen at run time (promoted
    /// metadata labels).
    pub fn counter_dyn(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    pub fn histogram_dyn(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets. Histogram observations
    /// are queued until this runs, so it runs every second to keep that queue
    /// (memory) bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}
