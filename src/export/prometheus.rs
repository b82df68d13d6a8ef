//! The one Prometheus registry of a chainpulse instance, on the official
//! `prometheus-client` crate, exposed in two formats from the same cells:
//! the Prometheus text format 0.0.4 for scrapers that do not ask for more,
//! and OpenMetrics 1.0 (with exemplars) for those that send
//! `Accept: application/openmetrics-text` (Prometheus does by itself).
//!
//! Why this crate: exemplars (a trace id on a histogram bucket, the jump
//! from a P99 spike to the trace behind it) exist only in OpenMetrics, and
//! `prometheus-client` encodes both formats and stores exemplars with their
//! timestamps; `metrics-exporter-prometheus`, used before, renders neither.
//!
//! Why the `metrics` crate stays: only as the *handle types*
//! (`metrics::Counter`, `Gauge`, `Histogram`, built with `from_arc` over the
//! cells below), so the receive, pipeline and forward code keeps calling
//! `.increment(n)`, `.set(v)`, `.record(v)` without knowing this registry
//! (`receive/` must not import `export/`). No `metrics` recorder is
//! installed and nothing renders through it: one way of exposing metrics.
//!
//! Each family has its own `prometheus-client` registry, created on first
//! use and rendered in name order, so the exposition holds only families
//! that have series (as before) and stays in a stable order. The recorder
//! is *not* global: each `Registry` is its own, so several collectors
//! (tests, the demo) can live in one process. Handles are created once per
//! label set and cached by `aggregate::series` (creating one hashes the
//! whole label set).
//!
//! Exemplars: see [`ExemplarHistogram`].

use super::labels::{self, LabelLimits};
use super::names::*;
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Label};
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family as PcFamily;
use prometheus_client::metrics::gauge::Gauge as PcGauge;
use prometheus_client::registry::Registry as PcRegistry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// How long a bucket's exemplar is defended against lesser ones (a
/// success, a smaller value) before any new observation replaces it: a
/// little more than a usual scrape interval, so each scrape sees the worst
/// of the last minute rather than the worst since start.
pub const EXEMPLAR_MAX_AGE: Duration = Duration::from_secs(60);

type Labels = Vec<(String, String)>;
type Hist = HistogramWithExemplars<Labels>;
type HistFamily = PcFamily<Labels, Hist, fn() -> Hist>;
type FloatCell = PcCounter<f64, AtomicU64>;

fn latency_histogram() -> Hist {
    HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter())
}

fn cost_histogram() -> Hist {
    HistogramWithExemplars::new(COST_BUCKETS.into_iter())
}

