//! chainpulse's own logs and process metrics.

use crate::config::LogFormat;
use crate::export::names::{PROCESS_CPU, PROCESS_RSS};
use crate::export::Registry;
use tracing_subscriber::EnvFilter;

/// Structured logs: level from `RUST_LOG` (default `info`), text or JSON.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests, demo) keeps the first subscriber.
    let _ = result;
}

/// Resident memory and CPU time from /proc (Linux); absent elsewhere.
pub fn update_process_metrics(registry: &Registry) {
    if let Some(rss) = resident_bytes() {
        registry.gauge(PROCESS_RSS, &[]).set(rss as f64);
    }
    if let Some(cpu) = cpu_seconds() {
        registry.gauge(PROCESS_CPU, &[]).set(cpu);
    }
}

fn page_size() -> u64 {
    4096
}

pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces, in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
