//! Cost, cache lookups, SLO targets, budgets and the KPI API (HTTP and
//! gRPC), against a running server fed with the real captures.

mod common;

use chainpulse::api::grpc::v1::kpi_service_client::KpiServiceClient;
use chainpulse::api::grpc::v1::{GetKpisRequest, GetTopRequest};
use chainpulse::config::{BudgetConfig, BudgetWindow, SloOverride};
use chainpulse::pricing::{InputSemantics, PriceTable, TokenUsage};
use common::{fixture, scrape, start, test_config, value, DIALECTS};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;

fn decoded(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&fixture(name)[..]).expect("fixture")
}

/// The list price of one fixture LLM call (142 in, 42 out, gpt-4o-mini).
fn call_cost() -> f64 {
    let usage = TokenUsage {
        input: 142,
        output: 42,
        ..Default::default()
    };
    PriceTable::builtin()
        .cost(
            Some("openai"),
            "gpt-4o-mini",
            &usage,
            InputSemantics::IncludesCached,
            false,
        )
        .usd()
        .expect("gpt-4o-mini is priced")
}

async fn feed_all(server: &chainpulse::server::Server) {
    let mut client = TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect");
    for d in DIALECTS {
        client
            .export(decoded(&format!("langchain-{d}.pb")))
            .await
            .expect("export");
    }
}

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let resp = reqwest::get(url).await.expect("get");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).expect("JSON"))
}

#[tokio::test]
async fn cost_metrics_from_the_captures() {
    let server = start(test_config()).await;
    feed_all(&server).await;
    let m = scrape(&server).await;
    let labels = [
        ("service", "rag-app"),
        ("chain", "rag_query"),
        ("provider", "openai"),
        ("model", "gpt-4o-mini"),
    ];
    let cost = value(&m, "chainpulse_llm_cost_usd_total", &labels);
    // 3 captures × 2 calls, each priced once (LangSmith's repeated counts on
    // chain spans are not priced again).
    assert!((cost - 6.0 * call_cost()).abs() < 1e-12, "{cost}");
    assert!(
        (call_cost() - (142.0 * 0.15 + 42.0 * 0.60) / 1e6).abs() < 1e-12,
        "list price of gpt-4o-mini"
    );
    let chain = [("service", "rag-app"), ("chain", "rag_query")];
    assert_eq!(value(&m, "chainpulse_request_cost_usd_count", &chain), 9.0);
    assert!(
        (value(&m, "chainpulse_request_cost_usd_sum", &chain) - 6.0 * call_cost()).abs() < 1e-12
    );
    // Requests cost 2 calls' worth (< $0.0001) or nothing (the failures).
    assert_eq!(
        value(
            &m,
            "chainpulse_request_cost_usd_bucket",
            &[("le", "0.0001")]
        ),
        9.0
    );
    assert_eq!(value(&m, "chainpulse_llm_unpriced_calls_total", &[]), 0.0);
    // SLO targets (defaults) exported for the chain seen.
    let target = |kpi| {
        value(
            &m,
            "chainpulse_slo_target",
            &[("kpi", kpi), ("service", "rag-app"), ("chain", "rag_query")],
        )
    };
    assert_eq!(
        [
            target("latency_p50_seconds"),
            target("latency_p95_seconds"),
            target("latency_p99_seconds")
        ],
        [1.0, 2.0, 3.0]
    );
    assert_eq!(
        [target("error_rate"), target("availability")],
        [0.001, 0.999]
    );
    // No throughput floor by default: no target exported, so the
    // ChainpulseThroughputBelowFloor alert has nothing to compare against.
    assert!(
        !m.iter()
            .any(|s| s.name == "chainpulse_slo_target" && s.label("kpi") == Some("throughput_rps")),
        "a throughput target was exported without being configured"
    );
}

