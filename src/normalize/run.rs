//! The normalized form of one span: a *chain run*.
//!
//! Whatever instrumentation produced a span, the rest of chainpulse only sees
//! this type. Fields that become metric labels are short strings; inputs and
//! outputs stay as slices of the received request (`Bytes`), because they are
//! forwarded, never aggregated.

use super::text::Text;
use bytes::Bytes;
use std::sync::Arc;

/// A trace id (16 bytes) as sent on the wire.
pub type TraceId = [u8; 16];
/// A span id (8 bytes) as sent on the wire.
pub type SpanId = [u8; 8];

/// What a run does, as one vocabulary across dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunKind {
    Chain,
    Llm,
    Retriever,
    Tool,
    Embedding,
    Agent,
    Prompt,
    Parser,
    Reranker,
    Guardrail,
    Other,
}

impl RunKind {
    pub const ALL: [RunKind; 11] = [
        RunKind::Chain,
        RunKind::Llm,
        RunKind::Retriever,
        RunKind::Tool,
        RunKind::Embedding,
        RunKind::Agent,
        RunKind::Prompt,
        RunKind::Parser,
        RunKind::Reranker,
        RunKind::Guardrail,
        RunKind::Other,
    ];

    /// The label value used in metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Chain => "chain",
            RunKind::Llm => "llm",
            RunKind::Retriever => "retriever",
            RunKind::Tool => "tool",
            RunKind::Embedding => "embedding",
            RunKind::Agent => "agent",
            RunKind::Prompt => "prompt",
            RunKind::Parser => "parser",
            RunKind::Reranker => "reranker",
            RunKind::Guardrail => "guardrail",
            RunKind::Other => "other",
        }
    }

    /// Runs whose token counts are model usage. LangSmith repeats an LLM's
    /// usage on the chain spans that return its message; counting only these
    /// kinds is what keeps tokens from being counted twice.
    pub fn bills_tokens(self) -> bool {
        matches!(self, RunKind::Llm | RunKind::Embedding)
    }
}

/// Which instrumentation produced the span (detected from its attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenInference,
    OpenLlmetry,
    LangSmith,
    Langfuse,
    OpenLit,
    VercelAi,
    GenAi,
    Unknown,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenInference => "openinference",
            Dialect::OpenLlmetry => "openllmetry",
            Dialect::LangSmith => "langsmith",
            Dialect::Langfuse => "langfuse",
            Dialect::OpenLit => "openlit",
            Dialect::VercelAi => "vercel_ai",
            Dialect::GenAi => "gen_ai",
            Dialect::Unknown => "unknown",
        }
    }
}

/// Token usage of one run. `input` always *includes* cache-read and
/// cache-write tokens, whatever the dialect's own convention (Langfuse sends
/// them subtracted; normalization adds them back), so sums are comparable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Tokens {
    pub fn is_zero(&self) -> bool {
        *self == Tokens::default()
    }
}

/// Outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Ok,
    Error,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
        }
    }
}

/// One normalized span.
#[derive(Debug, Clone)]
pub struct ChainRun {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` when the span has no parent: the trace's root run.
    pub parent_span_id: Option<SpanId>,
    pub dialect: Dialect,
    /// `service.name` of the resource that sent the span.
    pub service: Arc<str>,
    /// The name the application gave the run (LangChain's `run_name`).
    pub name: Text,
    pub kind: RunKind,
    /// A framework set-up span (building an agent, not running it): never a
    /// request, even as the root of its trace.
    pub setup: bool,
    /// The model the application *requested*: one series per model whether
    /// streamed or not, whichever instrumentation (see `usage::model`).
    pub model: Option<Text>,
    /// The model that answered (often a dated snapshot of `model`), when the
    /// span says so: it may refine the price, never the label.
    pub response_model: Option<Text>,
    /// The label was derived from `response_model` (the span named only the
    /// answering snapshot): price the call as that snapshot first.
    pub price_as_response: bool,
    pub provider: Option<Text>,
    pub tokens: Tokens,
    /// Whether the span reported usage at all. `false` means "not known",
    /// which is not the same as zero tokens: such a call is unpriced.
    pub usage_reported: bool,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: RunStatus,
    /// The span set no status (OTel `UNSET`) and nothing else marked it
    /// failed: its outcome is "not said", which a request root resolves from
    /// its last step (see `aggregate::requests`).
    pub status_unset: bool,
    /// Exception class (`RuntimeError`), never a message or a traceback.
    pub error_type: Option<Text>,
    /// Sorted, deduplicated, without LangChain's positional tags.
    pub tags: Vec<Text>,
    /// Application metadata in arrival order, values as text (JSON text for
    /// structures); the first entry of a key wins.
    pub metadata: Vec<(Text, Text)>,
    pub session_id: Option<Text>,
    pub user_id: Option<Text>,
    pub streaming: Option<bool>,
    pub time_to_first_token_s: Option<f64>,
    /// An LLM-response cache hit (`Some(true)`) or miss (`Some(false)`),
    /// when the span says so; `None` when it cannot be told.
    pub cache_hit: Option<bool>,
    /// Run inputs / outputs as sent (kept for forwarding, never labels).
    pub inputs: Option<Bytes>,
    pub outputs: Option<Bytes>,
}

impl ChainRun {
    /// Wall-clock duration in seconds (0 when the clock went backwards).
    pub fn duration_s(&self) -> f64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano) as f64 / 1e9
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        super::metadata::meta_value(&self.metadata, key)
    }
}

#[cfg(test)]
impl ChainRun {
    /// A minimal run for unit tests: ids from single bytes, everything else
    /// empty, status OK (set), no usage.
    pub fn for_test(trace: u8, span: u8, parent: Option<u8>, kind: RunKind) -> ChainRun {
        ChainRun {
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            dialect: Dialect::OpenInference,
            service: Arc::from("svc"),
            name: Text::from(format!("run{span}")),
            kind,
            setup: false,
            model: None,
            response_model: None,
            price_as_response: false,
            provider: None,
            tokens: Tokens::default(),
            usage_reported: false,
            start_unix_nano: 0,
            end_unix_nano: 1,
            status: RunStatus::Ok,
            status_unset: false,
            error_type: None,
            tags: vec![],
            metadata: vec![],
            session_id: None,
            user_id: None,
            streaming: None,
            time_to_first_token_s: None,
            cache_hit: None,
            inputs: None,
            outputs: None,
        }
    }
}
