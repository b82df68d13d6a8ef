//! The stages wired together: bytes in, metrics out.
//!
//! Ingest runs on the caller's task (the gRPC or HTTP handler): decoding and
//! normalizing happen outside any lock, in parallel across connections; only
//! assembly and recording take the aggregator's lock, for microseconds. An
//! export is acknowledged only after its spans are in the aggregator, so an
//! acknowledged span is always counted.

use crate::aggregate::Aggregator;
use crate::config::Config;
use crate::export::names::*;
use crate::export::Registry;
use crate::forward::{Forwarder, SubmitError};
use crate::normalize;
use crate::otlp_view::ExportTraceServiceRequest;
use crate::receive::validate::validate;
use crate::receive::{IngestError, Protocol};
use bytes::Bytes;
use metrics::{Counter, Gauge};
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Readers hold the ingest lock at most 1 / this of the time.
const READER_SHARE_DIVISOR: u32 = 8;

/// What an accepted export request yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub spans: u64,
    pub rejected: u64,
    /// For OTLP `partial_success.error_message` (empty when nothing was rejected).
    pub message: String,
}

struct ProtocolMetrics {
    requests: Counter,
    spans: Counter,
    rejected: HashMap<&'static str, Counter>,
}

pub struct Pipeline {
    registry: Arc<Registry>,
    aggregator: Mutex<Aggregator>,
    protocols: HashMap<Protocol, ProtocolMetrics>,
    spans_rejected: HashMap<&'static str, Counter>,
    inflight: AtomicUsize,
    inflight_gauge: Gauge,
    max_inflight: usize,
    max_request_bytes: usize,
    body_read_timeout: std::time::Duration,
    memory: Arc<crate::receive::budget::MemoryBudget>,
    /// When the next aggregator reader may take the lock.
    next_read: tokio::sync::Mutex<tokio::time::Instant>,
    forwarder: Option<Arc<Forwarder>>,
    /// The metadata keys and tags normalization keeps: its own and those
    /// recording reads.
    kept: normalize::Kept,
}

const REQUEST_REJECT_REASONS: [&str; 16] = [
    "malformed_protobuf",
    "malformed_json",
    "invalid_utf8",
    "empty_body",
    "too_large",
    "decompressed_too_large",
    "malformed_gzip",
    "client_disconnected",
    "body_timeout",
    "memory_limit",
    "unsupported_encoding",
    "unsupported_media_type",
    "overloaded",
    "queue_full",
    "forward_queue_error",
    "unknown_path",
];

const SPAN_REJECT_REASONS: [&str; 3] = [
    "invalid_trace_id",
    "invalid_span_id",
    "invalid_parent_span_id",
];

