"""Conformance app `langfuse_exporter`: the Langfuse Python SDK (v3+, OTel-based) with its own exporter pointed at
chainpulse as the "Langfuse host": it posts OTLP/HTTP protobuf (gzip) to `<host>/api/public/otel/v1/traces` with
Basic auth from dummy keys. Each invocation is a top-level function decorated with Langfuse's `@observe`
(`answer_question`, and `weather_agent` with as_type="agent" whose tool is an `@observe(as_type="tool")`
function); the LLM calls go through the Langfuse OpenAI wrapper (`from langfuse.openai import openai`).

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  LANGFUSE_HOST                  chainpulse's OTLP/HTTP base URL (or the capture sink), e.g. http://127.0.0.1:P
  (falls back to OTEL_EXPORTER_OTLP_ENDPOINT when LANGFUSE_HOST is not set)

Prints one JSON line: {"suite":..., "invocations":[{"chain","ok","error","stream","model"}...]}.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/conformance: harness's app-side helpers
from harness import CountingSpanExporter, print_summary  # noqa: E402

SUITE = "langfuse_exporter"

# (chain, model, stream, prompt). The markers in the prompt are the whole script of that invocation.
WORKLOAD = [
    # 1. plain chat, cached tokens
    ("answer_question", "gpt-4o-mini", False,
     "What is the capital of France? [[usage:in=120,cached=32,out=40]] [[text:Paris is the capital.]]"),
    # 2. streamed with a usage chunk, cached tokens, measurable TTFT (completion_start_time)
    ("answer_question", "gpt-4o-mini", True,
     "Tell me about Lyon. [[usage:in=150,cached=64,out=30]] [[delay:60]] [[chunkdelay:15]] "
     "[[text:Lyon is a large city in France.]]"),
    # 3. reasoning model: cached + reasoning tokens
    ("answer_question", "o4-mini", False,
     "Prove that 17 is prime. [[usage:in=200,cached=50,out=60,reasoning=24]] [[text:It has no divisors.]]"),
    # 4. reasoning model, streamed
    ("answer_question", "o4-mini", True,
     "Explain primes briefly. [[usage:in=180,cached=96,out=50,reasoning=16]] [[chunkdelay:15]] "
     "[[text:Primes have two divisors.]]"),
    # 5. rate limited -> openai.RateLimitError, the request fails
    ("answer_question", "gpt-4o-mini", False, "Anything? [[fail:429]]"),
    # 6. server error on a streamed call -> openai.InternalServerError, the request fails
    ("answer_question", "gpt-4o-mini", True, "Anything streamed? [[fail:500]]"),
    # 7. agent with a tool round trip: 2 provider calls, 1 tool observation
    ("weather_agent", "gpt-4o-mini", False,
     'Weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=90,out=15]] [[text:Sunny, 21 C.]]'),
]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


USAGE_DEFAULTS = {"in": 100, "cached": 0, "out": 20, "reasoning": 0, "cache_write": 0, "cw5m": 0, "cw1h": 0}


def usage_of(prompt: str) -> dict:
    """The usage fakellm returns for this prompt (its `[[usage:...]]` marker over the documented defaults)."""
    u = dict(USAGE_DEFAULTS)
    for arg in re.findall(r"\[\[usage:(.*?)\]\]", prompt):
        for item in arg.split(","):
            k, v = item.split("=")
            u[k.strip()] = int(v)
    if "cache_write" not in prompt and (u["cw5m"] or u["cw1h"]):
        u["cache_write"] = u["cw5m"] + u["cw1h"]
    return u


def provider_calls(chain: str, prompt: str) -> int:
    return 2 if "[[tool:" in prompt and chain == "weather_agent" else 1


def build_truth(records: list) -> dict:
    """Ground truth of what the app did: requests, provider calls, usage served, error classes, steps, TTFT."""
    truth: dict = {"requests": {}, "llm_calls": {}, "streamed_llm_calls": {}, "tokens": {}, "errors": {},
                   "steps": {"tool": 0, "retriever": 0, "agent": 0}, "tool_calls_executed": 0, "ttft_calls": {}}
    for (chain, model, stream, prompt), rec in records:
        r = truth["requests"].setdefault(chain, {"total": 0, "failed": 0})
        r["total"] += 1
        r["failed"] += 0 if rec["ok"] else 1
        n = provider_calls(chain, prompt) if rec["ok"] else 1
        status = "ok" if rec["ok"] else "error"
        key = f"{model}|{status}"
        truth["llm_calls"][key] = truth["llm_calls"].get(key, 0) + n
        if stream:
            truth["streamed_llm_calls"][key] = truth["streamed_llm_calls"].get(key, 0) + n
        if not rec["ok"]:
            truth["errors"][rec["error"]] = truth["errors"].get(rec["error"], 0) + 1
            continue
        if chain == "weather_agent":
            truth["steps"]["agent"] += 1
        if n == 2:
            truth["tool_calls_executed"] += 1
            truth["steps"]["tool"] += 1
        if stream:
            truth["ttft_calls"][model] = truth["ttft_calls"].get(model, 0) + n
        u = usage_of(prompt)
        t = truth["tokens"].setdefault(model, {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0,
                                               "reasoning": 0})
        t["input"] += n * u["in"]
        t["output"] += n * u["out"]
        t["cache_read"] += n * u["cached"]
        t["cache_write"] += n * u["cache_write"]
        t["reasoning"] += n * u["reasoning"]
    return truth


def count_langfuse_exports(lf) -> list:
    """Wrap the exporter inside Langfuse's own LangfuseSpanProcessor (its OTLP exporter to
    <host>/api/public/otel/v1/traces, untouched otherwise) in harness.CountingSpanExporter, so the summary can say
    how many spans were exported. Best effort: returns [] when the SDK's internals differ."""
    counters = []
    provider = getattr(getattr(lf, "_resources", None), "tracer_provider", None)
    for proc in getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ()):
        inner = getattr(proc, "_batch_processor", None)
        if type(proc).__name__ == "LangfuseSpanProcessor" and inner is not None and hasattr(inner, "_exporter"):
            inner._exporter = CountingSpanExporter(inner._exporter)
            counters.append(inner._exporter)
    return counters


