//! One pass over a span's attributes, keeping a reference to every key any
//! dialect uses.
//!
//! Resolution (which key wins when several dialects' keys are present) lives
//! in the sibling modules; this file only knows where things are. A single
//! `match` over the key keeps the per-span cost to one string comparison per
//! attribute, instead of one lookup per (concept × dialect).

use crate::otlp_view::{AnyValue, KeyValue};

/// Metadata-like prefixes: `<prefix><key>` carries application metadata.
pub const LANGSMITH_META: &str = "langsmith.metadata.";
pub const TRACELOOP_ASSOC: &str = "traceloop.association.properties.";
pub const LANGFUSE_OBS_META: &str = "langfuse.observation.metadata.";
pub const LANGFUSE_TRACE_META: &str = "langfuse.trace.metadata.";

/// References into one span's attributes, by meaning.
#[derive(Default)]
pub struct Extracted<'a> {
    // Kind and name.
    pub oi_kind: Option<&'a AnyValue>,
    pub traceloop_kind: Option<&'a AnyValue>,
    pub traceloop_entity_name: Option<&'a AnyValue>,
    pub traceloop_workflow_name: Option<&'a AnyValue>,
    pub langsmith_kind: Option<&'a AnyValue>,
    pub langfuse_type: Option<&'a AnyValue>,
    pub genai_operation: Option<&'a AnyValue>,
    pub llm_request_type: Option<&'a AnyValue>,
    pub genai_agent_name: Option<&'a AnyValue>,
    pub genai_tool_name: Option<&'a AnyValue>,
    pub genai_workflow_name: Option<&'a AnyValue>,
    /// Vercel AI SDK: `ai.generateText`, `ai.generateText.doGenerate`, …
    pub ai_operation_id: Option<&'a AnyValue>,
    pub ai_function_id: Option<&'a AnyValue>,
    pub ai_tool_name: Option<&'a AnyValue>,

    // Model and provider.
    pub genai_request_model: Option<&'a AnyValue>,
    pub genai_response_model: Option<&'a AnyValue>,
    pub oi_model: Option<&'a AnyValue>,
    pub oi_request_model: Option<&'a AnyValue>,
    pub oi_response_model: Option<&'a AnyValue>,
    pub langfuse_model: Option<&'a AnyValue>,
    pub genai_provider: Option<&'a AnyValue>,
    pub genai_system: Option<&'a AnyValue>,
    pub oi_provider: Option<&'a AnyValue>,
    pub oi_system: Option<&'a AnyValue>,
    pub ai_model_id: Option<&'a AnyValue>,
    pub ai_model_provider: Option<&'a AnyValue>,
    pub ai_response_model: Option<&'a AnyValue>,

    // Tokens.
    pub genai_input_tokens: Option<&'a AnyValue>,
    pub genai_output_tokens: Option<&'a AnyValue>,
    pub genai_prompt_tokens: Option<&'a AnyValue>,
    pub genai_completion_tokens: Option<&'a AnyValue>,
    pub genai_cache_read: Option<&'a AnyValue>,
    pub genai_cache_read_legacy: Option<&'a AnyValue>,
    pub genai_cache_write: Option<&'a AnyValue>,
    pub genai_cache_write_legacy: Option<&'a AnyValue>,
    pub genai_reasoning: Option<&'a AnyValue>,
    pub langsmith_input_details: Option<&'a AnyValue>,
    pub langsmith_output_details: Option<&'a AnyValue>,
    pub oi_prompt_tokens: Option<&'a AnyValue>,
    pub oi_completion_tokens: Option<&'a AnyValue>,
    pub oi_cache_read: Option<&'a AnyValue>,
    pub oi_cache_write: Option<&'a AnyValue>,
    pub oi_cache_input: Option<&'a AnyValue>,
    pub oi_reasoning: Option<&'a AnyValue>,
    pub langfuse_usage: Option<&'a AnyValue>,
    pub ai_input_tokens: Option<&'a AnyValue>,
    pub ai_output_tokens: Option<&'a AnyValue>,
    pub ai_cached_input_tokens: Option<&'a AnyValue>,
    pub ai_reasoning_tokens: Option<&'a AnyValue>,

    // Status and errors.
    pub error_type: Option<&'a AnyValue>,
    pub traceloop_task_status: Option<&'a AnyValue>,
    pub langfuse_level: Option<&'a AnyValue>,
    pub langfuse_status_message: Option<&'a AnyValue>,

    // Tags, metadata, session, user.
    pub oi_tags: Option<&'a AnyValue>,
    pub langsmith_tags: Option<&'a AnyValue>,
    pub langfuse_tags: Option<&'a AnyValue>,
    pub oi_metadata: Option<&'a AnyValue>,
    /// (key without prefix, the attribute's key bytes it points into,
    /// value, JSON-encoded).
    pub prefixed_metadata: Vec<(&'a str, &'a bytes::Bytes, &'a AnyValue, bool)>,
    pub session_id: Option<&'a AnyValue>,
    pub conversation_id: Option<&'a AnyValue>,
    pub user_id: Option<&'a AnyValue>,

    // Streaming.
    pub genai_stream: Option<&'a AnyValue>,
    pub genai_is_streaming: Option<&'a AnyValue>,
    pub langsmith_streaming: Option<&'a AnyValue>,
    pub ttfc: Option<&'a AnyValue>,
    /// `gen_ai.client.operation.time_to_first_chunk` (seconds), written by
    /// instrumentations that put the GenAI metric's value on the span.
    pub client_ttfc: Option<&'a AnyValue>,
    /// `ai.response.msToFirstChunk` (milliseconds, Vercel AI SDK).
    pub ai_ms_to_first_chunk: Option<&'a AnyValue>,
    pub server_ttft: Option<&'a AnyValue>,
    pub langfuse_completion_start: Option<&'a AnyValue>,
    pub oi_invocation_params: Option<&'a AnyValue>,
    pub cache_hit: Option<&'a AnyValue>,

    // Inputs / outputs, in preference order per family.
    pub oi_input: Option<&'a AnyValue>,
    pub oi_output: Option<&'a AnyValue>,
    pub traceloop_input: Option<&'a AnyValue>,
    pub traceloop_output: Option<&'a AnyValue>,
    pub genai_input_messages: Option<&'a AnyValue>,
    pub genai_output_messages: Option<&'a AnyValue>,
    pub genai_prompt: Option<&'a AnyValue>,
    pub genai_completion: Option<&'a AnyValue>,
    pub langfuse_input: Option<&'a AnyValue>,
    pub langfuse_output: Option<&'a AnyValue>,
    pub workflow_input: Option<&'a AnyValue>,

    // Dialect evidence.
    pub has_langsmith: bool,
    pub has_traceloop: bool,
    pub has_langfuse: bool,
    pub has_genai: bool,
    pub has_openlit: bool,
    pub has_vercel_ai: bool,
}

