//! Accepting connections so that slow or idle clients cannot stop ingest.
//!
//! Every listener (OTLP/gRPC, OTLP/HTTP, metrics) gets:
//! - a connection cap (`server.max_connections` each): past it a new
//!   connection is closed at once and counted, so one port's clients cannot
//!   use up the process's file descriptors and silence the others (the
//!   metrics port, with `/healthz`, has its own cap);
//! - an idle timeout (`server.idle_timeout_ms`): a connection on which
//!   nothing is read or written for that long is closed;
//! - on the HTTP listeners (served here with hyper directly), a header-read
//!   timeout for HTTP/1.1 and SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2
//!   (tonic sets the same on :4317).
//!
//! The body-read timeout is the receivers' (`receive::http`,
//! `receive::grpc_body`): it bounds one request, not a connection.

use crate::export::names::{CONNECTIONS, CONNECTIONS_IDLE_CLOSED, CONNECTIONS_REFUSED};
use crate::export::Registry;
use metrics::{Counter, Gauge};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

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

/// Admits connections up to the cap, and wraps each in a [`Guarded`].
pub struct Gate {
    slots: Arc<Semaphore>,
    limits: ConnLimits,
    open: Gauge,
    refused: Counter,
    idle_closed: Counter,
}

impl Gate {
    pub fn new(registry: &Registry, listener: &'static str, limits: ConnLimits) -> Self {
        let l = [("listener", listener)];
        Gate {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            open: registry.gauge(CONNECTIONS, &l),
            refused: registry.counter(CONNECTIONS_REFUSED, &l),
            idle_closed: registry.counter(CONNECTIONS_IDLE_CLOSED, &l),
        }
    }

    /// The next admitted connection (refused ones are closed and counted).
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
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            self.open
                .set((self.limits.max_connections - self.slots.available_permits()) as f64);
            return Guarded {
                stream,
                _permit: permit,
                idle: self.limits.idle_timeout,
                last: Instant::now(),
                timer: Box::pin(tokio::time::sleep(self.limits.idle_timeout)),
                idle_closed: self.idle_closed.clone(),
                open: self.open.clone(),
                slots: self.slots.clone(),
                max: self.limits.max_connections,
            };
        }
    }
}

/// A connection holding its slot, closed after `idle` without traffic.
pub struct Guarded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    idle_closed: Counter,
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
    /// Err(TimedOut) once the connection has been idle for `idle`.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let due = self.last + self.idle;
            if Instant::now() >= due {
                self.idle_closed.increment(1);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle (server.idle_timeout_ms)",
                ));
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

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The admitted connections of `listener`, for tonic's
/// `serve_with_incoming_shutdown`.
pub fn incoming(
    listener: TcpListener,
    gate: Gate,
) -> impl futures_util::Stream<Item = io::Result<Guarded>> + Send + 'static {
    futures_util::stream::unfold((listener, gate), |(listener, gate)| async move {
        let conn = gate.accept(&listener).await;
        Some((Ok(conn), (listener, gate)))
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
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            conn = gate.accept(&listener) => conn,
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
