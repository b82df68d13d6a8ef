//! Crash and loss tests of forwarding, against the real binary.
//!
//! The promise under test: an export that chainpulse acknowledged reaches
//! the upstream, even if chainpulse is SIGKILLed right after and restarted
//! (disk queue), or stopped with SIGTERM (memory queue: drained; disk queue:
//! kept for the next start). Delivery is at-least-once: duplicates are
//! allowed and counted, losses are not. Requests that failed or were cut off
//! by the kill were never acknowledged and may or may not arrive.
//!
//! Every test prints a greppable `LOSS-TEST …` line with its figures.

mod common;

use chainpulse::export::text::{self, Sample};
use common::upstream::{Mode, SpanKey, Upstream};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_chainpulse");
/// The destination's name (its `destination` metric label).
const DEST: &str = "up";
const QUEUE_SPANS: &str = "chainpulse_forward_queue_spans";
const WAL_CORRUPT: &str = "chainpulse_forward_wal_corrupt_tails_total";
const TORN_TAIL_LOG: &str = "torn or corrupt tail";
/// Allowed on top of `server.shutdown_timeout_ms` for the process to exit
/// (the forwarder may overrun its deadline by up to 500 ms by design).
const EXIT_GRACE: Duration = Duration::from_millis(1000);
/// Concurrent exporters in the load tests.
const LOAD_TASKS: usize = 6;
/// Held by the tests that load the machine flat out, so they do not run
/// at once: the duplicate ratio measured after a SIGKILL depends on how
/// promptly an answered call is recorded, which a second load test on the
/// same cores delays.
static LOAD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Client = TraceServiceClient<Channel>;

/// A free port below the kernel's ephemeral range (32768-60999 on Linux),
/// in 26000-31999 (test upstreams use 20000-25999):
/// chainpulse is restarted on the same ports after a kill, and an ephemeral
/// port could meanwhile become some connection's source port.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering as O};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let seed = std::process::id().wrapping_mul(40_503);
    for _ in 0..5000 {
        let n = NEXT.fetch_add(1, O::Relaxed);
        let port = 26_000 + (seed.wrapping_add(n.wrapping_mul(7_919)) % 6_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 26000-31999")
}

// ---------------------------------------------------------------------------
// Requests with unique ids.

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// One trace of `spans` spans with random ids; with probability `big`, a
/// span carries a 10 KiB attribute.
fn request(
    rng: &mut impl Rng,
    spans: RangeInclusive<usize>,
    big: f64,
) -> (ExportTraceServiceRequest, Vec<SpanKey>) {
    let n = rng.random_range(spans);
    let mut trace: [u8; 16] = rng.random();
    trace[0] |= 1;
    let start = unix_nanos();
    let mut out = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut root: Option<[u8; 8]> = None;
    for i in 0..n {
        let mut id: [u8; 8] = rng.random();
        id[0] |= 1;
        let mut attributes = vec![kv("crash_test.step", i.to_string())];
        if rng.random_bool(big) {
            let mut value = format!("{:016x}-", rng.random::<u64>());
            value.push_str(&"x".repeat(10 * 1024));
            attributes.push(kv("input.value", value));
        }
        out.push(Span {
            trace_id: trace.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: root.map_or_else(Vec::new, |r| r.to_vec()),
            name: format!("step-{i}"),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000_000,
            attributes,
            ..Span::default()
        });
        root.get_or_insert(id);
        ids.push((trace, id));
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "forward-crash-test".into())],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "forward_crash".into(),
                    ..InstrumentationScope::default()
                }),
                spans: out,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    (req, ids)
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::from_os_rng()
}

async fn connect(port: u16) -> Client {
    TraceServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to chainpulse's OTLP/gRPC port")
}

/// Sends `n` requests one after the other; every one must be acknowledged
/// in full. Returns each request's span ids, in order.
async fn send_acked(
    client: &mut Client,
    n: usize,
    spans: RangeInclusive<usize>,
) -> Vec<Vec<SpanKey>> {
    let mut rng = rng();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (req, ids) = request(&mut rng, spans.clone(), 0.2);
        let resp = client
            .export(req)
            .await
            .unwrap_or_else(|e| panic!("export {i} refused: {e}"))
            .into_inner();
        assert!(
            resp.partial_success.is_none(),
            "export {i}: unexpected partial success {:?}",
            resp.partial_success
        );
        out.push(ids);
    }
    out
}

// ---------------------------------------------------------------------------
// The chainpulse process.

/// A config file, a queue directory and fixed ports, for one or more runs
/// of the binary.
struct Instance {
    dir: tempfile::TempDir,
    config: PathBuf,
    grpc: u16,
    metrics: u16,
    shutdown_timeout: Duration,
    starts: usize,
}

