//! Hostile clients (issue 13): what one client can send must not take the
//! collector down, blind Prometheus, or pin memory.

mod common;

use common::{fixture, start, test_config};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

async fn post_pb(addr: std::net::SocketAddr, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn metrics_text(server: &chainpulse::server::Server) -> String {
    reqwest::get(format!("http://{}/metrics", server.addrs().metrics))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

/// The fixture with every span name, the service name and every model name
/// replaced by `len`-byte values (distinct per span), plus control
/// characters in one name.
fn with_huge_names(len: usize, salt: u8) -> Vec<u8> {
    let mut req = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    let big = |tag: &str, i: usize| {
        let mut s = format!("{tag}-{salt}-{i}-");
        while s.len() < len {
            s.push_str("abcdefghij");
        }
        s.truncate(len);
        s
    };
    let mut i = 0;
    for rs in &mut req.resource_spans {
        if let Some(r) = &mut rs.resource {
            for kv in &mut r.attributes {
                if kv.key == "service.name" {
                    kv.value.as_mut().expect("value").value =
                        Some(Value::StringValue(big("svc", 0)));
                }
            }
        }
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                i += 1;
                span.name = if i == 2 {
                    "ctl\nname\u{1}\u{7f}\u{85}end".to_owned()
                } else {
                    big("step", i)
                };
                for kv in &mut span.attributes {
                    if let Some(Value::StringValue(v)) =
                        kv.value.as_mut().and_then(|v| v.value.as_mut())
                    {
                        if v.contains("gpt-4o-mini") || kv.key.contains("model") {
                            *v = big("model", i);
                        }
                    }
                }
            }
        }
    }
    req.encode_to_vec()
}

/// Issue 13: label values had no length limit, so one request with
/// megabyte-long chain / step / service / model names made every scrape
/// hundreds of megabytes.
#[tokio::test]
async fn huge_label_values_do_not_blow_up_metrics() {
    let mut config = test_config();
    config.limits.max_request_bytes = 64 << 20;
    config.assembly.trace_timeout_ms = 50;
    let server = start(config).await;
    let body = with_huge_names(1 << 20, 1);
    assert!(body.len() > 16 << 20, "{}", body.len());
    assert_eq!(post_pb(server.addrs().http, body).await, 200);
    // A second request with other (equally long) names: distinct values
    // stay distinct series.
    assert_eq!(
        post_pb(server.addrs().http, with_huge_names(1 << 20, 2)).await,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    server.pipeline().tick();
    let text = metrics_text(&server).await;
    eprintln!("/metrics: {} bytes", text.len());
    assert!(
        text.len() < 1 << 20,
        "/metrics is {} bytes after two requests",
        text.len()
    );
    let samples = chainpulse::export::text::parse(&text);
    let mut longest = 0;
    for s in &samples {
        for v in s.labels.values() {
            longest = longest.max(v.len());
            assert!(
                !v.chars().any(char::is_control),
                "control character in {v:?}"
            );
        }
    }
    assert!(longest <= 128, "a label value of {longest} bytes");
    let runs: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "chainpulse_runs_total")
        .filter_map(|s| s.label("step"))
        .collect();
    assert!(
        runs.len() >= 30,
        "distinct long steps stay distinct: {runs:?}"
    );
    let truncated = common::value(&samples, "chainpulse_label_values_truncated_total", &[]);
    assert!(truncated > 0.0, "truncations are counted");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// Two gzip members, each half of the fixture's spans (two protobuf
/// messages concatenated are one message holding both).
fn two_members() -> (Vec<u8>, f64) {
    let req = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    let spans: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let bytes = req.encode_to_vec();
    let mut body = gzip(&bytes);
    body.extend(gzip(&bytes));
    (body, 2.0 * spans as f64)
}

fn received(samples: &[chainpulse::export::text::Sample], protocol: &str) -> f64 {
    common::value(
        samples,
        "chainpulse_spans_received_total",
        &[("protocol", protocol)],
    )
}

fn rejected(samples: &[chainpulse::export::text::Sample], reason: &str) -> f64 {
    common::value(
        samples,
        "chainpulse_otlp_requests_rejected_total",
        &[("reason", reason)],
    )
}

/// Issue 13: a multi-member gzip body was acknowledged with only its first
/// member decoded.
#[tokio::test]
async fn multi_member_gzip_is_read_whole_over_http() {
    let server = start(test_config()).await;
    let (body, spans) = two_members();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.addrs().http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let m = common::scrape(&server).await;
    assert_eq!(received(&m, "http_protobuf"), spans);

    // Trailing garbage after a valid member is refused, not ignored.
    let mut bad = gzip(&fixture("langchain-openinference.pb"));
    bad.extend_from_slice(b"garbage after the member");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.addrs().http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bad)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let m = common::scrape(&server).await;
    assert_eq!(rejected(&m, "malformed_gzip"), 1.0);
}

