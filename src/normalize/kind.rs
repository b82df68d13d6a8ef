//! Run kind and run name, across dialects.
//!
//! Precedence: the framework's own kind (OpenInference, LangSmith, Langfuse,
//! Traceloop) over `gen_ai.operation.name`, because the framework kinds are
//! LangChain's run types while the GenAI operation is sometimes a guess
//! (OpenLLMetry calls every LCEL root `invoke_agent`; LangSmith calls
//! retrievers `embeddings`). A generic "chain" is then refined by LangChain's
//! class-naming conventions (`…OutputParser`, `…PromptTemplate`, `…Retriever`)
//! so the same step gets the same kind whichever instrumentation sent it.

use super::extract::Extracted;
use super::run::{Dialect, RunKind};
use super::text::Text;
use super::value::{as_nonempty_text, as_str};
use bytes::Bytes;

pub fn resolve(x: &Extracted<'_>, span_name: &Bytes, dialect: Dialect) -> (RunKind, Text) {
    let name = run_name(x, span_name, dialect);
    let kind = framework_kind(x)
        .or_else(|| genai_kind(x))
        .unwrap_or(RunKind::Other);
    let kind = if kind == RunKind::Chain {
        refine_chain(&name)
    } else {
        kind
    };
    (kind, name)
}

/// Set-up, not invocation: the GenAI operation `create_agent` is the
/// building of an agent (OpenLLMetry emits it, in a trace of its own, when a
/// LangGraph graph is compiled). The app's request is `invoke_agent`.
pub fn is_setup(x: &Extracted<'_>) -> bool {
    x.genai_operation.and_then(as_str) == Some("create_agent")
}

/// Kind corrections that need more than one attribute:
/// * a set-up span is not an agent (or anything else) at work: `other`;
/// * a LangGraph node (metadata `langgraph_node` equal to the run's name) is
///   a step of its graph, even when an instrumentation guessed "agent" from
///   the node's name (OpenInference calls any run named `*agent*` an AGENT,
///   so `create_react_agent`'s model node `agent` became one);
/// * a root whose kind nobody said (a plain tracer span, OpenLIT's
///   `@trace`, Langfuse's `@observe`) is the app's chain: a request is an
///   invocation of the app's chain or agent.
pub fn refine(
    kind: RunKind,
    name: &str,
    metadata: &[(Text, Text)],
    setup: bool,
    root: bool,
) -> RunKind {
    if setup {
        return RunKind::Other;
    }
    if kind == RunKind::Agent
        && super::metadata::meta_value(metadata, "langgraph_node") == Some(name)
    {
        return RunKind::Chain;
    }
    if root && kind == RunKind::Other {
        return RunKind::Chain;
    }
    kind
}

/// A GenAI inference span's name, `{gen_ai.operation.name} {model}` as the
/// semantic conventions define it: the kind and the model, for spans whose
/// attributes are missing.
pub fn from_genai_span_name(name: &Bytes) -> Option<(RunKind, Option<Text>)> {
    let s = crate::otlp::utf8::as_str(name)?;
    let (op, model) = s.split_once(' ')?;
    let kind = match op {
        "chat" | "text_completion" | "generate_content" => RunKind::Llm,
        "embeddings" => RunKind::Embedding,
        _ => return None,
    };
    let model = model.trim();
    let valid = !model.is_empty() && !model.contains(char::is_whitespace);
    Some((kind, valid.then(|| Text::slice_of(name, model))))
}

fn framework_kind(x: &Extracted<'_>) -> Option<RunKind> {
    if let Some(k) = x.oi_kind.and_then(as_str) {
        return Some(match k.to_ascii_uppercase().as_str() {
            "CHAIN" => RunKind::Chain,
            "LLM" => RunKind::Llm,
            "RETRIEVER" => RunKind::Retriever,
            "TOOL" => RunKind::Tool,
            "EMBEDDING" => RunKind::Embedding,
            "AGENT" => RunKind::Agent,
            "PROMPT" => RunKind::Prompt,
            "RERANKER" => RunKind::Reranker,
            "GUARDRAIL" => RunKind::Guardrail,
            _ => RunKind::Other,
        });
    }
    if let Some(k) = x.langsmith_kind.and_then(as_str) {
        return Some(match k {
            "chain" => RunKind::Chain,
            "llm" => RunKind::Llm,
            "retriever" => RunKind::Retriever,
            "tool" => RunKind::Tool,
            "embedding" => RunKind::Embedding,
            "prompt" => RunKind::Prompt,
            "parser" => RunKind::Parser,
            _ => RunKind::Other,
        });
    }
    if let Some(k) = x.langfuse_type.and_then(as_str) {
        return Some(match k {
            "span" | "chain" => RunKind::Chain,
            "generation" => RunKind::Llm,
            "embedding" => RunKind::Embedding,
            "agent" => RunKind::Agent,
            "tool" => RunKind::Tool,
            "retriever" => RunKind::Retriever,
            "guardrail" => RunKind::Guardrail,
            _ => RunKind::Other,
        });
    }
    if let Some(op) = x.ai_operation_id.and_then(as_str) {
        return Some(vercel_kind(op));
    }
    if let Some(k) = x.traceloop_kind.and_then(as_str) {
        // Traceloop's retriever spans are "task"s with a `vector_db_retrieve`
        // operation; let the operation decide those.
        let op = x.genai_operation.and_then(as_str);
        return Some(match (k, op) {
            (_, Some("vector_db_retrieve" | "retrieval")) => RunKind::Retriever,
            ("workflow" | "task", _) => RunKind::Chain,
            ("agent", _) => RunKind::Agent,
            ("tool", _) => RunKind::Tool,
            _ => RunKind::Other,
        });
    }
    None
}

