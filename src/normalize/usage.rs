//! Model, provider and token usage.
//!
//! The rules, the same for every instrumentation (README "Rules"):
//! * **The model is the one the application requested.** Request-model keys
//!   first (`gen_ai.request.model`, OpenInference's `llm.invocation_parameters`
//!   `model`, LangChain's `ls_model_name`, the AI SDK's `ai.model.id`). Keys
//!   that some instrumentations fill with the *response* model
//!   (OpenInference's `llm.model_name`, Langfuse's `model.name`) and the
//!   response-model keys come last, with a snapshot date dropped
//!   (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`): the server answers a request
//!   for `gpt-4o-mini` with its dated snapshot, and one model must not become
//!   two series depending on whether the call streamed. The dated name is
//!   kept apart ([`ModelChoice::dated`]) so the call is priced as what ran.
//! * **Input tokens include cached tokens; output tokens include reasoning
//!   tokens** (OpenAI's convention, and the GenAI semantic conventions').
//!   Counts in another convention are converted: Anthropic-style raw input
//!   (which excludes cache reads and writes) as OpenLIT reports it for
//!   Anthropic, Gemini-style output (which excludes thinking tokens) as
//!   OpenLIT reports it for Gemini, Langfuse's subtracted `usage_details`.
//!   A count smaller than its own detail (input < cache read + write, output
//!   < reasoning) cannot include it, whatever the source claims.
//! * **Usage absent is not zero usage**: [`Usage::reported`] says whether the
//!   span carried any count at all.
//!
//! Traps handled here (see span-dialects.md §7):
//! * OpenLLMetry sends `gen_ai.request.model = "unknown"` on streamed calls;
//!   the model is then in LangChain's `ls_model_name` metadata.
//! * `"langchain"` as a provider is a default meaning "unknown".
//! * LangSmith's token details are a Python `str(dict)`, not JSON.

use super::extract::Extracted;
use super::run::{Dialect, Tokens};
use super::text::Text;
use super::value::{as_count, as_nonempty_text, as_str};

/// Model names that mean "not known".
fn is_placeholder_model(m: &str) -> bool {
    m.eq_ignore_ascii_case("unknown") || m.eq_ignore_ascii_case("none") || m == "_OTHER"
}

/// The model label and the name to price it by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelChoice {
    /// The model the application asked for (the metric label).
    pub label: Option<Text>,
    /// The dated name the label was derived from, when the only name on
    /// the span was (or may have been) the answering snapshot: the call is
    /// priced as that snapshot, which is what actually ran.
    pub dated: Option<Text>,
}

/// The model the application asked for (see the module docs for the order).
pub fn model(
    x: &Extracted<'_>,
    params_model: Option<Text>,
    meta_model: Option<Text>,
) -> ModelChoice {
    let named = |v: Option<&crate::otlp_view::AnyValue>| v.and_then(as_nonempty_text);
    let requested = named(x.genai_request_model)
        .into_iter()
        .chain(named(x.oi_request_model))
        .chain(meta_model)
        .chain(named(x.ai_model_id))
        .find(|m| !is_placeholder_model(m));
    if requested.is_some() {
        return ModelChoice {
            label: requested,
            dated: None,
        };
    }
    // Keys some instrumentations fill with the response: OpenInference's
    // invocation parameters (its OpenAI Agents processor stores the
    // *response* object there) and `llm.model_name`, Langfuse's model name,
    // then the response-model keys.
    let Some(answered) = params_model
        .into_iter()
        .chain(
            [
                x.oi_model,
                x.langfuse_model,
                x.genai_response_model,
                x.oi_response_model,
                x.ai_response_model,
            ]
            .into_iter()
            .flatten()
            .filter_map(as_nonempty_text),
        )
        .find(|m| !is_placeholder_model(m))
    else {
        return ModelChoice::default();
    };
    let label = undated(answered.clone());
    let dated = (label.len() != answered.len()).then_some(answered);
    ModelChoice {
        label: Some(label),
        dated,
    }
}

/// The model that answered, when a key says so.
pub fn response_model(x: &Extracted<'_>) -> Option<Text> {
    [
        x.genai_response_model,
        x.oi_response_model,
        x.ai_response_model,
        x.oi_model,
        x.langfuse_model,
    ]
    .into_iter()
    .flatten()
    .filter_map(as_nonempty_text)
    .find(|m| !is_placeholder_model(m))
}

