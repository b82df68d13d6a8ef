//! One destination: its queue, its self-metrics, and the sender task that
//! drains the queue upstream.
//!
//! The sender is the queue's only consumer. It peeks a batch (by records,
//! spans and bytes, waiting up to `flush_interval` for a partial one to
//! fill), applies tail-sampling decisions, makes one export call, and only
//! then acks: a record leaves the queue when the upstream took it or refused
//! it for good. Several calls may be in flight (`batch.max_in_flight`); they
//! are acked in the order they were read. Retryable failures back off (exponential, jittered, honouring
//! RetryInfo / Retry-After) and retry the same batch forever — the queue
//! bound, not a retry budget, decides when the application is pushed back.
//! A permanent failure of a multi-request batch is retried one request at a
//! time, so one bad request cannot take its neighbours down with it.

pub(crate) mod client;
pub(crate) mod retry;
pub(crate) use crate::secret;

use crate::export::names::*;
use crate::export::Registry;
use crate::forward::config::{BatchConfig, OnFull, Resolved, RetryConfig};
use crate::forward::queue::wal::now_millis;
use crate::forward::queue::{Entry, Queue, QueueError};
use crate::forward::sampling::Sampler;
use crate::otlp_view::TraceIdsRequest;
use bytes::{Bytes, BytesMut};
use client::{Client, Parts};
use futures_util::stream::{FuturesOrdered, StreamExt};
use metrics::{Counter, Gauge, Histogram};
use parking_lot::Mutex;
use prost::Message;
use rand::SeedableRng;
use retry::{Backoff, Failure};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most distinct failure reasons kept as separate series.
const MAX_REASONS: usize = 64;
/// A failing destination logs at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Metrics {
    sent: Counter,
    retried: Counter,
    failed: Counter,
    dropped: Counter,
    sampled_out: Counter,
    batches_sent: Counter,
    batches_retried: Counter,
    batches_failed: Counter,
    queue_spans: Gauge,
    queue_bytes: Gauge,
    oldest_age: Gauge,
    send_duration: Histogram,
    reasons: Mutex<HashMap<String, Counter>>,
    registry: Arc<Registry>,
    name: String,
}

impl Metrics {
    fn new(name: &str, registry: Arc<Registry>, max_bytes: u64) -> Metrics {
        let spans =
            |r: &str| registry.counter(FORWARD_SPANS, &[("destination", name), ("result", r)]);
        let batches =
            |r: &str| registry.counter(FORWARD_BATCHES, &[("destination", name), ("result", r)]);
        let d = [("destination", name)];
        registry
            .gauge(FORWARD_QUEUE_MAX_BYTES, &d)
            .set(max_bytes as f64);
        Metrics {
            sent: spans("sent"),
            retried: spans("retried"),
            failed: spans("failed"),
            dropped: spans("dropped"),
            sampled_out: spans("sampled_out"),
            batches_sent: batches("sent"),
            batches_retried: batches("retried"),
            batches_failed: batches("failed"),
            queue_spans: registry.gauge(FORWARD_QUEUE_SPANS, &d),
            queue_bytes: registry.gauge(FORWARD_QUEUE_BYTES, &d),
            oldest_age: registry.gauge(FORWARD_OLDEST_AGE, &d),
            send_duration: registry.histogram(FORWARD_SEND_DURATION, &d),
            reasons: Mutex::new(HashMap::new()),
            name: name.to_owned(),
            registry,
        }
    }

    /// Spans this destination will never get, by reason.
    pub fn lost(&self, reason: &str, spans: u64, dropped: bool) {
        if spans == 0 {
            return;
        }
        if dropped {
            self.dropped.increment(spans);
        } else {
            self.failed.increment(spans);
        }
        let mut r = self.reasons.lock();
        let key = if r.contains_key(reason) || r.len() < MAX_REASONS {
            reason
        } else {
            "other"
        };
        let c = r.entry(key.to_owned()).or_insert_with(|| {
            self.registry.counter(
                FORWARD_FAILED,
                &[("destination", self.name.as_str()), ("reason", key)],
            )
        });
        c.increment(spans);
    }
}

/// A destination as ingest sees it: where to push, what to do when full.
pub struct Destination {
    pub name: String,
    pub queue: Arc<Queue>,
    pub on_full: OnFull,
    pub metrics: Metrics,
    endpoint: String,
}

