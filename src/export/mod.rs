//! Stage 4: what leaves chainpulse. Today: Prometheus metrics.

pub mod labels;
pub mod names;
pub mod prometheus;
pub mod text;

pub use prometheus::Registry;
