"""Conformance: langchain-anthropic ChatAnthropic (prompt caching: cache reads, 5-minute and 1-hour cache writes) in
an LCEL chain `support_answer`, traced by openinference-instrumentation-langchain. Ground truth: 6 invocations, 6
provider calls (2 streamed, 2 failed). Input includes cache reads and writes (Anthropic's raw input_tokens exclude
them); 5-minute and 1-hour cache writes are both cache writes (langchain-anthropic's usage_metadata reports the split with
`cache_creation` 0, so a reader of input_token_details alone charges the writes as plain input).

Two runs of the same app:
  test_anthropic_langchain                  ANTHROPIC_OPEN_TELEMETRY=false: the LangChain instrumentation alone
  test_anthropic_langchain_sdk_tracing_on   the anthropic SDK's own OpenTelemetry tracing left on (its default in
                                            anthropic 2.x): every provider call is ALSO an `anthropic.messages.create`
                                            span in a separate trace -> still 6 requests and 6 LLM calls.
"""

from harness import expected_cost, fakellm_tokens

SUITE = "anthropic_langchain"
CHAIN = "support_answer"
MODEL = "claude-sonnet-4-5"

CALLS = [(MODEL, False, 200), (MODEL, False, 200), (MODEL, True, 200), (MODEL, True, 200), (MODEL, False, 429),
         (MODEL, True, 500)]
# fakellm usage per call (OpenAI-style `in` = the whole prompt incl. cache reads and writes):
#   2000 (read 1500, write 5m 300) out 50 | 3000 (write 1h 2500) out 40 | 4000 (read 1000, write 5m 1000 + 1h 1500)
#   out 80 | 1200 (read 1000) out 30
TOKENS = {
    (MODEL, "input"): 2000 + 3000 + 4000 + 1200,
    (MODEL, "output"): 50 + 40 + 80 + 30,
    (MODEL, "cache_read"): 1500 + 1000 + 1000,
    (MODEL, "cache_write"): 300 + 2500 + 2500,
}
COST = expected_cost(MODEL, input=10200, output=200, cache_read=3500, cache_write=5300)  # = 0.03015

EXPECTED = {
    "service": SUITE,
    "requests": {CHAIN: {"total": 6, "failed": 2}},
    "llm_calls": {(MODEL, "ok"): 4, (MODEL, "error"): 2},
    "tokens": TOKENS,
    "cost": {MODEL: COST},
    # langchain-anthropic re-raises anthropic.RateLimitError / InternalServerError as AnthropicRateLimitError /
    # AnthropicAPIError: the classes the app catches.
    "errors": {("llm", "AnthropicRateLimitError"): 1, ("llm", "AnthropicAPIError"): 1,
               ("chain", "AnthropicRateLimitError"): 1, ("chain", "AnthropicAPIError"): 1},
    "runs": {"llm": 6, "prompt": 6, "parser": 4, "tool": 0, "agent": 0},
    "ttft": {},  # OpenInference's LangChain tracer exports no streaming events
    "usage_missing": {},
    "unpriced": {},
}


def _check_ground_truth(res) -> None:
    assert [(i["ok"], i["error"]) for i in res.summary["invocations"]] == [
        (True, None), (True, None), (True, None), (True, None), (False, "AnthropicRateLimitError"),
        (False, "AnthropicAPIError")]
    assert [(c["model"], c["stream"], c["status"]) for c in res.calls] == CALLS
    assert fakellm_tokens(res.calls) == TOKENS
    # the 5-minute / 1-hour split fakellm sent
    assert [(c["usage"]["cw5m"], c["usage"]["cw1h"]) for c in res.calls if c["usage"]] == [
        (300, 0), (0, 2500), (1000, 1500), (0, 0)]


def test_anthropic_langchain(conformance, suite_venv):
    suite_venv(SUITE)
    res = conformance.run(SUITE, extra_env={"ANTHROPIC_OPEN_TELEMETRY": "false"})
    _check_ground_truth(res)
    res.assert_figures(EXPECTED)


def test_anthropic_langchain_sdk_tracing_on(conformance, suite_venv):
    suite_venv(SUITE)
    res = conformance.run(SUITE)
    _check_ground_truth(res)
    expected = dict(EXPECTED)
    # the SDK's spans carry gen_ai.response.time_to_first_chunk on the 2 successful streamed calls
    expected["ttft"] = {MODEL: 2}
    # the SDK span's error.type is Anthropic's error code (rate_limit_error / api_error), not a class: only the
    # LangChain classes are ground truth, one per failed call
    # runs_total counts spans: the SDK's own span is a second LLM-kind step beneath LangChain's (llm_calls still
    # counts the call once)
    expected["runs"] = {**EXPECTED["runs"], "llm": 12}
    res.assert_figures(expected)
