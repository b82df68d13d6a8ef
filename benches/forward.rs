//! What forwarding costs the ingest path, against a null upstream, measured
//! in one run.
//!
//! `cargo bench --bench forward` — four variants of the same load: K = 4
//! tasks call `Pipeline::ingest` flat out with ~500-span requests (the real
//! captures of `tests/fixtures`, concatenated like an SDK batch) on a
//! multi-thread tokio runtime with 2 workers (`server.worker_threads`'
//! default). The forwarder's sender task and a null OTLP/gRPC upstream (a
//! tonic `TraceService` that counts spans and answers OK) run in that same
//! runtime, so their CPU is part of what is measured.
//!
//! * `baseline`: no forwarding.
//! * `memory`: one gRPC destination, memory queue (8 GiB: back-pressure
//!   never triggers; if it did, ingest panics instead of counting refusals).
//! * `disk_fsync_always`: disk queue in a tempdir, fsync per export (group
//!   commit: appends in flight together share one fsync).
//! * `disk_fsync_interval`: disk queue, fsync once a second.
//!
//! Each variant is measured twice:
//!
//! * ingest-side (criterion, `spans/s`): how fast ingest returns. If the
//!   sender falls behind, this rate only lasts while the queue grows, so the
//!   queue depth left at the end (and how long it took to empty) is printed;
//! * drained: a fixed number of spans (600 000), timed until ingest is done
//!   *and* until the upstream has received every span (the sustainable
//!   rate). Two rounds, interleaved across the variants, summed.
//!
//! The closing `forward summary` lines give both, with the ratio to
//! `baseline` of the same run. Absolute figures on a shared 2-core machine
//! are noisy; the ratios are what to quote.
//! `FORWARD_BENCH_VARIANTS=memory,disk_fsync_always` runs only those (and
//! the baseline), e.g. under `perf record`.

use bytes::Bytes;
use chainpulse::config::Config;
use chainpulse::export::Registry;
use chainpulse::forward::config::{
    DestinationConfig, ExportProtocol, FsyncMode, QueueConfig, QueueKind,
};
use chainpulse::forward::Forwarder;
use chainpulse::loadgen::FIXTURES;
use chainpulse::pipeline::Pipeline;
use chainpulse::receive::Protocol;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent ingest tasks.
const K: usize = 4;
/// `server.worker_threads` default.
const WORKERS: usize = 2;
/// Rounds of the six captures per request: 5 × 96 = 480 spans, ~1.1 MB.
const ROUNDS_PER_REQUEST: usize = 5;
/// Requests of one drained run (1 250 × 480 = 600 000 spans).
const DRAINED_REQUESTS: u64 = 1_250;
/// Drained runs per variant, interleaved.
const DRAINED_ROUNDS: usize = 2;
const SAMPLE_SIZE: usize = 10;
/// Large enough that neither queue pushes back during a run.
const QUEUE_MAX_BYTES: u64 = 8 << 30;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Baseline,
    Memory,
    DiskFsyncAlways,
    DiskFsyncInterval,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Baseline,
        Variant::Memory,
        Variant::DiskFsyncAlways,
        Variant::DiskFsyncInterval,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Memory => "memory",
            Variant::DiskFsyncAlways => "disk_fsync_always",
            Variant::DiskFsyncInterval => "disk_fsync_interval",
        }
    }

    /// The `[forward]` of this variant.
    fn config(self, upstream: SocketAddr, queue_dir: &Path) -> Config {
        let mut config = Config::default();
        let queue = match self {
            Variant::Baseline => return config,
            Variant::Memory => QueueConfig {
                kind: QueueKind::Memory,
                max_bytes: QUEUE_MAX_BYTES,
                ..QueueConfig::default()
            },
            Variant::DiskFsyncAlways | Variant::DiskFsyncInterval => QueueConfig {
                kind: QueueKind::Disk,
                dir: Some(queue_dir.to_path_buf()),
                max_bytes: QUEUE_MAX_BYTES,
                fsync: if self == Variant::DiskFsyncAlways {
                    FsyncMode::Always
                } else {
                    FsyncMode::Interval
                },
                ..QueueConfig::default()
            },
        };
        config.forward.destinations.push(DestinationConfig {
            name: "null".into(),
            protocol: Some(ExportProtocol::Grpc),
            endpoint: Some(format!("http://{upstream}")),
            queue,
            ..DestinationConfig::default()
        });
        config
    }
}

/// Counts what it receives and answers OK at once.
#[derive(Default)]
struct NullUpstream {
    spans: AtomicU64,
    requests: AtomicU64,
}

