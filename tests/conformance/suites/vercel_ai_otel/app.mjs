// chainpulse conformance app: Vercel AI SDK v7 with its current OpenTelemetry integration
// (`registerTelemetry(new OpenTelemetry())` from @ai-sdk/otel: OTel GenAI semantic-convention spans),
// exported with the official OpenTelemetry JS SDK over OTLP/HTTP protobuf.
//
// Environment (set by the harness):
//   OPENAI_BASE_URL                        fakellm, e.g. http://127.0.0.1:PORT/v1
//   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     full traces URL (or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces),
//                                          read by the exporter itself, as in a real app
//   OTEL_SERVICE_NAME                      optional, default "vercel-ai-otel"
//
// The workload is fixed (invocations 1-7 below); the app prints one JSON line per invocation to stdout
// (`{"invocation": ..., "chain": ..., "ok": ..., "error": ...}`) and, LAST, the harness summary
// `{"spans_exported": N, "invocations": [...], "truth": {...}}` (tests/conformance/harness.py contract).
// No manual spans: a real app registers the integration and names each call with telemetry.functionId, so
// each AI SDK call is its own trace whose root is the `invoke_agent {model}` / `embeddings {model}` span.
// Models are created with `openai(id)`, which is the OpenAI Responses API in @ai-sdk/openai v2+.

import { NodeTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { generateText, streamText, embed, tool, stepCountIs, registerTelemetry } from 'ai';
import { OpenTelemetry } from '@ai-sdk/otel';
import { createOpenAI } from '@ai-sdk/openai';
import { z } from 'zod';

// Counts the spans the exporter delivered (so the harness knows how many spans to wait for); the spans
// themselves go out unchanged through the official OTLP/HTTP protobuf exporter.
class CountingExporter {
  constructor(inner) {
    this.inner = inner;
    this.exported = 0;
  }
  export(spans, done) {
    this.inner.export(spans, (result) => {
      if (result.code === 0) this.exported += spans.length;
      done(result);
    });
  }
  shutdown() {
    return this.inner.shutdown();
  }
  forceFlush() {
    return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve();
  }
}
const exporter = new CountingExporter(new OTLPTraceExporter());

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({
    'service.name': process.env.OTEL_SERVICE_NAME || 'vercel-ai-otel',
  }),
  spanProcessors: [new BatchSpanProcessor(exporter)],
});
provider.register();

// The documented v7 set-up: register the GenAI-semconv integration once; every call is traced by default.
registerTelemetry(new OpenTelemetry());

const openai = createOpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: 'sk-dummy-conformance',
});

const LIBRARY = 'ai@7.0.173 + @ai-sdk/otel@1.0.173 OpenTelemetry() + @ai-sdk/openai@4.0.118 (openai() = Responses API); OTel JS sdk-trace-node 2.12.1, exporter-trace-otlp-proto 0.223.1';
// Provider calls each invocation makes (1: tool round trip = 2 calls; 7 is an embedding call).
const PLAN = { 1: 2, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1 };

const telemetry = (functionId) => ({ functionId });

const getWeather = tool({
  description: 'Get the weather for a city',
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => ({ city, forecast: 'sunny', celsius: 21 }),
});

function errorName(err) {
  // The class name as the app sees it (APICallError has name "AI_APICallError").
  return err?.constructor?.name ?? String(err);
}

const invocations = [];

async function report(invocation, chain, fn) {
  const out = { invocation, chain, ok: true, error: null, error_name: null, status_code: null };
  try {
    const extra = await fn();
    Object.assign(out, extra || {});
  } catch (err) {
    out.ok = false;
    out.error = errorName(err);
    out.error_name = err?.name ?? null;
    out.status_code = err?.statusCode ?? null;
    out.message = String(err?.message ?? err).slice(0, 200);
  }
  invocations.push(out);
  console.log(JSON.stringify(out));
}

async function consumeStream(result) {
  // A streamText error does not throw: it arrives in onError and as an error part of the stream.
  let streamError = null;
  let text = '';
  for await (const part of result.fullStream) {
    if (part.type === 'text-delta') text += part.text;
    if (part.type === 'error') streamError = part.error;
  }
  if (streamError) throw streamError;
  return { text, usage: await result.totalUsage };
}

