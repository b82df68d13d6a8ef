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
    if let Some(t) = x.error_type.and_then(as_nonempty_str) {
        if t != "_OTHER" {
            return sanitize(t);
        }
    }
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
    let described = [
        Some(status_message),
        x.langfuse_status_message.and_then(as_str),
    ];
    for text in described.into_iter().flatten() {
        if let Some(class) = class_prefix(text) {
            return sanitize(class);
        }
    }
    if let Some(t) = x.error_type.and_then(as_nonempty_str) {
        return sanitize(t);
    }
    "unknown".to_owned()
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

/// Label-safe: the last dotted segment, at most 64 characters.
fn sanitize(t: &str) -> String {
    let last = t.rsplit('.').next().unwrap_or(t).trim();
    let last = if last.is_empty() { t.trim() } else { last };
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
    }
}
