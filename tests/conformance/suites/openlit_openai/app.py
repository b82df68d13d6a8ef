"""Conformance app `openlit_openai`: OpenLIT (openlit.init) auto-instrumenting the OpenAI Python SDK, exporting
OTLP/HTTP. Each invocation is one call of a function decorated with `@openlit.trace` (OpenLIT's own way of grouping
the calls of one request under a root span; the span is named after the function), so the chain labels are
`answer_question` and `weather_agent`.

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-openlit-openai)

Prints one JSON line: {"suite":..., "invocations":[{"chain","ok","error","stream","model","api"}...]}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

SUITE = "openlit_openai"

# (chain, api, model, stream, prompt). The markers in the prompt are the whole script of that invocation.
WORKLOAD = [
    # 1. plain chat, cached tokens
    ("answer_question", "chat", "gpt-4o-mini", False,
     "What is the capital of France? [[usage:in=120,cached=32,out=40]] [[text:Paris is the capital.]]"),
    # 2. streamed chat with usage chunk, cached tokens, measurable TTFT
    ("answer_question", "chat", "gpt-4o-mini", True,
     "Tell me about Lyon. [[usage:in=150,cached=64,out=30]] [[delay:60]] [[chunkdelay:15]] "
     "[[text:Lyon is a large city in France.]]"),
    # 3. reasoning model, not streamed: reasoning tokens inside completion_tokens
    ("answer_question", "chat", "o4-mini", False,
     "Prove that 17 is prime. [[usage:in=200,out=60,reasoning=24]] [[text:It has no divisors.]]"),
    # 4. reasoning model, streamed, cached + reasoning
    ("answer_question", "chat", "o4-mini", True,
     "Explain primes briefly. [[usage:in=180,cached=96,out=50,reasoning=16]] [[chunkdelay:15]] "
     "[[text:Primes have two divisors.]]"),
    # 5. rate limited -> openai.RateLimitError, the request fails
    ("answer_question", "chat", "gpt-4o-mini", False, "Anything? [[fail:429]]"),
    # 6. server error on a streamed call -> openai.InternalServerError, the request fails
    ("answer_question", "chat", "gpt-4o-mini", True, "Anything streamed? [[fail:500]]"),
    # 7. tool round trip: call 1 answers with a get_weather tool call, the app runs the tool, call 2 answers
    ("weather_agent", "chat", "gpt-4o-mini", False,
     'Weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=90,out=15]] [[text:Sunny, 21 C.]]'),
    # 8. Responses API on a reasoning model (OpenLIT records reasoning tokens only for this API)
    ("answer_question", "responses", "o4-mini", False,
     "Is 91 prime? [[usage:in=250,cached=50,out=70,reasoning=40]] [[text:No, 7 x 13.]]"),
]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "weather": "sunny", "temp_c": 21})


def main() -> int:
    import openlit
    import openai

    # A local pricing file: OpenLIT would otherwise download its price list from the internet at init.
    pricing = os.path.join(tempfile.mkdtemp(prefix="openlit-pricing-"), "pricing.json")
    with open(pricing, "w", encoding="utf-8") as f:
        json.dump({"chat": {"gpt-4o-mini": {"promptPrice": 0.001, "completionPrice": 0.004},
                            "o4-mini": {"promptPrice": 0.002, "completionPrice": 0.008}}}, f)

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    openlit.init(
        service_name=os.environ.get("OTEL_SERVICE_NAME", "conformance-openlit-openai"),
        environment="conformance",
        otlp_endpoint=endpoint,
        pricing_json=pricing,
        disable_metrics=True,   # chainpulse receives traces only
        disable_events=True,
        disable_batch=False,
    )

    from opentelemetry import trace as trace_api
    provider = trace_api.get_tracer_provider()
    counters = appkit.counting_exports(provider)

    client = openai.OpenAI(api_key="sk-conformance-dummy", base_url=os.environ["OPENAI_BASE_URL"], max_retries=0)

    def chat(model: str, messages: list, stream: bool, tools=None):
        kwargs = {"model": model, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        if stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
            text = ""
            for chunk in client.chat.completions.create(**kwargs):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            return text, []
        resp = client.chat.completions.create(**kwargs)
        msg = resp.choices[0].message
        return msg.content or "", list(msg.tool_calls or [])

    @openlit.trace
    def answer_question(prompt: str, model: str, stream: bool, api: str) -> str:
        if api == "responses":
            resp = client.responses.create(model=model, input=prompt)
            return resp.output_text
        text, _ = chat(model, [{"role": "user", "content": prompt}], stream)
        return text

    @openlit.trace
    def weather_agent(prompt: str, model: str, stream: bool, api: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        text, calls = chat(model, messages, stream, tools=TOOLS)
        if not calls:
            return text
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in calls]})
        for c in calls:
            result = get_weather(**json.loads(c.function.arguments))
            messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
        text, _ = chat(model, messages, stream, tools=TOOLS)
        return text

    chains = {"answer_question": answer_question, "weather_agent": weather_agent}
    out = appkit.invoke_all(WORKLOAD, lambda w: chains[w[0]](w[4], w[2], w[3], w[1]),
                            lambda w: {"chain": w[0], "api": w[1], "model": w[2], "stream": w[3], "ok": True,
                                       "error": None})
    records = list(zip(WORKLOAD, out))

    provider.force_flush()
    provider.shutdown()
    truth = appkit.build_truth([((c, m, s, p), r) for (c, a, m, s, p), r in records], tool_steps=False)
    truth["library_does_not_send"] = {
        "reasoning_tokens_of_chat_completions": sum(
            appkit.usage_of(p)["reasoning"] for (c, a, m, s, p), r in records if r["ok"] and a == "chat"),
        "tool_execution_span": truth["tool_calls_executed"],
    }
    import importlib.metadata as md
    truth["versions"] = {p: md.version(p) for p in ("openlit", "openai", "opentelemetry-sdk")}
    appkit.print_summary(suite=SUITE, invocations=out,
                         spans_exported=sum(c.exported for c in counters) if counters else None, truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
