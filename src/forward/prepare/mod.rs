//! What happens to a request between "counted" and "queued": dropping the
//! spans validation rejected, redaction, `drop_io`, truncation — once, for
//! every destination, before anything is written to a disk queue (so secrets
//! never reach the disk either).
//!
//! The common case costs nothing: without redaction and rejected spans, the
//! already-decoded zero-copy view tells whether any value is over the
//! truncation limit, and when none is the received bytes are queued as they
//! are. Only a request that must change is decoded in full, rewritten and
//! re-encoded.
//!
//! Rejected spans: the client was told (`partial_success`) that they were
//! rejected, and they are not counted, so they must not reach an upstream
//! either. The received bytes hold them, so a request with rejected spans is
//! re-encoded without them (by the rule of [`crate::otlp::id_problem`], the
//! one validation uses), together with any scope or resource left empty.
//! Such requests are rare (a broken SDK), so the re-encoding costs nothing
//! in the common case.

pub(crate) mod redact;
pub(crate) mod truncate;

/// OTLP attribute builders shared by the redaction and truncation tests.
#[cfg(test)]
pub(crate) mod test_values {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

    pub fn sv(s: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        }
    }

    pub fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue {
            key: k.to_owned(),
            value: Some(v),
            ..Default::default()
        }
    }
}

use super::ForwardError;
use crate::export::names::{FORWARD_REDACTIONS, FORWARD_TRUNCATIONS};
use crate::export::Registry;
use crate::otlp::id_problem;
use crate::otlp_view::{any_value, AnyValue, ExportTraceServiceRequest as View, KeyValue};
use bytes::Bytes;
use metrics::Counter;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use redact::Redactor;
use truncate::Truncator;

pub struct Prepare {
    redactor: Option<Redactor>,
    truncator: Truncator,
    max_value: usize,
    redactions: Counter,
    truncations: Counter,
}

impl std::fmt::Debug for Prepare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepare")
            .field("redact", &self.redactor.is_some())
            .field("max_value", &self.max_value)
            .finish()
    }
}

impl Prepare {
    pub fn new(
        cfg: &super::config::ForwardConfig,
        registry: &Registry,
    ) -> Result<Self, ForwardError> {
        let redactor = cfg
            .redact
            .as_ref()
            .map(Redactor::new)
            .transpose()
            .map_err(ForwardError::Redact)?;
        Ok(Prepare {
            redactor,
            truncator: Truncator::new(&cfg.truncate),
            max_value: cfg.truncate.max_attribute_bytes,
            redactions: registry.counter(FORWARD_REDACTIONS, &[]),
            truncations: registry.counter(FORWARD_TRUNCATIONS, &[]),
        })
    }

    /// The bytes to queue for `body` (whose decoded view is `view`), of
    /// which `rejected` spans were rejected by validation.
    pub fn apply(&self, view: &View, body: Bytes, rejected: u64) -> Bytes {
        let truncate = self.max_value > 0 && any_longer(view, self.max_value);
        if self.redactor.is_none() && !truncate && rejected == 0 {
            return body;
        }
        let mut full = match ExportTraceServiceRequest::decode(body.clone()) {
            Ok(r) => r,
            Err(e) => {
                // The view decoded and validated it, so this is not expected;
                // forwarding the original beats losing it.
                tracing::warn!(error = %e, "forward: cannot decode a request for redaction; forwarding it unchanged");
                return body;
            }
        };
        let mut changed = 0;
        if rejected > 0 {
            changed += drop_rejected(&mut full);
        }
        if let Some(r) = &self.redactor {
            let stats = r.redact_request(&mut full);
            self.redactions
                .increment((stats.matches + stats.attributes_dropped) as u64);
            changed += stats.changes();
        }
        if truncate || changed > 0 {
            let n = self.truncator.truncate_request(&mut full);
            self.truncations.increment(n as u64);
            changed += n;
        }
        if changed == 0 {
            return body;
        }
        Bytes::from(full.encode_to_vec())
    }
}

/// Removes the spans whose ids make them invalid, and the scopes and
/// resources left without spans; returns how many spans went.
fn drop_rejected(req: &mut ExportTraceServiceRequest) -> usize {
    let mut n = 0;
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            let before = ss.spans.len();
            ss.spans
                .retain(|s| id_problem(&s.trace_id, &s.span_id, &s.parent_span_id).is_none());
            n += before - ss.spans.len();
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    req.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    n
}

fn any_longer(view: &View, max: usize) -> bool {
    view.resource_spans.iter().any(|rs| {
        rs.scope_spans.iter().any(|ss| {
            ss.spans.iter().any(|s| {
                attrs_longer(&s.attributes, max)
                    || s.events.iter().any(|e| attrs_longer(&e.attributes, max))
                    || s.status.as_ref().is_some_and(|st| st.message.len() > max)
            })
        })
    })
}

fn attrs_longer(attrs: &[KeyValue], max: usize) -> bool {
    attrs
        .iter()
        .any(|kv| kv.value.as_ref().is_some_and(|v| value_longer(v, max)))
}

fn value_longer(v: &AnyValue, max: usize) -> bool {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.len() > max,
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().any(|x| value_longer(x, max)),
        Some(any_value::Value::KvlistValue(l)) => attrs_longer(&l.values, max),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::config::ForwardConfig;

    fn fixture(name: &str) -> Bytes {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        Bytes::from(std::fs::read(&path).expect("fixture"))
    }

    #[test]
    fn unchanged_requests_keep_their_bytes() {
        let reg = Registry::new();
        let p = Prepare::new(&ForwardConfig::default(), &reg).expect("builds");
        let body = fixture("langchain-openinference.pb");
        let view = View::decode(body.clone()).expect("decodes");
        let out = p.apply(&view, body.clone(), 0);
        assert_eq!(out.as_ptr(), body.as_ptr(), "no copy, no re-encode");
    }

    #[test]
    fn long_values_are_cut_and_counted() {
        let reg = Registry::new();
        let mut cfg = ForwardConfig::default();
        cfg.truncate.max_attribute_bytes = 64;
        let p = Prepare::new(&cfg, &reg).expect("builds");
        let body = fixture("langchain-openinference.pb");
        let view = View::decode(body.clone()).expect("decodes");
        let out = p.apply(&view, body.clone(), 0);
        assert!(out.len() < body.len());
        let back = ExportTraceServiceRequest::decode(out).expect("valid protobuf");
        let spans: usize = back
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(
            spans,
            view.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>()
        );
        let m = crate::export::text::parse(&reg.render());
        assert!(crate::export::text::sum(&m, FORWARD_TRUNCATIONS, &[]) > 0.0);
    }
}
