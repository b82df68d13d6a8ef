//! `google.rpc.Status` and `google.rpc.RetryInfo`: the error body of
//! OTLP/HTTP and the `grpc-status-details-bin` of OTLP/gRPC. The receiver
//! writes them (back-pressure with a retry delay) and the forwarder reads
//! them (an upstream's retry delay), so they live here, below both.

use prost::Message;
use std::time::Duration;
use tonic::Code;

/// `grpc-status-details-bin` for a retryable refusal: a `google.rpc.Status`
/// carrying a `RetryInfo` (what OTel SDKs need to retry RESOURCE_EXHAUSTED).
pub fn retry_info_details(code: Code, message: &str, delay: Duration) -> Vec<u8> {
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: format!("type.googleapis.com/{RETRY_INFO_TYPE}"),
            value: retry.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// `google.rpc.Status`, the payload of `grpc-status-details-bin` and of
/// OTLP/HTTP error bodies.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ProtoDuration {
    /// `None` for negative or malformed durations, which a well-behaved
    /// server never sends and which we must not turn into a panic.
    pub fn to_duration(&self) -> Option<Duration> {
        let secs = u64::try_from(self.seconds).ok()?;
        let nanos = u32::try_from(self.nanos).ok()?;
        if nanos >= 1_000_000_000 {
            return None;
        }
        Some(Duration::new(secs, nanos))
    }
}

/// The type name part of an `Any` type URL; the host part is conventionally
/// `type.googleapis.com` but the protobuf spec lets it vary.
pub const RETRY_INFO_TYPE: &str = "google.rpc.RetryInfo";