impl Destination {
    pub fn new(r: &Resolved, queue: Arc<Queue>, registry: Arc<Registry>) -> Destination {
        let metrics = Metrics::new(&r.name, registry, queue.max_bytes());
        // Every failure series a dashboard keys on exists from the start.
        for reason in ["queue_full", "shutdown"] {
            metrics.lost(reason, 0, true);
        }
        Destination {
            name: r.name.clone(),
            on_full: r.queue.on_full,
            metrics,
            endpoint: r.endpoint.clone(),
            queue,
        }
    }

    pub fn refresh_gauges(&self) {
        let d = self.queue.depth();
        self.metrics.queue_spans.set(d.spans as f64);
        self.metrics.queue_bytes.set(d.bytes as f64);
        self.metrics
            .oldest_age
            .set(d.oldest_age.map_or(0.0, |a| a.as_secs_f64()));
    }
}

/// Sender state that is not configuration.
pub struct Sender {
    pub dest: Arc<Destination>,
    pub client: Arc<Client>,
    pub batch: BatchConfig,
    pub backoff: Backoff,
    pub sampler: Option<Arc<Sampler>>,
    /// `Some(deadline)` once shutdown began: drain until empty or deadline.
    pub shutdown: watch::Receiver<Option<tokio::time::Instant>>,
}

pub fn backoff_from(r: &RetryConfig) -> Backoff {
    Backoff {
        initial: Duration::from_millis(r.initial_backoff_ms.get()),
        max: Duration::from_millis(r.max_backoff_ms),
        max_hint: Duration::from_millis(r.max_server_delay_ms),
        ..Backoff::default()
    }
}

/// One export call's worth of queued records, after sampling.
struct Batch {
    /// Each record's bytes to send (sampled-out records are absent) and
    /// span count.
    parts: Vec<(Bytes, u64)>,
    /// Last record id covered: acked when the call is final.
    upto: u64,
    /// Spans of every covered record (queue accounting).
    all_spans: u64,
    sampled_out: u64,
}

enum Prepared {
    Ready(Batch),
    /// The oldest record's traces are not decided yet.
    Wait,
}

/// How an export call ended.
enum Outcome {
    /// Delivered or refused for good: ack through `upto`.
    Done {
        upto: u64,
        all_spans: u64,
        sampled_out: u64,
    },
    /// Shutdown's deadline passed while retrying: leave it queued.
    Abandoned,
}

enum Final {
    Delivered,
    Refused(String),
}

/// What the in-flight calls of one destination share.
struct Shared {
    dest: Arc<Destination>,
    client: Arc<Client>,
    backoff: Backoff,
    log: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    failing_since: Option<Instant>,
    last_log: Option<Instant>,
}

fn deadline_of(rx: &watch::Receiver<Option<tokio::time::Instant>>) -> Option<tokio::time::Instant> {
    *rx.borrow()
}

/// Sleeps `d`, cut short by shutdown's deadline. False when the deadline
/// has passed (stop now) or the forwarder is gone.
async fn pause(rx: &mut watch::Receiver<Option<tokio::time::Instant>>, d: Duration) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        let stop_at = deadline_of(rx);
        let wake = stop_at.map_or(until, |s| s.min(until));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    return false;
                }
                continue;
            }
        }
        return stop_at.is_none_or(|s| tokio::time::Instant::now() < s);
    }
}