impl<'a> Extracted<'a> {
    pub fn from_attributes(attrs: &'a [KeyValue]) -> Self {
        let mut x = Extracted::default();
        for kv in attrs {
            let (Ok(key), Some(v)) = (simdutf8::basic::from_utf8(&kv.key), kv.value.as_ref())
            else {
                continue;
            };
            x.take(key, &kv.key, v);
        }
        x
    }

    fn take(&mut self, key: &'a str, key_bytes: &'a bytes::Bytes, v: &'a AnyValue) {
        let slot = match key {
            "openinference.span.kind" => &mut self.oi_kind,
            "traceloop.span.kind" => &mut self.traceloop_kind,
            "traceloop.entity.name" => &mut self.traceloop_entity_name,
            "traceloop.workflow.name" => &mut self.traceloop_workflow_name,
            "langsmith.span.kind" => &mut self.langsmith_kind,
            "langfuse.observation.type" => &mut self.langfuse_type,
            "gen_ai.operation.name" => &mut self.genai_operation,
            "llm.request.type" => &mut self.llm_request_type,
            "gen_ai.agent.name" => &mut self.genai_agent_name,
            "gen_ai.tool.name" => &mut self.genai_tool_name,
            "gen_ai.workflow.name" => &mut self.genai_workflow_name,
            "ai.operationId" => &mut self.ai_operation_id,
            "ai.telemetry.functionId" => &mut self.ai_function_id,
            "ai.toolCall.name" => &mut self.ai_tool_name,

            "gen_ai.request.model" => &mut self.genai_request_model,
            "gen_ai.response.model" => &mut self.genai_response_model,
            "llm.model_name" | "embedding.model_name" => &mut self.oi_model,
            "llm.request.model_name" => &mut self.oi_request_model,
            "llm.response.model_name" => &mut self.oi_response_model,
            "langfuse.observation.model.name" => &mut self.langfuse_model,
            "gen_ai.provider.name" => &mut self.genai_provider,
            "gen_ai.system" => &mut self.genai_system,
            "llm.provider" => &mut self.oi_provider,
            "llm.system" => &mut self.oi_system,
            "ai.model.id" => &mut self.ai_model_id,
            "ai.model.provider" => &mut self.ai_model_provider,
            "ai.response.model" => &mut self.ai_response_model,

            "gen_ai.usage.input_tokens" => &mut self.genai_input_tokens,
            "gen_ai.usage.output_tokens" => &mut self.genai_output_tokens,
            "gen_ai.usage.prompt_tokens" => &mut self.genai_prompt_tokens,
            "gen_ai.usage.completion_tokens" => &mut self.genai_completion_tokens,
            "gen_ai.usage.cache_read.input_tokens" => &mut self.genai_cache_read,
            "gen_ai.usage.cache_read_input_tokens" => &mut self.genai_cache_read_legacy,
            "gen_ai.usage.cache_creation.input_tokens" => &mut self.genai_cache_write,
            "gen_ai.usage.cache_creation_input_tokens"
            | "gen_ai.usage.cache_write.input_tokens" => &mut self.genai_cache_write_legacy,
            // pydantic-ai writes the provider's own detail keys under
            // `gen_ai.usage.details.*`.
            "gen_ai.usage.reasoning.output_tokens"
            | "gen_ai.usage.reasoning_tokens"
            | "gen_ai.usage.details.reasoning_tokens" => &mut self.genai_reasoning,
            "gen_ai.usage.input_token_details" => &mut self.langsmith_input_details,
            "gen_ai.usage.output_token_details" => &mut self.langsmith_output_details,
            "llm.token_count.prompt" => &mut self.oi_prompt_tokens,
            "llm.token_count.completion" => &mut self.oi_completion_tokens,
            "llm.token_count.prompt_details.cache_read" => &mut self.oi_cache_read,
            "llm.token_count.prompt_details.cache_write" => &mut self.oi_cache_write,
            "llm.token_count.prompt_details.cache_input" => &mut self.oi_cache_input,
            "llm.token_count.completion_details.reasoning" => &mut self.oi_reasoning,
            "langfuse.observation.usage_details" => &mut self.langfuse_usage,
            // AI SDK v5+ names, then v4's.
            // `ai.usage.tokens`: an embedding call's (input) tokens.
            "ai.usage.inputTokens" | "ai.usage.promptTokens" | "ai.usage.tokens" => {
                &mut self.ai_input_tokens
            }
            "ai.usage.outputTokens" | "ai.usage.completionTokens" => &mut self.ai_output_tokens,
            "ai.usage.cachedInputTokens" => &mut self.ai_cached_input_tokens,
            "ai.usage.reasoningTokens" => &mut self.ai_reasoning_tokens,

            "error.type" => &mut self.error_type,
            "gen_ai.task.status" => &mut self.traceloop_task_status,
            "langfuse.observation.level" => &mut self.langfuse_level,
            "langfuse.observation.status_message" => &mut self.langfuse_status_message,

            "tag.tags" => &mut self.oi_tags,
            "langsmith.span.tags" => &mut self.langsmith_tags,
            "langfuse.trace.tags" => &mut self.langfuse_tags,
            "metadata" => &mut self.oi_metadata,
            "session.id" => &mut self.session_id,
            "gen_ai.conversation.id" => &mut self.conversation_id,
            "user.id" | "enduser.id" => &mut self.user_id,

            "gen_ai.request.stream" => &mut self.genai_stream,
            "gen_ai.is_streaming" => &mut self.genai_is_streaming,
            "langsmith.request.streaming" => &mut self.langsmith_streaming,
            "gen_ai.response.time_to_first_chunk" => &mut self.ttfc,
            "gen_ai.client.operation.time_to_first_chunk" => &mut self.client_ttfc,
            "ai.response.msToFirstChunk" => &mut self.ai_ms_to_first_chunk,
            "gen_ai.server.time_to_first_token" => &mut self.server_ttft,
            "langfuse.observation.completion_start_time" => &mut self.langfuse_completion_start,
            "llm.invocation_parameters" | "embedding.invocation_parameters" => {
                &mut self.oi_invocation_params
            }
            "cache_hit" | "cache.hit" | "llm.cache_hit" | "gen_ai.cache.hit" => &mut self.cache_hit,

            "input.value" => &mut self.oi_input,
            "output.value" => &mut self.oi_output,
            "traceloop.entity.input" => &mut self.traceloop_input,
            "traceloop.entity.output" => &mut self.traceloop_output,
            "gen_ai.input.messages" => &mut self.genai_input_messages,
            "gen_ai.output.messages" => &mut self.genai_output_messages,
            "gen_ai.prompt" => &mut self.genai_prompt,
            "gen_ai.completion" => &mut self.genai_completion,
            "langfuse.observation.input" => &mut self.langfuse_input,
            "langfuse.observation.output" => &mut self.langfuse_output,
            "gen_ai.workflow.input" => &mut self.workflow_input,

            _ => {
                self.take_prefixed(key, key_bytes, v);
                return;
            }
        };
        *slot = Some(v);
        self.note_family(key);
    }

