//! Exporters: one OTLP/gRPC or OTLP/HTTP call per batch.
//!
//! Both send the batch's bytes as they are — the concatenated, already
//! encoded export requests — so forwarding never decodes and re-encodes what
//! nobody changed. gRPC goes through a tonic client with a pass-through
//! codec; HTTP through reqwest. TLS is rustls (system roots plus webpki
//! roots, or a CA file; optional client certificate). Header values are
//! resolved from `${env:…}` / `${file:…}` once, marked sensitive (so `Debug`
//! of a request prints `Sensitive`), and never logged.

use super::retry::{self, Failure, TransportErrorKind};
use super::secret::{self, Secret};
use crate::forward::config::{Compression, ExportProtocol, Resolved};
use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::io::Write;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a destination could not be set up (start-up error, names the key).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("forward destination {name:?}: {message}")]
    Invalid { name: String, message: String },
    #[error("forward destination {name:?}: cannot read tls.{what} {path}")]
    ReadFile {
        name: String,
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the upstream said to a successful call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// `partial_success.rejected_spans`: accepted call, spans refused.
    pub rejected_spans: i64,
    pub message: String,
}

pub enum Client {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        headers: Vec<(
            tonic::metadata::AsciiMetadataKey,
            tonic::metadata::AsciiMetadataValue,
        )>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        gzip: bool,
    },
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Grpc { .. } => f.write_str("Client::Grpc"),
            Client::Http { url, .. } => write!(f, "Client::Http({url})"),
        }
    }
}

