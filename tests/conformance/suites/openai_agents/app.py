"""Conformance app `openai_agents`: an OpenAI Agents SDK agent with one function tool, using the Responses API
(the SDK's default client = an AsyncOpenAI pointed at fakellm, max_retries=0), traced by
openinference-instrumentation-openai-agents (its processor replaces the SDK's own OpenAI trace exporter, so
nothing is sent to OpenAI), exporting OTLP/HTTP through the OTel SDK.

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-openai-agents)

Workload (the markers script fakellm; see WORKLOAD): 6 runs of the workflow `weather_workflow` (agent
`weather_agent`), 2 failing. Prints one JSON line:
{"suite":..., "invocations":[{"name","ok","error","stream","model","tool_runs"}...]}.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

# The SDK's own exporter would post traces to OpenAI; the OpenInference processor replaces it (exclusive mode),
# and no key for it exists here. Keep the SDK's tracing itself ON (OPENAI_AGENTS_DISABLE_TRACING would silence
# the OpenInference processor too).
os.environ.pop("OPENAI_AGENTS_DISABLE_TRACING", None)
os.environ.setdefault("OPENAI_API_KEY", "sk-conformance-dummy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

from openai import AsyncOpenAI
from agents import (Agent, RunConfig, Runner, function_tool, set_default_openai_api,
                    set_default_openai_client, set_tracing_export_api_key)
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

SUITE = "openai_agents"
WORKFLOW_NAME = "weather_workflow"
AGENT_NAME = "weather_agent"

# (prompt, model, stream); each prompt's markers are the whole script of that run.
WORKLOAD = [
    # 1. tool round trip, not streamed: 2 provider calls (function_call, then the answer), 1 tool run
    ('What is the weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=120,out=30]] '
     "[[text:It is sunny in Paris.]]", "gpt-4o-mini", False),
    # 2. tool round trip, streamed (Runner.run_streamed): 2 streamed provider calls, 1 tool run
    ('Weather in Oslo? [[tool:get_weather:{"city": "Oslo"}]] [[usage:in=150,cached=50,out=25]] '
     "[[delay:40]] [[chunkdelay:20]] [[text:Oslo is cold and clear today.]]", "gpt-4o-mini", True),
    # 3. rate limited: 1 failed provider call (HTTP 429 -> openai.RateLimitError), the run fails
    ("Weather in Rome? [[fail:429]]", "gpt-4o-mini", False),
    # 4. cached + reasoning tokens on a reasoning model, no tool
    ("Think about the weather in general. [[usage:in=400,cached=128,out=90,reasoning=64]] "
     "[[text:Weather is complex.]]", "o4-mini", False),
    # 5. server error, streamed: 1 failed provider call (HTTP 500 -> openai.InternalServerError), the run fails
    ("Weather in Lima? [[fail:500]]", "gpt-4o-mini", True),
    # 6. streamed, cached + reasoning, no tool
    ("Summarize climate briefly. [[usage:in=300,cached=100,out=60,reasoning=24]] [[delay:40]] [[chunkdelay:20]] "
     "[[text:Climate is long-term weather.]]", "o4-mini", True),
]

TOOL_RUNS = 0


@function_tool
def get_weather(city: str) -> str:
    """Current weather of a city."""
    global TOOL_RUNS
    TOOL_RUNS += 1
    return f"sunny in {city}"

def setup_tracing():
    provider, exporter = appkit.setup_tracing("conformance-openai-agents")
    # exclusive_processor=True (the default): the SDK's OpenAI trace exporter is replaced, not kept.
    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider, exclusive_processor=True)
    return provider, exporter


async def main() -> int:
    provider, exporter = setup_tracing()
    client = AsyncOpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="sk-conformance-dummy", max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    set_default_openai_api("responses")
    set_tracing_export_api_key("sk-conformance-dummy")  # never used: the exporter is replaced

    agents = {m: Agent(name=AGENT_NAME, instructions="You are a weather assistant.", model=m, tools=[get_weather])
              for m in ("gpt-4o-mini", "o4-mini")}
    run_config = RunConfig(workflow_name=WORKFLOW_NAME)

    invocations = []
    for prompt, model, stream in WORKLOAD:
        before = TOOL_RUNS
        rec = {"name": WORKFLOW_NAME, "agent": AGENT_NAME, "stream": stream, "model": model, "ok": True,
               "error": None}
        try:
            if stream:
                result = Runner.run_streamed(agents[model], prompt, run_config=run_config)
                async for _event in result.stream_events():
                    pass
            else:
                result = await Runner.run(agents[model], prompt, run_config=run_config)
            rec["output"] = str(result.final_output)
        except Exception as exc:  # noqa: BLE001 - the failure is part of the workload
            rec["ok"] = False
            rec["error"] = type(exc).__name__
            rec["cause"] = type(exc.__cause__).__name__ if exc.__cause__ else None
        rec["tool_runs"] = TOOL_RUNS - before
        invocations.append(rec)

    provider.force_flush()
    provider.shutdown()
    failed = [i for i in invocations if not i["ok"]]
    truth = {
        "requests": {WORKFLOW_NAME: {"total": len(invocations), "failed": len(failed)}},
        "error_classes": [{"stream": i["stream"], "error": i["error"]} for i in failed],
        "steps": {"agent": {AGENT_NAME: len(invocations)}, "tool": {"get_weather": TOOL_RUNS}, "retriever": {}},
        "streamed_ok_calls_by_model (TTFT would be expected)": {"gpt-4o-mini": 2, "o4-mini": 1},
        **appkit.fakellm_truth(),
        "library_gaps": [
            "no time to first token (no First Token Stream Event, no attribute) and no streaming flag",
            "llm.model_name is the RESPONSE model (dated snapshot); the requested model is on no span",
            "failed response spans carry no model at all (no response object): requested model unknown",
            "no exception class: status descriptions 'Error getting response: {..'Error code: 429 - ..'}' / "
            "'Error in agent run: ..', no exception event, no error.type",
            "the root (trace) span is always status OK, even when the run raised; the agent span is ERROR",
        ],
    }
    appkit.print_summary(suite=SUITE, workflow=WORKFLOW_NAME, agent=AGENT_NAME, invocations=invocations,
                         spans_exported=exporter.exported, truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
