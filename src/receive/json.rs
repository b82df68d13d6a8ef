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
    let req: ExportTraceServiceRequest = serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages carry line and column; say which it is.
        IngestError::MalformedJson(e.to_string())
    })?;
    Ok(Bytes::from(req.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
