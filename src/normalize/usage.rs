//! Model, provider and token usage.
//!
//! Traps handled here (see span-dialects.md §7):
//! * OpenLLMetry sends `gen_ai.request.model = "unknown"` on streamed calls;
//!   the model is then in LangChain's `ls_model_name` metadata.
//! * `"langchain"` as a provider is a default meaning "unknown".
//! * Langfuse's `usage_details.input` has cache tokens subtracted; every other
//!   dialect includes them. `Tokens::input` always includes them.
//! * LangSmith's token details are a Python `str(dict)`, not JSON.

use super::extract::Extracted;
use super::run::Tokens;
use super::text::Text;
use super::value::{as_count, as_nonempty_text, as_str};

/// Model names that mean "not known".
fn is_placeholder_model(m: &str) -> bool {
    m.eq_ignore_ascii_case("unknown") || m.eq_ignore_ascii_case("none") || m == "_OTHER"
}

/// The model the application asked for, falling back to what answered.
pub fn model(x: &Extracted<'_>, meta_model: Option<Text>) -> Option<Text> {
    [
        x.genai_request_model,
        x.oi_request_model,
        x.oi_model,
        x.langfuse_model,
    ]
    .into_iter()
    .flatten()
    .filter_map(as_nonempty_text)
    .chain(meta_model)
    .chain(
        [x.genai_response_model, x.oi_response_model]
            .into_iter()
            .flatten()
            .filter_map(as_nonempty_text),
    )
    .find(|m| !is_placeholder_model(m))
}

/// The provider, normalized to the GenAI `gen_ai.provider.name` vocabulary
/// where a legacy spelling is known.
pub fn provider(x: &Extracted<'_>, meta_provider: Option<Text>) -> Option<Text> {
    [x.oi_provider, x.genai_provider, x.genai_system, x.oi_system]
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
    let mapped = match key {
        "az.ai.openai" | "azure" | "azure_openai" | "azureopenai" => "azure.ai.openai",
        "az.ai.inference" => "azure.ai.inference",
        "vertex_ai" | "vertexai" => "gcp.vertex_ai",
        "gemini" | "google_genai" => "gcp.gemini",
        "xai" => "x_ai",
        "mistralai" | "mistral" => "mistral_ai",
        "aws" | "bedrock" | "amazon_bedrock" => "aws.bedrock",
        "huggingface" => "hugging_face",
        _ if is_lower => return p,
        _ => return Text::from(key),
    };
    Text::from_static(mapped)
}

/// Token usage. Returns zero counts when the span reports none.
pub fn tokens(x: &Extracted<'_>) -> Tokens {
    let count = |v: Option<&crate::otlp_view::AnyValue>| v.and_then(as_count);

    if let Some(t) = x.langfuse_usage.and_then(as_str).and_then(langfuse_usage) {
        // Only when no OTel usage keys are present: a span instrumented twice
        // (Langfuse plus GenAI) must not be counted twice.
        if x.genai_input_tokens.is_none() && x.oi_prompt_tokens.is_none() {
            return t;
        }
    }

    let mut t = Tokens {
        input: count(x.genai_input_tokens)
            .or(count(x.oi_prompt_tokens))
            .or(count(x.genai_prompt_tokens))
            .unwrap_or(0),
        output: count(x.genai_output_tokens)
            .or(count(x.oi_completion_tokens))
            .or(count(x.genai_completion_tokens))
            .unwrap_or(0),
        cache_read: count(x.genai_cache_read)
            .or(count(x.oi_cache_read))
            .or(count(x.genai_cache_read_legacy))
            .unwrap_or(0),
        cache_write: count(x.genai_cache_write)
            .or(count(x.oi_cache_write))
            .or(count(x.genai_cache_write_legacy))
            .unwrap_or(0),
        reasoning: count(x.genai_reasoning)
            .or(count(x.oi_reasoning))
            .unwrap_or(0),
    };
    if let Some(d) = x.langsmith_input_details.and_then(as_str) {
        t.cache_read = t
            .cache_read
            .max(py_dict_count(d, "cache_read").unwrap_or(0));
        t.cache_write = t
            .cache_write
            .max(py_dict_count(d, "cache_creation").unwrap_or(0));
    }
    if let Some(d) = x.langsmith_output_details.and_then(as_str) {
        t.reasoning = t.reasoning.max(py_dict_count(d, "reasoning").unwrap_or(0));
    }
    t
}

/// Langfuse `usage_details` JSON: `{"input", "output", "input_cache_read",
/// "input_cache_creation", "output_reasoning", ...}` with detail tokens
/// subtracted from `input`.
fn langfuse_usage(json: &str) -> Option<Tokens> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object()?;
    let get = |k: &str| obj.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let cache_read = get("input_cache_read") + get("cache_read_input_tokens");
    let cache_write = get("input_cache_creation") + get("cache_creation_input_tokens");
    Some(Tokens {
        input: get("input") + cache_read + cache_write,
        output: get("output"),
        cache_read,
        cache_write,
        reasoning: get("output_reasoning") + get("reasoning"),
    })
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
    fn canonical_providers() {
        assert_eq!(canonical_provider("Azure".into()), "azure.ai.openai");
        assert_eq!(canonical_provider("vertex_ai".into()), "gcp.vertex_ai");
        assert_eq!(canonical_provider("openai".into()), "openai");
        assert_eq!(canonical_provider("OpenAI".into()), "openai");
    }
}