/// A model name without its snapshot date: `-YYYY-MM-DD` (OpenAI),
/// `-YYYYMMDD` (Anthropic) or `@YYYYMMDD` (Vertex). Anything else is kept.
pub fn undated(m: Text) -> Text {
    let s = m.as_str();
    let b = s.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    let plausible = |y: &[u8], mo: &[u8], d: &[u8]| {
        let n = |r: &[u8]| r.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
        y.starts_with(b"20") && (1..=12).contains(&n(mo)) && (1..=31).contains(&n(d))
    };
    let cut = if b.len() > 11
        && b[b.len() - 11] == b'-'
        && b[b.len() - 6] == b'-'
        && b[b.len() - 3] == b'-'
    {
        let (y, mo, d) = (
            &b[b.len() - 10..b.len() - 6],
            &b[b.len() - 5..b.len() - 3],
            &b[b.len() - 2..],
        );
        (digits(y) && digits(mo) && digits(d) && plausible(y, mo, d)).then_some(b.len() - 11)
    } else if b.len() > 9 && matches!(b[b.len() - 9], b'-' | b'@') {
        let r = &b[b.len() - 8..];
        (digits(r) && plausible(&r[..4], &r[4..6], &r[6..])).then_some(b.len() - 9)
    } else {
        None
    };
    match cut {
        Some(end) => Text::slice_of(m.as_bytes(), &s[..end]),
        None => m,
    }
}

/// The provider, normalized to the GenAI `gen_ai.provider.name` vocabulary
/// where a legacy spelling is known.
pub fn provider(x: &Extracted<'_>, meta_provider: Option<Text>) -> Option<Text> {
    [
        x.oi_provider,
        x.genai_provider,
        x.genai_system,
        x.oi_system,
        x.ai_model_provider,
    ]
    .into_iter()
    .flatten()
    .filter_map(as_nonempty_text)
    .chain(meta_provider)
    .find(|p| !p.eq_ignore_ascii_case("langchain") && !p.eq_ignore_ascii_case("langgraph"))
    .map(canonical_provider)
}

fn canonical_provider(p: Text) -> Text {
    let is_lower = !p.bytes().any(|b| b.is_ascii_uppercase());
    let lower;
    let key = if is_lower {
        p.as_str()
    } else {
        lower = p.to_ascii_lowercase();
        lower.as_str()
    };
    // The AI SDK names a provider and its API: `openai.chat`,
    // `openai.responses`, `anthropic.messages`, `google.generative-ai`.
    let key = match key.split_once('.') {
        Some((head, _)) if !matches!(head, "azure" | "az" | "gcp" | "aws" | "ibm") => head,
        _ => key,
    };
    let mapped = match key {
        "az.ai.openai" | "azure" | "azure_openai" | "azureopenai" => "azure.ai.openai",
        "az.ai.inference" => "azure.ai.inference",
        "vertex_ai" | "vertexai" | "google-vertex" | "vertex" => "gcp.vertex_ai",
        "gemini" | "google_genai" | "google" => "gcp.gemini",
        "xai" => "x_ai",
        "mistralai" | "mistral" => "mistral_ai",
        "aws" | "bedrock" | "amazon_bedrock" | "amazon-bedrock" => "aws.bedrock",
        "huggingface" => "hugging_face",
        _ if is_lower && key.len() == p.len() => return p,
        _ if key.len() == p.len() => return Text::from(key),
        _ => return Text::from(key.to_owned()),
    };
    Text::from_static(mapped)
}

/// The provider of an instrumented SDK, from the library part of an
/// instrumentation scope's name (`anthropic`, `openai_v2`, `mistralai`, …).
/// Frameworks (LangChain, LlamaIndex, …) are not providers: `None`.
pub fn provider_of_sdk(library: &str) -> Option<&'static str> {
    let lib = library.strip_suffix("_v2").unwrap_or(library);
    Some(match lib {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "mistralai" | "mistral" => "mistral_ai",
        "groq" => "groq",
        "cohere" => "cohere",
        "google_genai" | "google_generativeai" | "gemini" => "gcp.gemini",
        "vertexai" | "vertex_ai" => "gcp.vertex_ai",
        "bedrock" | "botocore" => "aws.bedrock",
        "ollama" => "ollama",
        "together" => "together",
        "deepseek" => "deepseek",
        "xai" => "x_ai",
        _ => return None,
    })
}

/// Token usage, and whether the span reported any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub tokens: Tokens,
    pub reported: bool,
}

/// How an instrumentation counts, where it differs from the normalized
/// convention (input includes cache, output includes reasoning).
struct Convention {
    input_excludes_cache: bool,
    output_excludes_reasoning: bool,
}

