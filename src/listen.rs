//! Accepting connections so that slow or idle clients cannot stop ingest.
//!
//! Every listener (OTLP/gRPC, OTLP/HTTP, metrics) gets:
//! - a connection cap (`server.max_connections` each): past it a new
//!   connection is answered and closed, and counted, so one port's clients
//!   cannot use up the process's file descriptors and silence the others
//!   (the metrics port, with `/healthz`, has its own cap). The answer, on a
//!   plaintext listener: HTTP/1.1 `503` with `Retry-After: 1` and a
//!   one-line body; HTTP/2 (and so gRPC) a SETTINGS frame and `GOAWAY`
//!   with `REFUSED_STREAM` and last stream 0 (the client knows nothing was
//!   processed; gRPC clients report UNAVAILABLE, or CANCELLED when the
//!   GOAWAY arrives before their request, both retryable in OTLP). On
//!   the metrics port `GET /healthz` is answered `ok` even then, so a flood
//!   of that port does not get the pod restarted. At most
//!   [`MAX_REFUSALS_ANSWERING`] such answers are in progress per listener
//!   (beyond, connections are closed unanswered); TLS listeners close
//!   refused connections unanswered (answering would need a handshake,
//!   the costly part of a flood);
//! - an idle timeout (`server.idle_timeout_ms`): a connection on which
//!   nothing is read or written for that long, or which carries no request
//!   for that long, is closed (the second catches an HTTP/2 client that
//!   keeps a connection busy with PINGs or half-sent frames);
//! - a header-read timeout (`server.header_read_timeout_ms`) from accept
//!   to the first request's complete headers, TLS handshake included, on
//!   every listener and both HTTP versions: hyper has one for HTTP/1.1
//!   only, so this one is tracked here, by a tower layer seeing when a
//!   request reaches the service (HTTP/2: its HEADERS complete);
//! - on the HTTP listeners (served here with hyper directly)
//!   SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2 (tonic sets the same on
//!   :4317);
//! - optional TLS (`crate::tls`): the handshake runs in the connection's
//!   own task, never in the accept loop, so a slow handshake holds one
//!   connection slot and nothing else.
//!
//! The body-read timeout is the receivers' (`receive::http`,
//! `receive::grpc_body`): it bounds one request, not a connection.

use crate::export::names::{
    CONNECTIONS, CONNECTIONS_HEADER_TIMEOUT, CONNECTIONS_IDLE_CLOSED, CONNECTIONS_REFUSED,
    CONNECTIONS_REFUSED_ANSWERED,
};
use crate::export::Registry;
use crate::tls::Acceptor;
use metrics::{Counter, Gauge};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Refused connections being answered at once, per listener.
pub const MAX_REFUSALS_ANSWERING: usize = 32;

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_concurrent_streams: u32,
}

impl ConnLimits {
    pub fn from_config(c: &crate::config::ServerConfig) -> Self {
        ConnLimits {
            max_connections: c.max_connections,
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            max_concurrent_streams: c.max_concurrent_streams,
        }
    }
}

/// What a refused connection is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// gRPC: HTTP/2 only.
    H2,
    /// HTTP/1.1 or HTTP/2 by the client's first bytes.
    Http,
    /// The metrics port: as `Http`, and `GET /healthz` answered `ok`.
    Metrics,
    /// TLS: closed unanswered.
    None,
}

/// Admits connections up to the cap, and wraps each in a [`Guarded`].
pub struct Gate {
    slots: Arc<Semaphore>,
    limits: ConnLimits,
    open: Gauge,
    refused: Counter,
    answered: Counter,
    answering: Arc<Semaphore>,
    answer: Answer,
    idle_closed: Counter,
    header_timeout: Counter,
    tls: Option<Acceptor>,
}

impl Gate {
    pub fn new(
        registry: &Registry,
        listener: &'static str,
        limits: ConnLimits,
        tls: Option<Acceptor>,
    ) -> Self {
        let l = [("listener", listener)];
        let answer = match (listener, tls.is_some()) {
            (_, true) => Answer::None,
            ("grpc", _) => Answer::H2,
            ("metrics", _) => Answer::Metrics,
            _ => Answer::Http,
        };
        Gate {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            open: registry.gauge(CONNECTIONS, &l),
            refused: registry.counter(CONNECTIONS_REFUSED, &l),
            answered: registry.counter(CONNECTIONS_REFUSED_ANSWERED, &l),
            answering: Arc::new(Semaphore::new(MAX_REFUSALS_ANSWERING)),
            answer,
            idle_closed: registry.counter(CONNECTIONS_IDLE_CLOSED, &l),
            header_timeout: registry.counter(CONNECTIONS_HEADER_TIMEOUT, &l),
            tls,
        }
    }

