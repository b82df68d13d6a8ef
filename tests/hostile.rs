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
