//! Truncation of oversized string values before traces are forwarded, so a
//! single 100 KiB prompt never pushes a batch over an upstream's message limit
//! (4 MiB for default gRPC servers).
//!
//! Every string longer than [`TruncateConfig::max_attribute_bytes`] in span
//! attributes, span-event attributes, span-link attributes, the span status
//! message, and strings nested inside array / kvlist values at any depth is cut
//! at the last UTF-8 char boundary at or below the limit, and the marker is
//! appended with `{n}` replaced by the number of bytes removed. The result is
//! therefore at most `max_attribute_bytes + marker length` bytes, always valid
//! UTF-8.
//!
//! Not covered: resource/scope attributes, span and event names, `bytes`
//! values, and the total size of a value made of many small strings (a huge
//! array of short strings is left as is). The pass is not idempotent: running
//! it twice re-truncates values whose marker pushed them over the limit.
//! `max_attribute_bytes = 0` disables truncation.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde::{Deserialize, Serialize};

/// Truncation settings. Every field has a default, unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TruncateConfig {
    /// Longest string value kept intact, in bytes. Default 128 KiB
    /// ([`DEFAULT_MAX_ATTRIBUTE_BYTES`]); 0 disables.
    pub max_attribute_bytes: usize,
    /// Appended to cut values; `{n}` becomes the number of bytes cut.
    /// Default `"…[truncated {n} bytes]"`.
    pub marker: String,
}

/// Default for [`TruncateConfig::max_attribute_bytes`], the one place it is
/// decided: 128 KiB lets a RAG prompt of tens of KiB through whole, while a
/// runaway 10 MiB tool output cannot sink a batch against a 4 MiB gRPC limit.
pub const DEFAULT_MAX_ATTRIBUTE_BYTES: usize = 128 * 1024;
/// Default for [`TruncateConfig::marker`].
pub const DEFAULT_MARKER: &str = "…[truncated {n} bytes]";

impl Default for TruncateConfig {
    fn default() -> Self {
        Self {
            max_attribute_bytes: DEFAULT_MAX_ATTRIBUTE_BYTES,
            marker: DEFAULT_MARKER.to_owned(),
        }
    }
}

/// Applies a [`TruncateConfig`]; cheap to build, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Truncator {
    max: usize,
    marker: String,
}

impl Truncator {
    pub fn new(cfg: &TruncateConfig) -> Self {
        Self {
            max: cfg.max_attribute_bytes,
            marker: cfg.marker.clone(),
        }
    }

    /// Truncates one string in place; returns whether it changed.
    pub fn truncate_string(&self, s: &mut String) -> bool {
        if self.max == 0 || s.len() <= self.max {
            return false;
        }
        let mut cut = self.max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let removed = s.len() - cut;
        s.truncate(cut);
        s.push_str(&self.marker.replace("{n}", &removed.to_string()));
        true
    }

