//! Configuration: defaults, then a TOML file, then `CHAINPULSE_*` environment
//! variables, then command-line flags.
//!
//! Every key has a working default, so no file is needed. Any bad value is
//! reported with its full key path (`assembly.trace_timeout_ms: …`).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub assembly: AssemblyConfig,
    pub cardinality: CardinalityConfig,
    pub labels: LabelsConfig,
    pub log: LogConfig,
    pub pricing: crate::pricing::PricingConfig,
    pub slo: SloConfig,
    pub budgets: Vec<BudgetConfig>,
    pub cache: CacheConfig,
    pub kpi: KpiConfig,
    pub links: crate::links::LinksConfig,
    pub forward: crate::forward::config::ForwardConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// OTLP/gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    pub http_addr: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz` and the API.
    pub metrics_addr: SocketAddr,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub shutdown_timeout_ms: u64,
    /// Runtime worker threads; 0 (the default) picks the CPUs this process
    /// may use (its cgroup CPU limit, rounded down, at least 1), at most 2.
    /// One thread costs ~18 % less CPU per span at a steady rate (no
    /// wake-ups between threads) and serves ~100 k spans/s; two serve ~50 %
    /// more flat out (see PERFORMANCE.md). A sidecar limited to under two
    /// CPUs gets one.
    pub worker_threads: usize,
    /// Export requests processed at once before ingest answers
    /// "overloaded" (HTTP 503 / gRPC UNAVAILABLE) and `/readyz` fails.
    pub max_inflight_requests: usize,
    /// A new connection must complete its TLS handshake (if any) and its
    /// first request's headers within this, HTTP/1.1 and HTTP/2 alike (else
    /// it is closed); HTTP/1.1 also bounds each later request's headers.
    pub header_read_timeout_ms: u64,
    /// A request body (HTTP, or a gRPC Export message) must arrive within
    /// this, counted from the request's headers.
    pub body_read_timeout_ms: u64,
    /// A connection on which nothing is read or written for this long, or
    /// (after its first request) no request is in progress for this long,
    /// is closed (each listener).
    pub idle_timeout_ms: u64,
    /// Open connections per listener (OTLP/gRPC, OTLP/HTTP, and the
    /// metrics port each); past it new connections are closed at once, so
    /// one port's clients cannot exhaust file descriptors for the others.
    pub max_connections: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS on every listener.
    pub max_concurrent_streams: u32,
}

impl ServerConfig {
    /// The runtime's worker threads: `worker_threads`, or when it is 0 the
    /// CPUs the process may use (the standard library reads the cgroup CPU
    /// quota, so a 500m limit gives 1), at most 2.
    pub fn runtime_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 4317)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 4318)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9464)),
            shutdown_timeout_ms: 10_000,
            worker_threads: 0,
            max_inflight_requests: 256,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
            max_connections: 1024,
            max_concurrent_streams: 100,
        }
    }
}

/// The three listeners, as named in `tls.listeners` / `auth.listeners`.
pub const LISTENERS: [&str; 3] = ["grpc", "http", "metrics"];

/// `[tls]`: serve the listeners over TLS (see `crate::tls`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). Setting it turns TLS on.
    pub cert_file: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching `cert_file`.
    pub key_file: Option<String>,
    /// PEM CA bundle: when set, clients must present a certificate it
    /// signed (mutual TLS).
    pub client_ca_file: Option<String>,
    /// Which listeners serve TLS (the others stay plaintext).
    pub listeners: Vec<String>,
    /// How often the files are checked for a change (0: never).
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            listeners: LISTENERS.map(str::to_owned).to_vec(),
            reload_interval_ms: 5_000,
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub fn serves(&self, listener: &str) -> bool {
        self.enabled() && self.listeners.iter().any(|l| l == listener)
    }
}

/// `[auth]`: bearer tokens required by the listeners (see `crate::auth`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The token clients send as `Authorization: Bearer <token>`; a secret
    /// reference (`${env:NAME}`, `${file:PATH}`) or, not recommended, the
    /// token itself. Setting it turns authentication on.
    pub bearer_token: Option<String>,
    /// A different token for the metrics port (`/metrics`, `/api/*`), so
    /// Prometheus need not hold the ingest token. Default: `bearer_token`.
    pub metrics_bearer_token: Option<String>,
    /// Which listeners require the token. `/healthz` and `/readyz` never do.
    pub listeners: Vec<String>,
    /// How often `${file:…}` tokens are re-read (0: never).
    pub reload_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            bearer_token: None,
            metrics_bearer_token: None,
            listeners: LISTENERS.map(str::to_owned).to_vec(),
            reload_interval_ms: 5_000,
        }
    }
}