#[tonic::async_trait]
impl TraceService for NullUpstream {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves the null upstream on 127.0.0.1:0 in the current runtime; HTTP/2
/// windows as chainpulse's own receiver sets them.
async fn start_upstream(upstream: Arc<NullUpstream>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the null upstream");
    let addr = listener.local_addr().expect("local addr");
    let service = TraceServiceServer::from_arc(upstream).max_decoding_message_size(64 << 20);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .initial_stream_window_size(Some(1 << 20))
            .initial_connection_window_size(Some(4 << 20))
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("null upstream");
    });
    addr
}

fn count_spans(body: &Bytes) -> u64 {
    let r = chainpulse::otlp_view::ExportTraceServiceRequest::decode(body.clone())
        .expect("fixture decodes");
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// Six ~500-span requests (every capture `ROUNDS_PER_REQUEST` times, each
/// starting from a different capture), and the spans in each (all equal).
fn requests() -> (Arc<Vec<Bytes>>, u64) {
    let n = FIXTURES.len();
    let bodies: Vec<Bytes> = (0..n)
        .map(|first| {
            let mut body = Vec::new();
            for j in 0..n * ROUNDS_PER_REQUEST {
                body.extend_from_slice(FIXTURES[(first + j) % n].1);
            }
            Bytes::from(body)
        })
        .collect();
    let spans = count_spans(&bodies[0]);
    assert!(bodies.iter().all(|b| count_spans(b) == spans));
    (Arc::new(bodies), spans)
}

/// `requests` ingests spread over K tasks: the wall time until all are
/// done, and each request's latency.
async fn drive(
    pipeline: Arc<Pipeline>,
    bodies: Arc<Vec<Bytes>>,
    requests: u64,
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..K as u64)
        .map(|k| {
            let n = requests / K as u64 + u64::from(k < requests % K as u64);
            let pipeline = pipeline.clone();
            let bodies = bodies.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let body = bodies[((k + i) % bodies.len() as u64) as usize].clone();
                    let t = Instant::now();
                    let slot = pipeline
                        .try_begin(Protocol::Grpc)
                        .expect("an in-flight slot (K is far below the limit)");
                    match pipeline.ingest(&slot, Protocol::Grpc, body).await {
                        Ok(a) => assert_eq!(a.rejected, 0, "{}", a.message),
                        Err(e) => panic!(
                            "ingest refused a request ({}: {e}); refusals are not throughput — \
                             the queue must not push back in this bench",
                            e.reason()
                        ),
                    }
                    latencies.push(t.elapsed());
                    // A request is its own task in the server, so other
                    // tasks (the sender, the upstream) run between two;
                    // without this, an ingest that never waits (memory
                    // queue, no forwarding) would hold its worker for the
                    // whole loop and starve them.
                    tokio::task::yield_now().await;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests as usize);
    for t in tasks {
        latencies.extend(t.await.expect("ingest task failed"));
    }
    (started.elapsed(), latencies)
}

/// Process CPU time (user + system, all threads) from /proc/self/stat.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// What one variant yielded.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// Criterion phase: spans/s over the measured samples.
    ingest_side: f64,
    /// Queue depth in spans when the criterion phase ended.
    end_depth: u64,
    /// Largest queue depth (spans) seen by the 250 ms tick.
    peak_spans: u64,
    /// Time for the queue to empty after the criterion phase.
    drain_after: Duration,
    /// Drained runs: (ingest done, upstream has everything, process CPU).
    drained: Vec<(Duration, Duration, Option<Duration>)>,
    /// Drained runs: latency of every ingest call.
    latencies: Vec<Duration>,
}

impl Figures {
    fn drained_total(&self) -> (Duration, Duration, Option<Duration>) {
        let ingest = self.drained.iter().map(|d| d.0).sum();
        let e2e = self.drained.iter().map(|d| d.1).sum();
        let cpu = self.drained.iter().map(|d| d.2).sum();
        (ingest, e2e, cpu)
    }

    /// Spans/s until ingest returned, over every drained run.
    fn drained_ingest(&self, spans_per_run: u64) -> f64 {
        (spans_per_run * self.drained.len() as u64) as f64 / self.drained_total().0.as_secs_f64()
    }

    /// Spans/s until the upstream had every span, over every drained run.
    fn drained_e2e(&self, spans_per_run: u64) -> f64 {
        (spans_per_run * self.drained.len() as u64) as f64 / self.drained_total().1.as_secs_f64()
    }

    /// Ingest latency quantile (ms) over the drained runs.
    fn latency_ms(&self, q: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len().max(1)) - 1;
        l.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    fn cpu_us_per_span(&self, spans_per_run: u64) -> Option<f64> {
        let cpu = self.drained_total().2?;
        Some(cpu.as_secs_f64() * 1e6 / (spans_per_run * self.drained.len() as u64) as f64)
    }
}

