//! `chainpulse loadgen`: replays the captured LangChain fixtures against a
//! running collector over OTLP/gRPC or OTLP/HTTP, with many connections,
//! flat out or at a fixed span rate, and reports throughput and export
//! latency (P50 / P99).
//!
//! It also reports **capacity**: the chain requests per second the
//! collector itself counted (`chainpulse_requests_total` on its `/metrics`,
//! read before and after the run) against a capacity target (100 req/s by
//! default). "Throughput > 100 req/s" is a load-test target: it belongs
//! here, not on live traffic, where a quiet hour is not a failure (the live
//! throughput floor, `slo.min_throughput_rps`, is opt-in).
//!
//! Bodies are pre-encoded once, so the generator's own cost per request is a
//! refcount, not an encode: on a 2-core machine the client and the server
//! share the CPU, and a cheap client leaves more of it to the server.

use crate::aggregate::sketch::QuantileSketch;
use crate::receive::grpc::RawExportRequest;
use anyhow::{bail, Context};
use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The captured requests (`tests/fixtures/*.pb`), embedded.
pub const FIXTURES: [(&str, &[u8]); 6] = [
    (
        "langchain-openinference",
        include_bytes!("../tests/fixtures/langchain-openinference.pb"),
    ),
    (
        "langchain-openinference-stream",
        include_bytes!("../tests/fixtures/langchain-openinference-stream.pb"),
    ),
    (
        "langchain-openllmetry",
        include_bytes!("../tests/fixtures/langchain-openllmetry.pb"),
    ),
    (
        "langchain-openllmetry-stream",
        include_bytes!("../tests/fixtures/langchain-openllmetry-stream.pb"),
    ),
    (
        "langchain-langsmith",
        include_bytes!("../tests/fixtures/langchain-langsmith.pb"),
    ),
    (
        "langchain-langsmith-stream",
        include_bytes!("../tests/fixtures/langchain-langsmith-stream.pb"),
    ),
];

#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// `grpc` or `http`.
    #[arg(long, default_value = "grpc")]
    pub protocol: String,
    /// Target: `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for HTTP.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Target spans per second across all connections (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub spans_per_sec: u64,
    /// Fixture requests per export request. Concatenated protobuf messages
    /// merge (repeated fields append), so 32 makes ~500-span requests, the
    /// size an OTel SDK batch processor sends (max_export_batch_size 512).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// The collector's metrics listener, read before and after the run for
    /// the chain requests it counted (the capacity figure).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub metrics_url: String,
    /// Capacity target in chain requests per second.
    #[arg(long, default_value_t = 100.0)]
    pub capacity_target_rps: f64,
}

/// Chain requests the collector has counted so far.
async fn counted_requests(metrics_url: &str) -> anyhow::Result<f64> {
    let url = format!("{}/metrics", metrics_url.trim_end_matches('/'));
    let resp = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot read {url}"))?;
    if !resp.status().is_success() {
        bail!("{url}: HTTP {}", resp.status());
    }
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    let samples = crate::export::text::parse(&text);
    Ok(crate::export::text::sum(
        &samples,
        crate::export::names::REQUESTS_TOTAL,
        &[],
    ))
}

#[derive(Debug, Clone, Copy)]
struct Body {
    spans: u64,
    index: usize,
}

