//! TLS and bearer-token auth on the listeners (issue 13, deliver 8), with
//! the official OpenTelemetry Rust SDK exporters as clients, and the
//! listener leftovers of deliver 2: an HTTP/2 connection that never
//! completes its headers is dropped, and a connection over the cap gets an
//! answer.

mod common;

use chainpulse::config::Config;
use chainpulse::export::text::{self, Sample};
use chainpulse::server::Server;
use common::{fixture, test_config};
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "ingest-t0ken-4c1d";
const METRICS_TOKEN: &str = "scrape-t0ken-99e2";

/// A throwaway CA and a server certificate for localhost / 127.0.0.1.
struct Pki {
    ca: String,
    cert: String,
    key: String,
    /// A client certificate the CA signed (mutual TLS).
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("leaf key");
        let cert = CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &ca, &ca_key)
            .expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = leaf(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]);
    let (client_cert, client_key) = leaf(vec!["exporter".to_owned()]);
    Pki {
        ca: ca.pem(),
        cert,
        key,
        client_cert,
        client_key,
    }
}

/// Writes `content` to `path` by rename, as a Secret update does.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

struct Setup {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    token: PathBuf,
    pki: Pki,
    config: Config,
}

/// TLS on every listener, the ingest token from a file, another token for
/// the metrics port.
fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let token = dir.path().join("token");
    std::fs::write(&cert, &pki.cert).expect("cert");
    std::fs::write(&key, &pki.key).expect("key");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let mut config = test_config();
    config.tls.cert_file = Some(cert.display().to_string());
    config.tls.key_file = Some(key.display().to_string());
    config.tls.reload_interval_ms = 100;
    config.auth.bearer_token = Some(format!("${{file:{}}}", token.display()));
    config.auth.metrics_bearer_token = Some(METRICS_TOKEN.to_owned());
    config.auth.reload_interval_ms = 100;
    config.validate().expect("valid config");
    config.check_files().expect("files check out");
    Setup {
        _dir: dir,
        cert,
        key,
        token,
        pki,
        config,
    }
}

fn https_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"))
        .use_rustls_tls()
        .build()
        .expect("client")
}

async fn scrape(server: &Server, ca: &str) -> Vec<Sample> {
    let r = https_client(ca)
        .get(format!(
            "https://localhost:{}/metrics",
            server.addrs().metrics.port()
        ))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    text::parse(&r.text().await.expect("body"))
}

fn value(m: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    text::sum(m, name, labels)
}

async fn tls_channel(
    port: u16,
    ca: &str,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )
        .expect("tls config")
        .connect()
        .await
}

fn provider_for(exporter: opentelemetry_otlp::SpanExporter, service: &str) -> SdkTracerProvider {
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build()
}

/// One request: a workflow root with an LLM child.
fn emit(provider: &SdkTracerProvider) {
    use opentelemetry::trace::TraceContextExt;
    let tracer = provider.tracer("tls-test");
    let root = tracer
        .span_builder("answer")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_workflow"),
            KeyValue::new("gen_ai.workflow.name", "answer"),
        ])
        .start(&tracer);
    let cx = opentelemetry::Context::current_with_span(root);
    let mut llm = tracer
        .span_builder("chat gpt-4o-mini")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
            KeyValue::new("gen_ai.usage.input_tokens", 10_i64),
            KeyValue::new("gen_ai.usage.output_tokens", 5_i64),
        ])
        .start_with_context(&tracer, &cx);
    llm.end();
    cx.span().end();
}

/// The SDK's HTTP exporter with a client that trusts the test CA (its
/// own reqwest is another major version than the one here).
#[derive(Debug)]
struct SdkHttp(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for SdkHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let r = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut out = http::Response::builder().status(r.status());
        for (k, v) in r.headers() {
            out = out.header(k, v);
        }
        Ok(out.body(r.bytes().await?)?)
    }
}

