//! OTLP/HTTP: `POST /v1/traces` with protobuf or JSON bodies, optionally
//! gzip-compressed.
//!
//! Vendor SDKs that are pointed at chainpulse by their *host* setting append
//! their own path to it, so those paths are served too (see [`TRACE_PATHS`]):
//! "the app changes nothing but its endpoint" must hold for them as well.
//! Any other path is counted (`reason="unknown_path"`) and answered 404 with
//! the list of paths that work, so a mistyped endpoint is visible on both
//! sides instead of silently losing data.
//!
//! Responses follow the OTLP/HTTP spec: success is an
//! `ExportTraceServiceResponse` (with `partial_success` when spans were
//! rejected) and failure a `google.rpc.Status`, both in the request's
//! encoding. Limits: the body as sent and the body once decompressed are
//! each capped at `limits.max_request_bytes`, and decompression stops as
//! soon as the cap is passed, so a gzip bomb costs at most the cap. Every
//! gzip member is read (see [`super::gzip`]).

use super::body::BodyBuffer;
use super::budget::Reservation;
use super::{json, IngestError, Protocol};
use crate::pipeline::{Accepted, Pipeline};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use std::sync::Arc;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the OTLP/HTTP error body.
pub use crate::otlp::status::RpcStatus;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// Every path that accepts an OTLP trace export:
/// * `/v1/traces`: the OTLP/HTTP standard (`OTEL_EXPORTER_OTLP_ENDPOINT`);
/// * `/api/public/otel/v1/traces`: the Langfuse SDK (v3+) pointed at
///   chainpulse through `LANGFUSE_HOST` / `LANGFUSE_BASE_URL`;
/// * `/otel/v1/traces`: LangSmith's OTel endpoint (`LANGSMITH_ENDPOINT`
///   plus `/otel`).
pub const TRACE_PATHS: [&str; 3] = [
    "/v1/traces",
    "/api/public/otel/v1/traces",
    "/otel/v1/traces",
];

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    let mut router = Router::new();
    for path in TRACE_PATHS {
        router = router.route(path, post(export_traces));
    }
    router
        .route("/v1/metrics", axum::routing::any(traces_only))
        .route("/v1/logs", axum::routing::any(traces_only))
        .fallback(not_found)
        .with_state(pipeline)
}

async fn export_traces(
    State(pipeline): State<Arc<Pipeline>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match media_type(&headers) {
        Ok(e) => e,
        Err(e) => {
            let protocol = Protocol::HttpProtobuf;
            return error_response(Encoding::Protobuf, &pipeline.reject_transport(protocol, e));
        }
    };
    let protocol = match encoding {
        Encoding::Protobuf => Protocol::HttpProtobuf,
        Encoding::Json => Protocol::HttpJson,
    };
    // The body first, bounded in time (server.body_read_timeout_ms), and only
    // then the in-flight slot: a client that trickles its body holds a
    // connection, never a slot other exporters need.
    let (body, _reservation) = match read_body(&pipeline, &headers, body, encoding).await {
        Ok(b) => b,
        Err(e) => return error_response(encoding, &pipeline.reject_transport(protocol, e)),
    };
    let slot = match pipeline.try_begin(protocol) {
        Ok(slot) => slot,
        Err(e) => return error_response(encoding, &e),
    };
    match pipeline.ingest(&slot, protocol, body).await {
        Ok(accepted) => success_response(encoding, accepted),
        Err(e) => error_response(encoding, &e),
    }
}