impl Shared {
    /// Sends `body` until the upstream takes it or refuses it for good;
    /// `None` if shutdown's deadline passed first.
    async fn send_until_final(
        &self,
        body: Parts,
        spans: u64,
        rx: &mut watch::Receiver<Option<tokio::time::Instant>>,
    ) -> Option<Final> {
        let m = &self.dest.metrics;
        let mut attempt = 0u32;
        loop {
            let t0 = Instant::now();
            let result = self.client.send(body.clone()).await;
            m.send_duration.record(t0.elapsed().as_secs_f64());
            match result {
                Ok(d) => {
                    let rejected = (d.rejected_spans.max(0) as u64).min(spans);
                    m.sent.increment(spans - rejected);
                    m.batches_sent.increment(1);
                    if rejected > 0 {
                        m.lost("partial_rejected", rejected, false);
                        tracing::warn!(destination = %self.dest.name, rejected, message = %d.message, "forward: upstream accepted the batch but rejected some spans");
                    }
                    let mut log = self.log.lock();
                    if let Some(since) = log.failing_since.take() {
                        tracing::info!(destination = %self.dest.name, down_for_s = since.elapsed().as_secs_f64(), "forward: upstream reachable again; delivering the backlog");
                        log.last_log = None;
                    }
                    return Some(Final::Delivered);
                }
                Err(Failure::Retryable { reason, after }) => {
                    attempt += 1;
                    m.retried.increment(spans);
                    m.batches_retried.increment(1);
                    let delay = {
                        let mut rng = rand::rngs::StdRng::from_os_rng();
                        self.backoff.delay(attempt, after, &mut rng)
                    };
                    {
                        let mut log = self.log.lock();
                        if log.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            let d = self.dest.queue.depth();
                            tracing::warn!(
                                destination = %self.dest.name,
                                endpoint = %self.dest.endpoint,
                                via = self.client.describe(),
                                reason = %reason,
                                attempt,
                                retry_in_ms = delay.as_millis() as u64,
                                queued_spans = d.spans,
                                "forward: export failed; retrying (nothing is dropped)"
                            );
                            log.last_log = Some(Instant::now());
                        }
                        log.failing_since.get_or_insert_with(Instant::now);
                    }
                    if !pause(rx, delay).await {
                        return None;
                    }
                }
                Err(Failure::Permanent { reason }) => return Some(Final::Refused(reason)),
            }
        }
    }

    fn refused(&self, reason: &str, spans: u64) {
        self.dest.metrics.batches_failed.increment(1);
        self.dest.metrics.lost(reason, spans, false);
        tracing::error!(
            destination = %self.dest.name,
            endpoint = %self.dest.endpoint,
            reason = %reason,
            spans,
            "forward: upstream refused the spans for good; not retrying"
        );
    }

    /// One batch, to a final outcome. A batch of several requests refused
    /// for good is retried one request at a time, so that only the bad one
    /// is lost.
    async fn deliver(
        self: Arc<Self>,
        batch: Batch,
        mut rx: watch::Receiver<Option<tokio::time::Instant>>,
    ) -> Outcome {
        let done = Outcome::Done {
            upto: batch.upto,
            all_spans: batch.all_spans,
            sampled_out: batch.sampled_out,
        };
        if batch.parts.is_empty() {
            return done;
        }
        let spans: u64 = batch.parts.iter().map(|p| p.1).sum();
        let body = Parts(batch.parts.iter().map(|p| p.0.clone()).collect());
        match self.send_until_final(body, spans, &mut rx).await {
            None => return Outcome::Abandoned,
            Some(Final::Delivered) => {}
            Some(Final::Refused(reason)) if batch.parts.len() > 1 => {
                tracing::warn!(destination = %self.dest.name, reason = %reason, requests = batch.parts.len(),
                    "forward: upstream refused a batch; retrying its requests one by one");
                for (body, n) in batch.parts {
                    match self.send_until_final(body.into(), n, &mut rx).await {
                        None => return Outcome::Abandoned,
                        Some(Final::Delivered) => {}
                        Some(Final::Refused(reason)) => self.refused(&reason, n),
                    }
                }
            }
            Some(Final::Refused(reason)) => self.refused(&reason, spans),
        }
        done
    }
}