async fn sdk_exporter(
    protocol: &str,
    server: &Server,
    ca: &str,
    token: Option<&str>,
) -> opentelemetry_otlp::SpanExporter {
    if protocol == "grpc" {
        let channel = tls_channel(server.addrs().grpc.port(), ca)
            .await
            .expect("TLS connection");
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(t) = token {
            metadata.insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel)
            .with_metadata(metadata)
            .build()
            .expect("exporter")
    } else {
        let headers: HashMap<String, String> = token
            .map(|t| ("authorization".to_owned(), format!("Bearer {t}")))
            .into_iter()
            .collect();
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(SdkHttp(https_client(ca)))
            .with_headers(headers)
            .with_endpoint(format!(
                "https://localhost:{}/v1/traces",
                server.addrs().http.port()
            ))
            .build()
            .expect("exporter")
    }
}

async fn sdk_over_tls(protocol: &str) {
    let s = setup();
    let server = Server::start(&s.config).await.expect("server starts");
    let listener = if protocol == "grpc" { "grpc" } else { "http" };

    // Without the token: refused, counted, nothing ingested.
    let refused = provider_for(
        sdk_exporter(protocol, &server, &s.pki.ca, None).await,
        "anon",
    );
    emit(&refused);
    let flushed = refused.force_flush();
    let m = scrape(&server, &s.pki.ca).await;
    assert_eq!(
        value(
            &m,
            "chainpulse_auth_refused_total",
            &[("listener", listener), ("reason", "missing")]
        ),
        1.0,
        "{protocol}: flush result {flushed:?}"
    );
    assert_eq!(value(&m, "chainpulse_requests_total", &[]), 0.0);
    let _ = refused.shutdown();

    // With it: the spans reach /metrics.
    let provider = provider_for(
        sdk_exporter(protocol, &server, &s.pki.ca, Some(TOKEN)).await,
        "tls-app",
    );
    emit(&provider);
    provider.force_flush().expect("flush with the token");
    let mut m = Vec::new();
    for _ in 0..100 {
        m = scrape(&server, &s.pki.ca).await;
        if value(&m, "chainpulse_requests_total", &[("service", "tls-app")]) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        value(
            &m,
            "chainpulse_requests_total",
            &[("service", "tls-app"), ("chain", "answer")]
        ),
        1.0,
        "{protocol}"
    );
    let _ = provider.shutdown();
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_grpc_over_tls_needs_the_token() {
    sdk_over_tls("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_http_over_tls_needs_the_token() {
    sdk_over_tls("http/protobuf").await;
}

/// What a refused client receives, on each listener and protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_is_wrong() {
    let s = setup();
    let server = Server::start(&s.config).await.expect("server starts");
    let client = https_client(&s.pki.ca);
    let body = fixture("langchain-openinference.pb");

    // OTLP/HTTP, protobuf: 401, a challenge, a google.rpc.Status.
    let url = format!("https://localhost:{}/v1/traces", server.addrs().http.port());
    let r = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"chainpulse\""
    );
    let status = chainpulse::otlp::status::RpcStatus::decode(r.bytes().await.expect("body"))
        .expect("google.rpc.Status");
    assert_eq!(status.code, 16);
    assert!(
        status.message.contains("Authorization: Bearer"),
        "{}",
        status.message
    );

    // JSON, wrong token.
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth("nope")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("invalid_token"));
    let j: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
    assert_eq!(j["message"], "the bearer token is not valid");

    // The ingest token is not the metrics token.
    let metrics = format!("https://localhost:{}", server.addrs().metrics.port());
    let r = client
        .get(format!("{metrics}/api/v1/kpis"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let j: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
    assert_eq!(j["error"], "the bearer token is not valid");
    // Probes and the live page's static shell stay open; its data does not.
    for open in [
        "/healthz",
        "/readyz",
        "/",
        "/assets/page.js",
        "/assets/page.css",
    ] {
        let r = client
            .get(format!("{metrics}{open}"))
            .send()
            .await
            .expect("open path");
        assert_eq!(r.status(), 200, "{open}");
    }
    for closed in [
        "/metrics",
        "/api/v1/history",
        "/api/v1/health",
        "/index.html",
    ] {
        let r = client
            .get(format!("{metrics}{closed}"))
            .send()
            .await
            .expect("closed path");
        assert_eq!(r.status(), 401, "{closed}");
    }

    // gRPC: UNAUTHENTICATED with the message, on the KPI service too.
    let channel = tls_channel(server.addrs().grpc.port(), &s.pki.ca)
        .await
        .expect("TLS connection");
    let req = ExportTraceServiceRequest::decode(&body[..]).expect("fixture");
    let e = TraceServiceClient::new(channel.clone())
        .export(req.clone())
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(
        e.message().contains("Authorization: Bearer"),
        "{}",
        e.message()
    );
    let mut r = tonic::Request::new(req);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    TraceServiceClient::new(channel)
        .export(r)
        .await
        .expect("accepted with the token");

    // Plaintext to a TLS listener: no HTTP answer, the handshake fails.
    assert!(reqwest::get(format!(
        "http://127.0.0.1:{}/healthz",
        server.addrs().metrics.port()
    ))
    .await
    .is_err());
    let m = scrape(&server, &s.pki.ca).await;
    assert!(
        value(
            &m,
            "chainpulse_tls_handshake_failures_total",
            &[("listener", "metrics")]
        ) >= 1.0
    );
    server.shutdown().await.expect("shutdown");
}

/// Mutual TLS: a client without a certificate the CA signed does not get
/// past the handshake; one with it exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut s = setup();
    let ca_file = s.cert.with_file_name("ca.crt");
    std::fs::write(&ca_file, &s.pki.ca).expect("ca");
    s.config.tls.client_ca_file = Some(ca_file.display().to_string());
    s.config.check_files().expect("files check out");
    let server = Server::start(&s.config).await.expect("server starts");
    let port = server.addrs().grpc.port();
    let connect = |identity: Option<Identity>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&s.pki.ca))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(id);
        }
        async move {
            let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
                .expect("endpoint")
                .tls_config(tls)
                .expect("tls config")
                .connect()
                .await?;
            let mut r = tonic::Request::new(ExportTraceServiceRequest::default());
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {TOKEN}").parse().expect("header"),
            );
            TraceServiceClient::new(channel)
                .export(r)
                .await
                .map(|_| ())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
        }
    };
    assert!(connect(None).await.is_err(), "no client certificate");
    let other = pki();
    let stranger = Identity::from_pem(&other.client_cert, &other.client_key);
    assert!(
        connect(Some(stranger)).await.is_err(),
        "certificate of another CA"
    );
    let ours = Identity::from_pem(&s.pki.client_cert, &s.pki.client_key);
    connect(Some(ours))
        .await
        .expect("accepted with our client certificate");
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", s.pki.client_cert, s.pki.client_key).as_bytes(),
    )
    .expect("identity");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(s.pki.ca.as_bytes()).expect("ca"))
        .identity(identity)
        .use_rustls_tls()
        .build()
        .expect("client");
    let r = client
        .get(format!(
            "https://localhost:{}/metrics",
            server.addrs().metrics.port()
        ))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("scrape");
    let m = text::parse(&r.text().await.expect("body"));
    assert!(
        value(
            &m,
            "chainpulse_tls_handshake_failures_total",
            &[("listener", "grpc")]
        ) >= 2.0
    );
    server.shutdown().await.expect("shutdown");
}

