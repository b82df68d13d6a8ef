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

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
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
    /// Export requests processed at once before ingest answers
    /// "overloaded" (HTTP 503 / gRPC UNAVAILABLE) and `/readyz` fails.
    pub max_inflight_requests: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 4317)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 4318)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9464)),
            shutdown_timeout_ms: 10_000,
            max_inflight_requests: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request, in bytes: the HTTP body as sent, the gRPC
    /// message, and any request after gzip decompression (the OTel
    /// Collector's HTTP default is 20 MiB).
    pub max_request_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 20 * 1024 * 1024,
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
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            trace_timeout_ms: 10_000,
            max_traces: 20_000,
            max_spans: 200_000,
            completed_ttl_ms: 30_000,
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

/// Flag overrides (the three listen addresses).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
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
        if self.assembly.trace_timeout_ms == 0 {
            return Err(invalid(
                "assembly.trace_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.assembly.max_traces == 0 {
            return Err(invalid("assembly.max_traces", "must be greater than 0"));
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
        if self.server.max_inflight_requests == 0 {
            return Err(invalid(
                "server.max_inflight_requests",
                "must be greater than 0",
            ));
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

    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

const RESERVED_LABELS: [&str; 9] = [
    "service",
    "chain",
    "kind",
    "step",
    "status",
    "provider",
    "model",
    "type",
    "error_type",
];

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// `CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS=2000` sets `assembly.trace_timeout_ms`.
/// Values are read as TOML (numbers, booleans, arrays), else as strings.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("CHAINPULSE_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if section.is_empty() || key.is_empty() {
            return Err(ConfigError::Env {
                var,
                message: "expected CHAINPULSE_<SECTION>__<KEY>".into(),
            });
        }
        let value = parse_env_value(&raw);
        let section_table = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = section_table else {
            return Err(ConfigError::Env {
                var,
                message: format!("{section} is not a section"),
            });
        };
        t.insert(key, value);
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
}
