//! What the aggregator publishes about a finished trace, for whoever
//! subscribes (the forwarder's tail sampler). Defined here, on the side that
//! publishes, so the aggregator never depends on a later stage.

use crate::normalize::TraceId;

/// What the aggregator knows about a finished trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceSummary {
    /// Some span of the trace ended with an error.
    pub error: bool,
    /// The root's duration.
    pub duration_s: f64,
    /// Sum of the trace's priced LLM calls (None when a model is unpriced).
    pub cost_usd: Option<f64>,
}

/// Told once per trace, when its root is released (or the assembly buffer
/// gave up waiting for it), under the aggregator's lock: keep it short.
pub trait TraceSubscriber: Send + Sync {
    fn trace_finished(&self, trace: TraceId, summary: &TraceSummary);
}
