//! Protocol facts shared by stages that must not depend on each other.
//!
//! Receiving, normalizing and forwarding all need to agree on some OTLP
//! facts: which spans are valid at all ([`id_problem`]), the `google.rpc`
//! status types of OTLP errors ([`status`]), and what a valid `string` field
//! is ([`utf8`], one fast check for receipt and normalization alike). Keeping them here,
//! below every stage, lets each stage use them without importing another
//! stage.

pub mod status;
pub mod utf8;

/// Why a span's ids make it unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdProblem {
    /// Not 16 bytes, or all zero.
    TraceId,
    /// Not 8 bytes, or all zero.
    SpanId,
    /// Neither empty nor 8 bytes.
    ParentSpanId,
}

impl IdProblem {
    pub const ALL: [IdProblem; 3] = [
        IdProblem::TraceId,
        IdProblem::SpanId,
        IdProblem::ParentSpanId,
    ];

    /// The `reason` label of `chainpulse_spans_rejected_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdProblem::TraceId => "invalid_trace_id",
            IdProblem::SpanId => "invalid_span_id",
            IdProblem::ParentSpanId => "invalid_parent_span_id",
        }
    }
}

/// The one rule for a valid span, used by validation (which rejects the span
/// through OTLP `partial_success`), normalization (which skips it, so it is
/// never counted) and forwarding (which drops it before queueing).
///
/// A span is invalid when its trace id is not 16 bytes or all zero, its span
/// id is not 8 bytes or all zero, or its parent span id is neither empty nor
/// 8 bytes. An all-zero 8-byte parent id is valid and means "no parent", as
/// several SDKs send it for roots.
pub fn id_problem(trace_id: &[u8], span_id: &[u8], parent_span_id: &[u8]) -> Option<IdProblem> {
    if trace_id.len() != 16 || trace_id.iter().all(|b| *b == 0) {
        return Some(IdProblem::TraceId);
    }
    if span_id.len() != 8 || span_id.iter().all(|b| *b == 0) {
        return Some(IdProblem::SpanId);
    }
    if !(parent_span_id.is_empty() || parent_span_id.len() == 8) {
        return Some(IdProblem::ParentSpanId);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_rule() {
        let (t, s) = ([1u8; 16], [2u8; 8]);
        assert_eq!(id_problem(&t, &s, &[]), None);
        assert_eq!(id_problem(&t, &s, &[0; 8]), None, "all-zero parent: a root");
        assert_eq!(id_problem(&t, &s, &[3; 8]), None);
        assert_eq!(id_problem(&[0; 16], &s, &[]), Some(IdProblem::TraceId));
        assert_eq!(id_problem(&t[..15], &s, &[]), Some(IdProblem::TraceId));
        assert_eq!(id_problem(&t, &[0; 8], &[]), Some(IdProblem::SpanId));
        assert_eq!(id_problem(&t, &s[..4], &[]), Some(IdProblem::SpanId));
        assert_eq!(id_problem(&t, &s, &[3; 5]), Some(IdProblem::ParentSpanId));
    }
}
