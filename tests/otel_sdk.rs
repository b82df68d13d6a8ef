//! Spans from the official OpenTelemetry Rust SDK (`opentelemetry_sdk` +
//! `opentelemetry-otlp`), over gRPC, HTTP/protobuf and HTTP/JSON.

mod common;

use common::{scrape_until, start, test_config, value};
use opentelemetry::trace::{Span, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::{Duration, SystemTime};

/// Three requests of one chain (root → retriever → LLM), the third failing.
fn emit(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("sdk-test");
    for i in 0..3 {
        let t0 = SystemTime::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let root = tracer
            .span_builder("answer")
            .with_start_time(at(0))
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "invoke_workflow"),
                KeyValue::new("gen_ai.workflow.name", "answer"),
            ])
            .start(&tracer);
        let cx = Context::current_with_span(root);
        tracer
            .span_builder("retrieval docs")
            .with_start_time(at(0))
            .with_attributes(vec![KeyValue::new("gen_ai.operation.name", "retrieval")])
            .start_with_context(&tracer, &cx)
            .end_with_timestamp(at(40));
        let mut llm = tracer
            .span_builder("chat claude-3-5-haiku")
            .with_start_time(at(40))
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", "anthropic"),
                KeyValue::new("gen_ai.request.model", "claude-3-5-haiku"),
                KeyValue::new("gen_ai.usage.input_tokens", 1000_i64),
                KeyValue::new("gen_ai.usage.output_tokens", 100_i64),
                KeyValue::new("gen_ai.usage.cache_read.input_tokens", 400_i64),
            ])
            .start_with_context(&tracer, &cx);
        if i == 2 {
            llm.set_status(Status::error("overloaded"));
            llm.set_attribute(KeyValue::new("error.type", "OverloadedError"));
            cx.span()
                .set_status(Status::error("OverloadedError('overloaded')"));
        }
        llm.end_with_timestamp(at(1240));
        cx.span().end_with_timestamp(at(1250));
    }
}

async fn run(protocol: &str) {
    let server = start(test_config()).await;
    let exporter = match protocol {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", server.addrs().grpc))
            .build(),
        "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{}/v1/traces", server.addrs().http))
            .build(),
        _ => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(format!("http://{}/v1/traces", server.addrs().http))
            .build(),
    }
    .expect("exporter");
    // The tokio-driven batch processor: the HTTP exporter's reqwest client
    // (and tonic) need the tokio reactor, which the default processor's own
    // thread does not have.
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name("sdk-app").build())
        .build();
    emit(&provider);
    provider.force_flush().expect("flush");
    let m = scrape_until(&server, |m| {
        value(m, "chainpulse_requests_total", &[]) >= 3.0
    })
    .await;
    let chain = [("service", "sdk-app"), ("chain", "answer")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = chain.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(
        value(&m, "chainpulse_requests_total", &with(&[("status", "ok")])),
        2.0,
        "{protocol}"
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_requests_total",
            &with(&[("status", "error")])
        ),
        1.0,
        "{protocol}"
    );
    let llm = with(&[("provider", "anthropic"), ("model", "claude-3-5-haiku")]);
    let tokens = |t: &'static str| {
        let mut l = llm.clone();
        l.push(("type", t));
        value(&m, "chainpulse_llm_tokens_total", &l)
    };
    assert_eq!(
        (tokens("input"), tokens("output"), tokens("cache_read")),
        (3000.0, 300.0, 1200.0)
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_errors_total",
            &with(&[("kind", "llm"), ("error_type", "OverloadedError")])
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_runs_total",
            &with(&[("kind", "retriever"), ("step", "docs")])
        ),
        3.0
    );
    // Durations: the LLM calls took 1.2 s, the requests 1.25 s: all in the
    // (1, 2] bucket.
    assert_eq!(
        value(
            &m,
            "chainpulse_request_duration_seconds_bucket",
            &with(&[("le", "1")])
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_request_duration_seconds_bucket",
            &with(&[("le", "2")])
        ),
        3.0
    );
    assert!((value(&m, "chainpulse_llm_duration_seconds_sum", &chain) - 3.6).abs() < 1e-6);
    provider.shutdown().expect("sdk shutdown");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_grpc() {
    run("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_http_protobuf() {
    run("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_http_json() {
    run("http/json").await;
}