/// Waits (on this thread, off the runtime) until the upstream has `target`
/// spans and the queue is empty; panics after `DRAIN_TIMEOUT`.
fn wait_drained(forwarder: &Forwarder, upstream: &NullUpstream, target: u64, what: &str) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let queue = &forwarder.destinations()[0].queue;
    loop {
        if upstream.spans.load(Ordering::Relaxed) >= target && queue.depth().records == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the queue did not drain within {DRAIN_TIMEOUT:?} (depth {:?}, upstream has {} of {target} spans)",
            queue.depth(),
            upstream.spans.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One variant's pipeline and forwarder, alive for the whole run.
struct Setup {
    variant: Variant,
    pipeline: Arc<Pipeline>,
    forwarder: Option<Arc<Forwarder>>,
    tick: tokio::task::JoinHandle<()>,
    peak: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
    figures: Figures,
}

impl Setup {
    fn new(rt: &tokio::runtime::Runtime, addr: SocketAddr, variant: Variant) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = variant.config(addr, &dir.path().join("queue"));
        let registry = Arc::new(Registry::new());
        let forwarder = {
            let _in_runtime = rt.enter();
            Forwarder::start(&config, registry.clone()).expect("forwarder starts")
        };
        assert_eq!(forwarder.is_some(), variant != Variant::Baseline);
        let pipeline =
            Arc::new(Pipeline::new(&config, registry, forwarder.clone()).expect("pipeline"));
        // The server's 250 ms tick (aggregator sweep, gauges), which also
        // records the largest queue depth it sees.
        let peak = Arc::new(AtomicU64::new(0));
        let tick = {
            let pipeline = pipeline.clone();
            let peak = peak.clone();
            rt.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    pipeline.tick();
                    if let Some(f) = pipeline.forwarder() {
                        peak.fetch_max(f.destinations()[0].queue.depth().spans, Ordering::Relaxed);
                    }
                }
            })
        };
        Setup {
            variant,
            pipeline,
            forwarder,
            tick,
            peak,
            _dir: dir,
            figures: Figures::default(),
        }
    }

    /// Criterion's measurement of the ingest-side rate, then waits for the
    /// backlog it left to reach the upstream.
    fn criterion_phase(
        &mut self,
        c: &mut Criterion,
        rt: &tokio::runtime::Runtime,
        upstream: &NullUpstream,
    ) {
        let (bodies, spans_per_request) = requests();
        let upstream_at_start = upstream.spans.load(Ordering::Relaxed);
        let samples: Mutex<Vec<(u64, Duration)>> = Mutex::new(Vec::new());
        let mut g = c.benchmark_group("forward");
        g.throughput(Throughput::Elements(spans_per_request));
        g.sample_size(SAMPLE_SIZE);
        g.bench_function(self.variant.name(), |b| {
            b.iter_custom(|iters| {
                let (d, _) = rt.block_on(drive(self.pipeline.clone(), bodies.clone(), iters));
                samples.lock().expect("samples").push((iters, d));
                d
            })
        });
        g.finish();
        let samples = samples.into_inner().expect("samples");
        // The last SAMPLE_SIZE calls are criterion's measurement (the
        // others are its warm-up).
        let measured = &samples[samples.len().saturating_sub(SAMPLE_SIZE)..];
        let iters: u64 = measured.iter().map(|s| s.0).sum();
        let secs: f64 = measured.iter().map(|s| s.1.as_secs_f64()).sum();
        self.figures.ingest_side = (iters * spans_per_request) as f64 / secs;

        let Some(f) = &self.forwarder else { return };
        let d = f.destinations()[0].queue.depth();
        let delivered = upstream.spans.load(Ordering::Relaxed) - upstream_at_start;
        let ingested: u64 = samples.iter().map(|s| s.0).sum::<u64>() * spans_per_request;
        self.figures.end_depth = d.spans;
        println!(
            "forward {}: criterion ingested {ingested} spans, the upstream got {delivered} meanwhile; queue when ingest stopped: {} records, {} spans, {} bytes",
            self.variant.name(),
            d.records,
            d.spans,
            d.bytes
        );
        let t = Instant::now();
        wait_drained(
            f,
            upstream,
            upstream_at_start + ingested,
            self.variant.name(),
        );
        self.figures.drain_after = t.elapsed();
        println!(
            "forward {}: drained {:.2} s after ingest stopped",
            self.variant.name(),
            self.figures.drain_after.as_secs_f64()
        );
    }

    /// A fixed number of spans, timed until ingest is done and until the
    /// upstream has them all.
    fn drained_run(&mut self, rt: &tokio::runtime::Runtime, upstream: &NullUpstream) {
        let (bodies, spans_per_request) = requests();
        let total = DRAINED_REQUESTS * spans_per_request;
        let before = upstream.spans.load(Ordering::Relaxed);
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let (ingest, latencies) =
            rt.block_on(drive(self.pipeline.clone(), bodies, DRAINED_REQUESTS));
        let delivered_during_ingest = upstream.spans.load(Ordering::Relaxed) - before;
        self.figures.latencies.extend(latencies);
        if let Some(f) = &self.forwarder {
            wait_drained(f, upstream, before + total, self.variant.name());
            let got = upstream.spans.load(Ordering::Relaxed) - before;
            assert_eq!(got, total, "the upstream received every span exactly once");
        }
        let e2e = t0.elapsed();
        let cpu = cpu0.zip(cpu_time()).map(|(a, b)| b - a);
        println!(
            "forward {}: drained run of {total} spans: ingest {:.2} s (the upstream had {delivered_during_ingest} by then), end-to-end {:.2} s",
            self.variant.name(),
            ingest.as_secs_f64(),
            e2e.as_secs_f64()
        );
        self.figures.drained.push((ingest, e2e, cpu));
    }

    fn finish(self, rt: &tokio::runtime::Runtime) -> (Variant, Figures) {
        self.tick.abort();
        if let Some(f) = &self.forwarder {
            rt.block_on(f.shutdown(Duration::from_secs(10)));
        }
        let mut figures = self.figures;
        figures.peak_spans = self.peak.load(Ordering::Relaxed);
        (self.variant, figures)
    }
}