/// Certificates and the token file are swapped while running: new clients
/// see the new ones; a bad pair keeps the old certificate in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_token_rotate_without_restart() {
    let s = setup();
    let server = Server::start(&s.config).await.expect("server starts");
    let healthz = |ca: String| {
        let url = format!(
            "https://localhost:{}/healthz",
            server.addrs().metrics.port()
        );
        async move {
            https_client(&ca)
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(healthz(s.pki.ca.clone()).await.expect("old CA"), 200);

    let next = pki();
    replace(&s.key, &next.key);
    replace(&s.cert, &next.cert);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if healthz(next.ca.clone()).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "a new client does not see the new certificate");
    assert!(
        healthz(s.pki.ca.clone()).await.is_err(),
        "old certificate still served"
    );

    // A key that does not go with the certificate: refused, old pair kept.
    let other = pki();
    replace(&s.key, &other.key);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(healthz(next.ca.clone()).await.expect("still served"), 200);
    let m = scrape(&server, &next.ca).await;
    assert!(value(&m, "chainpulse_tls_reload_total", &[("result", "ok")]) >= 1.0);
    assert!(value(&m, "chainpulse_tls_reload_total", &[("result", "error")]) >= 1.0);

    // The token file rotates too.
    replace(&s.token, "rotated-t0ken\n");
    let url = format!("https://localhost:{}/v1/traces", server.addrs().http.port());
    let post = |token: &'static str| {
        let (url, ca) = (url.clone(), next.ca.clone());
        async move {
            https_client(&ca)
                .post(url)
                .header("content-type", "application/x-protobuf")
                .bearer_auth(token)
                .body(fixture("langchain-openinference.pb"))
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = post("rotated-t0ken").await;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200);
    assert_eq!(post(TOKEN).await, 401);
    server.shutdown().await.expect("shutdown");
}

