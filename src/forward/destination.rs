//! One destination: its queue, its self-metrics, and the sender task that
//! drains the queue upstream.
//!
//! The sender is the queue's only consumer. It peeks a batch (by records,
//! spans and bytes, waiting up to `flush_interval` for a partial one to
//! fill), applies tail-sampling decisions, makes one export call, and only
//! then acks: a record leaves the queue when the upstream took it or refused
//! it for good. Retryable failures back off (exponential, jittered, honouring
//! RetryInfo / Retry-After) and retry the same batch forever — the queue
//! bound, not a retry budget, decides when the application is pushed back.
//! A permanent failure of a multi-request batch is retried one request at a
//! time, so one bad request cannot take its neighbours down with it.

use super::client::Client;
use super::config::{BatchConfig, OnFull, Resolved, RetryConfig};
use super::queue::{Entry, Queue};
use super::retry::{Backoff, Failure};
use super::sampling::Sampler;
use crate::export::names::*;
use crate::export::Registry;
use crate::otlp_view::TraceIdsRequest;
use bytes::{Bytes, BytesMut};
use metrics::{Counter, Gauge, Histogram};
use parking_lot::Mutex;
use prost::Message;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
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
    pub client: Client,
    pub batch: BatchConfig,
    pub backoff: Backoff,
    pub sampler: Option<Arc<Sampler>>,
    /// `Some(deadline)` once shutdown began: drain until empty or deadline.
    pub shutdown: watch::Receiver<Option<tokio::time::Instant>>,
}

pub fn backoff_from(r: &RetryConfig) -> Backoff {
    Backoff {
        initial: Duration::from_millis(r.initial_backoff_ms),
        max: Duration::from_millis(r.max_backoff_ms),
        max_hint: Duration::from_millis(r.max_server_delay_ms),
        ..Backoff::default()
    }
}

enum Prepared {
    /// Send `body` (`spans` spans), then ack through `upto`.
    Send {
        body: Bytes,
        spans: u64,
        upto: u64,
        all_spans: u64,
        records: usize,
        sampled_out: u64,
    },
    /// Nothing left to send after sampling: just ack.
    AckOnly {
        upto: u64,
        all_spans: u64,
        sampled_out: u64,
    },
    /// The oldest record's traces are not decided yet.
    Wait,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Sender {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        *self.shutdown.borrow()
    }

