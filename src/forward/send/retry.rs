//! Failure classification and backoff for the upstream OTLP exporters.
//!
//! Forwarding sits behind a durable queue, so every failed export forces a
//! choice: keep the batch at the head of the queue and try again, or count
//! its spans as failed and move on. Getting it wrong either way is costly —
//! retrying a permanent error (a bad API key, a rejected payload) blocks the
//! destination forever, while dropping a transient one (a restarting
//! collector, a full queue upstream) loses data that would have gone through
//! a second later. This module makes that choice in one place, following the
//! OTLP specification's retry rules
//! (<https://opentelemetry.io/docs/specs/otlp/#failures>):
//!
//! * gRPC: `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//!   `UNAVAILABLE`, `DATA_LOSS` and `RESOURCE_EXHAUSTED` are retryable; every
//!   other code is permanent. A `google.rpc.RetryInfo` detail, when present,
//!   tells us how long to wait.
//! * HTTP: 429, 502, 503 and 504 are retryable (plus 408, a timeout on the
//!   server's side), honouring `Retry-After`; every other status is
//!   permanent, including 500 as the spec prescribes.
//! * Errors without any response (connection refused or reset, TLS
//!   handshake, timeouts) are retryable.
//!
//! `RESOURCE_EXHAUSTED` follows the spec to the letter: retryable only when
//! the server attaches `RetryInfo` (a full queue, say — chainpulse's own
//! receiver does so), permanent without it (a message over the server's size
//! limit, which no amount of waiting fixes; the sender then retries the
//! batch's requests one by one so only the oversized one is lost).
//!
//! [`Failure::reason`] strings double as metric label values, so they are
//! short, stable and drawn from a small fixed set.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

#[cfg(test)]
use crate::otlp::status::{ProtoAny, ProtoDuration};
use crate::otlp::status::{RetryInfo, RpcStatus, RETRY_INFO_TYPE};
use prost::Message;
use tonic::Code;

/// How one failed export attempt should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again later; `after` is the server's hint (RetryInfo / Retry-After), if any.
    Retryable {
        reason: String,
        after: Option<Duration>,
    },
    /// Never retry: count the spans as failed with `reason` and move on.
    Permanent { reason: String },
}

#[cfg(test)]
impl Failure {
    /// The low-cardinality label for metrics, e.g. `"grpc_unavailable"`.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Retryable { reason, .. } | Failure::Permanent { reason } => reason,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Failure::Retryable { .. })
    }

    /// The server's requested delay, for passing to [`Backoff::delay`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Retryable { after, .. } => *after,
            Failure::Permanent { .. } => None,
        }
    }
}

/// What went wrong when no response arrived at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportErrorKind {
    /// The connection could not be established (refused, unreachable, DNS, TLS handshake).
    Connect,
    /// The request or connection attempt timed out.
    Timeout,
    /// Any other I/O failure, e.g. the connection was reset mid-request.
    Io,
}

impl TransportErrorKind {
    /// The metric label used as [`Failure::reason`].
    pub fn as_str(self) -> &'static str {
        match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Io => "io",
        }
    }

    /// Maps an I/O error found underneath a client error.
    pub fn of_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused
            | K::NotConnected
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable => TransportErrorKind::Connect,
            K::TimedOut => TransportErrorKind::Timeout,
            _ => TransportErrorKind::Io,
        }
    }
}

/// For errors without any response (connection refused, reset, TLS handshake, timeout).
pub fn transport_failure(kind: TransportErrorKind) -> Failure {
    Failure::Retryable {
        reason: kind.as_str().to_owned(),
        after: None,
    }
}

/// The snake_case name of a gRPC code, as used in metric labels.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Classifies a failed gRPC export.
///
/// Statuses that tonic synthesised from a local transport error are
/// classified by that error (`connect` / `timeout` / `io`), not by their
/// code: tonic reports e.g. a reset connection as `UNKNOWN`, which the code
/// table alone would wrongly make permanent.
pub fn classify_grpc(status: &tonic::Status) -> Failure {
    if let Some(kind) = transport_cause(status) {
        return transport_failure(kind);
    }
    let reason = format!("grpc_{}", grpc_code_name(status.code()));
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Failure::Retryable {
            reason,
            after: grpc_retry_delay(status),
        },
        Code::ResourceExhausted => match grpc_retry_delay(status) {
            Some(after) => Failure::Retryable {
                reason,
                after: Some(after),
            },
            None => Failure::Permanent { reason },
        },
        // `Ok` should never reach here; if it does, retrying cannot help.
        Code::Ok
        | Code::Unknown
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::Unimplemented
        | Code::Internal
        | Code::Unauthenticated => Failure::Permanent { reason },
    }
}

