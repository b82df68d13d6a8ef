//! What forwarding costs the ingest path, against a null upstream, measured
//! in one run.
//!
//! `cargo bench --bench forward` — four variants of the same load: K = 4
//! tasks call `Pipeline::ingest` flat out with ~500-span requests (the real
//! captures of `tests/fixtures`, concatenated like an SDK batch) on a
//! multi-thread tokio runtime with 2 workers (`server.worker_threads`'
//! default). The forwarder's sender task runs in that same runtime, so its
//! CPU is part of what is measured.
//!
//! The null OTLP/gRPC upstream (a tonic `TraceService` on chainpulse's
//! raw-bytes codec that counts spans and answers OK) runs in a separate OS
//! process: this bench executable re-run with `CHAINPULSE_BENCH_NULL_UPSTREAM=1`
//! (one tokio worker; it prints `PORT <n>` and serves until its stdin
//! closes). In production the upstream runs elsewhere, so its receive cost
//! (TCP receive, HTTP/2 server, span count) must not be charged to
//! chainpulse: the bench process's CPU (`/proc/self/stat`) is chainpulse's
//! own. The upstream still shares this machine's cores, so it still competes
//! for them; its own CPU is printed separately.
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
//!   *and* until every span was delivered (the sustainable rate). Delivered
//!   is read from chainpulse's side, as the upstream is another process: the
//!   queue is empty and `chainpulse_forward_spans_total{result="sent"}`
//!   counts every span (the upstream answers OK only once it has the
//!   request). Two rounds, interleaved across the variants, summed.
//!
//! The closing `forward summary` lines give both, with the ratio to
//! `baseline` of the same run, and the CPU per span of the bench process
//! over the drained runs. The capacity ratio is baseline CPU/span ÷ variant
//! CPU/span: the ingest rate chainpulse sustains at a fixed CPU budget (its
//! sidecar CPU limit), relative to no forwarding. Absolute figures on a
//! shared 2-core machine are noisy; the ratios are what to quote.
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
use chainpulse::receive::grpc::{RawExportRequest, TraceService, TraceServiceServer};
use chainpulse::receive::Protocol;
use criterion::{criterion_group, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
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
/// Set (to `1`) in the child process that runs only the null upstream.
const NULL_UPSTREAM_ENV: &str = "CHAINPULSE_BENCH_NULL_UPSTREAM";
/// The destination's name in every forwarding variant.
const DESTINATION: &str = "null";

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
            name: DESTINATION.into(),
            protocol: Some(ExportProtocol::Grpc),
            endpoint: Some(format!("http://{upstream}")),
            queue,
            ..DestinationConfig::default()
        });
        config
    }
}

/// Counts what it receives and answers OK at once (so an OK means the
/// request was received). It takes the request as raw bytes (chainpulse's
/// own pass-through codec) and reads only the span count (`TraceIdsRequest`
/// skips every other field by length), to stay cheap on the cores it shares
/// with chainpulse. Runs in its own process: see `null_upstream_main`.
#[derive(Default)]
struct NullUpstream {
    spans: AtomicU64,
    requests: AtomicU64,
}

#[tonic::async_trait]
impl TraceService for NullUpstream {
    async fn export(
        &self,
        request: tonic::Request<RawExportRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let ids = chainpulse::otlp_view::TraceIdsRequest::decode(request.into_inner().0)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let spans: usize = ids
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
/// windows as chainpulse's own receiver sets them. Child process only.
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

/// The child process: the null upstream alone, on a 1-worker runtime. Prints
/// `PORT <n>`, serves until stdin reaches EOF (the parent closed it, or
/// died), then prints `RECEIVED <requests> <spans>` and exits.
fn null_upstream_main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("null upstream runtime");
    let upstream = Arc::new(NullUpstream::default());
    let addr = rt.block_on(start_upstream(upstream.clone()));
    let mut out = std::io::stdout().lock();
    writeln!(out, "PORT {}", addr.port())
        .and_then(|()| out.flush())
        .expect("write the port");
    // The server runs on the runtime's worker; this thread only waits.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    let _ = writeln!(
        out,
        "RECEIVED {} {}",
        upstream.requests.load(Ordering::Relaxed),
        upstream.spans.load(Ordering::Relaxed)
    )
    .and_then(|()| out.flush());
    rt.shutdown_background();
}

