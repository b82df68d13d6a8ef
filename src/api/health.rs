//! `GET /api/v1/health`: chainpulse's own health as one JSON document —
//! ingest (requests, rejects by reason, in-flight requests and memory
//! budget, connections), assembly, label cardinality, forwarding queues,
//! dropped spans and unpriced models — with the problems that hold *now*
//! spelled out.
//!
//! The live page needs these figures, and parsing `/metrics` in the browser
//! would mean a second Prometheus parser in JavaScript and every series sent
//! on each poll. The counters live only in the registry (the pipeline keeps
//! write-only handles), so they are read back the way a scraper reads them:
//! the registry's own text exposition, parsed by `export::text`, the reader
//! the demo and the tests already use. Gauges that the pipeline holds itself
//! (in-flight requests, the memory budget) are read from it directly.

use crate::export::names::*;
use crate::export::text::{self, Sample};
use crate::pipeline::Pipeline;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A forwarding queue at or above this share of its byte limit is reported
/// as a problem (its `on_full` policy is about to apply).
const QUEUE_FULL_WARNING: f64 = 0.8;

/// `sum by (label) (name)`, non-zero values only, sorted by label value.
fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        if let Some(v) = s.label(label) {
            *out.entry(v.to_owned()).or_insert(0.0) += s.value;
        }
    }
    out.retain(|_, v| *v != 0.0);
    out
}

/// `text::sum`, with `+ 0.0` because an empty f64 sum is -0.0, which JSON
/// would show as `-0.0`.
fn total(samples: &[Sample], name: &str, matchers: &[(&str, &str)]) -> f64 {
    text::sum(samples, name, matchers) + 0.0
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    total(samples, name, &[])
}

fn to_json(m: BTreeMap<String, f64>) -> Value {
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// The health document for `pipeline`, `accepting` as `/readyz` sees it.
pub fn health(pipeline: &Pipeline, accepting: bool) -> Value {
    let registry = pipeline.registry();
    registry.run_upkeep();
    let samples = text::parse(&registry.render());
    let mut problems: Vec<String> = Vec::new();

    if !accepting {
        problems.push("not accepting exports (starting or shutting down)".into());
    }
    let inflight = pipeline.inflight();
    let max_inflight = pipeline.max_inflight();
    if pipeline.overloaded() {
        problems.push(format!(
            "overloaded: {inflight} export requests in flight (server.max_inflight_requests = {max_inflight}); new ones are refused with back-pressure"
        ));
    }
    let memory = pipeline.memory();
    if memory.nearly_full() {
        problems.push(format!(
            "in-flight memory budget nearly used up: {} of {} bytes (limits.max_inflight_bytes)",
            memory.used(),
            memory.max()
        ));
    }

    let families_at_limit: Vec<String> = {
        let series = by_label(&samples, CARDINALITY_SERIES, "family");
        let limits = by_label(&samples, CARDINALITY_LIMIT, "family");
        series
            .iter()
            .filter(|(f, n)| limits.get(*f).is_some_and(|l| *n >= l))
            .map(|(f, _)| f.clone())
            .collect()
    };
    if !families_at_limit.is_empty() {
        problems.push(format!(
            "label cardinality limit reached for {}: new label sets fold into {OVERFLOW_LABEL}",
            families_at_limit.join(", ")
        ));
    }

    let destinations = by_label(&samples, FORWARD_QUEUE_MAX_BYTES, "destination");
    let forwarding: Vec<Value> = destinations
        .keys()
        .map(|name| {
            let d = [("destination", name.as_str())];
            let spans = |r: &str| {
                total(
                    &samples,
                    FORWARD_SPANS,
                    &[("destination", name.as_str()), ("result", r)],
                )
            };
            let queue_bytes = total(&samples, FORWARD_QUEUE_BYTES, &d);
            let max_bytes = total(&samples, FORWARD_QUEUE_MAX_BYTES, &d);
            if max_bytes > 0.0 && queue_bytes >= QUEUE_FULL_WARNING * max_bytes {
                problems.push(format!(
                    "forwarding queue {name:?} is {:.0} % full ({queue_bytes} of {max_bytes} bytes)",
                    100.0 * queue_bytes / max_bytes
                ));
            }
            let failed_by_reason: BTreeMap<String, f64> = samples
                .iter()
                .filter(|s| s.name == FORWARD_FAILED && s.label("destination") == Some(name))
                .filter_map(|s| Some((s.label("reason")?.to_owned(), s.value)))
                .filter(|(_, v)| *v != 0.0)
                .collect();
            json!({
                "destination": name,
                "queue_spans": total(&samples, FORWARD_QUEUE_SPANS, &d),
                "queue_bytes": queue_bytes,
                "queue_max_bytes": max_bytes,
                "oldest_age_seconds": total(&samples, FORWARD_OLDEST_AGE, &d),
                "sent_spans": spans("sent"),
                "retried_spans": spans("retried"),
                "failed_spans": spans("failed"),
                "dropped_spans": spans("dropped"),
                "sampled_out_spans": spans("sampled_out"),
                "failed_by_reason": to_json(failed_by_reason),
            })
        })
        .collect();

    let forward_lost = |r: &str| total(&samples, FORWARD_SPANS, &[("result", r)]);
    json!({
        "status": if problems.is_empty() { "ok" } else { "degraded" },
        "problems": problems,
        "version": env!("CARGO_PKG_VERSION"),
        "ingest": {
            "export_requests": sum(&samples, EXPORT_REQUESTS),
            "export_requests_by_protocol": to_json(by_label(&samples, EXPORT_REQUESTS, "protocol")),
            "spans_received": sum(&samples, SPANS_RECEIVED),
            "requests_rejected": sum(&samples, REQUESTS_REJECTED),
            "requests_rejected_by_reason": to_json(by_label(&samples, REQUESTS_REJECTED, "reason")),
            "inflight_requests": inflight,
            "max_inflight_requests": max_inflight,
            "inflight_bytes": memory.used(),
            "inflight_bytes_limit": memory.max(),
            "connections": to_json(by_label(&samples, CONNECTIONS, "listener")),
            "connections_refused": sum(&samples, CONNECTIONS_REFUSED),
        },
        "assembly": {
            "traces_held": sum(&samples, ASSEMBLY_TRACES),
            "spans_held": sum(&samples, ASSEMBLY_SPANS),
            "evictions_by_reason": to_json(by_label(&samples, ASSEMBLY_EVICTIONS, "reason")),
            "late_spans": sum(&samples, ASSEMBLY_LATE_SPANS),
        },
        "cardinality": {
            "overflowed": sum(&samples, CARDINALITY_OVERFLOW),
            "families_at_limit": families_at_limit,
            "label_values_altered": sum(&samples, LABEL_VALUES_TRUNCATED),
        },
        "dropped_spans": {
            "rejected_invalid": sum(&samples, SPANS_REJECTED),
            "rejected_by_reason": to_json(by_label(&samples, SPANS_REJECTED, "reason")),
            "forward_failed": forward_lost("failed"),
            "forward_dropped": forward_lost("dropped"),
        },
        "forwarding": forwarding,
        "pricing": {
            "unpriced_calls_by_model": to_json(by_label(&samples, LLM_UNPRICED, "model")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sums_skip_zeroes() {
        let s = text::parse(
            "r{reason=\"a\",p=\"x\"} 2\nr{reason=\"a\",p=\"y\"} 1\nr{reason=\"b\"} 0\nq 5\n",
        );
        let m = by_label(&s, "r", "reason");
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![("a".into(), 3.0)]);
        assert_eq!(sum(&s, "q"), 5.0);
    }
}