fn convention(dialect: Dialect, provider: Option<&str>) -> Convention {
    match (dialect, provider) {
        // OpenLIT copies the provider's raw counts: Anthropic's
        // `input_tokens` leaves out cache reads and writes, Gemini's
        // `candidates_token_count` leaves out thinking tokens.
        (Dialect::OpenLit, Some("anthropic" | "aws.bedrock")) => Convention {
            input_excludes_cache: true,
            output_excludes_reasoning: false,
        },
        (Dialect::OpenLit, Some("gcp.gemini" | "gcp.vertex_ai" | "gcp.gen_ai")) => Convention {
            input_excludes_cache: false,
            output_excludes_reasoning: true,
        },
        _ => Convention {
            input_excludes_cache: false,
            output_excludes_reasoning: false,
        },
    }
}

/// Token usage in the normalized convention.
pub fn tokens(
    x: &Extracted<'_>,
    dialect: Dialect,
    provider: Option<&str>,
    serialized_output: Option<&[u8]>,
) -> Usage {
    let count = |v: Option<&crate::otlp_view::AnyValue>| v.and_then(as_count);

    if let Some(t) = x.langfuse_usage.and_then(as_str).and_then(langfuse_usage) {
        // Only when no OTel usage keys are present: a span instrumented twice
        // (Langfuse plus GenAI) must not be counted twice.
        if x.genai_input_tokens.is_none() && x.oi_prompt_tokens.is_none() {
            return Usage {
                tokens: t,
                reported: true,
            };
        }
    }

    let input = count(x.genai_input_tokens)
        .or(count(x.oi_prompt_tokens))
        .or(count(x.genai_prompt_tokens))
        .or(count(x.ai_input_tokens));
    let output = count(x.genai_output_tokens)
        .or(count(x.oi_completion_tokens))
        .or(count(x.genai_completion_tokens))
        .or(count(x.ai_output_tokens));
    let cache_read = count(x.genai_cache_read)
        .or(count(x.oi_cache_read))
        .or(count(x.genai_cache_read_legacy))
        .or(count(x.ai_cached_input_tokens));
    let cache_write = count(x.genai_cache_write)
        .or(count(x.oi_cache_write))
        .or(count(x.genai_cache_write_legacy));
    let reasoning = count(x.genai_reasoning)
        .or(count(x.oi_reasoning))
        .or(count(x.ai_reasoning_tokens));
    let reported = input.is_some() || output.is_some();
    let mut t = Tokens {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        cache_read: cache_read.unwrap_or(0),
        cache_write: cache_write.unwrap_or(0),
        reasoning: reasoning.unwrap_or(0),
    };
    if let Some(d) = x.langsmith_input_details.and_then(as_str) {
        t.cache_read = t
            .cache_read
            .max(py_dict_count(d, "cache_read").unwrap_or(0));
        // langchain-anthropic splits writes by lifetime and may leave
        // `cache_creation` at 0: both lifetimes are cache writes.
        let split = py_dict_count(d, "ephemeral_5m_input_tokens").unwrap_or(0)
            + py_dict_count(d, "ephemeral_1h_input_tokens").unwrap_or(0);
        t.cache_write = t
            .cache_write
            .max(py_dict_count(d, "cache_creation").unwrap_or(0))
            .max(split);
    }
    if let Some(d) = x.langsmith_output_details.and_then(as_str) {
        t.reasoning = t.reasoning.max(py_dict_count(d, "reasoning").unwrap_or(0));
    }
    if reported && t.cache_write == 0 && matches!(provider, Some("anthropic" | "aws.bedrock")) {
        // Cache writes by lifetime were counted in `input` but reported
        // nowhere in the attributes: without them they would be priced as
        // plain input.
        if let Some(w) = serialized_output.and_then(split_cache_writes) {
            t.cache_write = w;
        }
    }
    let c = convention(dialect, provider);
    let cached = t.cache_read + t.cache_write;
    if c.input_excludes_cache || t.input < cached {
        t.input += cached;
    }
    if c.output_excludes_reasoning || t.output < t.reasoning {
        t.output += t.reasoning;
    }
    Usage {
        tokens: t,
        reported,
    }
}