// 1. weather-agent: a tool round trip (2 provider calls, 1 tool execution).
await report(1, 'weather-agent', async () => {
  const r = await generateText({
    model: openai('gpt-4o-mini'),
    tools: { get_weather: getWeather },
    stopWhen: stepCountIs(2),
    maxRetries: 0,
    prompt: 'What is the weather in Paris? [[tool:get_weather:{"city":"Paris"}]] [[usage:in=120,out=30]] [[text:It is sunny in Paris.]]',
    telemetry: telemetry('weather-agent'),
  });
  return { steps: r.steps.length, text: r.text, usage: r.totalUsage };
});

// 2. summarize: cached + reasoning usage on a reasoning model.
await report(2, 'summarize', async () => {
  const r = await generateText({
    model: openai('o4-mini'),
    maxRetries: 0,
    prompt: 'Summarize the plan. [[usage:in=200,cached=64,out=50,reasoning=16]]',
    telemetry: telemetry('summarize'),
  });
  return { text: r.text, usage: r.totalUsage };
});

// 3. chat-stream: streamed, TTFT measurable.
await report(3, 'chat-stream', async () => {
  const r = streamText({
    model: openai('gpt-4o-mini'),
    maxRetries: 0,
    prompt: 'Tell me a short story. [[delay:80]] [[chunkdelay:10]] [[usage:in=80,out=25]] [[text:Once upon a time there was a fox.]]',
    telemetry: telemetry('chat-stream'),
    onError: () => {},
  });
  return consumeStream(r);
});

// 4. chat-stream: streamed, with cached input.
await report(4, 'chat-stream', async () => {
  const r = streamText({
    model: openai('gpt-4o-mini'),
    maxRetries: 0,
    prompt: 'Continue the story. [[delay:40]] [[usage:in=150,cached=100,out=20]]',
    telemetry: telemetry('chat-stream'),
    onError: () => {},
  });
  return consumeStream(r);
});

// 5. summarize: rate limited (429), no retry.
await report(5, 'summarize', async () => {
  await generateText({
    model: openai('gpt-4o-mini'),
    maxRetries: 0,
    prompt: 'Summarize this. [[fail:429]]',
    telemetry: telemetry('summarize'),
  });
});

// 6. chat-stream: server error (500) on a streamed call, no retry.
await report(6, 'chat-stream', async () => {
  const r = streamText({
    model: openai('gpt-4o-mini'),
    maxRetries: 0,
    prompt: 'Tell me another story. [[fail:500]]',
    telemetry: telemetry('chat-stream'),
    onError: () => {},
  });
  return consumeStream(r);
});

// 7. embed-docs: one embedding call.
await report(7, 'embed-docs', async () => {
  const r = await embed({
    model: openai.embedding('text-embedding-3-small'),
    maxRetries: 0,
    value: 'sunny day at the beach [[usage:in=12]]',
    telemetry: telemetry('embed-docs'),
  });
  return { dims: r.embedding.length, usage: r.usage };
});

await provider.forceFlush();
await provider.shutdown();

// Ground truth of what the app did (the provider calls' usage is added from fakellm's records by the test and by
// the harness capture mode).
const truth = {
  library: LIBRARY,
  requests: {},
  error_classes: invocations.filter((i) => !i.ok).map((i) => i.error),
  invocations: invocations.map(({ invocation, chain, ok, error, status_code }) => ({ invocation, chain, ok, error, status_code })),
  provider_calls_per_invocation: PLAN,
  tool_runs: { get_weather: 1 },
  ttft_expected_on: 'the 2 successful streamed calls (invocations 3 and 4); the failed stream (6) has no first chunk',
};
for (const i of invocations) {
  const r = (truth.requests[i.chain] ??= { total: 0, failed: 0 });
  r.total += 1;
  if (!i.ok) r.failed += 1;
}
console.log(JSON.stringify({ spans_exported: exporter.exported, invocations, truth }));
