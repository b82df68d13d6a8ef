//! `Upstream`: a controllable OTLP trace receiver for integration tests.
//!
//! It plays LangSmith / Tempo / an OpenTelemetry Collector in tests of
//! chainpulse's forwarding. It serves OTLP/gRPC
//! (`opentelemetry.proto.collector.trace.v1.TraceService/Export`, gzip
//! accepted, 64 MiB message limit) and OTLP/HTTP (`POST /v1/traces`,
//! `application/x-protobuf`, `Content-Encoding: gzip` accepted) on two
//! ephemeral loopback ports, records exactly what every *accepted* request
//! carried, and misbehaves on command ([`Mode`]).
//!
//! [`Upstream::stop`] closes both listeners *and* every established
//! connection (a client sees refused connections / broken streams, never a
//! hang); [`Upstream::restart`] binds the very same ports again and keeps the
//! recorded state. A request that was in flight (e.g. sleeping in
//! [`Mode::Slow`]) when `stop` ran is never recorded.
//!
//! gRPC requests are served by a hand-rolled service equivalent to the
//! generated `trace_service_server::TraceServiceServer`, but with a codec that
//! also keeps the exact (decompressed) message bytes for
//! [`Upstream::raw_bodies`]; the generated server would only hand over the
//! decoded message.

use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server, ExportTracePartialSuccess, ExportTraceServiceRequest,
    ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// `(trace_id, span_id)` of one span.
pub type SpanKey = ([u8; 16], [u8; 8]);

/// Largest accepted request (decompressed), both protocols.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// How long `stop` lets the servers drain before aborting their tasks.
const STOP_DEADLINE: Duration = Duration::from_secs(2);
/// How long `restart` retries binding a port that is briefly unavailable.
const REBIND_DEADLINE: Duration = Duration::from_secs(5);

/// How the upstream answers requests. Switchable at any time with
/// [`Upstream::set_mode`]; the decision is taken when a request arrives.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Accept and record everything.
    Accept,
    /// Every request fails: gRPC with `grpc`, HTTP with status `http`.
    /// With `retry_after`, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE carry a
    /// `google.rpc.RetryInfo` detail, and HTTP answers carry `Retry-After:
    /// <secs>` (rounded up) plus the RetryInfo in the `google.rpc.Status` body.
    Fail {
        grpc: tonic::Code,
        http: u16,
        retry_after: Option<Duration>,
    },
    /// The next `n` requests fail like [`Mode::Fail`] (without RetryInfo),
    /// then the mode switches to [`Mode::Accept`].
    FailFirst {
        n: usize,
        grpc: tonic::Code,
        http: u16,
    },
    /// Sleep this long, then accept.
    Slow(Duration),
    /// Accept and record, but answer with `partial_success`.
    PartialReject { rejected: i64, message: String },
}

impl Mode {
    /// Throttling: RESOURCE_EXHAUSTED / 429 with a retry delay.
    pub fn throttled(retry_after: Duration) -> Mode {
        Mode::Fail {
            grpc: tonic::Code::ResourceExhausted,
            http: 429,
            retry_after: Some(retry_after),
        }
    }

    /// Transient outage: UNAVAILABLE / 503, no retry delay.
    pub fn unavailable() -> Mode {
        Mode::Fail {
            grpc: tonic::Code::Unavailable,
            http: 503,
            retry_after: None,
        }
    }
}

// ---------------------------------------------------------------------------
// google.rpc messages (hand-written; prost-types is not a dependency).

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

fn rpc_status(code: tonic::Code, message: &str, retry_after: Option<Duration>) -> RpcStatus {
    let details = retry_after
        .map(|d| ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_owned(),
            value: RetryInfo {
                retry_delay: Some(ProtoDuration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
                }),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details,
    }
}