/// One gRPC message frame: flag, big-endian length, payload.
fn grpc_frame(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(compressed)];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

async fn grpc_post(
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    gzip: bool,
) -> (Option<String>, Option<String>) {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let mut req = client
        .post(format!(
            "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if gzip {
        req = req.header("grpc-encoding", "gzip");
    }
    let resp = req.body(body).send().await.expect("send");
    let h = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let out = (h("grpc-status"), h("grpc-message"));
    let _ = resp.bytes().await;
    out
}

/// Issue 13: the same over gRPC (tonic itself decodes only the first
/// member and ignores what follows).
#[tokio::test]
async fn multi_member_gzip_is_read_whole_over_grpc() {
    let server = start(test_config()).await;
    let (body, spans) = two_members();
    grpc_post(server.addrs().grpc, grpc_frame(true, &body), true).await;
    let m = common::scrape(&server).await;
    assert_eq!(received(&m, "grpc"), spans);

    let mut bad = gzip(&fixture("langchain-openinference.pb"));
    bad.extend_from_slice(b"garbage after the member");
    let (status, message) = grpc_post(server.addrs().grpc, grpc_frame(true, &bad), true).await;
    assert_eq!(status.as_deref(), Some("3"), "{message:?}");
    let m = common::scrape(&server).await;
    assert_eq!(rejected(&m, "malformed_gzip"), 1.0);
    assert_eq!(received(&m, "grpc"), spans);
}

/// Issue 13: a client that hangs up mid-body was counted as
/// `malformed_protobuf`.
#[tokio::test]
async fn client_hang_up_is_a_transport_error() {
    use tokio::io::AsyncWriteExt;
    let server = start(test_config()).await;
    let mut s = tokio::net::TcpStream::connect(server.addrs().http)
        .await
        .expect("connect");
    s.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
          content-length: 100000\r\n\r\n",
    )
    .await
    .expect("write");
    s.write_all(&[0u8; 1000]).await.expect("write");
    drop(s);
    let mut m = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        m = common::scrape(&server).await;
        if rejected(&m, "client_disconnected") > 0.0 {
            break;
        }
    }
    assert_eq!(rejected(&m, "malformed_protobuf"), 0.0);
    assert_eq!(rejected(&m, "client_disconnected"), 1.0);
}

/// Starts an HTTP/1.1 upload that announces `len` bytes and then trickles
/// one byte every 200 ms until dropped.
fn trickle(addr: std::net::SocketAddr, len: usize) -> tokio::task::JoinHandle<()> {
    half_send(addr, len, 0)
}

/// An upload that announces `len` bytes, sends `sent` of them at once, then
/// a byte every 200 ms.
fn half_send(addr: std::net::SocketAddr, len: usize, sent: usize) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            return;
        };
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
             content-length: {len}\r\n\r\n"
        );
        if s.write_all(head.as_bytes()).await.is_err()
            || s.write_all(&vec![b'\n'; sent]).await.is_err()
        {
            return;
        }
        loop {
            if s.write_all(b"\n").await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}

async fn status_of(url: String) -> u16 {
    reqwest::get(url).await.expect("get").status().as_u16()
}

/// Issue 13: the in-flight slot was taken before the body was read, so a
/// few trickling uploads made every other exporter get 503 (and /readyz
/// fail) for as long as they trickled.
#[tokio::test]
async fn trickling_uploads_do_not_stop_ingest() {
    let mut config = test_config();
    config.server.max_inflight_requests = 4;
    config.server.body_read_timeout_ms = 1_500;
    let server = start(config).await;
    let slow: Vec<_> = (0..12)
        .map(|_| trickle(server.addrs().http, 100_000))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert_eq!(
            post_pb(server.addrs().http, fixture("langchain-openinference.pb")).await,
            200,
            "another exporter gets through"
        );
    }
    assert_eq!(
        status_of(format!("http://{}/readyz", server.addrs().metrics)).await,
        200
    );
    // The trickling bodies are cut off at the body-read timeout.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let m = common::scrape(&server).await;
    assert_eq!(rejected(&m, "body_timeout"), 12.0);
    for t in slow {
        t.abort();
    }
}