/// The AI SDK's `ai.operationId`: the top-level call (`ai.generateText`,
/// `ai.streamObject`, `ai.embedMany`, …) wraps one provider call per step
/// (`….doGenerate`, `….doStream`, `….doEmbed`) and the tool calls between
/// them. Only the provider calls are LLM / embedding runs: the wrapper's
/// `ai.usage.*` is the sum of its steps, and counting it would count every
/// token twice.
fn vercel_kind(op: &str) -> RunKind {
    if op.ends_with(".doEmbed") {
        RunKind::Embedding
    } else if op.ends_with(".doGenerate") || op.ends_with(".doStream") {
        RunKind::Llm
    } else if op == "ai.toolCall" {
        RunKind::Tool
    } else {
        RunKind::Chain
    }
}

fn genai_kind(x: &Extracted<'_>) -> Option<RunKind> {
    let op = x.genai_operation.or(x.llm_request_type).and_then(as_str)?;
    Some(match op {
        "chat" | "generate_content" | "text_completion" | "completion" => RunKind::Llm,
        "embeddings" | "embedding" => RunKind::Embedding,
        "retrieval" | "vector_db_retrieve" => RunKind::Retriever,
        "execute_tool" => RunKind::Tool,
        "invoke_agent" | "create_agent" => RunKind::Agent,
        "invoke_workflow" | "execute_task" | "chain" => RunKind::Chain,
        "rerank" => RunKind::Reranker,
        "parser" => RunKind::Parser,
        _ => RunKind::Other,
    })
}

/// LangChain class-name conventions for chain runs that are really prompt,
/// parser or retriever steps.
fn refine_chain(name: &str) -> RunKind {
    if name.ends_with("OutputParser") || name.ends_with("Parser") {
        RunKind::Parser
    } else if name.ends_with("PromptTemplate") {
        RunKind::Prompt
    } else if name.ends_with("Retriever") {
        RunKind::Retriever
    } else {
        RunKind::Chain
    }
}

/// The name the application gave the run.
fn run_name(x: &Extracted<'_>, span_name_bytes: &Bytes, dialect: Dialect) -> Text {
    // OpenLLMetry: `rag_query.workflow`, `execute_task retrieve_docs`,
    // `ScriptedChat.chat`; the entity name is the real run name.
    if let Some(n) = x.traceloop_entity_name.and_then(as_nonempty_text) {
        return n;
    }
    let span_name = crate::otlp::utf8::as_str(span_name_bytes).unwrap_or_default();
    if let Some(op) = x.ai_operation_id.and_then(as_nonempty_text) {
        // The AI SDK: the app names a top-level call with `functionId`; a tool
        // call by its tool; the provider-call steps by their operation.
        let named = match vercel_kind(&op) {
            RunKind::Chain => x.ai_function_id,
            RunKind::Tool => x.ai_tool_name,
            _ => None,
        };
        return named.and_then(as_nonempty_text).unwrap_or(op);
    }
    match dialect {
        Dialect::OpenLlmetry | Dialect::GenAi | Dialect::OpenLit => {
            let op = x.genai_operation.and_then(as_str).unwrap_or("");
            let named = match op {
                "invoke_agent" | "create_agent" => x.genai_agent_name,
                "execute_tool" => x.genai_tool_name,
                "invoke_workflow" => x.genai_workflow_name,
                _ => None,
            };
            if let Some(n) = named.and_then(as_nonempty_text) {
                return n;
            }
            Text::slice_of(span_name_bytes, strip_operation(span_name, op))
        }
        _ => Text::slice_of(span_name_bytes, span_name),
    }
}

/// `ScriptedChat.chat` → `ScriptedChat`; `execute_tool search` → `search`;
/// `rag.workflow` → `rag`. Names that follow no pattern are kept whole.
fn strip_operation<'s>(name: &'s str, op: &str) -> &'s str {
    for suffix in [
        ".chat",
        ".completion",
        ".workflow",
        ".task",
        ".agent",
        ".tool",
    ] {
        if let Some(base) = name.strip_suffix(suffix) {
            if !base.is_empty() {
                return base;
            }
        }
    }
    for prefix in [
        "execute_task ",
        "execute_tool ",
        "invoke_agent ",
        "invoke_workflow ",
        "vector_db_retrieve ",
        "retrieval ",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !rest.is_empty() {
                return rest;
            }
        }
    }
    // GenAI inference spans are named `{operation} {model}`; the model is a
    // label of its own, so the step is the operation.
    if !op.is_empty() && name.starts_with(op) && name[op.len()..].starts_with(' ') {
        return &name[..op.len()];
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_openllmetry_and_genai_names() {
        assert_eq!(strip_operation("ScriptedChat.chat", "chat"), "ScriptedChat");
        assert_eq!(strip_operation("rag_query.workflow", ""), "rag_query");
        assert_eq!(
            strip_operation("execute_tool search", "execute_tool"),
            "search"
        );
        assert_eq!(strip_operation("chat gpt-4o", "chat"), "chat");
        assert_eq!(strip_operation(".chat", "chat"), ".chat");
        assert_eq!(strip_operation("plain", ""), "plain");
    }

    #[test]
    fn refines_langchain_class_names() {
        assert_eq!(refine_chain("StrOutputParser"), RunKind::Parser);
        assert_eq!(refine_chain("ChatPromptTemplate"), RunKind::Prompt);
        assert_eq!(refine_chain("VectorStoreRetriever"), RunKind::Retriever);
        assert_eq!(refine_chain("RunnableSequence"), RunKind::Chain);
    }
}
