//! Status and error type.
//!
//! The error type is an exception *class* (`RuntimeError`), because it is a
//! metric label: tracebacks and messages would explode cardinality. Sources,
//! best first: `error.type`; the `exception` event's `exception.type`
//! (LangSmith always writes `Exception` there and puts the real class as the
//! message's repr prefix, `ValueError('…')`); the status description's repr
//! prefix (OpenInference writes `RuntimeError('…')Traceback …`).

use super::extract::Extracted;
use super::run::RunStatus;
use super::text::Text;
use super::value::{as_nonempty_str, as_str};
use crate::otlp_view::Event;

const STATUS_CODE_ERROR: i32 = 2;

/// LangGraph raises these to steer control flow; OpenInference and Langfuse
/// treat them as success, and so does chainpulse.
const CONTROL_FLOW: [&str; 4] = [
    "GraphInterrupt",
    "Command",
    "ParentCommand",
    "GraphBubbleUp",
];

pub fn resolve(
    x: &Extracted<'_>,
    status_code: i32,
    status_message: &str,
    events: &[Event],
) -> (RunStatus, Option<Text>) {
    let failed = status_code == STATUS_CODE_ERROR
        || x.traceloop_task_status.and_then(as_str) == Some("failure")
        || x.langfuse_level.and_then(as_str) == Some("ERROR");
    if !failed {
        return (RunStatus::Ok, None);
    }
    let ty = error_type(x, status_message, events);
    if CONTROL_FLOW.contains(&ty.as_str()) {
        return (RunStatus::Ok, None);
    }
    (RunStatus::Error, Some(Text::from(ty)))
}

fn error_type(x: &Extracted<'_>, status_message: &str, events: &[Event]) -> String {
    // The recorded exception first: its type is the class by definition,
    // while `error.type` may be a provider's error code (`rate_limit_error`).
    for event in events.iter().filter(|e| &e.name[..] == b"exception") {
        let mut ty = None;
        let mut msg = None;
        for kv in &event.attributes {
            match &kv.key[..] {
                b"exception.type" => ty = kv.value.as_ref().and_then(as_nonempty_str),
                b"exception.message" => msg = kv.value.as_ref().and_then(as_str),
                _ => {}
            }
        }
        match ty {
            // LangSmith: `Exception` wrapping the real error's repr.
            Some("Exception") => {
                if let Some(class) = msg.and_then(class_prefix) {
                    return sanitize(class);
                }
                return "Exception".to_owned();
            }
            Some(t) => return sanitize(t),
            None => {}
        }
    }
    if let Some(t) = x.error_type.and_then(as_nonempty_str) {
        if t != "_OTHER" {
            return sanitize(t);
        }
    }
    let described = [
        Some(status_message),
        x.langfuse_status_message.and_then(as_str),
    ];
    for text in described.into_iter().flatten() {
        if let Some(class) = class_prefix(text).or_else(|| sdk_status_class(text)) {
            return sanitize(class);
        }
    }
    "unknown".to_owned()
}

/// The OpenAI and Anthropic Python SDKs (and the other SDKs generated the
/// same way: Groq, Together, …) describe an HTTP error as
/// `Error code: 429 - {…}`, and map each status to one fixed class. When
/// only that description reached the span (Langfuse, the OpenAI Agents SDK),
/// the class is read back from the status.
fn sdk_status_class(text: &str) -> Option<&'static str> {
    // Wrappers quote it: `Error getting response: {'error': 'Error code: 429 …`.
    const PHRASE: &str = "Error code: ";
    let rest = &text[text.find(PHRASE)? + PHRASE.len()..];
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if !rest[3..].is_empty() && !rest[3..].starts_with(' ') {
        return None;
    }
    Some(match code {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        409 => "ConflictError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        500..=599 => "InternalServerError",
        _ => return None,
    })
}

/// `RuntimeError('boom')…` or `openai.RateLimitError: …` → the class name.
fn class_prefix(text: &str) -> Option<&str> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let (ident, rest) = text.split_at(end);
    let starts_ok = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_ok || !(rest.starts_with('(') || rest.starts_with(':')) {
        return None;
    }
    Some(ident)
}

/// A bare class name, whatever form it arrives in: `RateLimitError`,
/// `openai.RateLimitError`, Python's `<class 'openai.RateLimitError'>`,
/// Go's `*url.Error`, Java's `java.net.SocketTimeoutException`. What is not a
/// name after that (a message, a traceback) is `unknown`: a label must never
/// carry garbage. At most 64 characters.
fn sanitize(t: &str) -> String {
    let mut t = t.trim();
    if let Some(inner) = t
        .strip_prefix("<class ")
        .and_then(|r| r.strip_suffix('>'))
        .map(|r| r.trim_matches(|c| c == '\'' || c == '"'))
    {
        t = inner;
    }
    let last = t
        .rsplit(['.', ':', '/'])
        .find(|s| !s.is_empty())
        .unwrap_or("");
    let last = last.trim_start_matches('*');
    // The AI SDK names every error `AI_` + its class (`AI_APICallError`).
    let last = match last.strip_prefix("AI_") {
        Some(class) if class.starts_with(|c: char| c.is_ascii_uppercase()) => class,
        _ => last,
    };
    let is_name = !last.is_empty()
        && last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-'));
    if !is_name {
        return "unknown".to_owned();
    }
    last.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_from_repr_prefix() {
        assert_eq!(
            class_prefix("RuntimeError('vector store timeout')Traceback"),
            Some("RuntimeError")
        );
        assert_eq!(
            class_prefix("openai.RateLimitError: slow down"),
            Some("openai.RateLimitError")
        );
        assert_eq!(class_prefix("vector store timeout"), None);
        assert_eq!(class_prefix("(weird)"), None);
        assert_eq!(class_prefix("3Error('x')"), None);
    }

    #[test]
    fn sanitize_keeps_last_segment() {
        assert_eq!(sanitize("openai.RateLimitError"), "RateLimitError");
        assert_eq!(sanitize(&"E".repeat(100)).len(), 64);
        assert_eq!(
            sanitize("<class 'openai.RateLimitError'>"),
            "RateLimitError"
        );
        assert_eq!(sanitize("<class \"KeyError\">"), "KeyError");
        assert_eq!(sanitize("*url.Error"), "Error");
        assert_eq!(
            sanitize("java.net.SocketTimeoutException"),
            "SocketTimeoutException"
        );
        assert_eq!(sanitize("AI_APICallError"), "APICallError");
        assert_eq!(
            sdk_status_class("Error code: 429 - {'error': {}}"),
            Some("RateLimitError")
        );
        assert_eq!(
            sdk_status_class("Error code: 503"),
            Some("InternalServerError")
        );
        assert_eq!(sdk_status_class("Error code: 4299"), None);
        assert_eq!(sdk_status_class("timeout"), None);
        assert_eq!(
            sdk_status_class("Error getting response: {'error': 'Error code: 500 - x'}"),
            Some("InternalServerError")
        );
        assert_eq!(sanitize("500"), "500");
        assert_eq!(sanitize("rate limited, retry later"), "unknown");
        assert_eq!(sanitize("RateLimitError'>"), "unknown");
        assert_eq!(sanitize(""), "unknown");
    }
}
