//! The ingest path on the real captures, against a full prost decode of the
//! same bodies (the ceiling the guide quotes), measured in one run.
//!
//! `cargo bench --bench ingest` — compare the `spans/s` of each line with
//! `full_decode` of the same run; absolute figures on a shared 2-core
//! machine are noisy, the ratios are what to quote.
//! `pipeline_ingest_fresh_traces` minus `copy_only` is the whole ingest with
//! a new trace per request (children parked until their root arrives).

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
    // The same bodies with new trace ids every iteration: every trace is new,
    // so children are parked until their root arrives, as in production. (In
    // the loop above, and in benches/peer, which resend one body, every
    // trace after the first pass is already completed and its children are
    // counted at once as late spans.) The ids are rewritten in a copy of the
    // body; `copy_only` is that copy alone.
    let fresh: Vec<(Vec<u8>, Vec<usize>)> = bodies.iter().map(trace_id_offsets).collect();
    let mut round: u64 = 0;
    g.bench_function("copy_only", |b| {
        b.iter(|| {
            round += 1;
            for (body, offsets) in &fresh {
                black_box(with_trace_ids(body, offsets, round));
            }
        })
    });
    g.bench_function("pipeline_ingest_fresh_traces", |b| {
        b.iter(|| {
            round += 1;
            for (body, offsets) in &fresh {
                let slot = pipeline.try_begin(Protocol::Grpc).expect("slot");
                let body = with_trace_ids(body, offsets, round);
                black_box(
                    rt.block_on(pipeline.ingest(&slot, Protocol::Grpc, body))
                        .expect("ingest"),
                );
            }
            pipeline.tick();
        })
    });
    g.finish();
}

/// Where each span's `trace_id` value starts in `body` (the field's tag
/// `0x0a`, length 16, then one of the request's trace ids).
fn trace_id_offsets(body: &Bytes) -> (Vec<u8>, Vec<usize>) {
    let req =
        chainpulse::otlp_view::ExportTraceServiceRequest::decode(body.clone()).expect("fixture");
    let ids: std::collections::HashSet<Vec<u8>> = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.trace_id.to_vec())
        .collect();
    let offsets = body
        .windows(18)
        .enumerate()
        .filter(|(_, w)| w[0] == 0x0a && w[1] == 16 && ids.contains(&w[2..]))
        .map(|(i, _)| i + 2)
        .collect();
    (body.to_vec(), offsets)
}

/// A copy of `body` whose trace ids have their first 8 bytes XORed with
/// `round` (a different, still valid, trace per round).
fn with_trace_ids(body: &[u8], offsets: &[usize], round: u64) -> Bytes {
    let mut b = body.to_vec();
    for &at in offsets {
        for (x, r) in b[at..at + 8].iter_mut().zip(round.to_le_bytes()) {
            *x ^= r;
        }
    }
    Bytes::from(b)
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = ingest
}
criterion_main!(benches);