/// Looks through the status's source chain for a client-side transport
/// error. Statuses decoded from a server's response never carry a source, so
/// anything found here happened on our side of the wire.
fn transport_cause(status: &tonic::Status) -> Option<TransportErrorKind> {
    let mut wrapped_transport_error = false;
    let mut current: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(err) = current {
        if err.is::<tonic::ConnectError>() {
            return Some(TransportErrorKind::Connect);
        }
        if err.is::<tonic::TimeoutExpired>() {
            return Some(TransportErrorKind::Timeout);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(TransportErrorKind::of_io(io));
        }
        // A `transport::Error` without a source is a local configuration
        // problem (invalid URI or user agent) that retrying cannot fix; one
        // wrapping a source is a failure of the connection itself.
        if let Some(transport) = err.downcast_ref::<tonic::transport::Error>() {
            wrapped_transport_error |= transport.source().is_some();
        }
        current = err.source();
    }
    wrapped_transport_error.then_some(TransportErrorKind::Io)
}

/// Extracts RetryInfo.retry_delay from a tonic Status's details, if present and valid.
pub fn grpc_retry_delay(status: &tonic::Status) -> Option<Duration> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let rpc_status = RpcStatus::decode(details).ok()?;
    rpc_status
        .details
        .iter()
        .filter(|any| any.type_url.rsplit('/').next() == Some(RETRY_INFO_TYPE))
        .find_map(|any| {
            RetryInfo::decode(any.value.as_slice())
                .ok()?
                .retry_delay?
                .to_duration()
        })
}

/// Classifies a failed OTLP/HTTP export by its response status.
pub fn classify_http(status: http::StatusCode, headers: &http::HeaderMap) -> Failure {
    let reason = format!("http_{}", status.as_u16());
    match status.as_u16() {
        408 | 429 | 502 | 503 | 504 => Failure::Retryable {
            reason,
            after: headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        _ => Failure::Permanent { reason },
    }
}

/// Parses a Retry-After value: delta-seconds or an HTTP-date (relative to `now`); None if invalid or in the past.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Overlong digit strings fail to parse as u64 and are rejected rather
        // than wrapped; the backoff caps absurd-but-valid values anyway.
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok()
}

/// Longest excerpt of a server's message that goes into a log line.
const MAX_MESSAGE_CHARS: usize = 200;

#[cfg(test)]
/// A short, human-readable message for logs about a failed gRPC export,
/// e.g. `UNAVAILABLE: connection refused`.
pub fn grpc_error_message(status: &tonic::Status) -> String {
    let name = grpc_code_name(status.code()).to_ascii_uppercase();
    let message = if status.message().is_empty() {
        status.source().map(|s| s.to_string()).unwrap_or_default()
    } else {
        status.message().to_owned()
    };
    let message = sanitize(&message);
    if message.is_empty() {
        name
    } else {
        format!("{name}: {message}")
    }
}

