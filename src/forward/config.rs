//! `[forward]`: where traces go after chainpulse has counted them.
//!
//! A destination is a protocol, an endpoint and the knobs around it (TLS,
//! compression, headers, queue, batching, retry). Presets fill the endpoint,
//! protocol and auth headers of the usual upstreams so that a LangSmith
//! destination is three lines; anything set explicitly wins over a preset.

pub use super::prepare::redact::{RedactConfig, UserRule, DEFAULT_EXCEPTION_KEYS, DEFAULT_IO_KEYS};
pub use super::prepare::truncate::{TruncateConfig, DEFAULT_MARKER, DEFAULT_MAX_ATTRIBUTE_BYTES};
use crate::config::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Upstreams; none means chainpulse only measures.
    pub destinations: Vec<DestinationConfig>,
    /// Parent directory of disk queues (`<queue_dir>/<destination name>`)
    /// when a destination does not set `queue.dir`.
    pub queue_dir: PathBuf,
    /// Secret and personal-data scrubbing before anything is queued. Absent
    /// (the default): off. `[forward.redact]` with no keys: every built-in
    /// detector on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redact: Option<RedactConfig>,
    /// Cut oversized attribute values before forwarding (its defaults,
    /// 128 KiB among them, live in `TruncateConfig::default` only).
    pub truncate: TruncateConfig,
    pub sampling: SamplingConfig,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            destinations: Vec::new(),
            queue_dir: PathBuf::from("/var/lib/chainpulse/queue"),
            redact: None,
            truncate: TruncateConfig::default(),
            sampling: SamplingConfig::default(),
        }
    }
}

