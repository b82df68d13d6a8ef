"""Conformance app `langgraph_openllmetry`: a LangGraph ReAct-style agent (langgraph.prebuilt.create_react_agent)
with langchain-openai's ChatOpenAI, traced by OpenLLMetry (opentelemetry-instrumentation-langchain together with
opentelemetry-instrumentation-openai, as `Traceloop.init()` would enable both), exporting OTLP/HTTP.

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-langgraph-openllmetry)

Workload (the markers script fakellm; see WORKLOAD): 6 invocations of the agent `weather_agent`, 2 failing.
Prints one JSON line: {"suite", "invocations": [{"name","ok","error","stream","model"}], "spans_exported", "truth"}.
"""

import json
import os
import re
import sys
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/conformance: harness (stdlib only)
from harness import CountingSpanExporter  # noqa: E402

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from opentelemetry.instrumentation.langchain import LangchainInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
import langgraph.prebuilt
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.runtime import Runtime

SUITE = "langgraph_openllmetry"
AGENT_NAME = "weather_agent"

# (prompt, model, stream); each prompt's markers are the whole script of that invocation.
WORKLOAD = [
    # 1. tool round trip, not streamed: 2 provider calls (tool call, then the answer), 1 tool run
    ('What is the weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=120,out=30]] '
     "[[text:It is sunny in Paris.]]", "gpt-4o-mini", False),
    # 2. tool round trip, streamed (TTFT measurable): 2 streamed provider calls, 1 tool run
    ('Weather in Oslo? [[tool:get_weather:{"city": "Oslo"}]] [[usage:in=150,cached=50,out=25]] '
     "[[chunkdelay:30]] [[text:Oslo is cold and clear today.]]", "gpt-4o-mini", True),
    # 3. rate limited: 1 failed provider call -> RateLimitError, request failed
    ("Weather in Rome? [[fail:429]]", "gpt-4o-mini", False),
    # 4. cached + reasoning tokens on a reasoning model, no tool
    ("Think about the weather in general. [[usage:in=400,cached=128,out=90,reasoning=64]] "
     "[[text:Weather is complex.]]", "o4-mini", False),
    # 5. server error, streamed: 1 failed provider call -> InternalServerError
    ("Weather in Lima? [[fail:500]]", "gpt-4o-mini", True),
    # 6. streamed, cached + reasoning, no tool
    ("Summarize climate briefly. [[usage:in=300,cached=100,out=60,reasoning=24]] [[chunkdelay:20]] "
     "[[text:Climate is long-term weather.]]", "o4-mini", True),
]


EXPORTER = None


