"""Conformance: the Traceloop SDK 0.62.4 (OpenLLMetry) decorators @workflow/@task/@agent/@tool around openai 3.57.0
(Traceloop's bundled opentelemetry-instrumentation-openai 0.62.4); app: suites/traceloop_sdk/app.py.

Ground truth (what the app did; fakellm's usage): 6 requests `support_flow` (the @workflow), 1 failed (429
RateLimitError in the `answer` task); 13 provider calls, all Chat Completions:
  gpt-4o-mini  ok x8: `classify` task x6 (90/5 each), `answer` 140/30, `answer` streamed 160/35;  error x1 (429)
  gpt-4o       ok x2 in the `weather_agent` agent: tool call 200/30, then (after the `get_weather` tool) streamed 200/30
  o4-mini      ok x2: 400 in (256 cached) / 120 out (64 reasoning); streamed 350 (100 cached) / 90 (40 reasoning)
Steps: task classify x6, task answer x5, agent weather_agent x1, tool get_weather x1.
What the library does not send (see LIBRARY_OMITS): reasoning tokens of STREAMED calls (the non-streamed span has
`gen_ai.usage.reasoning_tokens`, the streamed one has none); no TTFT attribute -- but every streamed span carries
`gen_ai.content.completion.chunk` events, the first one's timestamp marks the first token, so TTFT is expected
for the 3 successful streamed calls.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import expected_cost  # noqa: E402

SUITE = "traceloop_sdk"
CHAIN = "support_flow"

# Ground-truth usage per model (input includes cached; output includes reasoning).
TRUTH_TOKENS = {
    "gpt-4o-mini": {"input": 6 * 90 + 140 + 160, "output": 6 * 5 + 30 + 35},
    "gpt-4o": {"input": 200 + 200, "output": 30 + 30},
    "o4-mini": {"input": 400 + 350, "output": 120 + 90, "cache_read": 256 + 100, "reasoning": 64 + 40},
}
# Not on the spans (chainpulse cannot know it): the streamed o4-mini call's 40 reasoning tokens.
# (Reasoning is part of output, so cost is unaffected.)
LIBRARY_OMITS = {"o4-mini": {"reasoning": 40}}


def reported_tokens() -> dict:
    out = {}
    for model, t in TRUTH_TOKENS.items():
        t = dict(t)
        for k, v in LIBRARY_OMITS.get(model, {}).items():
            t[k] -= v
        out[model] = t
    return out


TOKENS = reported_tokens()

EXPECTED = {
    "service": SUITE,
    "requests": {CHAIN: {"total": 6, "failed": 1}},
    "llm_calls": {("gpt-4o-mini", "ok"): 8, ("gpt-4o-mini", "error"): 1, ("gpt-4o", "ok"): 2, ("o4-mini", "ok"): 2},
    "tokens": {(m, typ): n for m, t in TOKENS.items() for typ, n in t.items() if n},
    "cost": {m: expected_cost(m, **t) for m, t in TRUTH_TOKENS.items()},
    "errors": {("llm", "RateLimitError"): 1},
    # OpenLLMetry's task is a generic chain step (README: "What it understands").
    "runs": {"llm": 13, ("tool", "get_weather"): 1, ("agent", "weather_agent"): 1, "tool": 1, "agent": 1,
             ("chain", "classify"): 6, ("chain", "answer"): 5},
    "ttft": {"gpt-4o-mini": 1, "gpt-4o": 1, "o4-mini": 1},
    "usage_missing": {},
    "unpriced": {},
}

FAMILIES = ["requests", "llm_calls", "tokens", "cost", "errors", "runs", "ttft", "usage_missing"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    venv = harness.VENVS / SUITE / "bin" / "python"
    if not venv.exists():
        pytest.fail(f"{venv} missing: run scripts/setup-conformance.sh")
    c = harness.Conformance(tmp_path_factory.mktemp(SUITE))
    try:
        yield c.run(SUITE)
    finally:
        c.close()


def test_app_made_the_scripted_calls(run):
    """The workload itself (fakellm's record): guards the ground truth above."""
    got = [(c["model"], c["stream"], c["status"]) for c in run.calls]
    classify = ("gpt-4o-mini", False, 200)
    assert got == [
        classify, ("gpt-4o-mini", False, 200),
        classify, ("gpt-4o-mini", True, 200),
        classify, ("gpt-4o", False, 200), ("gpt-4o", True, 200),
        classify, ("gpt-4o-mini", False, 429),
        classify, ("o4-mini", False, 200),
        classify, ("o4-mini", True, 200),
    ]
    assert all(c["endpoint"] == "chat.completions" for c in run.calls)
    assert run.summary["results"] == ["ok", "ok", "ok", "RateLimitError", "ok", "ok"]
    served: dict = {}
    for c in run.calls:
        if c["usage"]:
            u = served.setdefault(c["model"], {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0})
            for k, src in (("input", "in"), ("output", "out"), ("cache_read", "cached"), ("reasoning", "reasoning")):
                u[k] += c["usage"][src]
    assert served == {m: {k: t.get(k, 0) for k in ("input", "output", "cache_read", "reasoning")}
                      for m, t in TRUTH_TOKENS.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_metrics(run, family):
    problems = run.check({"service": SUITE, family: EXPECTED[family]}, kpi=False)
    assert not problems, harness.format_problems(problems, f"{SUITE} /metrics {family}:")


def test_kpi_api(run):
    """The KPI API shows the same requests, failures, tokens and cost, and agrees with /metrics."""
    exp = {k: EXPECTED[k] for k in ("service", "requests", "tokens", "cost")}
    problems = harness.check_kpis(exp, run.metrics, run.kpis)
    assert not problems, harness.format_problems(problems, f"{SUITE} KPI API:")


def test_all_figures(run):
    """Every figure at once: the one diff to read when something is off."""
    run.assert_figures(EXPECTED)
