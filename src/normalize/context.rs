//! Tags, metadata, session, user, streaming and inputs / outputs.
//!
//! Each dialect hides these differently: OpenInference puts metadata in one
//! JSON string and drops tags; OpenLLMetry keeps tags only inside the
//! `traceloop.entity.input` JSON; LangSmith joins tags with ", "; Langfuse
//! JSON-encodes every metadata value, strings included.

use super::extract::Extracted;
use super::value::{as_bool, as_f64, as_nonempty_str, as_str, raw_bytes, str_array, to_text};
use bytes::Bytes;

/// LangChain adds run-position tags (`seq:step:2`, `map:key:context`) to every
/// child run. They describe the graph, not the application, and differ per
/// step, so they are dropped.
fn is_internal_tag(t: &str) -> bool {
    t.starts_with("seq:step:")
        || t.starts_with("map:key:")
        || t.starts_with("graph:step:")
        || t.starts_with("langsmith:")
}

pub fn tags(x: &Extracted<'_>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    if let Some(v) = x.oi_tags {
        tags.extend(str_array(v).map(str::to_owned));
    }
    if let Some(v) = x.langfuse_tags {
        tags.extend(str_array(v).map(str::to_owned));
    }
    if let Some(s) = x.langsmith_tags.and_then(as_str) {
        tags.extend(
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    if tags.is_empty() {
        if let Some(s) = x.traceloop_input.and_then(as_str) {
            tags.extend(traceloop_tags(s));
        }
    }
    tags.retain(|t| !is_internal_tag(t));
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// The `tags` array of OpenLLMetry's `{"inputs", "tags", "metadata",
/// "kwargs"}` JSON; the rest of the document is skipped, not built.
fn traceloop_tags(json: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        tags: Vec<String>,
    }
    serde_json::from_str::<Envelope>(json)
        .map(|e| e.tags)
        .unwrap_or_default()
}

pub fn metadata(x: &Extracted<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(s) = x.oi_metadata.and_then(as_str) {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(s) {
            out.extend(map.into_iter().map(|(k, v)| (k, json_text(v))));
        }
    }
    for &(key, value, json_encoded) in &x.prefixed_metadata {
        let text = if json_encoded {
            as_str(value)
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .map(json_text)
                .unwrap_or_else(|| to_text(value))
        } else {
            to_text(value)
        };
        out.push((key.to_owned(), text));
    }
    // First writer wins (observation metadata before trace metadata).
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn json_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn meta<'m>(metadata: &'m [(String, String)], keys: &[&str]) -> Option<&'m str> {
    keys.iter().find_map(|k| {
        metadata
            .binary_search_by(|(mk, _)| mk.as_str().cmp(k))
            .ok()
            .map(|i| metadata[i].1.as_str())
            .filter(|v| !v.is_empty())
    })
}

/// A metadata value (metadata must be sorted by key, as `metadata` returns it).
pub fn meta_value<'m>(metadata: &'m [(String, String)], key: &str) -> Option<&'m str> {
    meta(metadata, &[key])
}

/// The conversation: OTel / OpenInference / Langfuse keys, then the
/// LangChain metadata conventions. LangSmith's `langsmith.trace.session_id`
/// is the LangSmith *project* and is deliberately not read.
pub fn session_id(x: &Extracted<'_>, metadata: &[(String, String)]) -> Option<String> {
    x.session_id
        .or(x.conversation_id)
        .and_then(as_nonempty_str)
        .or_else(|| {
            meta(
                metadata,
                &[
                    "session_id",
                    "thread_id",
                    "conversation_id",
                    "langfuse_session_id",
                ],
            )
        })
        .map(str::to_owned)
}

pub fn user_id(x: &Extracted<'_>, metadata: &[(String, String)]) -> Option<String> {
    x.user_id
        .and_then(as_nonempty_str)
        .or_else(|| meta(metadata, &["user_id", "langfuse_user_id", "user"]))
        .map(str::to_owned)
}

/// Whether the call streamed, and its time to first token in seconds.
pub fn streaming(x: &Extracted<'_>, start_unix_nano: u64) -> (Option<bool>, Option<f64>) {
    let mut stream = x
        .genai_stream
        .or(x.genai_is_streaming)
        .or(x.langsmith_streaming)
        .and_then(as_bool);
    if stream.is_none() {
        if let Some(params) = x.oi_invocation_params.and_then(as_str) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(params) {
                stream = v.get("stream").and_then(serde_json::Value::as_bool);
            }
        }
    }
    let mut ttft = x.ttfc.and_then(as_f64);
    // OpenLIT writes the full duration here for non-streamed calls.
    if ttft.is_none() && stream == Some(true) {
        ttft = x.server_ttft.and_then(as_f64);
    }
    if let Some(first) = x
        .langfuse_completion_start
        .and_then(as_str)
        .and_then(super::timefmt::parse_rfc3339_json)
    {
        stream = Some(true);
        if ttft.is_none() && first >= start_unix_nano {
            ttft = Some((first - start_unix_nano) as f64 / 1e9);
        }
    }
    (stream, ttft.filter(|t| *t >= 0.0))
}

/// Inputs and outputs, zero-copy.
pub fn io(x: &Extracted<'_>) -> (Option<Bytes>, Option<Bytes>) {
    let input = [
        x.oi_input,
        x.genai_input_messages,
        x.traceloop_input,
        x.genai_prompt,
        x.langfuse_input,
        x.workflow_input,
    ]
    .into_iter()
    .flatten()
    .find_map(raw_bytes);
    let output = [
        x.oi_output,
        x.genai_output_messages,
        x.traceloop_output,
        x.genai_completion,
        x.langfuse_output,
    ]
    .into_iter()
    .flatten()
    .find_map(raw_bytes);
    (input, output)
}

/// Whether an LLM run was served from an LLM-response cache, when the span
/// tells: an explicit attribute, or LangChain's cached-generation marker
/// (`_convert_cached_generations` adds `"total_cost": 0` to the usage it
/// copies, and it only shows in the run's serialized output).
pub fn cache_hit(x: &Extracted<'_>, is_llm: bool, outputs: Option<&Bytes>) -> Option<bool> {
    if let Some(b) = x.cache_hit.and_then(as_bool) {
        return Some(b);
    }
    if !is_llm {
        return None;
    }
    let out = outputs?;
    let marker = |m: &[u8]| out.windows(m.len()).any(|w| w == m);
    (marker(b"\"total_cost\": 0,")
        || marker(b"\"total_cost\":0,")
        || marker(b"\"total_cost\": 0}")
        || marker(b"\"total_cost\":0}"))
    .then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceloop_tags_ignore_the_rest() {
        let json =
            r#"{"inputs": {"tags": ["not-me"]}, "tags": ["seq:step:1", "rag"], "metadata": {}}"#;
        assert_eq!(traceloop_tags(json), vec!["seq:step:1", "rag"]);
        assert!(traceloop_tags("not json").is_empty());
    }

    #[test]
    fn internal_tags_are_internal() {
        assert!(is_internal_tag("seq:step:3"));
        assert!(is_internal_tag("map:key:context"));
        assert!(!is_internal_tag("production"));
    }
}