impl Instance {
    /// `queue` is the body of the destination's `queue` inline table
    /// (`dir` is added); the destination is the upstream's gRPC or HTTP
    /// endpoint.
    fn new(
        protocol: &str,
        up: &Upstream,
        queue: &str,
        max_spans: usize,
        shutdown_timeout_ms: u64,
    ) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let (grpc, http, metrics) = (free_port(), free_port(), free_port());
        let endpoint = match protocol {
            "grpc" => up.grpc_endpoint(),
            "http" => up.http_endpoint(),
            other => panic!("protocol {other:?}"),
        };
        let qdir = dir.path().join("q");
        let config = format!(
            r#"[server]
grpc_addr = "127.0.0.1:{grpc}"
http_addr = "127.0.0.1:{http}"
metrics_addr = "127.0.0.1:{metrics}"
shutdown_timeout_ms = {shutdown_timeout_ms}

[log]
format = "json"

[[forward.destinations]]
name = "{DEST}"
protocol = "{protocol}"
endpoint = "{endpoint}"
timeout_ms = 3000
queue = {{ {queue}, dir = {qdir:?} }}
batch = {{ max_spans = {max_spans}, flush_interval_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 250 }}
"#,
            qdir = qdir.display().to_string(),
        );
        let path = dir.path().join("chainpulse.toml");
        std::fs::write(&path, config).expect("write config");
        Instance {
            dir,
            config: path,
            grpc,
            metrics,
            shutdown_timeout: Duration::from_millis(shutdown_timeout_ms),
            starts: 0,
        }
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("q")
    }

    /// Appends `toml` to the config file (e.g. a second destination).
    fn append_config(&self, toml: &str) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.config)
            .expect("open config");
        f.write_all(toml.as_bytes()).expect("append config");
    }

    /// Spawns the binary and waits until /healthz answers and the gRPC port
    /// accepts connections.
    async fn start(&mut self) -> Running {
        self.starts += 1;
        let log = self.dir.path().join(format!("run-{}.log", self.starts));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("dup log file");
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CHAINPULSE_")) {
            cmd.env_remove(k);
        }
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn chainpulse");
        let mut running = Running {
            child,
            log,
            grpc: self.grpc,
            metrics: self.metrics,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("HTTP client"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = running.child.try_wait().expect("try_wait") {
                panic!(
                    "chainpulse exited during start-up ({status}):\n{}",
                    running.log_text()
                );
            }
            if running.healthz().await == Some(200)
                && tokio::net::TcpStream::connect(("127.0.0.1", self.grpc))
                    .await
                    .is_ok()
            {
                return running;
            }
            assert!(
                Instant::now() < deadline,
                "chainpulse not healthy within 20 s:\n{}",
                running.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A running chainpulse; killed (SIGKILL) if dropped while still running.
struct Running {
    child: Child,
    log: PathBuf,
    grpc: u16,
    metrics: u16,
    http: reqwest::Client,
}

impl Running {
    /// SIGKILL (`Child::kill` on Unix), and reap.
    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL chainpulse");
        self.child.wait().expect("reap chainpulse");
    }

    /// SIGTERM; waits up to 30 s for the exit. Returns the status and how
    /// long the exit took.
    async fn sigterm(&mut self) -> (ExitStatus, Duration) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, t0.elapsed());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chainpulse still running 30 s after SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn healthz(&self) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}/healthz", self.metrics);
        let r = self.http.get(&url).send().await.ok()?;
        Some(r.status().as_u16())
    }

    async fn scrape(&self) -> Vec<Sample> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics);
        let body = self
            .http
            .get(&url)
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("/metrics body");
        text::parse(&body)
    }

    /// The destination's queue depth in spans; `None` if not exposed.
    async fn queue_spans(&self) -> Option<f64> {
        metric(&self.scrape().await, QUEUE_SPANS, &[("destination", DEST)])
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Torn/corrupt WAL tails this start cut off.
async fn torn_tails(cp: &Running) -> f64 {
    metric(&cp.scrape().await, WAL_CORRUPT, &[("destination", DEST)]).unwrap_or(-1.0)
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = samples
        .iter()
        .any(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)));
    found.then(|| text::sum(samples, name, labels))
}