/// The null upstream's process, seen from the bench. Dropping it (also
/// while unwinding from a panic) kills and reaps the child.
struct UpstreamProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl UpstreamProcess {
    /// Re-runs this executable as the null upstream and waits for its port.
    fn spawn() -> UpstreamProcess {
        let exe = std::env::current_exe().expect("the bench executable's path");
        let mut child = Command::new(exe)
            .env(NULL_UPSTREAM_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the null upstream process");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        // Guard first, so a failure below still kills the child.
        let mut upstream = UpstreamProcess {
            child,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = upstream.line();
        let port: u16 = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("null upstream: expected `PORT <n>`, got {line:?}"));
        upstream.addr.set_port(port);
        upstream
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the null upstream's stdout");
        line
    }

    /// The child's CPU time so far (user + system), from /proc.
    fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Closes the child's stdin, so it exits; returns the (requests, spans)
    /// it reports having received.
    fn close(&mut self) -> Option<(u64, u64)> {
        drop(self.child.stdin.take());
        let line = self.line();
        let _ = self.child.wait();
        let mut it = line.strip_prefix("RECEIVED ")?.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spans the forwarder delivered: `chainpulse_forward_spans_total` with
/// `result="sent"` (the upstream answered OK, i.e. had received them).
fn sent_spans(registry: &Registry) -> u64 {
    let samples = chainpulse::export::text::parse(&registry.render());
    chainpulse::export::text::sum(
        &samples,
        "chainpulse_forward_spans_total",
        &[("destination", DESTINATION), ("result", "sent")],
    ) as u64
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

/// This process's CPU time (user + system, all threads): chainpulse's own,
/// as the upstream is another process.
fn cpu_time() -> Option<Duration> {
    cpu_time_of("/proc/self/stat")
}

/// CPU time (user + system) from a /proc/<pid>/stat file.
fn cpu_time_of(stat_path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
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
    /// Drained runs: (ingest done, everything delivered, bench process CPU).
    drained: Vec<(Duration, Duration, Option<Duration>)>,
    /// Drained runs: the upstream process's CPU.
    upstream_cpu: Vec<Option<Duration>>,
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

    /// Spans/s until every span was delivered, over every drained run.
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

    /// The bench process's (chainpulse's) CPU per span over the drained runs.
    fn cpu_us_per_span(&self, spans_per_run: u64) -> Option<f64> {
        let cpu = self.drained_total().2?;
        Some(cpu.as_secs_f64() * 1e6 / (spans_per_run * self.drained.len() as u64) as f64)
    }

    /// The upstream process's CPU per span over the drained runs.
    fn upstream_us_per_span(&self, spans_per_run: u64) -> Option<f64> {
        let cpu: Duration = self
            .upstream_cpu
            .iter()
            .copied()
            .sum::<Option<Duration>>()?;
        Some(cpu.as_secs_f64() * 1e6 / (spans_per_run * self.upstream_cpu.len() as u64) as f64)
    }
}

/// Waits (on this thread, off the runtime) until the queue is empty and
/// `target` spans were sent (the upstream acknowledged them); panics after
/// `DRAIN_TIMEOUT`. The registry is rendered only once the queue is empty.
fn wait_drained(forwarder: &Forwarder, registry: &Registry, target: u64, what: &str) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let depth = || forwarder.queue_depths()[0];
    loop {
        if depth().records == 0 && sent_spans(registry) >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the queue did not drain within {DRAIN_TIMEOUT:?} (depth {:?}, {} of {target} spans sent)",
            depth(),
            sent_spans(registry)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One variant's pipeline and forwarder, alive for the whole run.
struct Setup {
    variant: Variant,
    pipeline: Arc<Pipeline>,
    forwarder: Option<Arc<Forwarder>>,
    registry: Arc<Registry>,
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
        let pipeline = Arc::new(
            Pipeline::new(&config, registry.clone(), forwarder.clone()).expect("pipeline"),
        );
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
                        peak.fetch_max(f.queue_depths()[0].spans, Ordering::Relaxed);
                    }
                }
            })
        };
        Setup {
            variant,
            pipeline,
            forwarder,
            registry,
            tick,
            peak,
            _dir: dir,
            figures: Figures::default(),
        }
    }

    /// Criterion's measurement of the ingest-side rate, then waits for the
    /// backlog it left to reach the upstream.
    fn criterion_phase(&mut self, c: &mut Criterion, rt: &tokio::runtime::Runtime) {
        let (bodies, spans_per_request) = requests();
        let sent_at_start = sent_spans(&self.registry);
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
        let d = f.queue_depths()[0];
        let delivered = sent_spans(&self.registry) - sent_at_start;
        let ingested: u64 = samples.iter().map(|s| s.0).sum::<u64>() * spans_per_request;
        self.figures.end_depth = d.spans;
        println!(
            "forward {}: criterion ingested {ingested} spans, {delivered} were sent meanwhile; queue when ingest stopped: {} records, {} spans, {} bytes",
            self.variant.name(),
            d.records,
            d.spans,
            d.bytes
        );
        let t = Instant::now();
        wait_drained(
            f,
            &self.registry,
            sent_at_start + ingested,
            self.variant.name(),
        );
        self.figures.drain_after = t.elapsed();
        println!(
            "forward {}: drained {:.2} s after ingest stopped",
            self.variant.name(),
            self.figures.drain_after.as_secs_f64()
        );
    }

    /// A fixed number of spans, timed until ingest is done and until all
    /// were delivered (sent, and the queue empty).
    fn drained_run(&mut self, rt: &tokio::runtime::Runtime, upstream: &UpstreamProcess) {
        let (bodies, spans_per_request) = requests();
        let total = DRAINED_REQUESTS * spans_per_request;
        let before = sent_spans(&self.registry);
        let upstream_cpu0 = upstream.cpu_time();
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let (ingest, latencies) =
            rt.block_on(drive(self.pipeline.clone(), bodies, DRAINED_REQUESTS));
        let delivered_during_ingest = sent_spans(&self.registry) - before;
        self.figures.latencies.extend(latencies);
        if let Some(f) = &self.forwarder {
            wait_drained(f, &self.registry, before + total, self.variant.name());
        }
        let e2e = t0.elapsed();
        let cpu = cpu0.zip(cpu_time()).map(|(a, b)| b - a);
        let upstream_cpu = upstream_cpu0.zip(upstream.cpu_time()).map(|(a, b)| b - a);
        if self.forwarder.is_some() {
            let got = sent_spans(&self.registry) - before;
            assert_eq!(got, total, "every span was sent exactly once");
        }
        println!(
            "forward {}: drained run of {total} spans: ingest {:.2} s ({delivered_during_ingest} sent by then), end-to-end {:.2} s",
            self.variant.name(),
            ingest.as_secs_f64(),
            e2e.as_secs_f64()
        );
        self.figures.drained.push((ingest, e2e, cpu));
        self.figures.upstream_cpu.push(upstream_cpu);
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
    let mut upstream = UpstreamProcess::spawn();
    let addr = upstream.addr;

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
        s.criterion_phase(c, &rt);
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
    // Baseline CPU/span ÷ variant CPU/span: the ingest rate sustained at a
    // fixed CPU budget, relative to no forwarding.
    let capacity = |f: &Figures| -> Option<f64> {
        Some(base.cpu_us_per_span(spans_per_run)? / f.cpu_us_per_span(spans_per_run)?)
    };
    println!();
    println!(
        "forward summary: {K} ingest tasks, {WORKERS} workers, {} spans per request; drained: {DRAINED_ROUNDS} interleaved runs of {spans_per_run} spans per variant; ratio = variant / baseline of this run; CPU = the bench process (the upstream is another process); capacity = baseline CPU/span / variant CPU/span",
        requests().1,
    );
    for (v, f) in &results {
        println!(
            "forward summary: {:<20} ingest-side {:>4.0} k spans/s ({:.2}x) | drained: ingest {:>4.0} k spans/s ({:.2}x), end-to-end {:>4.0} k spans/s ({:.2}x) | queue at stop {} spans, peak {}, empty {:.1} s later | CPU {} µs/span, capacity {} (upstream process {} µs/span) | ingest latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
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
            capacity(f).map_or("?".into(), |c| format!("{c:.2}x")),
            f.upstream_us_per_span(spans_per_run)
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
        let cap = capacity(f);
        println!(
            "forward summary: {:<20} needs >= {floor:.2}x baseline: ingest-side {} ({ingest:.3}x), sustained end-to-end {} ({e2e:.3}x), CPU capacity {} ({})",
            v.name(),
            verdict(ingest),
            verdict(e2e),
            cap.map_or("?", verdict),
            cap.map_or("?".into(), |c| format!("{c:.3}x")),
        );
    }
    match upstream.close() {
        Some((requests, spans)) => println!(
            "forward summary: the null upstream process received {requests} requests, {spans} spans in all"
        ),
        None => println!("forward summary: the null upstream process did not report what it received"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = forward
}
/// `criterion_main!(benches)`, except that the same executable, run with
/// `CHAINPULSE_BENCH_NULL_UPSTREAM=1`, is the null upstream process instead.
fn main() {
    if std::env::var_os(NULL_UPSTREAM_ENV).is_some_and(|v| v == "1") {
        null_upstream_main();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
