//! Forwarding end to end: chainpulse between real clients (tonic, reqwest,
//! the official OpenTelemetry Rust SDK) and controllable upstreams
//! ([`Upstream`]), asserting exact span sets, exact bytes and exact
//! self-metrics.

mod common;

use chainpulse::config::Config;
use chainpulse::export::text::Sample;
use chainpulse::server::Server;
use common::upstream::{self, Mode, SpanKey, Upstream};
use common::{fixture, scrape, start, test_config, value};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIXTURES: [&str; 6] = [
    "langchain-openinference.pb",
    "langchain-openinference-stream.pb",
    "langchain-openllmetry.pb",
    "langchain-openllmetry-stream.pb",
    "langchain-langsmith.pb",
    "langchain-langsmith-stream.pb",
];
/// Spans in one round of [`FIXTURES`]: 3 × 18 + 3 × 14.
const FIXTURE_SPANS: usize = 96;
/// How long a test waits for something that should happen "promptly".
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers.

fn decoded(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(&fixture(name)[..])
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn ids(req: &ExportTraceServiceRequest) -> HashSet<SpanKey> {
    upstream::span_ids_of(req).into_iter().collect()
}

fn span_count(req: &ExportTraceServiceRequest) -> usize {
    spans(req).count()
}

fn spans(req: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
}

fn spans_mut(req: &mut ExportTraceServiceRequest) -> impl Iterator<Item = &mut Span> {
    req.resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
}

fn key_of(s: &Span) -> SpanKey {
    (
        s.trace_id.as_slice().try_into().expect("16-byte trace id"),
        s.span_id.as_slice().try_into().expect("8-byte span id"),
    )
}

/// One `[[forward.destinations]]` table with test-friendly timings.
fn destination(name: &str, protocol: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[[forward.destinations]]
name = "{name}"
protocol = "{protocol}"
endpoint = "{endpoint}"
timeout_ms = 3000
batch = {{ flush_interval_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 500 }}
{extra}
"#
    )
}

/// `test_config()` (ephemeral ports) with the `[forward]` part of `toml`.
fn config(toml: &str) -> Config {
    let parsed = Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let mut c = test_config();
    c.forward = parsed.forward;
    c.server.shutdown_timeout_ms = 1000;
    c
}

async fn grpc_client(server: &Server) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect to chainpulse over gRPC")
}

async fn post(server: &Server, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.addrs().http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("POST to chainpulse")
}

fn fwd(m: &[Sample], dest: &str, result: &str) -> f64 {
    value(
        m,
        "chainpulse_forward_spans_total",
        &[("destination", dest), ("result", result)],
    )
}

fn failed_reason(m: &[Sample], dest: &str, reason: &str) -> f64 {
    value(
        m,
        "chainpulse_forward_failed_spans_total",
        &[("destination", dest), ("reason", reason)],
    )
}

fn failed_any(m: &[Sample], dest: &str) -> f64 {
    value(
        m,
        "chainpulse_forward_failed_spans_total",
        &[("destination", dest)],
    )
}

fn queue_spans(m: &[Sample], dest: &str) -> f64 {
    value(
        m,
        "chainpulse_forward_queue_spans",
        &[("destination", dest)],
    )
}

fn queue_bytes(m: &[Sample], dest: &str) -> f64 {
    value(
        m,
        "chainpulse_forward_queue_bytes",
        &[("destination", dest)],
    )
}

fn batches(m: &[Sample], dest: &str, result: &str) -> f64 {
    value(
        m,
        "chainpulse_forward_batches_total",
        &[("destination", dest), ("result", result)],
    )
}

/// Scrapes until `cond` holds or [`PATIENCE`] runs out; returns the last
/// scrape either way (the caller asserts exact values on it).
async fn wait_metrics(server: &Server, cond: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = scrape(server).await;
        if cond(&m) || Instant::now() >= deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `cond` until it holds (true) or `timeout` passes (false).
async fn wait_for(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Splits a forwarded body into the sent bodies it is the concatenation of
/// (greedy: no sent body is a prefix of another). `None` if it is not one.
fn split_into<'a>(mut raw: &[u8], sent: &'a [Vec<u8>]) -> Option<Vec<&'a [u8]>> {
    let mut pieces = Vec::new();
    while !raw.is_empty() {
        let piece = sent.iter().find(|s| !s.is_empty() && raw.starts_with(s))?;
        pieces.push(piece.as_slice());
        raw = &raw[piece.len()..];
    }
    Some(pieces)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that the forwarded bodies are, together, exactly the sent bodies
/// (each once, byte for byte), batched by concatenation.
fn assert_bytes_forwarded(what: &str, raw: &[bytes::Bytes], sent: &[Vec<u8>]) {
    let mut pieces: Vec<&[u8]> = Vec::new();
    for (i, body) in raw.iter().enumerate() {
        let p = split_into(body, sent).unwrap_or_else(|| {
            panic!(
                "{what}: forwarded body #{i} ({} bytes) is not a concatenation of sent bodies",
                body.len()
            )
        });
        pieces.extend(p);
    }
    let mut want: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    pieces.sort();
    want.sort();
    assert!(
        pieces == want,
        "{what}: forwarded {} request bodies, sent {}",
        pieces.len(),
        want.len()
    );
}

/// Sets a string attribute, adding it if missing; true if it existed.
fn set_attr(attrs: &mut Vec<KeyValue>, key: &str, v: String) -> bool {
    let value = Some(AnyValue {
        value: Some(any_value::Value::StringValue(v)),
    });
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => {
            kv.value = value;
            true
        }
        None => {
            attrs.push(KeyValue {
                key: key.to_owned(),
                value,
                ..KeyValue::default()
            });
            false
        }
    }
}

/// Every string in a value, nested arrays and kvlists included.
fn strings_in<'a>(v: &'a AnyValue, path: String, out: &mut Vec<(String, &'a str)>) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => out.push((path, s)),
        Some(any_value::Value::ArrayValue(a)) => {
            for (i, x) in a.values.iter().enumerate() {
                strings_in(x, format!("{path}[{i}]"), out);
            }
        }
        Some(any_value::Value::KvlistValue(l)) => strings_in_attrs(&l.values, &path, out),
        _ => {}
    }
}

fn strings_in_attrs<'a>(attrs: &'a [KeyValue], path: &str, out: &mut Vec<(String, &'a str)>) {
    for kv in attrs {
        if let Some(v) = &kv.value {
            strings_in(v, format!("{path}/{}", kv.key), out);
        }
    }
}