/// The body as protobuf bytes: size-limited (an announced length over the
/// limit is refused before any byte is read), reserved in the in-flight
/// memory budget as it is buffered, read within the body-read timeout,
/// decompressed, JSON converted. The reservation is held until the response.
async fn read_body(
    pipeline: &Pipeline,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<(Bytes, Reservation), IngestError> {
    let limit = pipeline.max_request_bytes();
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = announced {
        if len > limit {
            return Err(IngestError::TooLarge { size: len, limit });
        }
    }
    let mut reservation = pipeline.memory().reservation();
    let timeout = pipeline.body_read_timeout();
    let raw = tokio::time::timeout(timeout, collect(body, limit, &mut reservation))
        .await
        .map_err(|_| IngestError::BodyTimeout {
            ms: timeout.as_millis() as u64,
        })??;
    let raw = decompress(headers, raw, limit, Some(&mut reservation))?;
    if raw.is_empty() {
        return Err(IngestError::EmptyBody);
    }
    let body = match encoding {
        Encoding::Protobuf => raw,
        Encoding::Json => json::to_protobuf(&raw)?,
    };
    Ok((body, reservation))
}

/// Reads the whole body, reserving each piece as it arrives (a slow upload
/// holds what it sent, not what it announced), without copying large frames
/// ([`BodyBuffer`]).
async fn collect(
    mut body: Body,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, IngestError> {
    let mut buf = BodyBuffer::new();
    while let Some(frame) = body.frame().await {
        // A body that cannot be read is a transport failure (the client
        // hung up, or broke the chunked encoding), not bad protobuf.
        let frame = frame.map_err(|e| IngestError::ClientDisconnected(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.len();
        if len > limit {
            return Err(IngestError::TooLarge {
                size: len.max(limit + 1),
                limit,
            });
        }
        buf.push(data, reservation)?;
    }
    buf.finish(reservation)
}

fn decompress(
    headers: &HeaderMap,
    raw: Bytes,
    limit: usize,
    reservation: Option<&mut Reservation>,
) -> Result<Bytes, IngestError> {
    let enc = headers.get(header::CONTENT_ENCODING).map(|v| {
        v.to_str()
            .unwrap_or("<non-ASCII>")
            .trim()
            .to_ascii_lowercase()
    });
    match enc.as_deref() {
        None | Some("") | Some("identity") => Ok(raw),
        Some("gzip") | Some("x-gzip") => super::gzip::inflate_reserved(&raw, limit, reservation),
        Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
    }
}

fn media_type(headers: &HeaderMap) -> Result<Encoding, IngestError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<non-ASCII>"))
        .unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(IngestError::UnsupportedMediaType(value.to_owned())),
    }
}

fn success_response(encoding: Encoding, accepted: Accepted) -> Response {
    let partial_success = (accepted.rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: accepted.rejected as i64,
        error_message: accepted.message.clone(),
    });
    match encoding {
        Encoding::Protobuf => {
            let body = ExportTraceServiceResponse { partial_success }.encode_to_vec();
            with_type(StatusCode::OK, PROTOBUF, body)
        }
        Encoding::Json => {
            // proto3 JSON: int64 as a string, camelCase names.
            let body = match partial_success {
                Some(p) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": p.rejected_spans.to_string(),
                        "errorMessage": p.error_message,
                    }
                }),
                None => serde_json::json!({}),
            };
            with_type(StatusCode::OK, JSON, body.to_string().into_bytes())
        }
    }
}

fn error_response(encoding: Encoding, e: &IngestError) -> Response {
    let status = e.http_status();
    let grpc_code = e.grpc_status().code() as i32;
    let mut response = status_body(encoding, status, grpc_code, &e.to_string());
    if let Some(secs) = e.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn status_body(encoding: Encoding, status: StatusCode, code: i32, message: &str) -> Response {
    match encoding {
        Encoding::Protobuf => {
            let body = RpcStatus {
                code,
                message: message.to_owned(),
                details: Vec::new(),
            }
            .encode_to_vec();
            with_type(status, PROTOBUF, body)
        }
        Encoding::Json => {
            let body = serde_json::json!({ "code": code, "message": message });
            with_type(status, JSON, body.to_string().into_bytes())
        }
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The encoding to answer in when the request's own is unknown.
fn reply_encoding(headers: &HeaderMap) -> Encoding {
    media_type(headers).unwrap_or(Encoding::Json)
}

async fn traces_only(headers: HeaderMap, uri: Uri) -> Response {
    let msg = format!(
        "{} is not served: {}",
        uri.path(),
        super::grpc::traces_only::MESSAGE
    );
    status_body(reply_encoding(&headers), StatusCode::NOT_FOUND, 12, &msg)
}

async fn not_found(
    State(pipeline): State<Arc<Pipeline>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> Response {
    let encoding = reply_encoding(&headers);
    let protocol = match encoding {
        Encoding::Protobuf => Protocol::HttpProtobuf,
        Encoding::Json => Protocol::HttpJson,
    };
    let e = IngestError::UnknownPath {
        method: method.to_string(),
        path: uri.path().chars().take(256).collect(),
    };
    let e = pipeline.reject_transport(protocol, e);
    status_body(encoding, StatusCode::NOT_FOUND, 5, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 10 * 1024 * 1024])
            .expect("compress");
        let bomb = Bytes::from(enc.finish().expect("finish"));
        assert!(bomb.len() < 64 * 1024);
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            decompress(&h, bomb, 1024 * 1024, None),
            Err(IngestError::DecompressedTooLarge { limit: 1024 * 1024 })
        );
    }

    #[test]
    fn bad_gzip_and_unknown_encodings_are_named() {
        let h = headers(&[("content-encoding", "gzip")]);
        let e = decompress(&h, Bytes::from_static(b"not gzip"), 1024, None).unwrap_err();
        assert_eq!(e.reason(), "malformed_gzip");
        let h = headers(&[("content-encoding", "br")]);
        let e = decompress(&h, Bytes::from_static(b"x"), 1024, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported Content-Encoding \"br\"; use gzip or none"
        );
    }

    #[test]
    fn media_types() {
        let ok = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(media_type(&ok) == Ok(Encoding::Json));
        let bad = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            media_type(&bad).err().map(|e| e.reason()),
            Some("unsupported_media_type")
        );
    }
}