/// Langfuse's `usage_details` JSON, in either of the shapes its SDK writes:
/// * the provider's raw usage, passed through by its OpenAI integration
///   (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details
///   .cached_tokens`, `completion_tokens_details.reasoning_tokens`, or the
///   Responses API's `input_tokens` / `output_tokens` / `*_tokens_details`):
///   already in the normalized convention;
/// * Langfuse's own keys (`input`, `output`, `input_cache_read`,
///   `output_reasoning`, …), where every `input_*` / `output_*` detail has
///   been *subtracted* from `input` / `output` (its LangChain handler does
///   this): the details are added back. Priority-tier keys are not details
///   (Langfuse does not subtract them) and are skipped.
fn langfuse_usage(json: &str) -> Option<Tokens> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object()?;
    let get = |k: &str| obj.get(k).and_then(Value::as_u64);
    let detail = |outer: &str, inner: &str| {
        obj.get(outer)
            .and_then(|d| d.get(inner))
            .and_then(Value::as_u64)
    };
    if let Some(input) = get("prompt_tokens").or(get("input_tokens")) {
        return Some(Tokens {
            input,
            output: get("completion_tokens")
                .or(get("output_tokens"))
                .unwrap_or(0),
            cache_read: detail("prompt_tokens_details", "cached_tokens")
                .or(detail("input_tokens_details", "cached_tokens"))
                .or(get("cache_read_input_tokens"))
                .unwrap_or(0),
            cache_write: get("cache_creation_input_tokens").unwrap_or(0),
            reasoning: detail("completion_tokens_details", "reasoning_tokens")
                .or(detail("output_tokens_details", "reasoning_tokens"))
                .unwrap_or(0),
        });
    }
    if get("input").is_none() && get("output").is_none() {
        return None;
    }
    let mut input = get("input").unwrap_or(0);
    let mut output = get("output").unwrap_or(0);
    for (k, v) in obj {
        let Some(n) = v.as_u64() else { continue };
        let is_priority = |d: &str| d == "priority" || d.starts_with("priority_");
        if let Some(d) = k.strip_prefix("input_") {
            if !is_priority(d) {
                input += n;
            }
        } else if let Some(d) = k.strip_prefix("output_") {
            if !is_priority(d) {
                output += n;
            }
        }
    }
    let cache_read = get("input_cache_read").unwrap_or(0);
    // langchain-anthropic splits writes by lifetime, with `cache_creation`
    // then 0; Langfuse subtracted both the split and the (zero) total.
    let split = get("input_ephemeral_5m_input_tokens").unwrap_or(0)
        + get("input_ephemeral_1h_input_tokens").unwrap_or(0);
    let creation = get("input_cache_creation").unwrap_or(0);
    // Langfuse floors each subtraction at 0, so adding the details back can
    // overshoot; the total (input + output as the provider counted them),
    // when present, settles the input.
    if let Some(total) = get("total") {
        if total >= output {
            input = total - output;
        }
    }
    Some(Tokens {
        input,
        output,
        cache_read,
        cache_write: creation.max(split),
        reasoning: get("output_reasoning").unwrap_or(0),
    })
}

/// Anthropic's cache writes by lifetime, read from an LLM run's serialized
/// output (`usage_metadata.input_token_details`, or the raw usage's
/// `cache_creation`) when the span's attributes carry none: OpenInference's
/// LangChain tracer reads only `cache_creation`, which langchain-anthropic
/// leaves at 0 when it splits writes into 5-minute and 1-hour counts.
/// Only the first occurrence of each key is read (the same usage appears in
/// both places). Found by a SIMD substring search (memchr's `memmem`): the
/// output is usually the largest string of the span.
pub fn split_cache_writes(output: &[u8]) -> Option<u64> {
    let read = |key: &[u8]| -> Option<u64> {
        let at = memchr::memmem::find(output, key)? + key.len();
        let rest = &output[at..];
        let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
        let rest = rest.strip_prefix(b":")?;
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let digits = &rest[start..];
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    };
    let five = read(b"\"ephemeral_5m_input_tokens\"");
    let hour = read(b"\"ephemeral_1h_input_tokens\"");
    (five.is_some() || hour.is_some()).then(|| five.unwrap_or(0) + hour.unwrap_or(0))
}