/// True when the server closes `s` within `within`.
async fn closed_by_server(s: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 or similar, then the close
        }
    }
}

/// Issue 13: no header-read or idle timeout; idle connections accumulated.
#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let mut config = test_config();
    config.server.header_read_timeout_ms = 300;
    config.server.idle_timeout_ms = 300;
    let server = start(config).await;
    let secs = std::time::Duration::from_secs(3);
    let mut slow = tokio::net::TcpStream::connect(server.addrs().http)
        .await
        .expect("connect");
    slow.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-ty")
        .await
        .expect("write");
    assert!(closed_by_server(&mut slow, secs).await, "slow headers");
    for addr in [server.addrs().http, server.addrs().grpc] {
        let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert!(
            closed_by_server(&mut idle, secs).await,
            "idle connection to {addr}"
        );
    }
}

/// Issue 13: nothing capped connections, so idle ones ran the process out
/// of file descriptors and even /healthz stopped answering.
#[tokio::test]
async fn connection_cap_keeps_healthz_alive() {
    let mut config = test_config();
    config.server.max_connections = 8;
    let server = start(config).await;
    for addr in [server.addrs().http, server.addrs().grpc] {
        let mut conns = Vec::new();
        for _ in 0..20 {
            conns.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        let mut closed = 0;
        for c in &mut conns {
            if closed_by_server(c, std::time::Duration::from_millis(200)).await {
                closed += 1;
            }
        }
        assert_eq!(closed, 12, "connections past the cap on {addr} are closed");
    }
    assert_eq!(
        status_of(format!("http://{}/healthz", server.addrs().metrics)).await,
        200
    );
}

/// The server's SETTINGS_MAX_CONCURRENT_STREAMS, read from its first
/// SETTINGS frame on a prior-knowledge HTTP/2 connection.
async fn advertised_max_streams(addr: std::net::SocketAddr) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.expect("frame header");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.expect("frame payload");
        if head[3] == 0x4 && head[4] & 0x1 == 0 {
            return payload.chunks_exact(6).find_map(|e| {
                (u16::from_be_bytes([e[0], e[1]]) == 0x3)
                    .then(|| u32::from_be_bytes([e[2], e[3], e[4], e[5]]))
            });
        }
    }
}

/// Issue 13: :4317 advertised no MAX_CONCURRENT_STREAMS.
#[tokio::test]
async fn both_http2_listeners_cap_concurrent_streams() {
    let mut config = test_config();
    config.server.max_concurrent_streams = 17;
    let server = start(config).await;
    assert_eq!(advertised_max_streams(server.addrs().grpc).await, Some(17));
    assert_eq!(advertised_max_streams(server.addrs().http).await, Some(17));
}

/// Issue 13: memory was not bounded by admission: bodies and gRPC messages
/// were buffered whole before any check, so a few half-sent requests held
/// hundreds of MiB while /readyz said ready.
#[tokio::test]
async fn one_memory_budget_for_everything_in_flight() {
    let mut config = test_config();
    config.limits.max_request_bytes = 512 * 1024;
    config.limits.max_inflight_bytes = 1024 * 1024;
    let server = start(config).await;
    // Two 480 KiB uploads, 400 KiB of each sent, hold 800 KiB of the 1 MiB
    // budget: what arrived, plus at most one 16 KiB coalescing buffer each
    // for frames under 8 KiB (`receive::body`).
    let slow: Vec<_> = (0..2)
        .map(|_| half_send(server.addrs().http, 480 * 1024, 400 * 1024))
        .collect();
    let mut held = 0.0;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        held = common::value(
            &common::scrape(&server).await,
            "chainpulse_inflight_bytes",
            &[],
        );
        if held >= 800.0 * 1024.0 {
            break;
        }
    }
    assert!(
        (800.0 * 1024.0..=832.0 * 1024.0).contains(&held),
        "held {held} bytes"
    );
    // A third that would not fit is refused before its body is buffered,
    // with the status exporters retry.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.addrs().http))
        .header("content-type", "application/x-protobuf")
        .body(vec![0u8; 300 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    // gRPC shares the budget: RESOURCE_EXHAUSTED with a RetryInfo.
    let mut big = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(300 * 1024);
    let e = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        format!("http://{}", server.addrs().grpc),
    )
    .await
    .expect("connect")
    .export(big)
    .await
    .expect_err("over the budget");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(!e.details().is_empty(), "RetryInfo attached");
    let ready = reqwest::get(format!("http://{}/readyz", server.addrs().metrics))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.expect("text").contains("memory"));
    let m = common::scrape(&server).await;
    assert_eq!(rejected(&m, "memory_limit"), 2.0);
    // Small requests still fit next to the trickling ones.
    assert_eq!(
        post_pb(server.addrs().http, fixture("langchain-openinference.pb")).await,
        200
    );
    for t in slow {
        t.abort();
    }
    // Released when the uploads go away.
    let mut used = f64::NAN;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        used = common::value(
            &common::scrape(&server).await,
            "chainpulse_inflight_bytes",
            &[],
        );
        if used == 0.0 {
            break;
        }
    }
    assert_eq!(used, 0.0);
}

