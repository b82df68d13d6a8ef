//! OTLP/gRPC: `TraceService/Export`, with the request kept as raw bytes.
//!
//! tonic's generated server (from `proto/chainpulse/ingest.proto`) is given a
//! codec whose request type is the message's bytes, sliced out of tonic's
//! buffer without a copy. gzip is accepted; tonic enforces the size limit on
//! the message both as sent and once decompressed.

use crate::pipeline::Pipeline;
use crate::receive::Protocol;
use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use std::sync::Arc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

/// Generated from proto/chainpulse/ingest.proto.
pub mod generated {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(
        env!("OUT_DIR"),
        "/opentelemetry.proto.collector.trace.v1.rs"
    ));
}

pub use generated::trace_service_server::{TraceService, TraceServiceServer};

/// The protobuf bytes of one `ExportTraceServiceRequest`.
#[derive(Debug, Clone, Default)]
pub struct RawExportRequest(pub Bytes);

/// Encodes responses with prost; hands requests over undecoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = RawExportRequest;
    type Encoder = ResponseEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseEncoder;

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = RawExportRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let len = src.remaining();
        Ok(Some(RawExportRequest(src.copy_to_bytes(len))))
    }
}

/// The service implementation: hands bytes to the pipeline.
pub struct OtlpGrpc {
    pipeline: Arc<Pipeline>,
}

impl OtlpGrpc {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        OtlpGrpc { pipeline }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<RawExportRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let body = request.into_inner().0;
        let slot = self
            .pipeline
            .try_begin(Protocol::Grpc)
            .map_err(|e| e.grpc_status())?;
        match self.pipeline.ingest(&slot, Protocol::Grpc, body).await {
            Ok(outcome) => {
                let partial_success = (outcome.rejected > 0).then_some(ExportTracePartialSuccess {
                    rejected_spans: outcome.rejected as i64,
                    error_message: outcome.message,
                });
                Ok(Response::new(ExportTraceServiceResponse {
                    partial_success,
                }))
            }
            Err(e) => Err(e.grpc_status()),
        }
    }
}

/// `MetricsService` and `LogsService` answer UNIMPLEMENTED with a message
/// saying what chainpulse accepts, instead of the bare "unknown service".
pub mod traces_only {
    use tonic::{Request, Response, Status};

    pub mod metrics_v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(
            env!("OUT_DIR"),
            "/opentelemetry.proto.collector.metrics.v1.rs"
        ));
    }
    pub mod logs_v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(
            env!("OUT_DIR"),
            "/opentelemetry.proto.collector.logs.v1.rs"
        ));
    }
    use logs_v1::logs_service_server::{LogsService, LogsServiceServer};
    use metrics_v1::metrics_service_server::{MetricsService, MetricsServiceServer};

    pub const MESSAGE: &str =
        "chainpulse accepts OTLP traces only (TraceService/Export, or POST /v1/traces); \
send metrics and logs to an OpenTelemetry Collector";

    #[derive(Debug, Default, Clone, Copy)]
    pub struct TracesOnly;

    #[tonic::async_trait]
    impl MetricsService for TracesOnly {
        async fn export(
            &self,
            _: Request<metrics_v1::UnreadRequest>,
        ) -> Result<Response<metrics_v1::EmptyResponse>, Status> {
            Err(Status::unimplemented(MESSAGE))
        }
    }

    #[tonic::async_trait]
    impl LogsService for TracesOnly {
        async fn export(
            &self,
            _: Request<logs_v1::UnreadRequest>,
        ) -> Result<Response<logs_v1::EmptyResponse>, Status> {
            Err(Status::unimplemented(MESSAGE))
        }
    }

    pub fn metrics() -> MetricsServiceServer<TracesOnly> {
        MetricsServiceServer::new(TracesOnly)
    }

    pub fn logs() -> LogsServiceServer<TracesOnly> {
        LogsServiceServer::new(TracesOnly)
    }
}
