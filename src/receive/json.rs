//! OTLP/JSON to protobuf.
//!
//! OTLP/JSON differs from the protobuf JSON mapping (hex trace and span ids,
//! integer enums, int64 as strings); opentelemetry-proto's serde support
//! implements exactly that. The decoded request is re-encoded once so the
//! rest of the pipeline — and forwarding — sees one format.

use super::IngestError;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

pub fn to_protobuf(body: &[u8]) -> Result<Bytes, IngestError> {
    let req: ExportTraceServiceRequest = match serde_json::from_slice(body) {
        Ok(req) => req,
        // The protobuf JSON mapping may omit an empty repeated field, so an
        // empty array or key-value list attribute can arrive as
        // `"arrayValue": {}`; opentelemetry-proto's serde insists on
        // `values`. Only then is the body walked and the field filled in.
        Err(e) if e.to_string().contains("missing field `values`") => {
            let mut v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| IngestError::MalformedJson(e.to_string()))?;
            fill_empty_values(&mut v, 0);
            serde_json::from_value(v).map_err(|e| IngestError::MalformedJson(e.to_string()))?
        }
        // serde_json's messages carry line and column; say which it is.
        Err(e) => return Err(IngestError::MalformedJson(e.to_string())),
    };
    Ok(Bytes::from(req.encode_to_vec()))
}

/// Adds `"values": []` to every `arrayValue` / `kvlistValue` object that
/// omits it. Depth-bounded like the decoder (deeper input fails decoding).
fn fill_empty_values(v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    if depth > 128 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if let ("arrayValue" | "kvlistValue", Value::Object(inner)) =
                    (k.as_str(), &mut *child)
                {
                    inner
                        .entry("values")
                        .or_insert_with(|| Value::Array(Vec::new()));
                }
                fill_empty_values(child, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                fill_empty_values(item, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_arrays_may_omit_their_values() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"s","attributes":[{"key":"tags","value":{"arrayValue":{}}},
            {"key":"m","value":{"kvlistValue":{}}}]}]}]}]}"#;
        let pb = to_protobuf(body).expect("valid OTLP/JSON");
        let req = ExportTraceServiceRequest::decode(pb).expect("decodes");
        assert_eq!(
            req.resource_spans[0].scope_spans[0].spans[0]
                .attributes
                .len(),
            2
        );
    }

    #[test]
    fn rejects_bad_ids_and_types_with_a_reason() {
        let bad_hex =
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"00"}]}]}]}"#;
        let e = to_protobuf(bad_hex).unwrap_err();
        assert_eq!(e.reason(), "malformed_json");
        let wrong_type = br#"{"resourceSpans":"nope"}"#;
        assert!(to_protobuf(wrong_type)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}