/// Waits until every id of `want` is at the upstream. False on timeout.
async fn wait_delivered(up: &Upstream, want: &HashSet<SpanKey>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if want.is_subset(&up.span_ids()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `chainpulse_forward_queue_spans` reads 0. False on timeout.
async fn wait_queue_empty(cp: &Running, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cp.queue_spans().await == Some(0.0) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the queue is empty and every id of `want` is at the
/// upstream. False on timeout.
async fn wait_drained(
    cp: &Running,
    up: &Upstream,
    want: &HashSet<SpanKey>,
    timeout: Duration,
) -> bool {
    let t0 = Instant::now();
    wait_delivered(up, want, timeout).await
        && wait_queue_empty(cp, timeout.saturating_sub(t0.elapsed())).await
}

// ---------------------------------------------------------------------------
// Load.

#[derive(Default)]
struct Load {
    sent_requests: usize,
    sent_spans: usize,
    /// Every span id sent, acknowledged or not.
    sent: HashSet<SpanKey>,
    acked_requests: usize,
    acked: HashSet<SpanKey>,
    failed_requests: usize,
    partial: usize,
}

impl Load {
    fn merge(&mut self, o: Load) {
        self.sent_requests += o.sent_requests;
        self.sent_spans += o.sent_spans;
        self.sent.extend(o.sent);
        self.acked_requests += o.acked_requests;
        self.acked.extend(o.acked);
        self.failed_requests += o.failed_requests;
        self.partial += o.partial;
    }
}

/// Exports as fast as it can until `stop`; only an OK answer counts as
/// acknowledged.
async fn load_task(port: u16, stop: Arc<AtomicBool>, spans: RangeInclusive<usize>) -> Load {
    let mut rng = rng();
    let mut load = Load::default();
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            let url = format!("http://127.0.0.1:{port}");
            match tokio::time::timeout(Duration::from_secs(1), TraceServiceClient::connect(url))
                .await
            {
                Ok(Ok(c)) => client = Some(c),
                _ => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let c = client.as_mut().expect("connected");
        let (req, ids) = request(&mut rng, spans.clone(), 0.05);
        load.sent_requests += 1;
        load.sent_spans += ids.len();
        load.sent.extend(ids.iter().copied());
        match tokio::time::timeout(Duration::from_secs(10), c.export(req)).await {
            Ok(Ok(resp)) if resp.get_ref().partial_success.is_none() => {
                load.acked_requests += 1;
                load.acked.extend(ids);
            }
            Ok(Ok(_)) => load.partial += 1,
            Ok(Err(_)) | Err(_) => {
                load.failed_requests += 1;
                client = None;
            }
        }
    }
    load
}

fn spawn_load(
    port: u16,
    stop: &Arc<AtomicBool>,
    spans: RangeInclusive<usize>,
) -> Vec<JoinHandle<Load>> {
    (0..LOAD_TASKS)
        .map(|_| tokio::spawn(load_task(port, stop.clone(), spans.clone())))
        .collect()
}

async fn join_load(tasks: Vec<JoinHandle<Load>>) -> Load {
    let mut total = Load::default();
    for t in tasks {
        total.merge(t.await.expect("load task panicked"));
    }
    total
}

// ---------------------------------------------------------------------------
// 1 + 2: SIGKILL under load, disk queue, restart.

/// `rounds` rounds of load + SIGKILL + restart, then a final start that
/// delivers everything. Round 0: the upstream is down, up for a while,
/// down again at the kill (some spans delivered, some queued). Round 1: the
/// upstream is up but slow, and the kill waits until the redelivery of
/// round 0's backlog has begun but not finished. Round 2+: upstream up.
async fn sigkill_under_load(label: &str, protocol: &str, fsync: &str, rounds: usize) {
    let _alone = LOAD_LOCK.lock().await;
    let t0 = Instant::now();
    let up = Upstream::start().await;
    up.stop().await;
    let queue = format!(
        r#"kind = "disk", fsync = "{fsync}", fsync_interval_ms = 500, segment_bytes = 1048576"#
    );
    let mut inst = Instance::new(protocol, &up, &queue, 512, 3000);
    let mut total = Load::default();
    for round in 0..rounds {
        if round == 1 {
            up.set_mode(Mode::Slow(Duration::from_millis(150)));
            up.restart().await;
        } else if round >= 2 {
            up.set_mode(Mode::Accept);
            up.restart().await;
        }
        let mut cp = inst.start().await;
        let backlog = cp.queue_spans().await.unwrap_or(-1.0);
        let torn = torn_tails(&cp).await;
        let at_start = up.span_ids().len();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(cp.grpc, &stop, 1..=20);
        let load_start = Instant::now();
        let queued = match round {
            0 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                up.restart().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                up.stop().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                cp.queue_spans().await.unwrap_or(-1.0)
            }
            1 => {
                // Kill mid-redelivery: some of this start's backlog is at
                // the upstream, and the queue is not empty.
                tokio::time::sleep(Duration::from_millis(800)).await;
                loop {
                    let queued = cp.queue_spans().await.unwrap_or(-1.0);
                    let redelivering = up.span_ids().len() > at_start && queued > 0.0;
                    if redelivering || load_start.elapsed() > Duration::from_secs(4) {
                        assert!(
                            redelivering,
                            "precondition: round 1 should be killed during redelivery (backlog {backlog}, queued {queued})"
                        );
                        break queued;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(1200)).await;
                cp.queue_spans().await.unwrap_or(-1.0)
            }
        };
        cp.sigkill();
        stop.store(true, Ordering::Relaxed);
        let load = join_load(tasks).await;
        eprintln!(
            "forward_crash {label} round {round}: backlog_at_start={backlog} torn_tails_at_start={torn} requests sent={} acked={} failed={} spans sent={} acked={}; load {:.1} s; queued_at_kill={queued}; delivered_this_round={}",
            load.sent_requests,
            load.acked_requests,
            load.failed_requests,
            load.sent_spans,
            load.acked.len(),
            load_start.elapsed().as_secs_f64(),
            up.span_ids().len().saturating_sub(at_start),
        );
        assert!(
            load.acked_requests > 0,
            "round {round}: nothing was acknowledged"
        );
        total.merge(load);
    }

    up.set_mode(Mode::Accept);
    up.restart().await;
    let mut cp = inst.start().await;
    let torn = torn_tails(&cp).await;
    let drained = wait_drained(&cp, &up, &total.acked, Duration::from_secs(40)).await;
    let delivered = up.span_ids();
    let lost: Vec<&SpanKey> = total.acked.difference(&delivered).collect();
    let duplicates = up.spans_total() - delivered.len();
    eprintln!(
        "LOSS-TEST {label}: sent={} acked={} delivered={} lost={} duplicates={} (requests sent={} acked={} failed={}; rounds={rounds}; torn_tails_at_final_start={torn}; {:.1} s)",
        total.sent_spans,
        total.acked.len(),
        delivered.len(),
        lost.len(),
        duplicates,
        total.sent_requests,
        total.acked_requests,
        total.failed_requests,
        t0.elapsed().as_secs_f64(),
    );
    assert_eq!(total.partial, 0, "unexpected partial successes");
    assert!(
        lost.is_empty(),
        "{} acknowledged spans never reached the upstream (drained={drained}); e.g. {:?}\nlog of the last start:\n{}",
        lost.len(),
        lost.iter().take(3).collect::<Vec<_>>(),
        cp.log_text()
    );
    assert!(drained, "the queue did not drain:\n{}", cp.log_text());
    assert!(
        delivered.is_subset(&total.sent),
        "the upstream got spans that were never sent"
    );
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_grpc_destination_loses_no_acknowledged_span() {
    sigkill_under_load("grpc", "grpc", "always", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_http_destination_loses_no_acknowledged_span() {
    sigkill_under_load("http", "http", "always", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_with_fsync_interval_loses_no_acknowledged_span() {
    sigkill_under_load("grpc-fsync-interval", "grpc", "interval", 1).await;
}

// ---------------------------------------------------------------------------
// 3: a damaged write-ahead log tail.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    /// Bytes appended after the last record (a torn append).
    Garbage,
    /// The last record's final bytes overwritten (a torn write): that
    /// record fails its CRC and is cut off with everything after it.
    TornLastRecord,
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read queue dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a .wal segment in the queue dir")
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Garbage => {
            let mut f = OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open segment for append");
            f.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(25))
                .expect("append garbage");
            f.sync_all().expect("sync segment");
        }
        Damage::TornLastRecord => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .expect("open segment for write");
            let len = f.metadata().expect("segment metadata").len();
            let mut tail = [0u8; 3];
            f.read_exact_at(&mut tail, len - 3).expect("read tail");
            for b in &mut tail {
                *b ^= 0xff;
            }
            f.write_all_at(&tail, len - 3).expect("overwrite tail");
            f.sync_all().expect("sync segment");
        }
    }
}

async fn damaged_wal_tail(how: Damage) {
    const N: usize = 12;
    let up = Upstream::start().await;
    up.stop().await;
    let queue = r#"kind = "disk", fsync = "always""#;
    let mut inst = Instance::new("grpc", &up, queue, 512, 1000);

    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    let requests = send_acked(&mut client, N, 1..=20).await;
    drop(client);
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
    drop(cp);

    let seg = newest_segment(&inst.queue_dir());
    damage(&seg, how);

    up.restart().await;
    let mut cp = inst.start().await;
    let intact = match how {
        Damage::Garbage => N,
        Damage::TornLastRecord => N - 1,
    };
    let want: HashSet<SpanKey> = requests[..intact].iter().flatten().copied().collect();
    let drained = wait_drained(&cp, &up, &want, Duration::from_secs(20)).await;
    let delivered = up.span_ids();
    let lost = want.difference(&delivered).count();
    let damaged_arrived = requests[intact..]
        .iter()
        .flatten()
        .filter(|k| delivered.contains(k))
        .count();
    let samples = cp.scrape().await;
    let corrupt = metric(&samples, WAL_CORRUPT, &[("destination", DEST)]);
    let log = cp.log_text();
    eprintln!(
        "LOSS-TEST wal-{how:?}: requests={N} intact={intact} sent={} acked={} expected={} delivered={} lost={lost} duplicates={} corrupt_tails={corrupt:?}",
        requests.iter().map(Vec::len).sum::<usize>(),
        requests.iter().map(Vec::len).sum::<usize>(),
        want.len(),
        delivered.len(),
        up.spans_total() - delivered.len(),
    );
    assert_eq!(lost, 0, "records before the damage were lost:\n{log}");
    assert!(drained, "the queue did not drain:\n{log}");
    assert_eq!(
        damaged_arrived, 0,
        "the damaged record was delivered: the damage missed it"
    );
    assert_eq!(corrupt, Some(1.0), "{WAL_CORRUPT}{{destination={DEST:?}}}");
    assert!(
        log.contains(TORN_TAIL_LOG),
        "no {TORN_TAIL_LOG:?} warning:\n{log}"
    );
    assert!(
        !log.contains("corruption inside a sealed"),
        "a tail was reported as sealed-segment corruption:\n{log}"
    );
    assert_eq!(cp.healthz().await, Some(200), "/healthz after recovery");

    // Still accepting and delivering.
    let mut client = connect(cp.grpc).await;
    let fresh = send_acked(&mut client, 5, 1..=5).await;
    drop(client);
    let fresh: HashSet<SpanKey> = fresh.into_iter().flatten().collect();
    assert!(
        wait_delivered(&up, &fresh, Duration::from_secs(10)).await,
        "exports after recovery were not delivered:\n{}",
        cp.log_text()
    );
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_after_the_last_wal_record_is_cut_off_and_the_rest_delivered() {
    damaged_wal_tail(Damage::Garbage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torn_last_wal_record_is_cut_off_and_the_rest_delivered() {
    damaged_wal_tail(Damage::TornLastRecord).await;
}

// ---------------------------------------------------------------------------
// 4: SIGTERM flushes.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_the_memory_queue_to_a_slow_upstream() {
    let up = Upstream::start().await;
    up.set_mode(Mode::Slow(Duration::from_millis(200)));
    let mut inst = Instance::new("grpc", &up, r#"kind = "memory""#, 50, 5000);
    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    let requests = send_acked(&mut client, 30, 10..=10).await;
    let acked: HashSet<SpanKey> = requests.into_iter().flatten().collect();
    let before = up.span_ids().len();
    assert!(
        before < acked.len(),
        "precondition: the queue should still hold spans at SIGTERM ({before} of {} delivered)",
        acked.len()
    );
    // The application keeps its connection open, as an SDK would.
    let (status, took) = cp.sigterm().await;
    let delivered = up.span_ids();
    let lost = acked.difference(&delivered).count();
    eprintln!(
        "LOSS-TEST sigterm-memory: sent={} acked={} delivered_before_sigterm={before} delivered={} lost={lost} duplicates={} exit={status} in {:.2} s (shutdown_timeout {:.1} s)",
        acked.len(),
        acked.len(),
        delivered.len(),
        up.spans_total() - delivered.len(),
        took.as_secs_f64(),
        inst.shutdown_timeout.as_secs_f64(),
    );
    let log = cp.log_text();
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(
        took <= inst.shutdown_timeout + EXIT_GRACE,
        "exit took {took:?}, shutdown_timeout is {:?}",
        inst.shutdown_timeout
    );
    assert_eq!(lost, 0, "SIGTERM lost memory-queued spans:\n{log}");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_dead_upstream_keeps_the_disk_queue_for_the_next_start() {
    let up = Upstream::start().await;
    up.stop().await;
    let queue = r#"kind = "disk", fsync = "always""#;
    let mut inst = Instance::new("grpc", &up, queue, 512, 2000);
    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    let requests = send_acked(&mut client, 20, 1..=20).await;
    let acked: HashSet<SpanKey> = requests.into_iter().flatten().collect();
    let (status, took) = cp.sigterm().await;
    let log = cp.log_text();
    drop(client);
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(
        took <= inst.shutdown_timeout + EXIT_GRACE,
        "exit took {took:?}, shutdown_timeout is {:?}",
        inst.shutdown_timeout
    );
    assert!(
        log.contains("undelivered spans stay in the disk queue"),
        "{log}"
    );
    drop(cp);

    up.restart().await;
    let mut cp = inst.start().await;
    let drained = wait_drained(&cp, &up, &acked, Duration::from_secs(20)).await;
    let delivered = up.span_ids();
    let lost = acked.difference(&delivered).count();
    eprintln!(
        "LOSS-TEST sigterm-disk: sent={} acked={} delivered={} lost={lost} duplicates={} exit={status} in {:.2} s (shutdown_timeout {:.1} s)",
        acked.len(),
        acked.len(),
        delivered.len(),
        up.spans_total() - delivered.len(),
        took.as_secs_f64(),
        inst.shutdown_timeout.as_secs_f64(),
    );
    assert_eq!(lost, 0, "spans kept on disk were lost:\n{}", cp.log_text());
    assert!(drained, "the queue did not drain:\n{}", cp.log_text());
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
}

// ---------------------------------------------------------------------------
// The drain signal itself.

/// Not a crash: exports under load to a live upstream, then nothing. Once
/// every span is delivered, `chainpulse_forward_queue_spans` must read 0 —
/// it is what the tests above (and operators) take as "drained".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_gauge_returns_to_zero_after_load_against_a_live_upstream() {
    let up = Upstream::start().await;
    let queue = r#"kind = "disk", fsync = "always""#;
    let mut inst = Instance::new("grpc", &up, queue, 512, 2000);
    let mut cp = inst.start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_load(cp.grpc, &stop, 1..=20);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::Relaxed);
    let load = join_load(tasks).await;
    let delivered_all = wait_delivered(&up, &load.acked, Duration::from_secs(20)).await;
    let empty = wait_queue_empty(&cp, Duration::from_secs(3)).await;
    let samples = cp.scrape().await;
    let gauge = metric(&samples, QUEUE_SPANS, &[("destination", DEST)]);
    let delivered = up.span_ids();
    let lost = load.acked.difference(&delivered).count();
    eprintln!(
        "LOSS-TEST live: sent={} acked={} delivered={} lost={lost} duplicates={} queue_spans_after={gauge:?}",
        load.sent_spans,
        load.acked.len(),
        delivered.len(),
        up.spans_total() - delivered.len(),
    );
    assert_eq!(load.failed_requests, 0, "exports failed without a crash");
    assert!(
        delivered_all && lost == 0,
        "{lost} acknowledged spans not delivered"
    );
    assert!(
        empty,
        "everything was delivered but {QUEUE_SPANS}{{destination={DEST:?}}} still reads {gauge:?} \
         (Queue::push counts a record's spans only after the sender can already ack it; \
         ack's saturating_sub then clamps and the late add sticks)"
    );
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
}

/// Resident memory of a process, from /proc (Linux).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A slow upstream and a small memory queue under a flood of big requests:
/// back-pressure appears (RESOURCE_EXHAUSTED with RetryInfo), the queue never
/// passes its bound, the process's resident memory stays bounded, and every
/// acknowledged span is delivered once the upstream catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_upstream_gets_back_pressure_and_bounded_memory() {
    const QUEUE_MAX: u64 = 4 << 20;
    let _alone = LOAD_LOCK.lock().await;
    let up = Upstream::start().await;
    up.set_mode(Mode::Slow(Duration::from_millis(300)));
    let mut inst = Instance::new(
        "grpc",
        &up,
        &format!(r#"kind = "memory", max_bytes = {QUEUE_MAX}"#),
        200,
        5000,
    );
    let cp = inst.start().await;
    let pid = cp.child.id();
    let rss_before = rss_bytes(pid).expect("VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..LOAD_TASKS {
        let stop = stop.clone();
        let port = cp.grpc;
        tasks.push(tokio::spawn(async move {
            let mut client = connect(port).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + t as u64);
            let (mut acked, mut refused, mut other) = (Vec::new(), 0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                // ~50-200 KiB per request: mostly 10 KiB attributes.
                let (req, ids) = request(&mut rng, 5..=20, 0.9);
                match client.export(req).await {
                    Ok(_) => acked.extend(ids),
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                        assert!(
                            common::upstream::retry_delay_of(&s).is_some(),
                            "back-pressure carries RetryInfo: {s:?}"
                        );
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => other += 1,
                }
            }
            (acked, refused, other)
        }));
    }
    let mut max_rss = rss_before;
    let mut max_queue = 0.0f64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        max_rss = max_rss.max(rss_bytes(pid).unwrap_or(0));
        let m = cp.scrape().await;
        let q = metric(
            &m,
            "chainpulse_forward_queue_bytes",
            &[("destination", DEST)],
        )
        .unwrap_or(0.0);
        max_queue = max_queue.max(q);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked: HashSet<SpanKey> = HashSet::new();
    let (mut refused, mut other) = (0, 0);
    for t in tasks {
        let (a, r, o) = t.await.expect("load task");
        acked.extend(a);
        refused += r;
        other += o;
    }
    up.set_mode(Mode::Accept);
    let delivered = wait_delivered(&up, &acked, Duration::from_secs(30)).await;
    eprintln!(
        "LOSS-TEST slow-upstream: acked={} refused_requests={refused} other_errors={other} delivered={} max_queue_bytes={max_queue} (limit {QUEUE_MAX}) rss_before={:.1}MiB max_rss={:.1}MiB",
        acked.len(),
        up.span_ids().intersection(&acked).count(),
        rss_before as f64 / 1048576.0,
        max_rss as f64 / 1048576.0,
    );
    assert!(
        refused > 0,
        "a 4 MiB queue behind a 300 ms upstream must push back"
    );
    assert_eq!(other, 0, "only back-pressure refusals are expected");
    assert!(
        max_queue <= QUEUE_MAX as f64,
        "queue bytes {max_queue} over {QUEUE_MAX}"
    );
    // Queue bound + in-flight requests + the process itself; far from the
    // unbounded growth a queue without a limit would show.
    assert!(
        max_rss < rss_before + 96 * 1024 * 1024,
        "resident memory grew from {rss_before} to {max_rss}"
    );
    assert!(
        delivered,
        "every acknowledged span is delivered once the upstream catches up"
    );
}

// ---------------------------------------------------------------------------
// 5: a damaged queue directory: no crash loop, the destination disabled,
// every loss counted.

const LOST_RECORDS: &str = "chainpulse_forward_queue_lost_records_total";
const DEST_UP: &str = "chainpulse_forward_destination_up";
const DEST_DISABLED: &str = "chainpulse_forward_destination_disabled";
const FAILED_SPANS: &str = "chainpulse_forward_failed_spans_total";

fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.wal"))
}

fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("read queue dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| {
            let id = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .expect("segment name");
            (id, p)
        })
        .collect();
    segs.sort();
    segs
}

/// A header-only first segment above the ack position, and no ack file: a
/// state chainpulse itself leaves (everything delivered, the acknowledged
/// segments reclaimed, a crash before the ack file was written). It used
/// to panic at start-up (`index out of bounds`, exit 101) on every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_only_first_segment_above_the_ack_position_starts_and_delivers() {
    let up = Upstream::start().await;
    let mut inst = Instance::new("grpc", &up, r#"kind = "disk", fsync = "always""#, 512, 1000);
    let q = inst.queue_dir();
    std::fs::create_dir_all(&q).expect("queue dir");
    std::fs::write(segment_path(&q, 5), b"CPWALv02").expect("segment");
    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    let sent: HashSet<SpanKey> = send_acked(&mut client, 5, 1..=5)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        wait_delivered(&up, &sent, Duration::from_secs(10)).await,
        "not delivered:\n{}",
        cp.log_text()
    );
    let samples = cp.scrape().await;
    assert_eq!(
        metric(&samples, DEST_UP, &[("destination", DEST)]),
        Some(1.0)
    );
    assert_eq!(
        text::sum(&samples, LOST_RECORDS, &[("destination", DEST)]),
        0.0,
        "nothing was lost"
    );
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
    // And again, from the state that run left.
    let mut cp = inst.start().await;
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
}

#[derive(Clone, Copy, Debug)]
enum BadDir {
    /// A segment of a newer format version.
    NewerVersion,
    /// Two segments whose id ranges overlap.
    Overlapping,
}

/// A queue directory recovery cannot repair disables its destination
/// only: the collector keeps receiving, acknowledging and forwarding to
/// the other destination, `/readyz` stays ready, and every span the
/// disabled destination misses is counted.
async fn bad_queue_dir_disables_only_its_destination(how: BadDir) {
    let up = Upstream::start().await;
    up.stop().await;
    let mut inst = Instance::new("grpc", &up, r#"kind = "disk", fsync = "always""#, 512, 1000);
    // Fill the queue with a few records, then damage the directory.
    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    let _ = send_acked(&mut client, 6, 1..=3).await;
    drop(client);
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());
    let q = inst.queue_dir();
    let (first, seg) = segments(&q).into_iter().next().expect("a segment");
    let reason = match how {
        BadDir::NewerVersion => {
            let f = OpenOptions::new().write(true).open(&seg).expect("segment");
            f.write_all_at(b"CPWALv99", 0).expect("write header");
            "unsupported_format"
        }
        BadDir::Overlapping => {
            std::fs::copy(&seg, segment_path(&q, first + 2)).expect("copy segment");
            "inconsistent"
        }
    };
    // A second destination (same upstream, memory queue) keeps working.
    inst.append_config(&format!(
        r#"
[[forward.destinations]]
name = "other"
protocol = "grpc"
endpoint = "{}"
queue = {{ kind = "memory" }}
batch = {{ max_spans = 512, flush_interval_ms = 20 }}
"#,
        up.grpc_endpoint()
    ));
    up.restart().await;
    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    let sent: HashSet<SpanKey> = send_acked(&mut client, 8, 1..=5)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        wait_delivered(&up, &sent, Duration::from_secs(10)).await,
        "the other destination did not get the spans:\n{}",
        cp.log_text()
    );
    let ready = cp
        .http
        .get(format!("http://127.0.0.1:{}/readyz", cp.metrics))
        .send()
        .await
        .expect("/readyz")
        .status();
    assert_eq!(ready.as_u16(), 200, "/readyz");
    let samples = cp.scrape().await;
    assert_eq!(
        metric(&samples, DEST_UP, &[("destination", DEST)]),
        Some(0.0)
    );
    assert_eq!(
        metric(&samples, DEST_UP, &[("destination", "other")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &samples,
            DEST_DISABLED,
            &[("destination", DEST), ("reason", reason)]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &samples,
            FAILED_SPANS,
            &[("destination", DEST), ("reason", "destination_disabled")]
        ),
        Some(sent.len() as f64),
        "every span the disabled destination misses is counted"
    );
    let log = cp.log_text();
    assert!(log.contains("DISABLED"), "no error log:\n{log}");
    assert!(
        log.contains(&seg.display().to_string())
            || log.contains("overlap")
            || log.contains("next segment starts"),
        "the log names the problem:\n{log}"
    );
    assert_eq!(
        up.spans_total(),
        sent.len(),
        "each span once (from \"other\")"
    );
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segment_from_a_newer_version_disables_only_its_destination() {
    bad_queue_dir_disables_only_its_destination(BadDir::NewerVersion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_segments_disable_only_their_destination() {
    bad_queue_dir_disables_only_its_destination(BadDir::Overlapping).await;
}

/// A deleted middle segment and one flipped byte in a sealed segment: the
/// lost records are counted by reason and logged with their ids; every
/// other record (those after the flipped one included) is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_segment_and_a_flipped_byte_are_counted_and_the_rest_delivered() {
    let up = Upstream::start().await;
    up.stop().await;
    let queue = r#"kind = "disk", fsync = "always", segment_bytes = 65536"#;
    let mut inst = Instance::new("grpc", &up, queue, 512, 1000);
    let mut cp = inst.start().await;
    let mut client = connect(cp.grpc).await;
    // One record per request; record id = request index.
    let requests = send_acked(&mut client, 100, 5..=10).await;
    drop(client);
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_text());

    let segs = segments(&inst.queue_dir());
    assert!(segs.len() >= 5, "want several segments: {segs:?}");
    // Delete the second segment; flip a payload byte of the fourth's first
    // record (offset: 8-byte segment header, 16-byte frame header, 4-byte
    // span count, then the request).
    let (gone_first, gone_path) = segs[1].clone();
    let gone_end = segs[2].0;
    std::fs::remove_file(&gone_path).expect("delete segment");
    let (flipped, flip_path) = segs[3].clone();
    assert!(
        segs[4].0 >= flipped + 2,
        "precondition: records after the flipped one"
    );
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&flip_path)
        .expect("segment");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 8 + 16 + 4 + 3).expect("read");
    f.write_all_at(&[b[0] ^ 0x5a], 8 + 16 + 4 + 3)
        .expect("flip");
    drop(f);

    up.restart().await;
    let mut cp = inst.start().await;
    let lost_ids: HashSet<usize> = (gone_first as usize..gone_end as usize)
        .chain([flipped as usize])
        .collect();
    let want: HashSet<SpanKey> = requests
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost_ids.contains(i))
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    let drained = wait_drained(&cp, &up, &want, Duration::from_secs(20)).await;
    let delivered = up.span_ids();
    let log = cp.log_text();
    assert!(
        drained,
        "not drained; missing {}:\n{log}",
        want.difference(&delivered).count()
    );
    let after_flip: usize = requests[flipped as usize + 1..segs[4].0 as usize]
        .iter()
        .flatten()
        .filter(|k| delivered.contains(k))
        .count();
    assert!(
        after_flip > 0,
        "records after the flipped one were recovered"
    );
    let samples = cp.scrape().await;
    let lost = |reason: &str| {
        metric(
            &samples,
            LOST_RECORDS,
            &[("destination", DEST), ("reason", reason)],
        )
    };
    assert_eq!(
        lost("missing_segment"),
        Some((gone_end - gone_first) as f64)
    );
    assert_eq!(lost("damaged_record"), Some(1.0));
    assert!(
        log.contains("missing_segment") && log.contains(&format!("\"first_id\":{gone_first}")),
        "the log names the missing ids:\n{log}"
    );
    assert!(
        log.contains(&flip_path.display().to_string()),
        "the log names the damaged file:\n{log}"
    );
    eprintln!(
        "LOSS-TEST wal-missing-and-flipped: records={} missing_segment={} damaged_record=1 recovered_after_flip_spans={after_flip}",
        requests.len(),
        gone_end - gone_first
    );
    // Counted once: the next start finds the directory repaired.
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}:\n{log}");
    let mut cp = inst.start().await;
    let samples = cp.scrape().await;
    assert_eq!(
        text::sum(&samples, LOST_RECORDS, &[("destination", DEST)]),
        0.0
    );
    let (status, _) = cp.sigterm().await;
    assert!(status.success(), "exit status {status}");
}