fn forward(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = Arc::new(NullUpstream::default());
    let addr = rt.block_on(start_upstream(upstream.clone()));

    // `FORWARD_BENCH_VARIANTS=memory` runs only that one (and the
    // baseline it is compared with), e.g. under `perf record`.
    let only = std::env::var("FORWARD_BENCH_VARIANTS").unwrap_or_default();
    let mut setups: Vec<Setup> = Variant::ALL
        .into_iter()
        .filter(|v| {
            *v == Variant::Baseline || only.is_empty() || only.split(',').any(|o| o == v.name())
        })
        .map(|v| Setup::new(&rt, addr, v))
        .collect();
    for s in &mut setups {
        s.criterion_phase(c, &rt, &upstream);
    }
    // Drained runs interleaved (every variant once per round), so a change
    // in the machine's load hits all of them alike.
    for _ in 0..DRAINED_ROUNDS {
        for s in &mut setups {
            s.drained_run(&rt, &upstream);
        }
    }
    let results: Vec<(Variant, Figures)> = setups.into_iter().map(|s| s.finish(&rt)).collect();

    let spans_per_run = DRAINED_REQUESTS * requests().1;
    let base = &results[0].1;
    let k = |x: f64| x / 1e3;
    println!();
    println!(
        "forward summary: {K} ingest tasks, {WORKERS} workers, {} spans per request; drained: {DRAINED_ROUNDS} interleaved runs of {spans_per_run} spans per variant; ratio = variant / baseline of this run",
        requests().1,
    );
    for (v, f) in &results {
        println!(
            "forward summary: {:<20} ingest-side {:>4.0} k spans/s ({:.2}x) | drained: ingest {:>4.0} k spans/s ({:.2}x), end-to-end {:>4.0} k spans/s ({:.2}x) | queue at stop {} spans, peak {}, empty {:.1} s later | CPU {} µs/span | ingest latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v.name(),
            k(f.ingest_side),
            f.ingest_side / base.ingest_side,
            k(f.drained_ingest(spans_per_run)),
            f.drained_ingest(spans_per_run) / base.drained_ingest(spans_per_run),
            k(f.drained_e2e(spans_per_run)),
            f.drained_e2e(spans_per_run) / base.drained_e2e(spans_per_run),
            f.end_depth,
            f.peak_spans,
            f.drain_after.as_secs_f64(),
            f.cpu_us_per_span(spans_per_run)
                .map_or("?".into(), |u| format!("{u:.2}")),
            f.latency_ms(0.5),
            f.latency_ms(0.99),
            f.latency_ms(1.0),
        );
    }
    for (v, f) in results.iter().skip(1) {
        let floor = if *v == Variant::Memory { 0.75 } else { 0.5 };
        let ingest = f.ingest_side / base.ingest_side;
        let e2e = f.drained_e2e(spans_per_run) / base.drained_e2e(spans_per_run);
        let verdict = |x: f64| if x >= floor { "met" } else { "NOT met" };
        println!(
            "forward summary: {:<20} needs >= {floor:.2}x baseline: ingest-side {} ({ingest:.3}x), sustained end-to-end {} ({e2e:.3}x)",
            v.name(),
            verdict(ingest),
            verdict(e2e),
        );
    }
    println!(
        "forward summary: the null upstream received {} requests, {} spans in all",
        upstream.requests.load(Ordering::Relaxed),
        upstream.spans.load(Ordering::Relaxed)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = forward
}
criterion_main!(benches);