/// docs/hostile.md's open row: the budget reserved an upload's announced
/// length before its body arrived, so slow uploads announcing large bodies
/// and sending a byte now and then held the whole budget and every other
/// exporter got 503 for as long as they trickled. Now an upload holds what
/// it has sent (and one 16 KiB coalescing buffer).
#[tokio::test]
async fn uploads_hold_what_they_sent_not_what_they_announce() {
    let mut config = test_config();
    config.limits.max_request_bytes = 512 * 1024;
    config.limits.max_inflight_bytes = 1024 * 1024;
    let server = start(config).await;
    // Eight uploads announcing 400 KiB each (3.2 MiB, three times the
    // budget), each sending a byte every 200 ms.
    let slow: Vec<_> = (0..8)
        .map(|_| trickle(server.addrs().http, 400 * 1024))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let m = common::scrape(&server).await;
    let held = common::value(&m, "chainpulse_inflight_bytes", &[]);
    assert!(held <= 8.0 * 16.0 * 1024.0, "held {held} bytes");
    // A normal 300 KiB export still fits, and /readyz stays ready.
    assert_eq!(
        post_pb(server.addrs().http, fixture("langchain-openinference.pb")).await,
        200
    );
    assert_ne!(
        post_pb(server.addrs().http, vec![0u8; 300 * 1024]).await,
        503,
        "refused for memory while the uploads only trickle"
    );
    let ready = reqwest::get(format!("http://{}/readyz", server.addrs().metrics))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    assert_eq!(
        rejected(&common::scrape(&server).await, "memory_limit"),
        0.0
    );
    for t in slow {
        t.abort();
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// One request of about `pad` bytes: a tiny child span that will wait for
/// a root that never comes, next to a finished trace carrying the padding.
fn waiting_span_request(i: u32, pad: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let mut trace = [0u8; 16];
    trace[..4].copy_from_slice(&i.to_be_bytes());
    trace[15] = 1;
    let mut other = trace;
    other[15] = 2;
    let span = |trace_id: [u8; 16], parent: Vec<u8>, name: &str, attrs: Vec<KeyValue>| Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, (i % 250) as u8 + 1],
        parent_span_id: parent,
        name: name.to_owned(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: attrs,
        ..Default::default()
    };
    let padding = KeyValue {
        key: "padding".into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue("p".repeat(pad))),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(trace, vec![9; 8], "waiting_child", Vec::new()),
                    span(other, Vec::new(), "finished_root", vec![padding]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Issue 13: runs parked in the assembler (children waiting for their
/// root) kept whole request buffers alive: memory grew with the bytes
/// received in `trace_timeout_ms`, not with `assembly.max_spans`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_spans_do_not_pin_request_buffers() {
    let mut config = test_config();
    config.assembly.trace_timeout_ms = 600_000;
    let server = start(config).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", server.addrs().http);
    let send = |i: u32| {
        let body = waiting_span_request(i, 256 * 1024);
        let req = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body);
        async move { req.send().await.expect("send").status().as_u16() }
    };
    // Warm up (allocator, series), then measure 800 more requests.
    for i in 0..50 {
        assert_eq!(send(i).await, 200);
    }
    let before = rss_bytes();
    for i in 50..850 {
        assert_eq!(send(i).await, 200);
    }
    let after = rss_bytes();
    let m = common::scrape(&server).await;
    assert_eq!(common::value(&m, "chainpulse_assembly_spans", &[]), 850.0);
    let grown = after.saturating_sub(before);
    eprintln!(
        "RSS {} MiB -> {} MiB (+{} MiB) with 850 waiting spans sent in 256 KiB requests",
        before >> 20,
        after >> 20,
        grown >> 20
    );
    assert!(
        grown < 64 << 20,
        "800 waiting spans grew RSS by {} MiB",
        grown >> 20
    );
}