/// The RetryInfo delay inside an encoded `google.rpc.Status`, if any.
pub fn retry_delay_in(status_bytes: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(status_bytes).ok()?;
    status
        .details
        .iter()
        .filter(|a| a.type_url == RETRY_INFO_TYPE_URL)
        .find_map(|a| RetryInfo::decode(a.value.as_slice()).ok()?.retry_delay)
        .map(|d| {
            Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
        })
}

/// The RetryInfo delay of a gRPC error (from `grpc-status-details-bin`).
pub fn retry_delay_of(status: &tonic::Status) -> Option<Duration> {
    retry_delay_in(status.details())
}

/// `(trace_id, span_id)` of every span in `req`, in order; spans whose ids
/// have the wrong length are skipped.
pub fn span_ids_of(req: &ExportTraceServiceRequest) -> Vec<SpanKey> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter_map(|s| {
            let trace: [u8; 16] = s.trace_id.as_slice().try_into().ok()?;
            let span: [u8; 8] = s.span_id.as_slice().try_into().ok()?;
            Some((trace, span))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Shared state.

#[derive(Default)]
struct Record {
    span_ids: HashSet<SpanKey>,
    spans_total: usize,
    requests: usize,
    failed_requests: usize,
    bad_requests: usize,
    gzip_requests: usize,
    received: Vec<ExportTraceServiceRequest>,
    raw_bodies: Vec<Bytes>,
    last_headers: Vec<(String, String)>,
}

struct State {
    mode: Mode,
    /// Bumped by `stop`: a request decided under an older epoch is dropped.
    epoch: u64,
    rec: Record,
}

struct Shared {
    state: Mutex<State>,
}

enum Decision {
    Fail {
        grpc: tonic::Code,
        http: u16,
        retry_after: Option<Duration>,
    },
    Accept {
        epoch: u64,
        delay: Option<Duration>,
        partial: Option<ExportTracePartialSuccess>,
    },
}

struct Arrival {
    request: ExportTraceServiceRequest,
    raw: Bytes,
    headers: Vec<(String, String)>,
    gzip: bool,
}

impl Shared {
    fn decide(&self) -> Decision {
        let mut st = self.state.lock();
        let epoch = st.epoch;
        let decision = match &mut st.mode {
            Mode::Accept => Decision::Accept {
                epoch,
                delay: None,
                partial: None,
            },
            Mode::Fail {
                grpc,
                http,
                retry_after,
            } => Decision::Fail {
                grpc: *grpc,
                http: *http,
                retry_after: *retry_after,
            },
            Mode::FailFirst { n, grpc, http } => {
                if *n == 0 {
                    Decision::Accept {
                        epoch,
                        delay: None,
                        partial: None,
                    }
                } else {
                    *n -= 1;
                    Decision::Fail {
                        grpc: *grpc,
                        http: *http,
                        retry_after: None,
                    }
                }
            }
            Mode::Slow(d) => Decision::Accept {
                epoch,
                delay: Some(*d),
                partial: None,
            },
            Mode::PartialReject { rejected, message } => Decision::Accept {
                epoch,
                delay: None,
                partial: Some(ExportTracePartialSuccess {
                    rejected_spans: *rejected,
                    error_message: message.clone(),
                }),
            },
        };
        if matches!(st.mode, Mode::FailFirst { n: 0, .. }) {
            st.mode = Mode::Accept;
        }
        if matches!(decision, Decision::Fail { .. }) {
            st.rec.failed_requests += 1;
        }
        decision
    }

    /// Records an accepted request; false if the upstream was stopped since
    /// the request was accepted (then it counts as failed).
    fn commit(&self, epoch: u64, a: Arrival) -> bool {
        let mut st = self.state.lock();
        if st.epoch != epoch {
            st.rec.failed_requests += 1;
            return false;
        }
        let rec = &mut st.rec;
        let ids = span_ids_of(&a.request);
        rec.spans_total += ids.len();
        rec.span_ids.extend(ids);
        rec.requests += 1;
        if a.gzip {
            rec.gzip_requests += 1;
        }
        rec.received.push(a.request);
        rec.raw_bodies.push(a.raw);
        rec.last_headers = a.headers;
        true
    }

    fn bad_request(&self) {
        self.state.lock().rec.bad_requests += 1;
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The handle.

/// A controllable OTLP trace receiver. Dropping it aborts its servers.
pub struct Upstream {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl Upstream {
    /// Binds two ephemeral 127.0.0.1 ports and starts serving in
    /// [`Mode::Accept`].
    pub async fn start() -> Upstream {
        let grpc = bind_fixed_range().expect("upstream: bind gRPC port");
        let http = bind_fixed_range().expect("upstream: bind HTTP port");
        let up = Upstream {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    mode: Mode::Accept,
                    epoch: 0,
                    rec: Record::default(),
                }),
            }),
            grpc_addr: grpc.local_addr().expect("upstream: gRPC local addr"),
            http_addr: http.local_addr().expect("upstream: HTTP local addr"),
            running: Mutex::new(None),
        };
        up.launch(grpc, http);
        up
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `http://127.0.0.1:PORT`, for OTLP/gRPC exporters.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT/v1/traces`, for OTLP/HTTP exporters.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.http_addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.state.lock().mode = mode;
    }

    /// The current mode (a `FailFirst` shows the failures still to come, and
    /// turns into `Accept` once they are used up).
    pub fn mode(&self) -> Mode {
        self.shared.state.lock().mode.clone()
    }

    /// Distinct `(trace_id, span_id)` of all accepted spans.
    pub fn span_ids(&self) -> HashSet<SpanKey> {
        self.shared.state.lock().rec.span_ids.clone()
    }

    /// Accepted spans including duplicates (`>= span_ids().len()`).
    pub fn spans_total(&self) -> usize {
        self.shared.state.lock().rec.spans_total
    }

    /// Accepted requests.
    pub fn requests(&self) -> usize {
        self.shared.state.lock().rec.requests
    }

    /// Requests answered with an error because of the mode (or because the
    /// upstream was stopped while they were in flight). They record nothing.
    pub fn failed_requests(&self) -> usize {
        self.shared.state.lock().rec.failed_requests
    }

    /// Requests rejected as malformed (undecodable protobuf, bad gzip,
    /// unsupported content type or encoding). They record nothing.
    pub fn bad_requests(&self) -> usize {
        self.shared.state.lock().rec.bad_requests
    }

    /// Accepted requests that were gzip-compressed (`grpc-encoding: gzip` /
    /// `Content-Encoding: gzip`).
    pub fn gzip_requests(&self) -> usize {
        self.shared.state.lock().rec.gzip_requests
    }

    /// Every accepted request, decoded, in arrival order.
    pub fn received(&self) -> Vec<ExportTraceServiceRequest> {
        self.shared.state.lock().rec.received.clone()
    }

    /// The exact decompressed protobuf bytes of every accepted request, in
    /// arrival order (gRPC: the message without the 5-byte frame header).
    pub fn raw_bodies(&self) -> Vec<Bytes> {
        self.shared.state.lock().rec.raw_bodies.clone()
    }

    /// Headers (HTTP) or metadata (gRPC) of the last accepted request,
    /// lowercased names, in wire order, repeated names repeated.
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.shared.state.lock().rec.last_headers.clone()
    }

    /// First value of header `name` (case-insensitive) of the last accepted
    /// request.
    pub fn last_header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.shared
            .state
            .lock()
            .rec
            .last_headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }

    /// Forgets everything recorded (not the mode).
    pub fn clear(&self) {
        self.shared.state.lock().rec = Record::default();
    }

    /// Polls until at least `n` *distinct* spans were accepted.
    pub async fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |rec| rec.span_ids.len() >= n)
            .await
    }

    /// Polls until at least `n` requests were accepted.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |rec| rec.requests >= n).await
    }

    async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Record) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.shared.state.lock().rec) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Closes both listeners (connections are refused from now on), closes
    /// every established connection, and drops requests still in flight
    /// (nothing of them is recorded). Recorded state is kept. No-op if
    /// already stopped.
    pub async fn stop(&self) {
        let running = self.running.lock().take();
        self.shared.state.lock().epoch += 1;
        if let Some(running) = running {
            running.shutdown().await;
        }
    }

    /// Binds the same two ports again (retrying for up to 5 s while they are
    /// briefly unavailable) and serves with the recorded state and mode
    /// kept. Stops first if running.
    pub async fn restart(&self) {
        self.stop().await;
        let grpc = bind_retry(self.grpc_addr).await;
        let http = bind_retry(self.http_addr).await;
        self.launch(grpc, http);
    }

    fn launch(&self, grpc: TcpListener, http: TcpListener) {
        let running = Running {
            grpc: spawn_grpc(self.shared.clone(), grpc),
            http: spawn_http(self.shared.clone(), http),
        };
        let old = self.running.lock().replace(running);
        assert!(old.is_none(), "upstream: launched while running");
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(running) = self.running.get_mut().take() {
            running.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Server lifecycle.

struct Running {
    grpc: ServerTask,
    http: ServerTask,
}

struct ServerTask {
    task: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
    conns: Conns,
}

impl Running {
    async fn shutdown(mut self) {
        for s in [&mut self.grpc, &mut self.http] {
            // Stop accepting (the servers drop their listener at once) ...
            if let Some(tx) = s.shutdown.take() {
                let _ = tx.send(());
            }
            // ... and break every established connection, so graceful
            // shutdown does not wait for clients and clients see errors.
            s.conns.kill_all();
        }
        for s in [self.grpc, self.http] {
            let mut task = s.task;
            if tokio::time::timeout(STOP_DEADLINE, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    fn abort(self) {
        for s in [self.grpc, self.http] {
            s.conns.kill_all();
            s.task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Ports handed out by the kernel (`:0`) come from the ephemeral range,
/// which is also where every outgoing connection's source port comes from:
/// while the upstream is stopped, a client socket (or another test's
/// `:0` listener) can take its port and `restart` could never rebind it.
/// So the upstream listens below the ephemeral range (Linux:
/// 32768-60999), on a port picked at random in 20000-25999
/// (`tests/forward_crash.rs` takes chainpulse's ports from 26000-31999).
fn bind_fixed_range() -> io::Result<TcpListener> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed));
    let mut last = None;
    for i in 0..2000u32 {
        let port = 20_000 + (seed.wrapping_add(i.wrapping_mul(104_729)) % 6_000) as u16;
        match bind(SocketAddr::from(([127, 0, 0, 1], port))) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port in 20000-25999")))
}

async fn bind_retry(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + REBIND_DEADLINE;
    loop {
        match bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() >= deadline => {
                panic!("upstream: rebinding {addr} failed for {REBIND_DEADLINE:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn spawn_grpc(shared: Arc<Shared>, listener: TcpListener) -> ServerTask {
    let conns = Conns::default();
    let (tx, rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map({
        let conns = conns.clone();
        move |accepted| accepted.map(|s| conns.track(s))
    });
    let svc = GrpcTraceService { shared };
    let task = tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            eprintln!("upstream: gRPC server failed: {e}");
        }
    });
    ServerTask {
        task,
        shutdown: Some(tx),
        conns,
    }
}

fn spawn_http(shared: Arc<Shared>, listener: TcpListener) -> ServerTask {
    let conns = Conns::default();
    let (tx, rx) = oneshot::channel::<()>();
    let router = axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_SIZE))
        .with_state(shared);
    let listener = TrackedListener {
        inner: listener,
        conns: conns.clone(),
    };
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            eprintln!("upstream: HTTP server failed: {e}");
        }
    });
    ServerTask {
        task,
        shutdown: Some(tx),
        conns,
    }
}

// ---------------------------------------------------------------------------
// Connection tracking: every accepted socket is duplicated (a second fd onto
// the same socket) so `stop` can `shutdown(2)` it; that wakes the server's
// pending reads with EOF and sends FIN to the client. The duplicate is
// dropped together with the connection, so normal closes are unaffected.

#[derive(Clone, Default)]
struct Conns(Arc<Mutex<ConnSet>>);

#[derive(Default)]
struct ConnSet {
    next_id: u64,
    live: HashMap<u64, std::net::TcpStream>,
    killed: bool,
}

impl Conns {
    fn track(&self, stream: TcpStream) -> TrackedStream {
        let dup = dup_socket(&stream);
        let mut set = self.0.lock();
        let id = set.next_id;
        set.next_id += 1;
        match dup {
            Ok(dup) if set.killed => {
                let _ = dup.shutdown(Shutdown::Both);
            }
            Ok(dup) => {
                set.live.insert(id, dup);
            }
            Err(e) => eprintln!("upstream: cannot track connection (stop won't close it): {e}"),
        }
        TrackedStream {
            inner: stream,
            id,
            conns: self.clone(),
        }
    }

    fn kill_all(&self) {
        let mut set = self.0.lock();
        set.killed = true;
        for (_, s) in set.live.drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(unix)]
fn dup_socket(s: &TcpStream) -> io::Result<std::net::TcpStream> {
    use std::os::fd::AsFd;
    s.as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
}

#[cfg(windows)]
fn dup_socket(s: &TcpStream) -> io::Result<std::net::TcpStream> {
    use std::os::windows::io::AsSocket;
    s.as_socket()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
}

struct TrackedStream {
    inner: TcpStream,
    id: u64,
    conns: Conns,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.conns.0.lock().live.remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

struct TrackedListener {
    inner: TcpListener,
    conns: Conns,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => return (self.conns.track(stream), peer),
                // e.g. EMFILE: back off like axum's own TcpListener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

// ---------------------------------------------------------------------------
// OTLP/gRPC.

/// Decoded request plus its exact message bytes.
type RawExport = (Bytes, ExportTraceServiceRequest);

#[derive(Clone)]
struct GrpcTraceService {
    shared: Arc<Shared>,
}

impl NamedService for GrpcTraceService {
    const NAME: &'static str = trace_service_server::SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for GrpcTraceService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("upstream: only TraceService/Export").into_http())
            });
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec {
                shared: shared.clone(),
            })
            .apply_compression_config(accept, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(MAX_MESSAGE_SIZE), None);
            Ok(grpc.unary(ExportSvc(shared), req).await)
        })
    }
}

struct RawCodec {
    shared: Arc<Shared>,
}

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = RawExport;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder {
            shared: self.shared.clone(),
        }
    }
}

struct RawDecoder {
    shared: Arc<Shared>,
}

impl Decoder for RawDecoder {
    type Item = RawExport;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<RawExport>, tonic::Status> {
        use bytes::Buf as _;
        let raw = buf.copy_to_bytes(buf.remaining());
        match ExportTraceServiceRequest::decode(raw.clone()) {
            Ok(req) => Ok(Some((raw, req))),
            Err(e) => {
                self.shared.bad_request();
                Err(tonic::Status::invalid_argument(format!(
                    "upstream: undecodable ExportTraceServiceRequest: {e}"
                )))
            }
        }
    }
}

struct ExportSvc(Arc<Shared>);

impl UnaryService<RawExport> for ExportSvc {
    type Response = ExportTraceServiceResponse;
    type Future =
        tonic::codegen::BoxFuture<tonic::Response<ExportTraceServiceResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<RawExport>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move { grpc_export(&shared, request).await })
    }
}

async fn grpc_export(
    shared: &Shared,
    request: tonic::Request<RawExport>,
) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
    let headers = header_pairs(&request.metadata().clone().into_headers());
    let gzip = request
        .metadata()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let (raw, request) = request.into_inner();
    match shared.decide() {
        Decision::Fail {
            grpc, retry_after, ..
        } => {
            let message = "upstream: injected failure";
            let retryable = matches!(
                grpc,
                tonic::Code::ResourceExhausted | tonic::Code::Unavailable
            );
            Err(match retry_after {
                Some(d) if retryable => tonic::Status::with_details(
                    grpc,
                    message,
                    rpc_status(grpc, message, Some(d)).encode_to_vec().into(),
                ),
                _ => tonic::Status::new(grpc, message),
            })
        }
        Decision::Accept {
            epoch,
            delay,
            partial,
        } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let arrival = Arrival {
                request,
                raw,
                headers,
                gzip,
            };
            if !shared.commit(epoch, arrival) {
                return Err(tonic::Status::unavailable("upstream: stopped"));
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: partial,
            }))
        }
    }
}

// ---------------------------------------------------------------------------
// OTLP/HTTP.

const PROTOBUF: &str = "application/x-protobuf";

fn http_reply(
    status: StatusCode,
    extra: Option<(header::HeaderName, String)>,
    body: Vec<u8>,
) -> axum::response::Response {
    let mut b = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, PROTOBUF);
    if let Some((name, value)) = extra {
        b = b.header(name, value);
    }
    b.body(axum::body::Body::from(body))
        .expect("upstream: valid HTTP response")
}

fn http_bad(shared: &Shared, status: StatusCode, message: String) -> axum::response::Response {
    shared.bad_request();
    let body = rpc_status(tonic::Code::InvalidArgument, &message, None).encode_to_vec();
    http_reply(status, None, body)
}

async fn http_export(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header_str = |name: header::HeaderName| {
        headers.get(name).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
    };
    if let Some(ct) = header_str(header::CONTENT_TYPE) {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime != PROTOBUF && mime != "application/protobuf" {
            return http_bad(
                &shared,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("upstream: unsupported content type {ct:?} (protobuf only)"),
            );
        }
    }
    let gzip = match header_str(header::CONTENT_ENCODING).as_deref() {
        None | Some("") | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return http_bad(
                &shared,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("upstream: unsupported content encoding {other:?}"),
            )
        }
    };
    let raw = if gzip {
        let mut out = Vec::new();
        let limit = u64::try_from(MAX_MESSAGE_SIZE).unwrap_or(u64::MAX) + 1;
        let read = flate2::read::GzDecoder::new(body.as_ref())
            .take(limit)
            .read_to_end(&mut out);
        match read {
            Ok(n) if n <= MAX_MESSAGE_SIZE => Bytes::from(out),
            Ok(_) => {
                return http_bad(
                    &shared,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "upstream: decompressed body too large".into(),
                )
            }
            Err(e) => {
                return http_bad(
                    &shared,
                    StatusCode::BAD_REQUEST,
                    format!("upstream: bad gzip body: {e}"),
                )
            }
        }
    } else {
        body
    };
    let request = match ExportTraceServiceRequest::decode(raw.clone()) {
        Ok(r) => r,
        Err(e) => {
            return http_bad(
                &shared,
                StatusCode::BAD_REQUEST,
                format!("upstream: undecodable ExportTraceServiceRequest: {e}"),
            )
        }
    };
    match shared.decide() {
        Decision::Fail {
            grpc,
            http,
            retry_after,
        } => {
            let status = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = rpc_status(grpc, "upstream: injected failure", retry_after).encode_to_vec();
            let retry_header = retry_after.map(|d| {
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                (header::RETRY_AFTER, secs.to_string())
            });
            http_reply(status, retry_header, body)
        }
        Decision::Accept {
            epoch,
            delay,
            partial,
        } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let arrival = Arrival {
                request,
                raw,
                headers: header_pairs(&headers),
                gzip,
            };
            if !shared.commit(epoch, arrival) {
                let body =
                    rpc_status(tonic::Code::Unavailable, "upstream: stopped", None).encode_to_vec();
                return http_reply(StatusCode::SERVICE_UNAVAILABLE, None, body);
            }
            let response = ExportTraceServiceResponse {
                partial_success: partial,
            };
            http_reply(StatusCode::OK, None, response.encode_to_vec())
        }
    }
}