/// Reads `'key': 123` out of a Python `str(dict)` such as
/// `{'audio': 0, 'cache_read': 10}`. Also accepts JSON double quotes.
fn py_dict_count(text: &str, key: &str) -> Option<u64> {
    for quote in ['\'', '"'] {
        let needle = format!("{quote}{key}{quote}");
        if let Some(pos) = text.find(&needle) {
            let rest = text[pos + needle.len()..].trim_start();
            let rest = rest.strip_prefix(':')?.trim_start();
            let digits: &str = &rest[..rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len())];
            return digits.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python_dict_reprs() {
        let d = "{'audio': 0, 'cache_read': 120, 'cache_creation': 7}";
        assert_eq!(py_dict_count(d, "cache_read"), Some(120));
        assert_eq!(py_dict_count(d, "cache_creation"), Some(7));
        assert_eq!(py_dict_count(d, "reasoning"), None);
        assert_eq!(py_dict_count("{\"reasoning\": 64}", "reasoning"), Some(64));
    }

    #[test]
    fn langfuse_raw_openai_usage_is_read_as_is() {
        let t = langfuse_usage(
            r#"{"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
                "prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 8}}"#,
        )
        .expect("valid usage");
        assert_eq!(
            t,
            Tokens {
                input: 120,
                output: 40,
                cache_read: 32,
                cache_write: 0,
                reasoning: 8
            }
        );
    }

    #[test]
    fn langfuse_subtracted_reasoning_and_split_writes_are_added_back() {
        // LangChain handler over langchain-anthropic: input 1000 (incl. 200
        // read, 300 + 100 written), output 50 (incl. 10 reasoning).
        let t = langfuse_usage(
            r#"{"input": 400, "output": 40, "total": 1050, "input_cache_read": 200,
                "input_cache_creation": 0, "input_ephemeral_5m_input_tokens": 300,
                "input_ephemeral_1h_input_tokens": 100, "output_reasoning": 10}"#,
        )
        .expect("valid usage");
        assert_eq!(
            t,
            Tokens {
                input: 1000,
                output: 50,
                cache_read: 200,
                cache_write: 400,
                reasoning: 10
            }
        );
    }

    #[test]
    fn split_cache_writes_from_serialized_output() {
        let out = br#"{"usage_metadata": {"input_token_details": {"cache_read": 5,
            "cache_creation": 0, "ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens" : 100}},
            "llm_output": {"usage": {"cache_creation": {"ephemeral_5m_input_tokens": 300}}}}"#;
        assert_eq!(split_cache_writes(out), Some(400));
        assert_eq!(split_cache_writes(br#"{"cache_read": 5}"#), None);
    }

    #[test]
    fn langfuse_input_gets_cache_tokens_back() {
        let t = langfuse_usage(
            r#"{"input": 100, "output": 20, "input_cache_read": 50, "input_cache_creation": 10, "total": 180}"#,
        )
        .expect("valid usage");
        assert_eq!(
            t,
            Tokens {
                input: 160,
                output: 20,
                cache_read: 50,
                cache_write: 10,
                reasoning: 0
            }
        );
    }

    #[test]
    fn snapshot_dates_are_dropped_from_labels() {
        let u = |m: &'static str| undated(Text::from_static(m)).as_str().to_owned();
        assert_eq!(u("gpt-4o-mini-2024-07-18"), "gpt-4o-mini");
        assert_eq!(u("claude-3-5-sonnet-20241022"), "claude-3-5-sonnet");
        assert_eq!(u("claude-3-5-sonnet@20241022"), "claude-3-5-sonnet");
        // Not dates: kept whole.
        assert_eq!(u("gpt-4-0613"), "gpt-4-0613");
        assert_eq!(u("o4-mini"), "o4-mini");
        assert_eq!(u("model-2024-13-01"), "model-2024-13-01");
        assert_eq!(u("-2024-07-18"), "-2024-07-18");
        assert_eq!(u("x-12345678"), "x-12345678");
        assert_eq!(
            u("gemini-2.5-pro-preview-06-05"),
            "gemini-2.5-pro-preview-06-05"
        );
    }

    #[test]
    fn canonical_providers() {
        assert_eq!(canonical_provider("openai.chat".into()), "openai");
        assert_eq!(canonical_provider("openai.responses".into()), "openai");
        assert_eq!(canonical_provider("anthropic.messages".into()), "anthropic");
        assert_eq!(
            canonical_provider("azure.ai.openai".into()),
            "azure.ai.openai"
        );
        assert_eq!(canonical_provider("gcp.vertex_ai".into()), "gcp.vertex_ai");
        assert_eq!(canonical_provider("aws.bedrock".into()), "aws.bedrock");
        assert_eq!(canonical_provider("Azure".into()), "azure.ai.openai");
        assert_eq!(canonical_provider("vertex_ai".into()), "gcp.vertex_ai");
        assert_eq!(canonical_provider("openai".into()), "openai");
        assert_eq!(canonical_provider("OpenAI".into()), "openai");
    }
}