    /// Truncates in place; returns the number of strings shortened
    /// (`0` means the request is unchanged).
    pub fn truncate_request(&self, req: &mut ExportTraceServiceRequest) -> usize {
        if self.max == 0 {
            return 0;
        }
        let mut n = 0;
        for rs in &mut req.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    n += self.attrs(&mut span.attributes);
                    for ev in &mut span.events {
                        n += self.attrs(&mut ev.attributes);
                    }
                    for link in &mut span.links {
                        n += self.attrs(&mut link.attributes);
                    }
                    if let Some(status) = span.status.as_mut() {
                        n += usize::from(self.truncate_string(&mut status.message));
                    }
                }
            }
        }
        n
    }

    fn attrs(&self, attrs: &mut [KeyValue]) -> usize {
        attrs
            .iter_mut()
            .filter_map(|kv| kv.value.as_mut())
            .map(|v| self.value(v))
            .sum()
    }

    fn value(&self, v: &mut AnyValue) -> usize {
        match v.value.as_mut() {
            Some(any_value::Value::StringValue(s)) => usize::from(self.truncate_string(s)),
            Some(any_value::Value::ArrayValue(arr)) => {
                arr.values.iter_mut().map(|item| self.value(item)).sum()
            }
            Some(any_value::Value::KvlistValue(list)) => self.attrs(&mut list.values),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span};

    fn t(max: usize) -> Truncator {
        Truncator::new(&TruncateConfig {
            max_attribute_bytes: max,
            ..TruncateConfig::default()
        })
    }

    use crate::forward::prepare::test_values::{kv, sv};

    fn string_of(v: &AnyValue) -> &str {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_serde() {
        let c: TruncateConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.max_attribute_bytes, 128 * 1024);
        assert_eq!(c.marker, "…[truncated {n} bytes]");
        assert!(serde_json::from_str::<TruncateConfig>(r#"{"max_bytes": 1}"#).is_err());
    }

    #[test]
    fn short_and_exact_values_untouched() {
        let tr = t(5);
        let mut s = "héllo".to_owned(); // 6 bytes
        assert!(tr.truncate_string(&mut s));
        let mut s2 = "hello".to_owned();
        assert!(!tr.truncate_string(&mut s2));
        assert_eq!(s2, "hello");
        let mut s3 = "x".repeat(100);
        assert!(!t(0).truncate_string(&mut s3));
    }

    #[test]
    fn ascii_cut_and_count() {
        let mut s = "a".repeat(100);
        assert!(t(10).truncate_string(&mut s));
        assert_eq!(s, format!("{}…[truncated 90 bytes]", "a".repeat(10)));
    }

    #[test]
    fn multibyte_e_acute_boundary() {
        // "aé" * n: 'é' is 2 bytes; byte 4 falls inside the second 'é'.
        let mut s = "aéaéaéaé".to_owned(); // 12 bytes
        assert!(t(5).truncate_string(&mut s));
        assert_eq!(s, "aéa…[truncated 8 bytes]");
        let mut s = "éééé".to_owned(); // 8 bytes, limit 3 -> cut at 2
        assert!(t(3).truncate_string(&mut s));
        assert_eq!(s, "é…[truncated 6 bytes]");
    }

    #[test]
    fn multibyte_emoji_boundary() {
        let src = "🦀🦀🦀"; // 4 bytes each
        for max in 1..12 {
            let mut s = src.to_owned();
            assert!(t(max).truncate_string(&mut s));
            let keep = max / 4 * 4;
            assert_eq!(
                s,
                format!("{}…[truncated {} bytes]", &src[..keep], 12 - keep),
                "max {max}"
            );
        }
        let mut s = src.to_owned();
        assert!(!t(12).truncate_string(&mut s));
    }

    #[test]
    fn custom_marker() {
        let tr = Truncator::new(&TruncateConfig {
            max_attribute_bytes: 2,
            marker: " [cut {n}B, {n}]".into(),
        });
        let mut s = "abcdef".to_owned();
        assert!(tr.truncate_string(&mut s));
        assert_eq!(s, "ab [cut 4B, 4]");
    }

    #[test]
    fn request_nested_values_events_links_status() {
        let long = "é".repeat(20); // 40 bytes
        let nested = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("a", sv(&long)),
                    kv(
                        "b",
                        AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![sv("short"), sv(&long), sv("🦀🦀🦀🦀🦀")],
                            })),
                        },
                    ),
                ],
            })),
        };
        let span = Span {
            attributes: vec![
                kv("input.value", sv(&long)),
                kv(
                    "n",
                    AnyValue {
                        value: Some(any_value::Value::IntValue(7)),
                    },
                ),
                kv("nested", nested),
            ],
            events: vec![Event {
                attributes: vec![kv("exception.stacktrace", sv(&long))],
                ..Default::default()
            }],
            status: Some(opentelemetry_proto::tonic::trace::v1::Status {
                message: long.clone(),
                code: 2,
            }),
            ..Default::default()
        };
        let mut req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let n = t(9).truncate_request(&mut req);
        // input.value, nested.a, nested.b[1], nested.b[2] (20 bytes), event, status
        assert_eq!(n, 6);
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        let cut = format!("{}…[truncated 32 bytes]", "é".repeat(4));
        assert_eq!(string_of(span.attributes[0].value.as_ref().unwrap()), cut);
        let Some(any_value::Value::KvlistValue(list)) =
            &span.attributes[2].value.as_ref().unwrap().value
        else {
            panic!()
        };
        assert_eq!(string_of(list.values[0].value.as_ref().unwrap()), cut);
        let Some(any_value::Value::ArrayValue(arr)) = &list.values[1].value.as_ref().unwrap().value
        else {
            panic!()
        };
        assert_eq!(string_of(&arr.values[0]), "short");
        assert_eq!(string_of(&arr.values[1]), cut);
        assert_eq!(string_of(&arr.values[2]), "🦀🦀…[truncated 12 bytes]");
        assert_eq!(
            string_of(span.events[0].attributes[0].value.as_ref().unwrap()),
            cut
        );
        assert_eq!(span.status.as_ref().unwrap().message, cut);
        // Second request of short values: no change reported.
        let mut again = req.clone();
        assert_eq!(t(1 << 20).truncate_request(&mut again), 0);
        assert_eq!(again, req);
    }
}
