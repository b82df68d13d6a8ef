"""The LangGraph app shared by the suites `langgraph_openinference` and `langgraph_openllmetry` (each suite's app.py
instruments LangChain its own way, then calls main()): a LangGraph ReAct-style agent
(langgraph.prebuilt.create_react_agent) with langchain-openai's ChatOpenAI, exporting OTLP/HTTP. Imports langgraph
and langchain-openai, which both suite venvs have (same pins).

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-<suite with - for _>)

Workload (the markers script fakellm; see WORKLOAD): 6 invocations of the agent `weather_agent`, 2 failing.
Prints one JSON line: {"suite", "invocations": [{"name","ok","error","stream","model"}], "spans_exported", "truth"}.
"""

import os
import sys
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

import langgraph.prebuilt  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from langgraph.runtime import Runtime  # noqa: E402

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


def main(suite: str, instrument, cannot_give: list, ttft: str) -> int:
    """Run the workload with the tracer provider instrumented by `instrument(provider)`; print the summary."""
    provider, exporter = appkit.setup_tracing("conformance-" + suite.replace("_", "-"), set_global=True)
    instrument(provider)
    agent = build_agent()
    count = iter(range(len(WORKLOAD)))

    def run(item):
        prompt, model, stream = item
        cfg = {"configurable": {"thread_id": f"t-{next(count)}"}}
        ctx = {"model": model, "stream": stream}
        if stream:
            # stream the graph's LLM tokens, as a chat UI would
            for _ in agent.stream({"messages": [("user", prompt)]}, cfg, context=ctx, stream_mode="messages"):
                pass
        else:
            agent.invoke({"messages": [("user", prompt)]}, cfg, context=ctx)

    results = appkit.invoke_all(WORKLOAD, run, lambda item: {"name": AGENT_NAME, "model": item[1], "stream": item[2],
                                                             "ok": True, "error": None})
    calls = [appkit.scripted_calls(p, m, st) for p, m, st in WORKLOAD]
    truth = appkit.truth_of(AGENT_NAME, calls, results,
                            steps={"agent": len(results), "tool": sum(2 == len(c) for c in calls)},
                            cannot_give=cannot_give, ttft=ttft)
    appkit.finish(provider, suite=suite, invocations=results, spans_exported=exporter.exported, truth=truth)
    return 0
