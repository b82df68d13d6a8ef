//! Stage 4b: forward every accepted trace upstream, and never lose one.
//!
//! ```text
//!  ingest ──► prepare ──► queue (per destination) ──► sender ──► upstream
//!  (counted)  redact,      memory or disk WAL;          batch, sample,
//!             truncate     full → back-pressure         send, retry, ack
//! ```
//!
//! [`Forwarder::submit`] runs on the export request's own task, after the
//! request has been decoded and validated and before it is acknowledged: the
//! prepared bytes (without the spans validation rejected) go into every
//! destination's queue (for a disk queue: into
//! its write-ahead log, fsynced per policy), and only then does the
//! application get its success. A full queue makes the whole request fail
//! with back-pressure (gRPC RESOURCE_EXHAUSTED with RetryInfo, HTTP 503 with
//! Retry-After), which OTel SDKs retry — nothing is counted or queued for a
//! refused request, so the retry is not double-counted. A destination can
//! instead be configured to drop (`queue.on_full = "drop"`, counted).
//!
//! Each destination has its own queue and sender task, so a slow or dead
//! upstream only fills its own queue.
//!
//! A disk queue recovery cannot repair (a newer format, overlapping
//! segments, an I/O error) disables its destination only (`Disabled`):
//! one bad directory must not stop ingest, metrics and the other
//! destinations, nor crash-loop the process. What recovery did repair is
//! counted and logged by `report_recovery`.
//!
//! This file is the public face: [`Forwarder::start`], [`Forwarder::submit`],
//! [`Forwarder::shutdown`] (plus the gauges' `refresh`, the sampler as the
//! aggregator's [`TraceSubscriber`], and `queue_depths`), and the errors.
//! The parts, all `pub(crate)`, are split by what they do:
//!
//! * `prepare/` — drop rejected spans, redact, truncate (once per request);
//! * `queue/` — `memory.rs`, `disk.rs` (group commit), `wal.rs` (the log);
//! * `send/` — the sender loop, the gRPC/HTTP client, retry classification,
//!   secret header values;
//! * `sampling.rs` — tail sampling; `config.rs` (public) — `[forward]`.

pub mod config;
pub(crate) mod prepare;
#[cfg(unix)]
pub(crate) mod queue;
pub(crate) mod sampling;
pub(crate) mod send;

pub use queue::Depth as QueueDepth;

