"""Conformance app `llamaindex`: LlamaIndex's OpenAI LLM (complete / chat / stream_chat) and a tiny query engine
over an in-memory VectorStoreIndex (OpenAIEmbedding against fakellm's /v1/embeddings), traced by
openinference-instrumentation-llama-index, exporting OTLP/HTTP through the OTel SDK.

Variant `--double` (or CONFORMANCE_VARIANT=double): openinference-instrumentation-openai is switched on as well
(a framework instrumentor plus the provider SDK's: double instrumentation). The workload and therefore the ground
truth are the same.

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-llamaindex[-double])

The index is built (documents embedded: one /v1/embeddings call) BEFORE the instrumentation is switched on, so
set-up produces no spans; every invocation below is one request (one root span). LlamaIndex's OpenAI client is
created with max_retries=0; the streaming calls ask for usage (stream_options.include_usage) through
additional_kwargs, which LlamaIndex drops on non-streaming calls.

Prints one JSON line: {"suite":..., "variant":..., "invocations":[{"name","kind","ok","error","stream","model",
"provider_calls"}...]}.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.llms import ChatMessage
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

SUITE = "llamaindex"
# The root span LlamaIndex's instrumentation names each kind of invocation (= the chain label).
ROOT_NAMES = {"complete": "OpenAI.complete", "chat": "OpenAI.chat", "stream_chat": "OpenAI.stream_chat",
              "query": "RetrieverQueryEngine.query"}
DOUBLE = "--double" in sys.argv or os.environ.get("CONFORMANCE_VARIANT") == "double"

DOCS = [
    "Paris is the capital of France. It is often sunny in Paris in July.",
    "Oslo is the capital of Norway. Winters in Oslo are cold and clear.",
    "Lima is the capital of Peru. Lima is mild and foggy for much of the year.",
]

def setup_tracing():
    provider, exporter = appkit.setup_tracing("conformance-llamaindex" + ("-double" if DOUBLE else ""))
    LlamaIndexInstrumentor().instrument(tracer_provider=provider)
    if DOUBLE:
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider, exporter


def main() -> int:
    base = os.environ["OPENAI_BASE_URL"]
    key = "sk-conformance-dummy"
    include_usage = {"stream_options": {"include_usage": True}}
    llms = {m: OpenAI(model=m, api_base=base, api_key=key, max_retries=0, additional_kwargs=include_usage)
            for m in ("gpt-4o-mini", "o4-mini")}
    Settings.llm = llms["gpt-4o-mini"]
    Settings.embed_model = OpenAIEmbedding(model="text-embedding-3-small", api_base=base, api_key=key,
                                           max_retries=0)
    # Set-up, not traced: one embeddings call for the three documents.
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])
    query_engine = index.as_query_engine(similarity_top_k=2)

    provider, exporter = setup_tracing()

    def complete(prompt: str, model: str):
        return llms[model].complete(prompt).text

    def chat(prompt: str, model: str):
        return llms[model].chat([ChatMessage(role="system", content="You are terse."),
                                 ChatMessage(role="user", content=prompt)]).message.content

    def stream_chat(prompt: str, model: str):
        text = ""
        for chunk in llms[model].stream_chat([ChatMessage(role="user", content=prompt)]):
            text += chunk.delta or ""
        return text

    def query(prompt: str, model: str):
        return str(query_engine.query(prompt))

    # (function, prompt, model, stream, provider calls: endpoint list); each prompt's markers script fakellm.
    workload = [
        # 1. complete, not streamed: 1 chat call
        (complete, "Say hello. [[usage:in=120,out=30]] [[text:Hello.]]", "gpt-4o-mini", False,
         ["chat.completions"]),
        # 2. chat on a reasoning model, cached + reasoning tokens: 1 chat call
        (chat, "Think about the weather. [[usage:in=400,cached=128,out=90,reasoning=64]] [[text:Complex.]]",
         "o4-mini", False, ["chat.completions"]),
        # 3. stream_chat (include_usage), cached tokens, TTFT measurable: 1 streamed chat call
        (stream_chat, "Describe Oslo. [[usage:in=150,cached=50,out=25]] [[delay:40]] [[chunkdelay:20]] "
         "[[text:Oslo is cold and clear today.]]", "gpt-4o-mini", True, ["chat.completions"]),
        # 4. rate limited: 1 failed chat call (HTTP 429 -> openai.RateLimitError)
        (complete, "Say hello again. [[fail:429]]", "gpt-4o-mini", False, ["chat.completions"]),
        # 5. query engine: 1 embeddings call (the query), 1 retrieval, 1 chat call (synthesis)
        (query, "What is the weather like in Paris? [[usage:in=300,out=40]] [[text:Sunny in July.]]",
         "gpt-4o-mini", False, ["embeddings", "chat.completions"]),
        # 6. stream_chat on a reasoning model, server error: 1 failed streamed chat call (HTTP 500)
        (stream_chat, "Describe Lima. [[fail:500]]", "o4-mini", True, ["chat.completions"]),
        # 7. stream_chat on a reasoning model, cached + reasoning tokens
        (stream_chat, "Summarize climate. [[usage:in=300,cached=100,out=60,reasoning=24]] [[delay:40]] "
         "[[chunkdelay:20]] [[text:Climate is long-term weather.]]", "o4-mini", True, ["chat.completions"]),
    ]

    invocations = []
    for fn, prompt, model, stream, calls in workload:
        rec = {"name": fn.__name__, "stream": stream, "model": model, "ok": True, "error": None,
               "provider_calls": calls}
        try:
            rec["output"] = fn(prompt, model)
        except Exception as exc:  # noqa: BLE001 - the failure is part of the workload
            rec["ok"] = False
            rec["error"] = type(exc).__name__
        invocations.append(rec)

    provider.force_flush()
    provider.shutdown()
    chains: dict = {}
    for i in invocations:
        r = chains.setdefault(ROOT_NAMES[i["name"]], {"total": 0, "failed": 0})
        r["total"] += 1
        r["failed"] += 0 if i["ok"] else 1
    truth = {
        "variant": "double" if DOUBLE else "single",
        "requests": chains,
        "error_classes": [{"name": i["name"], "stream": i["stream"], "error": i["error"]}
                          for i in invocations if not i["ok"]],
        "steps": {"retriever": {"VectorIndexRetriever": 1}, "embedding": {"OpenAIEmbedding": 1}, "tool": {},
                  "agent": {}},
        "streamed_ok_calls_by_model (TTFT expected)": {"gpt-4o-mini": 1, "o4-mini": 1},
        **appkit.fakellm_truth(),
        "setup_calls_not_traced": {"embeddings|text-embedding-3-small": 1},
        "library_gaps": [
            "LlamaIndex's embedding spans carry no token counts (single variant): embedding usage is lost",
            "each query nests two LLM spans (OpenAI.predict -> OpenAI.chat) and two RETRIEVER / EMBEDDING spans "
            "(retrieve -> _retrieve, get_query_embedding -> _get_query_embedding) per operation",
            "OpenAI.stream_chat spans end when the generator is returned (~1 ms); usage and the First Token Stream "
            "Event are added later, so the event lies after the span's end",
            "double variant: for stream_chat the OpenAI SDK call runs while the caller iterates, outside the "
            "LlamaIndex span's context, so its ChatCompletion span is a separate ROOT (own trace)",
        ],
    }
    appkit.print_summary(suite=SUITE, variant="double" if DOUBLE else "single", invocations=invocations,
                         spans_exported=exporter.exported, truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
