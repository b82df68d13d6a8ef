//! Forwarding over TLS: a throwaway CA signs a server certificate (and a
//! client certificate for mutual TLS); chainpulse forwards to a TLS gRPC
//! upstream and to an HTTPS OTLP/HTTP upstream, trusting the CA through
//! `tls.ca_file`. Without the CA (system roots) the handshake fails, which
//! must be a retryable failure: the spans stay queued, nothing is lost.

mod common;

use axum::routing::post;
use bytes::Bytes;
use common::upstream::{span_ids_of, SpanKey};
use common::{fixture, scrape, scrape_until, start, test_config, value};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
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
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["chainpulse-client".into()]);
    Pki {
        ca_pem: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashSet<SpanKey>>>);

impl Seen {
    fn add(&self, req: &ExportTraceServiceRequest) {
        self.0.lock().extend(span_ids_of(req));
    }
    fn get(&self) -> HashSet<SpanKey> {
        self.0.lock().clone()
    }
    async fn wait_for(&self, want: &HashSet<SpanKey>, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            if want.is_subset(&self.get()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }
}

#[tonic::async_trait]
impl TraceService for Seen {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A gRPC upstream that requires TLS, and a client certificate from the CA
/// when `mtls` is set.
async fn grpc_tls_upstream(pki: &Pki, mtls: bool) -> (std::net::SocketAddr, Seen) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        pki.server_cert.as_bytes(),
        pki.server_key.as_bytes(),
    ));
    if mtls {
        tls = tls.client_ca_root(Certificate::from_pem(pki.ca_pem.as_bytes()));
    }
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("tls config")
        .add_service(TraceServiceServer::new(seen.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr, seen)
}

/// An HTTPS OTLP/HTTP upstream (rustls + hyper + axum).
async fn https_upstream(pki: &Pki) -> (std::net::SocketAddr, Seen) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let seen = Seen::default();
    let certs = vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/v1/traces",
        post({
            let seen = seen.clone();
            move |headers: http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let gzip = headers
                        .get(http::header::CONTENT_ENCODING)
                        .is_some_and(|v| v.as_bytes() == b"gzip");
                    let body = if gzip {
                        use std::io::Read;
                        let mut out = Vec::new();
                        if flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut out)
                            .is_err()
                        {
                            return (http::StatusCode::BAD_REQUEST, Vec::new());
                        }
                        Bytes::from(out)
                    } else {
                        body
                    };
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(req) => {
                            seen.add(&req);
                            (
                                http::StatusCode::OK,
                                ExportTraceServiceResponse::default().encode_to_vec(),
                            )
                        }
                        Err(_) => (http::StatusCode::BAD_REQUEST, Vec::new()),
                    }
                }
            }
        }),
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return; // handshake refused (untrusted client): the point of a test
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (addr, seen)
}

fn write(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path.display().to_string()
}

async fn send_fixtures(server: &chainpulse::server::Server) -> HashSet<SpanKey> {
    let mut client = TraceServiceClient::connect(format!("http://{}", server.addrs().grpc))
        .await
        .expect("connect to chainpulse");
    let mut want = HashSet::new();
    for name in ["langchain-openinference.pb", "langchain-openllmetry.pb"] {
        let req = ExportTraceServiceRequest::decode(&fixture(name)[..]).expect("fixture");
        want.extend(span_ids_of(&req));
        client.export(req).await.expect("chainpulse accepts");
    }
    want
}

#[tokio::test]
async fn grpc_over_mutual_tls_with_a_private_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, seen) = grpc_tls_upstream(&pki, true).await;
    let toml = format!(
        r#"
[[forward.destinations]]
name = "tls-grpc"
protocol = "grpc"
endpoint = "https://localhost:{port}"
batch = {{ flush_interval_ms = 20 }}
tls = {{ ca_file = "{ca}", cert_file = "{cert}", key_file = "{key}" }}
"#,
        port = addr.port(),
        ca = write(dir.path(), "ca.pem", &pki.ca_pem),
        cert = write(dir.path(), "client.pem", &pki.client_cert),
        key = write(dir.path(), "client.key", &pki.client_key),
    );
    let mut config = test_config();
    config.forward = chainpulse::config::Config::from_toml_str(&toml)
        .expect("valid")
        .forward;
    let server = start(config).await;
    let want = send_fixtures(&server).await;
    assert!(
        seen.wait_for(&want, Duration::from_secs(15)).await,
        "every span arrives over mutual TLS: {} of {}",
        seen.get().intersection(&want).count(),
        want.len()
    );
    // The upstream has the spans a moment before chainpulse reads its answer.
    let sent = |m: &[chainpulse::export::text::Sample]| {
        value(
            m,
            "chainpulse_forward_spans_total",
            &[("destination", "tls-grpc"), ("result", "sent")],
        )
    };
    let m = scrape_until(&server, |m| sent(m) >= want.len() as f64).await;
    assert_eq!(sent(&m), want.len() as f64);
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tmp");
    let (addr, seen) = https_upstream(&pki).await;
    let toml = format!(
        r#"
[[forward.destinations]]
name = "tls-http"
protocol = "http"
endpoint = "https://localhost:{port}/v1/traces"
compression = "gzip"
batch = {{ flush_interval_ms = 20 }}
tls = {{ ca_file = "{ca}" }}
"#,
        port = addr.port(),
        ca = write(dir.path(), "ca.pem", &pki.ca_pem),
    );
    let mut config = test_config();
    config.forward = chainpulse::config::Config::from_toml_str(&toml)
        .expect("valid")
        .forward;
    let server = start(config).await;
    let want = send_fixtures(&server).await;
    assert!(
        seen.wait_for(&want, Duration::from_secs(15)).await,
        "every span arrives over HTTPS: {} of {}",
        seen.get().intersection(&want).count(),
        want.len()
    );
}

/// An upstream whose certificate the system roots do not trust: every
/// attempt fails the handshake, which is retried, and the spans stay queued.
#[tokio::test]
async fn an_untrusted_certificate_is_retried_not_dropped() {
    let pki = pki();
    let (addr, seen) = grpc_tls_upstream(&pki, false).await;
    let toml = format!(
        r#"
[[forward.destinations]]
name = "untrusted"
protocol = "grpc"
endpoint = "https://localhost:{port}"
batch = {{ flush_interval_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200 }}
"#,
        port = addr.port(),
    );
    let mut config = test_config();
    config.forward = chainpulse::config::Config::from_toml_str(&toml)
        .expect("valid")
        .forward;
    let server = start(config).await;
    let want = send_fixtures(&server).await;
    let mut retried = 0.0;
    for _ in 0..100 {
        let m = scrape(&server).await;
        retried = value(
            &m,
            "chainpulse_forward_spans_total",
            &[("destination", "untrusted"), ("result", "retried")],
        );
        if retried >= 2.0 * want.len() as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(retried >= 2.0 * want.len() as f64, "retried {retried}");
    // Queue gauges refresh on the pipeline's 250 ms tick.
    let d = [("destination", "untrusted")];
    let m = scrape_until(&server, |m| {
        value(m, "chainpulse_forward_queue_spans", &d) == want.len() as f64
    })
    .await;
    assert_eq!(
        value(&m, "chainpulse_forward_queue_spans", &d),
        want.len() as f64
    );
    for result in ["sent", "failed", "dropped"] {
        assert_eq!(
            value(
                &m,
                "chainpulse_forward_spans_total",
                &[("destination", "untrusted"), ("result", result)]
            ),
            0.0,
            "{result}"
        );
    }
    assert!(seen.get().is_empty());
}
