//! The real server on ephemeral ports, fed over gRPC and HTTP (protobuf,
//! JSON, gzip), with exact values asserted on /metrics.

mod common;

use common::{fixture, scrape, start, test_config, value, DIALECTS};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::CompressionEncoding;

async fn grpc_client(addr: std::net::SocketAddr) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn decoded(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&fixture(name)[..]).expect("fixture")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// What one plain capture (3 requests, 1 failing, 2 LLM calls) adds.
fn assert_one_capture_each(m: &[chainpulse::export::text::Sample], captures: f64) {
    let chain = [("service", "rag-app"), ("chain", "rag_query")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = chain.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(
        value(m, "chainpulse_requests_total", &with(&[("status", "ok")])),
        2.0 * captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_requests_total",
            &with(&[("status", "error")])
        ),
        captures
    );
    assert_eq!(
        value(m, "chainpulse_request_duration_seconds_count", &chain),
        3.0 * captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_llm_tokens_total",
            &with(&[
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("type", "input")
            ])
        ),
        284.0 * captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_llm_tokens_total",
            &with(&[("type", "output")])
        ),
        84.0 * captures
    );
    assert_eq!(
        value(m, "chainpulse_llm_calls_total", &with(&[("status", "ok")])),
        2.0 * captures
    );
    assert_eq!(
        value(m, "chainpulse_llm_duration_seconds_count", &chain),
        2.0 * captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_runs_total",
            &with(&[("kind", "llm"), ("step", "ScriptedChat"), ("status", "ok")])
        ),
        2.0 * captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_runs_total",
            &with(&[("kind", "parser"), ("step", "StrOutputParser")])
        ),
        2.0 * captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_runs_total",
            &with(&[
                ("kind", "chain"),
                ("step", "retrieve_docs"),
                ("status", "error")
            ])
        ),
        captures
    );
    assert_eq!(
        value(
            m,
            "chainpulse_errors_total",
            &with(&[("error_type", "RuntimeError")])
        ),
        3.0 * captures,
        "root, parallel and retriever runs failed"
    );
}

#[tokio::test]
async fn fixtures_over_grpc_plain_and_gzip() {
    let server = start(test_config()).await;
    let mut client = grpc_client(server.addrs().grpc).await;
    let mut gz = grpc_client(server.addrs().grpc)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    for d in DIALECTS {
        let req = decoded(&format!("langchain-{d}.pb"));
        let resp = client
            .export(req.clone())
            .await
            .expect("export")
            .into_inner();
        assert!(resp.partial_success.is_none(), "{d}: nothing rejected");
        gz.export(req).await.expect("gzip export");
    }
    let m = scrape(&server).await;
    assert_one_capture_each(&m, 6.0);
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_received_total",
            &[("protocol", "grpc")]
        ),
        108.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_otlp_requests_total",
            &[("protocol", "grpc")]
        ),
        6.0
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn fixtures_over_http_protobuf_json_and_gzip() {
    let server = start(test_config()).await;
    let url = format!("http://{}/v1/traces", server.addrs().http);
    let http = reqwest::Client::new();
    for d in DIALECTS {
        let pb = fixture(&format!("langchain-{d}.pb"));
        let json = fixture(&format!("langchain-{d}.json"));
        for (ctype, body, gz) in [
            ("application/x-protobuf", pb.clone(), false),
            ("application/json", json.clone(), false),
            ("application/x-protobuf", gzip(&pb), true),
            ("application/json", gzip(&json), true),
        ] {
            let mut req = http.post(&url).header("content-type", ctype).body(body);
            if gz {
                req = req.header("content-encoding", "gzip");
            }
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status(), 200, "{d} {ctype} gzip={gz}");
            assert_eq!(resp.headers()["content-type"], ctype);
            let body = resp.bytes().await.expect("body");
            if ctype == "application/json" {
                assert_eq!(&body[..], b"{}");
            } else {
                assert!(body.is_empty(), "empty ExportTraceServiceResponse");
            }
        }
    }
    let m = scrape(&server).await;
    assert_one_capture_each(&m, 12.0);
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_received_total",
            &[("protocol", "http_protobuf")]
        ),
        108.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_received_total",
            &[("protocol", "http_json")]
        ),
        108.0
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn streamed_captures_count_tokens_once() {
    let server = start(test_config()).await;
    let mut client = grpc_client(server.addrs().grpc).await;
    for d in DIALECTS {
        client
            .export(decoded(&format!("langchain-{d}-stream.pb")))
            .await
            .expect("export");
    }
    let m = scrape(&server).await;
    let chain = [("service", "rag-app"), ("chain", "rag_query")];
    assert_eq!(value(&m, "chainpulse_requests_total", &chain), 6.0);
    assert_eq!(
        value(&m, "chainpulse_requests_total", &[("status", "error")]),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_llm_tokens_total",
            &[("type", "input"), ("model", "gpt-4o-mini")]
        ),
        852.0
    );
    assert_eq!(
        value(&m, "chainpulse_llm_tokens_total", &[("model", "unknown")]),
        0.0
    );
}

#[tokio::test]
async fn children_wait_for_their_root_across_requests() {
    let server = start(test_config()).await;
    let mut client = grpc_client(server.addrs().grpc).await;
    let mut req = decoded("langchain-openinference.pb");
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let roots: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .cloned()
        .collect();
    spans.retain(|s| !s.parent_span_id.is_empty());
    // Children first: held, nothing counted yet.
    client.export(req.clone()).await.expect("children");
    let m = scrape(&server).await;
    assert_eq!(value(&m, "chainpulse_runs_total", &[]), 0.0);
    assert_eq!(value(&m, "chainpulse_assembly_spans", &[]), 15.0);
    assert_eq!(value(&m, "chainpulse_assembly_traces", &[]), 3.0);
    // Then the roots: every step is labelled with its chain.
    req.resource_spans[0].scope_spans[0].spans = roots;
    client.export(req).await.expect("roots");
    let m = scrape(&server).await;
    assert_eq!(
        value(&m, "chainpulse_runs_total", &[("chain", "rag_query")]),
        18.0
    );
    assert_eq!(value(&m, "chainpulse_assembly_spans", &[]), 0.0);
    assert_eq!(value(&m, "chainpulse_assembly_evictions_total", &[]), 0.0);
}