    /// The next admitted connection (refused ones are answered, closed and
    /// counted).
    pub async fn accept(&self, listener: &TcpListener) -> Guarded {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.refused.increment(1);
                self.refuse(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            self.open
                .set((self.limits.max_connections - self.slots.available_permits()) as f64);
            let now = Instant::now();
            let first = self
                .limits
                .idle_timeout
                .min(self.limits.header_read_timeout);
            return Guarded {
                stream,
                _permit: permit,
                idle: self.limits.idle_timeout,
                header: self.limits.header_read_timeout,
                last: now,
                timer: Box::pin(tokio::time::sleep(first)),
                activity: Arc::new(Activity::new(now)),
                idle_closed: self.idle_closed.clone(),
                header_timeout: self.header_timeout.clone(),
                open: self.open.clone(),
                slots: self.slots.clone(),
                max: self.limits.max_connections,
            };
        }
    }

    /// Answers a connection over the cap in a task of its own (bounded by
    /// [`MAX_REFUSALS_ANSWERING`]), or closes it.
    fn refuse(&self, stream: TcpStream) {
        if self.answer == Answer::None {
            return;
        }
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            return;
        };
        let answer = self.answer;
        let answered = self.answered.clone();
        tokio::spawn(async move {
            let _ = answer_refused(stream, answer, answered).await;
            drop(permit);
        });
    }

    /// Wraps an admitted connection, shaking hands first on a TLS listener
    /// (within the header-read timeout; None when that fails).
    pub async fn secure(&self, conn: Guarded) -> Option<Conn> {
        match &self.tls {
            None => Some(Conn::Plain(conn)),
            Some(acceptor) => {
                let activity = conn.activity.clone();
                let remote = conn.stream.peer_addr().ok();
                let stream = acceptor.accept(conn).await?;
                Some(Conn::Tls {
                    stream: Box::new(stream),
                    info: ConnInfo { remote, activity },
                })
            }
        }
    }
}

/// HTTP/2 frames: an empty SETTINGS, then GOAWAY(last stream 0,
/// REFUSED_STREAM) with a reason.
fn h2_refusal() -> Vec<u8> {
    const REASON: &[u8] = b"connection limit reached (server.max_connections); retry later";
    let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let len = (8 + REASON.len()) as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&0x7u32.to_be_bytes());
    out.extend_from_slice(REASON);
    out
}

fn http1_answer(status: &str, retry: bool, body: &str) -> Vec<u8> {
    let retry = if retry { "Retry-After: 1\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status}\r\n{retry}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads the start of the request (briefly), answers, and closes politely:
/// what the client sent is drained so the close is a FIN, not a reset that
/// could destroy the answer before the client reads it.
async fn answer_refused(
    mut stream: TcpStream,
    answer: Answer,
    answered: Counter,
) -> io::Result<()> {
    const PATIENCE: Duration = Duration::from_secs(1);
    let mut head = [0u8; 64];
    let mut n = 0;
    let _ = tokio::time::timeout(PATIENCE, async {
        while n < head.len() {
            match stream.read(&mut head[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if head[..n].contains(&b'\n') || head[..n].starts_with(b"PRI * HTTP/2.0") {
                break;
            }
        }
    })
    .await;
    let head = &head[..n];
    let h2 = answer == Answer::H2 || head.starts_with(b"PRI * HTTP/2.0");
    let reply = if h2 {
        h2_refusal()
    } else if answer == Answer::Metrics && head.starts_with(b"GET /healthz ") {
        http1_answer("200 OK", false, "ok\n")
    } else {
        http1_answer(
            "503 Service Unavailable",
            true,
            "connection limit reached (server.max_connections); retry later\n",
        )
    };
    tokio::time::timeout(PATIENCE, stream.write_all(&reply))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    answered.increment(1);
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(PATIENCE, async {
        let mut drained = 0usize;
        while drained < 256 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(k) => drained += k,
            }
        }
    })
    .await;
    Ok(())
}

/// When a connection last began or finished a request, and how many it
/// has in progress: the header-read and request-idle deadlines.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last request start or end.
    last_ms: AtomicU64,
    started: AtomicBool,
}

impl Activity {
    fn new(opened: Instant) -> Self {
        Activity {
            opened,
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            started: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// A request reached the service; ends when the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.store(true, Ordering::Release);
        self.touch();
        InFlight(self.clone())
    }

    /// When the connection is due to close for want of requests (None
    /// while one is in progress), and whether it is the first request that
    /// never came.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, bool)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let first = !self.started.load(Ordering::Acquire);
        let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some((last + if first { header } else { idle }, first))
    }
}

/// One request in progress on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection holding its slot, closed after `idle` without traffic or
/// requests, or `header` without a first request.
pub struct Guarded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    header: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    activity: Arc<Activity>,
    idle_closed: Counter,
    header_timeout: Counter,
    open: Gauge,
    slots: Arc<Semaphore>,
    max: usize,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The permit is released after this; count it as gone already.
        let open = self.max - self.slots.available_permits() - 1;
        self.open.set(open as f64);
    }
}

