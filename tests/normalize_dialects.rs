//! Dialects without a capture in `tests/fixtures`: spans built from the
//! attribute maps in span-dialects.md (Langfuse, OpenLIT, OTel GenAI current
//! and deprecated keys, older OpenLLMetry, LangSmith token details).

use bytes::Bytes;
use chainpulse::normalize::{normalize_span, ChainRun, Dialect, ResourceCtx, RunKind, RunStatus};
use chainpulse::otlp_view::{
    any_value::Value, AnyValue, ArrayValue, Event, KeyValue, Span, Status,
};

enum V {
    S(&'static str),
    I(i64),
    D(f64),
    B(bool),
    A(&'static [&'static str]),
}

fn kv(key: &str, v: V) -> KeyValue {
    let value = match v {
        V::S(s) => Value::StringValue(Bytes::from(s)),
        V::I(i) => Value::IntValue(i),
        V::D(d) => Value::DoubleValue(d),
        V::B(b) => Value::BoolValue(b),
        V::A(items) => Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(Value::StringValue(Bytes::from(*s))),
                })
                .collect(),
        }),
    };
    KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn span(name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: Bytes::from_static(&[1; 16]),
        span_id: Bytes::from_static(&[2; 8]),
        parent_span_id: Bytes::from_static(&[3; 8]),
        name: Bytes::copy_from_slice(name.as_bytes()),
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 3_500_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn norm(s: &Span) -> ChainRun {
    let ctx = ResourceCtx::from_attributes(&[kv("service.name", V::S("svc"))]);
    normalize_span(s, &ctx, false).expect("valid span")
}

#[test]
fn langfuse_generation() {
    let s = span(
        "ChatAnthropic",
        vec![
            kv("langfuse.observation.type", V::S("generation")),
            kv(
                "langfuse.observation.model.name",
                V::S("claude-3-5-sonnet-20241022"),
            ),
            kv(
                "langfuse.observation.usage_details",
                V::S(r#"{"input": 100, "output": 20, "input_cache_read": 50, "total": 170}"#),
            ),
            kv("langfuse.trace.tags", V::A(&["prod", "rag"])),
            // Langfuse v5 JSON-encodes every metadata value, strings included.
            kv(
                "langfuse.observation.metadata.environment",
                V::S("\"prod\""),
            ),
            kv("langfuse.observation.metadata.attempt", V::S("2")),
            kv("session.id", V::S("conv-9")),
            kv("user.id", V::S("u-1")),
            kv(
                "langfuse.observation.completion_start_time",
                V::S("\"1970-01-01T00:00:01.250Z\""),
            ),
        ],
    );
    let r = norm(&s);
    assert_eq!(r.dialect, Dialect::Langfuse);
    assert_eq!(r.kind, RunKind::Llm);
    assert_eq!(r.name, "ChatAnthropic");
    // Langfuse's `model.name` is the requested model in some integrations and
    // the answering snapshot in others (its OpenAI wrapper, when not
    // streamed): the label drops the snapshot date so one model is one
    // series; the dated name is kept for the price.
    assert_eq!(r.model.as_deref(), Some("claude-3-5-sonnet"));
    assert_eq!(
        r.response_model.as_deref(),
        Some("claude-3-5-sonnet-20241022")
    );
    // Langfuse subtracts cache tokens from input; chainpulse adds them back.
    assert_eq!(
        (r.tokens.input, r.tokens.output, r.tokens.cache_read),
        (150, 20, 50)
    );
    assert_eq!(r.tags, vec!["prod", "rag"]);
    assert_eq!(r.meta("environment"), Some("prod"));
    assert_eq!(r.meta("attempt"), Some("2"));
    assert_eq!(r.session_id.as_deref(), Some("conv-9"));
    assert_eq!(r.user_id.as_deref(), Some("u-1"));
    assert_eq!(r.streaming, Some(true));
    assert_eq!(r.time_to_first_token_s, Some(0.25));
}

#[test]
fn langfuse_error_level() {
    let s = span(
        "retrieve",
        vec![
            kv("langfuse.observation.type", V::S("retriever")),
            kv("langfuse.observation.level", V::S("ERROR")),
            kv(
                "langfuse.observation.status_message",
                V::S("TimeoutError('slow store')"),
            ),
        ],
    );
    let r = norm(&s);
    assert_eq!((r.kind, r.status), (RunKind::Retriever, RunStatus::Error));
    assert_eq!(r.error_type.as_deref(), Some("TimeoutError"));
}

#[test]
fn openlit_chat_and_tool() {
    let ctx = ResourceCtx::from_attributes(&[
        kv("service.name", V::S("svc")),
        kv("telemetry.sdk.name", V::S("openlit")),
    ]);
    let chat = span(
        "chat gpt-4o",
        vec![
            kv("gen_ai.operation.name", V::S("chat")),
            kv("gen_ai.provider.name", V::S("openai")),
            kv("gen_ai.request.model", V::S("gpt-4o")),
            kv("gen_ai.usage.input_tokens", V::I(1000)),
            kv("gen_ai.usage.output_tokens", V::I(200)),
            kv("gen_ai.usage.cache_read.input_tokens", V::I(0)),
            kv("gen_ai.client.token.usage", V::I(1200)),
            kv("gen_ai.request.stream", V::B(false)),
            // OpenLIT writes the full duration here for non-streamed calls.
            kv("gen_ai.server.time_to_first_token", V::D(2.5)),
        ],
    );
    let r = normalize_span(&chat, &ctx, false).expect("span");
    assert_eq!(r.dialect, Dialect::OpenLit);
    assert_eq!((r.kind, r.name.as_str()), (RunKind::Llm, "chat"));
    assert_eq!((r.tokens.input, r.tokens.output), (1000, 200));
    assert_eq!((r.streaming, r.time_to_first_token_s), (Some(false), None));

    let tool = span(
        "execute_tool get_weather",
        vec![
            kv("gen_ai.operation.name", V::S("execute_tool")),
            kv("gen_ai.tool.name", V::S("get_weather")),
            kv("error.type", V::S("ValueError")),
        ],
    );
    let mut tool = tool;
    tool.status = Some(Status {
        message: Bytes::from_static(b"bad city"),
        code: 2,
    });
    let r = normalize_span(&tool, &ctx, false).expect("span");
    assert_eq!((r.kind, r.name.as_str()), (RunKind::Tool, "get_weather"));
    assert_eq!(r.error_type.as_deref(), Some("ValueError"));
}

#[test]
fn genai_current_and_deprecated_keys() {
    let current = span(
        "chat gpt-4o-mini",
        vec![
            kv("gen_ai.operation.name", V::S("chat")),
            kv("gen_ai.provider.name", V::S("openai")),
            kv("gen_ai.request.model", V::S("gpt-4o-mini")),
            kv("gen_ai.response.model", V::S("gpt-4o-mini-2024-07-18")),
            kv("gen_ai.usage.input_tokens", V::I(500)),
            kv("gen_ai.usage.output_tokens", V::I(100)),
            kv("gen_ai.usage.cache_read.input_tokens", V::I(300)),
            kv("gen_ai.usage.cache_creation.input_tokens", V::I(20)),
            kv("gen_ai.usage.reasoning.output_tokens", V::I(64)),
            kv("gen_ai.conversation.id", V::S("thread-1")),
            kv("gen_ai.request.stream", V::B(true)),
            kv("gen_ai.response.time_to_first_chunk", V::D(0.42)),
        ],
    );
    let r = norm(&current);
    assert_eq!(r.dialect, Dialect::GenAi);
    assert_eq!(
        r.model.as_deref(),
        Some("gpt-4o-mini"),
        "request model preferred"
    );
    assert_eq!(
        (
            r.tokens.input,
            r.tokens.output,
            r.tokens.cache_read,
            r.tokens.cache_write,
            r.tokens.reasoning
        ),
        (500, 100, 300, 20, 64)
    );
    assert_eq!(r.session_id.as_deref(), Some("thread-1"));
    assert_eq!(
        (r.streaming, r.time_to_first_token_s),
        (Some(true), Some(0.42))
    );

    let deprecated = span(
        "chat",
        vec![
            kv("gen_ai.operation.name", V::S("chat")),
            kv("gen_ai.system", V::S("az.ai.openai")),
            kv("gen_ai.request.model", V::S("my-deployment")),
            kv("gen_ai.usage.prompt_tokens", V::I(70)),
            kv("gen_ai.usage.completion_tokens", V::S("30")),
        ],
    );
    let r = norm(&deprecated);
    assert_eq!(r.provider.as_deref(), Some("azure.ai.openai"));
    assert_eq!((r.tokens.input, r.tokens.output), (70, 30));
}

#[test]
fn old_openllmetry_generation() {
    // ≤0.47: prompt/completion token keys, llm.request.type, {name}.task.
    let s = span(
        "ChatOpenAI.chat",
        vec![
            kv("traceloop.workflow.name", V::S("qa")),
            kv("llm.request.type", V::S("chat")),
            kv("gen_ai.system", V::S("OpenAI")),
            kv("gen_ai.request.model", V::S("gpt-3.5-turbo")),
            kv("gen_ai.usage.prompt_tokens", V::I(11)),
            kv("gen_ai.usage.completion_tokens", V::I(7)),
            kv("llm.usage.total_tokens", V::I(18)),
            kv("gen_ai.usage.cache_read_input_tokens", V::I(4)),
        ],
    );
    let r = norm(&s);
    assert_eq!(r.dialect, Dialect::OpenLlmetry);
    assert_eq!((r.kind, r.name.as_str()), (RunKind::Llm, "ChatOpenAI"));
    assert_eq!(r.provider.as_deref(), Some("openai"));
    assert_eq!(
        (r.tokens.input, r.tokens.output, r.tokens.cache_read),
        (11, 7, 4)
    );

    let task = span(
        "retrieve.task",
        vec![
            kv("traceloop.span.kind", V::S("task")),
            kv("traceloop.entity.name", V::S("retrieve")),
            kv("gen_ai.operation.name", V::S("vector_db_retrieve")),
        ],
    );
    assert_eq!(norm(&task).kind, RunKind::Retriever);
}

#[test]
fn langsmith_token_details_and_exception_repr() {
    let mut s = span(
        "ChatOpenAI",
        vec![
            kv("langsmith.span.kind", V::S("llm")),
            kv("gen_ai.system", V::S("openai")),
            kv("gen_ai.request.model", V::S("o3-mini")),
            kv("gen_ai.usage.input_tokens", V::I(900)),
            kv("gen_ai.usage.output_tokens", V::I(300)),
            kv(
                "gen_ai.usage.input_token_details",
                V::S("{'audio': 0, 'cache_read': 600}"),
            ),
            kv(
                "gen_ai.usage.output_token_details",
                V::S("{'audio': 0, 'reasoning': 256}"),
            ),
            kv("langsmith.metadata.thread_id", V::S("t-7")),
            kv(
                "langsmith.trace.session_id",
                V::S("project-uuid-not-a-session"),
            ),
        ],
    );
    s.status = Some(Status {
        message: Bytes::new(),
        code: 2,
    });
    s.events = vec![Event {
        time_unix_nano: 2,
        name: Bytes::from_static(b"exception"),
        attributes: vec![
            kv("exception.type", V::S("Exception")),
            kv(
                "exception.message",
                V::S("RateLimitError('429 too many requests')"),
            ),
        ],
    }];
    let r = norm(&s);
    assert_eq!(r.dialect, Dialect::LangSmith);
    assert_eq!((r.tokens.cache_read, r.tokens.reasoning), (600, 256));
    assert_eq!(
        r.session_id.as_deref(),
        Some("t-7"),
        "thread_id, not the LangSmith project"
    );
    assert_eq!(r.error_type.as_deref(), Some("RateLimitError"));
}

#[test]
fn langgraph_control_flow_is_not_an_error() {
    let mut s = span("agent", vec![kv("openinference.span.kind", V::S("AGENT"))]);
    s.status = Some(Status {
        message: Bytes::from_static(b"GraphInterrupt((Interrupt(value='approve?'),))"),
        code: 2,
    });
    let r = norm(&s);
    assert_eq!(
        (r.kind, r.status, r.error_type),
        (RunKind::Agent, RunStatus::Ok, None)
    );
}

#[test]
fn unknown_spans_are_other_runs() {
    let s = span("GET /health", vec![kv("http.method", V::S("GET"))]);
    let r = norm(&s);
    assert_eq!(
        (r.dialect, r.kind, r.name.as_str()),
        (Dialect::Unknown, RunKind::Other, "GET /health")
    );
    assert!(r.tokens.is_zero());
}
