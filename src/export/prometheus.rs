//! A Prometheus registry owned by one chainpulse instance.
//!
//! The recorder is *not* installed globally: each `Registry` is its own, so
//! several collectors (tests, the demo) can live in one process. Handles are
//! created once per label set and cached by `aggregate::series`, because the
//! `metrics` macros hash the whole label set on every call.

use super::labels::{self, LabelLimits};
use super::names::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const META: Metadata<'static> = Metadata::new("chainpulse", Level::INFO, None);

pub struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Counters with fractional increments (USD), which the `metrics` crate's
    /// integer counters cannot hold; rendered after the recorder's output.
    floats: Mutex<BTreeMap<&'static str, FloatFamily>>,
    limits: LabelLimits,
    truncated: Counter,
    sanitized: Counter,
}

struct FloatFamily {
    help: &'static str,
    series: Vec<(String, Arc<AtomicU64>)>,
}

/// A monotonically increasing f64 counter (USD), lock-free to increment.
#[derive(Clone, Debug)]
pub struct FloatCounter(Arc<AtomicU64>);

impl FloatCounter {
    pub fn add(&self, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            return;
        }
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + v).to_bits();
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
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
        Self::with_limits(LabelLimits::default())
    }

    /// A registry whose label values are capped by `limits` (see
    /// [`labels`]).
    pub fn with_limits(limits: LabelLimits) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(REQUEST_COST.into()), &COST_BUCKETS)
            })
            .expect("static bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        let altered = |reason: &'static str| {
            recorder.register_counter(
                &Key::from_parts(LABEL_VALUES_TRUNCATED, vec![Label::new("reason", reason)]),
                &META,
            )
        };
        let registry = Registry {
            truncated: altered("too_long"),
            sanitized: altered("control_characters"),
            recorder,
            handle,
            floats: Mutex::new(BTreeMap::new()),
            limits,
        };
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
        c(
            ASSEMBLY_ORPHANS_ADOPTED,
            "Parentless provider spans re-attached beneath the framework LLM span that made the call.",
        );
        g(CARDINALITY_SERIES, "Label sets in use, by metric family.");
        g(CARDINALITY_LIMIT, "Label-set limit, by metric family.");
        c(
            CARDINALITY_OVERFLOW,
            "Observations folded into the overflow series, by metric family.",
        );
        g(INFLIGHT_REQUESTS, "OTLP export requests being processed.");
        c(
            FORWARD_SPANS,
            "Spans forwarded per destination, by result (sent, retried, failed, dropped, sampled_out).",
        );
        c(
            FORWARD_BATCHES,
            "Export calls to each destination, by result (sent, retried, failed).",
        );
        c(
            FORWARD_FAILED,
            "Spans a destination will never get, by reason (permanent upstream errors, drops).",
        );
        g(FORWARD_QUEUE_SPANS, "Spans queued per destination.");
        g(
            FORWARD_QUEUE_BYTES,
            "Bytes queued per destination (memory or disk).",
        );
        g(
            FORWARD_QUEUE_MAX_BYTES,
            "Queue bound per destination (queue.max_bytes).",
        );
        g(
            FORWARD_OLDEST_AGE,
            "Age of the oldest queued request per destination (0 when empty).",
        );
        h(
            FORWARD_SEND_DURATION,
            "Duration of one export call to a destination.",
        );
        c(
            FORWARD_WAL_CORRUPT,
            "Torn or corrupt disk-queue tails found (and cut off) on start-up.",
        );
        c(
            FORWARD_REDACTIONS,
            "Values redacted before forwarding, by kind of secret or personal data.",
        );
        c(
            FORWARD_TRUNCATIONS,
            "Attribute values truncated before forwarding.",
        );
        c(
            SAMPLING_DECISIONS,
            "Tail-sampling decisions per trace, by decision and reason.",
        );
        c(
            LABEL_VALUES_TRUNCATED,
            "Label values shortened (with a hash suffix) or stripped of control characters, \
             once per label set created, by reason.",
        );
        g(CONNECTIONS, "Open connections, by listener.");
        g(
            INFLIGHT_BYTES,
            "Bytes reserved by requests being received and processed (bodies, gRPC messages, inflated data).",
        );
        g(
            INFLIGHT_BYTES_LIMIT,
            "The in-flight memory budget (limits.max_inflight_bytes).",
        );
        c(
            CONNECTIONS_REFUSED,
            "Connections closed at accept because the listener was at server.max_connections.",
        );
        c(
            CONNECTIONS_IDLE_CLOSED,
            "Connections closed after server.idle_timeout_ms without traffic.",
        );
        g(BUILD_INFO, "chainpulse build information.");
        g(PROCESS_RSS, "Resident memory of the chainpulse process.");
        g(
            PROCESS_CPU,
            "CPU time (user + system) used by the chainpulse process.",
        );
        r.describe_histogram(
            KeyName::from_const_str(REQUEST_COST),
            None,
            "Cost in USD of each request (sum of its LLM runs).".into(),
        );
        c(
            LLM_UNPRICED,
            "LLM calls whose model has no price (unpriced, not free).",
        );
        c(
            LLM_USAGE_MISSING,
            "Successful LLM calls that reported no token usage (not priced).",
        );
        c(CACHE_LOOKUPS, "LLM cache lookups detected, by result.");
        g(
            SLO_TARGET,
            "SLO target per service, chain and KPI (from the config).",
        );
        g(
            BUDGET_USD,
            "Cost budget in USD per window and scope (from the config).",
        );
    }

    pub fn label_limits(&self) -> LabelLimits {
        self.limits
    }

    /// `v` capped to `limits.max_label_value_bytes`, control characters
    /// replaced (see [`labels::cap`]).
    pub fn cap_label<'v>(&self, v: &'v str) -> std::borrow::Cow<'v, str> {
        labels::cap(v, self.limits.max_value_bytes)
    }

    /// Counts one label value that [`Self::cap_label`] changed.
    pub fn count_altered(&self, original: &str) {
        if original.len() > self.limits.max_value_bytes {
            self.truncated.increment(1);
        } else {
            self.sanitized.increment(1);
        }
    }

    fn capped_labels(&self, labels: Vec<Label>) -> Vec<Label> {
        let max = self.limits.max_value_bytes;
        if !labels.iter().any(|l| labels::needs_cap(l.value(), max)) {
            return labels;
        }
        labels
            .into_iter()
            .map(|l| match labels::cap(l.value(), max) {
                std::borrow::Cow::Borrowed(_) => l,
                std::borrow::Cow::Owned(v) => Label::new(l.key().to_owned(), v),
            })
            .collect()
    }

    /// A fractional counter (`# TYPE counter`), created on first use.
    pub fn float_counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> FloatCounter {
        let mut rendered = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let v = self.cap_label(v);
            let _ = write!(rendered, "{sep}{k}=\"{}\"", escape_label(&v));
        }
        let mut floats = self.floats.lock();
        let family = floats.entry(name).or_insert_with(|| FloatFamily {
            help,
            series: Vec::new(),
        });
        if let Some((_, cell)) = family.series.iter().find(|(l, _)| *l == rendered) {
            return FloatCounter(cell.clone());
        }
        let cell = Arc::new(AtomicU64::new(0f64.to_bits()));
        family.series.push((rendered, cell.clone()));
        FloatCounter(cell)
    }

    fn key(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, self.cap_label(v).into_owned()))
            .collect();
        Key::from_parts(name, labels)
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&self.key(name, labels), &META)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&self.key(name, labels), &META)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&self.key(name, labels), &META)
    }

    /// Counters and histograms with label names chosen at run time (promoted
    /// metadata labels).
    pub fn counter_dyn(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, self.capped_labels(labels)), &META)
    }

    pub fn histogram_dyn(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, self.capped_labels(labels)), &META)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        let floats = self.floats.lock();
        for (name, family) in floats.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, cell) in &family.series {
                let v = f64::from_bits(cell.load(Ordering::Relaxed));
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// Drains histogram samples into their buckets. Histogram observations
    /// are queued until this runs, so it runs on every pipeline tick (every
    /// 250 ms, `server.rs`) to keep that queue (memory) bounded between
    /// scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Label value escaping of the text format: backslash, quote, newline.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
