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