#[derive(Clone)]
enum Cells {
    Counter(PcFamily<Labels, PcCounter>),
    Gauge(PcFamily<Labels, PcGauge<f64, AtomicU64>>),
    Histogram(HistFamily, &'static [f64]),
    Float(PcFamily<Labels, FloatCell>),
}

struct FamilyEntry {
    registry: PcRegistry,
    cells: Cells,
}

pub struct Registry {
    families: RwLock<BTreeMap<&'static str, FamilyEntry>>,
    help: HashMap<&'static str, &'static str>,
    limits: LabelLimits,
    truncated: Counter,
    sanitized: Counter,
}

struct CounterCell(PcCounter);
impl CounterFn for CounterCell {
    fn increment(&self, v: u64) {
        self.0.inc_by(v);
    }
    fn absolute(&self, v: u64) {
        let now = self.0.get();
        if v > now {
            self.0.inc_by(v - now);
        }
    }
}

struct GaugeCell(PcGauge<f64, AtomicU64>);
impl GaugeFn for GaugeCell {
    fn increment(&self, v: f64) {
        self.0.inc_by(v);
    }
    fn decrement(&self, v: f64) {
        self.0.dec_by(v);
    }
    fn set(&self, v: f64) {
        self.0.set(v);
    }
}

struct HistogramCell(Hist);
impl HistogramFn for HistogramCell {
    fn record(&self, v: f64) {
        self.0.observe(v, None, None);
    }
}

/// A monotonically increasing f64 counter (USD).
#[derive(Clone, Debug)]
pub struct FloatCounter(FloatCell);

impl FloatCounter {
    pub fn add(&self, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            return;
        }
        self.0.inc_by(v);
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// The trace behind one observation. The ids stay binary until the
/// observation is picked as its bucket's exemplar (most are not): the hex
/// text is built only then.
#[derive(Debug, Clone, Copy)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The observed request or call failed.
    pub failed: bool,
}

/// What a bucket's exemplar is, for choosing whether a new one replaces it.
#[derive(Debug, Clone, Copy)]
struct Pick {
    failed: bool,
    value: f64,
    at: Instant,
}

/// A histogram whose buckets carry exemplars (one per bucket, as
/// OpenMetrics allows; so memory is one exemplar per bucket per series).
///
/// The bucket structure already spreads exemplars over the range (a slow
/// request lands in a high bucket); within a bucket the exemplar shown is
/// the one that matters most of the last [`EXEMPLAR_MAX_AGE`]: a failed
/// observation beats a successful one, then the larger value wins. Once the
/// shown one is older than that, the next observation replaces it, so the
/// exemplars follow the traffic instead of keeping one outlier forever.
#[derive(Clone)]
pub struct ExemplarHistogram {
    cell: Hist,
    bounds: &'static [f64],
    picks: Arc<Mutex<Vec<Option<Pick>>>>,
}

impl ExemplarHistogram {
    /// Records `v`; with `exemplar`, offers it as its bucket's exemplar.
    pub fn record(&self, v: f64, exemplar: Option<Exemplar>) {
        let Some(e) = exemplar else {
            self.cell.observe(v, None, None);
            return;
        };
        let bucket = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        let now = Instant::now();
        let new = Pick {
            failed: e.failed,
            value: v,
            at: now,
        };
        let take = {
            let mut picks = self.picks.lock();
            if picks.len() <= bucket {
                picks.resize(self.bounds.len() + 1, None);
            }
            let take = match picks[bucket] {
                None => true,
                Some(old) => {
                    now.duration_since(old.at) >= EXEMPLAR_MAX_AGE
                        || (new.failed, new.value) > (old.failed, old.value)
                }
            };
            if take {
                picks[bucket] = Some(new);
            }
            take
        };
        let labels = take.then(|| {
            vec![
                ("trace_id".to_owned(), hex::encode(e.trace_id)),
                ("span_id".to_owned(), hex::encode(e.span_id)),
            ]
        });
        let ts = labels.as_ref().map(|_| SystemTime::now());
        self.cell.observe(v, labels, ts);
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

/// The `prometheus-client` name of a family: counters are registered
/// without their `_total`, which the encoders append.
fn base_name(name: &'static str, cells: &Cells) -> &'static str {
    match cells {
        Cells::Counter(_) | Cells::Float(_) => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::with_limits(LabelLimits::default())
    }

    /// A registry whose label values are capped by `limits` (see
    /// [`labels`]).
    pub fn with_limits(limits: LabelLimits) -> Self {
        let mut registry = Registry {
            families: RwLock::new(BTreeMap::new()),
            help: help_texts(),
            limits,
            truncated: Counter::noop(),
            sanitized: Counter::noop(),
        };
        registry.truncated = registry.counter(LABEL_VALUES_TRUNCATED, &[("reason", "too_long")]);
        registry.sanitized =
            registry.counter(LABEL_VALUES_TRUNCATED, &[("reason", "control_characters")]);
        registry
    }

    /// The family `name`, created (with `make`) on first use.
    fn family(
        &self,
        name: &'static str,
        help: Option<&'static str>,
        make: impl FnOnce() -> Cells,
    ) -> Cells {
        if let Some(f) = self.families.read().get(name) {
            return f.cells.clone();
        }
        let mut families = self.families.write();
        let entry = families.entry(name).or_insert_with(|| {
            let cells = make();
            let mut registry = PcRegistry::default();
            let help = help
                .or_else(|| self.help.get(name).copied())
                .unwrap_or(name);
            // The help text ends in a period already; prometheus-client
            // adds one when it does not.
            let help = help.strip_suffix('.').unwrap_or(help);
            let base = base_name(name, &cells);
            match &cells {
                Cells::Counter(f) => registry.register(base, help, f.clone()),
                Cells::Gauge(f) => registry.register(base, help, f.clone()),
                Cells::Histogram(f, _) => registry.register(base, help, f.clone()),
                Cells::Float(f) => registry.register(base, help, f.clone()),
            }
            FamilyEntry { registry, cells }
        });
        entry.cells.clone()
    }

    fn counter_cell(&self, name: &'static str, labels: Labels) -> PcCounter {
        match self.family(name, None, || Cells::Counter(PcFamily::default())) {
            Cells::Counter(f) => f.get_or_create_owned(&labels),
            // A name is one type (names.rs); a mix-up is a programming
            // error, and a detached cell keeps the process healthy.
            _ => PcCounter::default(),
        }
    }

    fn gauge_cell(&self, name: &'static str, labels: Labels) -> PcGauge<f64, AtomicU64> {
        match self.family(name, None, || Cells::Gauge(PcFamily::default())) {
            Cells::Gauge(f) => f.get_or_create_owned(&labels),
            _ => PcGauge::default(),
        }
    }

    fn histogram_cell(&self, name: &'static str, labels: Labels) -> ExemplarHistogram {
        let make = || {
            if name == REQUEST_COST {
                Cells::Histogram(
                    PcFamily::new_with_constructor(cost_histogram as fn() -> Hist),
                    &COST_BUCKETS,
                )
            } else {
                Cells::Histogram(
                    PcFamily::new_with_constructor(latency_histogram as fn() -> Hist),
                    &LATENCY_BUCKETS,
                )
            }
        };
        match self.family(name, None, make) {
            Cells::Histogram(f, bounds) => ExemplarHistogram {
                cell: f.get_or_create_owned(&labels),
                bounds,
                picks: Arc::new(Mutex::new(Vec::new())),
            },
            _ => ExemplarHistogram {
                cell: latency_histogram(),
                bounds: &LATENCY_BUCKETS,
                picks: Arc::new(Mutex::new(Vec::new())),
            },
        }
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

    fn capped_labels(&self, labels: Vec<Label>) -> Labels {
        let max = self.limits.max_value_bytes;
        labels
            .into_iter()
            .map(|l| {
                let v = labels::cap(l.value(), max).into_owned();
                (l.key().to_owned(), v)
            })
            .collect()
    }

    fn static_labels(&self, labels: &[(&str, &str)]) -> Labels {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), self.cap_label(v).into_owned()))
            .collect()
    }

    /// A fractional counter (`# TYPE counter`), created on first use.
    pub fn float_counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> FloatCounter {
        let labels = self.static_labels(labels);
        match self.family(name, Some(help), || Cells::Float(PcFamily::default())) {
            Cells::Float(f) => FloatCounter(f.get_or_create_owned(&labels)),
            _ => FloatCounter(FloatCell::default()),
        }
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let cell = self.counter_cell(name, self.static_labels(labels));
        Counter::from_arc(Arc::new(CounterCell(cell)))
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let cell = self.gauge_cell(name, self.static_labels(labels));
        Gauge::from_arc(Arc::new(GaugeCell(cell)))
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        let h = self.histogram_cell(name, self.static_labels(labels));
        Histogram::from_arc(Arc::new(HistogramCell(h.cell)))
    }

    /// Counters and histograms with label names chosen at run time (promoted
    /// metadata labels).
    pub fn counter_dyn(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        let cell = self.counter_cell(name, self.capped_labels(labels));
        Counter::from_arc(Arc::new(CounterCell(cell)))
    }

    pub fn histogram_dyn(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        let h = self.histogram_cell(name, self.capped_labels(labels));
        Histogram::from_arc(Arc::new(HistogramCell(h.cell)))
    }

    /// A histogram whose buckets carry exemplars (request and LLM
    /// durations, request cost).
    pub fn exemplar_histogram_dyn(
        &self,
        name: &'static str,
        labels: Vec<Label>,
    ) -> ExemplarHistogram {
        self.histogram_cell(name, self.capped_labels(labels))
    }

    /// The Prometheus text exposition (format 0.0.4, no exemplars), with
    /// numbers written as before the move to `prometheus-client` (see
    /// [`shortest_numbers`]).
    pub fn render(&self) -> String {
        let mut encoded = String::new();
        for f in self.families.read().values() {
            // Writing to a String cannot fail.
            let _ = prometheus_text::encode(&mut encoded, &f.registry);
        }
        shortest_numbers(&encoded)
    }

    /// The OpenMetrics exposition: exemplars on the histograms that carry
    /// them, counters' samples in `_total`, ending in `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        for f in self.families.read().values() {
            let _ = text::encode_registry(&mut out, &f.registry);
        }
        let _ = text::encode_eof(&mut out);
        out
    }

