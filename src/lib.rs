//! chainpulse: an observability sidecar for LLM chain applications.
//!
//! Data flows through four stages, one folder each:
//!
//! ```text
//! receive/  OTLP/gRPC + OTLP/HTTP  ->  TracePayload (raw bytes + zero-copy view)
//! normalize/  span                 ->  ChainRun (kind, model, tokens, status, ...)
//! aggregate/  ChainRun             ->  trace assembly, chain labels, KPI series
//! export/     series               ->  Prometheus text on :9464/metrics
//! ```
//!
//! `config`, `pricing` and `api` sit beside the pipeline; `pipeline` wires the
//! stages together and `server` runs them.

pub mod aggregate;
pub mod api;
pub mod config;
pub mod demo;
pub mod export;
pub mod forward;
pub mod listen;
pub mod loadgen;
pub mod normalize;
pub mod pipeline;
pub mod pricing;
pub mod receive;
pub mod report;
pub mod server;
pub mod telemetry;

/// The zero-copy OTLP trace types generated from `proto/chainpulse/otlp_view.proto`.
pub mod otlp_view {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/chainpulse.otlpview.rs"));
}
