//! Stage 1: OTLP trace export requests in.
//!
//! Both transports end in the same place: the request's protobuf bytes go to
//! [`crate::pipeline::Pipeline::ingest`], which decodes them zero-copy,
//! validates, normalizes and aggregates. OTLP/JSON is converted to protobuf
//! first, so everything downstream sees one format.

pub mod body;
pub mod budget;
pub mod error;
pub mod grpc;
pub mod grpc_body;
pub mod gzip;
pub mod http;
pub mod json;
pub mod validate;

pub use error::IngestError;

/// How a request arrived (a label on the self-metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http_protobuf",
            Protocol::HttpJson => "http_json",
        }
    }
}
