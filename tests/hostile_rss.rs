//! Peak memory of the release binary under each hostile-input attack of
//! issue 13 (run by `scripts/hostile-rss.sh`, which builds
//! `target/release/chainpulse` first; ignored by a plain `cargo test`).
//!
//! Each attack gets a fresh process with the default configuration (only
//! the three listen addresses moved to free loopback ports), so the
//! kernel's high-water mark (`VmHWM` in `/proc/PID/status`) is that
//! attack's peak. While the attack holds what it holds (half-sent streams,
//! trickling uploads) and again after it, `/healthz` must answer and a
//! normal exporter must get 200: the table says whether they did, and the
//! test fails when they did not.
//!
//! The attacks are those of `tests/hostile.rs` and `tests/bad_input.rs`,
//! at the sizes the issue reports them at.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("local addr")
}

struct Collector {
    child: std::sync::Mutex<Child>,
    grpc: SocketAddr,
    http: SocketAddr,
    metrics: SocketAddr,
}

impl Collector {
    async fn start() -> Collector {
        let bin = std::env::var("CHAINPULSE_BIN").unwrap_or_else(|_| {
            format!("{}/target/release/chainpulse", env!("CARGO_MANIFEST_DIR"))
        });
        let (grpc, http, metrics) = (free_port(), free_port(), free_port());
        let child = Command::new(&bin)
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .args(["--metrics-addr", &metrics.to_string()])
            .env_remove("CHAINPULSE_CONFIG")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let c = Collector {
            child: std::sync::Mutex::new(child),
            grpc,
            http,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.healthz().await {
            assert!(Instant::now() < deadline, "{bin} did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c
    }

    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.lock().map_or(0, |c| c.id());
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn rss_mib(&self) -> u64 {
        self.status_kib("VmRSS:") >> 10
    }

    fn peak_mib(&self) -> u64 {
        self.status_kib("VmHWM:") >> 10
    }

    fn alive(&self) -> bool {
        self.child
            .lock()
            .is_ok_and(|mut c| matches!(c.try_wait(), Ok(None)))
    }

    async fn healthz(&self) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("client");
        matches!(client.get(format!("http://{}/healthz", self.metrics)).send().await,
            Ok(r) if r.status() == 200)
    }

    /// A normal exporter: one fixture over OTLP/HTTP on a new connection.
    async fn normal_export(&self) -> u16 {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        match client
            .post(format!("http://{}/v1/traces", self.http))
            .header("content-type", "application/x-protobuf")
            .body(fixture("langchain-openinference.pb"))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// `chainpulse_otlp_requests_rejected_total{reason}`, summed over protocols.
    async fn rejected(&self, reason: &str) -> f64 {
        let Ok(r) = reqwest::get(format!("http://{}/metrics", self.metrics)).await else {
            return f64::NAN;
        };
        let text = r.text().await.unwrap_or_default();
        let needle = format!("reason=\"{reason}\"");
        text.lines()
            .filter(|l| {
                l.starts_with("chainpulse_otlp_requests_rejected_total") && l.contains(&needle)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn scrape_len(&self) -> usize {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        match client
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
        {
            Ok(r) => r.bytes().await.map_or(0, |b| b.len()),
            Err(_) => 0,
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(c) = self.child.get_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One row of the table.
struct Row {
    attack: &'static str,
    baseline_mib: u64,
    peak_mib: u64,
    healthz: bool,
    export: u16,
    answer: String,
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> String {
    let mut req = client.post(url).header("content-type", content_type);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    match req.body(body).send().await {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn request(service: String, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A finished LLM-call root span with its own trace.
fn llm_root(trace: u64, name: String, model: String) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&trace.to_be_bytes());
    trace_id[15] = 1;
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        name,
        kind: 3,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: vec![
            string_kv("gen_ai.operation.name", "chat".into()),
            string_kv("gen_ai.request.model", model),
        ],
        ..Default::default()
    }
}

fn sized(tag: &str, i: u64, len: usize) -> String {
    let mut s = format!("{tag}-{i}-");
    while s.len() < len {
        s.push_str("abcdefghij");
    }
    s.truncate(len);
    s
}

/// Issue 13: 4 MiB chain / step / service / model names in one request,
/// then `/metrics` scraped.
async fn huge_label_values(c: Arc<Collector>) -> String {
    let len = 4 << 20;
    let spans = (0..3)
        .map(|i| llm_root(i, sized("chain", i, len), sized("model", i, len / 4)))
        .collect();
    let body = request(sized("svc", 0, len / 2), spans).encode_to_vec();
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", c.http);
    let status = post(&client, &url, "application/x-protobuf", None, body).await;
    let mut scraped = 0;
    for _ in 0..5 {
        scraped = c.scrape_len().await;
    }
    format!("{status}; /metrics {} KiB", scraped >> 10)
}

/// A million distinct chain and model names (1,000 requests × 1,000 roots).
async fn million_label_values(c: Arc<Collector>) -> String {
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", c.http);
    let mut last = String::new();
    for r in 0..1_000u64 {
        let spans = (0..1_000u64)
            .map(|i| {
                let n = r * 1_000 + i;
                llm_root(n, format!("chain-{n}"), format!("model-{n}"))
            })
            .collect();
        let body = request(format!("svc-{r}"), spans).encode_to_vec();
        last = post(&client, &url, "application/x-protobuf", None, body).await;
    }
    let scraped = c.scrape_len().await;
    format!("last {last}; /metrics {} KiB", scraped >> 10)
}

/// One request of about `pad` bytes: a child span waiting for a root that
/// never comes, next to a finished trace carrying the padding.
fn waiting_span_request(i: u64, pad: usize) -> Vec<u8> {
    let mut child = llm_root(i, "waiting_child".into(), "m".into());
    child.parent_span_id = vec![9; 8];
    let mut other = llm_root(i + (1 << 40), "finished_root".into(), "m".into());
    other.attributes.push(string_kv("padding", "p".repeat(pad)));
    request("svc".into(), vec![child, other]).encode_to_vec()
}

/// 4,000 waiting spans interleaved with 256 KiB requests on one connection.
async fn parked_spans(c: Arc<Collector>) -> String {
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", c.http);
    let mut ok = 0;
    for i in 0..4_000u64 {
        let body = waiting_span_request(i, 256 * 1024);
        if post(&client, &url, "application/x-protobuf", None, body).await == "200" {
            ok += 1;
        }
    }
    format!("{ok} of 4000 got 200")
}

/// Starts an HTTP/1.1 upload that announces `len` bytes and trickles one
/// byte every 200 ms until aborted.
fn trickle(addr: SocketAddr, len: usize) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            return;
        };
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
             content-length: {len}\r\n\r\n"
        );
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        loop {
            if s.write_all(b"\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Opens gRPC streams on one HTTP/2 connection, each announcing a message
/// of `announced` bytes and sending `sent` bytes of it, then holds them.
/// Returns how many streams the server let open within a second each.
async fn half_sent_grpc(
    addr: SocketAddr,
    streams: usize,
    announced: u32,
    sent: usize,
) -> (
    usize,
    Vec<h2::SendStream<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect gRPC");
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .expect("HTTP/2 handshake");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut held = Vec::new();
    for _ in 0..streams {
        let ready = tokio::time::timeout(Duration::from_secs(1), client.clone().ready()).await;
        let Ok(Ok(mut c)) = ready else { break };
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{EXPORT_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let Ok((resp, mut stream)) = c.send_request(req, false) else {
            break;
        };
        tokio::spawn(async move {
            let _ = resp.await;
        });
        let mut data = vec![0u8; 5 + sent];
        data[1..5].copy_from_slice(&announced.to_be_bytes());
        // The message starts as a valid-looking field: 0x0a, a long length.
        if sent > 0 {
            data[5] = 0x0a;
        }
        if stream.send_data(bytes::Bytes::from(data), false).is_err() {
            break;
        }
        held.push(stream);
    }
    (held.len(), held, driver)
}

/// A gzip member of `len` zeros; `copies` of it concatenated are one valid
/// multi-member body inflating to `copies × len` bytes.
fn gzip_bomb(len: usize, copies: usize) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..len >> 20 {
        e.write_all(&zeros).expect("gzip");
    }
    let member = e.finish().expect("gzip");
    member.repeat(copies)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    varint(u64::from(tag << 3 | 2), &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// An attribute value nested `depth` arrays deep, hand-encoded (prost
/// refuses to encode what it would refuse to decode).
fn deep_protobuf(depth: usize) -> Vec<u8> {
    let mut any = Vec::new(); // AnyValue {}
    for _ in 0..depth {
        let array = field(1, &any); // ArrayValue { values: [any] }
        any = field(5, &array); // AnyValue { array_value }
    }
    let kv = [field(1, b"deep"), field(2, &any)].concat();
    let span = [
        field(1, &[7u8; 16]),
        field(2, &[7u8; 8]),
        field(5, b"deep"),
        field(9, &kv),
    ]
    .concat();
    let scope = field(2, &span);
    let resource_spans = field(2, &scope);
    field(1, &resource_spans)
}

fn deep_json(depth: usize) -> Vec<u8> {
    let mut s = String::from(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"07070707070707070707070707070707","spanId":"0707070707070707","name":"deep","attributes":[{"key":"deep","value":"#,
    );
    for _ in 0..depth {
        s.push_str(r#"{"arrayValue":{"values":["#);
    }
    s.push_str("{}");
    for _ in 0..depth {
        s.push_str("]}}");
    }
    s.push_str("}]}]}]}]}");
    s.into_bytes()
}

async fn measure<F, Fut>(attack: &'static str, during: F) -> Row
where
    F: FnOnce(Arc<Collector>) -> Fut,
    Fut: std::future::Future<Output = (String, bool, u16)>,
{
    let c = Arc::new(Collector::start().await);
    // Let start-up allocation settle: the baseline is the idle process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_mib = c.rss_mib();
    let (answer, healthz_during, export_during) = during(c.clone()).await;
    let healthz = healthz_during && c.healthz().await;
    let export_after = c.normal_export().await;
    let export = if export_during != 200 {
        export_during
    } else {
        export_after
    };
    let row = Row {
        attack,
        baseline_mib,
        peak_mib: c.peak_mib(),
        healthz: healthz && c.alive(),
        export,
        answer,
    };
    eprintln!(
        "{:<48} {:>6} MiB {:>6} MiB  {:<5} {:<4} {}",
        row.attack, row.baseline_mib, row.peak_mib, row.healthz, row.export, row.answer
    );
    row
}

async fn after(c: &Collector, answer: String) -> (String, bool, u16) {
    (answer, c.healthz().await, c.normal_export().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs target/release/chainpulse; run scripts/hostile-rss.sh"]
async fn peak_rss_under_each_attack() {
    eprintln!(
        "{:<48} {:>10} {:>10}  {:<5} {:<4} the attack's answer",
        "attack", "baseline", "peak RSS", "healthz", "export"
    );
    let mut rows = Vec::new();

    rows.push(
        measure(
            "huge label values (4 MiB names) + 5 scrapes",
            |c| async move {
                let a = huge_label_values(c.clone()).await;
                after(&c, a).await
            },
        )
        .await,
    );

    rows.push(
        measure(
            "40 half-sent gRPC streams (20 MiB announced)",
            |c| async move {
                let (opened, held, driver) = half_sent_grpc(c.grpc, 40, 20 << 20, 1 << 20).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let during = (c.healthz().await, c.normal_export().await);
                drop(held);
                driver.abort();
                (
                    format!("{opened} streams opened, held 2 s"),
                    during.0,
                    during.1,
                )
            },
        )
        .await,
    );

    rows.push(
        measure("4 GiB gRPC length prefix", |c| async move {
            let (opened, held, driver) = half_sent_grpc(c.grpc, 1, u32::MAX, 64 << 10).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let during = (c.healthz().await, c.normal_export().await);
            drop(held);
            driver.abort();
            (format!("{opened} stream, held 1 s"), during.0, during.1)
        })
        .await,
    );

    rows.push(
        measure("4,000 parked spans in 256 KiB requests", |c| async move {
            let a = parked_spans(c.clone()).await;
            after(&c, a).await
        })
        .await,
    );

    rows.push(
        measure(
            "256 trickling HTTP/1.1 uploads (1 MiB each)",
            |c| async move {
                let t: Vec<_> = (0..256).map(|_| trickle(c.http, 1 << 20)).collect();
                tokio::time::sleep(Duration::from_secs(3)).await;
                let during = (c.healthz().await, c.normal_export().await);
                for h in t {
                    h.abort();
                }
                let refused = c.rejected("memory_limit").await;
                (
                    format!("256 uploads held 3 s; {refused} requests refused for memory_limit"),
                    during.0,
                    during.1,
                )
            },
        )
        .await,
    );

    rows.push(
        measure("256 trickling uploads (64 KiB each)", |c| async move {
            let t: Vec<_> = (0..256).map(|_| trickle(c.http, 64 << 10)).collect();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let during = (c.healthz().await, c.normal_export().await);
            for h in t {
                h.abort();
            }
            let refused = c.rejected("memory_limit").await;
            (
                format!("256 uploads held 3 s; {refused} requests refused for memory_limit"),
                during.0,
                during.1,
            )
        })
        .await,
    );

    rows.push(
        measure("gzip bomb (1 GiB of zeros in 1 MiB)", |c| async move {
            let body = gzip_bomb(16 << 20, 64);
            let size = body.len();
            let url = format!("http://{}/v1/traces", c.http);
            let s = post(
                &reqwest::Client::new(),
                &url,
                "application/x-protobuf",
                Some("gzip"),
                body,
            )
            .await;
            after(&c, format!("{s} ({} KiB sent)", size >> 10)).await
        })
        .await,
    );

    rows.push(
        measure("deep nesting: protobuf, 100,000 levels", |c| async move {
            let url = format!("http://{}/v1/traces", c.http);
            let s = post(
                &reqwest::Client::new(),
                &url,
                "application/x-protobuf",
                None,
                deep_protobuf(100_000),
            )
            .await;
            after(&c, s).await
        })
        .await,
    );

    rows.push(
        measure("deep nesting: JSON, 100,000 levels", |c| async move {
            let url = format!("http://{}/v1/traces", c.http);
            let s = post(
                &reqwest::Client::new(),
                &url,
                "application/json",
                None,
                deep_json(100_000),
            )
            .await;
            after(&c, s).await
        })
        .await,
    );

    rows.push(
        measure("a million distinct label values", |c| async move {
            let a = million_label_values(c.clone()).await;
            after(&c, a).await
        })
        .await,
    );

    println!("\n| attack | idle RSS | peak RSS (VmHWM) | /healthz answered | normal export | the attack got |");
    println!("|---|---:|---:|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} MiB | {} MiB | {} | {} | {} |",
            r.attack,
            r.baseline_mib,
            r.peak_mib,
            if r.healthz { "yes" } else { "NO" },
            r.export,
            r.answer
        );
    }
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| !r.healthz || r.export != 200)
        .map(|r| r.attack)
        .collect();
    assert!(failed.is_empty(), "not healthy under: {failed:?}");
}
