//! The live page's server side against a running server fed with the real
//! captures: the page and its assets (headers, CSP), `/api/v1/history`
//! (adds up to the KPI API, bad parameters explained) and `/api/v1/health`
//! (the same counts as `/metrics`). The page itself is tested in a real
//! browser by `tests/page` (scripts/test.sh).

mod common;

use chainpulse::api::page;
use common::{fixture, scrape, start, test_config, value, DIALECTS};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

async fn get(url: String) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = reqwest::get(url).await.expect("get");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let (status, _, body) = get(url).await;
    (status, serde_json::from_str(&body).expect("JSON"))
}

async fn feed_all(server: &chainpulse::server::Server) {
    let mut client = TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect");
    for d in DIALECTS {
        let req = ExportTraceServiceRequest::decode(&fixture(&format!("langchain-{d}.pb"))[..])
            .expect("fixture");
        client.export(req).await.expect("export");
    }
}

#[tokio::test]
async fn page_and_assets_are_served_under_a_strict_csp() {
    let server = start(test_config()).await;
    let base = format!("http://{}", server.addrs().metrics);
    for (path, kind, needle) in [
        (page::INDEX_PATH, "text/html", "<title>chainpulse</title>"),
        (page::JS_PATH, "text/javascript", "async function refresh()"),
        (page::CSS_PATH, "text/css", ".chain"),
    ] {
        let (status, headers, body) = get(format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}");
        let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(
            header("content-security-policy"),
            page::CONTENT_SECURITY_POLICY
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert!(body.contains(needle), "{path}");
    }
    assert!(page::CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
    assert!(!page::CONTENT_SECURITY_POLICY.contains("unsafe"));
    println!("page assets: {} bytes", page::assets_bytes());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn history_adds_up_to_the_kpi_windows() {
    let server = start(test_config()).await;
    feed_all(&server).await;
    let base = format!("http://{}", server.addrs().metrics);
    for (window, slot, slots) in [
        ("1m", 10, 6),
        ("5m", 30, 10),
        ("15m", 90, 10),
        ("1h", 360, 10),
    ] {
        let (status, h) = get_json(format!("{base}/api/v1/history?window={window}")).await;
        assert_eq!(status, 200);
        assert_eq!(h["window"], window);
        assert_eq!(h["slot_seconds"], slot);
        let (_, k) = get_json(format!("{base}/api/v1/kpis?window={window}")).await;
        let kpis = k["chains"].as_array().expect("chains");
        let chains = h["chains"].as_array().expect("chains");
        assert_eq!(chains.len(), kpis.len(), "{window}");
        assert!(!chains.is_empty());
        for (c, kc) in chains.iter().zip(kpis) {
            assert_eq!((&c["service"], &c["chain"]), (&kc["service"], &kc["chain"]));
            let points = c["points"].as_array().expect("points");
            // Just started: only the periods since start exist.
            assert!(!points.is_empty() && points.len() <= slots, "{window}");
            let sum = |f: &str| -> f64 { points.iter().filter_map(|p| p[f].as_f64()).sum() };
            assert_eq!(
                sum("requests"),
                kc["requests"].as_f64().expect("n"),
                "{window}"
            );
            assert_eq!(sum("errors"), kc["errors"].as_f64().expect("n"), "{window}");
            assert!((sum("cost_usd") - kc["cost_usd"].as_f64().expect("n")).abs() < 1e-12);
            assert_eq!(sum("tokens_input"), kc["tokens_input"].as_f64().expect("n"));
        }
    }
    // Filters, as in the KPI API.
    let (_, h) = get_json(format!("{base}/api/v1/history?chain=rag_query")).await;
    let chains = h["chains"].as_array().expect("chains");
    assert!(!chains.is_empty() && chains.iter().all(|c| c["chain"] == "rag_query"));
    // Bad parameters: 400 with the reason.
    for (query, reason) in [
        (
            "window=all",
            "window \"all\" has no history; accepted windows: 1m, 5m, 15m, 1h",
        ),
        (
            "window=2h",
            "window \"2h\" has no history; accepted windows: 1m, 5m, 15m, 1h",
        ),
        (
            "chian=x",
            "unknown parameter \"chian\"; accepted: window, service, chain",
        ),
    ] {
        let (status, body) = get_json(format!("{base}/api/v1/history?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"], reason, "{query}");
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_reads_the_same_counts_as_metrics() {
    let server = start(test_config()).await;
    feed_all(&server).await;
    let bad = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.addrs().http))
        .header("content-type", "application/x-protobuf")
        .body("not protobuf")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 400);
    let base = format!("http://{}", server.addrs().metrics);
    let (status, h) = get_json(format!("{base}/api/v1/health")).await;
    assert_eq!(status, 200);
    let m = scrape(&server).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["problems"], serde_json::json!([]));
    assert_eq!(
        h["ingest"]["spans_received"].as_f64(),
        Some(value(&m, "chainpulse_spans_received_total", &[]))
    );
    assert_eq!(
        h["ingest"]["requests_rejected_by_reason"],
        serde_json::json!({ "malformed_protobuf": 1.0 })
    );
    assert_eq!(h["ingest"]["export_requests_by_protocol"]["grpc"], 3.0);
    assert_eq!(h["ingest"]["max_inflight_requests"], 256);
    assert_eq!(h["forwarding"], serde_json::json!([]));
    assert_eq!(h["dropped_spans"]["forward_dropped"], 0.0);
    // Every number is a plain number (no "-0.0" from empty sums).
    assert!(!h.to_string().contains("-0.0"), "{h}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_a_forwarding_queue_that_drops() {
    // A destination whose upstream is down, with a queue too small for the
    // captures and `on_full = "drop"`: the health document must show its
    // queue and drops exactly as /metrics does, and call a queue ≥ 80 % full
    // a problem.
    let dead = common::upstream::Upstream::start().await;
    dead.stop().await;
    let toml = format!(
        r#"
[[forward.destinations]]
name = "dead"
protocol = "grpc"
endpoint = "{}"
timeout_ms = 3000
batch = {{ flush_interval_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 500 }}
queue = {{ max_bytes = 65536, on_full = "drop" }}
"#,
        dead.grpc_endpoint()
    );
    let mut config = test_config();
    config.forward = chainpulse::config::Config::from_toml_str(&toml)
        .expect("config")
        .forward;
    config.server.shutdown_timeout_ms = 1000;
    let server = start(config).await;
    for _ in 0..3 {
        feed_all(&server).await;
    }
    let base = format!("http://{}", server.addrs().metrics);
    let mut h = serde_json::Value::Null;
    for _ in 0..100 {
        h = get_json(format!("{base}/api/v1/health")).await.1;
        if h["forwarding"][0]["dropped_spans"].as_f64().unwrap_or(0.0) > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let m = scrape(&server).await;
    let d = [("destination", "dead")];
    let f = &h["forwarding"][0];
    assert_eq!(f["destination"], "dead");
    let dropped = f["dropped_spans"].as_f64().expect("dropped");
    assert!(dropped > 0.0, "{h}");
    // Gauges move while the sender retries; the counters only grow, and
    // the limit is fixed.
    assert_eq!(f["queue_max_bytes"], 65536.0);
    assert!(
        value(
            &m,
            "chainpulse_forward_spans_total",
            &[("destination", "dead"), ("result", "dropped")]
        ) >= dropped
    );
    assert_eq!(f["failed_by_reason"]["queue_full"].as_f64(), Some(dropped));
    assert_eq!(
        h["dropped_spans"]["forward_dropped"].as_f64(),
        Some(dropped)
    );
    assert!(value(&m, "chainpulse_forward_queue_max_bytes", &d) == 65536.0);
    let bytes = f["queue_bytes"].as_f64().expect("bytes");
    let full = bytes >= 0.8 * 65536.0;
    println!("queue: {bytes} bytes of 65536, problems: {}", h["problems"]);
    let problem = h["problems"].as_array().expect("problems").iter().any(|p| {
        p.as_str()
            .is_some_and(|p| p.starts_with("forwarding queue \"dead\" is"))
    });
    assert_eq!(problem, full, "{bytes} bytes queued: {h}");
    assert_eq!(h["status"], if full { "degraded" } else { "ok" });
    server.shutdown().await.expect("shutdown");
}
