"""Conformance: opentelemetry-instrumentation-openai-v2 2.4b0 (OTEL_SEMCONV_STABILITY_OPT_IN=
gen_ai_latest_experimental, content captured on spans) around openai 3.57.0; app: suites/openai_v2/app.py.

Ground truth (what the app did; fakellm's usage): 8 requests `answer_question` (a manual root span each), 2 failed
(429 RateLimitError, 500 InternalServerError on a streamed call); 10 provider calls:
  gpt-4o-mini  ok x3 (plain 120/30, streamed 150/40, plain 220/35)   error x2 (429, 500)
  gpt-4o       ok x2 (tool call 180/25, then streamed answer 180/25)
  o4-mini      ok x2 (plain 200 in incl. 64 cached / 80 out incl. 32 reasoning; streamed 300/128 cached, 90/50)
  text-embedding-3-small  embeddings x1 (12 in) -- an embedding run, not an LLM call
What openai-v2 2.4b0 does not send (so chainpulse cannot report it; expectations follow the spans, see
LIBRARY_OMITS): cached tokens and reasoning tokens (the chat spans carry only gen_ai.usage.input_tokens /
output_tokens), time to first token (no gen_ai.response.time_to_first_chunk on spans), tool spans (the app runs the
tool itself; openai-v2 instruments only the SDK).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import expected_cost  # noqa: E402

SUITE = "openai_v2"
CHAIN = "answer_question"

# Ground-truth usage per model (input includes cached; output includes reasoning).
TRUTH_TOKENS = {
    "gpt-4o-mini": {"input": 120 + 150 + 220, "output": 30 + 40 + 35},
    "gpt-4o": {"input": 180 + 180, "output": 25 + 25},
    "o4-mini": {"input": 200 + 300, "output": 80 + 90, "cache_read": 64 + 128, "reasoning": 32 + 50},
    "text-embedding-3-small": {"input": 12},
}
# What the library does not put on its spans: chainpulse cannot know these, so the exact figures expected from it
# are the truth minus these. (Cost then prices the cached tokens as plain input.)
LIBRARY_OMITS = {"o4-mini": {"cache_read": 64 + 128, "reasoning": 32 + 50}}


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
    "requests": {CHAIN: {"total": 8, "failed": 2}},
    "llm_calls": {("gpt-4o-mini", "ok"): 3, ("gpt-4o-mini", "error"): 2, ("gpt-4o", "ok"): 2, ("o4-mini", "ok"): 2},
    "tokens": {(m, typ): n for m, t in TOKENS.items() for typ, n in t.items() if n},
    "cost": {m: expected_cost(m, **t) for m, t in TOKENS.items()},
    # The failed LLM runs by class (error.type arrives as "<class 'openai.RateLimitError'>"). The root span is a
    # plain manual span (kind left to chainpulse), so its failures are counted by `requests.failed` only.
    "errors": {("llm", "RateLimitError"): 1, ("llm", "InternalServerError"): 1},
    "runs": {"llm": 9, "embedding": 1, "tool": 0, "agent": 0},
    "ttft": {},  # openai-v2 2.4b0 puts no TTFT on its spans
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
    calls = [(c["endpoint"], c["model"], c["stream"], c["status"]) for c in run.calls]
    assert calls == [
        ("chat.completions", "gpt-4o-mini", False, 200),
        ("chat.completions", "gpt-4o-mini", True, 200),
        ("chat.completions", "gpt-4o", False, 200),
        ("chat.completions", "gpt-4o", True, 200),
        ("chat.completions", "gpt-4o-mini", False, 429),
        ("chat.completions", "o4-mini", False, 200),
        ("chat.completions", "o4-mini", True, 200),
        ("embeddings", "text-embedding-3-small", False, 200),
        ("chat.completions", "gpt-4o-mini", False, 200),
        ("chat.completions", "gpt-4o-mini", True, 500),
    ]
    assert run.summary["results"] == ["ok", "ok", "ok", "RateLimitError", "ok", "ok", "ok", "InternalServerError"]
    served = {}
    for c in run.calls:
        if c["usage"]:
            u = served.setdefault(c["model"], {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0})
            u["input"] += c["usage"]["in"]
            u["output"] += c["usage"]["out"]
            u["cache_read"] += c["usage"]["cached"]
            u["reasoning"] += c["usage"]["reasoning"]
    truth = {m: {k: t.get(k, 0) for k in ("input", "output", "cache_read", "reasoning")}
             for m, t in TRUTH_TOKENS.items()}
    truth["text-embedding-3-small"]["output"] = 0
    assert served == truth


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