/// Live traffic owes no throughput: without `slo.min_throughput_rps` a
/// quiet chain meeting every other target is "met", and throughput is
/// reported without a verdict; a configured floor is checked and exported,
/// and an override of 0 lifts it for one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_floor_is_opt_in() {
    let lenient = || {
        let mut config = test_config();
        config.slo.error_rate = 1.0;
        config.slo.availability = 0.0;
        config
    };
    let chain_of = |body: &serde_json::Value| body["chains"][0].clone();
    let kpi_names = |c: &serde_json::Value| -> Vec<String> {
        c["kpis"]
            .as_array()
            .expect("kpis")
            .iter()
            .map(|k| k["kpi"].as_str().expect("kpi").to_owned())
            .collect()
    };

    // Default: no floor.
    // Throughput needs a covered second (`None` before).
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(1100));
    let server = start(lenient()).await;
    feed_all(&server).await;
    settle().await;
    let base = format!("http://{}", server.addrs().metrics);
    let (_, body) = get_json(format!("{base}/api/v1/kpis?window=all&chain=rag_query")).await;
    let c = chain_of(&body);
    assert!(c["throughput_rps"].as_f64().is_some_and(|t| t > 0.0), "{c}");
    assert!(!kpi_names(&c).contains(&"throughput_rps".to_owned()), "{c}");
    assert_eq!(c["targets_met"], true, "{c}");

    // A floor far above a handful of requests: checked, exported, not met.
    let mut config = lenient();
    config.slo.min_throughput_rps = Some(1000.0);
    let server = start(config).await;
    feed_all(&server).await;
    settle().await;
    let base = format!("http://{}", server.addrs().metrics);
    let (_, body) = get_json(format!("{base}/api/v1/kpis?window=all&chain=rag_query")).await;
    let c = chain_of(&body);
    let check = c["kpis"]
        .as_array()
        .expect("kpis")
        .iter()
        .find(|k| k["kpi"] == "throughput_rps")
        .cloned()
        .expect("throughput check when a floor is set");
    assert_eq!(
        (&check["target"], &check["comparison"], &check["status"]),
        (
            &serde_json::json!(1000.0),
            &serde_json::json!(">="),
            &serde_json::json!("fail")
        )
    );
    assert_eq!(c["targets_met"], false, "{c}");
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_slo_target",
            &[("kpi", "throughput_rps"), ("chain", "rag_query")]
        ),
        1000.0
    );

    // An override of 0 lifts the global floor for its chain.
    let mut config = lenient();
    config.slo.min_throughput_rps = Some(1000.0);
    config.slo.overrides.push(SloOverride {
        chain: Some("rag_query".into()),
        min_throughput_rps: Some(0.0),
        ..Default::default()
    });
    let server = start(config).await;
    feed_all(&server).await;
    settle().await;
    let base = format!("http://{}", server.addrs().metrics);
    let (_, body) = get_json(format!("{base}/api/v1/kpis?window=all&chain=rag_query")).await;
    let c = chain_of(&body);
    assert!(!kpi_names(&c).contains(&"throughput_rps".to_owned()), "{c}");
    assert_eq!(c["targets_met"], true, "{c}");
}

/// A GenAI chat span with the given model and attributes.
fn llm_request(model: &str, extra: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let mut req = decoded("langchain-openinference.pb");
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans.truncate(1);
    let s = &mut spans[0];
    s.parent_span_id = Vec::new();
    s.name = "chat".into();
    s.status = None;
    s.events.clear();
    s.attributes = vec![
        kv(
            "gen_ai.operation.name",
            any_value::Value::StringValue("chat".into()),
        ),
        kv(
            "gen_ai.provider.name",
            any_value::Value::StringValue("openai".into()),
        ),
        kv(
            "gen_ai.request.model",
            any_value::Value::StringValue(model.into()),
        ),
        kv(
            "gen_ai.usage.input_tokens",
            any_value::Value::IntValue(1000),
        ),
        kv(
            "gen_ai.usage.output_tokens",
            any_value::Value::IntValue(100),
        ),
        kv(
            "gen_ai.usage.cache_read.input_tokens",
            any_value::Value::IntValue(600),
        ),
    ];
    s.attributes.extend(extra);
    req
}