/// Every string the truncator looks at in a span: attributes, event and
/// link attributes, the status message; keyed by a path inside the span.
fn span_strings(s: &Span) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    strings_in_attrs(&s.attributes, "attr", &mut out);
    for (i, e) in s.events.iter().enumerate() {
        strings_in_attrs(&e.attributes, &format!("event[{i}]"), &mut out);
    }
    for (i, l) in s.links.iter().enumerate() {
        strings_in_attrs(&l.attributes, &format!("link[{i}]"), &mut out);
    }
    if let Some(st) = &s.status {
        out.push(("status".into(), &st.message));
    }
    out
}

/// Series of `names`, for comparing two servers' metrics.
fn families(m: &[Sample], names: &[&str]) -> Vec<Sample> {
    let mut out: Vec<Sample> = m
        .iter()
        .filter(|s| names.contains(&s.name.as_str()))
        .cloned()
        .collect();
    out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    out
}

/// Per trace: did any span fail, and the root's duration in ms.
fn trace_facts(req: &ExportTraceServiceRequest) -> HashMap<[u8; 16], (bool, f64)> {
    let mut out: HashMap<[u8; 16], (bool, f64)> = HashMap::new();
    for s in spans(req) {
        let (trace, _) = key_of(s);
        let e = out.entry(trace).or_insert((false, 0.0));
        e.0 |= s.status.as_ref().is_some_and(|st| st.code == 2);
        if s.parent_span_id.is_empty() {
            e.1 = (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 1. Round trips.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_over_grpc_and_gzipped_http_keeps_every_span_and_byte() {
    let up_grpc = Upstream::start().await;
    let up_http = Upstream::start().await;
    let toml = [
        destination("to-grpc", "grpc", &up_grpc.grpc_endpoint(), ""),
        destination(
            "to-http",
            "http",
            &up_http.http_endpoint(),
            "compression = \"gzip\"",
        ),
    ]
    .concat();
    let server = start(config(&toml)).await;
    let mut client = grpc_client(&server).await;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut expected = HashSet::new();
    let mut spans_sent = 0;
    for name in FIXTURES {
        let raw = fixture(name);
        let req = decoded(name);
        expected.extend(ids(&req));
        spans_sent += 2 * span_count(&req);
        // Over gRPC chainpulse receives (and must forward) what tonic encodes.
        sent.push(req.encode_to_vec());
        client.export(req).await.expect("gRPC export");
        let resp = post(&server, raw.clone()).await;
        assert_eq!(resp.status(), 200, "{name} over HTTP");
        sent.push(raw);
    }
    assert_eq!(spans_sent, 2 * FIXTURE_SPANS);
    let total = spans_sent as f64;
    let dests = ["to-grpc", "to-http"];
    let m = wait_metrics(&server, |m| {
        dests.iter().all(|d| {
            fwd(m, d, "sent") == total && queue_spans(m, d) == 0.0 && queue_bytes(m, d) == 0.0
        })
    })
    .await;
    for (dest, up) in [("to-grpc", &up_grpc), ("to-http", &up_http)] {
        assert_eq!(fwd(&m, dest, "sent"), total, "{dest}");
        for result in ["retried", "failed", "dropped", "sampled_out"] {
            assert_eq!(fwd(&m, dest, result), 0.0, "{dest} {result}");
        }
        assert_eq!(failed_any(&m, dest), 0.0, "{dest}");
        assert_eq!(queue_spans(&m, dest), 0.0, "{dest}");
        assert_eq!(queue_bytes(&m, dest), 0.0, "{dest}");
        assert_eq!(
            value(
                &m,
                "chainpulse_forward_oldest_age_seconds",
                &[("destination", dest)]
            ),
            0.0,
            "{dest}"
        );
        assert_eq!(up.span_ids(), expected, "{dest}: span ids");
        assert_eq!(up.spans_total(), spans_sent, "{dest}: each span once");
        assert_eq!(up.bad_requests(), 0, "{dest}");
        assert_bytes_forwarded(dest, &up.raw_bodies(), &sent);
        assert_eq!(
            batches(&m, dest, "sent"),
            up.requests() as f64,
            "{dest}: one batch per upstream request"
        );
    }
    assert!(up_http.requests() > 0);
    assert_eq!(
        up_http.gzip_requests(),
        up_http.requests(),
        "every HTTP export is gzipped"
    );
    assert_eq!(
        up_grpc.gzip_requests(),
        0,
        "gRPC: compression not asked for"
    );
    assert_eq!(
        up_http.last_header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_official_sdk_reach_the_upstream() {
    use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider};
    use opentelemetry::{Context, KeyValue as OtelKv};
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let up = Upstream::start().await;
    let server = start(config(&destination(
        "sdk-up",
        "grpc",
        &up.grpc_endpoint(),
        "",
    )))
    .await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", server.addrs().grpc))
        .build()
        .expect("SDK exporter");
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("sdk-app")
                .build(),
        )
        .build();
    let tracer = provider.tracer("forward-test");
    let mut expected: HashSet<SpanKey> = HashSet::new();
    let key = |cx: &opentelemetry::trace::SpanContext| -> SpanKey {
        (cx.trace_id().to_bytes(), cx.span_id().to_bytes())
    };
    for _ in 0..4 {
        let root = tracer
            .span_builder("answer")
            .with_attributes(vec![
                OtelKv::new("gen_ai.operation.name", "invoke_workflow"),
                OtelKv::new("gen_ai.workflow.name", "answer"),
            ])
            .start(&tracer);
        let cx = Context::current_with_span(root);
        for (name, op) in [
            ("retrieval docs", "retrieval"),
            ("chat gpt-4o-mini", "chat"),
        ] {
            let mut s = tracer
                .span_builder(name)
                .with_attributes(vec![OtelKv::new("gen_ai.operation.name", op)])
                .start_with_context(&tracer, &cx);
            expected.insert(key(s.span_context()));
            s.end();
        }
        expected.insert(key(cx.span().span_context()));
        cx.span().end();
    }
    provider.force_flush().expect("SDK flush");
    assert_eq!(expected.len(), 12);
    wait_for(PATIENCE, || up.span_ids().len() >= expected.len()).await;
    assert_eq!(up.span_ids(), expected);
    let m = wait_metrics(&server, |m| fwd(m, "sdk-up", "sent") == 12.0).await;
    assert_eq!(fwd(&m, "sdk-up", "sent"), 12.0);
    assert_eq!(value(&m, "chainpulse_spans_received_total", &[]), 12.0);
    assert_eq!(up.spans_total(), 12);
    provider.shutdown().expect("SDK shutdown");
    server.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 2. One dead destination does not hold up a live one, and catches up.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_keeps_its_spans_while_a_live_one_gets_everything() {
    let alive = Upstream::start().await;
    let dead = Upstream::start().await;
    dead.stop().await;
    let toml = [
        destination("alive", "http", &alive.http_endpoint(), ""),
        destination("dead", "grpc", &dead.grpc_endpoint(), ""),
    ]
    .concat();
    let server = start(config(&toml)).await;
    let mut client = grpc_client(&server).await;
    let mut expected = HashSet::new();
    for name in FIXTURES {
        let req = decoded(name);
        expected.extend(ids(&req));
        client.export(req).await.expect("export");
    }
    let n = FIXTURE_SPANS as f64;
    assert!(
        wait_for(Duration::from_secs(3), || alive.span_ids() == expected).await,
        "the live destination got {} of {} spans within 3 s",
        alive.span_ids().len(),
        expected.len()
    );
    let m = wait_metrics(&server, |m| {
        fwd(m, "alive", "sent") == n
            && queue_spans(m, "alive") == 0.0
            && queue_spans(m, "dead") == n
            && fwd(m, "dead", "retried") > 0.0
    })
    .await;
    assert_eq!(fwd(&m, "alive", "sent"), n);
    assert_eq!(queue_spans(&m, "alive"), 0.0);
    assert_eq!(
        queue_spans(&m, "dead"),
        n,
        "the dead one's queue holds them"
    );
    assert!(queue_bytes(&m, "dead") > 0.0);
    assert!(fwd(&m, "dead", "retried") > 0.0);
    assert_eq!(fwd(&m, "dead", "sent"), 0.0);
    assert_eq!(dead.requests(), 0);

    dead.restart().await;
    assert!(
        wait_for(PATIENCE, || dead.span_ids() == expected).await,
        "after the restart the upstream got {} of {} spans",
        dead.span_ids().len(),
        expected.len()
    );
    let m = wait_metrics(&server, |m| {
        fwd(m, "dead", "sent") == n && queue_spans(m, "dead") == 0.0
    })
    .await;
    for d in ["alive", "dead"] {
        assert_eq!(fwd(&m, d, "sent"), n, "{d}");
        assert_eq!(fwd(&m, d, "failed"), 0.0, "{d}");
        assert_eq!(fwd(&m, d, "dropped"), 0.0, "{d}");
        assert_eq!(failed_any(&m, d), 0.0, "{d}");
        assert_eq!(queue_spans(&m, d), 0.0, "{d}");
        assert_eq!(queue_bytes(&m, d), 0.0, "{d}");
    }
    assert_eq!(dead.spans_total(), FIXTURE_SPANS, "each span once");
    server.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 3. Outage, then throttling: retried until everything is in.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_and_throttling_are_retried_until_everything_is_delivered() {
    let ug = Upstream::start().await;
    let uh = Upstream::start().await;
    ug.stop().await;
    uh.stop().await;
    let toml = [
        destination("flaky-grpc", "grpc", &ug.grpc_endpoint(), ""),
        destination("flaky-http", "http", &uh.http_endpoint(), ""),
    ]
    .concat();
    let server = start(config(&toml)).await;
    let dests = ["flaky-grpc", "flaky-http"];
    let ups = [&ug, &uh];
    let mut client = grpc_client(&server).await;
    let mut expected = HashSet::new();
    // Down: connections refused.
    for name in &FIXTURES[..3] {
        let req = decoded(name);
        expected.extend(ids(&req));
        client.export(req).await.expect("export");
    }
    let m = wait_metrics(&server, |m| {
        dests.iter().all(|d| fwd(m, d, "retried") > 0.0)
    })
    .await;
    for d in dests {
        assert!(fwd(&m, d, "retried") > 0.0, "{d}: retried while down");
    }

    // Phase by phase; each must actually be hit by both destinations.
    async fn phase(ups: &[&Upstream; 2], mode: Mode, what: &str) {
        let before: Vec<usize> = ups.iter().map(|u| u.failed_requests()).collect();
        for u in ups {
            u.set_mode(mode.clone());
        }
        for (u, b) in ups.iter().zip(before) {
            assert!(
                wait_for(PATIENCE, || u.failed_requests() > b).await,
                "{what}: no export attempt was answered with it"
            );
        }
    }
    // Back, but answering UNAVAILABLE / 503.
    for u in ups {
        u.set_mode(Mode::unavailable());
        u.restart().await;
    }
    phase(&ups, Mode::unavailable(), "UNAVAILABLE / 503").await;
    // RESOURCE_EXHAUSTED + RetryInfo / 429 + Retry-After, while more arrives.
    phase(
        &ups,
        Mode::throttled(Duration::from_millis(200)),
        "RESOURCE_EXHAUSTED with RetryInfo / 429",
    )
    .await;
    for name in &FIXTURES[3..] {
        let raw = fixture(name);
        expected.extend(ids(&decoded(name)));
        assert_eq!(post(&server, raw).await.status(), 200, "{name}");
    }
    // 503 with Retry-After (gRPC: UNAVAILABLE with RetryInfo).
    phase(
        &ups,
        Mode::Fail {
            grpc: tonic::Code::Unavailable,
            http: 503,
            retry_after: Some(Duration::from_millis(100)),
        },
        "503 with Retry-After",
    )
    .await;
    for u in ups {
        u.set_mode(Mode::Accept);
    }
    for (d, u) in dests.iter().zip(ups) {
        assert!(
            wait_for(PATIENCE, || u.span_ids() == expected).await,
            "{d}: got {} of {} spans",
            u.span_ids().len(),
            expected.len()
        );
    }
    let n = FIXTURE_SPANS as f64;
    let m = wait_metrics(&server, |m| {
        dests
            .iter()
            .all(|d| fwd(m, d, "sent") == n && queue_spans(m, d) == 0.0)
    })
    .await;
    for (d, u) in dests.iter().zip(ups) {
        assert_eq!(fwd(&m, d, "sent"), n, "{d}");
        assert_eq!(fwd(&m, d, "failed"), 0.0, "{d}");
        assert_eq!(fwd(&m, d, "dropped"), 0.0, "{d}");
        assert_eq!(failed_any(&m, d), 0.0, "{d}");
        assert_eq!(queue_spans(&m, d), 0.0, "{d}");
        assert_eq!(u.spans_total(), FIXTURE_SPANS, "{d}: each span once");
        assert!(u.failed_requests() >= 3, "{d}");
    }
    server.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 4. Permanent refusals: counted by reason, and the queue moves on.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_are_counted_and_do_not_block_the_queue() {
    let ug = Upstream::start().await;
    let uh = Upstream::start().await;
    let invalid = Mode::Fail {
        grpc: tonic::Code::InvalidArgument,
        http: 400,
        retry_after: None,
    };
    ug.set_mode(invalid.clone());
    uh.set_mode(invalid);
    let toml = [
        destination("perm-grpc", "grpc", &ug.grpc_endpoint(), ""),
        destination("perm-http", "http", &uh.http_endpoint(), ""),
    ]
    .concat();
    let server = start(config(&toml)).await;
    let dests = [
        ("perm-grpc", &ug, "grpc_invalid_argument"),
        ("perm-http", &uh, "http_400"),
    ];
    let mut client = grpc_client(&server).await;
    for name in [
        "langchain-openinference.pb",
        "langchain-langsmith-stream.pb",
    ] {
        client.export(decoded(name)).await.expect("export");
    }
    let m = wait_metrics(&server, |m| {
        dests
            .iter()
            .all(|(d, _, _)| fwd(m, d, "failed") == 32.0 && queue_spans(m, d) == 0.0)
    })
    .await;
    for (d, u, reason) in dests {
        assert_eq!(failed_reason(&m, d, reason), 32.0, "{d}");
        assert_eq!(failed_any(&m, d), 32.0, "{d}: no other reason");
        assert_eq!(fwd(&m, d, "failed"), 32.0, "{d}");
        assert_eq!(fwd(&m, d, "sent"), 0.0, "{d}");
        assert_eq!(
            fwd(&m, d, "retried"),
            0.0,
            "{d}: a permanent error is not retried"
        );
        assert_eq!(batches(&m, d, "failed"), 2.0, "{d}: one per request");
        assert_eq!(queue_spans(&m, d), 0.0, "{d}");
        assert_eq!(u.requests(), 0, "{d}");
        u.set_mode(Mode::Accept);
    }

    // Not stuck: the next request goes through.
    let later = decoded("langchain-openllmetry.pb");
    let mut expected = ids(&later);
    client.export(later).await.expect("export");
    for (d, u, _) in dests {
        assert!(
            wait_for(PATIENCE, || u.span_ids() == expected).await,
            "{d}: got {} of {} spans",
            u.span_ids().len(),
            expected.len()
        );
    }
    let m = wait_metrics(&server, |m| {
        dests.iter().all(|(d, _, _)| fwd(m, d, "sent") == 18.0)
    })
    .await;
    for (d, u, _) in dests {
        assert_eq!(fwd(&m, d, "sent"), 18.0, "{d}");
        assert_eq!(fwd(&m, d, "failed"), 32.0, "{d}");
        u.set_mode(Mode::PartialReject {
            rejected: 5,
            message: "5 spans had no name".into(),
        });
    }

    // Accepted, but 5 spans refused.
    let partial = decoded("langchain-openinference-stream.pb");
    expected.extend(ids(&partial));
    client.export(partial).await.expect("export");
    let m = wait_metrics(&server, |m| {
        dests
            .iter()
            .all(|(d, _, _)| failed_reason(m, d, "partial_rejected") == 5.0)
    })
    .await;
    for (d, u, reason) in dests {
        assert_eq!(failed_reason(&m, d, "partial_rejected"), 5.0, "{d}");
        assert_eq!(fwd(&m, d, "sent"), 18.0 + 14.0 - 5.0, "{d}");
        assert_eq!(fwd(&m, d, "failed"), 32.0 + 5.0, "{d}");
        assert_eq!(failed_reason(&m, d, reason), 32.0, "{d}");
        assert_eq!(queue_spans(&m, d), 0.0, "{d}");
        assert_eq!(u.span_ids(), expected, "{d}");
    }
    server.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 5. Back-pressure and drops.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_and_counts_only_accepted_requests() {
    const MAX: f64 = 65536.0;
    let up = Upstream::start().await;
    up.stop().await;
    let toml = destination(
        "tiny",
        "grpc",
        &up.grpc_endpoint(),
        "queue = { max_bytes = 65536 }",
    );
    let server = start(config(&toml)).await;
    let mut client = grpc_client(&server).await;
    let mut accepted: Vec<&str> = Vec::new();
    let mut refused_name = None;
    let mut max_seen = 0.0f64;
    for name in FIXTURES.iter().cycle().take(20) {
        match client.export(decoded(name)).await {
            Ok(_) => accepted.push(name),
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::ResourceExhausted,
                    "refusal: {status:?}"
                );
                assert_eq!(
                    upstream::retry_delay_of(&status),
                    Some(Duration::from_secs(2)),
                    "RESOURCE_EXHAUSTED must carry a RetryInfo (SDKs only retry it then)"
                );
                refused_name = Some(*name);
                break;
            }
        }
        let m = scrape(&server).await;
        max_seen = max_seen.max(queue_bytes(&m, "tiny"));
        assert!(queue_bytes(&m, "tiny") <= MAX);
    }
    let refused = refused_name.expect("a 64 KiB queue refuses within 20 fixtures");
    assert!(!accepted.is_empty(), "the first fixture fits");
    // Over HTTP: the same request does not fit either.
    let resp = post(&server, decoded(refused).encode_to_vec()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let accepted_spans: usize = accepted.iter().map(|n| span_count(&decoded(n))).sum();
    let expected: HashSet<SpanKey> = accepted.iter().flat_map(|n| ids(&decoded(n))).collect();
    let m = wait_metrics(&server, |m| queue_spans(m, "tiny") == accepted_spans as f64).await;
    max_seen = max_seen.max(queue_bytes(&m, "tiny"));
    assert!(max_seen <= MAX, "queue bytes {max_seen} > {MAX}");
    assert!(max_seen > MAX / 2.0, "the queue really filled: {max_seen}");
    assert_eq!(
        value(
            &m,
            "chainpulse_forward_queue_max_bytes",
            &[("destination", "tiny")]
        ),
        MAX
    );
    assert_eq!(queue_spans(&m, "tiny"), accepted_spans as f64);
    let rejected = |p: &str| {
        value(
            &m,
            "chainpulse_otlp_requests_rejected_total",
            &[("protocol", p), ("reason", "queue_full")],
        )
    };
    assert_eq!((rejected("grpc"), rejected("http_protobuf")), (1.0, 1.0));
    assert_eq!(
        value(&m, "chainpulse_spans_received_total", &[]),
        accepted_spans as f64,
        "refused requests are not counted"
    );
    let traces: usize = accepted
        .iter()
        .map(|n| trace_facts(&decoded(n)).len())
        .sum();
    assert_eq!(
        value(&m, "chainpulse_requests_total", &[]),
        traces as f64,
        "only accepted requests reach the KPIs"
    );
    assert_eq!(fwd(&m, "tiny", "dropped"), 0.0);

    // Upstream back: every accepted span is delivered.
    up.restart().await;
    assert!(
        wait_for(PATIENCE, || up.span_ids() == expected).await,
        "got {} of {} accepted spans",
        up.span_ids().len(),
        expected.len()
    );
    let m = wait_metrics(&server, |m| {
        fwd(m, "tiny", "sent") == accepted_spans as f64 && queue_spans(m, "tiny") == 0.0
    })
    .await;
    assert_eq!(fwd(&m, "tiny", "sent"), accepted_spans as f64);
    assert_eq!(fwd(&m, "tiny", "failed"), 0.0);
    assert_eq!(up.spans_total(), accepted_spans);
    // The SDK's retry of the refused request now goes through, counted once.
    client
        .export(decoded(refused))
        .await
        .expect("the retried export is accepted");
    let total = accepted_spans + span_count(&decoded(refused));
    let m = wait_metrics(&server, |m| fwd(m, "tiny", "sent") == total as f64).await;
    assert_eq!(fwd(&m, "tiny", "sent"), total as f64);
    assert_eq!(
        value(&m, "chainpulse_spans_received_total", &[]),
        total as f64
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_full_drop_drops_for_that_destination_only() {
    let keep = Upstream::start().await;
    let dead = Upstream::start().await;
    dead.stop().await;
    let toml = [
        destination("keep", "grpc", &keep.grpc_endpoint(), ""),
        destination(
            "dropper",
            "grpc",
            &dead.grpc_endpoint(),
            "queue = { max_bytes = 65536, on_full = \"drop\" }",
        ),
    ]
    .concat();
    let server = start(config(&toml)).await;
    let mut client = grpc_client(&server).await;
    let mut sent: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut all = HashSet::new();
    for name in FIXTURES {
        let req = decoded(name);
        all.extend(ids(&req));
        sent.push((req.encode_to_vec(), span_count(&req)));
        client
            .export(req)
            .await
            .unwrap_or_else(|s| panic!("{name}: on_full = drop never refuses: {s:?}"));
    }
    let n = FIXTURE_SPANS as f64;
    let m = wait_metrics(&server, |m| {
        fwd(m, "keep", "sent") == n && fwd(m, "dropper", "dropped") + queue_spans(m, "dropper") == n
    })
    .await;
    assert_eq!(value(&m, "chainpulse_spans_received_total", &[]), n);
    assert_eq!(fwd(&m, "keep", "sent"), n);
    assert_eq!(fwd(&m, "keep", "dropped"), 0.0);
    assert_eq!(keep.span_ids(), all);
    let dropped = fwd(&m, "dropper", "dropped");
    assert!(dropped >= 14.0, "a 64 KiB queue cannot hold 6 fixtures");
    assert_eq!(failed_reason(&m, "dropper", "queue_full"), dropped);
    assert_eq!(fwd(&m, "dropper", "failed"), 0.0, "dropped, not failed");
    assert_eq!(queue_spans(&m, "dropper"), n - dropped);
    assert!(queue_bytes(&m, "dropper") <= 65536.0);
    assert_eq!(
        value(
            &m,
            "chainpulse_otlp_requests_rejected_total",
            &[("reason", "queue_full")]
        ),
        0.0
    );

    // What was kept is delivered once the upstream is back; exactly the
    // dropped spans are missing.
    dead.restart().await;
    let m = wait_metrics(&server, |m| {
        fwd(m, "dropper", "sent") == n - dropped && queue_spans(m, "dropper") == 0.0
    })
    .await;
    assert_eq!(fwd(&m, "dropper", "sent"), n - dropped);
    let raw = dead.raw_bodies();
    let bodies: Vec<Vec<u8>> = sent.iter().map(|(b, _)| b.clone()).collect();
    let mut delivered = 0usize;
    let mut delivered_ids = HashSet::new();
    for body in &raw {
        let pieces = split_into(body, &bodies).expect("forwarded bodies are whole requests");
        for p in pieces {
            let (_, spans) = sent
                .iter()
                .find(|(b, _)| b.as_slice() == p)
                .expect("a sent body");
            delivered += spans;
            let req = ExportTraceServiceRequest::decode(p).expect("decodes");
            delivered_ids.extend(ids(&req));
        }
    }
    assert_eq!(delivered as f64, n - dropped, "kept = delivered");
    assert_eq!(dead.span_ids(), delivered_ids);
    server.shutdown().await.expect("shutdown");
}

/// A request refused by one destination's back-pressure is retried by the
/// client, so nothing may be counted for it anywhere — not even as dropped
/// by a destination with `on_full = "drop"` that happens to come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_not_counted_as_dropped_elsewhere() {
    let up1 = Upstream::start().await;
    let up2 = Upstream::start().await;
    up1.stop().await;
    up2.stop().await;
    let toml = [
        destination(
            "drops",
            "grpc",
            &up1.grpc_endpoint(),
            "queue = { max_bytes = 65536, on_full = \"drop\" }",
        ),
        destination(
            "pushes-back",
            "grpc",
            &up2.grpc_endpoint(),
            "queue = { max_bytes = 65536 }",
        ),
    ]
    .concat();
    let server = start(config(&toml)).await;
    let mut client = grpc_client(&server).await;
    let mut accepted_spans = 0;
    let mut refused = 0;
    // Both queues fill at the same pace: the first request that does not
    // fit in one does not fit in the other.
    for name in FIXTURES {
        let req = decoded(name);
        let n = span_count(&req);
        match client.export(req).await {
            Ok(_) => accepted_spans += n,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a 64 KiB queue cannot take 6 fixtures");
    let m = wait_metrics(&server, |m| {
        queue_spans(m, "pushes-back") == accepted_spans as f64
    })
    .await;
    assert_eq!(
        value(&m, "chainpulse_spans_received_total", &[]),
        accepted_spans as f64
    );
    assert_eq!(queue_spans(&m, "pushes-back"), accepted_spans as f64);
    assert_eq!(
        fwd(&m, "drops", "dropped") + queue_spans(&m, "drops"),
        accepted_spans as f64,
        "the drop destination accounts for accepted spans only (dropped {}, queued {})",
        fwd(&m, "drops", "dropped"),
        queue_spans(&m, "drops")
    );
    assert_eq!(
        failed_reason(&m, "drops", "queue_full"),
        fwd(&m, "drops", "dropped")
    );
}

// ---------------------------------------------------------------------------
// 6. Redaction and truncation.

const API_KEY: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const MAX_ATTR: usize = 256;

/// The openinference capture with secrets in every root's `input.value`,
/// and an API key straddling the truncation limit in `output.value`.
fn with_secrets() -> ExportTraceServiceRequest {
    let mut req = decoded("langchain-openinference.pb");
    let mut roots = 0;
    for s in spans_mut(&mut req) {
        if !s.parent_span_id.is_empty() {
            continue;
        }
        roots += 1;
        let input = format!(
            r#"{{"question": "my key is {API_KEY}, mail me at {EMAIL}, card {CARD} thanks"}}"#
        );
        assert!(set_attr(&mut s.attributes, "input.value", input));
        let output = format!("{} {API_KEY} tail", "x".repeat(MAX_ATTR - 16));
        // The failing root has no output: add one.
        set_attr(&mut s.attributes, "output.value", output);
    }
    assert_eq!(roots, 3);
    req
}

const SECRETS: [&str; 5] = [API_KEY, "sk-proj-", EMAIL, CARD, "4111111111111111"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_and_truncation_reach_the_upstream_but_not_the_metrics() {
    let up = Upstream::start().await;
    let up_plain = Upstream::start().await;
    let toml = format!(
        "{}\n[forward.redact]\n\n[forward.truncate]\nmax_attribute_bytes = {MAX_ATTR}\n",
        destination("scrubbed", "grpc", &up.grpc_endpoint(), "")
    );
    let server = start(config(&toml)).await;
    let plain = start(config(&destination(
        "plain",
        "grpc",
        &up_plain.grpc_endpoint(),
        "",
    )))
    .await;
    let req = with_secrets();
    let expected = ids(&req);
    let other = decoded("langchain-openllmetry.pb");
    let mut all = expected.clone();
    all.extend(ids(&other));
    for s in [&server, &plain] {
        let mut c = grpc_client(s).await;
        c.export(req.clone()).await.expect("export");
        c.export(other.clone()).await.expect("export");
    }
    for u in [&up, &up_plain] {
        assert!(
            wait_for(PATIENCE, || u.span_ids() == all).await,
            "got {} of {} spans",
            u.span_ids().len(),
            all.len()
        );
    }
    // The secrets were there to be found ...
    let plain_raw = up_plain.raw_bodies();
    for secret in SECRETS.iter().take(4) {
        assert!(
            plain_raw.iter().any(|b| contains(b, secret.as_bytes())),
            "without redaction {secret} is forwarded"
        );
    }
    // ... and none is forwarded with redaction on.
    let raw = up.raw_bodies();
    for secret in SECRETS {
        assert!(
            !raw.iter().any(|b| contains(b, secret.as_bytes())),
            "{secret} was forwarded"
        );
    }
    for marker in ["[REDACTED:api_key]", "[REDACTED:email]", "[REDACTED:card]"] {
        assert!(
            raw.iter().any(|b| contains(b, marker.as_bytes())),
            "{marker} missing"
        );
    }
    // No string over the limit unless cut to it, with the exact marker.
    let mut originals: HashMap<(SpanKey, String), String> = HashMap::new();
    for r in [&req, &other] {
        for s in spans(r) {
            for (path, v) in span_strings(s) {
                originals.insert((key_of(s), path), v.to_owned());
            }
        }
    }
    let mut truncated = 0;
    let mut redacted_inputs = 0;
    for r in up.received() {
        for s in spans(&r) {
            for (path, v) in span_strings(s) {
                let orig = originals
                    .get(&(key_of(s), path.clone()))
                    .unwrap_or_else(|| panic!("{path}: an attribute that was not sent"));
                if path == "attr/input.value"
                    && s.parent_span_id.is_empty()
                    && v.contains("[REDACTED:")
                {
                    redacted_inputs += 1;
                }
                if v.len() <= MAX_ATTR {
                    if orig.len() <= MAX_ATTR && !SECRETS.iter().any(|x| orig.contains(x)) {
                        assert_eq!(v, orig, "{path}: short values are untouched");
                    }
                    continue;
                }
                truncated += 1;
                let at = v
                    .rfind("…[truncated ")
                    .unwrap_or_else(|| panic!("{path}: {} bytes, no marker", v.len()));
                let (kept, marker) = v.split_at(at);
                assert!(
                    kept.len() <= MAX_ATTR && kept.len() + 4 > MAX_ATTR,
                    "{path}: kept {} bytes",
                    kept.len()
                );
                let cut: usize = marker
                    .strip_prefix("…[truncated ")
                    .and_then(|m| m.strip_suffix(" bytes]"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{path}: bad marker {marker:?}"));
                if !SECRETS.iter().any(|x| orig.contains(x)) {
                    assert!(orig.starts_with(kept), "{path}: kept a prefix");
                    assert_eq!(cut, orig.len() - kept.len(), "{path}: bytes cut");
                }
            }
        }
    }
    assert_eq!(redacted_inputs, 3);
    assert!(
        truncated > 0,
        "the captures have values over {MAX_ATTR} bytes"
    );
    let m = scrape(&server).await;
    assert_eq!(
        value(&m, "chainpulse_forward_truncated_values_total", &[]),
        truncated as f64
    );
    assert_eq!(
        value(&m, "chainpulse_forward_redactions_total", &[]),
        12.0,
        "3 roots × (key, e-mail, card in the input + key in the output)"
    );
    // chainpulse's own metrics come from the unredacted spans.
    let mp = wait_metrics(&plain, |mp| {
        value(mp, "chainpulse_requests_total", &[]) == 6.0
    })
    .await;
    let m = wait_metrics(&server, |m| {
        value(m, "chainpulse_requests_total", &[]) == 6.0
    })
    .await;
    let names = [
        "chainpulse_llm_tokens_total",
        "chainpulse_runs_total",
        "chainpulse_requests_total",
        "chainpulse_errors_total",
        "chainpulse_llm_calls_total",
        "chainpulse_spans_received_total",
    ];
    let (a, b) = (families(&m, &names), families(&mp, &names));
    assert!(!a.is_empty());
    assert_eq!(a, b, "redaction must not change chainpulse's own metrics");
    assert_eq!(
        value(&m, "chainpulse_llm_tokens_total", &[("type", "input")]),
        2.0 * 284.0
    );
    assert_eq!(value(&m, "chainpulse_requests_total", &[]), 6.0);
    server.shutdown().await.expect("shutdown");
    plain.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_io_removes_inputs_and_outputs_upstream() {
    let up = Upstream::start().await;
    let toml = format!(
        "{}\n[forward.redact]\ndrop_io = true\n",
        destination("no-io", "http", &up.http_endpoint(), "")
    );
    let server = start(config(&toml)).await;
    let io_key = |k: &str| {
        chainpulse::forward::config::DEFAULT_IO_KEYS
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => k.starts_with(prefix),
                None => k == *p || k.starts_with(&format!("{p}.")),
            })
    };
    let mut client = grpc_client(&server).await;
    let mut all = HashSet::new();
    let mut io_before = 0;
    let mut other_before: Vec<(SpanKey, String)> = Vec::new();
    for name in ["langchain-openinference.pb", "langchain-openllmetry.pb"] {
        let req = decoded(name);
        all.extend(ids(&req));
        for s in spans(&req) {
            for kv in &s.attributes {
                if io_key(&kv.key) {
                    io_before += 1;
                } else {
                    other_before.push((key_of(s), kv.key.clone()));
                }
            }
        }
        client.export(req).await.expect("export");
    }
    assert!(io_before > 50, "the captures carry inputs and outputs");
    assert!(wait_for(PATIENCE, || up.span_ids() == all).await);
    let mut other_after: Vec<(SpanKey, String)> = Vec::new();
    for r in up.received() {
        for s in spans(&r) {
            for kv in &s.attributes {
                assert!(!io_key(&kv.key), "{} forwarded", kv.key);
                other_after.push((key_of(s), kv.key.clone()));
            }
        }
    }
    other_before.sort();
    other_after.sort();
    assert_eq!(other_after, other_before, "every other attribute is kept");
    let m = scrape(&server).await;
    assert_eq!(
        value(&m, "chainpulse_forward_redactions_total", &[]),
        io_before as f64,
        "one per dropped attribute"
    );
    assert_eq!(
        value(&m, "chainpulse_llm_tokens_total", &[("type", "input")]),
        2.0 * 284.0,
        "metrics still see the full spans"
    );
    server.shutdown().await.expect("shutdown");
}

/// A span the client is told was rejected (`partial_success`: an all-zero
/// trace id, an all-zero span id, a parent id of the wrong length) is not
/// counted in the KPIs and not forwarded; the other spans of the same request
/// are both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_spans_are_neither_counted_nor_forwarded() {
    let up = Upstream::start().await;
    let server = start(config(&destination("up", "http", &up.http_endpoint(), ""))).await;
    let mut req = decoded("langchain-openinference.pb");
    let total = span_count(&req);
    let parents: HashSet<Vec<u8>> = spans(&req).map(|s| s.parent_span_id.clone()).collect();
    let mut broken = 0;
    for s in spans_mut(&mut req) {
        if s.parent_span_id.is_empty() || parents.contains(&s.span_id) {
            continue; // keep the root and every parent: only leaves break
        }
        match broken {
            0 => s.trace_id = vec![0; 16],
            1 => s.span_id = vec![0; 8],
            2 => s.parent_span_id = vec![7; 5],
            _ => break,
        }
        broken += 1;
    }
    assert_eq!(broken, 3, "the capture has three leaf spans");
    let valid: HashSet<SpanKey> = spans(&req)
        .filter(|s| {
            s.trace_id != vec![0; 16] && s.span_id != vec![0; 8] && s.parent_span_id.len() != 5
        })
        .map(key_of)
        .collect();
    assert_eq!(valid.len(), total - 3);

    let resp = post(&server, req.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    let partial =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &body[..],
        )
        .expect("response")
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 3);

    assert!(wait_for(PATIENCE, || up.spans_total() >= total - 3).await);
    // Longer than the assembly timeout (500 ms): a rejected span held as a
    // trace of its own would have been released and counted by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(up.span_ids(), valid, "only the accepted spans go upstream");
    assert_eq!(up.spans_total(), total - 3);
    let m = scrape(&server).await;
    assert_eq!(fwd(&m, "up", "sent"), (total - 3) as f64);
    assert_eq!(
        value(&m, "chainpulse_runs_total", &[]),
        (total - 3) as f64,
        "rejected spans are not runs"
    );
    let roots = spans(&req).filter(|s| s.parent_span_id.is_empty()).count();
    assert_eq!(
        value(&m, "chainpulse_requests_total", &[]),
        roots as f64,
        "a rejected span is no request of its own either"
    );
    server.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 7. Tail sampling.

const SAMPLING: &str = "
[forward.sampling]
enabled = true
probability = 0.0
keep_errors = true
slower_than_ms = 40
decision_wait_ms = 5000
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sampling_forwards_failed_and_slow_traces_whole_and_nothing_else() {
    let up = Upstream::start().await;
    let toml = format!(
        "{}{SAMPLING}",
        destination("sampled", "grpc", &up.grpc_endpoint(), "")
    );
    let mut cfg = config(&toml);
    cfg.assembly.trace_timeout_ms = 1000;
    let server = start(cfg).await;
    let names = [
        "langchain-openinference.pb",
        "langchain-openinference-stream.pb",
        "langchain-langsmith.pb",
    ];
    let mut expected = HashSet::new();
    let (mut errors, mut slow, mut dropped) = (0, 0, 0);
    let (mut kept_spans, mut dropped_spans) = (0, 0);
    let reqs: Vec<ExportTraceServiceRequest> = names.iter().map(|n| decoded(n)).collect();
    for req in &reqs {
        let facts = trace_facts(req);
        for (trace, (error, ms)) in &facts {
            match (error, *ms > 40.0) {
                (true, _) => errors += 1,
                (false, true) => slow += 1,
                (false, false) => dropped += 1,
            }
            let keep = *error || *ms > 40.0;
            for k in upstream::span_ids_of(req)
                .into_iter()
                .filter(|k| k.0 == *trace)
            {
                if keep {
                    expected.insert(k);
                    kept_spans += 1;
                } else {
                    dropped_spans += 1;
                }
            }
        }
    }
    // The captures: one failing request in three, stream requests ~50 ms.
    assert_eq!((errors, slow, dropped), (2, 2, 4));
    assert_eq!((kept_spans, dropped_spans), (22, 28));

    let mut client = grpc_client(&server).await;
    // The first capture arrives children first: they are queued before
    // their trace is decided and must wait for the decision.
    let mut children = reqs[0].clone();
    let mut roots = reqs[0].clone();
    for rs in &mut children.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| !s.parent_span_id.is_empty());
        }
    }
    for rs in &mut roots.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| s.parent_span_id.is_empty());
        }
    }
    client.export(children).await.expect("export");
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.export(roots).await.expect("export");
    for req in &reqs[1..] {
        client.export(req.clone()).await.expect("export");
    }
    let m = wait_metrics(&server, |m| {
        fwd(m, "sampled", "sent") + fwd(m, "sampled", "sampled_out") == 50.0
            && queue_spans(m, "sampled") == 0.0
    })
    .await;
    assert_eq!(up.span_ids(), expected, "exactly the kept traces, whole");
    assert_eq!(up.spans_total(), kept_spans);
    assert_eq!(fwd(&m, "sampled", "sent"), kept_spans as f64);
    assert_eq!(fwd(&m, "sampled", "sampled_out"), dropped_spans as f64);
    assert_eq!(fwd(&m, "sampled", "failed"), 0.0);
    let decisions = |d: &str, r: &str| {
        value(
            &m,
            "chainpulse_sampling_decisions_total",
            &[("decision", d), ("reason", r)],
        )
    };
    assert_eq!(decisions("keep", "error"), errors as f64);
    assert_eq!(decisions("keep", "slow"), slow as f64);
    assert_eq!(decisions("drop", "probability"), dropped as f64);
    assert_eq!(decisions("keep", "probability"), 0.0);
    assert_eq!(
        decisions("keep", "undecided"),
        0.0,
        "children waited for their root's decision"
    );
    assert_eq!(
        value(&m, "chainpulse_sampling_decisions_total", &[]),
        8.0,
        "one decision per trace"
    );
    // chainpulse's own metrics count every trace.
    assert_eq!(value(&m, "chainpulse_requests_total", &[]), 8.0);
    assert_eq!(
        value(&m, "chainpulse_requests_total", &[("status", "error")]),
        2.0
    );
    assert_eq!(value(&m, "chainpulse_spans_received_total", &[]), 50.0);
    server.shutdown().await.expect("shutdown");
}

/// A permanently refused batch is retried request by request; the spans
/// sampling removed from it must still be counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_out_spans_are_counted_once_when_a_refused_batch_is_split() {
    let up = Upstream::start().await;
    up.set_mode(Mode::Fail {
        grpc: tonic::Code::InvalidArgument,
        http: 400,
        retry_after: None,
    });
    // A long flush interval so both requests go in one batch.
    let toml = format!(
        "{}{SAMPLING}",
        destination(
            "sampled-perm",
            "grpc",
            &up.grpc_endpoint(),
            "batch = { flush_interval_ms = 500 }"
        )
        .replace("batch = { flush_interval_ms = 20 }\n", "")
    );
    let server = start(config(&toml)).await;
    let mut client = grpc_client(&server).await;
    // Each: 3 traces of which the failing one (4 spans) is kept.
    for name in ["langchain-openinference.pb", "langchain-langsmith.pb"] {
        client.export(decoded(name)).await.expect("export");
    }
    let m = wait_metrics(&server, |m| {
        fwd(m, "sampled-perm", "failed") == 8.0 && queue_spans(m, "sampled-perm") == 0.0
    })
    .await;
    assert_eq!(fwd(&m, "sampled-perm", "failed"), 8.0);
    assert_eq!(
        failed_reason(&m, "sampled-perm", "grpc_invalid_argument"),
        8.0
    );
    assert_eq!(
        fwd(&m, "sampled-perm", "sampled_out"),
        28.0,
        "2 × 14 spans of fast, successful traces"
    );
    server.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 8. Secrets stay out of the logs.

const BIN: &str = env!("CARGO_BIN_EXE_chainpulse");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Collects a child's output line by line, readable while it runs.
fn collect(
    stream: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    let t = std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            b.lock()
                .expect("log buffer")
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
    (buf, t)
}

fn logged(buf: &Arc<Mutex<String>>, message: &str, destination: &str) -> bool {
    buf.lock().expect("log buffer").lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["message"].as_str().is_some_and(|m| m.contains(message))
                && v["destination"] == destination
        })
    })
}

async fn eventually<F: Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs() {
    const KEY: &str = "fwdtest-apikey-7f3a9c2e5b1d4068";
    const PASSWORD: &str = "fwdtest-password-c0ffee4242beef";
    const USER: &str = "svc-user";
    let dir = tempfile::tempdir().expect("tempdir");
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("write the password file");
    let unauth = Upstream::start().await;
    unauth.set_mode(Mode::Fail {
        grpc: tonic::Code::Unauthenticated,
        http: 401,
        retry_after: None,
    });
    let ok = Upstream::start().await;
    let auth = format!(
        "headers = {{ \"x-api-key\" = \"${{env:TEST_FWD_KEY}}\" }}\nbasic_auth = {{ username = \"{USER}\", password = \"${{file:{}}}\" }}",
        pw_file.display()
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dests = [
        ("dead-grpc-secret", "grpc", dead.clone()),
        ("unauth-http-secret", "http", unauth.http_endpoint()),
        ("unauth-grpc-secret", "grpc", unauth.grpc_endpoint()),
        ("ok-http-secret", "http", ok.http_endpoint()),
    ];
    let (g, h, m) = (free_port(), free_port(), free_port());
    let mut text = format!(
        "[server]\ngrpc_addr = \"127.0.0.1:{g}\"\nhttp_addr = \"127.0.0.1:{h}\"\nmetrics_addr = \"127.0.0.1:{m}\"\nshutdown_timeout_ms = 1000\n\n[log]\nformat = \"json\"\n"
    );
    for (name, protocol, endpoint) in &dests {
        text.push_str(&destination(name, protocol, endpoint, &auth));
    }
    let file = dir.path().join("chainpulse.toml");
    std::fs::write(&file, &text).expect("write the config");

    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env("TEST_FWD_KEY", KEY)
        .env("RUST_LOG", "trace")
        .env_remove("CHAINPULSE_FORWARD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chainpulse");
    let (out, out_t) = collect(child.stdout.take().expect("stdout"));
    let (err, err_t) = collect(child.stderr.take().expect("stderr"));
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{h}/v1/traces");
    eventually("chainpulse to accept the fixture", || async {
        http.post(&url)
            .header("content-type", "application/x-protobuf")
            .body(fixture("langchain-openinference.pb"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    eventually("the forwarding failures to be logged", || async {
        logged(&out, "forward: export failed; retrying", "dead-grpc-secret")
            && logged(&out, "refused the spans for good", "unauth-http-secret")
            && logged(&out, "refused the spans for good", "unauth-grpc-secret")
            && ok.requests() > 0
    })
    .await;
    let basic = base64(format!("{USER}:{PASSWORD}").as_bytes());
    // The secrets were resolved and sent ...
    assert_eq!(ok.last_header("x-api-key").as_deref(), Some(KEY));
    assert_eq!(
        ok.last_header("authorization"),
        Some(format!("Basic {basic}"))
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().expect("wait") {
            break code;
        }
        assert!(started.elapsed() < PATIENCE, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    out_t.join().expect("stdout reader");
    err_t.join().expect("stderr reader");
    assert!(code.success(), "exit status {code:?}");
    let all = format!(
        "{}\n{}",
        out.lock().expect("stdout"),
        err.lock().expect("stderr")
    );
    assert!(all.len() > 10_000, "trace-level logs were written");
    // ... and appear nowhere in the logs.
    for secret in [KEY, PASSWORD, basic.as_str()] {
        if let Some(line) = all.lines().find(|l| l.contains(secret)) {
            panic!("secret {secret:?} logged: {line}");
        }
    }
    for (name, _, _) in &dests {
        assert!(
            all.contains(name),
            "destination {name} never named in the logs"
        );
    }
    assert!(
        all.contains("x-api-key"),
        "header names are logged (their values are not)"
    );

    // check-config prints the template, never the value.
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env("TEST_FWD_KEY", KEY)
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("${env:TEST_FWD_KEY}"), "{printed}");
    for secret in [KEY, PASSWORD, basic.as_str()] {
        assert!(!printed.contains(secret), "check-config printed {secret}");
    }
}
