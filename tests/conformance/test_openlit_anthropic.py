"""Conformance: OpenLIT (openlit 1.45.0) auto-instrumenting the Anthropic Python SDK (anthropic 0.125.0, the
newest release openlit 1.45.0 allows: it pins anthropic<1) against fakellm's /v1/messages.

App: suites/openlit_anthropic/app.py. 6 invocations of the `@openlit.trace` function `ask_claude` (chain label
`ask_claude`), one provider call each, model `claude-haiku-4-5` (fakellm answers `claude-haiku-4-5-20250219`):
3 non-streamed with cache traffic (a cache read; a 5-minute cache write; a 1-hour cache write plus a read),
1 streamed with messages.create(stream=True), 1 streamed with the messages.stream() helper, 1 rate limited
(429 -> anthropic.RateLimitError).

The trap: OpenLIT reports Anthropic's raw `input_tokens`, which EXCLUDES cache reads and writes, in
`gen_ai.usage.input_tokens` (with `gen_ai.usage.cache_read.input_tokens` / `cache_creation.input_tokens` beside
it). Ground truth input INCLUDES them: 5400, of which 1500 cache reads and 2200 cache writes (1200 5-minute +
1000 1-hour; OpenLIT sends only their sum, so both are plain cache writes here).
The failed call's span carries NO attributes at all (only its name `chat claude-haiku-4-5`, status ERROR and an
`exception` event `anthropic.RateLimitError`): it is still one LLM call of model claude-haiku-4-5.
The streamed calls carry no cache tokens on purpose (see the findings: OpenLIT resets its cache counts from the
`message_delta` event's usage, which carries only output_tokens in fakellm as in Anthropic's documented example).
"""

from __future__ import annotations

import pytest

import harness

ASSEMBLY_ENV = {"CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS": "5000"}

SUITE = "openlit_anthropic"
MODEL = "claude-haiku-4-5"
CHAIN = "ask_claude"

# Ground truth (fakellm's usage, OpenAI convention): input includes cache reads + writes.
USAGE = {"input": 1200 + 1500 + 2000 + 300 + 400, "output": 50 + 40 + 60 + 45 + 30,
         "cache_read": 1000 + 500, "cache_write": 1200 + 1000}

EXPECTED = {
    "service": SUITE,
    "requests": {CHAIN: {"total": 6, "failed": 1}},
    "llm_calls": {(CHAIN, MODEL, "ok"): 5, (CHAIN, MODEL, "error"): 1},
    "tokens": {(CHAIN, MODEL, t): v for t, v in USAGE.items()},
    "cost": {(CHAIN, MODEL): harness.expected_cost(MODEL, **USAGE)},
    "errors": {("llm", "RateLimitError"): 1, ("chain", "RateLimitError"): 1},
    "runs": {"llm": 6, "tool": 0, "retriever": 0, "agent": 0},
    "ttft": {MODEL: 2},
    "usage_missing": {},
    "unpriced": {},
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    # A longer assembly timeout than the harness's 1 s: on a loaded machine the root's export batch can come more
    # than 1 s after its children's, and chainpulse then counts an inferred root AND the late root (see findings).
    with harness.Conformance(tmp_path_factory.mktemp(SUITE), chainpulse_env=ASSEMBLY_ENV) as c:
        yield c.run(SUITE)


def test_workload_ground_truth(result):
    """fakellm served exactly the scripted workload, with Anthropic-style usage on the wire."""
    calls = result.calls
    assert [(c["endpoint"], c["model"], c["stream"], c["status"]) for c in calls] == (
        [("messages", MODEL, False, 200)] * 3 + [("messages", MODEL, True, 200)] * 2 + [("messages", MODEL, False, 429)])
    ok = [c for c in calls if c["status"] == 200]
    assert sum(c["usage"]["in"] for c in ok) == USAGE["input"]
    assert sum(c["usage"]["out"] for c in ok) == USAGE["output"]
    assert sum(c["usage"]["cached"] for c in ok) == USAGE["cache_read"]
    assert sum(c["usage"]["cache_write"] for c in ok) == USAGE["cache_write"]
    assert sum(c["usage"]["cw1h"] for c in ok) == 1000
    # what OpenLIT will see as input_tokens: the raw Anthropic count, without cache tokens
    assert sum(c["usage_wire"]["input_tokens"] for c in ok) == 200 + 300 + 500 + 300 + 400
    assert [i["error"] for i in result.summary["invocations"] if not i["ok"]] == ["RateLimitError"]


def test_figures(result):
    """Exact figures in /metrics and the KPI API (and both agree)."""
    result.assert_figures(EXPECTED)
