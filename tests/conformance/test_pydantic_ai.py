"""Conformance: pydantic-ai (pydantic-ai-slim[openai] 2.68.0, openai 3.57.0) with its built-in OpenTelemetry
instrumentation (InstrumentationSettings, format version 5; OTel SDK 1.45.2, OTLP/HTTP protobuf, no logfire).

App: suites/pydantic_ai/app.py. 6 runs of the Agent `weather_agent` (root span `invoke_agent weather_agent`, so
the chain label is `weather_agent`), an OpenAIChatModel on an AsyncOpenAI(max_retries=0) against fakellm:
  1. tool round trip, agent.run             2 ok gpt-4o-mini calls, 1 `get_weather` tool run
  2. tool round trip, agent.run_stream      2 ok streamed gpt-4o-mini calls (cached 50 each), 1 tool run
  3. HTTP 429, agent.run                    1 failed gpt-4o-mini call; the run raises ModelRateLimitError
  4. o4-mini, agent.run                     1 ok call, cached 128, reasoning 64
  5. HTTP 500, agent.run_stream             1 failed streamed gpt-4o-mini call; the run raises ModelServerError
  6. o4-mini, agent.run_stream              1 ok streamed call, cached 100, reasoning 24
Provider calls (ground truth, checked against fakellm's record below): 8 = 6 ok + 2 failed.

TRUTH below is the pure ground truth. EXPECTED = TRUTH minus what pydantic-ai does not put on its spans
(LIBRARY_GAPS; see /work/briefs/findings-pydantic_ai.md):
- the `chat gpt-4o-mini` span of call 5 (streamed, HTTP 500 at stream open) ends with status UNSET, no exception
  event and no usage: from the spans it is a successful call that reported no usage. Only the `invoke_agent` span
  carries the failure. So: 5 ok + 1 error gpt-4o-mini calls, 1 usage-missing call, errors only on the agent kind.
- the error class on spans is pydantic-ai's own exception (`pydantic_ai.exceptions.ModelRateLimitError`,
  `ModelServerError`): that is the class the app saw; the openai cause (RateLimitError) is not on the spans.
Carried and expected: reasoning tokens (only as `gen_ai.usage.details.reasoning_tokens`), cache reads
(`gen_ai.usage.cache_read.input_tokens`), TTFT (`gen_ai.client.operation.time_to_first_chunk`, seconds, on the 3
successful streamed chat spans).
"""

from __future__ import annotations

import copy

import pytest

import harness

SUITE = "pydantic_ai"
SERVICE = SUITE  # OTEL_SERVICE_NAME, set by the harness
CHAIN = "weather_agent"

# Ground truth: tokens fakellm served to the SUCCESSFUL calls (input includes cached, output includes reasoning).
USAGE = {
    "gpt-4o-mini": {"input": 120 * 2 + 150 * 2, "output": 30 * 2 + 25 * 2, "cache_read": 50 * 2, "cache_write": 0,
                    "reasoning": 0},
    "o4-mini": {"input": 400 + 300, "output": 90 + 60, "cache_read": 128 + 100, "cache_write": 0,
                "reasoning": 64 + 24},
}
SERVED = {  # (endpoint, model, stream, status): calls
    ("chat.completions", "gpt-4o-mini", False, 200): 2,
    ("chat.completions", "gpt-4o-mini", True, 200): 2,
    ("chat.completions", "gpt-4o-mini", False, 429): 1,
    ("chat.completions", "gpt-4o-mini", True, 500): 1,
    ("chat.completions", "o4-mini", False, 200): 1,
    ("chat.completions", "o4-mini", True, 200): 1,
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
    # the agent run fails with pydantic-ai's exception; the chat span of the failed call fails with it too
    "errors": {("llm", "ModelRateLimitError"): 1, ("llm", "ModelServerError"): 1,
               ("agent", "ModelRateLimitError"): 1, ("agent", "ModelServerError"): 1},
    "runs": {("agent", CHAIN): 6, ("tool", "get_weather"): 2, "llm": 8, "retriever": 0},
    "ttft": {"gpt-4o-mini": 2, "o4-mini": 1},
    "usage_missing": {},
    "unpriced": {},
}


def _expected() -> dict:
    e = copy.deepcopy(TRUTH)
    # LIBRARY GAP: the failed streamed call's chat span says nothing went wrong (status UNSET, no usage).
    e["llm_calls"][(CHAIN, "gpt-4o-mini", "ok")] += 1
    e["llm_calls"][(CHAIN, "gpt-4o-mini", "error")] -= 1
    e["usage_missing"] = {"gpt-4o-mini": 1}
    del e["errors"][("llm", "ModelServerError")]
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
    assert [i["error"] for i in inv if not i["ok"]] == ["ModelRateLimitError", "ModelServerError"]
    assert [i["cause"] for i in inv if not i["ok"]] == ["RateLimitError", "InternalServerError"]
    assert sum(i["tool_runs"] for i in inv) == 2


def test_figures(result):
    """Exact figures in /metrics and the KPI API (and both agree)."""
    result.assert_figures(EXPECTED)


def test_time_to_first_token_values(result):
    """The TTFT observations are real: fakellm waits 40 ms before the first chunk of every streamed call."""
    m = result.metrics
    n = m.sum("chainpulse_llm_time_to_first_token_seconds_count", service=SERVICE)
    s = m.sum("chainpulse_llm_time_to_first_token_seconds_sum", service=SERVICE)
    assert n == sum(EXPECTED["ttft"].values()), f"TTFT observations {n}"
    assert 0.04 * n <= s <= 10.0 * n, f"TTFT sum {s} s over {n} observations"
