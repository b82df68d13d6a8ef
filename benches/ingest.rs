//! The ingest path on the real captures, against a full prost decode of the
//! same bodies (the ceiling the guide quotes), measured in one run.
//!
//! `cargo bench --bench ingest` — compare the `spans/s` of each line with
//! `full_decode` of the same run; absolute figures on a shared 2-core
//! machine are noisy, the ratios are what to quote.

use bytes::Bytes;
use chainpulse::config::Config;
use chainpulse::export::Registry;
use chainpulse::loadgen::FIXTURES;
use chainpulse::normalize::normalize_request;
use chainpulse::pipeline::Pipeline;
use chainpulse::receive::validate::validate;
use chainpulse::receive::Protocol;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use std::hint::black_box;
use std::sync::Arc;

fn bodies() -> (Vec<Bytes>, u64) {
    let bodies: Vec<Bytes> = FIXTURES
        .iter()
        .map(|(_, b)| Bytes::from_static(b))
        .collect();
    let spans = bodies
        .iter()
        .map(|b| {
            let r = chainpulse::otlp_view::ExportTraceServiceRequest::decode(b.clone())
                .expect("fixture");
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len() as u64)
                .sum::<u64>()
        })
        .sum();
    (bodies, spans)
}

fn ingest(c: &mut Criterion) {
    let (bodies, spans) = bodies();
    let mut g = c.benchmark_group("ingest_fixtures");
    g.throughput(Throughput::Elements(spans));

    g.bench_function("full_decode", |b| {
        b.iter(|| {
            for body in &bodies {
                let r = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                    body.clone(),
                )
                .expect("decode");
                black_box(r);
            }
        })
    });
    g.bench_function("view_decode", |b| {
        b.iter(|| {
            for body in &bodies {
                let r = chainpulse::otlp_view::ExportTraceServiceRequest::decode(body.clone())
                    .expect("decode");
                black_box(r);
            }
        })
    });
    g.bench_function("decode_validate_normalize", |b| {
        b.iter(|| {
            for body in &bodies {
                let r = chainpulse::otlp_view::ExportTraceServiceRequest::decode(body.clone())
                    .expect("decode");
                black_box(validate(&r).expect("valid"));
                black_box(normalize_request(&r));
            }
        })
    });
    let config = Config::default();
    let pipeline = Pipeline::new(&config, Arc::new(Registry::new()), None).expect("pipeline");
    // Without forwarding, ingest never waits; a current-thread runtime
    // polls it to completion with little overhead.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    g.bench_function("pipeline_ingest", |b| {
        b.iter(|| {
            for body in &bodies {
                let slot = pipeline.try_begin(Protocol::Grpc).expect("slot");
                black_box(
                    rt.block_on(pipeline.ingest(&slot, Protocol::Grpc, body.clone()))
                        .expect("ingest"),
                );
            }
            pipeline.tick();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = ingest
}
criterion_main!(benches);
