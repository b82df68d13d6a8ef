"""Conformance: the OpenAI Agents SDK (openai-agents 0.24.0, openai 3.57.0, Responses API) traced by OpenInference
(openinference-instrumentation-openai-agents 2.6.0; OTel SDK 1.45.2, OTLP/HTTP protobuf). The OpenInference
processor replaces the SDK's own OpenAI trace exporter (exclusive mode), so nothing goes to OpenAI.

App: suites/openai_agents/app.py. 6 runs of the workflow `weather_workflow` (RunConfig(workflow_name=...); the
trace's root span is named after it, so the chain label is `weather_workflow`) of the Agent `weather_agent` with
one function tool, default client = AsyncOpenAI(base_url=fakellm, max_retries=0):
  1. tool round trip, Runner.run            2 ok gpt-4o-mini Responses calls, 1 `get_weather` tool run
  2. tool round trip, Runner.run_streamed   2 ok streamed gpt-4o-mini calls (cached 50 each), 1 tool run
  3. HTTP 429, Runner.run                   1 failed gpt-4o-mini call; the run raises openai.RateLimitError
  4. o4-mini, Runner.run                    1 ok call, cached 128, reasoning 64
  5. HTTP 500, Runner.run_streamed          1 failed streamed gpt-4o-mini call; raises openai.InternalServerError
  6. o4-mini, Runner.run_streamed           1 ok streamed call, cached 100, reasoning 24
Span tree per run: `weather_workflow` (AGENT, the trace; always status OK) > `weather_workflow` (CHAIN) >
`weather_agent` (AGENT) > `turn` (CHAIN) > `response` (LLM) and `get_weather` (TOOL).

TRUTH below is the pure ground truth. EXPECTED = TRUTH minus what the instrumentation does not send
(LIBRARY_GAPS; see /work/briefs/findings-openai_agents.md):
- no time to first token at all (no event, no attribute): no TTFT observation.
- a failed `response` span carries no model (the SDK records only the Response object, which a failed call does
  not have; the requested model is on no span): its calls can only be labelled `unknown`.
Derivable, so expected (chainpulse is wrong today if it misses them):
- the requested model of successful calls: `llm.model_name` is the response's dated snapshot
  (`gpt-4o-mini-2024-07-18`); the requested `gpt-4o-mini` is that name without its snapshot suffix.
- the request failed although the root span says OK: its `weather_agent` AGENT span is ERROR.
- the error class: the status descriptions are `Error getting response: {'error': 'Error code: 429 - ...'}` and
  `Error in agent run: {...}`: the openai SDK's `APIStatusError` text, whose status code names the class it
  raised (429 RateLimitError, 500 InternalServerError). No exception event, no error.type.
"""

from __future__ import annotations

import copy

import pytest

import harness

SUITE = "openai_agents"
SERVICE = SUITE
CHAIN = "weather_workflow"

USAGE = {
    "gpt-4o-mini": {"input": 120 * 2 + 150 * 2, "output": 30 * 2 + 25 * 2, "cache_read": 50 * 2, "cache_write": 0,
                    "reasoning": 0},
    "o4-mini": {"input": 400 + 300, "output": 90 + 60, "cache_read": 128 + 100, "cache_write": 0,
                "reasoning": 64 + 24},
}
SERVED = {
    ("responses", "gpt-4o-mini", False, 200): 2,
    ("responses", "gpt-4o-mini", True, 200): 2,
    ("responses", "gpt-4o-mini", False, 429): 1,
    ("responses", "gpt-4o-mini", True, 500): 1,
    ("responses", "o4-mini", False, 200): 1,
    ("responses", "o4-mini", True, 200): 1,
}


def _tokens(usage: dict) -> dict:
    return {(CHAIN, m, t): n for m, u in usage.items() for t, n in u.items() if n}


TRUTH = {
    "service": SERVICE,
    "requests": {CHAIN: {"total": 6, "failed": 2}},
    "llm_calls": {(CHAIN, "gpt-4o-mini", "ok"): 4, (CHAIN, "gpt-4o-mini", "error"): 2,
                  (CHAIN, "o4-mini", "ok"): 2},
    "tokens": _tokens(USAGE),
    "cost": {(CHAIN, m): harness.expected_cost(m, **u) for m, u in USAGE.items()},
    # the `response` (LLM) span and the `weather_agent` (AGENT) span of each failed run are ERROR
    "errors": {("llm", "RateLimitError"): 1, ("llm", "InternalServerError"): 1,
               ("agent", "RateLimitError"): 1, ("agent", "InternalServerError"): 1},
    "runs": {("agent", "weather_agent"): 6, ("tool", "get_weather"): 2, ("llm", "response"): 8, "retriever": 0},
    "ttft": {"gpt-4o-mini": 2, "o4-mini": 1},
    "usage_missing": {},
    "unpriced": {},
}


def _expected() -> dict:
    e = copy.deepcopy(TRUTH)
    # LIBRARY GAP: no TTFT on any span.
    e["ttft"] = {}
    # LIBRARY GAP: failed calls carry no model.
    e["llm_calls"][(CHAIN, "unknown", "error")] = e["llm_calls"].pop((CHAIN, "gpt-4o-mini", "error"))
    return e


EXPECTED = _expected()

CHAINPULSE_ENV = {"CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS": "10000"}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    # Agent runs last seconds on a loaded machine while their first spans are exported early: keep chainpulse's
    # default trace timeout (10 s) instead of the harness's 1 s, so no trace is released before its root arrives.
    with harness.Conformance(tmp_path_factory.mktemp(SUITE), chainpulse_env=CHAINPULSE_ENV) as c:
        yield c.run(SUITE)


def test_workload_ground_truth(result):
    """fakellm served exactly the scripted workload, and the app saw what it scripted."""
    served: dict = {}
    for c in result.calls:
        key = (c["endpoint"], c["model"], c["stream"], c["status"])
        served[key] = served.get(key, 0) + 1
    assert served == SERVED
    by_model: dict = {}
    for c in result.calls:
        if c["status"] == 200:
            u = c["usage"]
            t = by_model.setdefault(c["model"], dict.fromkeys(("input", "output", "cache_read", "cache_write",
                                                               "reasoning"), 0))
            for k, src in (("input", "in"), ("output", "out"), ("cache_read", "cached"),
                           ("cache_write", "cache_write"), ("reasoning", "reasoning")):
                t[k] += u[src]
    assert by_model == USAGE
    inv = result.summary["invocations"]
    assert [i["error"] for i in inv if not i["ok"]] == ["RateLimitError", "InternalServerError"]
    assert sum(i["tool_runs"] for i in inv) == 2


def test_figures(result):
    """Exact figures in /metrics and the KPI API (and both agree)."""
    result.assert_figures(EXPECTED)
