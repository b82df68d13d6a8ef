//! Tags, metadata, session, user, streaming and inputs / outputs.
//!
//! Each dialect hides these differently: OpenInference puts metadata in one
//! JSON string and drops tags; OpenLLMetry keeps tags only inside the
//! `traceloop.entity.input` JSON; LangSmith joins tags with ", "; Langfuse
//! JSON-encodes every metadata value, strings included.

use super::extract::Extracted;
use super::metadata::meta_text;
use super::text::Text;
use super::value::{as_bool, as_f64, as_nonempty_text, as_str, as_text, raw_bytes};
use crate::otlp_view::{any_value::Value, AnyValue, Event};
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

/// The run's tags (those `names` keeps), sorted, without duplicates.
pub fn tags(x: &Extracted<'_>, names: &super::kept::Names) -> Vec<Text> {
    let mut tags: Vec<Text> = Vec::new();
    if names.none() {
        return tags;
    }
    if let Some(v) = x.oi_tags {
        tags.extend(str_array_text(v));
    }
    if let Some(v) = x.langfuse_tags {
        tags.extend(str_array_text(v));
    }
    if let (Some(v), Some(s)) = (x.langsmith_tags, x.langsmith_tags.and_then(as_str)) {
        if let Some(Value::StringValue(owner)) = &v.value {
            tags.extend(
                s.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| Text::slice_of(owner, t)),
            );
        }
    }
    if tags.is_empty() {
        if let Some(v) = x.traceloop_input {
            if let Some(Value::StringValue(owner)) = &v.value {
                tags.extend(traceloop_tags(owner));
            }
        }
    }
    tags.retain(|t| !is_internal_tag(t) && names.keeps(t.as_bytes()));
    tags.sort_unstable();
    tags.dedup();
    tags
}

fn str_array_text(v: &AnyValue) -> impl Iterator<Item = Text> + '_ {
    let values = match &v.value {
        Some(Value::ArrayValue(a)) => a.values.as_slice(),
        _ => &[],
    };
    values.iter().filter_map(as_text)
}

/// The `tags` array of OpenLLMetry's `{"inputs", "tags", "metadata",
/// "kwargs"}` JSON; the rest of the document is skipped, not built, and tags
/// without escapes are slices of the attribute.
fn traceloop_tags(owner: &Bytes) -> Vec<Text> {
    #[derive(serde::Deserialize)]
    struct Borrowed<'a> {
        #[serde(default, borrow)]
        tags: Vec<&'a str>,
    }
    #[derive(serde::Deserialize)]
    struct Owned {
        #[serde(default)]
        tags: Vec<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Borrowed<'_>>(owner) {
        return e
            .tags
            .into_iter()
            .map(|t| Text::slice_of(owner, t))
            .collect();
    }
    serde_json::from_slice::<Owned>(owner)
        .map(|e| e.tags.into_iter().map(Text::from).collect())
        .unwrap_or_default()
}

/// The conversation: OTel / OpenInference / Langfuse keys, then the
/// LangChain metadata conventions. LangSmith's `langsmith.trace.session_id`
/// is the LangSmith *project* and is deliberately not read.
pub fn session_id(x: &Extracted<'_>, metadata: &[(Text, Text)]) -> Option<Text> {
    x.session_id
        .or(x.conversation_id)
        .and_then(as_nonempty_text)
        .or_else(|| {
            meta_text(
                metadata,
                &[
                    "session_id",
                    "thread_id",
                    "conversation_id",
                    "langfuse_session_id",
                ],
            )
        })
}

pub fn user_id(x: &Extracted<'_>, metadata: &[(Text, Text)]) -> Option<Text> {
    x.user_id
        .and_then(as_nonempty_text)
        .or_else(|| meta_text(metadata, &["user_id", "langfuse_user_id", "user"]))
}

/// What chainpulse reads from OpenInference's `llm.invocation_parameters`
/// JSON: the requested model and whether the call streamed.
#[derive(Default)]
pub struct InvocationParams {
    pub model: Option<Text>,
    pub stream: Option<bool>,
}

/// Parses only the keys that are used; strings without escapes are slices of
/// the attribute. Unparseable parameters read as absent.
pub fn invocation_params(x: &Extracted<'_>) -> InvocationParams {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(default, borrow)]
        model: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        model_name: Option<Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
    }
    let Some(Value::StringValue(owner)) = x.oi_invocation_params.and_then(|v| v.value.as_ref())
    else {
        return InvocationParams::default();
    };
    let Ok(p) = serde_json::from_slice::<Params<'_>>(owner) else {
        return InvocationParams::default();
    };
    let model = p.model.or(p.model_name).and_then(|m| {
        let t = m.trim();
        if t.is_empty() {
            return None;
        }
        Some(match &m {
            Cow::Borrowed(b) => Text::slice_of(owner, b.trim()),
            Cow::Owned(o) => Text::from(o.trim().to_owned()),
        })
    });
    InvocationParams {
        model,
        stream: p.stream,
    }
}