#[tokio::test]
async fn unknown_models_are_unpriced_not_free_and_cache_hits_are_counted() {
    let mut config = test_config();
    config
        .pricing
        .aliases
        .insert("my-azure-deploy".into(), "gpt-4o".into());
    let server = start(config).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect");
    let flag = |b: bool| KeyValue {
        key: "cache_hit".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(b)),
        }),
        ..Default::default()
    };
    client
        .export(llm_request("mystery-model-9000", vec![]))
        .await
        .expect("export");
    client
        .export(llm_request("my-azure-deploy", vec![flag(true)]))
        .await
        .expect("export");
    client
        .export(llm_request("gpt-4o-2024-08-06", vec![flag(false)]))
        .await
        .expect("export");
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_llm_unpriced_calls_total",
            &[("model", "mystery-model-9000")]
        ),
        1.0
    );
    assert!(
        !m.iter().any(|s| s.name == "chainpulse_llm_cost_usd_total"
            && s.label("model") == Some("mystery-model-9000")),
        "an unpriced model has no cost series, not a $0 one"
    );
    // gpt-4o: 400 uncached input at $2.50/M, 600 cached at $1.25/M, 100 out at $10/M.
    let expected = (400.0 * 2.50 + 600.0 * 1.25 + 100.0 * 10.0) / 1e6;
    for model in ["my-azure-deploy", "gpt-4o-2024-08-06"] {
        let c = value(&m, "chainpulse_llm_cost_usd_total", &[("model", model)]);
        assert!((c - expected).abs() < 1e-12, "{model}: {c} != {expected}");
    }
    assert_eq!(
        value(&m, "chainpulse_cache_lookups_total", &[("result", "hit")]),
        1.0
    );
    assert_eq!(
        value(&m, "chainpulse_cache_lookups_total", &[("result", "miss")]),
        1.0
    );

    let (status, body) = get_json(format!(
        "http://{}/api/v1/kpis?window=all",
        server.addrs().metrics
    ))
    .await;
    assert_eq!(status, 200);
    let c = &body["chains"][0];
    assert_eq!(c["requests"], 3);
    assert_eq!(c["unpriced_requests"], 1);
    assert!((c["cost_usd"].as_f64().expect("cost") - 2.0 * expected).abs() < 1e-12);
    assert!((c["cost_per_request_usd"].as_f64().expect("per request") - expected).abs() < 1e-12);
    assert_eq!(c["cache_hit_rate"], 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_api_over_http() {
    let mut config = test_config();
    config.slo.overrides.push(SloOverride {
        chain: Some("rag_query".into()),
        latency_p95_seconds: Some(0.001),
        ..Default::default()
    });
    config.budgets.push(BudgetConfig {
        window: BudgetWindow::Day,
        usd: 25.0,
        service: None,
        chain: None,
        model: Some("gpt-4o-mini".into()),
    });
    let server = start(config).await;
    feed_all(&server).await;
    let base = format!("http://{}", server.addrs().metrics);

    let (status, body) = get_json(format!("{base}/api/v1/kpis?window=all&service=rag-app")).await;
    assert_eq!(status, 200);
    assert_eq!(body["window"], "all");
    let chains = body["chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1);
    let c = &chains[0];
    assert_eq!(
        (c["service"].as_str(), c["chain"].as_str()),
        (Some("rag-app"), Some("rag_query"))
    );
    assert_eq!(
        (c["requests"].as_u64(), c["errors"].as_u64()),
        (Some(9), Some(3))
    );
    assert!((c["error_rate"].as_f64().expect("rate") - 1.0 / 3.0).abs() < 1e-12);
    assert!((c["availability"].as_f64().expect("availability") - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(
        (c["tokens_input"].as_u64(), c["tokens_output"].as_u64()),
        (Some(852), Some(252))
    );
    assert!((c["cost_usd"].as_f64().expect("cost") - 6.0 * call_cost()).abs() < 1e-12);
    let p50 = c["latency_seconds"]["p50"].as_f64().expect("p50");
    let p99 = c["latency_seconds"]["p99"].as_f64().expect("p99");
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 < 0.05,
        "fixture requests take milliseconds: {p50} {p99}"
    );
    let kpi = |name: &str| {
        c["kpis"]
            .as_array()
            .expect("kpis")
            .iter()
            .find(|k| k["kpi"] == name)
            .cloned()
            .expect("kpi")
    };
    assert_eq!(kpi("latency_p50_seconds")["status"], "pass");
    assert_eq!(
        kpi("latency_p95_seconds")["target"],
        0.001,
        "override applied"
    );
    assert_eq!(kpi("latency_p95_seconds")["status"], "fail");
    assert_eq!(kpi("error_rate")["status"], "fail");
    assert_eq!(kpi("availability")["comparison"], ">=");
    assert_eq!(c["targets_met"], false);

    // Windows: the last minute holds the same requests.
    let (_, one_minute) = get_json(format!("{base}/api/v1/kpis?window=1m")).await;
    assert_eq!(one_minute["chains"][0]["requests"], 9);
    let (_, none) = get_json(format!("{base}/api/v1/kpis?chain=nope")).await;
    assert_eq!(none["chains"].as_array().map(Vec::len), Some(0));

    // Bad parameters: 400 with the reason.
    for (query, needle) in [
        ("window=2m", "accepted windows"),
        ("window=all&tenant=x", "unknown parameter \"tenant\""),
    ] {
        let (status, body) = get_json(format!("{base}/api/v1/kpis?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body["error"].as_str().expect("error").contains(needle),
            "{query}: {body}"
        );
    }

    // Top spenders.
    let (status, top) = get_json(format!("{base}/api/v1/top?by=user&metric=requests&n=2")).await;
    assert_eq!(status, 200);
    assert_eq!(top["total"], 9.0);
    assert_eq!(top["max_error"], 0.0);
    let entries = top["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert!(entries
        .iter()
        .all(|e| e["estimate"] == 3.0 && e["error_bound"] == 0.0));
    let (_, by_model) = get_json(format!("{base}/api/v1/top?by=model&metric=tokens")).await;
    assert_eq!(by_model["entries"][0]["key"], "gpt-4o-mini");
    assert_eq!(by_model["entries"][0]["estimate"], 6.0 * 184.0);
    let (_, by_cost) = get_json(format!("{base}/api/v1/top?by=user&metric=cost")).await;
    let total_cost = by_cost["total"].as_f64().expect("total");
    assert!((total_cost - 6.0 * call_cost()).abs() < 1e-12);
    for (query, needle) in [
        ("by=tenant", "not one of user"),
        ("by=user&n=0", "from 1 to 1000"),
        ("metric=cost", "missing parameter"),
    ] {
        let (status, body) = get_json(format!("{base}/api/v1/top?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body["error"].as_str().expect("error").contains(needle),
            "{query}: {body}"
        );
    }

    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_budget_usd",
            &[
                ("window", "day"),
                ("scope", "model"),
                ("name", "gpt-4o-mini")
            ]
        ),
        25.0
    );
    assert_eq!(
        value(
            &m,
            "chainpulse_slo_target",
            &[("kpi", "latency_p95_seconds"), ("chain", "rag_query")]
        ),
        0.001
    );

    // The report command renders the same figures from the running server.
    // The server runs on this test's runtime: run the child off it.
    let report = |window: &'static str, base: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_chainpulse"))
                .args(["report", "--window", window, "--url", &base])
                .output()
                .expect("report")
        })
    };
    let out = report("all", base.clone()).await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rag-app / rag_query"), "{text}");
    assert!(text.contains("requests 9  errors 3"), "{text}");
    assert!(
        text.contains("error_rate") && text.contains("NOT MET"),
        "{text}"
    );
    let out = report("7m", base.clone()).await.expect("join");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("accepted windows"));
}

