"""Conformance app: opentelemetry-instrumentation-openai-v2 (latest GenAI semconv, content on) + the OpenAI SDK.

Eight invocations of the app's request `answer_question` (one manual root span each) against fakellm, scripted by
markers in the user message (see tests/conformance/fakellm.py). The ground truth is TRUTH below and is printed in
the summary; tests/conformance/test_openai_v2.py holds the same figures as exact expectations.
"""

import json
import os
import sys
from pathlib import Path

# Library configuration first: the instrumentation reads it at instrument() time.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/conformance: harness helpers (stdlib only)
from harness import CountingSpanExporter, print_summary  # noqa: E402

import openai  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

exporter = CountingSpanExporter(OTLPSpanExporter())
provider = TracerProvider(resource=Resource.create())
provider.add_span_processor(BatchSpanProcessor(exporter))
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument(tracer_provider=provider)
tracer = trace.get_tracer("conformance.openai_v2")

client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL / OPENAI_API_KEY from the environment

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def get_weather(city: str) -> str:
    return f"sunny in {city}"


def chat(model, text, stream=False, tools=None, messages=None):
    """One chat completion; streamed ones ask for usage (stream_options.include_usage) and are consumed whole."""
    msgs = messages or [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": text}]
    kw = {"tools": tools} if tools else {}
    if not stream:
        return client.chat.completions.create(model=model, messages=msgs, **kw).choices[0].message
    chunks = client.chat.completions.create(model=model, messages=msgs, stream=True,
                                            stream_options={"include_usage": True}, **kw)
    content, calls = "", {}
    for ch in chunks:
        if ch.choices:
            d = ch.choices[0].delta
            content += d.content or ""
            for tc in d.tool_calls or []:
                calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
                calls[tc.index]["arguments"] += tc.function.arguments or ""
    return content


def inv_plain():
    return chat("gpt-4o-mini", "What is OTLP? [[usage:in=120,out=30]] [[text:A trace protocol.]]")


def inv_stream():
    return chat("gpt-4o-mini", "Stream a haiku. [[usage:in=150,out=40]] [[chunkdelay:15]] [[text:leaves fall on code]]",
                stream=True)


def inv_tool():
    text = 'Weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=180,out=25]] [[chunkdelay:10]]'
    msgs = [{"role": "user", "content": text}]
    first = client.chat.completions.create(model="gpt-4o", messages=msgs, tools=[WEATHER_TOOL]).choices[0].message
    msgs.append(first.model_dump(exclude_none=True))
    for tc in first.tool_calls or []:
        args = json.loads(tc.function.arguments)
        msgs.append({"role": "tool", "tool_call_id": tc.id, "content": get_weather(**args)})
    return chat("gpt-4o", None, stream=True, tools=[WEATHER_TOOL], messages=msgs)


def inv_rate_limited():
    return chat("gpt-4o-mini", "This one is rate limited. [[fail:429]]")


def inv_reasoning():
    return chat("o4-mini", "Think hard. [[usage:in=200,cached=64,out=80,reasoning=32]]")


def inv_reasoning_stream():
    return chat("o4-mini", "Think and stream. [[usage:in=300,cached=128,out=90,reasoning=50]] [[chunkdelay:10]]",
                stream=True)


def inv_rag():
    client.embeddings.create(model="text-embedding-3-small", input="what is chainpulse? [[usage:in=12]]")
    return chat("gpt-4o-mini", "Answer from the context. [[usage:in=220,out=35]]")


def inv_server_error():
    return chat("gpt-4o-mini", "The server breaks. [[fail:500]]", stream=True)


INVOCATIONS = [inv_plain, inv_stream, inv_tool, inv_rate_limited, inv_reasoning, inv_reasoning_stream, inv_rag,
               inv_server_error]

# Ground truth of what the app does (provider calls in order; usage as fakellm returns it).
TRUTH = {
    "chain": "answer_question",
    "requests": 8,
    "failed": 2,
    "error_classes": ["RateLimitError", "InternalServerError"],
    "calls": [
        {"inv": 1, "api": "chat", "model": "gpt-4o-mini", "stream": False, "status": "ok", "in": 120, "out": 30},
        {"inv": 2, "api": "chat", "model": "gpt-4o-mini", "stream": True, "status": "ok", "in": 150, "out": 40},
        {"inv": 3, "api": "chat", "model": "gpt-4o", "stream": False, "status": "ok", "in": 180, "out": 25,
         "tool_call": "get_weather"},
        {"inv": 3, "api": "chat", "model": "gpt-4o", "stream": True, "status": "ok", "in": 180, "out": 25},
        {"inv": 4, "api": "chat", "model": "gpt-4o-mini", "stream": False, "status": "error", "http": 429,
         "error_type": "RateLimitError"},
        {"inv": 5, "api": "chat", "model": "o4-mini", "stream": False, "status": "ok", "in": 200, "cached": 64,
         "out": 80, "reasoning": 32},
        {"inv": 6, "api": "chat", "model": "o4-mini", "stream": True, "status": "ok", "in": 300, "cached": 128,
         "out": 90, "reasoning": 50},
        {"inv": 7, "api": "embeddings", "model": "text-embedding-3-small", "stream": False, "status": "ok", "in": 12},
        {"inv": 7, "api": "chat", "model": "gpt-4o-mini", "stream": False, "status": "ok", "in": 220, "out": 35},
        {"inv": 8, "api": "chat", "model": "gpt-4o-mini", "stream": True, "status": "error", "http": 500,
         "error_type": "InternalServerError"},
    ],
    "tool_steps": "none: the app runs get_weather itself, openai-v2 makes no tool span",
    "ttft": "streamed successful chat calls (inv 2, 3b, 6) if the spans carry it",
}

results = []
for i, inv in enumerate(INVOCATIONS, 1):
    try:
        with tracer.start_as_current_span("answer_question", attributes={"app.invocation": i}):
            inv()
        results.append("ok")
    except openai.APIError as exc:
        results.append(type(exc).__name__)

provider.force_flush()
provider.shutdown()
print_summary(suite="openai_v2", invocations=len(INVOCATIONS), results=results, spans_exported=exporter.exported,
              spans_failed=exporter.failed, truth=TRUTH)