    /// Nothing to do since the move to `prometheus-client`: observations
    /// land in their buckets at once (no queue to drain). Kept so the
    /// pipeline's tick and the scrape handler need not change.
    pub fn run_upkeep(&self) {}
}

/// The text format as chainpulse wrote it before `prometheus-client`:
/// bucket bounds and sample values in Rust's shortest form (`le="2"`, `3`),
/// where the crate writes `le="2.0"`, `3.0`. Values are cosmetic, but `le`
/// is part of a series' identity: keeping it means an upgrade does not split
/// every bucket series in two (Prometheus before 3.0 does not normalise
/// `le`). OpenMetrics keeps its canonical `2.0`.
fn shortest_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or((line, ""));
        match series.find("le=\"") {
            Some(at) if series.contains("_bucket{") => {
                let start = at + 4;
                let len = series[start..].find('"').unwrap_or(0);
                out.push_str(&series[..start]);
                push_number(&mut out, &series[start..start + len]);
                out.push_str(&series[start + len..]);
            }
            _ => out.push_str(series),
        }
        out.push(' ');
        push_number(&mut out, value);
        out.push('\n');
    }
    out
}

fn push_number(out: &mut String, v: &str) {
    use std::fmt::Write;
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && v.contains(['.', 'e']) => {
            let _ = write!(out, "{n}");
        }
        _ => out.push_str(v),
    }
}

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends
/// `application/openmetrics-text;version=1.0.0,…;q=…,text/plain;…`).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or("");
        let refused = fields.any(|f| {
            f.strip_prefix("q=")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

/// The `# HELP` text of each metric family chainpulse exports.
fn help_texts() -> HashMap<&'static str, &'static str> {
    let mut m = HashMap::new();
    let mut d = |name: &'static str, help: &'static str| {
        m.insert(name, help);
    };
    d(REQUESTS_TOTAL, "Requests (root chain runs) by outcome.");
    d(REQUEST_DURATION, "Duration of requests (root chain runs).");
    d(RUNS_TOTAL, "Runs (every span, by step) by outcome.");
    d(RUN_DURATION, "Duration of runs by step.");
    d(LLM_CALLS_TOTAL, "LLM calls by outcome.");
    d(LLM_DURATION, "Duration of LLM calls.");
    d(
        LLM_TTFT,
        "Time to first token of streamed LLM calls that report it.",
    );
    d(
        LLM_TOKENS_TOTAL,
        "Tokens used by LLM and embedding runs; input includes cached tokens.",
    );
    d(ERRORS_TOTAL, "Failed runs by error type (exception class).");
    d(SPANS_RECEIVED, "Spans received, by protocol.");
    d(
        SPANS_REJECTED,
        "Spans rejected (partial success), by reason.",
    );
    d(
        EXPORT_REQUESTS,
        "OTLP export requests received, by protocol.",
    );
    d(
        REQUESTS_REJECTED,
        "OTLP export requests rejected whole, by protocol and reason.",
    );
    d(
        ASSEMBLY_TRACES,
        "Traces held in the assembly buffer waiting for their root.",
    );
    d(
        ASSEMBLY_SPANS,
        "Spans held in the assembly buffer waiting for their root.",
    );
    d(
        ASSEMBLY_EVICTIONS,
        "Traces released without their root, by reason (timeout, capacity).",
    );
    d(
        ASSEMBLY_INFERRED_ROOTS,
        "Requests whose root was inferred (top-most span) at eviction.",
    );
    d(
        ASSEMBLY_LATE_SPANS,
        "Spans that arrived after their trace was released.",
    );
    d(
        ASSEMBLY_ORPHANS_ADOPTED,
        "Parentless provider spans re-attached beneath the framework LLM span that made the call.",
    );
    d(CARDINALITY_SERIES, "Label sets in use, by metric family.");
    d(CARDINALITY_LIMIT, "Label-set limit, by metric family.");
    d(
        CARDINALITY_OVERFLOW,
        "Observations folded into the overflow series, by metric family.",
    );
    d(INFLIGHT_REQUESTS, "OTLP export requests being processed.");
    d(
        FORWARD_SPANS,
        "Spans forwarded per destination, by result (sent, retried, failed, dropped, sampled_out).",
    );
    d(
        FORWARD_BATCHES,
        "Export calls to each destination, by result (sent, retried, failed).",
    );
    d(
        FORWARD_FAILED,
        "Spans a destination will never get, by reason (permanent upstream errors, drops).",
    );
    d(
        FORWARD_QUEUE_LOST_RECORDS,
        "Undelivered disk-queue records found lost at start-up, by reason.",
    );
    d(
        FORWARD_QUEUE_LOST_BYTES,
        "Damaged disk-queue bytes skipped or cut off at start-up, by reason.",
    );
    d(
        FORWARD_DESTINATION_UP,
        "1 if the destination forwards, 0 if disabled (its disk queue could not be opened).",
    );
    d(
        FORWARD_DESTINATION_DISABLED,
        "1 for a destination disabled at start-up, by reason.",
    );
    d(
        TLS_RELOADS,
        "Certificate reloads of the listeners' TLS, by result (ok, error: the old certificate kept).",
    );
    d(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed or timed out, by listener.",
    );
    d(
        AUTH_REFUSED,
        "Requests refused for a missing, malformed or wrong bearer token, by listener and reason.",
    );
    d(
        AUTH_TOKEN_RELOADS,
        "Re-reads of ${file:...} bearer tokens, by result (ok, error: the old token kept).",
    );
    d(
        CONNECTIONS_HEADER_TIMEOUT,
        "Connections closed because no first request arrived within server.header_read_timeout_ms.",
    );
    d(
        CONNECTIONS_REFUSED_ANSWERED,
        "Connections over the cap answered (HTTP/1.1 503, HTTP/2 GOAWAY) before closing.",
    );
    d(FORWARD_QUEUE_SPANS, "Spans queued per destination.");
    d(
        FORWARD_QUEUE_BYTES,
        "Bytes queued per destination (memory or disk).",
    );
    d(
        FORWARD_QUEUE_MAX_BYTES,
        "Queue bound per destination (queue.max_bytes).",
    );
    d(
        FORWARD_OLDEST_AGE,
        "Age of the oldest queued request per destination (0 when empty).",
    );
    d(
        FORWARD_SEND_DURATION,
        "Duration of one export call to a destination.",
    );
    d(
        FORWARD_WAL_CORRUPT,
        "Torn or corrupt disk-queue tails found (and cut off) on start-up.",
    );
    d(
        FORWARD_REDACTIONS,
        "Values redacted before forwarding, by kind of secret or personal data.",
    );
    d(
        FORWARD_TRUNCATIONS,
        "Attribute values truncated before forwarding.",
    );
    d(
        SAMPLING_DECISIONS,
        "Tail-sampling decisions per trace, by decision and reason.",
    );
    d(
        LABEL_VALUES_TRUNCATED,
        "Label values shortened (with a hash suffix) or stripped of control characters, \
             once per label set created, by reason.",
    );
    d(CONNECTIONS, "Open connections, by listener.");
    d(
            INFLIGHT_BYTES,
            "Bytes reserved by requests being received and processed (bodies, gRPC messages, inflated data).",
        );
    d(
        INFLIGHT_BYTES_LIMIT,
        "The in-flight memory budget (limits.max_inflight_bytes).",
    );
    d(
        CONNECTIONS_REFUSED,
        "Connections closed at accept because the listener was at server.max_connections.",
    );
    d(
        CONNECTIONS_IDLE_CLOSED,
        "Connections closed after server.idle_timeout_ms without traffic.",
    );
    d(BUILD_INFO, "chainpulse build information.");
    d(PROCESS_RSS, "Resident memory of the chainpulse process.");
    d(
        PROCESS_CPU,
        "CPU time (user + system) used by the chainpulse process.",
    );
    d(
        REQUEST_COST,
        "Cost in USD of each request (sum of its LLM runs).",
    );
    d(
        LLM_UNPRICED,
        "LLM calls whose model has no price (unpriced, not free).",
    );
    d(
        LLM_USAGE_MISSING,
        "Successful LLM calls that reported no token usage (not priced).",
    );
    d(CACHE_LOOKUPS, "LLM cache lookups detected, by result.");
    d(
        SLO_TARGET,
        "SLO target per service, chain and KPI (from the config).",
    );
    d(
        BUDGET_USD,
        "Cost budget in USD per window and scope (from the config).",
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0af7651916cd43dd8448eb211c80319c";
    const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const S: &str = "b7ad6b7169203331";

    fn ex(trace_id: &str, failed: bool) -> Option<Exemplar> {
        let mut t = [0u8; 16];
        let mut s = [0u8; 8];
        hex::decode_to_slice(trace_id, &mut t).expect("hex trace id");
        hex::decode_to_slice(S, &mut s).expect("hex span id");
        Some(Exemplar {
            trace_id: t,
            span_id: s,
            failed,
        })
    }

    fn registry() -> Registry {
        let r = Registry::new();
        r.counter_dyn(
            REQUESTS_TOTAL,
            vec![Label::new("chain", "rag"), Label::new("status", "ok")],
        )
        .increment(3);
        r.gauge(CARDINALITY_SERIES, &[("family", "x")]).set(2.0);
        let h = r.exemplar_histogram_dyn(REQUEST_DURATION, vec![Label::new("chain", "rag")]);
        h.record(1.5, ex(T1, false));
        h.record(0.02, None);
        r.float_counter(LLM_COST_TOTAL, "Cost.", &[("model", "m")])
            .add(0.25);
        r
    }

    #[test]
    fn openmetrics_carries_exemplars_counters_in_total_and_eof() {
        let om = registry().render_openmetrics();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE chainpulse_requests counter\n"), "{om}");
        assert!(
            om.contains("chainpulse_requests_total{chain=\"rag\",status=\"ok\"} 3\n"),
            "{om}"
        );
        assert!(
            om.contains("chainpulse_llm_cost_usd_total{model=\"m\"} 0.25"),
            "{om}"
        );
        // The 1.5 s request is the exemplar of the le=2 bucket, with its
        // value and a timestamp (seconds since the epoch).
        let line = om
            .lines()
            .find(|l| {
                l.starts_with("chainpulse_request_duration_seconds_bucket{")
                    && l.contains("le=\"2.0\"")
                    && l.contains("chain=\"rag\"")
            })
            .unwrap_or_else(|| panic!("no le=2 bucket: {om}"));
        let (_, exemplar) = line.split_once(" # ").expect("exemplar");
        let want = format!("{{trace_id=\"{T1}\",span_id=\"{S}\"}} 1.5 ");
        assert!(exemplar.starts_with(&want), "{line}");
        let ts: f64 = exemplar[want.len()..].parse().expect("timestamp");
        assert!(ts > 1.7e9, "{line}");
        // A bucket without one has none.
        assert!(om
            .lines()
            .filter(|l| l.contains("le=\"0.025\""))
            .all(|l| !l.contains('#')));
    }

    #[test]
    fn plain_text_has_no_exemplars_and_the_0_0_4_names() {
        let text = registry().render();
        assert!(!text.contains("# EOF") && !text.contains(" # {"), "{text}");
        assert!(
            text.contains("# TYPE chainpulse_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE chainpulse_request_duration_seconds histogram\n"));
        let s = crate::export::text::parse(&text);
        use crate::export::text::{buckets, sum};
        assert_eq!(sum(&s, REQUESTS_TOTAL, &[("chain", "rag")]), 3.0);
        assert_eq!(sum(&s, CARDINALITY_SERIES, &[("family", "x")]), 2.0);
        assert_eq!(sum(&s, LLM_COST_TOTAL, &[]), 0.25);
        assert_eq!(
            sum(&s, "chainpulse_request_duration_seconds_count", &[]),
            2.0
        );
        let b = buckets(&s, REQUEST_DURATION, &[("chain", "rag")]);
        assert_eq!(b.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(b.iter().find(|(le, _)| *le == 1.0).map(|x| x.1), Some(1.0));
        // Numbers as the text format always had them: `le` is part of a
        // series' identity.
        assert!(
            text.contains("chainpulse_request_duration_seconds_bucket{chain=\"rag\",le=\"2\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"") && text.contains("le=\"+Inf\""));
        assert!(text.contains("chainpulse_cardinality_series{family=\"x\"} 2\n"));
        assert!(text.contains("chainpulse_request_duration_seconds_sum{chain=\"rag\"} 1.52\n"));
    }

    #[test]
    fn a_bucket_keeps_the_failed_then_the_larger_observation() {
        let r = Registry::new();
        let h = r.exemplar_histogram_dyn(REQUEST_DURATION, vec![]);
        let bucket_exemplar = |r: &Registry| {
            let om = r.render_openmetrics();
            om.lines()
                .find(|l| l.contains("le=\"2.0\""))
                .and_then(|l| l.split_once(" # ").map(|(_, e)| e.to_owned()))
                .unwrap_or_default()
        };
        h.record(1.9, ex(T1, true));
        h.record(1.95, ex(T2, false));
        assert!(
            bucket_exemplar(&r).contains(T1),
            "a failure beats a larger success"
        );
        h.record(1.2, ex(T2, true));
        assert!(bucket_exemplar(&r).contains(T1), "the larger failure stays");
        h.record(1.99, ex(T2, true));
        assert!(bucket_exemplar(&r).contains(T2), "a larger failure wins");
    }

    #[test]
    fn accept_header_negotiation() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
    }
}