impl Pipeline {
    /// Fails only when the pricing configuration cannot be loaded (a user
    /// price file that is missing or invalid).
    pub fn new(
        config: &Config,
        registry: Arc<Registry>,
        forwarder: Option<Arc<Forwarder>>,
    ) -> Result<Self, crate::pricing::PricingError> {
        let prices = crate::pricing::PriceTable::from_config(&config.pricing)?;
        tracing::info!(
            models = prices.len(),
            source = prices.source(),
            "price table loaded"
        );
        // Every self-metric series exists from the start (at 0), so rates and
        // alerts work before the first incident.
        let protocols = Protocol::ALL
            .into_iter()
            .map(|p| {
                let l = [("protocol", p.as_str())];
                let rejected = REQUEST_REJECT_REASONS
                    .into_iter()
                    .map(|r| {
                        (
                            r,
                            registry.counter(
                                REQUESTS_REJECTED,
                                &[("protocol", p.as_str()), ("reason", r)],
                            ),
                        )
                    })
                    .collect();
                let m = ProtocolMetrics {
                    requests: registry.counter(EXPORT_REQUESTS, &l),
                    spans: registry.counter(SPANS_RECEIVED, &l),
                    rejected,
                };
                (p, m)
            })
            .collect();
        let spans_rejected = SPAN_REJECT_REASONS
            .into_iter()
            .map(|r| (r, registry.counter(SPANS_REJECTED, &[("reason", r)])))
            .collect();
        registry
            .gauge(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))])
            .set(1.0);
        Ok(Pipeline {
            aggregator: Mutex::new(Aggregator::new(
                config,
                registry.clone(),
                prices,
                forwarder.as_ref().and_then(|f| f.trace_subscriber()),
            )),
            inflight_gauge: registry.gauge(INFLIGHT_REQUESTS, &[]),
            memory: {
                registry
                    .gauge(INFLIGHT_BYTES_LIMIT, &[])
                    .set(config.limits.max_inflight_bytes as f64);
                crate::receive::budget::MemoryBudget::new(
                    registry.gauge(INFLIGHT_BYTES, &[]),
                    config.limits.max_inflight_bytes,
                    config.limits.max_request_bytes,
                )
            },
            registry,
            protocols,
            spans_rejected,
            inflight: AtomicUsize::new(0),
            max_inflight: config.server.max_inflight_requests,
            max_request_bytes: config.limits.max_request_bytes,
            body_read_timeout: std::time::Duration::from_millis(config.server.body_read_timeout_ms),
            next_read: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            forwarder,
            kept: normalize::Kept::used_by(
                crate::aggregate::recorder::metadata_keys(config),
                crate::aggregate::recorder::tag_names(config),
            ),
        })
    }

    /// Reads the aggregator; holds its lock for the call.
    pub fn with_aggregator<T>(&self, f: impl FnOnce(&Aggregator) -> T) -> T {
        f(&self.aggregator.lock())
    }

    /// Reads the aggregator for a reader (the KPI API) without starving
    /// ingest: readers go one at a time, and after a read that held the
    /// lock for `t` the next one waits until `READER_SHARE_DIVISOR × t` has
    /// passed, so back-to-back readers hold the ingest lock at most
    /// 1 / `READER_SHARE_DIVISOR` of the time (the caller keeps the work
    /// that needs no lock, such as building the answer, outside `f`).
    pub async fn read_aggregator<T>(&self, f: impl FnOnce(&Aggregator) -> T) -> T {
        let mut next = self.next_read.lock().await;
        tokio::time::sleep_until(*next).await;
        let started = std::time::Instant::now();
        let out = f(&self.aggregator.lock());
        let held = started.elapsed();
        *next = tokio::time::Instant::now() + held * READER_SHARE_DIVISOR;
        out
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// The in-flight memory budget (`limits.max_inflight_bytes`).
    pub fn memory(&self) -> &Arc<crate::receive::budget::MemoryBudget> {
        &self.memory
    }

    /// `server.body_read_timeout_ms`: how long a request body may take to
    /// arrive, from its headers.
    pub fn body_read_timeout(&self) -> std::time::Duration {
        self.body_read_timeout
    }

    /// Ingests one `ExportTraceServiceRequest` in protobuf form. The slot
    /// (from [`Pipeline::try_begin`]) proves the request was admitted.
    ///
    /// Order matters for "nothing acknowledged is lost, nothing is counted
    /// twice": decode and validate; queue for forwarding (the step that can
    /// push back); only then count into the metrics; then acknowledge.
    /// Spans rejected by validation (`partial_success`) are neither
    /// forwarded nor counted in the KPIs: forwarding drops them from what it
    /// queues, normalization skips them, both by `otlp::id_problem`.
    pub async fn ingest(
        &self,
        _slot: &InflightSlot<'_>,
        protocol: Protocol,
        body: Bytes,
    ) -> Result<Accepted, IngestError> {
        self.ingest_inner(protocol, body)
            .await
            .map_err(|e| self.rejected(protocol, e))
    }

    async fn ingest_inner(&self, protocol: Protocol, body: Bytes) -> Result<Accepted, IngestError> {
        let metrics = &self.protocols[&protocol];
        metrics.requests.increment(1);
        if body.len() > self.max_request_bytes {
            return Err(IngestError::TooLarge {
                size: body.len(),
                limit: self.max_request_bytes,
            });
        }
        let request = ExportTraceServiceRequest::decode(body.clone())
            .map_err(|e| IngestError::MalformedProtobuf(e.to_string()))?;
        let verdict = validate(&request)?;
        if let Some(f) = &self.forwarder {
            let accepted = verdict.total - verdict.rejected;
            f.submit(&request, body, accepted, verdict.rejected)
                .await
                .map_err(submit_refused)?;
        }
        let runs = normalize::normalize_request_keeping(&request, &self.kept);

        metrics.spans.increment(verdict.total);
        for (reason, n) in &verdict.reasons {
            if let Some(c) = self.spans_rejected.get(reason) {
                c.increment(*n);
            }
        }
        self.aggregator.lock().accept(runs, Instant::now());
        Ok(Accepted {
            spans: verdict.total - verdict.rejected,
            rejected: verdict.rejected,
            message: verdict.message,
        })
    }

    /// Counts a request refused before or during ingest.
    pub fn rejected(&self, protocol: Protocol, e: IngestError) -> IngestError {
        if let Some(c) = self.protocols[&protocol].rejected.get(e.reason()) {
            c.increment(1);
        }
        tracing::debug!(protocol = protocol.as_str(), reason = e.reason(), error = %e, "export request rejected");
        e
    }

    /// Counts a request refused by a transport before it reached `ingest`
    /// (HTTP body limits, content types, gzip).
    pub fn reject_transport(&self, protocol: Protocol, e: IngestError) -> IngestError {
        self.protocols[&protocol].requests.increment(1);
        self.rejected(protocol, e)
    }

    /// Releases traces whose root did not arrive in time; also drains
    /// histogram samples into buckets (see `Registry::run_upkeep`).
    pub fn tick(&self) {
        self.aggregator.lock().sweep(Instant::now());
        if let Some(f) = &self.forwarder {
            f.refresh();
        }
        self.registry.run_upkeep();
    }

    pub fn forwarder(&self) -> Option<&Arc<Forwarder>> {
        self.forwarder.as_ref()
    }

    /// Releases everything still held (shutdown).
    pub fn drain(&self) {
        self.aggregator.lock().drain(Instant::now());
        self.registry.run_upkeep();
    }

    /// Export requests being processed right now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// `server.max_inflight_requests`.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    pub fn overloaded(&self) -> bool {
        self.inflight() >= self.max_inflight
    }

    /// Admits one export request, or refuses it (counted) when
    /// `server.max_inflight_requests` are already being processed: the
    /// caller answers with back-pressure (HTTP 503 / gRPC UNAVAILABLE),
    /// which OTLP exporters retry.
    pub fn try_begin(&self, protocol: Protocol) -> Result<InflightSlot<'_>, IngestError> {
        let now = self.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = InflightSlot { pipeline: self };
        if now > self.max_inflight {
            self.protocols[&protocol].requests.increment(1);
            return Err(self.rejected(protocol, IngestError::Overloaded(now - 1)));
        }
        self.inflight_gauge.set(now as f64);
        Ok(slot)
    }
}