/// A short, human-readable message for logs: for gRPC "UNAVAILABLE: <message>", for HTTP the
/// status plus the first 200 chars of a body (which for OTLP/HTTP errors is a protobuf
/// google.rpc.Status — decode its message if it parses, else show lossy UTF-8 if it looks like text).
pub fn http_error_message(status: http::StatusCode, body: &[u8]) -> String {
    let head = match status.canonical_reason() {
        Some(text) => format!("HTTP {} {text}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    };
    let detail = body_excerpt(body);
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

fn body_excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    // Plain text can occasionally decode as protobuf (made of unknown
    // fields), so only trust the decode if it produced a message or code.
    if let Ok(rpc) = RpcStatus::decode(body) {
        if !rpc.message.is_empty() {
            return sanitize(&rpc.message);
        }
        if rpc.code != 0 {
            return format!("code {}", rpc.code);
        }
    }
    let text = String::from_utf8_lossy(body);
    if looks_like_text(&text) {
        sanitize(&text)
    } else {
        format!("<{} bytes of binary body>", body.len())
    }
}

fn looks_like_text(text: &str) -> bool {
    let mut total = 0usize;
    let mut odd = 0usize;
    for c in text.chars() {
        total += 1;
        if c == char::REPLACEMENT_CHARACTER || (c.is_control() && !c.is_whitespace()) {
            odd += 1;
        }
    }
    // Tolerate a stray byte or two, e.g. one mangled character in an HTML page.
    odd * 10 <= total
}

/// Makes server-supplied text fit on one log line and bounds its length, so
/// a huge HTML error page cannot flood the logs.
fn sanitize(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0usize;
    let mut last_was_space = false;
    for c in text.trim().chars() {
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_was_space {
            continue;
        }
        last_was_space = c == ' ';
        if chars == MAX_MESSAGE_CHARS {
            out.push('…');
            return out;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Exponential backoff with equal jitter, capped; a server hint overrides the computed delay
/// (but is itself capped at `max_hint`, so a hostile upstream cannot park us for a day).
///
/// The jitter is "equal jitter" (random in the upper half of the computed
/// delay): it spreads out many exporters retrying against the same
/// recovering upstream without ever collapsing to an immediate retry.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Values below 1.0 (or NaN) are treated as 1.0, i.e. a constant delay.
    pub multiplier: f64,
    pub max_hint: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_hint: Duration::from_secs(5 * 60),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = first retry). Without a hint: random in
    /// [d/2, d] where d = min(max, initial * multiplier^(attempt-1)) ("equal jitter", so it never collapses to 0).
    /// With a hint: min(hint, max_hint), plus up to 10% jitter.
    ///
    /// A hint shorter than `initial` is raised to `initial`: an upstream
    /// answering `Retry-After: 0` to every request would otherwise make us
    /// retry in a tight loop.
    pub fn delay(
        &self,
        attempt: u32,
        hint: Option<Duration>,
        rng: &mut impl rand::Rng,
    ) -> Duration {
        match hint {
            Some(hint) => {
                let base = to_nanos(hint.max(self.initial).min(self.max_hint));
                let jitter = rng.random_range(0..=base / 10);
                Duration::from_nanos(base.saturating_add(jitter))
            }
            None => {
                let d = self.computed_nanos(attempt);
                Duration::from_nanos(rng.random_range(d - d / 2..=d))
            }
        }
    }

    /// The un-jittered delay for `attempt`, in nanoseconds.
    fn computed_nanos(&self, attempt: u32) -> u64 {
        let max = to_nanos(self.max);
        let initial = to_nanos(self.initial).min(max);
        let multiplier = if self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        // powi takes i32; beyond that the result is infinite anyway.
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let raw = initial as f64 * multiplier.powi(exponent);
        if raw.is_finite() && raw < max as f64 {
            // `as` saturates, and raw < max guarantees it fits.
            raw as u64
        } else {
            max
        }
    }
}

fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn with_retry_info(code: Code, delay: ProtoDuration) -> tonic::Status {
        let info = RetryInfo {
            retry_delay: Some(delay),
        };
        let details = RpcStatus {
            code: code as i32,
            message: "slow down".into(),
            details: vec![
                ProtoAny {
                    type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                    value: vec![1, 2, 3],
                },
                ProtoAny {
                    type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                    value: info.encode_to_vec(),
                },
            ],
        };
        tonic::Status::with_details(code, "slow down", details.encode_to_vec().into())
    }

    #[test]
    fn every_grpc_code_is_classified_per_spec() {
        let retryable = [
            (Code::Cancelled, "grpc_cancelled"),
            (Code::DeadlineExceeded, "grpc_deadline_exceeded"),
            (Code::Aborted, "grpc_aborted"),
            (Code::OutOfRange, "grpc_out_of_range"),
            (Code::Unavailable, "grpc_unavailable"),
            (Code::DataLoss, "grpc_data_loss"),
        ];
        let permanent = [
            (Code::Ok, "grpc_ok"),
            (Code::ResourceExhausted, "grpc_resource_exhausted"),
            (Code::Unknown, "grpc_unknown"),
            (Code::InvalidArgument, "grpc_invalid_argument"),
            (Code::NotFound, "grpc_not_found"),
            (Code::AlreadyExists, "grpc_already_exists"),
            (Code::PermissionDenied, "grpc_permission_denied"),
            (Code::FailedPrecondition, "grpc_failed_precondition"),
            (Code::Unimplemented, "grpc_unimplemented"),
            (Code::Internal, "grpc_internal"),
            (Code::Unauthenticated, "grpc_unauthenticated"),
        ];
        assert_eq!(retryable.len() + permanent.len(), 17);
        for (code, reason) in retryable {
            let f = classify_grpc(&tonic::Status::new(code, "x"));
            assert_eq!(
                f,
                Failure::Retryable {
                    reason: reason.into(),
                    after: None
                },
                "{code:?}"
            );
        }
        for (code, reason) in permanent {
            let f = classify_grpc(&tonic::Status::new(code, "x"));
            assert_eq!(
                f,
                Failure::Permanent {
                    reason: reason.into()
                },
                "{code:?}"
            );
            assert!(!f.is_retryable());
            assert_eq!(f.reason(), reason);
        }
    }

    #[test]
    fn resource_exhausted_with_and_without_retry_info() {
        let bare = classify_grpc(&tonic::Status::resource_exhausted("message too large"));
        assert!(!bare.is_retryable(), "spec: permanent without RetryInfo");

        let hinted = classify_grpc(&with_retry_info(
            Code::ResourceExhausted,
            ProtoDuration {
                seconds: 3,
                nanos: 250_000_000,
            },
        ));
        assert_eq!(
            hinted,
            Failure::Retryable {
                reason: "grpc_resource_exhausted".into(),
                after: Some(Duration::from_millis(3250)),
            }
        );
    }

    #[test]
    fn retry_info_round_trips_through_status_details() {
        let status = with_retry_info(
            Code::Unavailable,
            ProtoDuration {
                seconds: 12,
                nanos: 5,
            },
        );
        assert_eq!(grpc_retry_delay(&status), Some(Duration::new(12, 5)));
        // A permanent code keeps its verdict even with a hint attached.
        let status = with_retry_info(
            Code::InvalidArgument,
            ProtoDuration {
                seconds: 1,
                nanos: 0,
            },
        );
        assert!(!classify_grpc(&status).is_retryable());
    }

    #[test]
    fn invalid_retry_info_is_ignored() {
        for bad in [
            ProtoDuration {
                seconds: -1,
                nanos: 0,
            },
            ProtoDuration {
                seconds: 1,
                nanos: -5,
            },
            ProtoDuration {
                seconds: 1,
                nanos: 1_000_000_000,
            },
        ] {
            let status = with_retry_info(Code::Unavailable, bad.clone());
            assert_eq!(grpc_retry_delay(&status), None, "{bad:?}");
        }
        let huge = with_retry_info(
            Code::Unavailable,
            ProtoDuration {
                seconds: i64::MAX,
                nanos: 999_999_999,
            },
        );
        assert_eq!(
            grpc_retry_delay(&huge),
            Some(Duration::new(i64::MAX as u64, 999_999_999))
        );
    }

    #[test]
    fn garbage_details_give_no_delay() {
        for garbage in [
            &b"\xff\xff\xff\xff\xff"[..],
            b"not a protobuf at all",
            b"\x1a\x05\x0a\x09abc", // Any whose type_url overruns it
            b"\x1a\x80",            // truncated length
        ] {
            let status =
                tonic::Status::with_details(Code::Unavailable, "x", garbage.to_vec().into());
            assert_eq!(grpc_retry_delay(&status), None);
            assert!(classify_grpc(&status).is_retryable());
        }
        // RetryInfo type URL but the payload is not a RetryInfo.
        let details = RpcStatus {
            code: 14,
            message: String::new(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: vec![0x0a, 0x09, 0xff],
            }],
        };
        let status =
            tonic::Status::with_details(Code::Unavailable, "x", details.encode_to_vec().into());
        assert_eq!(grpc_retry_delay(&status), None);
    }

    #[test]
    fn local_transport_errors_are_retryable_whatever_the_code() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = tonic::Status::from_error(Box::new(reset));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(
            classify_grpc(&status),
            transport_failure(TransportErrorKind::Io)
        );

        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(classify_grpc(&status).reason(), "connect");

        let status = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(classify_grpc(&status).reason(), "timeout");

        // An UNKNOWN from the server itself (no source) stays permanent.
        assert!(!classify_grpc(&tonic::Status::unknown("boom")).is_retryable());
    }

    async fn call_over_loopback(addr: std::net::SocketAddr) -> tonic::Status {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<RpcStatus, RpcStatus>::default();
        let path = http::uri::PathAndQuery::from_static("/test.Service/Method");
        grpc.unary(tonic::Request::new(RpcStatus::default()), path, codec)
            .await
            .unwrap_err()
    }

    /// What tonic really produces when the peer misbehaves: this is why
    /// `classify_grpc` looks past the code.
    #[tokio::test]
    async fn real_connection_failures_are_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hang up at once, like a crashing upstream.
        let server = tokio::spawn(async move {
            if let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let status = call_over_loopback(addr).await;
        server.abort();
        // Depending on timing tonic reports this as UNKNOWN (broken pipe)
        // or CANCELLED (hyper's "connection closed"); either way it is ours.
        assert!(
            matches!(status.code(), Code::Unknown | Code::Cancelled),
            "{status:?}"
        );
        assert_eq!(classify_grpc(&status).reason(), "io", "{status:?}");

        // Nothing listens on a port we just released.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let status = call_over_loopback(addr).await;
        assert_eq!(classify_grpc(&status).reason(), "connect", "{status:?}");
    }

    #[test]
    fn transport_failures() {
        assert_eq!(
            transport_failure(TransportErrorKind::Connect),
            Failure::Retryable {
                reason: "connect".into(),
                after: None
            }
        );
        assert_eq!(
            transport_failure(TransportErrorKind::Timeout).reason(),
            "timeout"
        );
        assert_eq!(transport_failure(TransportErrorKind::Io).reason(), "io");
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            TransportErrorKind::of_io(&timed_out),
            TransportErrorKind::Timeout
        );
    }

    fn headers(retry_after: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    #[test]
    fn http_429_honours_retry_after_seconds() {
        let f = classify_http(http::StatusCode::TOO_MANY_REQUESTS, &headers("7"));
        assert_eq!(
            f,
            Failure::Retryable {
                reason: "http_429".into(),
                after: Some(Duration::from_secs(7)),
            }
        );
        let f = classify_http(http::StatusCode::SERVICE_UNAVAILABLE, &headers("soon"));
        assert_eq!(f.retry_after(), None);
        assert!(f.is_retryable());
    }

    #[test]
    fn http_retry_after_as_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The obsolete formats a server may still send.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:57 1994", now),
            Some(Duration::from_secs(20))
        );
        // A date computed from the real clock goes through classify_http.
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let after = classify_http(http::StatusCode::BAD_GATEWAY, &headers(&later))
            .retry_after()
            .unwrap();
        assert!(after > Duration::from_secs(100) && after <= Duration::from_secs(120));
    }

    #[test]
    fn retry_after_rejects_past_and_garbage() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            None
        );
        for bad in [
            "",
            " ",
            "-5",
            "1.5",
            "+3",
            "7s",
            "tomorrow",
            "99999999999999999999999",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn http_status_classes() {
        let none = http::HeaderMap::new();
        for code in [400u16, 401, 403, 404, 405, 413, 415, 500, 501, 505, 301] {
            let status = http::StatusCode::from_u16(code).unwrap();
            let f = classify_http(status, &none);
            assert_eq!(
                f,
                Failure::Permanent {
                    reason: format!("http_{code}")
                },
                "{code}"
            );
        }
        for code in [408u16, 429, 502, 503, 504] {
            let status = http::StatusCode::from_u16(code).unwrap();
            let f = classify_http(status, &none);
            assert_eq!(
                f,
                Failure::Retryable {
                    reason: format!("http_{code}"),
                    after: None
                },
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_stays_in_the_upper_half() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let expected_ms = [500u64, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for (i, d_ms) in expected_ms.iter().enumerate() {
            let attempt = i as u32 + 1;
            let d = Duration::from_millis(*d_ms);
            let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
            for _ in 0..500 {
                let got = b.delay(attempt, None, &mut rng);
                assert!(got >= d / 2 && got <= d, "attempt {attempt}: {got:?}");
                lo = lo.min(got);
                hi = hi.max(got);
            }
            // The jitter really spans the range rather than sitting at one end.
            assert!(lo < d * 6 / 10 && hi > d * 9 / 10, "attempt {attempt}");
        }
    }

    #[test]
    fn backoff_survives_extreme_inputs() {
        let mut rng = StdRng::seed_from_u64(1);
        let b = Backoff::default();
        for attempt in [0, 1, 63, 64, 1000, u32::MAX] {
            let got = b.delay(attempt, None, &mut rng);
            assert!(got <= b.max, "{attempt}");
            assert!(got >= Duration::from_millis(250), "{attempt}");
        }
        let weird = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            multiplier: f64::NAN,
            max_hint: Duration::MAX,
        };
        assert!(weird.delay(u32::MAX, None, &mut rng) > Duration::ZERO);
        assert!(weird.delay(1, Some(Duration::MAX), &mut rng) > Duration::ZERO);
        let shrinking = Backoff {
            multiplier: 0.1,
            ..Backoff::default()
        };
        let got = shrinking.delay(20, None, &mut rng);
        assert!(got >= Duration::from_millis(250) && got <= Duration::from_millis(500));
    }

    #[test]
    fn hint_is_honoured_with_small_jitter_and_capped() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut saw_jitter = false;
        for _ in 0..200 {
            let got = b.delay(1, Some(Duration::from_secs(7)), &mut rng);
            assert!(got >= Duration::from_secs(7) && got <= Duration::from_millis(7700));
            saw_jitter |= got > Duration::from_secs(7);
            // A hint wins over the computed delay, even when shorter.
            let got = b.delay(10, Some(Duration::from_secs(1)), &mut rng);
            assert!(got <= Duration::from_millis(1100));
            let got = b.delay(1, Some(Duration::from_secs(86_400)), &mut rng);
            assert!(got >= b.max_hint && got <= b.max_hint + b.max_hint / 10);
            let got = b.delay(1, Some(Duration::ZERO), &mut rng);
            assert!(got >= b.initial && got <= b.initial + b.initial / 10);
        }
        assert!(saw_jitter);
    }

    #[test]
    fn http_error_message_decodes_rpc_status_body() {
        let body = RpcStatus {
            code: 3,
            message: "span 0: trace_id must be 16 bytes".into(),
            details: vec![],
        }
        .encode_to_vec();
        assert_eq!(
            http_error_message(http::StatusCode::BAD_REQUEST, &body),
            "HTTP 400 Bad Request: span 0: trace_id must be 16 bytes"
        );
        assert_eq!(
            http_error_message(http::StatusCode::BAD_GATEWAY, b""),
            "HTTP 502 Bad Gateway"
        );
        assert_eq!(
            http_error_message(
                http::StatusCode::SERVICE_UNAVAILABLE,
                b"upstream\r\n  overloaded\n"
            ),
            "HTTP 503 Service Unavailable: upstream overloaded"
        );
        assert_eq!(
            http_error_message(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                &[0x80, 0xff, 0x00, 0x01]
            ),
            "HTTP 500 Internal Server Error: <4 bytes of binary body>"
        );
    }

    #[test]
    fn http_error_message_truncates_long_text() {
        let body = format!("<html>{}</html>", "é".repeat(10_000));
        let msg = http_error_message(http::StatusCode::BAD_GATEWAY, body.as_bytes());
        let detail = msg.strip_prefix("HTTP 502 Bad Gateway: ").unwrap();
        assert_eq!(detail.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(detail.starts_with("<html>éé"));
        assert!(detail.ends_with('…'));
        let exact = "a".repeat(MAX_MESSAGE_CHARS);
        let msg = http_error_message(http::StatusCode::BAD_GATEWAY, exact.as_bytes());
        assert!(msg.ends_with(&exact));
    }

    #[test]
    fn grpc_error_message_names_the_code() {
        assert_eq!(
            grpc_error_message(&tonic::Status::unavailable("connection refused")),
            "UNAVAILABLE: connection refused"
        );
        assert_eq!(
            grpc_error_message(&tonic::Status::new(Code::DeadlineExceeded, "")),
            "DEADLINE_EXCEEDED"
        );
    }
}
