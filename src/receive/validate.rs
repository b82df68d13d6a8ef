//! Checks a decoded request before anything reads it.
//!
//! * Every string field (declared `bytes` in the view for zero-copy decoding)
//!   must be valid UTF-8, as protobuf `string` requires. A request that
//!   breaks this is refused whole, as a full protobuf decoder would refuse
//!   it, and the error names where the bad bytes are.
//! * Ids of the wrong length (or all zero) make a *span* invalid, not the
//!   request: such spans are rejected through OTLP `partial_success`, and
//!   (by the same rule, [`crate::otlp::id_problem`]) neither counted nor
//!   forwarded.

use super::IngestError;
use crate::otlp_view::{any_value::Value, AnyValue, ExportTraceServiceRequest, KeyValue, Span};
use std::fmt::Write;

/// Span-level outcome of validation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpanVerdict {
    pub total: u64,
    pub rejected: u64,
    /// Counts per rejection reason.
    pub reasons: Vec<(&'static str, u64)>,
    /// A human-readable summary for `partial_success.error_message`.
    pub message: String,
}

/// Why a span is unusable, if it is: the one rule of [`crate::otlp::id_problem`],
/// which normalization and forwarding apply too, so a span rejected here is
/// never counted nor forwarded.
pub fn span_problem(span: &Span) -> Option<&'static str> {
    crate::otlp::id_problem(&span.trace_id, &span.span_id, &span.parent_span_id)
        .map(crate::otlp::IdProblem::as_str)
}

pub fn validate(req: &ExportTraceServiceRequest) -> Result<SpanVerdict, IngestError> {
    let mut verdict = SpanVerdict::default();
    for (r, rs) in req.resource_spans.iter().enumerate() {
        if let Some(res) = &rs.resource {
            check_attrs(&res.attributes, &|| {
                format!("resource_spans[{r}].resource.attributes")
            })?;
        }
        for (s, ss) in rs.scope_spans.iter().enumerate() {
            if let Some(scope) = &ss.scope {
                let at = || format!("resource_spans[{r}].scope_spans[{s}].scope");
                utf8(&scope.name, at)?;
                utf8(&scope.version, at)?;
            }
            for (i, span) in ss.spans.iter().enumerate() {
                let at = || format!("resource_spans[{r}].scope_spans[{s}].spans[{i}]");
                check_span(span, at)?;
                verdict.total += 1;
                if let Some(reason) = span_problem(span) {
                    verdict.rejected += 1;
                    match verdict.reasons.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, n)) => *n += 1,
                        None => verdict.reasons.push((reason, 1)),
                    }
                    if verdict.message.len() < 512 {
                        let _ = write!(
                            verdict.message,
                            "{}{}: {} (trace_id {} bytes, span_id {} bytes, parent_span_id {} bytes)",
                            if verdict.message.is_empty() { "" } else { "; " },
                            at(),
                            reason,
                            span.trace_id.len(),
                            span.span_id.len(),
                            span.parent_span_id.len()
                        );
                    }
                }
            }
        }
    }
    if verdict.rejected > 0 {
        verdict.message = format!(
            "{} of {} spans rejected: {}",
            verdict.rejected, verdict.total, verdict.message
        );
    }
    Ok(verdict)
}

fn check_span(span: &Span, at: impl Fn() -> String + Copy) -> Result<(), IngestError> {
    utf8(&span.name, || format!("{}.name", at()))?;
    check_attrs(&span.attributes, &|| format!("{}.attributes", at()))?;
    for (e, event) in span.events.iter().enumerate() {
        utf8(&event.name, || format!("{}.events[{e}].name", at()))?;
        check_attrs(&event.attributes, &|| {
            format!("{}.events[{e}].attributes", at())
        })?;
    }
    if let Some(status) = &span.status {
        utf8(&status.message, || format!("{}.status.message", at()))?;
    }
    Ok(())
}

// Locations are built lazily (only on error) by `&dyn Fn` closures; `dyn`
// because values nest (arrays, kvlists) and generic closures would recurse
// at compile time.
fn check_attrs(attrs: &[KeyValue], at: &dyn Fn() -> String) -> Result<(), IngestError> {
    for (i, kv) in attrs.iter().enumerate() {
        utf8(&kv.key, || format!("{}[{i}].key", at()))?;
        if let Some(v) = &kv.value {
            check_value(v, &|| {
                let key = String::from_utf8_lossy(&kv.key);
                format!("{}[{key:?}]", at())
            })?;
        }
    }
    Ok(())
}

fn check_value(v: &AnyValue, at: &dyn Fn() -> String) -> Result<(), IngestError> {
    match &v.value {
        Some(Value::StringValue(b)) => utf8(b, at),
        Some(Value::ArrayValue(a)) => {
            for (i, item) in a.values.iter().enumerate() {
                check_value(item, &|| format!("{}[{i}]", at()))?;
            }
            Ok(())
        }
        Some(Value::KvlistValue(kv)) => check_attrs(&kv.values, at),
        _ => Ok(()),
    }
}

/// The fast check first (an ASCII test for short strings, SIMD for long
/// ones: `otlp::utf8`); the standard library's slower check only runs on
/// failure, to say where.
#[inline]
fn utf8(bytes: &[u8], at: impl Fn() -> String) -> Result<(), IngestError> {
    if crate::otlp::utf8::is_valid(bytes) {
        return Ok(());
    }
    let valid_up_to = std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), |s| s.len());
    Err(IngestError::InvalidUtf8(format!(
        "{} (at byte {valid_up_to})",
        at()
    )))
}
