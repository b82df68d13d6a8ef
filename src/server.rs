//! Runs the three listeners and the background tick, and stops them
//! gracefully.

use crate::api::grpc::{KpiGrpc, KpiServiceServer};
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::export::Registry;
use crate::forward::Forwarder;
use crate::pipeline::Pipeline;
use crate::receive::grpc::{traces_only, OtlpGrpc, TraceServiceServer};
use crate::receive::http;
use crate::receive::{IngestError, Protocol};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

/// The addresses actually bound (port 0 in the config picks a free port).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
}

pub struct Server {
    addrs: Addrs,
    pipeline: Arc<Pipeline>,
    api: Arc<ApiState>,
    stop_ingest: watch::Sender<bool>,
    stop_api: watch::Sender<bool>,
    ingest_tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    api_task: JoinHandle<anyhow::Result<()>>,
    tick_task: JoinHandle<()>,
    /// Certificate and token reloaders.
    watchers: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

fn signal(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

impl Server {
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        let registry = Arc::new(Registry::with_limits(config.limits.label_limits()));
        let forwarder =
            Forwarder::start(config, registry.clone()).context("starting forwarding")?;
        let pipeline = Arc::new(
            Pipeline::new(config, registry, forwarder).context("loading the price table")?,
        );
        let api = Arc::new(ApiState {
            pipeline: pipeline.clone(),
            accepting: false.into(),
        });

        let grpc_listener = bind(config.server.grpc_addr, "OTLP/gRPC").await?;
        let http_listener = bind(config.server.http_addr, "OTLP/HTTP").await?;
        let api_listener = bind(config.server.metrics_addr, "metrics").await?;
        let addrs = Addrs {
            grpc: grpc_listener.local_addr()?,
            http: http_listener.local_addr()?,
            metrics: api_listener.local_addr()?,
        };

        let (stop_ingest, ingest_rx) = watch::channel(false);
        let (stop_api, api_rx) = watch::channel(false);
        let limit = config.limits.max_request_bytes;

        let traces = TraceServiceServer::new(OtlpGrpc::new(pipeline.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit);
        // Larger HTTP/2 windows than the 64 KiB default: an SDK batch (512
        // LLM spans) is a few hundred KiB, which would otherwise wait on
        // several WINDOW_UPDATE round trips.
        let conn_limits = crate::listen::ConnLimits::from_config(&config.server);
        let security = Security::load(config, pipeline.registry())?;
        let gate = |name| {
            let tls = security
                .tls
                .as_ref()
                .filter(|_| config.tls.serves(name))
                .map(|c| c.acceptor(pipeline.registry(), name, conn_limits.header_read_timeout));
            crate::listen::Gate::new(pipeline.registry(), name, conn_limits, tls)
        };
        let grpc_auth = security
            .guard("grpc", &[], pipeline.registry())
            .map(|g| crate::auth::AuthLayer::new(g, crate::auth::refuse_grpc::<tonic::body::Body>));
        let grpc = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(config.server.max_concurrent_streams))
            .initial_stream_window_size(Some(1 << 20))
            .initial_connection_window_size(Some(4 << 20))
            .layer(crate::listen::TrackLayer::new())
            // Before anything reads (or reserves memory for) the body.
            .layer(tower::util::option_layer(grpc_auth))
            .layer(tower::util::MapResponseLayer::new({
                let pipeline = pipeline.clone();
                move |r| size_limit_status(&pipeline, r)
            }))
            .layer(crate::receive::grpc_body::ExportBodyLayer::new(
                pipeline.clone(),
            ))
            .add_service(traces)
            .add_service(KpiServiceServer::new(KpiGrpc::new(pipeline.clone())))
            .add_service(traces_only::metrics())
            .add_service(traces_only::logs())
            .serve_with_incoming_shutdown(
                crate::listen::incoming(grpc_listener, gate("grpc")),
                signal(&ingest_rx),
            );
        let grpc_task = tokio::spawn(async move { grpc.await.context("OTLP/gRPC server") });

        let mut http_app = http::router(pipeline.clone());
        if let Some(g) = security.guard("http", &[], pipeline.registry()) {
            http_app = http_app.layer(crate::auth::AuthLayer::new(
                g,
                crate::auth::refuse_otlp_http,
            ));
        }
        let http_shutdown = signal(&ingest_rx);
        let http_gate = gate("http");
        let http_task = tokio::spawn(async move {
            crate::listen::serve_http(http_listener, http_gate, http_app, http_shutdown)
                .await
                .context("OTLP/HTTP server")
        });

        let mut api_app = api::router(api.clone());
        if let Some(g) = security.guard("metrics", &api::OPEN_PATHS, pipeline.registry()) {
            api_app = api_app.layer(crate::auth::AuthLayer::new(g, crate::auth::refuse_api));
        }
        let api_shutdown = signal(&api_rx);
        let api_gate = gate("metrics");
        let api_task = tokio::spawn(async move {
            crate::listen::serve_http(api_listener, api_gate, api_app, api_shutdown)
                .await
                .context("metrics server")
        });

        let tick_pipeline = pipeline.clone();
        let tick_task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                tick_pipeline.tick();
            }
        });

        api.accepting.store(true, Ordering::Release);
        tracing::info!(
            grpc = %addrs.grpc, http = %addrs.http, metrics = %addrs.metrics,
            version = env!("CARGO_PKG_VERSION"),
            worker_threads = config.server.runtime_threads(),
            "chainpulse listening"
        );
        Ok(Server {
            addrs,
            pipeline,
            api,
            stop_ingest,
            stop_api,
            ingest_tasks: vec![grpc_task, http_task],
            api_task,
            tick_task,
            watchers: security.watch(config),
            shutdown_timeout: Duration::from_millis(config.server.shutdown_timeout_ms),
        })
    }

    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Stops accepting, lets in-flight exports finish (up to the shutdown
    /// timeout), releases every held trace into the metrics, then stops the
    /// metrics server.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down: no longer accepting exports");
        self.api.accepting.store(false, Ordering::Release);
        let _ = self.stop_ingest.send(true);
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let mut clean = true;
        for task in self.ingest_tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::error!(error = %e, "listener failed");
                    clean = false;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "listener task panicked");
                    clean = false;
                }
                Err(_) => {
                    tracing::warn!("in-flight exports did not finish before the shutdown timeout");
                    abort.abort();
                }
            }
        }
        self.tick_task.abort();
        for w in &self.watchers {
            w.abort();
        }
        // Every held trace is released (and gets its sampling decision)
        // before the forwarder drains its queues.
        self.pipeline.drain();
        if let Some(f) = self.pipeline.forwarder() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            f.shutdown(left.max(Duration::from_secs(1))).await;
        }
        let _ = self.stop_api.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.api_task).await;
        tracing::info!(clean, "chainpulse stopped");
        Ok(())
    }
}

