//! Compiles chainpulse's own `.proto` files with protox, a pure-Rust protobuf
//! compiler, so building needs no system `protoc`.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");

    // Zero-copy view of OTLP traces: `bytes` fields become `bytes::Bytes`.
    let view = protox::compile(["chainpulse/otlp_view.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(view)?;

    // The OTLP TraceService server, with the request kept as raw bytes.
    let ingest = protox::compile(["chainpulse/ingest.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(
            ".opentelemetry.proto.collector.trace.v1.RawExportRequest",
            "crate::receive::grpc::RawExportRequest",
        )
        .extern_path(
            ".opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse",
            "::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse",
        )
        .codec_path("crate::receive::grpc::RawCodec")
        .compile_fds(ingest)?;

    // Metrics and logs services that answer "traces only".
    let others = protox::compile(
        [
            "chainpulse/traces_only_metrics.proto",
            "chainpulse/traces_only_logs.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(others)?;

    // chainpulse's own KPI query service (server, and a client for tests and
    // tools).
    let kpi = protox::compile(["chainpulse/kpi.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(kpi)?;
    Ok(())
}