/// Bad TLS and auth settings are refused at check-config and run, with the
/// key named.
#[tokio::test]
async fn bad_tls_and_auth_config_names_the_key() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let other = pki();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, &other.key).expect("write");
    let path = |p: &Path| Some(p.display().to_string());
    type Edit<'a> = Box<dyn Fn(&mut Config) + 'a>;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (
            Box::new(|c| c.tls.cert_file = path(&dir.path().join("missing"))),
            "tls.cert_file",
            "cannot read",
        ),
        (
            Box::new(|c| c.tls.cert_file = path(&empty)),
            "tls.cert_file",
            "holds no PEM certificate",
        ),
        (
            Box::new(|c| c.tls.key_file = path(&empty)),
            "tls.key_file",
            "no usable PEM private key",
        ),
        (
            Box::new(|c| c.tls.key_file = path(&other_key)),
            "tls.key_file",
            "does not go with",
        ),
        (
            Box::new(|c| c.tls.client_ca_file = path(&empty)),
            "tls.client_ca_file",
            "holds no PEM certificate",
        ),
        (
            Box::new(|c| {
                c.auth.bearer_token = Some("${file:/nonexistent/chainpulse-token}".into())
            }),
            "auth.bearer_token",
            "cannot read secret file",
        ),
    ];
    for (edit, key, needle) in cases {
        let mut c = s.config.clone();
        edit(&mut c);
        let e = c.check_files().expect_err(key).to_string();
        assert!(
            e.starts_with(key) && e.contains(needle),
            "check-config: {e}"
        );
        let e = format!("{:#}", Server::start(&c).await.err().expect(key));
        assert!(e.contains(key) && e.contains(needle), "run: {e}");
    }
    for (toml, key) in [
        ("[tls]\ncert_file = \"a.pem\"\n", "tls.key_file"),
        ("[tls]\nclient_ca_file = \"a.pem\"\n", "tls.client_ca_file"),
        (
            "[tls]\ncert_file = \"a\"\nkey_file = \"b\"\nlisteners = [\"grcp\"]\n",
            "tls.listeners[0]",
        ),
        ("[auth]\nbearer_token = \"${env:}\"\n", "auth.bearer_token"),
        ("[auth]\nbearer_token = \"\"\n", "auth.bearer_token"),
    ] {
        let e = Config::from_toml_str(toml).expect_err(toml).to_string();
        assert!(e.starts_with(key), "{toml}: {e}");
    }
}

/// Raw HTTP/2: the client preface, SETTINGS, and a HEADERS frame for stream
/// 1 without END_HEADERS, never continued.
const H2_HALF_HEADERS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\
\x00\x00\x00\x04\x00\x00\x00\x00\x00\
\x00\x00\x01\x01\x00\x00\x00\x00\x01\x82";

/// Reads until the server closes; how long that took (None: still open
/// after `limit`).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t0 + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Issue 13 (item 2 leftover): an HTTP/2 client that never completes its
/// HEADERS kept its connection (and slot) until the idle timeout — forever
/// if it kept the connection busy with PINGs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_headers_never_completed_are_timed_out() {
    let mut c = test_config();
    c.server.header_read_timeout_ms = 400;
    let server = Server::start(&c).await.expect("server starts");
    for addr in [
        server.addrs().http,
        server.addrs().grpc,
        server.addrs().metrics,
    ] {
        // Half a HEADERS frame, then silence.
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(H2_HALF_HEADERS).await.expect("write");
        let closed = closed_within(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{addr}: half HEADERS, still open after 5 s"));
        assert!(closed < Duration::from_secs(3), "{addr}: {closed:?}");

        // No HEADERS at all, but bytes flow: a PING every 100 ms.
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(H2_PREFACE).await.expect("write");
        let ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00pingping";
        let t0 = Instant::now();
        let mut closed = None;
        while t0.elapsed() < Duration::from_secs(5) {
            let _ = s.write_all(ping).await;
            if closed_within(&mut s, Duration::from_millis(100))
                .await
                .is_some()
            {
                closed = Some(t0.elapsed());
                break;
            }
        }
        let closed = closed.unwrap_or_else(|| panic!("{addr}: PINGs, still open after 5 s"));
        assert!(closed < Duration::from_secs(3), "{addr}: {closed:?}");
    }
    let m = common::scrape(&server).await;
    assert_eq!(
        value(&m, "chainpulse_connections_header_timeout_total", &[]),
        6.0
    );
    server.shutdown().await.expect("shutdown");
}