// ---------------------------------------------------------------------------
// 6: duplicates after SIGKILL under load.

/// Load against a live upstream, SIGKILL, restart, drain, `ROUNDS` times:
/// what the upstream got twice is what was delivered but whose delivery
/// the queue had not yet recorded. The position is written after every
/// delivered batch (it was once a second), so that is only the calls in
/// flight at the kill: at most 2 % of the spans sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_duplicates_at_most_two_percent() {
    const ROUNDS: usize = 3;
    let _alone = LOAD_LOCK.lock().await;
    let up = Upstream::start().await;
    let queue = r#"kind = "disk", fsync = "always""#;
    let mut inst = Instance::new("grpc", &up, queue, 512, 3000);
    let mut total = Load::default();
    for round in 0..ROUNDS {
        let mut cp = inst.start().await;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(cp.grpc, &stop, 1..=20);
        tokio::time::sleep(Duration::from_millis(6000 + 500 * round as u64)).await;
        cp.sigkill();
        stop.store(true, Ordering::Relaxed);
        total.merge(join_load(tasks).await);
    }
    let cp = inst.start().await;
    let drained = wait_drained(&cp, &up, &total.acked, Duration::from_secs(30)).await;
    let delivered = up.span_ids();
    let duplicates = up.spans_total() - delivered.len();
    let pct = 100.0 * duplicates as f64 / total.sent_spans.max(1) as f64;
    eprintln!(
        "LOSS-TEST duplicates-after-sigkill: rounds={ROUNDS} sent={} acked={} delivered={} lost={} duplicates={duplicates} ({pct:.2} % of sent)",
        total.sent_spans,
        total.acked.len(),
        delivered.len(),
        total.acked.difference(&delivered).count(),
    );
    assert!(drained, "not drained:\n{}", cp.log_text());
    assert!(
        total.sent_spans > 3000,
        "too little load: {}",
        total.sent_spans
    );
    assert!(
        pct <= 2.0,
        "{duplicates} duplicates = {pct:.2} % of {} spans sent",
        total.sent_spans
    );
}