use crate::aggregate::finished::TraceSubscriber;
use crate::config::ConfigError;
use crate::export::names::{
    FORWARD_DESTINATION_DISABLED, FORWARD_DESTINATION_UP, FORWARD_FAILED, FORWARD_QUEUE_LOST_BYTES,
    FORWARD_QUEUE_LOST_RECORDS, FORWARD_SPANS, FORWARD_WAL_CORRUPT,
};
use crate::export::Registry;
use crate::otlp_view::ExportTraceServiceRequest as View;
use bytes::Bytes;
use config::{FsyncMode, OnFull, QueueKind};
use parking_lot::Mutex;
use prepare::redact::RedactError;
use prepare::Prepare;
use queue::wal::{LossReason, Recovery, WalError};
use queue::{PushError, Queue};
use sampling::Sampler;
use send::client::BuildError;
use send::{backoff_from, Destination, Sender};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Suggested client wait when a queue is full (Retry-After / RetryInfo).
pub const BACKPRESSURE_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// `[forward]` is invalid (the message names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("forward.redact is invalid")]
    Redact(#[source] RedactError),
    /// A destination's client cannot be built (TLS files, headers).
    #[error(transparent)]
    Client(#[from] BuildError),
    #[error("forward destination {destination:?}: cannot open its disk queue in {dir}")]
    Queue {
        destination: String,
        dir: String,
        #[source]
        source: WalError,
    },
}

/// Why [`Forwarder::submit`] could not queue a request; the receiver maps it
/// to its protocol's answer (back-pressure, or a server error).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A destination with `on_full = "backpressure"` has no room: the
    /// client should retry after `retry_after`.
    #[error("the forwarding queue of destination {destination:?} is full")]
    QueueFull {
        destination: String,
        retry_after: Duration,
    },
    #[error("a request of {len} bytes can never fit in the queue of destination {destination:?} (queue.max_bytes {max})")]
    TooLarge {
        destination: String,
        len: u64,
        max: u64,
    },
    #[error("the disk queue of destination {destination:?} cannot be written")]
    Io {
        destination: String,
        #[source]
        source: WalError,
    },
    #[error("the disk queue task failed")]
    Task(#[source] tokio::task::JoinError),
}

pub struct Forwarder {
    destinations: Vec<Arc<Destination>>,
    prepare: Prepare,
    sampler: Option<Arc<Sampler>>,
    shutdown: watch::Sender<Option<tokio::time::Instant>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    any_disk: bool,
    /// Destinations whose disk queue could not be opened.
    disabled: Vec<Disabled>,
}

/// A destination whose disk queue directory is damaged beyond what
/// recovery repairs (a segment from a newer format, overlapping segments,
/// an I/O error): it gets no sender and no queue, the rest of the collector
/// goes on, and every span it would have been sent is counted as dropped
/// (`reason="destination_disabled"`). Fixing the directory (or moving it
/// aside) and restarting brings it back.
struct Disabled {
    name: String,
    dropped: metrics::Counter,
    failed: metrics::Counter,
}

impl Disabled {
    fn new(name: &str, error: &WalError, registry: &Registry) -> Disabled {
        let reason = match error {
            WalError::Unsupported { .. } => "unsupported_format",
            WalError::Inconsistent(_) => "inconsistent",
            WalError::CorruptRecord { .. } => "corrupt",
            _ => "io_error",
        };
        registry
            .gauge(FORWARD_DESTINATION_UP, &[("destination", name)])
            .set(0.0);
        registry
            .gauge(
                FORWARD_DESTINATION_DISABLED,
                &[("destination", name), ("reason", reason)],
            )
            .set(1.0);
        Disabled {
            name: name.to_owned(),
            dropped: registry.counter(
                FORWARD_SPANS,
                &[("destination", name), ("result", "dropped")],
            ),
            failed: registry.counter(
                FORWARD_FAILED,
                &[("destination", name), ("reason", "destination_disabled")],
            ),
        }
    }

    fn lost(&self, spans: u64) {
        self.dropped.increment(spans);
        self.failed.increment(spans);
    }
}

/// Counts and logs what a disk queue's recovery found.
fn report_recovery(name: &str, rec: &Recovery, registry: &Registry) {
    let corrupt = registry.counter(FORWARD_WAL_CORRUPT, &[("destination", name)]);
    corrupt.increment((usize::from(rec.corrupt_tail.is_some()) + rec.damaged.len()) as u64);
    for reason in [
        LossReason::DamagedRecord,
        LossReason::TornTail,
        LossReason::MissingSegment,
    ] {
        let labels = [("destination", name), ("reason", reason.as_str())];
        let records = registry.counter(FORWARD_QUEUE_LOST_RECORDS, &labels);
        let bytes = registry.counter(FORWARD_QUEUE_LOST_BYTES, &labels);
        for l in rec.lost.iter().filter(|l| l.reason == reason) {
            records.increment(l.records.unwrap_or(0));
            bytes.increment(l.bytes);
            let count = l.records.map_or("unknown".to_string(), |r| r.to_string());
            let tail = rec
                .corrupt_tail
                .as_ref()
                .is_some_and(|t| t.segment == l.segment && t.offset == l.offset);
            if tail {
                tracing::warn!(destination = %name, segment = %l.segment.display(), offset = l.offset, bytes = l.bytes,
                    first_id = l.ids.0, records = %count, reason = reason.as_str(),
                    "forward: the disk queue had a torn or corrupt tail (expected after a crash); cut it off, every record before it is kept");
            } else {
                tracing::error!(destination = %name, segment = %l.segment.display(), offset = l.offset, bytes = l.bytes,
                    first_id = l.ids.0, last_id = l.ids.1, records = %count, reason = reason.as_str(),
                    "forward: undelivered records lost from the disk queue; records after them are kept");
            }
        }
    }
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field(
                "destinations",
                &self
                    .destinations
                    .iter()
                    .map(|d| &d.name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "disabled",
                &self.disabled.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Forwarder {
    /// Opens queues (recovering disk queues), builds clients and starts one
    /// sender per destination. `None` when no destination is configured.
    /// Must run inside the tokio runtime.
    pub fn start(
        config: &crate::config::Config,
        registry: Arc<Registry>,
    ) -> Result<Option<Arc<Forwarder>>, ForwardError> {
        let resolved = config.forward.resolve()?;
        if resolved.is_empty() {
            return Ok(None);
        }
        let prepare = Prepare::new(&config.forward, &registry)?;
        let sampler = Sampler::new(
            &config.forward.sampling,
            config.assembly.trace_timeout(),
            &registry,
        )
        .map(Arc::new);
        let (shutdown, shutdown_rx) = watch::channel(None);
        let mut destinations = Vec::new();
        let mut senders = Vec::new();
        let mut any_disk = false;
        let mut disabled = Vec::new();
        for r in &resolved {
            let client = send::client::Client::build(r)?;
            let (queue, opened) = match Queue::open(&r.queue_dir, &r.queue) {
                Ok(q) => q,
                Err(source @ WalError::InvalidConfig(_)) => {
                    return Err(ForwardError::Queue {
                        destination: r.name.clone(),
                        dir: r.queue_dir.display().to_string(),
                        source,
                    })
                }
                Err(e) => {
                    tracing::error!(destination = %r.name, dir = %r.queue_dir.display(), error = %e,
                        "forward: cannot open this destination's disk queue; the destination is DISABLED \
                         (every span for it is counted as dropped, reason=\"destination_disabled\"); \
                         the collector and other destinations go on. Repair or move the directory aside and restart");
                    disabled.push(Disabled::new(&r.name, &e, &registry));
                    continue;
                }
            };
            registry
                .gauge(FORWARD_DESTINATION_UP, &[("destination", r.name.as_str())])
                .set(1.0);
            if let Some(rec) = &opened.recovery {
                any_disk = true;
                report_recovery(&r.name, rec, &registry);
                tracing::info!(destination = %r.name, dir = %r.queue_dir.display(), records = rec.unacked_records, spans = opened.recovered_spans,
                    "forward: disk queue opened; delivering what it holds");
            }
            let queue = Arc::new(queue);
            let dest = Arc::new(Destination::new(r, queue.clone(), registry.clone()));
            dest.refresh_gauges();
            tracing::info!(destination = %r.name, endpoint = %r.endpoint, protocol = ?r.protocol, queue = ?r.queue.kind,
                headers = ?r.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), "forward: destination ready");
            senders.push(Sender {
                dest: dest.clone(),
                client: Arc::new(client),
                batch: r.batch.clone(),
                backoff: backoff_from(&r.retry),
                sampler: sampler.clone(),
                shutdown: shutdown_rx.clone(),
            });
            if r.queue.kind == QueueKind::Disk && r.queue.fsync == FsyncMode::Interval {
                let every = Duration::from_millis(r.queue.fsync_interval_ms.get());
                spawn_fsync_timer(every, queue.clone(), r.name.clone(), shutdown_rx.clone());
            }
            destinations.push(dest);
        }
        let tasks = senders.into_iter().map(|s| tokio::spawn(s.run())).collect();
        Ok(Some(Arc::new(Forwarder {
            destinations,
            prepare,
            sampler,
            shutdown,
            tasks: Mutex::new(tasks),
            any_disk,
            disabled,
        })))
    }

    /// The tail sampler, as the aggregator's subscriber for finished
    /// traces; `None` when sampling is off.
    pub fn trace_subscriber(&self) -> Option<Arc<dyn TraceSubscriber>> {
        self.sampler.clone().map(|s| s as Arc<dyn TraceSubscriber>)
    }

    /// Each destination's queue depth, in configuration order.
    pub fn queue_depths(&self) -> Vec<QueueDepth> {
        self.destinations.iter().map(|d| d.queue.depth()).collect()
    }

    /// Queues one accepted request for every destination. Returns only when
    /// it is queued (for disk queues: in the log, synced per policy); an
    /// error means nothing should be acknowledged or counted.
    ///
    /// `spans` counts the valid spans, `rejected` those validation rejected
    /// (told to the client through `partial_success`): rejected spans are
    /// cut out of what is queued, and a request with no valid span left
    /// queues nothing.
    pub async fn submit(
        &self,
        view: &View,
        body: Bytes,
        spans: u64,
        rejected: u64,
    ) -> Result<(), SubmitError> {
        if spans == 0 && rejected > 0 {
            return Ok(());
        }
        let body = self.prepare.apply(view, body, rejected);
        let spans32 = u32::try_from(spans).unwrap_or(u32::MAX);
        // Admission first, so a refused request leaves no copy anywhere.
        let mut targets: Vec<&Arc<Destination>> = Vec::with_capacity(self.destinations.len());
        let mut full: Vec<&Arc<Destination>> = Vec::new();
        for d in &self.destinations {
            if d.queue.has_room(body.len()) {
                targets.push(d);
            } else if d.on_full == OnFull::Backpressure {
                return Err(SubmitError::QueueFull {
                    destination: d.name.clone(),
                    retry_after: BACKPRESSURE_RETRY_AFTER,
                });
            } else {
                full.push(d);
            }
        }
        // Counted only once the request is admitted: a refused request is
        // retried by the client and must not be counted twice.
        for d in full {
            d.metrics.lost("queue_full", spans, true);
        }
        let (disk, memory): (Vec<_>, Vec<_>) = targets.into_iter().partition(|d| d.queue.is_disk());
        for d in memory {
            if let Err(e) = d.queue.push(spans32, &body) {
                self.push_failed(d, e, spans)?;
            }
        }
        if !disk.is_empty() {
            let disk: Vec<Arc<Destination>> = disk.into_iter().cloned().collect();
            let b = body.clone();
            let results = tokio::task::spawn_blocking(move || {
                disk.into_iter()
                    .map(|d| {
                        let r = d.queue.push(spans32, &b);
                        (d, r)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(SubmitError::Task)?;
            for (d, r) in results {
                if let Err(e) = r {
                    self.push_failed(&d, e, spans)?;
                }
            }
        }
        for d in &self.disabled {
            d.lost(spans);
        }
        Ok(())
    }

    fn push_failed(&self, d: &Destination, e: PushError, spans: u64) -> Result<(), SubmitError> {
        match (e, d.on_full) {
            (PushError::Full { .. }, OnFull::Drop) => {
                d.metrics.lost("queue_full", spans, true);
                Ok(())
            }
            (PushError::Full { .. }, OnFull::Backpressure) => Err(SubmitError::QueueFull {
                destination: d.name.clone(),
                retry_after: BACKPRESSURE_RETRY_AFTER,
            }),
            (PushError::TooLarge { len, max }, _) => Err(SubmitError::TooLarge {
                destination: d.name.clone(),
                len,
                max,
            }),
            (PushError::Io(source), _) => {
                tracing::error!(destination = %d.name, error = %source, "forward: cannot write to the disk queue; refusing exports until it works");
                Err(SubmitError::Io {
                    destination: d.name.clone(),
                    source,
                })
            }
        }
    }

    /// Refreshes the queue gauges (the pipeline's tick).
    pub fn refresh(&self) {
        for d in &self.destinations {
            d.refresh_gauges();
        }
    }

    /// Drains the queues until empty or `timeout`; what is left stays on
    /// disk (disk queues) or is counted as dropped (memory queues).
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = self.shutdown.send(Some(deadline));
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline + Duration::from_millis(500), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for d in &self.destinations {
            let left = d.queue.depth();
            if d.queue.is_disk() {
                if let Err(e) = d.queue.sync() {
                    tracing::error!(destination = %d.name, error = %e, "forward: final fsync of the disk queue failed");
                }
                if left.spans > 0 {
                    tracing::info!(destination = %d.name, spans = left.spans, "forward: undelivered spans stay in the disk queue for the next start");
                }
            } else {
                let lost = d.queue.discard_memory();
                if lost > 0 {
                    d.metrics.lost("shutdown", lost, true);
                    tracing::error!(destination = %d.name, spans = lost,
                        "forward: shutdown deadline passed with spans still in the memory queue; they are lost (use queue.kind = \"disk\" to keep them)");
                }
            }
            d.refresh_gauges();
        }
        if self.any_disk {
            tracing::info!("forward: disk queues closed");
        }
    }
}

/// fsync of a disk queue every `every` (`fsync = "interval"`), until
/// shutdown begins (which syncs once more itself).
fn spawn_fsync_timer(
    every: Duration,
    q: Arc<Queue>,
    name: String,
    mut stop: watch::Receiver<Option<tokio::time::Instant>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = stop.changed() => if r.is_err() || stop.borrow().is_some() { return },
            }
            match q.run(|q| q.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(destination = %name, error = %e, "forward: periodic fsync of the disk queue failed")
                }
                Err(_) => return,
            }
        }
    });
}