    /// Keys that are not fixed: metadata under a dialect prefix, and family
    /// evidence for dialect detection.
    fn take_prefixed(&mut self, key: &'a str, key_bytes: &'a bytes::Bytes, v: &'a AnyValue) {
        // `true` marks values that are JSON-encoded (Langfuse v5 encodes
        // every metadata value, strings included).
        for (prefix, json) in [
            (TRACELOOP_ASSOC, false),
            (LANGSMITH_META, false),
            (LANGFUSE_OBS_META, true),
            (LANGFUSE_TRACE_META, true),
        ] {
            if let Some(k) = key.strip_prefix(prefix) {
                if !k.is_empty() {
                    self.prefixed_metadata.push((k, key_bytes, v, json));
                }
                self.note_family(key);
                return;
            }
        }
        self.note_family(key);
    }

    fn note_family(&mut self, key: &str) {
        if key.starts_with("langsmith.") {
            self.has_langsmith = true;
        } else if key.starts_with("traceloop.") {
            self.has_traceloop = true;
        } else if key.starts_with("langfuse.") {
            self.has_langfuse = true;
        } else if key.starts_with("gen_ai.") {
            self.has_genai = true;
        } else if key.starts_with("openlit.") {
            self.has_openlit = true;
        } else if key.starts_with("ai.") {
            self.has_vercel_ai = true;
        }
    }
}
