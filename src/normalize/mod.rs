//! Stage 2: every span becomes a [`ChainRun`], whichever instrumentation
//! sent it (OpenInference, OpenLLMetry/Traceloop, LangSmith, OTel GenAI,
//! Langfuse, OpenLIT).
//!
//! The input is the zero-copy view of a validated request; the output owns
//! only the short strings that become labels, plus `Bytes` slices for inputs
//! and outputs.

mod context;
mod errors;
mod extract;
mod kind;
pub mod run;
pub mod text;
mod timefmt;
mod usage;
mod value;

pub use run::{ChainRun, Dialect, RunKind, RunStatus, SpanId, Tokens, TraceId};
pub use text::Text;

use crate::otlp_view::{ExportTraceServiceRequest, KeyValue, Span};
use extract::Extracted;
use std::sync::Arc;

/// Per-resource facts shared by its spans.
pub struct ResourceCtx {
    pub service: Arc<str>,
    pub openlit: bool,
}

impl ResourceCtx {
    pub fn from_attributes(attrs: &[KeyValue]) -> Self {
        let mut service: Option<&str> = None;
        let mut openlit = false;
        for kv in attrs {
            let Some(v) = kv.value.as_ref() else { continue };
            match &kv.key[..] {
                b"service.name" => service = value::as_nonempty_str(v),
                b"telemetry.sdk.name" => {
                    openlit |= value::as_str(v).is_some_and(|s| s.eq_ignore_ascii_case("openlit"))
                }
                _ => {}
            }
        }
        ResourceCtx {
            service: Arc::from(service.unwrap_or("unknown_service")),
            openlit,
        }
    }
}

/// Normalizes every span of a (validated) request, in order.
pub fn normalize_request(req: &ExportTraceServiceRequest) -> Vec<ChainRun> {
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    let mut runs = Vec::with_capacity(total);
    for rs in &req.resource_spans {
        let ctx = rs
            .resource
            .as_ref()
            .map(|r| ResourceCtx::from_attributes(&r.attributes))
            .unwrap_or_else(|| ResourceCtx::from_attributes(&[]));
        for ss in &rs.scope_spans {
            let scope_openlit = ss
                .scope
                .as_ref()
                .is_some_and(|s| s.name.starts_with(b"openlit"));
            for span in &ss.spans {
                if let Some(run) = normalize_span(span, &ctx, scope_openlit) {
                    runs.push(run);
                }
            }
        }
    }
    runs
}

/// One span to one run. `None` for a span whose ids make it invalid
/// ([`crate::otlp::id_problem`], the rule `receive::validate` rejects by):
/// a span the client was told was rejected is never counted.
pub fn normalize_span(span: &Span, ctx: &ResourceCtx, scope_openlit: bool) -> Option<ChainRun> {
    if crate::otlp::id_problem(&span.trace_id, &span.span_id, &span.parent_span_id).is_some() {
        return None;
    }
    let trace_id: TraceId = span.trace_id[..].try_into().ok()?;
    let span_id: SpanId = span.span_id[..].try_into().ok()?;
    let parent_span_id: Option<SpanId> = match span.parent_span_id.len() {
        0 => None,
        _ => Some(span.parent_span_id[..].try_into().ok()?),
    }
    .filter(|p| *p != [0u8; 8]);

    let x = Extracted::from_attributes(&span.attributes);
    let dialect = detect(&x, ctx.openlit || scope_openlit);
    let (kind, name) = kind::resolve(&x, &span.name, dialect);

    let metadata = context::metadata(&x);
    let model = usage::model(&x, context::meta_text(&metadata, &["ls_model_name"]));
    let provider = usage::provider(&x, context::meta_text(&metadata, &["ls_provider"]));
    let tokens = usage::tokens(&x);
    let (status_code, status_message) = span
        .status
        .as_ref()
        .map(|s| (s.code, std::str::from_utf8(&s.message).unwrap_or_default()))
        .unwrap_or((0, ""));
    let (status, error_type) = errors::resolve(&x, status_code, status_message, &span.events);
    let (streaming, time_to_first_token_s) = context::streaming(&x, span.start_time_unix_nano);
    let (inputs, outputs) = context::io(&x);
    let cache_hit = context::cache_hit(&x, kind == RunKind::Llm, outputs.as_ref());

    Some(ChainRun {
        trace_id,
        span_id,
        parent_span_id,
        dialect,
        service: ctx.service.clone(),
        name,
        kind,
        model,
        provider,
        tokens,
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        status,
        error_type,
        tags: context::tags(&x),
        session_id: context::session_id(&x, &metadata),
        user_id: context::user_id(&x, &metadata),
        metadata,
        streaming,
        time_to_first_token_s,
        cache_hit,
        inputs,
        outputs,
    })
}

fn detect(x: &Extracted<'_>, openlit: bool) -> Dialect {
    if x.oi_kind.is_some() {
        Dialect::OpenInference
    } else if x.has_langsmith {
        Dialect::LangSmith
    } else if x.has_langfuse {
        Dialect::Langfuse
    } else if x.has_traceloop {
        Dialect::OpenLlmetry
    } else if openlit || x.has_openlit {
        Dialect::OpenLit
    } else if x.has_genai {
        Dialect::GenAi
    } else {
        Dialect::Unknown
    }
}
