//! Why a whole export request was refused, and how each protocol says so.

/// A request-level rejection. Span-level problems are not errors: they are
/// reported through OTLP `partial_success` instead.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    #[error("malformed protobuf: {0}")]
    MalformedProtobuf(String),
    #[error("malformed OTLP/JSON: {0}")]
    MalformedJson(String),
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(String),
    #[error("request body is empty")]
    EmptyBody,
    #[error(
        "request of {size} bytes exceeds the limit of {limit} bytes (limits.max_request_bytes)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "request exceeds the limit of {limit} bytes once decompressed (limits.max_request_bytes)"
    )]
    DecompressedTooLarge { limit: usize },
    /// The client went away (or broke the stream) before its body was
    /// complete: a transport event, not bad data.
    #[error("the client closed the connection or stream before the body was complete: {0}")]
    ClientDisconnected(String),
    /// The body did not arrive within `server.body_read_timeout_ms`.
    #[error("the request body did not arrive within {ms} ms (server.body_read_timeout_ms)")]
    BodyTimeout { ms: u64 },
    /// The in-flight memory budget cannot hold this request now.
    #[error("chainpulse's in-flight memory budget is used up ({used} of {limit} bytes, limits.max_inflight_bytes; this request needs {wanted} more); retry later")]
    MemoryLimit {
        wanted: usize,
        used: usize,
        limit: usize,
    },
    #[error("malformed gzip body: {0}")]
    MalformedGzip(String),
    #[error("unsupported Content-Encoding {0:?}; use gzip or none")]
    UnsupportedEncoding(String),
    #[error("unsupported Content-Type {0:?}; use application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    #[error("chainpulse is overloaded ({0} export requests in flight); retry later")]
    Overloaded(usize),
    /// A forwarding queue is full: back-pressure, retried by OTel SDKs.
    #[error("the forwarding queue of destination {destination:?} is full (its upstream is slow or down); retry in {}s", retry_after.as_secs())]
    QueueFull {
        destination: String,
        retry_after: std::time::Duration,
    },
    /// The forwarding queue cannot take the request (disk error, or a
    /// request larger than the queue).
    #[error("cannot queue the request for forwarding: {0}")]
    ForwardQueue(String),
    /// A request to a path no receiver serves (a mistyped endpoint, or an
    /// SDK whose host setting appends a path chainpulse does not know).
    #[error("no route for {method} {path}: chainpulse's OTLP/HTTP receiver serves POST {}", super::http::TRACE_PATHS.join(", POST "))]
    UnknownPath { method: String, path: String },
}

impl IngestError {
    /// The `reason` label of `chainpulse_otlp_requests_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::MalformedProtobuf(_) => "malformed_protobuf",
            IngestError::MalformedJson(_) => "malformed_json",
            IngestError::InvalidUtf8(_) => "invalid_utf8",
            IngestError::EmptyBody => "empty_body",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::DecompressedTooLarge { .. } => "decompressed_too_large",
            IngestError::MalformedGzip(_) => "malformed_gzip",
            IngestError::ClientDisconnected(_) => "client_disconnected",
            IngestError::BodyTimeout { .. } => "body_timeout",
            IngestError::MemoryLimit { .. } => "memory_limit",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::Overloaded(_) => "overloaded",
            IngestError::QueueFull { .. } => "queue_full",
            IngestError::ForwardQueue(_) => "forward_queue_error",
            IngestError::UnknownPath { .. } => "unknown_path",
        }
    }

    /// Seconds for HTTP `Retry-After` on a retryable refusal.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            IngestError::QueueFull { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            IngestError::Overloaded(_)
            | IngestError::ForwardQueue(_)
            | IngestError::MemoryLimit { .. } => Some(1),
            _ => None,
        }
    }

    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            IngestError::TooLarge { .. } | IngestError::DecompressedTooLarge { .. } => {
                S::PAYLOAD_TOO_LARGE
            }
            IngestError::UnsupportedEncoding(_) | IngestError::UnsupportedMediaType(_) => {
                S::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::Overloaded(_)
            | IngestError::QueueFull { .. }
            | IngestError::MemoryLimit { .. }
            | IngestError::ForwardQueue(_) => S::SERVICE_UNAVAILABLE,
            IngestError::UnknownPath { .. } => S::NOT_FOUND,
            IngestError::BodyTimeout { .. } => S::REQUEST_TIMEOUT,
            _ => S::BAD_REQUEST,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            IngestError::TooLarge { .. } | IngestError::DecompressedTooLarge { .. } => {
                tonic::Status::resource_exhausted(msg)
            }
            IngestError::Overloaded(_) | IngestError::ForwardQueue(_) => {
                tonic::Status::unavailable(msg)
            }
            // OTel SDKs retry RESOURCE_EXHAUSTED only when it carries a
            // RetryInfo, which also tells them how long to wait.
            IngestError::QueueFull { .. } | IngestError::MemoryLimit { .. } => {
                let retry_after = match self {
                    IngestError::QueueFull { retry_after, .. } => *retry_after,
                    _ => std::time::Duration::from_secs(1),
                };
                let details = crate::otlp::status::retry_info_details(
                    tonic::Code::ResourceExhausted,
                    &msg,
                    retry_after,
                );
                tonic::Status::with_details(tonic::Code::ResourceExhausted, msg, details.into())
            }
            IngestError::UnknownPath { .. } => tonic::Status::unimplemented(msg),
            IngestError::ClientDisconnected(_) => tonic::Status::cancelled(msg),
            IngestError::BodyTimeout { .. } => tonic::Status::deadline_exceeded(msg),
            _ => tonic::Status::invalid_argument(msg),
        }
    }
}
