"""Conformance: the Langfuse Python SDK's own exporter (langfuse 5.0.4, OTel-based) with `@observe` and the
Langfuse OpenAI wrapper (`from langfuse.openai import openai`, openai 3.57.0), pointed at chainpulse as its
Langfuse host: LANGFUSE_HOST=http://127.0.0.1:<chainpulse OTLP/HTTP port>, dummy keys. The SDK posts OTLP/HTTP
protobuf, gzip, Basic auth, to `/api/public/otel/v1/traces` — the data MUST arrive and be counted.

App: suites/langfuse_exporter/app.py. 7 invocations: 6 x `@observe() answer_question` (observation type span),
1 x `@observe(as_type="agent") weather_agent` whose tool is `@observe(as_type="tool") get_weather`.
Provider calls: 8 = 4 ok gpt-4o-mini (one streamed, two for the tool round trip), 2 ok o4-mini (one streamed,
both with cached + reasoning tokens), 2 failed gpt-4o-mini (429 -> RateLimitError; streamed 500 ->
InternalServerError).

What the spans carry (see /work/briefs/findings-langfuse_exporter.md):
- `langfuse.observation.model.name` is the RESPONSE model (`gpt-4o-mini-2024-07-18`) on every successful call,
  streamed or not; the requested model is only on failed calls. Expected label: the requested model.
- `langfuse.observation.usage_details` is OpenAI's raw usage JSON (prompt_tokens incl. cached, completion_tokens
  incl. reasoning, nested *_tokens_details); ground truth input includes cached, output includes reasoning.
- no exception class anywhere: only `langfuse.observation.status_message` = str(exc) = "Error code: 429 - ...".
  Expected error type: the class the OpenAI SDK raises for that status (429 -> RateLimitError, 5xx ->
  InternalServerError: the Stainless SDKs' fixed status->class map); see the findings.
- TTFT: `langfuse.observation.completion_start_time` on streamed generations only.
"""

from __future__ import annotations

import pytest

import harness

SUITE = "langfuse_exporter"

USAGE = {
    ("answer_question", "gpt-4o-mini"): {"input": 120 + 150, "output": 40 + 30, "cache_read": 32 + 64,
                                         "reasoning": 0},
    ("weather_agent", "gpt-4o-mini"): {"input": 90 + 90, "output": 15 + 15, "cache_read": 0, "reasoning": 0},
    ("answer_question", "o4-mini"): {"input": 200 + 180, "output": 60 + 50, "cache_read": 50 + 96,
                                     "reasoning": 24 + 16},
}

EXPECTED = {
    "service": None,  # Langfuse sets no service.name of ours (the SDK's resource); all series are this app's
    "requests": {"answer_question": {"total": 6, "failed": 2}, "weather_agent": {"total": 1, "failed": 0}},
    "llm_calls": {
        ("answer_question", "gpt-4o-mini", "ok"): 2,
        ("answer_question", "gpt-4o-mini", "error"): 2,
        ("weather_agent", "gpt-4o-mini", "ok"): 2,
        ("answer_question", "o4-mini", "ok"): 2,
    },
    "tokens": {(c, m, t): v for (c, m), u in USAGE.items() for t, v in u.items() if v},
    "cost": {key: harness.expected_cost(key[1], **u) for key, u in USAGE.items()},
    "errors": {("llm", "RateLimitError"): 1, ("llm", "InternalServerError"): 1,
               ("chain", "RateLimitError"): 1, ("chain", "InternalServerError"): 1},
    "runs": {"llm": 8, ("tool", "get_weather"): 1, "tool": 1, ("agent", "weather_agent"): 1, "agent": 1,
             "retriever": 0},
    "ttft": {"gpt-4o-mini": 1, "o4-mini": 1},
    "usage_missing": {},
    "unpriced": {},
}
del EXPECTED["service"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    res = harness.run_tolerant(SUITE, tmp_path_factory.mktemp(SUITE), lambda cp: {"LANGFUSE_HOST": cp.otlp_http})
    try:
        yield res
    finally:
        res.conformance.close()


def test_workload_ground_truth(result):
    served = {}
    for c in result.calls:
        key = (c["model"], c["stream"], c["status"])
        served[key] = served.get(key, 0) + 1
    assert served == {("gpt-4o-mini", False, 200): 3, ("gpt-4o-mini", True, 200): 1, ("o4-mini", False, 200): 1,
                      ("o4-mini", True, 200): 1, ("gpt-4o-mini", False, 429): 1, ("gpt-4o-mini", True, 500): 1}
    by_model: dict = {}
    for c in result.calls:
        if c["status"] == 200:
            t = by_model.setdefault(c["model"], {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0})
            for k, f in (("input", "in"), ("output", "out"), ("cache_read", "cached"), ("reasoning", "reasoning")):
                t[k] += c["usage"][f]
    want: dict = {}
    for (_, model), u in USAGE.items():
        t = want.setdefault(model, {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0})
        for k in t:
            t[k] += u[k]
    assert by_model == want
    assert [i["error"] for i in result.summary["invocations"] if not i["ok"]] == ["RateLimitError",
                                                                                   "InternalServerError"]
    assert result.summary.get("export_failures", 0) == 0 or result.settle_error, result.summary


def test_figures(result):
    """The Langfuse SDK's export arrives, and the figures are exact in /metrics and the KPI API."""
    problems = harness.check_figures(EXPECTED, result.metrics, result.kpis)
    rejected = result.metrics.group("chainpulse_otlp_requests_rejected_total", ("protocol", "reason"))
    rejected = {k: v for k, v in rejected.items() if v}
    if result.settle_error or problems or rejected:
        head = []
        if result.settle_error:
            head.append(f"the Langfuse export did not arrive: {result.settle_error}")
        if rejected:
            head.append(f"chainpulse rejected export requests: {rejected}")
        head.append(f"app exported {result.summary.get('spans_exported')} span(s), "
                    f"{result.summary.get('export_failures')} failed")
        pytest.fail(harness.format_problems(problems, "\n".join(head) + f"\n{len(problems)} figure(s) differ:"))