/// Counts spans in a protobuf request (for reporting).
fn count_spans(body: &[u8]) -> anyhow::Result<u64> {
    let req = crate::otlp_view::ExportTraceServiceRequest::decode(body)?;
    Ok(req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum())
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let batch = args.batch.max(1);
    let bodies: Vec<Bytes> = (0..FIXTURES.len())
        .map(|i| {
            let mut body = Vec::new();
            for j in 0..batch {
                body.extend_from_slice(FIXTURES[(i + j) % FIXTURES.len()].1);
            }
            Bytes::from(body)
        })
        .collect();
    let meta: Vec<Body> = bodies
        .iter()
        .enumerate()
        .map(|(index, b)| {
            Ok(Body {
                spans: count_spans(b)?,
                index,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let spans_per_round: u64 = meta.iter().map(|m| m.spans).sum();
    let grpc = match args.protocol.as_str() {
        "grpc" => true,
        "http" => false,
        other => bail!("--protocol must be grpc or http, not {other:?}"),
    };
    let endpoint = args.endpoint.clone().unwrap_or_else(|| {
        if grpc {
            "http://127.0.0.1:4317"
        } else {
            "http://127.0.0.1:4318"
        }
        .to_owned()
    });
    let bodies = Arc::new(bodies);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    // Per connection: one request every `pause` keeps the total span rate.
    let pause = (args.spans_per_sec > 0).then(|| {
        let per_request = spans_per_round as f64 / meta.len() as f64;
        let requests_per_sec = args.spans_per_sec as f64 / per_request;
        Duration::from_secs_f64(args.connections as f64 / requests_per_sec)
    });

    let counted_before = counted_requests(&args.metrics_url).await;
    let mut tasks = Vec::new();
    for worker in 0..args.connections.max(1) {
        let bodies = bodies.clone();
        let meta = meta.clone();
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = Sender::connect(grpc, &endpoint).await?;
            let mut sketch = QuantileSketch::new();
            let (mut spans, mut requests, mut failures) = (0u64, 0u64, 0u64);
            let mut i = worker;
            let mut next = Instant::now();
            while Instant::now() < deadline {
                if let Some(p) = pause {
                    tokio::time::sleep_until(next.into()).await;
                    next += p;
                }
                let m = meta[i % meta.len()];
                i += 1;
                let started = Instant::now();
                match sender.send(bodies[m.index].clone()).await {
                    Ok(()) => {
                        sketch.add(started.elapsed().as_secs_f64());
                        spans += m.spans;
                        requests += 1;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures <= 3 {
                            eprintln!("loadgen: export failed: {e:#}");
                        }
                    }
                }
            }
            anyhow::Ok((sketch, spans, requests, failures))
        }));
    }
    let started = Instant::now();
    let mut sketch = QuantileSketch::new();
    let (mut spans, mut requests, mut failures) = (0, 0, 0);
    for t in tasks {
        let (s, sp, rq, f) = t.await.context("loadgen worker")??;
        sketch.merge(&s);
        spans += sp;
        requests += rq;
        failures += f;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let ms = |q: f64| sketch.quantile(q).map_or(f64::NAN, |v| v * 1e3);
    println!(
        "loadgen {} (batch {}): {} connections, {:.1}s: {} requests ({:.0}/s), {} spans ({:.0} spans/s), {} failed; export latency p50 {:.3} ms p99 {:.3} ms",
        args.protocol, args.batch.max(1), args.connections, secs, requests, requests as f64 / secs, spans,
        spans as f64 / secs, failures, ms(0.5), ms(0.99)
    );
    let counted = match counted_before {
        Ok(before) => counted_requests(&args.metrics_url)
            .await
            .map(|after| after - before),
        Err(e) => Err(e),
    };
    println!("{}", capacity_line(counted, secs, args.capacity_target_rps));
    if requests == 0 {
        bail!("no export succeeded");
    }
    Ok(())
}

/// `capacity 312.4 chain requests/s (counted by the collector) against the
/// capacity target 100 req/s: met`.
fn capacity_line(counted: anyhow::Result<f64>, secs: f64, target: f64) -> String {
    match counted {
        Ok(n) => {
            let rps = n / secs.max(1e-9);
            let verdict = if rps >= target { "met" } else { "NOT met" };
            format!(
                "capacity {rps:.1} chain requests/s ({n:.0} counted by the collector in {secs:.1}s) against the capacity target {target} req/s: {verdict}"
            )
        }
        Err(e) => format!(
            "capacity unknown: {e:#} (pass the collector's --metrics-url to measure it against the {target} req/s target)"
        ),
    }
}

enum Sender {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http(reqwest::Client, String),
}

impl Sender {
    async fn connect(grpc: bool, endpoint: &str) -> anyhow::Result<Sender> {
        if grpc {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
                .connect()
                .await
                .with_context(|| format!("connecting to {endpoint}"))?;
            Ok(Sender::Grpc(tonic::client::Grpc::new(channel)))
        } else {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            Ok(Sender::Http(reqwest::Client::new(), url))
        }
    }

    async fn send(&mut self, body: Bytes) -> anyhow::Result<()> {
        match self {
            Sender::Grpc(client) => {
                client.ready().await?;
                let path = http::uri::PathAndQuery::from_static(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                );
                client
                    .unary(
                        tonic::Request::new(RawExportRequest(body)),
                        path,
                        ClientCodec,
                    )
                    .await?;
                Ok(())
            }
            Sender::Http(client, url) => {
                let resp = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("HTTP {}", resp.status());
                }
                resp.bytes().await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capacity_line;

    #[test]
    fn capacity_against_its_target() {
        let met = capacity_line(Ok(1500.0), 10.0, 100.0);
        assert!(
            met.starts_with("capacity 150.0 chain requests/s") && met.ends_with(": met"),
            "{met}"
        );
        let not = capacity_line(Ok(500.0), 10.0, 100.0);
        assert!(not.ends_with("NOT met"), "{not}");
        let unknown = capacity_line(Err(anyhow::anyhow!("cannot read x")), 10.0, 100.0);
        assert!(
            unknown.contains("capacity unknown: cannot read x"),
            "{unknown}"
        );
    }
}

/// Client side of the raw codec: sends pre-encoded bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCodec;

impl Codec for ClientCodec {
    type Encode = RawExportRequest;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = RawExportRequest;
    type Error = Status;
    fn encode(&mut self, item: RawExportRequest, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding response: {e}")))
    }
}
