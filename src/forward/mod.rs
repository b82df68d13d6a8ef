//! Forwarding upstream — building blocks, not wired into the pipeline yet.
//!
//! The forwarding capability (exporters to LangSmith / Tempo / Jaeger /
//! Phoenix / an OTel Collector, per-destination queues, retries, tail
//! sampling) is not built. What exists, tested on its own:
//!
//! * `wal`: the durable queue — a segmented write-ahead log with per-record
//!   checksums, a configurable fsync policy, a byte bound, torn/corrupt tail
//!   detection, and a persisted acknowledgement position (at-least-once).
//! * `redact` / `truncate`: scrubbing of secrets and personal data, and
//!   truncation of oversized attribute values, applied to a decoded request
//!   before it is re-encoded and sent.

#[cfg(unix)]
pub mod wal;

pub mod redact;
pub mod truncate;
