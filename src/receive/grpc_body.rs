//! Reads the body of an OTLP/gRPC `Export` call before tonic does.
//!
//! tonic inflates a gzip message itself, but only its first gzip member,
//! ignoring whatever follows; and a broken stream would reach the service as
//! a decode error. So this layer, in front of the routes, reads the one
//! message of an `Export` call itself, as the HTTP receiver reads its body:
//!
//! - the 5-byte gRPC prefix is checked first, so a length over
//!   `limits.max_request_bytes` is refused before anything is buffered;
//! - a gzip message is inflated whole (every member, trailing garbage
//!   refused, see [`super::gzip`]), then handed on uncompressed (the
//!   `grpc-encoding` header removed);
//! - the message is reserved in the in-flight memory budget
//!   (`limits.max_inflight_bytes`) as its buffer grows, before each growth
//!   (at most twice what has arrived, never past what its prefix
//!   announced: a half-sent stream holds what it sent), and its inflated
//!   bytes as they are produced; the reservation is held until the call is
//!   answered;
//! - a stream the client resets or abandons is `client_disconnected`, one
//!   that takes longer than `server.body_read_timeout_ms` `body_timeout`;
//! - the service (and its in-flight slot) sees the call only once its
//!   message is complete, so a trickling client holds a stream (capped by
//!   `server.max_concurrent_streams`), never a slot.
//!
//! Other methods (the KPI service) pass through untouched.

use super::body::BodyBuffer;
use super::budget::Reservation;
use super::{IngestError, Protocol};
use crate::pipeline::Pipeline;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Clone)]
pub struct ExportBodyLayer {
    pipeline: Arc<Pipeline>,
}

impl ExportBodyLayer {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        ExportBodyLayer { pipeline }
    }
}

impl<S> tower::Layer<S> for ExportBodyLayer {
    type Service = ExportBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExportBody {
            inner,
            pipeline: self.pipeline.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ExportBody<S> {
    inner: S,
    pipeline: Arc<Pipeline>,
}

type Req = http::Request<tonic::body::Body>;

impl<S, ResBody> tower::Service<Req> for ExportBody<S>
where
    S: tower::Service<Req, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(self.inner.call(req));
        }
        // The clone that was polled ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let mut reservation = pipeline.memory().reservation();
            match read_message(&pipeline, &parts.headers, body, &mut reservation).await {
                Ok(message) => {
                    parts.headers.remove("grpc-encoding");
                    let mut framed = BytesMut::with_capacity(5 + message.len());
                    framed.extend_from_slice(&[0]);
                    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                    framed.extend_from_slice(&message);
                    drop(message);
                    let body = tonic::body::Body::new(http_body_util::Full::new(framed.freeze()));
                    let response = inner.call(http::Request::from_parts(parts, body)).await;
                    drop(reservation);
                    response
                }
                Err(e) => {
                    let e = pipeline.reject_transport(Protocol::Grpc, e);
                    Ok(e.grpc_status().into_http())
                }
            }
        })
    }
}

/// The call's one message, uncompressed.
async fn read_message(
    pipeline: &Pipeline,
    headers: &http::HeaderMap,
    mut body: tonic::body::Body,
    reservation: &mut Reservation,
) -> Result<Bytes, IngestError> {
    let limit = pipeline.max_request_bytes();
    let timeout = pipeline.body_read_timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = BodyBuffer::new();
    let mut expected: Option<(bool, usize)> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(IngestError::BodyTimeout {
                    ms: timeout.as_millis() as u64,
                })
            }
            Ok(None) => break,
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => return Err(IngestError::ClientDisconnected(e.to_string())),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        // Reserved as it arrives, before it is kept (`BodyBuffer`): a
        // half-sent stream holds what it sent, not what it announced.
        buf.push(data, reservation)?;
        if let (None, Some(prefix)) = (expected, buf.prefix::<5>()) {
            let compressed = prefix[0] != 0;
            let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
            if len > limit {
                return Err(IngestError::TooLarge { size: len, limit });
            }
            expected = Some((compressed, len));
        }
        if let Some((_, len)) = expected {
            if buf.len() > 5 + len {
                return Err(IngestError::MalformedProtobuf(
                    "more than one message in a unary Export call".into(),
                ));
            }
        }
    }
    let Some((compressed, len)) = expected else {
        if buf.is_empty() {
            // No message at all: tonic answers that itself.
            return Ok(Bytes::new());
        }
        return Err(IngestError::MalformedProtobuf(
            "truncated gRPC message prefix".into(),
        ));
    };
    if buf.len() < 5 + len {
        return Err(IngestError::MalformedProtobuf(format!(
            "the stream ended after {} of the {len} message bytes its prefix announced",
            buf.len() - 5
        )));
    }
    let message = buf.finish(reservation)?.slice(5..);
    if !compressed {
        return Ok(message);
    }
    let encoding = headers.get("grpc-encoding").map(|v| {
        v.to_str()
            .unwrap_or("<non-ASCII>")
            .trim()
            .to_ascii_lowercase()
    });
    match encoding.as_deref() {
        Some("gzip") => super::gzip::inflate_reserved(&message, limit, Some(reservation)),
        Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
        None => Err(IngestError::MalformedProtobuf(
            "compressed message without a grpc-encoding header".into(),
        )),
    }
}
