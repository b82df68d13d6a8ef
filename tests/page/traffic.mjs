// Demo-shaped traffic through the official OpenTelemetry JS SDK (the
// BasicTracerProvider and the OTLP/HTTP protobuf exporter), OpenInference
// dialect: the demo's service and chains (`demo-rag-app`: rag_query,
// summarize), root → retriever → LLM, some failures, one unpriced model.
// Seeded, so each run sends the same requests; each call to `send` returns
// what it sent per chain, which the test compares with the KPI API.
import { context, trace, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';

export const SERVICE = 'demo-rag-app';

// mulberry32: a small seeded generator (same seed, same traffic).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Traffic {
  constructor(httpAddr, seed = 42) {
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': SERVICE }),
      spanProcessors: [
        new BatchSpanProcessor(new OTLPTraceExporter({ url: `http://${httpAddr}/v1/traces` }), {
          scheduledDelayMillis: 200,
          maxExportBatchSize: 512,
        }),
      ],
    });
    this.tracer = this.provider.getTracer('chainpulse-page-test');
    this.random = rng(seed);
  }

  // One request of `chain`: root (CHAIN) → retriever → LLM; `fail` makes the
  // LLM call (and so the request) fail with a RateLimitError.
  request(chain, { model = 'gpt-4o-mini', fail = false, latency = 0.5 } = {}) {
    const r = this.random;
    const t0 = Date.now() - 5000;
    const at = (s) => new Date(t0 + s * 1000);
    const user = 'user-' + Math.floor(r() * 50);
    const root = this.tracer.startSpan(chain, {
      startTime: at(0),
      attributes: {
        'openinference.span.kind': 'CHAIN',
        'input.value': '{"question": "What is LCEL?"}',
        'user.id': user,
        'session.id': user + '-s' + Math.floor(r() * 3),
      },
    });
    const cx = trace.setSpan(context.active(), root);
    const retr = 0.02 + r() * 0.08;
    this.tracer
      .startSpan('VectorStoreRetriever', { startTime: at(0), attributes: { 'openinference.span.kind': 'RETRIEVER' } }, cx)
      .end(at(retr));
    const end = retr + latency;
    const llm = this.tracer.startSpan('ChatOpenAI', {
      startTime: at(retr),
      attributes: {
        'openinference.span.kind': 'LLM',
        'llm.model_name': model,
        'llm.provider': 'openai',
        'llm.token_count.prompt': 200 + Math.floor(r() * 1000),
        'llm.token_count.completion': 20 + Math.floor(r() * 280),
      },
    }, cx);
    if (fail) {
      for (const s of [llm, root]) {
        s.setStatus({ code: SpanStatusCode.ERROR, message: "RateLimitError('rate limit reached for requests')" });
        s.setAttribute('error.type', 'RateLimitError');
      }
      llm.addEvent('exception', { 'exception.type': 'RateLimitError', 'exception.message': 'rate limit reached' }, at(end));
    }
    llm.end(at(end));
    root.end(at(end + 0.001));
  }

  // `n` requests spread over the demo's chains (80 % rag_query), ~3 % failed,
  // ~5 % on an unpriced fine-tune; returns {chain: count}.
  send(n) {
    const sent = {};
    for (let i = 0; i < n; i++) {
      const r = this.random;
      const chain = r() < 0.8 ? 'rag_query' : 'summarize';
      const model = r() < 0.05 ? 'northwind-ft-v2' : r() < 0.2 ? 'gpt-4o' : 'gpt-4o-mini';
      // Log-normal-ish latency around 0.6 s with a tail.
      const latency = 0.6 * Math.exp(0.55 * (r() + r() + r() - 1.5) * 2);
      this.request(chain, { model, fail: r() < 0.03, latency });
      sent[chain] = (sent[chain] || 0) + 1;
    }
    return sent;
  }

  async flush() {
    await this.provider.forceFlush();
  }

  async shutdown() {
    await this.provider.shutdown();
  }
}
