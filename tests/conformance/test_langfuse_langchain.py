"""Conformance: Langfuse's LangChain CallbackHandler (`langfuse.langchain.CallbackHandler`, langfuse 5.0.4) on
LangChain (langchain-core 1.8.3, langchain-openai 1.7.4 ChatOpenAI with max_retries=0, openai 3.57.0), exporting
through the Langfuse SDK's own OTLP exporter to chainpulse as its Langfuse host
(`/api/public/otel/v1/traces`, gzip protobuf, Basic auth from dummy keys).

App: suites/langfuse_langchain/app.py. 6 invocations with LangChain run_name = the chain label:
5 x `qa_chain` (LCEL ChatPromptTemplate | ChatOpenAI | StrOutputParser; 2 streamed with streaming=True and
stream_usage=True; o4-mini twice with cached + reasoning tokens; one 429), 1 x `weather_agent` (a RunnableLambda:
ChatOpenAI.bind_tools -> the `get_weather` tool -> ChatOpenAI again).
Provider calls: 7 = 4 ok gpt-4o-mini, 2 ok o4-mini, 1 failed gpt-4o-mini (429; langchain-openai raises
`OpenAIRateLimitError`, a subclass of openai.RateLimitError).

What the spans carry (see /work/briefs/findings-langfuse_langchain.md):
- `langfuse.observation.usage_details` = {"input": prompt - cached, "output": completion - reasoning, "total",
  "input_cache_read", "output_reasoning", "input_audio", "output_audio"}: the handler SUBTRACTS cached tokens from
  input and reasoning tokens from output. Ground truth: input includes cached, output includes reasoning.
- `langfuse.observation.model.name` = the response snapshot on non-streamed calls, the requested model on streamed
  ones; `langfuse.observation.metadata.ls_model_name` = the requested model on all. Expected label: requested.
- no exception class: `status_message` = str(exc) = "Error code: 429 - ...". Expected error type RateLimitError
  (the OpenAI SDK's class for 429; the subclass name OpenAIRateLimitError is not recoverable); see the findings.
- TTFT: `completion_start_time` on streamed generations only. Langfuse types: root chain `qa_chain` = chain,
  `weather_agent` = agent (Langfuse: a run whose name contains "agent"), ChatPromptTemplate / StrOutputParser =
  chain (chainpulse: prompt / parser by name), get_weather = tool.
"""

from __future__ import annotations

import pytest

import harness

SUITE = "langfuse_langchain"

USAGE = {
    ("qa_chain", "gpt-4o-mini"): {"input": 120 + 150, "output": 40 + 30, "cache_read": 32 + 64, "reasoning": 0},
    ("weather_agent", "gpt-4o-mini"): {"input": 90 + 90, "output": 15 + 15, "cache_read": 0, "reasoning": 0},
    ("qa_chain", "o4-mini"): {"input": 200 + 180, "output": 60 + 50, "cache_read": 50 + 96, "reasoning": 24 + 16},
}

EXPECTED = {
    "requests": {"qa_chain": {"total": 5, "failed": 1}, "weather_agent": {"total": 1, "failed": 0}},
    "llm_calls": {
        ("qa_chain", "gpt-4o-mini", "ok"): 2,
        ("qa_chain", "gpt-4o-mini", "error"): 1,
        ("weather_agent", "gpt-4o-mini", "ok"): 2,
        ("qa_chain", "o4-mini", "ok"): 2,
    },
    "tokens": {(c, m, t): v for (c, m), u in USAGE.items() for t, v in u.items() if v},
    "cost": {key: harness.expected_cost(key[1], **u) for key, u in USAGE.items()},
    "errors": {("llm", "RateLimitError"): 1, ("chain", "RateLimitError"): 1},
    "runs": {"llm": 7, ("tool", "get_weather"): 1, "tool": 1, ("agent", "weather_agent"): 1, "agent": 1,
             "prompt": 5, "parser": 4, "retriever": 0},
    "ttft": {"gpt-4o-mini": 1, "o4-mini": 1},
    "usage_missing": {},
    "unpriced": {},
}


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
                      ("o4-mini", True, 200): 1, ("gpt-4o-mini", False, 429): 1}
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
    assert [i["error"] for i in result.summary["invocations"] if not i["ok"]] == ["OpenAIRateLimitError"]


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