fn read_file(
    path: &std::path::Path,
    what: &'static str,
    name: &str,
) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::ReadFile {
        name: name.to_owned(),
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Header values with secrets resolved (names lower-case).
pub fn resolve_headers(
    dest: &Resolved,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Secret)>, BuildError> {
    let bad = |message: String| BuildError::Invalid {
        name: dest.name.clone(),
        message,
    };
    let mut out = Vec::new();
    for (k, template) in &dest.headers {
        let v = secret::resolve(template, env).map_err(|e| bad(format!("header {k}: {e}")))?;
        out.push((k.clone(), v));
    }
    if let Some(auth) = &dest.basic_auth {
        let user = secret::resolve(&auth.username, env)
            .map_err(|e| bad(format!("basic_auth.username: {e}")))?;
        let pass = secret::resolve(&auth.password, env)
            .map_err(|e| bad(format!("basic_auth.password: {e}")))?;
        out.push(("authorization".to_owned(), secret::basic_auth(&user, &pass)));
    }
    for (k, v) in &out {
        if http::HeaderValue::from_str(v.expose()).is_err() {
            // Never echo the value: it may be a secret.
            return Err(bad(format!(
                "header {k}: the value contains characters not allowed in an HTTP header"
            )));
        }
    }
    Ok(out)
}

impl Client {
    /// Builds the client; does not connect (the first send does), so a
    /// destination that is down at start-up only delays delivery.
    pub fn build(dest: &Resolved) -> Result<Client, BuildError> {
        let env = |k: &str| std::env::var(k).ok();
        let headers = resolve_headers(dest, &env)?;
        let bad = |message: String| BuildError::Invalid {
            name: dest.name.clone(),
            message,
        };
        let ca = dest
            .tls
            .ca_file
            .as_deref()
            .map(|p| read_file(p, "ca_file", &dest.name))
            .transpose()?;
        let identity = match (&dest.tls.cert_file, &dest.tls.key_file) {
            (Some(c), Some(k)) => Some((
                read_file(c, "cert_file", &dest.name)?,
                read_file(k, "key_file", &dest.name)?,
            )),
            _ => None,
        };
        match dest.protocol {
            ExportProtocol::Grpc => {
                let mut ep = Endpoint::from_shared(dest.endpoint.clone())
                    .map_err(|e| bad(format!("endpoint: {e}")))?
                    .timeout(dest.timeout)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_while_idle(true);
                if dest.endpoint.starts_with("https://") {
                    let mut tls = ClientTlsConfig::new();
                    tls = match &ca {
                        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                        None => tls.with_native_roots().with_webpki_roots(),
                    };
                    if let Some((cert, key)) = &identity {
                        tls = tls.identity(Identity::from_pem(cert, key));
                    }
                    ep = ep.tls_config(tls).map_err(|e| bad(format!("tls: {e}")))?;
                }
                let channel = ep.connect_lazy();
                let mut grpc = tonic::client::Grpc::new(channel)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(4 << 20);
                if dest.compression == Compression::Gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                let mut md = Vec::new();
                for (k, v) in headers {
                    let key = tonic::metadata::AsciiMetadataKey::from_bytes(k.as_bytes())
                        .map_err(|_| bad(format!("header {k}: not a valid gRPC metadata key")))?;
                    let mut val: tonic::metadata::AsciiMetadataValue =
                        v.expose().parse().map_err(|_| {
                            bad(format!("header {k}: the value is not valid gRPC metadata"))
                        })?;
                    val.set_sensitive(true);
                    md.push((key, val));
                }
                Ok(Client::Grpc { grpc, headers: md })
            }
            ExportProtocol::Http => {
                let mut default_headers = http::HeaderMap::new();
                for (k, v) in headers {
                    let name = http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| bad(format!("header {k}: not a valid header name")))?;
                    let mut val = http::HeaderValue::from_str(v.expose())
                        .map_err(|_| bad(format!("header {k}: invalid value")))?;
                    val.set_sensitive(true);
                    default_headers.insert(name, val);
                }
                let mut b = reqwest::Client::builder()
                    .use_rustls_tls()
                    .timeout(dest.timeout)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .user_agent(concat!("chainpulse/", env!("CARGO_PKG_VERSION")))
                    .default_headers(default_headers);
                if let Some(pem) = &ca {
                    let cert = reqwest::Certificate::from_pem(pem)
                        .map_err(|e| bad(format!("tls.ca_file: {e}")))?;
                    b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
                }
                if let Some((cert, key)) = &identity {
                    let mut pem = cert.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(key);
                    let id = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| bad(format!("tls.cert_file/key_file: {e}")))?;
                    b = b.identity(id);
                }
                let client = b.build().map_err(|e| bad(format!("http client: {e}")))?;
                Ok(Client::Http {
                    client,
                    url: dest.endpoint.clone(),
                    gzip: dest.compression == Compression::Gzip,
                })
            }
        }
    }

    /// One export call whose body is `parts` concatenated: encoded
    /// `ExportTraceServiceRequest`s, which concatenate into one. gRPC copies
    /// the parts straight into tonic's frame (one copy); HTTP joins them.
    pub async fn send(&self, parts: Parts) -> Result<Delivered, Failure> {
        match self {
            Client::Grpc { grpc, headers } => {
                let mut grpc = grpc.clone();
                grpc.ready()
                    .await
                    .map_err(|_| retry::transport_failure(TransportErrorKind::Connect))?;
                let mut req = tonic::Request::new(parts);
                for (k, v) in headers {
                    req.metadata_mut().insert(k.clone(), v.clone());
                }
                let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
                match grpc.unary(req, path, PassThrough).await {
                    Ok(resp) => Ok(delivered(resp.into_inner())),
                    Err(status) => Err(retry::classify_grpc(&status)),
                }
            }
            Client::Http { client, url, gzip } => {
                let mut req = client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                let payload = if *gzip {
                    req = req.header(http::header::CONTENT_ENCODING, "gzip");
                    gzip_parts(&parts)
                        .map_err(|_| retry::transport_failure(TransportErrorKind::Io))?
                } else {
                    super::concat(parts.0.iter())
                };
                let resp = req
                    .body(payload)
                    .send()
                    .await
                    .map_err(|e| reqwest_failure(&e))?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let bytes = resp.bytes().await.map_err(|e| reqwest_failure(&e))?;
                if status.is_success() {
                    // OTLP/HTTP answers a protobuf ExportTraceServiceResponse
                    // (possibly empty); a body we cannot read is still a
                    // successful delivery.
                    return Ok(ExportTraceServiceResponse::decode(bytes)
                        .map(delivered)
                        .unwrap_or_default());
                }
                let failure = retry::classify_http(status, &headers);
                tracing::debug!(
                    status = status.as_u16(),
                    message = retry::http_error_message(status, &bytes),
                    "forward: upstream refused an export"
                );
                Err(failure)
            }
        }
    }

    /// A readable line for logs about a failed call (no secrets: header
    /// values are never part of it).
    pub fn describe(&self) -> &'static str {
        match self {
            Client::Grpc { .. } => "OTLP/gRPC",
            Client::Http { .. } => "OTLP/HTTP",
        }
    }
}

/// An HTTP call that got no response (or lost it half-way): retryable.
fn reqwest_failure(e: &reqwest::Error) -> Failure {
    retry::transport_failure(if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Io
    })
}

