//! Every kind of bad input gets the protocol's proper status, a message that
//! says what was wrong, a rejection counter, and leaves the server healthy.

mod common;

use bytes::Bytes;
use chainpulse::loadgen::ClientCodec;
use chainpulse::receive::grpc::RawExportRequest;
use common::{fixture, scrape, start, test_config, value};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::Code;

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Sends arbitrary bytes as a gRPC Export request.
async fn grpc_raw(addr: std::net::SocketAddr, body: Vec<u8>) -> Result<(), tonic::Status> {
    grpc_raw_to(addr, EXPORT, body).await
}

/// Sends arbitrary bytes to any unary gRPC method.
async fn grpc_raw_to(
    addr: std::net::SocketAddr,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(RawExportRequest(Bytes::from(body))),
        http::uri::PathAndQuery::from_static(path),
        ClientCodec,
    )
    .await
    .map(|_| ())
}

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    (status, ctype, resp.bytes().await.expect("body").to_vec())
}

/// The OTLP/HTTP error body (`google.rpc.Status`) of a protobuf request.
fn rpc_message(body: &[u8]) -> String {
    chainpulse::receive::http::RpcStatus::decode(body)
        .expect("google.rpc.Status body")
        .message
}

fn json_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON status body");
    v["message"].as_str().expect("message").to_owned()
}

const PB: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

/// A request whose first span has the given trace/span id lengths.
fn with_ids(trace_len: usize, span_len: usize) -> ExportTraceServiceRequest {
    let mut req = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    let s = &mut req.resource_spans[0].scope_spans[0].spans[0];
    s.trace_id = vec![1; trace_len];
    s.span_id = vec![2; span_len];
    req
}