impl AuthConfig {
    /// The token template `listener` requires, if any.
    pub fn template_for(&self, listener: &str) -> Option<(&'static str, &str)> {
        if !self.listeners.iter().any(|l| l == listener) {
            return None;
        }
        if listener == "metrics" {
            if let Some(t) = &self.metrics_bearer_token {
                return Some(("auth.metrics_bearer_token", t));
            }
        }
        self.bearer_token
            .as_deref()
            .map(|t| ("auth.bearer_token", t))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request, in bytes: the HTTP body as sent, the gRPC
    /// message, and any request after gzip decompression (the OTel
    /// Collector's HTTP default is 20 MiB).
    pub max_request_bytes: usize,
    /// Bytes per exported label value (chain, step, service, model, …):
    /// longer values are cut at a UTF-8 boundary and end in `~` and a hash
    /// of the whole value, so distinct values stay distinct series.
    pub max_label_value_bytes: usize,
    /// Label-value bytes one metric family may hold (summed over its label
    /// sets); new label sets past it fold into `__overflow__`, which bounds
    /// the size of `/metrics`.
    pub max_series_bytes_per_family: usize,
    /// Bytes all requests being received and processed may hold at once:
    /// HTTP bodies and gRPC messages as they arrive, and their inflated
    /// form. Reserved before the bytes are buffered; past it requests are
    /// refused with the retryable status and `/readyz` fails.
    pub max_inflight_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 20 * 1024 * 1024,
            max_label_value_bytes: crate::export::labels::DEFAULT_MAX_VALUE_BYTES,
            max_series_bytes_per_family: crate::export::labels::DEFAULT_MAX_FAMILY_BYTES,
            max_inflight_bytes: 256 * 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    pub fn label_limits(&self) -> crate::export::labels::LabelLimits {
        crate::export::labels::LabelLimits {
            max_value_bytes: self.max_label_value_bytes,
            max_family_bytes: self.max_series_bytes_per_family,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssemblyConfig {
    /// How long a trace's spans wait for its root before they are released
    /// with an inferred root.
    pub trace_timeout_ms: u64,
    /// Traces held at once; past it the oldest is released early.
    pub max_traces: usize,
    /// Spans held at once; past it the oldest trace is released early.
    pub max_spans: usize,
    /// How long a finished trace's chain name is remembered for spans that
    /// arrive after their root.
    pub completed_ttl_ms: u64,
    /// Bytes the held spans may keep (each holds a copy of its names,
    /// model, tags and metadata, never the request it came in); past it
    /// the oldest trace is released early.
    pub max_held_bytes: usize,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            trace_timeout_ms: 10_000,
            max_traces: 20_000,
            max_spans: 200_000,
            completed_ttl_ms: 30_000,
            max_held_bytes: 64 * 1024 * 1024,
        }
    }
}

impl AssemblyConfig {
    pub fn trace_timeout(&self) -> Duration {
        Duration::from_millis(self.trace_timeout_ms)
    }
    pub fn completed_ttl(&self) -> Duration {
        Duration::from_millis(self.completed_ttl_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CardinalityConfig {
    /// Label sets per metric family; new ones past it fold into one
    /// `__overflow__` series.
    pub max_series_per_family: usize,
}

impl Default for CardinalityConfig {
    fn default() -> Self {
        CardinalityConfig {
            max_series_per_family: 2_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsConfig {
    /// Metadata keys promoted to labels (e.g. `environment`, `version`) on
    /// the request, run and LLM families. None by default.
    pub metadata: Vec<String>,
    /// Tags promoted to `tag_<name>="true"|"false"` labels. None by default.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. The level comes from `RUST_LOG` (default `info`).
    pub format: LogFormat,
}

/// SLO targets. Defaults are the production targets chainpulse is built
/// around: P50 < 1 s, P95 < 2 s, P99 < 3 s, error rate < 0.1 %,
/// availability > 99.9 %. Throughput has no default floor: "> 100 req/s"
/// is a capacity target for a load test (`chainpulse loadgen` reports it),
/// not something live traffic owes; a quiet app is not failing. Set
/// `min_throughput_rps` to make a floor a KPI target (and arm its alert).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    pub latency_p50_seconds: f64,
    pub latency_p95_seconds: f64,
    pub latency_p99_seconds: f64,
    /// Failed requests / requests.
    pub error_rate: f64,
    /// Successful requests / requests (request-based availability).
    pub availability: f64,
    /// Minimum requests per second of live traffic. Unset (the default) or
    /// 0: no floor, throughput is reported without a verdict.
    pub min_throughput_rps: Option<f64>,
    /// Per service and/or chain targets; the first matching entry wins,
    /// and keys it leaves out keep the defaults above.
    pub overrides: Vec<SloOverride>,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            latency_p50_seconds: 1.0,
            latency_p95_seconds: 2.0,
            latency_p99_seconds: 3.0,
            error_rate: 0.001,
            availability: 0.999,
            min_throughput_rps: None,
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SloOverride {
    pub service: Option<String>,
    pub chain: Option<String>,
    pub latency_p50_seconds: Option<f64>,
    pub latency_p95_seconds: Option<f64>,
    pub latency_p99_seconds: Option<f64>,
    pub error_rate: Option<f64>,
    pub availability: Option<f64>,
    pub min_throughput_rps: Option<f64>,
}

/// The targets in force for one (service, chain).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SloTargets {
    pub latency_p50_seconds: f64,
    pub latency_p95_seconds: f64,
    pub latency_p99_seconds: f64,
    pub error_rate: f64,
    pub availability: f64,
    /// `None`: no throughput floor for this chain.
    pub min_throughput_rps: Option<f64>,
}

impl SloConfig {
    pub fn targets_for(&self, service: &str, chain: &str) -> SloTargets {
        let mut t = SloTargets {
            latency_p50_seconds: self.latency_p50_seconds,
            latency_p95_seconds: self.latency_p95_seconds,
            latency_p99_seconds: self.latency_p99_seconds,
            error_rate: self.error_rate,
            availability: self.availability,
            min_throughput_rps: self.min_throughput_rps,
        };
        let matches = |o: &SloOverride| {
            o.service.as_deref().is_none_or(|s| s == service)
                && o.chain.as_deref().is_none_or(|c| c == chain)
        };
        if let Some(o) = self.overrides.iter().find(|o| matches(o)) {
            t.latency_p50_seconds = o.latency_p50_seconds.unwrap_or(t.latency_p50_seconds);
            t.latency_p95_seconds = o.latency_p95_seconds.unwrap_or(t.latency_p95_seconds);
            t.latency_p99_seconds = o.latency_p99_seconds.unwrap_or(t.latency_p99_seconds);
            t.error_rate = o.error_rate.unwrap_or(t.error_rate);
            t.availability = o.availability.unwrap_or(t.availability);
            t.min_throughput_rps = o.min_throughput_rps.or(t.min_throughput_rps);
        }
        // 0 is "no floor" (an override's way to lift a global one).
        t.min_throughput_rps = t.min_throughput_rps.filter(|&v| v > 0.0);
        t
    }
}

impl SloConfig {
    /// Latency targets (global and per override) that are not an edge of
    /// the request duration buckets, one sentence each. Prometheus (alerts,
    /// dashboards, `chainpulse report --prometheus`) can only bracket such a
    /// target between the edges around it; the KPI API's sketch is not
    /// affected. `check-config` prints these and `run` logs them.
    pub fn latency_targets_off_edges(&self) -> Vec<String> {
        use crate::export::names::LATENCY_BUCKETS;
        let mut keyed: Vec<(String, f64)> = vec![
            ("slo.latency_p50_seconds".into(), self.latency_p50_seconds),
            ("slo.latency_p95_seconds".into(), self.latency_p95_seconds),
            ("slo.latency_p99_seconds".into(), self.latency_p99_seconds),
        ];
        for (i, o) in self.overrides.iter().enumerate() {
            for (k, v) in [
                ("latency_p50_seconds", o.latency_p50_seconds),
                ("latency_p95_seconds", o.latency_p95_seconds),
                ("latency_p99_seconds", o.latency_p99_seconds),
            ] {
                if let Some(v) = v {
                    keyed.push((format!("slo.overrides[{i}].{k}"), v));
                }
            }
        }
        keyed
            .into_iter()
            .filter(|(_, v)| {
                !LATENCY_BUCKETS
                    .iter()
                    .any(|e| (e - v).abs() <= 1e-9 * v.abs().max(1.0))
            })
            .map(|(key, v)| {
                let below = LATENCY_BUCKETS.iter().rev().find(|e| **e < v);
                let above = LATENCY_BUCKETS.iter().find(|e| **e > v);
                let around = match (below, above) {
                    (Some(b), Some(a)) => format!("between the edges {b} and {a} s"),
                    (None, Some(a)) => format!("below the first edge {a} s"),
                    (Some(b), None) => format!("above the last edge {b} s"),
                    (None, None) => "with no edge".to_owned(),
                };
                format!(
                    "{key} = {v} is not a bucket edge of chainpulse_request_duration_seconds ({around}): \
                     Prometheus-side checks (alerts, dashboards, the fleet report) can only bracket it; \
                     a target on an edge is checked exactly"
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BudgetWindow {
    Hour,
    Day,
}

impl BudgetWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetWindow::Hour => "hour",
            BudgetWindow::Day => "day",
        }
    }
}

/// A cost budget: `[[budgets]] window = "day", usd = 50, model = "gpt-4o"`.
/// At most one of service / chain / model; none means the whole instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub window: BudgetWindow,
    pub usd: f64,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub chain: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

impl BudgetConfig {
    /// `(scope, name)` labels: global/"" or service|chain|model and its value.
    pub fn scope(&self) -> (&'static str, &str) {
        match (&self.service, &self.chain, &self.model) {
            (Some(s), _, _) => ("service", s),
            (_, Some(c), _) => ("chain", c),
            (_, _, Some(m)) => ("model", m),
            _ => ("global", ""),
        }
    }
}

/// How LLM-response cache hits are detected (see the README).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Metadata keys (under any dialect's metadata) whose boolean value marks
    /// an LLM run as a cache hit (true) or miss (false).
    pub hit_keys: Vec<String>,
    /// Count every LLM run without a hit marker as a miss. Right only when
    /// every LLM call goes through a cache; off by default so apps without a
    /// cache do not show a 0 % hit rate.
    pub count_unmarked_as_miss: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            hit_keys: vec!["cache_hit".into()],
            count_unmarked_as_miss: false,
        }
    }
}

/// The in-process KPI windows and heavy-hitter sketches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KpiConfig {
    /// (service, chain) pairs tracked for the KPI API; more fold into one
    /// `__overflow__` entry.
    pub max_chains: usize,
    /// Keys kept by each top-spenders sketch (Space-Saving capacity).
    pub top_capacity: usize,
    /// Requests kept per list (slowest, costliest, failed) per chain for the
    /// KPI API's `recent` field and `chainpulse report`.
    pub recent_per_list: usize,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            max_chains: 200,
            top_capacity: 1000,
            recent_per_list: 5,
        }
    }
}

/// Flag overrides (the three listen addresses).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// `--forward URL` destinations, added after the file's.
    pub forward: Vec<String>,
}

impl Config {
    /// Defaults ← file ← `CHAINPULSE_<SECTION>__<KEY>` env ← flags.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: p.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let mut config = Self::from_table(table)?;
        if let Some(a) = overrides.grpc_addr {
            config.server.grpc_addr = a;
        }
        if let Some(a) = overrides.http_addr {
            config.server.http_addr = a;
        }
        if let Some(a) = overrides.metrics_addr {
            config.server.metrics_addr = a;
        }
        for url in &overrides.forward {
            let d = crate::forward::config::ForwardConfig::destination_from_url(url)
                .map_err(|m| invalid("--forward", m))?;
            config.forward.destinations.push(d);
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (used by tests and `check-config`).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Parse {
                path: "<string>".into(),
                message: e.to_string(),
            })?;
        let config = Self::from_table(table)?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        use serde::de::IntoDeserializer;
        serde_path_to_error::deserialize(table.into_deserializer()).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                key,
                message: e.into_inner().message().to_owned(),
            }
        })
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.limits.max_request_bytes < 1024 {
            return Err(invalid("limits.max_request_bytes", "must be at least 1024"));
        }
        if self.limits.max_request_bytes > 1 << 30 {
            return Err(invalid("limits.max_request_bytes", "must be at most 1 GiB"));
        }
        if self.limits.max_inflight_bytes < self.limits.max_request_bytes {
            return Err(invalid(
                "limits.max_inflight_bytes",
                "must be at least limits.max_request_bytes",
            ));
        }
        let min = crate::export::labels::MIN_VALUE_BYTES;
        if !(min..=65_536).contains(&self.limits.max_label_value_bytes) {
            return Err(invalid(
                "limits.max_label_value_bytes",
                format!("must be from {min} to 65536"),
            ));
        }
        if self.limits.max_series_bytes_per_family < self.limits.max_label_value_bytes {
            return Err(invalid(
                "limits.max_series_bytes_per_family",
                "must be at least limits.max_label_value_bytes",
            ));
        }
        if self.assembly.trace_timeout_ms == 0 {
            return Err(invalid(
                "assembly.trace_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.assembly.max_traces == 0 {
            return Err(invalid("assembly.max_traces", "must be greater than 0"));
        }
        if self.assembly.max_held_bytes < 64 * 1024 {
            return Err(invalid("assembly.max_held_bytes", "must be at least 65536"));
        }
        if self.assembly.max_spans == 0 {
            return Err(invalid("assembly.max_spans", "must be greater than 0"));
        }
        if self.cardinality.max_series_per_family == 0 {
            return Err(invalid(
                "cardinality.max_series_per_family",
                "must be greater than 0",
            ));
        }
        if self.server.worker_threads > 64 {
            return Err(invalid(
                "server.worker_threads",
                "must be from 1 to 64, or 0 for automatic",
            ));
        }
        if self.server.max_inflight_requests == 0 {
            return Err(invalid(
                "server.max_inflight_requests",
                "must be greater than 0",
            ));
        }
        for (key, v) in [
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms,
            ),
            ("server.idle_timeout_ms", self.server.idle_timeout_ms),
            ("server.max_connections", self.server.max_connections as u64),
            (
                "server.max_concurrent_streams",
                u64::from(self.server.max_concurrent_streams),
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        for (i, key) in self.labels.metadata.iter().enumerate() {
            if !is_label_name(key) {
                return Err(invalid(
                    &format!("labels.metadata[{i}]"),
                    format!(
                        "{key:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                    ),
                ));
            }
            if RESERVED_LABELS.contains(&key.as_str()) {
                return Err(invalid(
                    &format!("labels.metadata[{i}]"),
                    format!("{key:?} clashes with a built-in label"),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, key) in self.labels.metadata.iter().enumerate() {
            if !seen.insert(key.clone()) {
                return Err(invalid(
                    &format!("labels.metadata[{i}]"),
                    format!("{key:?} is listed twice"),
                ));
            }
        }
        for (i, tag) in self.labels.tags.iter().enumerate() {
            let label = format!("tag_{tag}");
            if self.labels.tags[..i].contains(tag) {
                return Err(invalid(
                    &format!("labels.tags[{i}]"),
                    format!("{tag:?} is listed twice"),
                ));
            }
            if self.labels.metadata.contains(&label) {
                return Err(invalid(
                    &format!("labels.tags[{i}]"),
                    format!("its label {label} is also a promoted metadata key"),
                ));
            }
        }
        self.validate_slo()?;
        self.forward.resolve()?;
        let forward = toml::Value::try_from(&self.forward)
            .map_err(|e| invalid("forward", format!("cannot be checked: {e}")))?;
        let mut secrets = Ok(());
        walk(&forward, "forward", &mut |path, value| {
            let holds_secrets = path.contains(".headers.") || path.contains(".basic_auth.");
            if let (true, Ok(()), toml::Value::String(v)) = (holds_secrets, &secrets, value) {
                if let Err(m) = check_secret_syntax(v) {
                    secrets = Err(invalid(path, m));
                }
            }
        });
        secrets?;
        self.validate_listeners()?;
        for (i, b) in self.budgets.iter().enumerate() {
            if !(b.usd.is_finite() && b.usd > 0.0) {
                return Err(invalid(
                    &format!("budgets[{i}].usd"),
                    "must be a positive number of USD",
                ));
            }
            let scopes = [&b.service, &b.chain, &b.model]
                .iter()
                .filter(|s| s.is_some())
                .count();
            if scopes > 1 {
                return Err(invalid(
                    &format!("budgets[{i}]"),
                    "set at most one of service, chain, model",
                ));
            }
        }
        if self.kpi.max_chains == 0 {
            return Err(invalid("kpi.max_chains", "must be greater than 0"));
        }
        if self.kpi.recent_per_list == 0 || self.kpi.recent_per_list > 100 {
            return Err(invalid("kpi.recent_per_list", "must be between 1 and 100"));
        }
        self.links.template()?;
        if self.kpi.top_capacity == 0 {
            return Err(invalid("kpi.top_capacity", "must be greater than 0"));
        }
        if let Err(e) = crate::pricing::PriceTable::from_config(&self.pricing) {
            return Err(invalid("pricing", e.to_string()));
        }
        for (i, tag) in self.labels.tags.iter().enumerate() {
            if !is_label_name(&format!("tag_{tag}")) {
                return Err(invalid(
                    &format!("labels.tags[{i}]"),
                    format!("tag_{tag} is not a valid Prometheus label name"),
                ));
            }
        }
        Ok(())
    }

    fn validate_slo(&self) -> Result<(), ConfigError> {
        let check = |key: &str, v: f64, max: Option<f64>| -> Result<(), ConfigError> {
            let ok = v.is_finite() && v >= 0.0 && max.is_none_or(|m| v <= m);
            if ok {
                Ok(())
            } else {
                let range = max.map_or("≥ 0".to_owned(), |m| format!("between 0 and {m}"));
                Err(invalid(key, format!("must be a number {range}, got {v}")))
            }
        };
        let s = &self.slo;
        check("slo.latency_p50_seconds", s.latency_p50_seconds, None)?;
        check("slo.latency_p95_seconds", s.latency_p95_seconds, None)?;
        check("slo.latency_p99_seconds", s.latency_p99_seconds, None)?;
        check("slo.error_rate", s.error_rate, Some(1.0))?;
        check("slo.availability", s.availability, Some(1.0))?;
        if let Some(v) = s.min_throughput_rps {
            check("slo.min_throughput_rps", v, None)?;
        }
        for (i, o) in s.overrides.iter().enumerate() {
            let k = |f: &str| format!("slo.overrides[{i}].{f}");
            let opt = |key: String, v: Option<f64>, max| v.map_or(Ok(()), |v| check(&key, v, max));
            opt(k("latency_p50_seconds"), o.latency_p50_seconds, None)?;
            opt(k("latency_p95_seconds"), o.latency_p95_seconds, None)?;
            opt(k("latency_p99_seconds"), o.latency_p99_seconds, None)?;
            opt(k("error_rate"), o.error_rate, Some(1.0))?;
            opt(k("availability"), o.availability, Some(1.0))?;
            opt(k("min_throughput_rps"), o.min_throughput_rps, None)?;
        }
        Ok(())
    }

    /// `[tls]` and `[auth]`: what can be checked without the file system.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        for (section, listeners) in [("tls", &self.tls.listeners), ("auth", &self.auth.listeners)] {
            for (i, l) in listeners.iter().enumerate() {
                if !LISTENERS.contains(&l.as_str()) {
                    return Err(invalid(
                        &format!("{section}.listeners[{i}]"),
                        format!("unknown listener {l:?} (expected one of {LISTENERS:?})"),
                    ));
                }
                if listeners[..i].contains(l) {
                    return Err(invalid(
                        &format!("{section}.listeners[{i}]"),
                        format!("{l:?} is listed twice"),
                    ));
                }
            }
        }
        let t = &self.tls;
        let empty = |v: &Option<String>| v.as_deref().is_some_and(|s| s.trim().is_empty());
        for (key, v) in [
            ("tls.cert_file", &t.cert_file),
            ("tls.key_file", &t.key_file),
            ("tls.client_ca_file", &t.client_ca_file),
        ] {
            if empty(v) {
                return Err(invalid(key, "is empty (leave it out to turn TLS off)"));
            }
        }
        match (&t.cert_file, &t.key_file) {
            (Some(_), None) => {
                return Err(invalid("tls.key_file", "is required with tls.cert_file"))
            }
            (None, Some(_)) => {
                return Err(invalid("tls.cert_file", "is required with tls.key_file"))
            }
            _ => {}
        }
        if t.client_ca_file.is_some() && t.cert_file.is_none() {
            return Err(invalid(
                "tls.client_ca_file",
                "needs tls.cert_file and tls.key_file (mutual TLS is TLS)",
            ));
        }
        for (key, v) in [
            ("auth.bearer_token", &self.auth.bearer_token),
            ("auth.metrics_bearer_token", &self.auth.metrics_bearer_token),
        ] {
            if let Some(v) = v {
                if v.trim().is_empty() {
                    return Err(invalid(
                        key,
                        "is empty (leave it out to turn authentication off)",
                    ));
                }
                check_secret_syntax(v).map_err(|m| invalid(key, m))?;
            }
        }
        Ok(())
    }

    /// Checks that need the file system (`check-config`): every TLS file a
    /// destination names can be read and holds what it should (a CA bundle
    /// or client certificate at least one PEM certificate, a key file a PEM
    /// private key). `run` would otherwise accept a CA file with no
    /// certificate silently, or fail later.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let forward = toml::Value::try_from(&self.forward)
            .map_err(|e| invalid("forward", format!("cannot be checked: {e}")))?;
        let mut result = Ok(());
        walk(&forward, "forward", &mut |path, value| {
            if result.is_err() || !path.contains(".tls.") {
                return;
            }
            let toml::Value::String(file) = value else {
                return;
            };
            let (marker, what) = if path.ends_with(".key_file") {
                ("PRIVATE KEY-----", "a PEM private key")
            } else {
                ("-----BEGIN CERTIFICATE-----", "a PEM certificate")
            };
            result = check_pem(path, file, marker, what);
        });
        result?;
        // The listeners' certificate and tokens, loaded exactly as `run`
        // loads them (a key that does not match its certificate, a CA file
        // with no certificate, a token file that cannot be read).
        if self.tls.enabled() {
            crate::tls::load(&self.tls).map_err(|e| invalid(e.key, e.message))?;
        }
        for listener in LISTENERS {
            if let Some((key, template)) = self.auth.template_for(listener) {
                crate::auth::resolve_token(template).map_err(|m| invalid(key, m))?;
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Label names chainpulse's own families use (a promoted label may not
/// repeat one: Prometheus rejects a whole scrape with a duplicate label
/// name), including `le` / `quantile` of histograms and summaries.
const RESERVED_LABELS: [&str; 12] = [
    "service",
    "chain",
    "kind",
    "step",
    "status",
    "provider",
    "model",
    "type",
    "error_type",
    "result",
    "le",
    "quantile",
];

/// Calls `f` on every leaf of `value` with its key path (`a.b[0].c`).
fn walk(value: &toml::Value, path: &str, f: &mut impl FnMut(&str, &toml::Value)) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                walk(v, &format!("{path}.{k}"), f);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk(v, &format!("{path}[{i}]"), f);
            }
        }
        leaf => f(path, leaf),
    }
}

/// The syntax of secret references (`${env:NAME}`, `${file:PATH}`, `$${`
/// for a literal `${`), as the forwarder resolves them at start-up: checked
/// at load so `check-config` catches what would otherwise fail `run`.
fn check_secret_syntax(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            rest = tail;
            continue;
        }
        let Some(tail) = after.strip_prefix("${") else {
            rest = &after[1..];
            continue;
        };
        let Some(end) = tail.find('}') else {
            return Err("unterminated \"${\" (write \"$${\" for a literal \"${\")".into());
        };
        let reference = &tail[..end];
        match reference.split_once(':') {
            Some(("env", "")) => {
                return Err("empty environment variable name in \"${env:}\"".into())
            }
            Some(("env", name)) if name.contains(['=', '\0', '$']) => {
                return Err(format!("{name:?} is not a valid environment variable name"))
            }
            Some(("file", "")) => {
                return Err("empty file path in \"${file:}\"".into())
            }
            Some(("env" | "file", target)) if target.contains("${") => {
                return Err("nested references are not supported".into())
            }
            Some(("env" | "file", _)) => {}
            Some((other, _)) => {
                return Err(format!(
                    "unknown secret source {other:?} in \"${{{reference}}}\" (expected \"env\" or \"file\")"
                ))
            }
            None => {
                return Err(format!(
                    "\"${{{reference}}}\" should be \"${{env:NAME}}\" or \"${{file:PATH}}\""
                ))
            }
        }
        rest = &tail[end + 1..];
    }
    Ok(())
}

