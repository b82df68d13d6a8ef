"""Conformance: one LCEL chain `qa_chain` (prompt | ChatOpenAI | parser) instrumented TWICE at once, by a framework
instrumentor and the provider SDK's instrumentor. Ground truth: 6 invocations, 6 provider calls, each ONE LLM call
with its usage (never two), 6 requests (never an extra request per SDK span).

  openinference: openinference-instrumentation-langchain + openinference-instrumentation-openai. OpenInference's
                 LangChain tracer never makes its span the current context, so each SDK span (`ChatCompletion`) is
                 the ROOT of a trace of its own: 6 extra root LLM spans describing the same 6 calls.
  openllmetry:   opentelemetry-instrumentation-langchain + opentelemetry-instrumentation-openai. The openai
                 instrumentation is suppressed under LangChain LLM spans: one span per call.
"""

from harness import expected_cost, fakellm_tokens

SUITE = "double_instrumentation"
CHAIN = "qa_chain"

CALLS = [("gpt-4o-mini", False, 200), ("gpt-4o-mini", True, 200), ("o4-mini", False, 200),
         ("gpt-4o-mini", False, 429), ("o4-mini", True, 200), ("gpt-4o-mini", True, 500)]
TOKENS = {
    ("gpt-4o-mini", "input"): 250 + 180, ("gpt-4o-mini", "output"): 40 + 30, ("gpt-4o-mini", "cache_read"): 100 + 60,
    ("o4-mini", "input"): 300 + 220, ("o4-mini", "output"): 120 + 70, ("o4-mini", "cache_read"): 20,
    ("o4-mini", "reasoning"): 80 + 30,
}

BASE = {
    "service": SUITE,
    "requests": {CHAIN: {"total": 6, "failed": 2}},
    "llm_calls": {("gpt-4o-mini", "ok"): 2, ("gpt-4o-mini", "error"): 2, ("o4-mini", "ok"): 2},
    "tokens": TOKENS,
    "cost": {
        "gpt-4o-mini": expected_cost("gpt-4o-mini", input=430, output=70, cache_read=160),
        "o4-mini": expected_cost("o4-mini", input=520, output=190, cache_read=20),
    },
    "runs": {"tool": 0, "agent": 0, "retriever": 0},
    "usage_missing": {},
    "unpriced": {},
}


def llm_error_problems(res) -> list[str]:
    """One failed LLM call per failure, whichever span's class it is labelled with: the LangChain span says
    OpenAIRateLimitError / OpenAIAPIError (langchain-openai's subclasses), the SDK span RateLimitError /
    InternalServerError."""
    got = res.metrics.group("chainpulse_errors_total", ("error_type",), kind="llm", service=SUITE)
    problems = []
    for names in (("OpenAIRateLimitError", "RateLimitError"), ("OpenAIAPIError", "InternalServerError")):
        n = sum(got.get(x, 0) for x in names)
        if n != 1:
            problems.append(f"errors{{kind=llm}} {' or '.join(names)}: expected 1, actual {n:g}")
    extra = {k: v for k, v in got.items() if k not in ("OpenAIRateLimitError", "RateLimitError", "OpenAIAPIError",
                                                        "InternalServerError")}
    if extra:
        problems.append(f"errors{{kind=llm}} not expected: {extra}")
    return problems


def _run(conformance, variant: str, ttft: dict, tokens: dict = TOKENS):
    res = conformance.run(SUITE, extra_env={"CONFORMANCE_VARIANT": variant})
    assert res.summary["variant"] == variant
    assert [(i["ok"], i["error"]) for i in res.summary["invocations"]] == [
        (True, None), (True, None), (True, None), (False, "OpenAIRateLimitError"), (True, None),
        (False, "OpenAIAPIError")]
    assert [(c["model"], c["stream"], c["status"]) for c in res.calls] == CALLS
    assert fakellm_tokens(res.calls) == TOKENS
    problems = res.check({**BASE, "ttft": ttft, "tokens": tokens}) + llm_error_problems(res)
    assert not problems, f"{len(problems)} figure(s) differ from the ground truth ({SUITE}/{variant}):\n  " + \
        "\n  ".join(problems)


def test_double_instrumentation_openinference(conformance, suite_venv):
    suite_venv(SUITE)
    # TTFT: the SDK span's `First Token Stream Event` on the 2 successful streamed calls
    _run(conformance, "openinference", {"gpt-4o-mini": 1, "o4-mini": 1})


def test_double_instrumentation_openllmetry(conformance, suite_venv):
    suite_venv(SUITE)
    # neither library sends TTFT here, and OpenLLMetry's LangChain span carries no reasoning count (output still
    # includes it): the 110 reasoning tokens cannot be reported
    _run(conformance, "openllmetry", {}, {k: v for k, v in TOKENS.items() if k[1] != "reasoning"})
