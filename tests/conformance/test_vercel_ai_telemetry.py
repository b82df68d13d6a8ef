"""Conformance: Vercel AI SDK 6.0.325 `experimental_telemetry: { isEnabled: true, functionId }` (the SDK's own
`ai.*` spans) with @ai-sdk/openai 3.0.141 (`openai.chat` = Chat Completions), exported by the OpenTelemetry JS SDK
(sdk-trace-node 2.12.1, exporter-trace-otlp-proto 0.223.1) over OTLP/HTTP protobuf; app: suites/vercel_ai_telemetry/app.mjs.

Ground truth (vercel_ai_common.PLAN; usage from fakellm's records): 7 requests, one per AI SDK call (no manual
root span: the ai.generateText / ai.streamText / ai.embed span is the root), chain = the call's functionId:
  weather-agent x1 (tool round trip: 2 gpt-4o-mini calls 120/30 each + 1 `get_weather` tool run)
  summarize     x2 (o4-mini 200 in incl. 64 cached / 50 out incl. 16 reasoning; gpt-4o-mini 429 -> failed)
  chat-stream   x3 (streamed gpt-4o-mini 80/25 and 150 incl. 100 cached / 20; a streamed 500 -> failed)
  embed-docs    x1 (text-embedding-3-small, 12 in: an embedding run, not an LLM call)
LLM calls = the ai.*.doGenerate / ai.*.doStream spans (7); the outer ai.generateText / ai.streamText span repeats
the summed usage and is NOT a call. Error class `APICallError` (exception.type says `AI_APICallError`). TTFT on
the 2 successful streamed calls (`ai.response.msToFirstChunk`, milliseconds).
The library sends everything needed here: nothing is subtracted from the ground truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import vercel_ai_common as common  # noqa: E402

SUITE = "vercel_ai_telemetry"
# runs_total by kind (PARTIAL): the 7 doGenerate/doStream spans are the LLM runs; the one ai.toolCall is the tool
# run; the roots (ai.generateText / ai.streamText / ai.embed, the app's named calls) are chain runs; no agent
# or retriever spans exist.
RUNS = {"llm": 7, ("tool", "get_weather"): 1, "tool": 1, "chain": 7, "agent": 0, "retriever": 0}


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    d = harness.suite_dir(SUITE)
    if not (d / "node_modules").is_dir():
        pytest.fail(f"{d / 'node_modules'} missing: run scripts/setup-conformance.sh")
    c = harness.Conformance(tmp_path_factory.mktemp(SUITE))
    try:
        yield c.run(SUITE)
    finally:
        c.close()


@pytest.fixture(scope="module")
def expected(res):
    return common.expected_figures(SUITE, res.calls, reasoning_reported=True, runs=dict(RUNS),
                                   root_error_kind="chain")


def _only(expected: dict, *families: str) -> dict:
    return {k: v for k, v in expected.items() if k == "service" or k in families}


def _assert(problems: list[str]) -> None:
    assert not problems, harness.format_problems(problems)


def test_app_did_the_plan(res):
    common.calls_by_invocation(res.calls)
    _assert(common.app_problems(res))


def test_requests_per_chain(res, expected):
    _assert(res.check(_only(expected, "requests"), kpi=False))


def test_llm_calls_per_model_and_status(res, expected):
    _assert(res.check(_only(expected, "llm_calls"), kpi=False))


def test_tokens_every_type(res, expected):
    _assert(res.check(_only(expected, "tokens"), kpi=False))


def test_cost(res, expected):
    _assert(res.check(_only(expected, "cost", "usage_missing", "unpriced"), kpi=False))


def test_error_class(res, expected):
    _assert(res.check(_only(expected, "errors"), kpi=False))


def test_runs_by_kind(res, expected):
    _assert(res.check(_only(expected, "runs"), kpi=False))


def test_time_to_first_token(res, expected):
    _assert(res.check(_only(expected, "ttft"), kpi=False) + common.ttft_problems(res, SUITE))


def test_kpi_api_matches_truth_and_metrics(res, expected):
    _assert(harness.check_kpis(expected, res.metrics, res.kpis))