/// `GET /api/v1/prices`: what chainpulse charges for a name, or why not.
#[tokio::test]
async fn prices_api_over_http() {
    let mut config = test_config();
    config
        .pricing
        .aliases
        .insert("my-azure-deploy".into(), "gpt-4o".into());
    let server = start(config).await;
    let base = format!("http://{}", server.addrs().metrics);

    let (status, body) = get_json(format!(
        "{base}/api/v1/prices?model=gpt-4o-mini-2024-07-18&provider=openai&at=2026-01-15"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["priced"], true);
    assert_eq!(body["price"]["entry"], "gpt-4o-mini");
    assert_eq!(body["price"]["rates"]["input"], 0.15);
    assert_eq!(body["price"]["rates"]["output"], 0.6);
    assert!(body["source"]
        .as_str()
        .is_some_and(|s| s.contains("genai-prices")));

    let (_, body) = get_json(format!("{base}/api/v1/prices?model=my-azure-deploy")).await;
    assert_eq!(body["price"]["entry"], "gpt-4o");

    let (status, body) = get_json(format!("{base}/api/v1/prices?model=mystery-model-9000")).await;
    assert_eq!(status, 200);
    assert_eq!(body["priced"], false);
    assert!(body["reason"]
        .as_str()
        .is_some_and(|r| r.contains("unpriced")));

    let (status, body) = get_json(format!("{base}/api/v1/prices")).await;
    assert_eq!(status, 200);
    assert!(
        body["count"].as_u64().is_some_and(|n| n > 1500),
        "{}",
        body["count"]
    );

    let (status, _) = get_json(format!("{base}/api/v1/prices?model=gpt-4o&at=yesterday")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn kpi_service_over_grpc() {
    let server = start(test_config()).await;
    feed_all(&server).await;
    let mut kpis = KpiServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect");
    let resp = kpis
        .get_kpis(GetKpisRequest {
            window: "all".into(),
            service: String::new(),
            chain: "rag_query".into(),
        })
        .await
        .expect("GetKpis")
        .into_inner();
    assert_eq!(resp.chains.len(), 1);
    let c = &resp.chains[0];
    assert_eq!(
        (c.requests, c.errors, c.tokens_input, c.tokens_output),
        (9, 3, 852, 252)
    );
    assert!((c.cost_usd - 6.0 * call_cost()).abs() < 1e-12);
    assert!(c.latency_p99_seconds.is_some());
    // Five targets: no throughput floor unless configured.
    assert_eq!(c.kpis.len(), 5);
    assert!(!c.targets_met);

    let e = kpis
        .get_kpis(GetKpisRequest {
            window: "forever".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("accepted windows"));

    let top = kpis
        .get_top(GetTopRequest {
            by: "model".into(),
            metric: "requests".into(),
            n: 5,
        })
        .await
        .expect("GetTop")
        .into_inner();
    assert_eq!(top.entries.len(), 1);
    assert_eq!(
        (top.entries[0].key.as_str(), top.entries[0].estimate),
        ("gpt-4o-mini", 6.0)
    );
    let e = kpis
        .get_top(GetTopRequest {
            by: "planet".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

/// `chainpulse prices`: the entry, its rates and source, or why unpriced.
#[test]
fn prices_command() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chainpulse"))
            .arg("prices")
            .args(args)
            .env_remove("CHAINPULSE_CONFIG")
            .output()
            .expect("chainpulse prices")
    };
    let out = run(&["claude-sonnet-4-5-20250929", "--at", "2026-11-01"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "-> claude-sonnet-4-5",
        "genai-prices",
        "input",
        "(>200k input: 6)",
        "cache_write_1h",
        "batch:",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    let out = run(&["gpt-4o-mini-tts-9000"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UNPRICED") && text.contains("names tried"),
        "{text}"
    );

    let out = run(&["o3", "--json", "--at", "2025-05-01"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["price"]["rates"]["input"].as_f64(), Some(10.0));

    let out = run(&["--list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() > 1500);

    let out = run(&["gpt-4o", "--at", "2025-13-01"]);
    assert_eq!(out.status.code(), Some(2));
}