impl Guarded {
    /// Err(TimedOut) once a deadline has passed.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let now = Instant::now();
            let mut due = self.last + self.idle;
            if now >= due {
                self.idle_closed.increment(1);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle (server.idle_timeout_ms)",
                ));
            }
            if let Some((request_due, first)) = self.activity.deadline(self.header, self.idle) {
                if now >= request_due {
                    let what = if first {
                        self.header_timeout.increment(1);
                        "no complete request headers (server.header_read_timeout_ms)"
                    } else {
                        self.idle_closed.increment(1);
                        "no request (server.idle_timeout_ms)"
                    };
                    return Err(io::Error::new(io::ErrorKind::TimedOut, what));
                }
                due = due.min(request_due);
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.last = Instant::now();
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.last = Instant::now();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// An admitted connection, plain or TLS.
pub enum Conn {
    Plain(Guarded),
    Tls {
        stream: Box<tokio_rustls::server::TlsStream<Guarded>>,
        info: ConnInfo,
    },
}

impl Conn {
    pub fn activity(&self) -> &Arc<Activity> {
        match self {
            Conn::Plain(g) => &g.activity,
            Conn::Tls { info, .. } => &info.activity,
        }
    }
}

/// What tonic puts in each request's extensions: the peer, and the
/// connection's [`Activity`] for [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    pub activity: Arc<Activity>,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(g) => ConnInfo {
                remote: g.stream.peer_addr().ok(),
                activity: g.activity.clone(),
            },
            Conn::Tls { info, .. } => info.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(g) => Pin::new(g).poll_read(cx, buf),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(g) => Pin::new(g).poll_write(cx, data),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(g) => Pin::new(g).poll_flush(cx),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(g) => Pin::new(g).poll_shutdown(cx),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(g) => Pin::new(g).poll_write_vectored(cx, bufs),
            Conn::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(g) => g.is_write_vectored(),
            Conn::Tls { stream, .. } => stream.is_write_vectored(),
        }
    }
}

/// Marks each request as in progress on its connection (for the
/// header-read and request-idle deadlines). The connection's [`Activity`]
/// is given (hyper, one service per connection) or found in the request's
/// [`ConnInfo`] extension (tonic).
#[derive(Clone, Default)]
pub struct TrackLayer {
    activity: Option<Arc<Activity>>,
}

impl TrackLayer {
    pub fn new() -> Self {
        TrackLayer::default()
    }

    pub fn for_connection(activity: Arc<Activity>) -> Self {
        TrackLayer {
            activity: Some(activity),
        }
    }
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Track {
            inner,
            activity: self.activity.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    activity: Option<Arc<Activity>>,
}

impl<S, B> tower::Service<http::Request<B>> for Track<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let activity = self.activity.clone().or_else(|| {
            req.extensions()
                .get::<ConnInfo>()
                .map(|i| i.activity.clone())
        });
        let in_flight = activity.map(|a| a.begin());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(in_flight);
            r
        })
    }
}

/// The admitted connections of `listener`, for tonic's
/// `serve_with_incoming_shutdown`. TLS handshakes run in tasks of their
/// own (at most `server.max_connections` of them: each holds a slot), so
/// one slow client cannot hold up the accept loop.
pub fn incoming(
    listener: TcpListener,
    gate: Gate,
) -> impl futures_util::Stream<Item = io::Result<Conn>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Conn>(64);
    let gate = Arc::new(gate);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                conn = gate.accept(&listener) => conn,
                () = tx.closed() => return,
            };
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(conn) = gate.secure(conn).await {
                    let _ = tx.send(conn).await;
                }
            });
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let conn = rx.recv().await?;
        Some((Ok(conn), rx))
    })
}

/// Serves an axum router over HTTP/1.1 and HTTP/2 (prior knowledge) with
/// the gate's limits, until `shutdown`; then lets open connections finish.
pub async fn serve_http(
    listener: TcpListener,
    gate: Gate,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gate.limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(gate.limits.max_concurrent_streams);
    let builder = Arc::new(builder);
    let gate = Arc::new(gate);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            conn = gate.accept(&listener) => conn,
            () = &mut shutdown => break,
        };
        // Watched from accept on, so shutdown waits for handshakes too.
        let (gate, builder, watcher, app) = (
            gate.clone(),
            builder.clone(),
            graceful.watcher(),
            app.clone(),
        );
        tokio::spawn(async move {
            let Some(conn) = gate.secure(conn).await else {
                return;
            };
            let track = TrackLayer::for_connection(conn.activity().clone());
            let service = hyper_util::service::TowerToHyperService::new(
                tower::ServiceBuilder::new().layer(track).service(app),
            );
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(conn), service)
                .into_owned();
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