def setup_tracing() -> TracerProvider:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    service = os.environ.get("OTEL_SERVICE_NAME", "conformance-langgraph-openllmetry")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    global EXPORTER
    EXPORTER = CountingSpanExporter(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    provider.add_span_processor(BatchSpanProcessor(EXPORTER))
    trace_api.set_tracer_provider(provider)
    LangchainInstrumentor().instrument(tracer_provider=provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider


class Context(TypedDict):
    model: str
    stream: bool


def build_agent():
    """langgraph.prebuilt.create_react_agent with a dynamic model (picked per invocation from the runtime
    context, so one agent serves streamed and non-streamed calls and two models). Looked up on the module at
    call time, as OpenLLMetry wraps the module attribute when it instruments."""

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"The weather in {city} is fine."

    tools = [get_weather]
    base_url = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")

    def chat(model: str, stream: bool):
        kw = dict(model=model, api_key="sk-conformance", base_url=base_url, max_retries=0, timeout=30)
        if stream:
            kw.update(streaming=True, stream_usage=True)
        return ChatOpenAI(**kw).bind_tools(tools)

    models = {(m, s): chat(m, s) for m in ("gpt-4o-mini", "o4-mini") for s in (False, True)}

    def select_model(state, runtime: Runtime[Context]):
        ctx = runtime.context or {}
        return models[(ctx.get("model", "gpt-4o-mini"), bool(ctx.get("stream")))]

    return langgraph.prebuilt.create_react_agent(select_model, tools, context_schema=Context, name=AGENT_NAME)


# ----------------------------------------------------------------------------------------------- ground truth

def _usage(prompt: str) -> dict:
    """The usage fakellm answers for this prompt's [[usage:...]] marker (its defaults and cw5m/cw1h rule)."""
    u = {"in": 100, "cached": 0, "out": 20, "reasoning": 0, "cache_write": 0, "cw5m": 0, "cw1h": 0}
    m = re.search(r"\[\[usage:(.*?)\]\]", prompt)
    given = dict((k.strip(), int(v)) for k, v in (kv.split("=") for kv in m.group(1).split(","))) if m else {}
    u.update(given)
    if ("cw5m" in given or "cw1h" in given) and "cache_write" not in given:
        u["cache_write"] = u["cw5m"] + u["cw1h"]
    return u


def scripted_calls(prompt: str, model: str, stream: bool) -> list[dict]:
    """The provider calls one invocation makes: a failure marker = 1 failed call; a tool marker = 2 calls (tool
    call, then the answer after the tool result); else 1 call."""
    fail = re.search(r"\[\[fail:(\d+)\]\]", prompt)
    if fail:
        return [{"model": model, "stream": stream, "status": int(fail.group(1)), "usage": None}]
    n = 2 if "[[tool:" in prompt else 1
    return [{"model": model, "stream": stream, "status": 200, "usage": _usage(prompt)} for _ in range(n)]


def truth_of(chain: str, workload_calls: list[list[dict]], results: list[dict], **extra) -> dict:
    """Ground truth of the run, in chainpulse's terms (input includes cached, output includes reasoning)."""
    calls = [c for inv in workload_calls for c in inv]
    by_ms: dict = {}
    tokens: dict = {}
    for c in calls:
        key = f'{c["model"]}|{"ok" if c["status"] == 200 else "error"}'
        by_ms[key] = by_ms.get(key, 0) + 1
        if c["usage"]:
            u = c["usage"]
            t = tokens.setdefault(c["model"], {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0,
                                               "reasoning": 0})
            t["input"] += u["in"]
            t["output"] += u["out"]
            t["cache_read"] += u["cached"]
            t["cache_write"] += u["cache_write"]
            t["reasoning"] += u["reasoning"]
    errors: dict = {}
    for r in results:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {
        "requests": {chain: {"total": len(results), "failed": sum(1 for r in results if not r["ok"])}},
        "chains": [chain],
        "provider_calls": calls,
        "llm_calls_by_model_status": by_ms,
        "streamed_calls": sum(1 for c in calls if c["stream"]),
        "tokens_by_model": tokens,
        "error_classes": errors,
        **extra,
    }


def main() -> int:
    provider = setup_tracing()
    agent = build_agent()
    results = []
    for prompt, model, stream in WORKLOAD:
        cfg = {"configurable": {"thread_id": f"t-{len(results)}"}}
        ctx = {"model": model, "stream": stream}
        rec = {"name": AGENT_NAME, "model": model, "stream": stream, "ok": True, "error": None}
        try:
            if stream:
                # stream the graph's LLM tokens, as a chat UI would
                for _ in agent.stream({"messages": [("user", prompt)]}, cfg, context=ctx, stream_mode="messages"):
                    pass
            else:
                agent.invoke({"messages": [("user", prompt)]}, cfg, context=ctx)
        except Exception as exc:  # noqa: BLE001 - the error class is the point
            rec.update(ok=False, error=type(exc).__name__)
        results.append(rec)
    provider.force_flush()
    provider.shutdown()
    truth = truth_of(AGENT_NAME, [scripted_calls(p, m, st) for p, m, st in WORKLOAD], results,
                     steps={"agent": len(results), "tool": sum(2 == len(scripted_calls(p, m, st)) for p, m, st in WORKLOAD)},
                     cannot_give=["ttft", "reasoning tokens (no attribute on the LangChain LLM span)"],
                     ttft='none: opentelemetry-instrumentation-langchain sets no TTFT attribute; opentelemetry-instrumentation-openai is suppressed under LangChain LLM spans')
    print(json.dumps({"suite": SUITE, "invocations": results, "spans_exported": EXPORTER.exported, "truth": truth}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
