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
            // Keys are matched as bytes: no UTF-8 check for the fixed keys
            // (validation already refused a request with a bad one).
            let Some(v) = kv.value.as_ref() else {
                continue;
            };
            x.take(&kv.key, v);
        }
        x
    }

    fn take(&mut self, key: &'a bytes::Bytes, v: &'a AnyValue) {
        let slot = match &key[..] {
            b"openinference.span.kind" => &mut self.oi_kind,
            b"traceloop.span.kind" => &mut self.traceloop_kind,
            b"traceloop.entity.name" => &mut self.traceloop_entity_name,
            b"traceloop.workflow.name" => &mut self.traceloop_workflow_name,
            b"langsmith.span.kind" => &mut self.langsmith_kind,
            b"langfuse.observation.type" => &mut self.langfuse_type,
            b"gen_ai.operation.name" => &mut self.genai_operation,
            b"llm.request.type" => &mut self.llm_request_type,
            b"gen_ai.agent.name" => &mut self.genai_agent_name,
            b"gen_ai.tool.name" => &mut self.genai_tool_name,
            b"gen_ai.workflow.name" => &mut self.genai_workflow_name,
            b"ai.operationId" => &mut self.ai_operation_id,
            b"ai.telemetry.functionId" => &mut self.ai_function_id,
            b"ai.toolCall.name" => &mut self.ai_tool_name,

            b"gen_ai.request.model" => &mut self.genai_request_model,
            b"gen_ai.response.model" => &mut self.genai_response_model,
            b"llm.model_name" | b"embedding.model_name" => &mut self.oi_model,
            b"llm.request.model_name" => &mut self.oi_request_model,
            b"llm.response.model_name" => &mut self.oi_response_model,
            b"langfuse.observation.model.name" => &mut self.langfuse_model,
            b"gen_ai.provider.name" => &mut self.genai_provider,
            b"gen_ai.system" => &mut self.genai_system,
            b"llm.provider" => &mut self.oi_provider,
            b"llm.system" => &mut self.oi_system,
            b"ai.model.id" => &mut self.ai_model_id,
            b"ai.model.provider" => &mut self.ai_model_provider,
            b"ai.response.model" => &mut self.ai_response_model,

            b"gen_ai.usage.input_tokens" => &mut self.genai_input_tokens,
            b"gen_ai.usage.output_tokens" => &mut self.genai_output_tokens,
            b"gen_ai.usage.prompt_tokens" => &mut self.genai_prompt_tokens,
            b"gen_ai.usage.completion_tokens" => &mut self.genai_completion_tokens,
            b"gen_ai.usage.cache_read.input_tokens" => &mut self.genai_cache_read,
            b"gen_ai.usage.cache_read_input_tokens" => &mut self.genai_cache_read_legacy,
            b"gen_ai.usage.cache_creation.input_tokens" => &mut self.genai_cache_write,
            b"gen_ai.usage.cache_creation_input_tokens"
            | b"gen_ai.usage.cache_write.input_tokens" => &mut self.genai_cache_write_legacy,
            // pydantic-ai writes the provider's own detail keys under
            // `gen_ai.usage.details.*`.
            b"gen_ai.usage.reasoning.output_tokens"
            | b"gen_ai.usage.reasoning_tokens"
            | b"gen_ai.usage.details.reasoning_tokens" => &mut self.genai_reasoning,
            b"gen_ai.usage.input_token_details" => &mut self.langsmith_input_details,
            b"gen_ai.usage.output_token_details" => &mut self.langsmith_output_details,
            b"llm.token_count.prompt" => &mut self.oi_prompt_tokens,
            b"llm.token_count.completion" => &mut self.oi_completion_tokens,
            b"llm.token_count.prompt_details.cache_read" => &mut self.oi_cache_read,
            b"llm.token_count.prompt_details.cache_write" => &mut self.oi_cache_write,
            b"llm.token_count.prompt_details.cache_input" => &mut self.oi_cache_input,
            b"llm.token_count.completion_details.reasoning" => &mut self.oi_reasoning,
            b"langfuse.observation.usage_details" => &mut self.langfuse_usage,
            // AI SDK v5+ names, then v4's.
            // `ai.usage.tokens`: an embedding call's (input) tokens.
            b"ai.usage.inputTokens" | b"ai.usage.promptTokens" | b"ai.usage.tokens" => {
                &mut self.ai_input_tokens
            }
            b"ai.usage.outputTokens" | b"ai.usage.completionTokens" => &mut self.ai_output_tokens,
            b"ai.usage.cachedInputTokens" => &mut self.ai_cached_input_tokens,
            b"ai.usage.reasoningTokens" => &mut self.ai_reasoning_tokens,

            b"error.type" => &mut self.error_type,
            b"gen_ai.task.status" => &mut self.traceloop_task_status,
            b"langfuse.observation.level" => &mut self.langfuse_level,
            b"langfuse.observation.status_message" => &mut self.langfuse_status_message,

            b"tag.tags" => &mut self.oi_tags,
            b"langsmith.span.tags" => &mut self.langsmith_tags,
            b"langfuse.trace.tags" => &mut self.langfuse_tags,
            b"metadata" => &mut self.oi_metadata,
            b"session.id" => &mut self.session_id,
            b"gen_ai.conversation.id" => &mut self.conversation_id,
            b"user.id" | b"enduser.id" => &mut self.user_id,

            b"gen_ai.request.stream" => &mut self.genai_stream,
            b"gen_ai.is_streaming" => &mut self.genai_is_streaming,
            b"langsmith.request.streaming" => &mut self.langsmith_streaming,
            b"gen_ai.response.time_to_first_chunk" => &mut self.ttfc,
            b"gen_ai.client.operation.time_to_first_chunk" => &mut self.client_ttfc,
            b"ai.response.msToFirstChunk" => &mut self.ai_ms_to_first_chunk,
            b"gen_ai.server.time_to_first_token" => &mut self.server_ttft,
            b"langfuse.observation.completion_start_time" => &mut self.langfuse_completion_start,
            b"llm.invocation_parameters" | b"embedding.invocation_parameters" => {
                &mut self.oi_invocation_params
            }
            b"cache_hit" | b"cache.hit" | b"llm.cache_hit" | b"gen_ai.cache.hit" => {
                &mut self.cache_hit
            }

            b"input.value" => &mut self.oi_input,
            b"output.value" => &mut self.oi_output,
            b"traceloop.entity.input" => &mut self.traceloop_input,
            b"traceloop.entity.output" => &mut self.traceloop_output,
            b"gen_ai.input.messages" => &mut self.genai_input_messages,
            b"gen_ai.output.messages" => &mut self.genai_output_messages,
            b"gen_ai.prompt" => &mut self.genai_prompt,
            b"gen_ai.completion" => &mut self.genai_completion,
            b"langfuse.observation.input" => &mut self.langfuse_input,
            b"langfuse.observation.output" => &mut self.langfuse_output,
            b"gen_ai.workflow.input" => &mut self.workflow_input,

            _ => {
                self.take_prefixed(key, v);
                return;
            }
        };
        *slot = Some(v);
        self.note_family(key);
    }

    /// Keys that are not fixed: metadata under a dialect prefix, and family
    /// evidence for dialect detection.
    fn take_prefixed(&mut self, key: &'a bytes::Bytes, v: &'a AnyValue) {
        // `true` marks values that are JSON-encoded (Langfuse v5 encodes
        // every metadata value, strings included).
        for (prefix, json) in [
            (TRACELOOP_ASSOC, false),
            (LANGSMITH_META, false),
            (LANGFUSE_OBS_META, true),
            (LANGFUSE_TRACE_META, true),
        ] {
            if let Some(k) = key.strip_prefix(prefix.as_bytes()) {
                if let Some(k) = crate::otlp::utf8::as_str(k).filter(|k| !k.is_empty()) {
                    self.prefixed_metadata.push((k, key, v, json));
                }
                self.note_family(key);
                return;
            }
        }
        self.note_family(key);
    }

    fn note_family(&mut self, key: &[u8]) {
        if key.starts_with(b"langsmith.") {
            self.has_langsmith = true;
        } else if key.starts_with(b"traceloop.") {
            self.has_traceloop = true;
        } else if key.starts_with(b"langfuse.") {
            self.has_langfuse = true;
        } else if key.starts_with(b"gen_ai.") {
            self.has_genai = true;
        } else if key.starts_with(b"openlit.") {
            self.has_openlit = true;
        } else if key.starts_with(b"ai.") {
            self.has_vercel_ai = true;
        }
    }
}
