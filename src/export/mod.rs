//! Stage 4: what leaves chainpulse. Today: Prometheus metrics, in the
//! Prometheus text format or OpenMetrics with exemplars (content
//! negotiation in `api`).

pub mod labels;
pub mod names;
pub mod prometheus;
pub mod text;

pub use prometheus::{Exemplar, ExemplarHistogram, FloatCounter, Registry};