fn delivered(r: ExportTraceServiceResponse) -> Delivered {
    match r.partial_success {
        Some(p) => Delivered {
            rejected_spans: p.rejected_spans,
            message: p.error_message,
        },
        None => Delivered::default(),
    }
}

fn gzip_parts(parts: &Parts) -> std::io::Result<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(parts.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    for p in &parts.0 {
        enc.write_all(p)?;
    }
    Ok(Bytes::from(enc.finish()?))
}

/// The pieces of one export call's body (cheap to clone: `Bytes` handles).
#[derive(Debug, Clone, Default)]
pub struct Parts(pub Vec<Bytes>);

impl Parts {
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }
}

impl From<Bytes> for Parts {
    fn from(b: Bytes) -> Parts {
        Parts(vec![b])
    }
}

/// tonic codec: requests are already-encoded bytes, responses are decoded.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl Codec for PassThrough {
    type Encode = Parts;
    type Decode = ExportTraceServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Parts;
    type Error = tonic::Status;

    fn encode(&mut self, item: Parts, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.reserve(item.len());
        for p in &item.0 {
            dst.put_slice(p);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding the upstream's response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::config::{BasicAuth, ForwardConfig};

    fn dest(toml: &str) -> Resolved {
        let c = crate::config::Config::from_toml_str(toml).expect("valid");
        let r: ForwardConfig = c.forward;
        r.resolve().expect("resolves").remove(0)
    }

    #[test]
    fn secrets_resolve_and_errors_do_not_leak_them() {
        let mut d = dest("[[forward.destinations]]\npreset = \"langsmith\"\nheaders = { Langsmith-Project = \"prod\" }\n");
        let env = |k: &str| (k == "LANGSMITH_API_KEY").then(|| "lsv2_sk_supersecret".to_owned());
        let h = resolve_headers(&d, &env).expect("resolves");
        assert!(h
            .iter()
            .any(|(k, v)| k == "x-api-key" && v.expose() == "lsv2_sk_supersecret"));
        assert!(!format!("{h:?}").contains("supersecret"));
        let e = resolve_headers(&d, &|_: &str| None).expect_err("missing");
        assert!(e.to_string().contains("LANGSMITH_API_KEY"), "{e}");
        d.basic_auth = Some(BasicAuth {
            username: "pk".into(),
            password: "${env:LANGSMITH_API_KEY}".into(),
        });
        d.headers.clear();
        let h = resolve_headers(&d, &env).expect("resolves");
        assert_eq!(h[0].0, "authorization");
        assert!(h[0].1.expose().starts_with("Basic "));
        d.basic_auth = None;
        d.headers = vec![("x-api-key".into(), "${env:K}".into())];
        let bad = |_: &str| Some("line\nbreak-supersecret".to_owned());
        let e = resolve_headers(&d, &bad).expect_err("newline");
        assert!(!e.to_string().contains("supersecret"), "{e}");
    }

    #[tokio::test]
    async fn builds_clients_without_connecting() {
        let d = dest(
            "[[forward.destinations]]\nprotocol = \"grpc\"\nendpoint = \"http://127.0.0.1:1\"\n",
        );
        assert!(matches!(Client::build(&d), Ok(Client::Grpc { .. })));
        let d = dest("[[forward.destinations]]\nprotocol = \"http\"\nendpoint = \"https://127.0.0.1:1/v1/traces\"\ncompression = \"gzip\"\n");
        assert!(matches!(
            Client::build(&d),
            Ok(Client::Http { gzip: true, .. })
        ));
        let d = dest("[[forward.destinations]]\nprotocol = \"http\"\nendpoint = \"https://x/v1/traces\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n");
        let e = Client::build(&d).expect_err("missing CA");
        assert!(e.to_string().contains("tls.ca_file"), "{e}");
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_a_retryable_failure() {
        let d = dest("[[forward.destinations]]\nprotocol = \"grpc\"\nendpoint = \"http://127.0.0.1:9\"\ntimeout_ms = 2000\n");
        let c = Client::build(&d).expect("builds");
        let f = c
            .send(Parts::default())
            .await
            .expect_err("nothing listens on :9");
        assert!(f.is_retryable(), "{f:?}");
        let d = dest("[[forward.destinations]]\nprotocol = \"http\"\nendpoint = \"http://127.0.0.1:9/v1/traces\"\ntimeout_ms = 2000\n");
        let c = Client::build(&d).expect("builds");
        let f = c
            .send(Parts::default())
            .await
            .expect_err("nothing listens on :9");
        assert!(f.is_retryable(), "{f:?}");
    }
}
