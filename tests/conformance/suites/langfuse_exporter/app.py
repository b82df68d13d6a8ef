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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

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

    counters = appkit.counting_langfuse_exports(get_client())

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
    out = appkit.invoke_all(WORKLOAD, lambda w: chains[w[0]](w[3], w[1], w[2]),
                            lambda w: {"chain": w[0], "model": w[1], "stream": w[2], "ok": True, "error": None})
    records = list(zip(WORKLOAD, out))

    lf = get_client()
    lf.flush()
    lf.shutdown()
    truth = appkit.build_truth(records, agent_chains=("weather_agent",))
    import importlib.metadata as md
    truth["versions"] = {p: md.version(p) for p in ("langfuse", "openai", "opentelemetry-sdk")}
    appkit.print_summary(suite=SUITE, invocations=out,
                         spans_exported=sum(c.exported for c in counters) if counters else None,
                         export_failures=sum(c.failed for c in counters), truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
