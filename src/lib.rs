//! chainpulse: an observability sidecar for LLM chain applications.
//!
//! Data flows through four stages, one folder each, with forwarding beside:
//!
//! ```text
//! receive/    OTLP/gRPC + OTLP/HTTP  ->  request bytes + zero-copy view, validated
//! normalize/  span                   ->  ChainRun (kind, model, tokens, status, ...)
//! aggregate/  ChainRun               ->  trace assembly, chain labels, KPI series
//! export/     series                 ->  Prometheus text on :9464/metrics
//! forward/    accepted request       ->  prepare -> queue (memory / disk WAL) -> send upstream
//! ```
//!
//! No stage imports a later one: `receive` knows nothing of `forward`, and the
//! aggregator publishes finished traces through its own
//! [`aggregate::finished::TraceSubscriber`], which forwarding's tail sampler
//! implements. `otlp` holds what several stages share (the span-validity rule,
//! `google.rpc` status types). `config`, `pricing` and `api` sit beside the
//! pipeline; `pipeline` wires the stages together (and maps forwarding's
//! errors to the receiver's) and `server` runs them.

pub mod aggregate;
pub mod api;
pub mod auth;
pub mod config;
pub mod demo;
pub mod export;
pub mod forward;
#[cfg(unix)]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod layering;
pub mod links;
pub mod listen;
pub mod loadgen;
pub mod normalize;
pub mod otlp;
pub mod pipeline;
pub mod pricing;
pub mod receive;
pub mod report;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod tls;

/// The zero-copy OTLP trace types generated from `proto/chainpulse/otlp_view.proto`.
pub mod otlp_view {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/chainpulse.otlpview.rs"));
}