/// The fixture with invalid UTF-8 in one span name (encoded through the
/// zero-copy view types, whose strings are bytes).
fn with_invalid_utf8() -> Vec<u8> {
    let mut req = chainpulse::otlp_view::ExportTraceServiceRequest::decode(Bytes::from(fixture(
        "langchain-openinference.pb",
    )))
    .expect("fixture");
    req.resource_spans[0].scope_spans[0].spans[2].name = Bytes::from_static(b"bad \xff\xfe name");
    req.encode_to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

#[tokio::test]
async fn http_bad_inputs() {
    let mut config = test_config();
    config.limits.max_request_bytes = 64 * 1024;
    let server = start(config).await;
    let addr = server.addrs().http;

    // Malformed protobuf.
    let (status, ctype, body) = post(
        addr,
        "/v1/traces",
        &[PB],
        b"\x0a\xff\xff\xff\xff\x0f garbage".to_vec(),
    )
    .await;
    assert_eq!((status, ctype.as_str()), (400, "application/x-protobuf"));
    assert!(
        rpc_message(&body).starts_with("malformed protobuf:"),
        "{}",
        rpc_message(&body)
    );

    // Malformed JSON, and JSON of the wrong shape.
    let (status, _, body) = post(
        addr,
        "/v1/traces",
        &[JSON],
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        json_message(&body).starts_with("malformed OTLP/JSON:"),
        "{}",
        json_message(&body)
    );
    let (status, _, body) = post(
        addr,
        "/v1/traces",
        &[JSON],
        br#"{"resourceSpans": 42}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        json_message(&body).contains("invalid type"),
        "{}",
        json_message(&body)
    );

    // Wrong content type.
    let (status, _, body) = post(
        addr,
        "/v1/traces",
        &[("content-type", "text/plain")],
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(status, 415);
    assert!(rpc_message(&body).contains("unsupported Content-Type \"text/plain\""));

    // Empty body.
    let (status, _, body) = post(addr, "/v1/traces", &[PB], Vec::new()).await;
    assert_eq!(status, 400);
    assert_eq!(rpc_message(&body), "request body is empty");

    // Over the size limit.
    let (status, _, body) = post(addr, "/v1/traces", &[PB], vec![0u8; 100 * 1024]).await;
    assert_eq!(status, 413);
    assert!(
        rpc_message(&body).contains("exceeds the limit of 65536 bytes"),
        "{}",
        rpc_message(&body)
    );

    // A gzip bomb: 48 KiB compressed, 16 MiB inflated.
    let bomb = gzip(&vec![b'a'; 16 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let (status, _, body) = post(
        addr,
        "/v1/traces",
        &[PB, ("content-encoding", "gzip")],
        bomb,
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        rpc_message(&body).contains("once decompressed"),
        "{}",
        rpc_message(&body)
    );

    // Corrupt gzip and unknown encodings.
    let (status, _, body) = post(
        addr,
        "/v1/traces",
        &[PB, ("content-encoding", "gzip")],
        b"nope".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(rpc_message(&body).starts_with("malformed gzip body"));
    let (status, _, _) = post(
        addr,
        "/v1/traces",
        &[PB, ("content-encoding", "zstd")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 415);

    // Invalid UTF-8 inside a span name: the whole request, with the place.
    let (status, _, body) = post(addr, "/v1/traces", &[PB], with_invalid_utf8()).await;
    assert_eq!(status, 400);
    assert_eq!(
        rpc_message(&body),
        "invalid UTF-8 in resource_spans[0].scope_spans[0].spans[2].name (at byte 4)"
    );

    // Ids of the wrong length: that span is rejected, the rest accepted.
    let (status, _, body) = post(addr, "/v1/traces", &[PB], with_ids(5, 8).encode_to_vec()).await;
    assert_eq!(status, 200);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &body[..],
        )
        .expect("response");
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("invalid_trace_id (trace_id 5 bytes"),
        "{}",
        partial.error_message
    );
    // The same over JSON (hex ids of the wrong length).
    let mut json: serde_json::Value =
        serde_json::from_slice(&fixture("langchain-openllmetry.json")).expect("json");
    json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "abcd".into();
    let (status, _, body) = post(addr, "/v1/traces", &[JSON], json.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");

    // Signals chainpulse does not take, and unknown paths.
    let (status, _, body) = post(addr, "/v1/metrics", &[PB], b"x".to_vec()).await;
    assert_eq!(status, 404);
    assert!(rpc_message(&body).contains("accepts OTLP traces only"));
    let (status, _, body) = post(addr, "/v1/logs", &[JSON], b"{}".to_vec()).await;
    assert_eq!(status, 404);
    assert!(json_message(&body).contains("accepts OTLP traces only"));
    let resp = reqwest::get(format!("http://{addr}/nope"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert!(resp
        .text()
        .await
        .expect("body")
        .contains("serves POST /v1/traces"));

    // Every rejection was counted by reason, and the server is still fine.
    let m = scrape(&server).await;
    let rejected = |p: &str, r: &str| {
        value(
            &m,
            "chainpulse_otlp_requests_rejected_total",
            &[("protocol", p), ("reason", r)],
        )
    };
    assert_eq!(rejected("http_protobuf", "malformed_protobuf"), 1.0);
    assert_eq!(rejected("http_json", "malformed_json"), 2.0);
    assert_eq!(rejected("http_protobuf", "unsupported_media_type"), 1.0);
    assert_eq!(rejected("http_protobuf", "empty_body"), 1.0);
    assert_eq!(rejected("http_protobuf", "too_large"), 1.0);
    assert_eq!(rejected("http_protobuf", "decompressed_too_large"), 1.0);
    assert_eq!(rejected("http_protobuf", "malformed_gzip"), 1.0);
    assert_eq!(rejected("http_protobuf", "unsupported_encoding"), 1.0);
    assert_eq!(rejected("http_protobuf", "invalid_utf8"), 1.0);
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_rejected_total",
            &[("reason", "invalid_trace_id")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_rejected_total",
            &[("reason", "invalid_span_id")]
        ),
        1.0
    );
    // The accepted spans of the partially rejected requests were counted.
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_received_total",
            &[("protocol", "http_protobuf")]
        ),
        18.0
    );

    let ok = post(
        addr,
        "/v1/traces",
        &[PB],
        fixture("langchain-openinference.pb"),
    )
    .await;
    assert_eq!(ok.0, 200, "still serving");
    let health = reqwest::get(format!("http://{}/healthz", server.addrs().metrics))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn grpc_bad_inputs() {
    let mut config = test_config();
    config.limits.max_request_bytes = 64 * 1024;
    let server = start(config).await;
    let addr = server.addrs().grpc;

    let e = grpc_raw(addr, b"\x0a\xff\xff\xff\xff\x0f garbage".to_vec())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("malformed protobuf:"),
        "{}",
        e.message()
    );

    let e = grpc_raw(addr, with_invalid_utf8()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e
        .message()
        .contains("invalid UTF-8 in resource_spans[0].scope_spans[0].spans[2].name"));

    // Too large as sent.
    let e = grpc_raw(addr, vec![0u8; 100 * 1024]).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("exceeds the limit") && e.message().contains("max_request_bytes"),
        "{}",
        e.message()
    );

    // A gzip bomb: small on the wire, over the limit once inflated.
    let mut big = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(1024 * 1024);
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .send_compressed(CompressionEncoding::Gzip);
    let e = client.export(big).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("once decompressed"), "{}", e.message());

    // Wrong-length ids: partial success.
    let resp = client
        .export(with_ids(16, 3))
        .await
        .expect("export")
        .into_inner();
    let partial = resp.partial_success.expect("partial");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("invalid_span_id"));

    // An empty message is a valid (empty) export in gRPC.
    grpc_raw(addr, Vec::new())
        .await
        .expect("empty export is valid protobuf");

    // Metrics and logs services: a clear UNIMPLEMENTED.
    let e = grpc_raw_to(
        addr,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("accepts OTLP traces only"));
    let e = grpc_raw_to(
        addr,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e
        .message()
        .contains("send metrics and logs to an OpenTelemetry Collector"));

    let m = scrape(&server).await;
    let rejected = |r: &str| {
        value(
            &m,
            "chainpulse_otlp_requests_rejected_total",
            &[("protocol", "grpc"), ("reason", r)],
        )
    };
    assert_eq!(rejected("malformed_protobuf"), 1.0);
    assert_eq!(rejected("invalid_utf8"), 1.0);
    // Size limits are enforced before the service (receive::grpc_body);
    // still counted.
    assert_eq!(rejected("too_large"), 1.0);
    assert_eq!(rejected("decompressed_too_large"), 1.0);
    assert_eq!(
        value(
            &m,
            "chainpulse_spans_rejected_total",
            &[("reason", "invalid_span_id")]
        ),
        1.0
    );

    client
        .export(
            ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
                .expect("fixture"),
        )
        .await
        .expect("still serving");
}

#[tokio::test]
async fn overload_answers_with_back_pressure() {
    let mut config = test_config();
    config.server.max_inflight_requests = 1;
    let server = start(config).await;
    let pipeline = server.pipeline().clone();
    // Hold the only slot, as a slow in-flight request would.
    let slot = pipeline
        .try_begin(chainpulse::receive::Protocol::HttpProtobuf)
        .expect("first slot");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.addrs().http))
        .header("content-type", "application/x-protobuf")
        .body(fixture("langchain-openinference.pb"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()["retry-after"],
        "1",
        "OTLP exporters retry after this"
    );
    let body = resp.bytes().await.expect("body");
    assert!(rpc_message(&body).contains("overloaded"));
    let ready = reqwest::get(format!("http://{}/readyz", server.addrs().metrics))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let e = TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect")
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    drop(slot);
    let ready = reqwest::get(format!("http://{}/readyz", server.addrs().metrics))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_otlp_requests_rejected_total",
            &[("reason", "overloaded")]
        ),
        2.0
    );
}