/// Span events that mark a streamed chunk: OpenInference records the first
/// token as one event; OpenLLMetry's OpenAI instrumentation records every
/// chunk (with content tracing on). The first such event is the first token.
const FIRST_TOKEN_EVENTS: [&[u8]; 2] = [
    b"First Token Stream Event",
    b"gen_ai.content.completion.chunk",
];

/// Whether the call streamed, and its time to first token in seconds.
///
/// Sources: `gen_ai.response.time_to_first_chunk` and
/// `gen_ai.client.operation.time_to_first_chunk` (seconds), the AI SDK's
/// `ai.response.msToFirstChunk` (milliseconds), the first streamed-chunk
/// span event (OpenInference, OpenLLMetry), Langfuse's `completion_start_time`,
/// OpenLIT's `gen_ai.server.time_to_first_token` (only for streamed calls:
/// it is the whole duration otherwise).
pub fn streaming(
    x: &Extracted<'_>,
    params_stream: Option<bool>,
    start_unix_nano: u64,
    events: &[Event],
) -> (Option<bool>, Option<f64>) {
    let mut stream = x
        .genai_stream
        .or(x.genai_is_streaming)
        .or(x.langsmith_streaming)
        .and_then(as_bool)
        .or(params_stream);
    let mut ttft = x
        .ttfc
        .or(x.client_ttfc)
        .and_then(as_f64)
        .or_else(|| x.ai_ms_to_first_chunk.and_then(as_f64).map(|ms| ms / 1e3));
    if ttft.is_some() && stream.is_none() {
        stream = Some(true);
    }
    if ttft.is_none() {
        let first = events
            .iter()
            .filter(|e| FIRST_TOKEN_EVENTS.contains(&&e.name[..]))
            .min_by_key(|e| e.time_unix_nano);
        if let Some(e) = first {
            stream = Some(true);
            if e.time_unix_nano >= start_unix_nano {
                ttft = Some((e.time_unix_nano - start_unix_nano) as f64 / 1e9);
            }
        }
    }
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
    (stream, ttft.filter(|t| t.is_finite() && *t >= 0.0))
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
    cached_generation_marker(outputs?).then_some(true)
}

/// `"total_cost": 0` followed by `,` or `}` (with or without the space)
/// anywhere in `out`. One SIMD substring search for the key (memchr's
/// `memmem`, a few GB/s), then a look at the few bytes after each hit:
/// outputs are the largest strings of a span, and a byte-by-byte window
/// comparison per spelling cost ~3 % of ingest.
fn cached_generation_marker(out: &[u8]) -> bool {
    const KEY: &[u8] = b"\"total_cost\":";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    FINDER.find_iter(out).any(|at| {
        let rest = &out[at + KEY.len()..];
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        matches!(rest, [b'0', b',' | b'}', ..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceloop_tags_ignore_the_rest() {
        let json = Bytes::from_static(
            br#"{"inputs": {"tags": ["not-me"]}, "tags": ["seq:step:1", "r\u0061g"], "metadata": {}}"#,
        );
        assert_eq!(traceloop_tags(&json), vec!["seq:step:1", "rag"]);
        let plain = Bytes::from_static(br#"{"tags": ["prod"]}"#);
        let tags = traceloop_tags(&plain);
        assert_eq!(tags, vec!["prod"]);
        assert_eq!(
            tags[0].as_bytes().as_ptr(),
            plain[11..].as_ptr(),
            "borrowed"
        );
        assert!(traceloop_tags(&Bytes::from_static(b"not json")).is_empty());
    }

    #[test]
    fn cached_generation_marker_spellings() {
        for yes in [
            &br#"{"usage": {"total_cost": 0, "x": 1}}"#[..],
            br#"{"total_cost":0,"a":1}"#,
            br#"{"a": {"total_cost": 0}}"#,
            br#"{"a":{"total_cost":0}}"#,
            br#"{"total_cost": 1.5, "b": {"total_cost": 0}}"#,
        ] {
            assert!(
                cached_generation_marker(yes),
                "{}",
                String::from_utf8_lossy(yes)
            );
        }
        for no in [
            &br#"{"total_cost": 0.5}"#[..],
            br#"{"total_cost": 01}"#,
            br#"{"total_cost":  0}"#,
            br#"{"total_cost": 0"#,
            br#"{"total_cost":"#,
            br#"total_cost: 0,"#,
            b"",
        ] {
            assert!(
                !cached_generation_marker(no),
                "{}",
                String::from_utf8_lossy(no)
            );
        }
    }

    #[test]
    fn internal_tags_are_internal() {
        assert!(is_internal_tag("seq:step:3"));
        assert!(is_internal_tag("map:key:context"));
        assert!(!is_internal_tag("production"));
    }
}