/// The header deadline is for the first request only: a gRPC channel used
/// for longer than it keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_outlive_the_header_timeout() {
    let mut c = test_config();
    c.server.header_read_timeout_ms = 200;
    let server = Server::start(&c).await.expect("server starts");
    let req = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    let mut client = TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect");
    for _ in 0..8 {
        client.export(req.clone()).await.expect("export");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = common::scrape(&server).await;
    assert_eq!(
        value(&m, "chainpulse_connections_header_timeout_total", &[]),
        0.0
    );
    assert_eq!(
        value(&m, "chainpulse_connections", &[("listener", "grpc")]),
        1.0
    );
    server.shutdown().await.expect("shutdown");
}

async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    out
}

/// Issue 13 (item 2 leftover): a connection over the cap was reset without
/// a word. Now: HTTP/1.1 503 + Retry-After, HTTP/2 GOAWAY, and /healthz
/// still answered on a full metrics port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_connections_get_an_answer() {
    let mut c = test_config();
    c.server.max_connections = 2;
    let server = Server::start(&c).await.expect("server starts");
    let a = server.addrs();
    let mut held = Vec::new();
    for addr in [a.http, a.grpc, a.metrics] {
        for _ in 0..2 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut s = TcpStream::connect(a.http).await.expect("connect");
    s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let reply = String::from_utf8_lossy(&read_all(&mut s).await).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{reply}"
    );
    assert!(reply.contains("\r\nRetry-After: 1\r\n"), "{reply}");
    assert!(reply.ends_with("connection limit reached (server.max_connections); retry later\n"));

    // HTTP/2 prior knowledge, and gRPC: GOAWAY(REFUSED_STREAM), last stream 0.
    for addr in [a.http, a.grpc] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(H2_HALF_HEADERS).await.expect("write");
        let reply = read_all(&mut s).await;
        let goaway = reply
            .windows(4)
            .position(|w| w == [0x07, 0, 0, 0])
            .unwrap_or_else(|| panic!("{addr}: no GOAWAY in {reply:?}"));
        assert_eq!(&reply[goaway + 6..goaway + 14], &[0, 0, 0, 0, 0, 0, 0, 7]);
    }
    // A real gRPC client sees an error the OTLP spec calls retryable
    // (tonic: CANCELLED when the GOAWAY comes before its request, else
    // UNAVAILABLE), not a transport reset.
    let req = ExportTraceServiceRequest::decode(&fixture("langchain-openinference.pb")[..])
        .expect("fixture");
    let result = match TraceServiceClient::connect(format!("http://{}", a.grpc)).await {
        Ok(mut client) => client.export(req).await.map(|_| ()).map_err(|e| e.code()),
        Err(_) => Err(tonic::Code::Unavailable),
    };
    assert!(
        matches!(
            result,
            Err(tonic::Code::Unavailable | tonic::Code::Cancelled)
        ),
        "{result:?}"
    );

    // The metrics port is full too, and still answers the liveness probe.
    let mut s = TcpStream::connect(a.metrics).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let reply = String::from_utf8_lossy(&read_all(&mut s).await).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 200 OK\r\n") && reply.ends_with("ok\n"),
        "{reply}"
    );

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = common::scrape(&server).await;
    assert!(
        value(
            &m,
            "chainpulse_connections_refused_answered_total",
            &[("listener", "http")]
        ) >= 2.0
    );
    assert!(
        value(
            &m,
            "chainpulse_connections_refused_answered_total",
            &[("listener", "metrics")]
        ) >= 1.0
    );
    server.shutdown().await.expect("shutdown");
}