/// Tail sampling of what is forwarded (metrics always see every span).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Off (the default): every trace is forwarded.
    pub enabled: bool,
    /// Keep traces in which any span failed.
    pub keep_errors: bool,
    /// Keep traces whose root took longer than this (0: rule off).
    pub slower_than_ms: u64,
    /// Keep traces that cost more than this many USD (0: rule off).
    pub costlier_than_usd: f64,
    /// Keep this fraction of the remaining traces (0.0–1.0).
    pub probability: f64,
    /// How long a queued span may wait for its trace's decision before it
    /// is forwarded anyway (0: `assembly.trace_timeout_ms` + 2 s).
    pub decision_wait_ms: u64,
    /// Decisions remembered (for spans that arrive after their root).
    pub max_decisions: NonZeroUsize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            enabled: false,
            keep_errors: true,
            slower_than_ms: 0,
            costlier_than_usd: 0.0,
            probability: 1.0,
            decision_wait_ms: 0,
            max_decisions: const { nonzero_usize(200_000) },
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// LangSmith's OTLP endpoint (HTTP), `x-api-key` from `LANGSMITH_API_KEY`.
    Langsmith,
    /// Langfuse's OTLP endpoint (HTTP), basic auth from
    /// `LANGFUSE_PUBLIC_KEY` / `LANGFUSE_SECRET_KEY`.
    Langfuse,
    /// Arize Phoenix (HTTP, `:6006/v1/traces`).
    Phoenix,
    /// Grafana Tempo's OTLP/gRPC receiver (`:4317`).
    Tempo,
    /// Jaeger's OTLP/gRPC receiver (`:4317`).
    Jaeger,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Langsmith => "langsmith",
            Preset::Langfuse => "langfuse",
            Preset::Phoenix => "phoenix",
            Preset::Tempo => "tempo",
            Preset::Jaeger => "jaeger",
        }
    }

    fn protocol(self) -> ExportProtocol {
        match self {
            Preset::Langsmith | Preset::Langfuse | Preset::Phoenix => ExportProtocol::Http,
            Preset::Tempo | Preset::Jaeger => ExportProtocol::Grpc,
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Preset::Langsmith => "https://api.smith.langchain.com/otel/v1/traces",
            Preset::Langfuse => "https://cloud.langfuse.com/api/public/otel/v1/traces",
            Preset::Phoenix => "http://localhost:6006/v1/traces",
            Preset::Tempo => "http://localhost:4317",
            Preset::Jaeger => "http://localhost:4317",
        }
    }

    fn compression(self) -> Compression {
        match self {
            // Remote SaaS over the internet: bytes cost more than CPU.
            Preset::Langsmith | Preset::Langfuse => Compression::Gzip,
            Preset::Phoenix | Preset::Tempo | Preset::Jaeger => Compression::None,
        }
    }

    /// Headers the preset adds unless the destination sets the same name.
    fn headers(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Preset::Langsmith => vec![("x-api-key", "${env:LANGSMITH_API_KEY}")],
            _ => Vec::new(),
        }
    }

    fn basic_auth(self) -> Option<BasicAuth> {
        match self {
            Preset::Langfuse => Some(BasicAuth {
                username: "${env:LANGFUSE_PUBLIC_KEY}".into(),
                password: "${env:LANGFUSE_SECRET_KEY}".into(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportProtocol {
    /// OTLP/gRPC `TraceService/Export`.
    Grpc,
    /// OTLP/HTTP `POST …/v1/traces`, protobuf body.
    Http,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// May reference secrets: `${env:NAME}`, `${file:/path}`.
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM bundle of CAs to trust instead of the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Lost on a crash or restart; fastest.
    Memory,
    /// A write-ahead log: an acknowledged span survives SIGKILL and restart.
    Disk,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Every acknowledged export is on stable storage (fsync shared by the
    /// requests in flight at the same time: group commit).
    Always,
    /// fsync every `fsync_interval_ms`: a killed process loses nothing (the
    /// page cache survives it), a host crash loses at most the interval.
    Interval,
    /// Leave it to the kernel.
    Never,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse new exports (gRPC RESOURCE_EXHAUSTED / HTTP 503 + Retry-After):
    /// the application's SDK retries; nothing is dropped by chainpulse.
    Backpressure,
    /// Drop the new spans for this destination only (counted as
    /// `result="dropped"`); ingest and other destinations go on.
    Drop,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub kind: QueueKind,
    /// Disk queue directory (default `<forward.queue_dir>/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Bound on queued bytes (0: 64 MiB in memory, 1 GiB on disk).
    pub max_bytes: u64,
    pub on_full: OnFull,
    pub fsync: FsyncMode,
    pub fsync_interval_ms: NonZeroU64,
    /// Size of one disk segment file.
    pub segment_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            kind: QueueKind::Memory,
            dir: None,
            max_bytes: 0,
            on_full: OnFull::Backpressure,
            fsync: FsyncMode::Always,
            fsync_interval_ms: const { nonzero_u64(1000) },
            segment_bytes: 16 << 20,
        }
    }
}

impl QueueConfig {
    pub fn effective_max_bytes(&self) -> u64 {
        match (self.max_bytes, self.kind) {
            (0, QueueKind::Memory) => 64 << 20,
            (0, QueueKind::Disk) => 1 << 30,
            (n, _) => n,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Spans per export call (a single larger request is sent whole).
    pub max_spans: NonZeroUsize,
    /// Bytes per export call, before compression; keep under the
    /// upstream's limit (gRPC servers default to 4 MiB).
    pub max_bytes: usize,
    /// How long a partial batch may wait for more spans.
    pub flush_interval_ms: u64,
    /// Export calls in flight at once (acked in order). One call per round
    /// trip caps a remote upstream at `max_spans` per RTT; a few overlap the
    /// waits.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_spans: const { nonzero_usize(2048) },
            max_bytes: 3 << 20,
            flush_interval_ms: 200,
            max_in_flight: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_backoff_ms: NonZeroU64,
    pub max_backoff_ms: u64,
    /// Cap on a server's RetryInfo / Retry-After hint.
    pub max_server_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: const { nonzero_u64(500) },
            max_backoff_ms: 30_000,
            max_server_delay_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationConfig {
    /// The `destination` label of the forwarding metrics (default: the
    /// preset's name, else `upstream`, numbered when repeated).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ExportProtocol>,
    /// gRPC: `http(s)://host:port`; HTTP: the full URL, `…/v1/traces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Per export call.
    pub timeout_ms: NonZeroU64,
    /// Values may reference secrets: `${env:NAME}`, `${file:/path}`. They
    /// are resolved at start-up and never logged.
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    pub tls: TlsConfig,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig {
            name: String::new(),
            preset: None,
            protocol: None,
            endpoint: None,
            compression: None,
            timeout_ms: const { nonzero_u64(10_000) },
            headers: BTreeMap::new(),
            basic_auth: None,
            tls: TlsConfig::default(),
            queue: QueueConfig::default(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

/// A destination with its preset applied and every default decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: String,
    pub protocol: ExportProtocol,
    pub endpoint: String,
    pub compression: Compression,
    pub timeout: Duration,
    /// Header templates (secrets not yet resolved), lower-case names.
    pub headers: Vec<(String, String)>,
    pub basic_auth: Option<BasicAuth>,
    pub tls: TlsConfig,
    pub queue: QueueConfig,
    pub queue_dir: PathBuf,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
}

impl ForwardConfig {
    /// Applies presets and defaults, names destinations, and checks what
    /// serde cannot. Errors name the key (`forward.destinations[1].endpoint`).
    pub fn resolve(&self) -> Result<Vec<Resolved>, ConfigError> {
        let mut out: Vec<Resolved> = Vec::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let key = |k: &str| format!("forward.destinations[{i}].{k}");
            let preset = d.preset;
            let protocol = d.protocol.or(preset.map(Preset::protocol)).ok_or_else(|| {
                invalid(&key("protocol"), "set \"grpc\" or \"http\" (or a preset)")
            })?;
            let endpoint = d
                .endpoint
                .clone()
                .or(preset.map(|p| p.endpoint().to_owned()))
                .ok_or_else(|| invalid(&key("endpoint"), "required (or a preset)"))?;
            check_endpoint(&endpoint, protocol).map_err(|m| invalid(&key("endpoint"), m))?;
            let mut name = if d.name.is_empty() {
                preset.map_or("upstream", Preset::as_str).to_owned()
            } else {
                d.name.clone()
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                || name.len() > 64
            {
                return Err(invalid(
                    &key("name"),
                    format!("{name:?}: use at most 64 of [A-Za-z0-9._-] (it is a metric label and a directory name)"),
                ));
            }
            if out.iter().any(|r| r.name == name) {
                if !d.name.is_empty() {
                    return Err(invalid(&key("name"), format!("{name:?} is used twice")));
                }
                let mut n = 2;
                while out.iter().any(|r| r.name == format!("{name}-{n}")) {
                    n += 1;
                }
                name = format!("{name}-{n}");
            }
            let mut headers: Vec<(String, String)> = Vec::new();
            for (k, v) in &d.headers {
                let lk = k.to_ascii_lowercase();
                if http::HeaderName::from_bytes(lk.as_bytes()).is_err() {
                    return Err(invalid(
                        &key(&format!("headers.{k}")),
                        "not a valid header name",
                    ));
                }
                headers.push((lk, v.clone()));
            }
            if let Some(p) = preset {
                for (k, v) in p.headers() {
                    if !headers.iter().any(|(hk, _)| hk == k) {
                        headers.push((k.to_owned(), v.to_owned()));
                    }
                }
            }
            let basic_auth = d.basic_auth.clone().or(preset.and_then(Preset::basic_auth));
            if basic_auth.is_some() && headers.iter().any(|(k, _)| k == "authorization") {
                return Err(invalid(
                    &key("basic_auth"),
                    "set either basic_auth or an authorization header, not both",
                ));
            }
            if d.tls.cert_file.is_some() != d.tls.key_file.is_some() {
                return Err(invalid(&key("tls"), "cert_file and key_file go together"));
            }
            if d.batch.max_bytes < 1024 {
                return Err(invalid(&key("batch.max_bytes"), "must be at least 1024"));
            }
            if !(1..=64).contains(&d.batch.max_in_flight) {
                return Err(invalid(&key("batch.max_in_flight"), "must be from 1 to 64"));
            }
            if d.retry.max_backoff_ms < d.retry.initial_backoff_ms.get() {
                return Err(invalid(
                    &key("retry.max_backoff_ms"),
                    "must be at least initial_backoff_ms",
                ));
            }
            let max_bytes = d.queue.effective_max_bytes();
            if max_bytes < 64 * 1024 {
                return Err(invalid(&key("queue.max_bytes"), "must be at least 65536"));
            }
            if d.queue.kind == QueueKind::Disk
                && (d.queue.segment_bytes < 64 * 1024 || d.queue.segment_bytes > max_bytes)
            {
                return Err(invalid(
                    &key("queue.segment_bytes"),
                    "must be at least 65536 and at most queue.max_bytes",
                ));
            }
            let queue_dir = d
                .queue
                .dir
                .clone()
                .unwrap_or_else(|| self.queue_dir.join(&name));
            out.push(Resolved {
                name,
                protocol,
                endpoint,
                compression: d
                    .compression
                    .or(preset.map(Preset::compression))
                    .unwrap_or(Compression::None),
                timeout: Duration::from_millis(d.timeout_ms.get()),
                headers,
                basic_auth,
                tls: d.tls.clone(),
                queue: d.queue.clone(),
                queue_dir,
                batch: d.batch.clone(),
                retry: d.retry.clone(),
            });
        }
        let mut dirs: Vec<&PathBuf> = out
            .iter()
            .filter(|r| r.queue.kind == QueueKind::Disk)
            .map(|r| &r.queue_dir)
            .collect();
        dirs.sort();
        if dirs.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid(
                "forward.destinations",
                "two disk queues share a directory",
            ));
        }
        let s = &self.sampling;
        if !(0.0..=1.0).contains(&s.probability) {
            return Err(invalid(
                "forward.sampling.probability",
                "must be from 0.0 to 1.0",
            ));
        }
        if !(s.costlier_than_usd.is_finite() && s.costlier_than_usd >= 0.0) {
            return Err(invalid(
                "forward.sampling.costlier_than_usd",
                "must be a non-negative number",
            ));
        }
        if let Some(r) = &self.redact {
            super::prepare::redact::Redactor::new(r)
                .map_err(|e| invalid("forward.redact", e.to_string()))?;
        }
        Ok(out)
    }

    /// A destination from a URL given on the command line (`--forward`):
    /// `grpc://host:port` / `grpcs://host:port` for OTLP/gRPC (plain / TLS),
    /// `http(s)://host:port/v1/traces` for OTLP/HTTP.
    pub fn destination_from_url(url: &str) -> Result<DestinationConfig, String> {
        let (protocol, endpoint) = if let Some(rest) = url.strip_prefix("grpc://") {
            (ExportProtocol::Grpc, format!("http://{rest}"))
        } else if let Some(rest) = url.strip_prefix("grpcs://") {
            (ExportProtocol::Grpc, format!("https://{rest}"))
        } else if url.starts_with("http://") || url.starts_with("https://") {
            (ExportProtocol::Http, url.to_owned())
        } else {
            return Err(format!(
                "{url:?}: use grpc://host:port, grpcs://host:port or http(s)://host:port/v1/traces"
            ));
        };
        check_endpoint(&endpoint, protocol).map_err(|m| format!("{url:?}: {m}"))?;
        Ok(DestinationConfig {
            protocol: Some(protocol),
            endpoint: Some(endpoint),
            ..DestinationConfig::default()
        })
    }
}

/// Defaults of limits that must be positive (typed so: 0 is refused when
/// the file is read, naming the key). Used in `const` blocks, so a zero
/// default fails the build, never a run.
const fn nonzero_u64(n: u64) -> NonZeroU64 {
    match NonZeroU64::new(n) {
        Some(n) => n,
        None => panic!("a non-zero default"),
    }
}

const fn nonzero_usize(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a non-zero default"),
    }
}

fn check_endpoint(endpoint: &str, protocol: ExportProtocol) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{endpoint:?}: the scheme must be http or https")),
    }
    if uri.host().is_none() {
        return Err(format!("{endpoint:?} has no host"));
    }
    if protocol == ExportProtocol::Http && uri.path() == "/" {
        return Err(format!(
            "{endpoint:?}: give the full OTLP/HTTP URL, usually ending in /v1/traces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn presets_fill_in_and_explicit_keys_win() {
        let c = Config::from_toml_str(
            r#"
[[forward.destinations]]
preset = "langsmith"
headers = { "Langsmith-Project" = "prod" }

[[forward.destinations]]
preset = "tempo"
endpoint = "http://tempo.observability:4317"
compression = "gzip"

[[forward.destinations]]
preset = "langfuse"
"#,
        )
        .expect("valid");
        let r = c.forward.resolve().expect("resolves");
        assert_eq!(r[0].name, "langsmith");
        assert_eq!(r[0].protocol, ExportProtocol::Http);
        assert_eq!(
            r[0].endpoint,
            "https://api.smith.langchain.com/otel/v1/traces"
        );
        assert_eq!(r[0].compression, Compression::Gzip);
        assert!(r[0]
            .headers
            .contains(&("x-api-key".into(), "${env:LANGSMITH_API_KEY}".into())));
        assert!(r[0]
            .headers
            .contains(&("langsmith-project".into(), "prod".into())));
        assert_eq!(r[1].name, "tempo");
        assert_eq!(r[1].protocol, ExportProtocol::Grpc);
        assert_eq!(r[1].endpoint, "http://tempo.observability:4317");
        assert_eq!(r[1].compression, Compression::Gzip);
        assert!(r[2].basic_auth.is_some());
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            ("[[forward.destinations]]\nendpoint = \"http://x:4317\"\n", "forward.destinations[0].protocol"),
            ("[[forward.destinations]]\nprotocol = \"grpc\"\n", "forward.destinations[0].endpoint"),
            ("[[forward.destinations]]\nprotocol = \"http\"\nendpoint = \"http://x:4318\"\n", "forward.destinations[0].endpoint"),
            ("[[forward.destinations]]\nprotocol = \"grpc\"\nendpoint = \"ftp://x\"\n", "forward.destinations[0].endpoint"),
            ("[[forward.destinations]]\npreset = \"tempo\"\nname = \"a b\"\n", "forward.destinations[0].name"),
            ("[[forward.destinations]]\npreset = \"tempo\"\ntls = { cert_file = \"/c.pem\" }\n", "forward.destinations[0].tls"),
            ("[[forward.destinations]]\npreset = \"tempo\"\nqueue = { max_bytes = 10 }\n", "forward.destinations[0].queue.max_bytes"),
            ("[[forward.destinations]]\npreset = \"langfuse\"\nheaders = { Authorization = \"x\" }\n", "forward.destinations[0].basic_auth"),
            ("[[forward.destinations]]\npreset = \"nope\"\n", "forward.destinations[0].preset"),
            ("[forward.sampling]\nprobability = 2.0\n", "forward.sampling.probability"),
            ("[[forward.destinations]]\npreset = \"tempo\"\n[[forward.destinations]]\npreset = \"jaeger\"\nname = \"tempo\"\n", "forward.destinations[1].name"),
        ];
        for (toml, key) in cases {
            let e = Config::from_toml_str(toml).expect_err(toml);
            assert!(e.to_string().starts_with(key), "{toml}\n→ {e}");
        }
    }

    /// Writing `[forward.truncate]` with only a marker keeps the documented
    /// default limit (it used to fall back to the struct's own 16 KiB).
    #[test]
    fn truncate_section_keeps_the_default_limit() {
        let absent = Config::from_toml_str("").expect("valid");
        let marker_only =
            Config::from_toml_str("[forward.truncate]\nmarker = \"[cut {n}]\"\n").expect("valid");
        assert_eq!(absent.forward.truncate.max_attribute_bytes, 128 * 1024);
        assert_eq!(
            marker_only.forward.truncate.max_attribute_bytes,
            absent.forward.truncate.max_attribute_bytes
        );
        assert_eq!(marker_only.forward.truncate.marker, "[cut {n}]");
    }

    /// Limits that must be positive are typed `NonZero*`: 0 is refused on
    /// reading, with the key named, instead of by a hand-written check.
    #[test]
    fn zero_limits_are_refused_by_type() {
        let cases = [
            ("[[forward.destinations]]\npreset = \"tempo\"\ntimeout_ms = 0\n", "forward.destinations[0].timeout_ms"),
            ("[[forward.destinations]]\npreset = \"tempo\"\nbatch = { max_spans = 0 }\n", "forward.destinations[0].batch.max_spans"),
            ("[[forward.destinations]]\npreset = \"tempo\"\nretry = { initial_backoff_ms = 0 }\n", "forward.destinations[0].retry.initial_backoff_ms"),
            ("[[forward.destinations]]\npreset = \"tempo\"\nqueue = { fsync_interval_ms = 0 }\n", "forward.destinations[0].queue.fsync_interval_ms"),
            ("[forward.sampling]\nmax_decisions = 0\n", "forward.sampling.max_decisions"),
        ];
        for (toml, key) in cases {
            let e = Config::from_toml_str(toml).expect_err(toml);
            assert!(e.to_string().starts_with(key), "{toml}\n→ {e}");
        }
        let d = DestinationConfig::default();
        assert_eq!(d.timeout_ms.get(), 10_000);
        assert_eq!(d.batch.max_spans.get(), 2048);
    }

    #[test]
    fn repeated_presets_are_numbered() {
        let c = Config::from_toml_str(
            "[[forward.destinations]]\npreset = \"tempo\"\n[[forward.destinations]]\npreset = \"tempo\"\nendpoint = \"http://b:4317\"\n",
        )
        .expect("valid");
        let r = c.forward.resolve().expect("resolves");
        assert_eq!(r[0].name, "tempo");
        assert_eq!(r[1].name, "tempo-2");
    }

    /// The README's forwarding examples are valid configuration.
    #[test]
    fn readme_examples_parse() {
        let readme = include_str!("../../README.md");
        let start = readme.find("## Forwarding").expect("section");
        let end = readme[start..].find("## Known limitations").expect("end") + start;
        let mut toml = String::new();
        let mut inside = false;
        for line in readme[start..end].lines() {
            match (inside, line.trim_end()) {
                (false, "```toml") => inside = true,
                (true, "```") => inside = false,
                (true, l) => {
                    toml.push_str(l);
                    toml.push('\n');
                }
                _ => {}
            }
        }
        assert!(toml.contains("[[forward.destinations]]"), "{toml}");
        let c = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let r = c.forward.resolve().expect("resolves");
        let names: Vec<&str> = r.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "langsmith",
                "langfuse",
                "phoenix",
                "tempo",
                "jaeger",
                "otel-gateway"
            ]
        );
        assert!(c.forward.redact.is_some());
        assert!(c.forward.sampling.enabled);
    }

    #[test]
    fn urls_from_the_command_line() {
        let d = ForwardConfig::destination_from_url("grpc://tempo:4317").expect("ok");
        assert_eq!(d.protocol, Some(ExportProtocol::Grpc));
        assert_eq!(d.endpoint.as_deref(), Some("http://tempo:4317"));
        let d = ForwardConfig::destination_from_url("grpcs://x:443").expect("ok");
        assert_eq!(d.endpoint.as_deref(), Some("https://x:443"));
        let d = ForwardConfig::destination_from_url("https://p/v1/traces").expect("ok");
        assert_eq!(d.protocol, Some(ExportProtocol::Http));
        assert!(ForwardConfig::destination_from_url("tempo:4317").is_err());
        assert!(ForwardConfig::destination_from_url("http://x").is_err());
    }
}