/// Secret files are small; a TLS file over this is the wrong file.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn check_pem(key: &str, file: &str, marker: &str, what: &str) -> Result<(), ConfigError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_PEM_BYTES).read_to_string(&mut text))
        .map_err(|e| invalid(key, format!("cannot read {file}: {e}")))?;
    if text.contains(marker) {
        Ok(())
    } else {
        Err(invalid(key, format!("{file} holds no {what}")))
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// `CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS=2000` sets `assembly.trace_timeout_ms`;
/// any depth works, one `__` per level: `CHAINPULSE_FORWARD__SAMPLING__PROBABILITY=0.1`
/// sets `forward.sampling.probability`. Values are read as TOML (numbers,
/// booleans, arrays), else as strings. Variables without `__` (such as
/// `CHAINPULSE_BIN`) are not configuration and are ignored. Arrays of tables
/// (`forward.destinations`) cannot be reached this way.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("CHAINPULSE_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "expected CHAINPULSE_<SECTION>__<KEY> (one __ per level)".into(),
            });
        }
        let Some((key, sections)) = path.split_last() else {
            continue;
        };
        let mut t = &mut *table;
        for (depth, section) in sections.iter().enumerate() {
            let entry = t
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = entry else {
                return Err(ConfigError::Env {
                    var,
                    message: format!("{} is not a section", sections[..=depth].join(".")),
                });
            };
            t = inner;
        }
        t.insert(key.clone(), parse_env_value(&raw));
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::config::DEFAULT_MARKER;

    #[test]
    fn worker_threads_automatic_by_default() {
        let auto = Config::default().server.runtime_threads();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(auto, cpus.min(2));
        let c = Config::from_toml_str("[server]\nworker_threads = 3\n").expect("valid");
        assert_eq!(c.server.runtime_threads(), 3);
        let e = Config::from_toml_str("[server]\nworker_threads = 65\n").unwrap_err();
        assert!(e.to_string().starts_with("server.worker_threads"), "{e}");
    }

    #[test]
    fn latency_targets_off_bucket_edges_are_named() {
        assert!(SloConfig::default().latency_targets_off_edges().is_empty());
        let c = Config::from_toml_str(
            "[slo]\nlatency_p95_seconds = 2.5\n[[slo.overrides]]\nchain = \"x\"\nlatency_p99_seconds = 5.0\nlatency_p50_seconds = 0.001\n",
        )
        .expect("valid");
        let notes = c.slo.latency_targets_off_edges();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("slo.latency_p95_seconds = 2.5 is not a bucket edge")
                && notes[0].contains("between the edges 2 and 3 s"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("slo.overrides[0].latency_p50_seconds = 0.001")
                && notes[1].contains("below the first edge 0.005 s"),
            "{notes:?}"
        );
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, Vec::new(), &Overrides::default()).expect("defaults");
        assert_eq!(c.server.grpc_addr.port(), 4317);
        assert_eq!(c.server.http_addr.port(), 4318);
        assert_eq!(c.server.metrics_addr.port(), 9464);
        assert_eq!(c.limits.max_request_bytes, 20 * 1024 * 1024);
    }

    #[test]
    fn env_then_flags_override_file() {
        let dir = std::env::temp_dir().join(format!("cp-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[assembly]\ntrace_timeout_ms = 500\nmax_traces = 7\n",
        )
        .expect("write");
        let env = vec![
            ("CHAINPULSE_ASSEMBLY__MAX_TRACES".to_owned(), "9".to_owned()),
            (
                "CHAINPULSE_LABELS__METADATA".to_owned(),
                "[\"environment\"]".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let flags = Overrides {
            grpc_addr: Some("127.0.0.1:1234".parse().expect("addr")),
            ..Overrides::default()
        };
        let c = Config::load(Some(&path), env, &flags).expect("load");
        assert_eq!(c.assembly.trace_timeout_ms, 500);
        assert_eq!(c.assembly.max_traces, 9);
        assert_eq!(c.labels.metadata, vec!["environment"]);
        assert_eq!(c.server.grpc_addr.port(), 1234);
    }

    #[test]
    fn env_overrides_reach_any_depth() {
        let env = vec![
            (
                "CHAINPULSE_FORWARD__SAMPLING__PROBABILITY".to_owned(),
                "0.25".to_owned(),
            ),
            (
                "CHAINPULSE_FORWARD__TRUNCATE__MAX_ATTRIBUTE_BYTES".to_owned(),
                "100".to_owned(),
            ),
            ("CHAINPULSE_ASSEMBLY__MAX_TRACES".to_owned(), "9".to_owned()),
            ("CHAINPULSE_BIN".to_owned(), "/not/config".to_owned()),
        ];
        let c = Config::load(None, env, &Overrides::default()).expect("load");
        assert_eq!(c.forward.sampling.probability, 0.25);
        assert_eq!(c.forward.truncate.max_attribute_bytes, 100);
        assert_eq!(
            c.forward.truncate.marker, DEFAULT_MARKER,
            "siblings keep their defaults"
        );
        assert_eq!(c.assembly.max_traces, 9);

        let bad = |var: &str| {
            Config::load(
                None,
                vec![(var.to_owned(), "1".to_owned())],
                &Overrides::default(),
            )
            .expect_err(var)
            .to_string()
        };
        // A key used as a section: refused, naming the key.
        let e = bad("CHAINPULSE_ASSEMBLY__MAX_TRACES__X");
        assert!(e.contains("assembly.max_traces"), "{e}");
        assert!(bad("CHAINPULSE_FORWARD____X").contains("one __ per level"));
        assert!(bad("CHAINPULSE_FORWARD__SAMPLING__NOPE").contains("nope"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::from_toml_str("[assembly]\ntrace_timeout_ms = \"soon\"\n").unwrap_err();
        assert!(
            e.to_string().starts_with("assembly.trace_timeout_ms:"),
            "{e}"
        );
        let e = Config::from_toml_str("[assembly]\ntrace_timeout_ms = 0\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "assembly.trace_timeout_ms: must be greater than 0"
        );
        let e = Config::from_toml_str("[server]\ngrpc_addr = \"nowhere\"\n").unwrap_err();
        assert!(e.to_string().starts_with("server.grpc_addr:"), "{e}");
        let e = Config::from_toml_str("[assembly]\ntypo = 1\n").unwrap_err();
        assert!(e.to_string().contains("typo"), "{e}");
        let e = Config::from_toml_str("[labels]\nmetadata = [\"bad-name\"]\n").unwrap_err();
        assert!(e.to_string().starts_with("labels.metadata[0]:"), "{e}");
        let e = Config::from_toml_str("[labels]\nmetadata = [\"chain\"]\n").unwrap_err();
        assert!(e.to_string().contains("clashes"), "{e}");
        let e = Config::from_toml_str("not toml [").unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
    }

    #[test]
    fn colliding_and_reserved_label_names_are_refused() {
        let cases = [
            ("[labels]\nmetadata = [\"le\"]\n", "labels.metadata[0]"),
            (
                "[labels]\nmetadata = [\"quantile\"]\n",
                "labels.metadata[0]",
            ),
            ("[labels]\nmetadata = [\"result\"]\n", "labels.metadata[0]"),
            (
                "[labels]\nmetadata = [\"env\", \"env\"]\n",
                "labels.metadata[1]",
            ),
            ("[labels]\ntags = [\"prod\", \"prod\"]\n", "labels.tags[1]"),
            (
                "[labels]\nmetadata = [\"tag_prod\"]\ntags = [\"prod\"]\n",
                "labels.tags[0]",
            ),
        ];
        for (toml, key) in cases {
            let e = Config::from_toml_str(toml).expect_err(toml);
            assert!(e.to_string().starts_with(key), "{toml}\n→ {e}");
        }
        Config::from_toml_str("[labels]\nmetadata = [\"env\"]\ntags = [\"env\"]\n")
            .expect("metadata env and tag_env do not collide");
    }

    #[test]
    fn secret_reference_syntax_is_checked_at_load() {
        let dest = |v: &str| {
            format!("[[forward.destinations]]\npreset = \"tempo\"\nheaders = {{ \"x-key\" = \"{v}\" }}\n")
        };
        for bad in [
            "${vault:x}",
            "${env:}",
            "Bearer ${env:TOKEN",
            "${file:}",
            "${nocolon}",
        ] {
            let e = Config::from_toml_str(&dest(bad)).expect_err(bad);
            assert!(
                e.to_string().starts_with("forward.destinations[0].headers"),
                "{bad} → {e}"
            );
        }
        for good in ["${env:TOKEN}", "$${literal", "Bearer ${file:/run/x} $5"] {
            Config::from_toml_str(&dest(good)).expect(good);
        }
        let auth = "[[forward.destinations]]\npreset = \"langfuse\"\nbasic_auth = { username = \"${env:U}\", password = \"${env:\" }\n";
        let e = Config::from_toml_str(auth).expect_err("basic_auth");
        assert!(
            e.to_string()
                .starts_with("forward.destinations[0].basic_auth.password"),
            "{e}"
        );
    }

    #[test]
    fn tls_files_must_hold_certificates() {
        let dir = tempfile::tempdir().expect("tmp");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate in here\n").expect("write");
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let with_ca = |p: &std::path::Path| {
            Config::from_toml_str(&format!(
                "[[forward.destinations]]\npreset = \"tempo\"\ntls = {{ ca_file = {:?} }}\n",
                p.display().to_string()
            ))
            .expect("loads")
        };
        let e = with_ca(&empty).check_files().expect_err("no certificate");
        assert!(
            e.to_string()
                .starts_with("forward.destinations[0].tls.ca_file"),
            "{e}"
        );
        let e = with_ca(&dir.path().join("missing.pem"))
            .check_files()
            .expect_err("missing");
        assert!(e.to_string().contains("cannot read"), "{e}");
        with_ca(&pem).check_files().expect("a certificate");
    }
}
