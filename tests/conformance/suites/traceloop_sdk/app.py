"""Conformance app: the Traceloop SDK (OpenLLMetry) decorators @workflow / @task / @agent / @tool around OpenAI SDK
calls (Traceloop's bundled OpenAI instrumentation), exporting OTLP/HTTP to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.

The workflow `support_flow` is invoked 6 times against fakellm (markers in the user messages script usage,
failures and tool calls, see tests/conformance/fakellm.py). Ground truth: TRUTH below (also printed in the summary);
tests/conformance/test_traceloop_sdk.py holds the exact expectations.
"""

import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")
os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")
os.environ.setdefault("TRACELOOP_LOGGING_ENABLED", "false")

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/conformance: harness helpers (stdlib only)
from harness import CountingSpanExporter, print_summary  # noqa: E402

import openai  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from traceloop.sdk import Traceloop  # noqa: E402
from traceloop.sdk.decorators import agent, task, tool, workflow  # noqa: E402
from traceloop.sdk.instruments import Instruments  # noqa: E402

exporter = CountingSpanExporter(OTLPSpanExporter(endpoint=os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]))
Traceloop.init(app_name=os.environ.get("OTEL_SERVICE_NAME", "traceloop_sdk"), exporter=exporter,
               telemetry_enabled=False, instruments={Instruments.OPENAI})

client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL / OPENAI_API_KEY from the environment

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def complete(model, messages, stream=False, tools=None):
    kw = {"tools": tools} if tools else {}
    if not stream:
        return client.chat.completions.create(model=model, messages=messages, **kw).choices[0].message.content
    text = ""
    for ch in client.chat.completions.create(model=model, messages=messages, stream=True,
                                             stream_options={"include_usage": True}, **kw):
        if ch.choices:
            text += ch.choices[0].delta.content or ""
    return text


@task(name="classify")
def classify(question):
    bare = re.sub(r"\[\[.*?\]\]", "", question).strip()  # the question's markers script the answer, not this
    return complete("gpt-4o-mini", [{"role": "user", "content": f"Classify: {bare} [[usage:in=90,out=5]] "
                                                                 f"[[text:general]]"}])


@task(name="answer")
def answer(question, model="gpt-4o-mini", stream=False):
    return complete(model, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
                    stream=stream)


@tool(name="get_weather")
def get_weather(city):
    return f"sunny in {city}"


@agent(name="weather_agent")
def weather_agent(question):
    msgs = [{"role": "user", "content": question}]
    first = client.chat.completions.create(model="gpt-4o", messages=msgs, tools=[WEATHER_TOOL]).choices[0].message
    msgs.append(first.model_dump(exclude_none=True))
    for tc in first.tool_calls or []:
        msgs.append({"role": "tool", "tool_call_id": tc.id, "content": get_weather(**json.loads(tc.function.arguments))})
    return complete("gpt-4o", msgs, stream=True, tools=[WEATHER_TOOL])


@workflow(name="support_flow")
def support_flow(question, route="answer", model="gpt-4o-mini", stream=False):
    classify(question)
    if route == "agent":
        return weather_agent(question)
    return answer(question, model=model, stream=stream)


INVOCATIONS = [
    dict(question="What is OTLP? [[usage:in=140,out=30]]"),
    dict(question="Stream it. [[usage:in=160,out=35]] [[chunkdelay:10]]", stream=True),
    dict(question='Weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=200,out=30]] [[chunkdelay:10]]',
         route="agent"),
    dict(question="Rate limited. [[fail:429]]"),
    dict(question="Think. [[usage:in=400,cached=256,out=120,reasoning=64]]", model="o4-mini"),
    dict(question="Think, streamed. [[usage:in=350,cached=100,out=90,reasoning=40]] [[chunkdelay:10]]",
         model="o4-mini", stream=True),
]

TRUTH = {
    "chain": "support_flow",
    "requests": 6,
    "failed": 1,
    "error_classes": ["RateLimitError"],
    "steps": {"task:classify": 6, "task:answer": 5, "agent:weather_agent": 1, "tool:get_weather": 1},
    "calls": (
        [{"inv": i, "step": "classify", "model": "gpt-4o-mini", "stream": False, "status": "ok", "in": 90, "out": 5}
         for i in range(1, 7)]
        + [
            {"inv": 1, "step": "answer", "model": "gpt-4o-mini", "stream": False, "status": "ok", "in": 140, "out": 30},
            {"inv": 2, "step": "answer", "model": "gpt-4o-mini", "stream": True, "status": "ok", "in": 160, "out": 35},
            {"inv": 3, "step": "weather_agent", "model": "gpt-4o", "stream": False, "status": "ok", "in": 200,
             "out": 30, "tool_call": "get_weather"},
            {"inv": 3, "step": "weather_agent", "model": "gpt-4o", "stream": True, "status": "ok", "in": 200,
             "out": 30},
            {"inv": 4, "step": "answer", "model": "gpt-4o-mini", "stream": False, "status": "error", "http": 429,
             "error_type": "RateLimitError"},
            {"inv": 5, "step": "answer", "model": "o4-mini", "stream": False, "status": "ok", "in": 400,
             "cached": 256, "out": 120, "reasoning": 64},
            {"inv": 6, "step": "answer", "model": "o4-mini", "stream": True, "status": "ok", "in": 350,
             "cached": 100, "out": 90, "reasoning": 40},
        ]),
    "ttft": "streamed successful calls (inv 2, 3 second call, 6) if the spans carry it",
}

results = []
for inv in INVOCATIONS:
    try:
        support_flow(**inv)
        results.append("ok")
    except openai.APIError as exc:
        results.append(type(exc).__name__)

Traceloop.flush() if hasattr(Traceloop, "flush") else None
from opentelemetry import trace  # noqa: E402

tp = trace.get_tracer_provider()
if hasattr(tp, "force_flush"):
    tp.force_flush()
print_summary(suite="traceloop_sdk", invocations=len(INVOCATIONS), results=results, spans_exported=exporter.exported,
              spans_failed=exporter.failed, truth=TRUTH)