impl Sender {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        deadline_of(&self.shutdown)
    }

    /// Queued records after id `after`, up to a batch's worth.
    async fn peek_after(&self, after: u64) -> Result<Vec<Entry>, QueueError> {
        let max_bytes = self.batch.max_bytes;
        let records = self.batch.max_spans.get().min(4096);
        Ok(self
            .dest
            .queue
            .run(move |q| q.peek_after(after, records, max_bytes))
            .await??)
    }

    /// The loop refreshes the gauges right after.
    async fn ack(&self, upto: u64, spans: u64) {
        let r: Result<(), QueueError> = match self.dest.queue.run(move |q| q.ack(upto, spans)).await
        {
            Ok(r) => r.map_err(QueueError::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = r {
            // Not acking means redelivery (a duplicate), never a loss.
            tracing::error!(destination = %self.dest.name, error = %e, "forward: cannot record a delivery in the queue; it will be sent again");
        }
    }

    /// Runs until shutdown has drained the queue or passed its deadline.
    ///
    /// Up to `batch.max_in_flight` export calls run at once (a remote
    /// upstream's round trip would otherwise cap the rate at one batch per
    /// round trip). They complete in any order but are acked in the order
    /// they were read, so the queue's acknowledged prefix never skips a
    /// record still in flight.
    pub async fn run(mut self) {
        let shared = Arc::new(Shared {
            dest: self.dest.clone(),
            client: self.client.clone(),
            backoff: self.backoff.clone(),
            log: Mutex::new(LogState::default()),
        });
        let max_in_flight = self.batch.max_in_flight.max(1);
        let flush = Duration::from_millis(self.batch.flush_interval_ms);
        let mut inflight = FuturesOrdered::new();
        // Highest record id handed to a call.
        let mut last_read: u64 = 0;
        loop {
            self.dest.refresh_gauges();
            let deadline = self.deadline();
            let past_deadline = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            let mut wait = Duration::from_secs(1);
            let mut idle = false;
            if inflight.len() < max_in_flight && !past_deadline {
                match self.peek_after(last_read).await {
                    Err(e) => {
                        tracing::error!(destination = %self.dest.name, error = %e, "forward: cannot read the queue");
                        if !pause(&mut self.shutdown, Duration::from_secs(1)).await {
                            return;
                        }
                        continue;
                    }
                    Ok(entries) if entries.is_empty() => idle = true,
                    Ok(entries) => {
                        let spans: u64 = entries.iter().map(|e| u64::from(e.spans)).sum();
                        let bytes: usize = entries.iter().map(|e| e.body.len()).sum();
                        let age = Duration::from_millis(
                            now_millis().saturating_sub(entries[0].enqueued_ms),
                        );
                        if deadline.is_none()
                            && (spans as usize) < self.batch.max_spans.get()
                            && bytes < self.batch.max_bytes
                            && age < flush
                        {
                            // A partial batch waits up to flush_interval.
                            wait = flush - age;
                        } else {
                            match self.prepare(&entries) {
                                Prepared::Wait => wait = Duration::from_millis(100),
                                Prepared::Ready(batch) => {
                                    last_read = batch.upto;
                                    let rx = self.shutdown.clone();
                                    inflight.push_back(shared.clone().deliver(batch, rx));
                                    continue;
                                }
                            }
                        }
                    }
                }
            }
            if inflight.is_empty() && (past_deadline || (idle && deadline.is_some())) {
                return;
            }
            tokio::select! {
                Some(outcome) = inflight.next(), if !inflight.is_empty() => match outcome {
                    Outcome::Done { upto, all_spans, sampled_out } => {
                        self.ack(upto, all_spans).await;
                        self.dest.metrics.sampled_out.increment(sampled_out);
                    }
                    // Later calls are not acked either: the queue keeps
                    // everything from here for the next start.
                    Outcome::Abandoned => return,
                },
                _ = self.dest.queue.notified(), if inflight.len() < max_in_flight => {}
                _ = tokio::time::sleep(wait) => {}
                r = self.shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// Trims the peeked records to the batch limits and applies sampling.
    fn prepare(&self, entries: &[Entry]) -> Prepared {
        let mut take = 0usize;
        let mut spans = 0u64;
        for e in entries {
            if take > 0 && spans + u64::from(e.spans) > self.batch.max_spans.get() as u64 {
                break;
            }
            spans += u64::from(e.spans);
            take += 1;
        }
        let entries = &entries[..take.max(1)];
        let Some(sampler) = &self.sampler else {
            let all: u64 = entries.iter().map(|e| u64::from(e.spans)).sum();
            return Prepared::Ready(Batch {
                parts: entries
                    .iter()
                    .map(|e| (e.body.clone(), u64::from(e.spans)))
                    .collect(),
                upto: entries.last().map_or(0, |e| e.id),
                all_spans: all,
                sampled_out: 0,
            });
        };
        let now = now_millis();
        let mut parts: Vec<(Bytes, u64)> = Vec::new();
        let mut sampled_out = 0u64;
        let mut all_spans = 0u64;
        let mut upto = None;
        for e in entries {
            let waited = Duration::from_millis(now.saturating_sub(e.enqueued_ms));
            let expired = waited >= sampler.wait();
            match filter(sampler, &e.body, expired) {
                Filtered::Undecided => break,
                Filtered::Keep(b, n) => {
                    sampled_out += u64::from(e.spans).saturating_sub(n);
                    if !b.is_empty() {
                        parts.push((b, n));
                    }
                }
            }
            all_spans += u64::from(e.spans);
            upto = Some(e.id);
        }
        let Some(upto) = upto else {
            return Prepared::Wait;
        };
        Prepared::Ready(Batch {
            parts,
            upto,
            all_spans,
            sampled_out,
        })
    }
}

/// Encoded requests are concatenated into one: `resource_spans` is the only
/// field of `ExportTraceServiceRequest`, and protobuf merges repeated fields
/// across concatenated messages.
pub fn concat<'a>(bodies: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let mut it = bodies.clone();
    if let (Some(first), None) = (it.next(), it.next()) {
        return first.clone();
    }
    let len = bodies.clone().map(|b| b.len()).sum();
    let mut out = BytesMut::with_capacity(len);
    for b in bodies {
        out.extend_from_slice(b);
    }
    out.freeze()
}

enum Filtered {
    /// A trace of this request is still undecided and may wait.
    Undecided,
    /// What to send of it (maybe empty) and its span count.
    Keep(Bytes, u64),
}

fn filter(sampler: &Sampler, body: &Bytes, expired: bool) -> Filtered {
    let ids = match TraceIdsRequest::decode(body.clone()) {
        Ok(r) => r,
        // Validated at ingest; unreadable here means disk damage the CRC
        // missed — forward it and let the upstream judge.
        Err(_) => return Filtered::Keep(body.clone(), 0),
    };
    let mut decisions: HashMap<[u8; 16], bool, foldhash::fast::RandomState> = HashMap::default();
    let mut total = 0u64;
    for s in ids
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        total += 1;
        let Ok(id) = <[u8; 16]>::try_from(&s.trace_id[..]) else {
            continue;
        };
        if decisions.contains_key(&id) {
            continue;
        }
        let keep = match sampler.lookup(&id) {
            Some(k) => k,
            None if expired => sampler.decide_undecided(id),
            None => return Filtered::Undecided,
        };
        decisions.insert(id, keep);
    }
    if decisions.values().all(|k| *k) {
        return Filtered::Keep(body.clone(), total);
    }
    if decisions.values().all(|k| !*k) {
        return Filtered::Keep(Bytes::new(), 0);
    }
    // Mixed: decode fully, keep the kept traces' spans, re-encode.
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as Full;
    let Ok(mut full) = Full::decode(body.clone()) else {
        return Filtered::Keep(body.clone(), total);
    };
    let mut kept = 0u64;
    for rs in &mut full.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| {
                let keep = <[u8; 16]>::try_from(&s.trace_id[..])
                    .map_or(true, |id| decisions.get(&id).copied().unwrap_or(true));
                kept += u64::from(keep);
                keep
            });
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    full.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    Filtered::Keep(Bytes::from(full.encode_to_vec()), kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as Full;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn req(ids: &[(u8, u8)]) -> Bytes {
        let spans = ids
            .iter()
            .map(|(t, s)| Span {
                trace_id: vec![*t; 16],
                span_id: vec![*s; 8],
                name: format!("s{s}"),
                ..Span::default()
            })
            .collect();
        Bytes::from(
            Full {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                }],
            }
            .encode_to_vec(),
        )
    }

    fn ids(body: &Bytes) -> Vec<(u8, u8)> {
        let r = Full::decode(body.clone()).expect("valid");
        r.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| (s.trace_id[0], s.span_id[0]))
            .collect()
    }

    #[test]
    fn concatenated_requests_are_one_request() {
        let a = req(&[(1, 1), (1, 2)]);
        let b = req(&[(2, 3)]);
        let c = concat([a.clone(), b].iter());
        assert_eq!(ids(&c), vec![(1, 1), (1, 2), (2, 3)]);
        let single = concat(std::iter::once(&a));
        assert_eq!(single.as_ptr(), a.as_ptr(), "one request is not copied");
    }

    #[test]
    fn sampling_filters_by_trace() {
        let reg = Registry::new();
        let cfg = crate::forward::config::SamplingConfig {
            enabled: true,
            ..Default::default()
        };
        let s = Sampler::new(&cfg, Duration::from_secs(1), &reg).expect("on");
        let body = req(&[(1, 1), (2, 2), (1, 3)]);
        assert!(matches!(filter(&s, &body, false), Filtered::Undecided));
        s.record_for_test([1; 16], true);
        s.record_for_test([2; 16], false);
        match filter(&s, &body, false) {
            Filtered::Keep(b, n) => {
                assert_eq!(n, 2);
                assert_eq!(ids(&b), vec![(1, 1), (1, 3)]);
            }
            Filtered::Undecided => panic!("decided"),
        }
        // Undecided past the wait: kept.
        let body = req(&[(3, 1)]);
        match filter(&s, &body, true) {
            Filtered::Keep(b, n) => {
                assert_eq!(n, 1);
                assert_eq!(b, body, "unchanged bytes");
            }
            Filtered::Undecided => panic!("expired"),
        }
        let body = req(&[(2, 9)]);
        assert!(matches!(filter(&s, &body, false), Filtered::Keep(b, 0) if b.is_empty()));
    }
}