/// The listeners' certificates and tokens (`[tls]`, `[auth]`), loaded at
/// start-up: an error names its config key and stops `run`.
struct Security {
    tls: Option<Arc<crate::tls::Certificates>>,
    /// One per configured token key (`auth.bearer_token`,
    /// `auth.metrics_bearer_token`).
    tokens: Vec<(&'static str, Arc<crate::auth::Token>)>,
    auth: crate::config::AuthConfig,
}

impl Security {
    fn load(config: &Config, registry: &Registry) -> anyhow::Result<Security> {
        let tls = if config.tls.enabled() {
            Some(
                crate::tls::Certificates::load(&config.tls, registry)
                    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
            )
        } else {
            None
        };
        let mut tokens: Vec<(&'static str, Arc<crate::auth::Token>)> = Vec::new();
        for listener in crate::config::LISTENERS {
            if let Some((key, template)) = config.auth.template_for(listener) {
                if tokens.iter().all(|(k, _)| *k != key) {
                    let token = crate::auth::Token::new(key, template, registry)
                        .map_err(|m| anyhow::anyhow!("invalid configuration: {m}"))?;
                    tokens.push((key, token));
                }
            }
        }
        Ok(Security {
            tls,
            tokens,
            auth: config.auth.clone(),
        })
    }

    fn guard(
        &self,
        listener: &'static str,
        open_paths: &'static [&'static str],
        registry: &Registry,
    ) -> Option<crate::auth::Guard> {
        let (key, _) = self.auth.template_for(listener)?;
        let (_, token) = self.tokens.iter().find(|(k, _)| *k == key)?;
        Some(crate::auth::Guard::new(
            token.clone(),
            registry,
            listener,
            open_paths,
        ))
    }

    fn watch(&self, config: &Config) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(c) = &self.tls {
            tasks.push(tokio::spawn(c.clone().watch()));
        }
        let every = Duration::from_millis(config.auth.reload_interval_ms);
        for (_, t) in &self.tokens {
            tasks.push(tokio::spawn(t.clone().watch(every)));
        }
        tasks
    }
}

/// tonic enforces the gRPC size limits before the service runs. It answers a
/// message over `max_decoding_message_size` with OUT_OF_RANGE, where gRPC
/// (and OTLP) expect RESOURCE_EXHAUSTED — which its decompression limit
/// already returns — so this maps one to the other, and counts both in the
/// rejection counters the service itself never sees.
fn size_limit_status<B>(
    pipeline: &Pipeline,
    mut response: ::http::Response<B>,
) -> ::http::Response<B> {
    let headers = response.headers_mut();
    let status = headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .unwrap_or("0");
    if status != "11" && status != "8" {
        return response;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("")
        .replace("%20", " ");
    let limit = pipeline.max_request_bytes();
    let rejection = if message.contains("message length too large") {
        headers.insert("grpc-status", ::http::HeaderValue::from_static("8"));
        Some(IngestError::TooLarge {
            size: limit + 1,
            limit,
        })
    } else if message.contains("exceeded while decompressing") {
        Some(IngestError::DecompressedTooLarge { limit })
    } else {
        None
    };
    if let Some(e) = rejection {
        pipeline.reject_transport(Protocol::Grpc, e);
    }
    response
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