/// How the receiver answers a request forwarding could not queue: a full
/// queue is back-pressure (retried by OTel SDKs), anything else a server
/// error.
fn submit_refused(e: SubmitError) -> IngestError {
    match e {
        SubmitError::QueueFull {
            destination,
            retry_after,
        } => IngestError::QueueFull {
            destination,
            retry_after,
        },
        other => IngestError::ForwardQueue(other.to_string()),
    }
}

/// Decrements the in-flight count when the request is done, however it ends.
pub struct InflightSlot<'a> {
    pipeline: &'a Pipeline,
}

impl Drop for InflightSlot<'_> {
    fn drop(&mut self) {
        let left = self.pipeline.inflight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.pipeline.inflight_gauge.set(left as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp_view::{
        any_value::Value, AnyValue, ArrayValue, KeyValue, ResourceSpans, ScopeSpans, Span,
    };

    /// Every metadata key and tag a later stage reads from the
    /// configuration survives normalization's filter; those nobody reads do
    /// not.
    #[test]
    fn configured_metadata_keys_and_tags_are_kept() {
        let mut config = Config::default();
        config.pricing.batch_metadata_key = "is_batch".into();
        config.cache.hit_keys = vec!["from_cache".into()];
        config.labels.metadata = vec!["team".into()];
        config.labels.tags = vec!["canary".into()];
        let pipeline = Pipeline::new(&config, Arc::new(Registry::new()), None).expect("pipeline");
        let json = r#"{"is_batch": "true", "from_cache": true, "team": "search",
            "thread_id": "t-1", "langgraph_node": "agent", "ls_provider": "openai",
            "langgraph_step": 3, "checkpoint_ns": "agent:1"}"#;
        let kv = |k: &str, v: &str| KeyValue {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Some(AnyValue {
                value: Some(Value::StringValue(Bytes::copy_from_slice(v.as_bytes()))),
            }),
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: Bytes::from_static(&[1; 16]),
                        span_id: Bytes::from_static(&[2; 8]),
                        name: Bytes::from_static(b"agent"),
                        attributes: vec![
                            kv("openinference.span.kind", "LLM"),
                            kv("metadata", json),
                            kv("langsmith.metadata.revision", "r1"),
                            KeyValue {
                                key: Bytes::from_static(b"tag.tags"),
                                value: Some(AnyValue {
                                    value: Some(Value::ArrayValue(ArrayValue {
                                        values: ["beta", "canary", "seq:step:1"]
                                            .map(|t| AnyValue {
                                                value: Some(Value::StringValue(
                                                    Bytes::from_static(t.as_bytes()),
                                                )),
                                            })
                                            .to_vec(),
                                    })),
                                }),
                            },
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let runs = normalize::normalize_request_keeping(&req, &pipeline.kept);
        let run = &runs[0];
        for (key, value) in [
            ("is_batch", "true"),
            ("from_cache", "true"),
            ("team", "search"),
            ("thread_id", "t-1"),
            ("langgraph_node", "agent"),
            ("ls_provider", "openai"),
        ] {
            assert_eq!(run.meta(key), Some(value), "{key}");
        }
        for skipped in ["langgraph_step", "checkpoint_ns", "revision"] {
            assert_eq!(run.meta(skipped), None, "{skipped}");
        }
        assert_eq!(run.metadata.len(), 6);
        assert_eq!(run.session_id.as_deref(), Some("t-1"));
        assert_eq!(run.tags, vec!["canary"]);
        // The library's default keeps everything.
        let all = &normalize::normalize_request(&req)[0];
        assert_eq!(all.metadata.len(), 9);
        assert_eq!(all.tags, vec!["beta", "canary"]);
        // With nothing promoted (the default configuration), no tag is read.
        let plain =
            Pipeline::new(&Config::default(), Arc::new(Registry::new()), None).expect("pipeline");
        let run = &normalize::normalize_request_keeping(&req, &plain.kept)[0];
        assert!(run.tags.is_empty());
        assert_eq!(run.meta("team"), None, "not promoted here");
        assert_eq!(run.meta("thread_id"), Some("t-1"), "read by normalization");
    }
}