def main() -> int:
    host = (os.environ.get("LANGFUSE_HOST") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "http://127.0.0.1:4318").rstrip("/")
    os.environ["LANGFUSE_HOST"] = host
    os.environ["LANGFUSE_BASE_URL"] = host
    os.environ.setdefault("LANGFUSE_PUBLIC_KEY", "pk-lf-conformance")
    os.environ.setdefault("LANGFUSE_SECRET_KEY", "sk-lf-conformance")
    os.environ.setdefault("LANGFUSE_TRACING_ENVIRONMENT", "conformance")

    from langfuse import get_client, observe
    from langfuse.openai import openai

    counters = count_langfuse_exports(get_client())

    client = openai.OpenAI(api_key="sk-conformance-dummy", base_url=os.environ["OPENAI_BASE_URL"], max_retries=0)

    def chat(model: str, messages: list, stream: bool, tools=None):
        kwargs = {"model": model, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        if stream:
            text = ""
            for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                        **kwargs):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            return text, []
        resp = client.chat.completions.create(**kwargs)
        msg = resp.choices[0].message
        return msg.content or "", list(msg.tool_calls or [])

    @observe(as_type="tool")
    def get_weather(city: str) -> str:
        return json.dumps({"city": city, "weather": "sunny", "temp_c": 21})

    @observe()
    def answer_question(prompt: str, model: str, stream: bool) -> str:
        text, _ = chat(model, [{"role": "user", "content": prompt}], stream)
        return text

    @observe(as_type="agent")
    def weather_agent(prompt: str, model: str, stream: bool) -> str:
        messages = [{"role": "user", "content": prompt}]
        text, calls = chat(model, messages, stream, tools=TOOLS)
        if not calls:
            return text
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in calls]})
        for c in calls:
            messages.append({"role": "tool", "tool_call_id": c.id,
                             "content": get_weather(**json.loads(c.function.arguments))})
        text, _ = chat(model, messages, stream, tools=TOOLS)
        return text

    chains = {"answer_question": answer_question, "weather_agent": weather_agent}
    out, records = [], []
    for chain, model, stream, prompt in WORKLOAD:
        rec = {"chain": chain, "model": model, "stream": stream, "ok": True, "error": None}
        try:
            chains[chain](prompt, model, stream)
        except Exception as exc:  # noqa: BLE001 - failures are part of the workload
            rec.update(ok=False, error=type(exc).__name__)
        out.append(rec)
        records.append(((chain, model, stream, prompt), rec))

    lf = get_client()
    lf.flush()
    lf.shutdown()
    truth = build_truth(records)
    import importlib.metadata as md
    truth["versions"] = {p: md.version(p) for p in ("langfuse", "openai", "opentelemetry-sdk")}
    print_summary(suite=SUITE, invocations=out, spans_exported=sum(c.exported for c in counters) if counters else None,
                  export_failures=sum(c.failed for c in counters), truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
