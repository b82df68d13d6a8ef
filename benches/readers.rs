//! Ingest throughput while `/metrics` and the KPI API are read (issue 13,
//! "readers starve ingest").
//!
//! `cargo bench --bench readers` runs the pipeline in-process (no network,
//! no forwarding) on the captured fixtures, spread over 200 chains so the
//! KPI answer has 200 entries, and prints spans/s for: ingest alone; ingest
//! with a `/metrics` render loop and a KPI loop (`/api/v1/kpis?window=5m`
//! plus `/api/v1/top`) at a polling rate (`READ_INTERVAL_MS`, default 100 ms,
//! far more often than Prometheus or a dashboard polls); and with both loops
//! reading back to back. Each phase lasts `PHASE_SECS` (default 4).
//!
//! On a 2-core machine the back-to-back readers take CPU from ingest
//! whatever the locking; the polling line is the one to compare with the
//! ingest-alone line (≥ 80 % is the target).

use bytes::Bytes;
use chainpulse::api::query::{KpiQuery, TopQuery};
use chainpulse::config::Config;
use chainpulse::export::Registry;
use chainpulse::loadgen::FIXTURES;
use chainpulse::pipeline::Pipeline;
use chainpulse::receive::Protocol;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAINS: usize = 200;

/// The fixtures, with root span names (the chain) and trace ids varied.
fn bodies() -> Vec<(Bytes, u64)> {
    let mut out = Vec::new();
    for i in 0..CHAINS {
        for (_, raw) in FIXTURES {
            let mut req = ExportTraceServiceRequest::decode(raw).expect("fixture");
            let mut spans = 0;
            for rs in &mut req.resource_spans {
                for ss in &mut rs.scope_spans {
                    for s in &mut ss.spans {
                        spans += 1;
                        s.trace_id[0] = i as u8;
                        s.trace_id[1] = (i >> 8) as u8;
                        if s.parent_span_id.is_empty() {
                            s.name = format!("chain_{i}");
                        }
                    }
                }
            }
            out.push((Bytes::from(req.encode_to_vec()), spans));
        }
    }
    out
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Spans/s ingested over `secs` while `readers` run with `pause` between
/// reads (`None`: no readers).
fn phase(bodies: &[(Bytes, u64)], secs: u64, pause: Option<Duration>) -> (f64, u64) {
    let mut config = Config::default();
    config.kpi.max_chains = CHAINS + 10;
    let pipeline =
        Arc::new(Pipeline::new(&config, Arc::new(Registry::new()), None).expect("pipeline"));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    if let Some(pause) = pause {
        let kpi = KpiQuery::parse(&HashMap::new()).expect("kpi query");
        let top = TopQuery::parse(&HashMap::from([("by".to_owned(), "chain".to_owned())]))
            .expect("top query");
        for which in 0..2 {
            let (p, stop, reads, kpi, top) = (
                pipeline.clone(),
                stop.clone(),
                reads.clone(),
                kpi.clone(),
                top.clone(),
            );
            readers.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("runtime");
                while !stop.load(Ordering::Relaxed) {
                    if which == 0 {
                        std::hint::black_box(p.registry().render());
                    } else {
                        std::hint::black_box(rt.block_on(kpi.run(&p)));
                        std::hint::black_box(rt.block_on(top.run(&p)));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            }));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let spans = rt.block_on(async {
        let start = Instant::now();
        let mut spans = 0u64;
        let mut last_tick = Instant::now();
        'outer: loop {
            for (body, n) in bodies {
                let slot = pipeline.try_begin(Protocol::HttpProtobuf).expect("slot");
                pipeline
                    .ingest(&slot, Protocol::HttpProtobuf, body.clone())
                    .await
                    .expect("ingest");
                spans += n;
                if last_tick.elapsed() > Duration::from_millis(250) {
                    pipeline.tick();
                    last_tick = Instant::now();
                }
                if start.elapsed() >= Duration::from_secs(secs) {
                    break 'outer;
                }
            }
        }
        spans as f64 / start.elapsed().as_secs_f64()
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    (spans, reads.load(Ordering::Relaxed))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = if quick { 1 } else { env("PHASE_SECS", 4) };
    let interval = Duration::from_millis(env("READ_INTERVAL_MS", 100));
    let bodies = bodies();
    let (alone, _) = phase(&bodies, secs, None);
    println!("ingest alone:                        {alone:>10.0} spans/s");
    let (polled, reads) = phase(&bodies, secs, Some(interval));
    println!(
        "with /metrics + KPI loops every {:>3} ms: {polled:>10.0} spans/s ({:.0} %, {reads} reads)",
        interval.as_millis(),
        100.0 * polled / alone
    );
    let (tight, reads) = phase(&bodies, secs, Some(Duration::ZERO));
    println!(
        "with back-to-back reader loops:      {tight:>10.0} spans/s ({:.0} %, {reads} reads)",
        100.0 * tight / alone
    );
}