#[tokio::test]
async fn traces_without_a_root_are_released_at_the_timeout() {
    let server = start(test_config()).await; // 500 ms timeout
    let mut client = grpc_client(server.addrs().grpc).await;
    let mut req = decoded("langchain-langsmith.pb");
    req.resource_spans[0].scope_spans[0]
        .spans
        .retain(|s| !s.parent_span_id.is_empty());
    client.export(req).await.expect("export");
    let m = common::scrape_until(&server, |m| {
        value(
            m,
            "chainpulse_assembly_evictions_total",
            &[("reason", "timeout")],
        ) >= 3.0
    })
    .await;
    assert_eq!(
        value(
            &m,
            "chainpulse_assembly_evictions_total",
            &[("reason", "timeout")]
        ),
        3.0
    );
    assert_eq!(
        value(&m, "chainpulse_assembly_inferred_roots_total", &[]),
        3.0
    );
    // Each trace's top-most span stands in for the missing root.
    for step in [
        "RunnableParallel<context,query>",
        "ChatPromptTemplate",
        "ScriptedChat",
        "StrOutputParser",
    ] {
        assert!(
            value(&m, "chainpulse_runs_total", &[("step", step)]) > 0.0,
            "{step}"
        );
    }
    assert_eq!(value(&m, "chainpulse_requests_total", &[]), 3.0);
    assert_eq!(value(&m, "chainpulse_assembly_traces", &[]), 0.0);
}

#[tokio::test]
async fn assembly_capacity_is_bounded() {
    let mut config = test_config();
    config.assembly.max_traces = 2;
    config.assembly.trace_timeout_ms = 60_000;
    let server = start(config).await;
    let mut client = grpc_client(server.addrs().grpc).await;
    let mut req = decoded("langchain-openinference.pb");
    req.resource_spans[0].scope_spans[0]
        .spans
        .retain(|s| !s.parent_span_id.is_empty());
    client.export(req).await.expect("export");
    let m = scrape(&server).await;
    assert_eq!(value(&m, "chainpulse_assembly_traces", &[]), 2.0);
    assert_eq!(
        value(
            &m,
            "chainpulse_assembly_evictions_total",
            &[("reason", "capacity")]
        ),
        1.0
    );
}

#[tokio::test]
async fn cardinality_guard_folds_new_chains() {
    let mut config = test_config();
    config.cardinality.max_series_per_family = 50;
    let server = start(config).await;
    let mut client = grpc_client(server.addrs().grpc).await;
    let template = decoded("langchain-openinference.pb");
    let root = template.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("root")
        .clone();
    // 2,000 distinct chain names in 20 requests.
    for batch in 0..20u32 {
        let mut req = template.clone();
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans.clear();
        for i in 0..100u32 {
            let mut s = root.clone();
            let n = batch * 100 + i;
            s.name = format!("chain-{n}");
            s.trace_id = [&n.to_be_bytes()[..], &[7u8; 12]].concat();
            s.span_id = [&n.to_be_bytes()[..], &[9u8; 4]].concat();
            spans.push(s);
        }
        client.export(req).await.expect("export");
    }
    let text = reqwest::get(format!("http://{}/metrics", server.addrs().metrics))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let m = chainpulse::export::text::parse(&text);
    let request_series = m
        .iter()
        .filter(|s| s.name == "chainpulse_requests_total")
        .count();
    // 50 label sets × 2 statuses, plus the overflow series × 2.
    assert_eq!(request_series, 102);
    assert_eq!(
        value(&m, "chainpulse_requests_total", &[]),
        2000.0,
        "nothing lost, only folded"
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_requests_total",
            &[("chain", "__overflow__")]
        ),
        1950.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_cardinality_overflow_total",
            &[("family", "chainpulse_requests_total")]
        ),
        1950.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_cardinality_series",
            &[("family", "chainpulse_requests_total")]
        ),
        50.0
    );
    assert!(
        text.len() < 400_000,
        "exposition stays bounded: {} bytes",
        text.len()
    );
}

#[tokio::test]
async fn promoted_metadata_and_tags_become_labels() {
    let mut config = test_config();
    config.labels.metadata = vec!["environment".into()];
    config.labels.tags = vec!["production".into()];
    let server = start(config).await;
    let mut client = grpc_client(server.addrs().grpc).await;
    client
        .export(decoded("langchain-langsmith.pb"))
        .await
        .expect("export");
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_requests_total",
            &[("environment", "prod"), ("tag_production", "true")]
        ),
        3.0
    );
    // Not promoted by default:
    let server2 = start(test_config()).await;
    let mut client2 = grpc_client(server2.addrs().grpc).await;
    client2
        .export(decoded("langchain-langsmith.pb"))
        .await
        .expect("export");
    let m2 = scrape(&server2).await;
    assert!(m2
        .iter()
        .all(|s| s.label("environment").is_none() && s.label("user_id").is_none()));
}

#[tokio::test]
async fn health_and_readiness() {
    let server = start(test_config()).await;
    let base = format!("http://{}", server.addrs().metrics);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(value(&m, "process_resident_memory_bytes", &[]) > 1e6);
}