    /// Sleeps `d`, cut short by shutdown's deadline. False when the
    /// deadline has passed (stop now).
    async fn pause(&mut self, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            let stop_at = self.deadline();
            let wake = stop_at.map_or(until, |s| s.min(until));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        // Forwarder dropped: stop.
                        return false;
                    }
                    continue;
                }
            }
            if stop_at.is_some_and(|s| tokio::time::Instant::now() >= s) {
                return false;
            }
            return true;
        }
    }

    async fn peek(&self, records: usize) -> Result<Vec<Entry>, String> {
        let q = self.dest.queue.clone();
        let max_bytes = self.batch.max_bytes;
        if q.is_disk() {
            tokio::task::spawn_blocking(move || q.peek(records, max_bytes))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        } else {
            q.peek(records, max_bytes).map_err(|e| e.to_string())
        }
    }

    async fn ack(&self, upto: u64, spans: u64) {
        let q = self.dest.queue.clone();
        let r = if q.is_disk() {
            tokio::task::spawn_blocking(move || q.ack(upto, spans))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        } else {
            q.ack(upto, spans).map_err(|e| e.to_string())
        };
        if let Err(e) = r {
            // Not acking means redelivery (a duplicate), never a loss.
            tracing::error!(destination = %self.dest.name, error = %e, "forward: cannot record a delivery in the queue; it will be sent again");
        }
        self.dest.refresh_gauges();
    }

    /// Runs until shutdown has drained the queue or passed its deadline.
    pub async fn run(mut self) {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut isolate_until: u64 = 0;
        let mut failing_since: Option<Instant> = None;
        let mut last_log: Option<Instant> = None;
        loop {
            self.dest.refresh_gauges();
            let depth = self.dest.queue.depth();
            let draining = self.deadline().is_some();
            if depth.records == 0 {
                if draining {
                    return;
                }
                tokio::select! {
                    _ = self.dest.queue.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    r = self.shutdown.changed() => if r.is_err() { return },
                }
                continue;
            }
            // Let a partial batch fill for up to flush_interval.
            let flush = Duration::from_millis(self.batch.flush_interval_ms);
            let age = depth.oldest_age.unwrap_or(Duration::ZERO);
            if !draining
                && (depth.spans as usize) < self.batch.max_spans
                && (depth.bytes as usize) < self.batch.max_bytes
                && age < flush
            {
                tokio::select! {
                    _ = tokio::time::sleep(flush - age) => {}
                    r = self.shutdown.changed() => if r.is_err() { return },
                }
            }
            let records = if isolate_until > 0 { 1 } else { 4096 };
            let entries = match self.peek(records).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(destination = %self.dest.name, error = %e, "forward: cannot read the queue");
                    if !self.pause(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                continue;
            }
            let (body, spans, upto, all_spans, records, sampled_out) = match self.prepare(&entries)
            {
                Prepared::Wait => {
                    if !self.pause(Duration::from_millis(100)).await {
                        return;
                    }
                    continue;
                }
                Prepared::AckOnly {
                    upto,
                    all_spans,
                    sampled_out,
                } => {
                    self.ack(upto, all_spans).await;
                    // Counted at the ack: a batch re-read (isolation) is
                    // filtered again and must not count twice.
                    self.dest.metrics.sampled_out.increment(sampled_out);
                    continue;
                }
                Prepared::Send {
                    body,
                    spans,
                    upto,
                    all_spans,
                    records,
                    sampled_out,
                } => (body, spans, upto, all_spans, records, sampled_out),
            };
            let mut attempt = 0u32;
            let isolate = loop {
                let t0 = Instant::now();
                let result = self.client.send(body.clone()).await;
                self.dest
                    .metrics
                    .send_duration
                    .record(t0.elapsed().as_secs_f64());
                match result {
                    Ok(d) => {
                        let rejected = (d.rejected_spans.max(0) as u64).min(spans);
                        self.dest.metrics.sent.increment(spans - rejected);
                        self.dest.metrics.batches_sent.increment(1);
                        if rejected > 0 {
                            self.dest.metrics.lost("partial_rejected", rejected, false);
                            tracing::warn!(destination = %self.dest.name, rejected, message = %d.message, "forward: upstream accepted the batch but rejected some spans");
                        }
                        if let Some(since) = failing_since.take() {
                            tracing::info!(destination = %self.dest.name, down_for_s = since.elapsed().as_secs_f64(), "forward: upstream reachable again; delivering the backlog");
                            last_log = None;
                        }
                        break false;
                    }
                    Err(Failure::Retryable { reason, after }) => {
                        attempt += 1;
                        self.dest.metrics.retried.increment(spans);
                        self.dest.metrics.batches_retried.increment(1);
                        let delay = self.backoff.delay(attempt, after, &mut rng);
                        if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
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
                            last_log = Some(Instant::now());
                        }
                        failing_since.get_or_insert_with(Instant::now);
                        if !self.pause(delay).await {
                            return;
                        }
                    }
                    Err(Failure::Permanent { reason }) => {
                        if records > 1 {
                            tracing::warn!(destination = %self.dest.name, reason = %reason, records, "forward: upstream refused a batch; retrying its requests one by one");
                            break true;
                        }
                        self.dest.metrics.batches_failed.increment(1);
                        self.dest.metrics.lost(&reason, spans, false);
                        tracing::error!(
                            destination = %self.dest.name,
                            endpoint = %self.dest.endpoint,
                            reason = %reason,
                            spans,
                            "forward: upstream refused the spans for good; not retrying"
                        );
                        break false;
                    }
                }
            };
            if isolate {
                // Re-read the same records one at a time to find the culprit.
                isolate_until = upto;
                continue;
            }
            self.ack(upto, all_spans).await;
            self.dest.metrics.sampled_out.increment(sampled_out);
            if upto >= isolate_until {
                isolate_until = 0;
            }
        }
    }

    /// Trims the peeked records to the batch limits and applies sampling.
    fn prepare(&self, entries: &[Entry]) -> Prepared {
        let mut take = 0usize;
        let mut spans = 0u64;
        for e in entries {
            if take > 0 && spans + u64::from(e.spans) > self.batch.max_spans as u64 {
                break;
            }
            spans += u64::from(e.spans);
            take += 1;
        }
        let entries = &entries[..take.max(1)];
        let Some(sampler) = &self.sampler else {
            let all: u64 = entries.iter().map(|e| u64::from(e.spans)).sum();
            return Prepared::Send {
                body: concat(entries.iter().map(|e| &e.body)),
                spans: all,
                upto: entries.last().map_or(0, |e| e.id),
                all_spans: all,
                records: entries.len(),
                sampled_out: 0,
            };
        };
        let now = now_ms();
        let mut bodies: Vec<Bytes> = Vec::new();
        let mut kept_spans = 0u64;
        let mut sampled_out = 0u64;
        let mut all_spans = 0u64;
        let mut upto = None;
        for e in entries {
            let waited = Duration::from_millis(now.saturating_sub(e.enqueued_ms));
            let expired = waited >= sampler.wait();
            match filter(sampler, &e.body, expired) {
                Filtered::Undecided => break,
                Filtered::Keep(b, n) => {
                    kept_spans += n;
                    sampled_out += u64::from(e.spans).saturating_sub(n);
                    if !b.is_empty() {
                        bodies.push(b);
                    }
                }
            }
            all_spans += u64::from(e.spans);
            upto = Some(e.id);
        }
        let Some(upto) = upto else {
            return Prepared::Wait;
        };
        if bodies.is_empty() {
            return Prepared::AckOnly {
                upto,
                all_spans,
                sampled_out,
            };
        }
        Prepared::Send {
            records: bodies.len(),
            body: concat(bodies.iter()),
            spans: kept_spans,
            upto,
            all_spans,
            sampled_out,
        }
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
        let cfg = super::super::config::SamplingConfig {
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
