//! Stage 2: every span becomes a [`ChainRun`], whichever instrumentation
//! sent it (OpenInference, OpenLLMetry/Traceloop, LangSmith, OTel GenAI,
//! Langfuse, OpenLIT, the Vercel AI SDK).
//!
//! The input is the zero-copy view of a validated request; the output owns
//! only the short strings that become labels, plus `Bytes` slices for inputs
//! and outputs. Of the application's free-form metadata and tags, a run
//! keeps what some stage reads ([`kept`]): the pipeline asks for that, the
//! library's [`normalize_request`] for everything.

mod context;
mod errors;
mod extract;
pub mod kept;
mod kind;
pub mod metadata;
pub mod run;
pub mod text;
mod timefmt;
mod usage;
mod value;

pub use kept::{Kept, Names};
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

/// Per-instrumentation-scope facts shared by its spans.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeCtx {
    /// The scope is OpenLIT's (`openlit`, `openlit.instrumentation.*`).
    pub openlit: bool,
    /// The provider whose SDK the scope instruments
    /// (`openlit.instrumentation.anthropic`,
    /// `opentelemetry.instrumentation.openai_v2`, …): a fallback for spans
    /// that name no provider, such as a failed call recorded before its
    /// attributes were set.
    pub provider: Option<&'static str>,
}

impl ScopeCtx {
    pub fn from_name(name: &[u8]) -> Self {
        let name = crate::otlp::utf8::as_str(name).unwrap_or_default();
        let library = name
            .rsplit_once(".instrumentation.")
            .map(|(_, lib)| lib)
            .or_else(|| name.strip_prefix("opentelemetry-instrumentation-"));
        ScopeCtx {
            openlit: name.starts_with("openlit"),
            provider: library.and_then(usage::provider_of_sdk),
        }
    }
}

/// Normalizes every span of a (validated) request, in order, keeping every
/// metadata key and tag.
pub fn normalize_request(req: &ExportTraceServiceRequest) -> Vec<ChainRun> {
    normalize_request_keeping(req, &Kept::all())
}

/// [`normalize_request`] keeping only the metadata keys and tags in `kept`
/// (what the pipeline does: see [`kept`]).
pub fn normalize_request_keeping(req: &ExportTraceServiceRequest, kept: &Kept) -> Vec<ChainRun> {
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
            let scope = ss
                .scope
                .as_ref()
                .map(|s| ScopeCtx::from_name(&s.name))
                .unwrap_or_default();
            for span in &ss.spans {
                if let Some(run) = normalize_scoped(span, &ctx, &scope, kept) {
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
    let scope = ScopeCtx {
        openlit: scope_openlit,
        provider: None,
    };
    normalize_scoped(span, ctx, &scope, &Kept::all())
}

/// [`normalize_span`] with everything known about the span's scope, keeping
/// the metadata keys and tags in `kept`.
pub fn normalize_scoped(
    span: &Span,
    ctx: &ResourceCtx,
    scope: &ScopeCtx,
    kept: &Kept,
) -> Option<ChainRun> {
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
    let dialect = detect(&x, ctx.openlit || scope.openlit);
    let (kind, name) = kind::resolve(&x, &span.name, dialect);
    let metadata = metadata::metadata(&x, &kept.metadata);
    let setup = kind::is_setup(&x);
    let kind = kind::refine(kind, &name, &metadata, setup, parent_span_id.is_none());
    // A GenAI span that carries no kind at all (OpenLIT records a failed call
    // before setting any attribute) is read from its spec-defined name,
    // `{operation} {model}`.
    let (kind, name_model) = match (kind, dialect) {
        (RunKind::Other, Dialect::OpenLit | Dialect::GenAi) => {
            kind::from_genai_span_name(&span.name).unwrap_or((kind, None))
        }
        _ => (kind, None),
    };

    let params = context::invocation_params(&x);
    let choice = usage::model(
        &x,
        params.model,
        metadata::meta_text(&metadata, &["ls_model_name"]),
    );
    let price_as_response = choice.dated.is_some();
    let response_model = choice.dated.or_else(|| usage::response_model(&x));
    let model = choice.label.or(name_model);
    let provider =
        usage::provider(&x, metadata::meta_text(&metadata, &["ls_provider"])).or_else(|| {
            kind.bills_tokens()
                .then_some(scope.provider)
                .flatten()
                .map(Text::from_static)
        });
    let (inputs, outputs) = context::io(&x);
    let usage = usage::tokens(&x, dialect, provider.as_deref(), outputs.as_deref());
    let (status_code, status_message) = span
        .status
        .as_ref()
        .map(|s| {
            (
                s.code,
                crate::otlp::utf8::as_str(&s.message).unwrap_or_default(),
            )
        })
        .unwrap_or((0, ""));
    let (status, error_type) = errors::resolve(&x, status_code, status_message, &span.events);
    let status_unset = status_code == 0 && status == RunStatus::Ok;
    let (streaming, time_to_first_token_s) =
        context::streaming(&x, params.stream, span.start_time_unix_nano, &span.events);
    let cache_hit = context::cache_hit(&x, kind == RunKind::Llm, outputs.as_ref());

    Some(ChainRun {
        trace_id,
        span_id,
        parent_span_id,
        dialect,
        service: ctx.service.clone(),
        name,
        kind,
        setup,
        response_model,
        price_as_response,
        model,
        provider,
        tokens: usage.tokens,
        usage_reported: usage.reported,
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        status,
        status_unset,
        error_type,
        tags: context::tags(&x, &kept.tags),
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
    } else if x.ai_operation_id.is_some() {
        Dialect::VercelAi
    } else if x.has_genai {
        Dialect::GenAi
    } else {
        Dialect::Unknown
    }
}
