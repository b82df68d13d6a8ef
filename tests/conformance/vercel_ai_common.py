"""Shared ground truth and checks of the two Vercel AI SDK suites (owner: the vercel_ai_* suite owner).

    vercel_ai_telemetry   ai 6.0.325, `experimental_telemetry` -> the SDK's own `ai.*` spans (Chat Completions)
    vercel_ai_otel        ai 7.0.173 + @ai-sdk/otel 1.0.173 `registerTelemetry(new OpenTelemetry())` -> GenAI
                          semconv spans (Responses API)

Both apps (suites/<suite>/app.mjs) run the same 7 invocations; the expected figures are computed from fakellm's
record of every provider call (the usage it returned) and the fixed plan below, never from what chainpulse says.

Capture (through harness.CaptureSink, which reads the JS exporter's chunked bodies; this adds the expected figures
to the truth file):
    .venv/bin/python tests/conformance/vercel_ai_common.py capture vercel_ai_telemetry|vercel_ai_otel
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

# invocation -> (chain = the app's telemetry.functionId, provider calls, endpoint kind, model, stream, outcome)
PLAN = [
    # inv, chain,           calls, api,          model,                    stream, http status
    (1, "weather-agent", 2, "chat", "gpt-4o-mini", False, 200),    # tool round trip: tool call, then text
    (2, "summarize", 1, "chat", "o4-mini", False, 200),            # cached 64 + reasoning 16
    (3, "chat-stream", 1, "chat", "gpt-4o-mini", True, 200),       # TTFT (delay 80 ms)
    (4, "chat-stream", 1, "chat", "gpt-4o-mini", True, 200),       # TTFT (delay 40 ms), cached 100
    (5, "summarize", 1, "chat", "gpt-4o-mini", False, 429),        # RateLimit, maxRetries 0
    (6, "chat-stream", 1, "chat", "gpt-4o-mini", True, 500),       # server error on a stream, maxRetries 0
    (7, "embed-docs", 1, "embeddings", "text-embedding-3-small", False, 200),
]
# The JS class of every provider HTTP error in the AI SDK (error.name / exception.type say "AI_APICallError").
ERROR_CLASS = "APICallError"
MIN_TTFT_S = (80 + 40) / 1000  # the scripted server delays before the first chunk of invocations 3 and 4


def calls_by_invocation(calls: list[dict]) -> list[tuple[tuple, dict]]:
    """Zip fakellm's calls (in order: the app runs sequentially) with the plan; asserts they match it."""
    plan_calls = [p for p in PLAN for _ in range(p[2])]
    assert len(calls) == len(plan_calls), f"fakellm served {len(calls)} calls, plan has {len(plan_calls)}: {calls}"
    out = []
    for p, c in zip(plan_calls, calls):
        inv, chain, _n, api, model, stream, status = p
        want_endpoint = "embeddings" if api == "embeddings" else None
        if want_endpoint:
            assert c["endpoint"] == "embeddings", (p, c)
        else:
            assert c["endpoint"] in ("chat.completions", "responses"), (p, c)
        assert (c["model"], bool(c["stream"]), c["status"]) == (model, stream, status), (p, c)
        out.append((p, c))
    return out


def expected_figures(suite: str, calls: list[dict], reasoning_reported: bool, runs: dict,
                     root_error_kind: str | None = None, chain_on_wire: dict | None = None) -> dict:
    """The exact figures chainpulse must report for this run (harness.check_figures shape), from fakellm's calls.

    reasoning_reported: False when the library does not put reasoning tokens on its spans (then chainpulse cannot
    report them; output tokens still include them). runs: the PARTIAL runs_total expectations by kind.
    root_error_kind: the kind the failed requests' root run has (its errors_total series is checked too).
    chain_on_wire: {app's functionId: chain name} where the library drops the functionId from the spans."""
    rename = chain_on_wire or {}
    requests: dict = {}
    for inv, chain, _n, _api, _model, _stream, status in PLAN:
        chain = rename.get(chain, chain)
        r = requests.setdefault(chain, {"total": 0, "failed": 0})
        r["total"] += 1
        r["failed"] += status != 200
    llm_calls: dict = {}
    tokens: dict = {}
    per_chain_model_tokens: dict = {}
    errors = 0
    ttft: dict = {}
    for (inv, chain, _n, api, model, stream, status), c in calls_by_invocation(calls):
        chain = rename.get(chain, chain)
        if api != "embeddings":
            key = (chain, model, "ok" if status == 200 else "error")
            llm_calls[key] = llm_calls.get(key, 0) + 1
            if status != 200:
                errors += 1
            elif stream:
                ttft[model] = ttft.get(model, 0) + 1
        u = c.get("usage")
        if status != 200:
            assert u is None, c
            continue
        assert u is not None, c
        t = per_chain_model_tokens.setdefault((chain, model), {"input": 0, "output": 0, "cache_read": 0,
                                                               "cache_write": 0, "reasoning": 0})
        t["input"] += u["in"]
        t["output"] += u["out"]
        t["cache_read"] += u["cached"]
        t["cache_write"] += u["cache_write"]
        if reasoning_reported:
            t["reasoning"] += u["reasoning"]
    cost = {}
    for (chain, model), t in per_chain_model_tokens.items():
        for typ, v in t.items():
            if v:
                tokens[(chain, model, typ)] = v
        cost[(chain, model)] = harness.expected_cost(model, **t)
    return {
        "service": suite,
        "requests": requests,
        "llm_calls": llm_calls,
        "tokens": tokens,
        "cost": cost,
        "errors": {("llm", ERROR_CLASS): errors,
                   **({(root_error_kind, ERROR_CLASS): errors} if root_error_kind else {})},
        "runs": runs,
        "ttft": ttft,
        "usage_missing": {},
        "unpriced": {},
    }


def ttft_problems(res, suite: str) -> list[str]:
    """TTFT values are real timings: each at least the scripted delay, and seconds (not milliseconds)."""
    m = res.metrics
    total = m.sum("chainpulse_llm_time_to_first_token_seconds_sum", service=suite)
    count = m.sum("chainpulse_llm_time_to_first_token_seconds_count", service=suite)
    problems = []
    if count and not (MIN_TTFT_S <= total <= 10.0):
        problems.append(f"ttft_sum       seconds over {int(count)} streamed calls: {total:.6g}, expected between "
                        f"{MIN_TTFT_S} (the scripted delays) and 10 (a unit error would give ~1000x)")
    return problems


def app_problems(res) -> list[str]:
    """The app did what the plan says: outcomes per invocation and the error class it saw."""
    got = [(i["invocation"], i["chain"], i["ok"], i.get("error"), i.get("status_code"))
           for i in res.summary["invocations"]]
    want = [(inv, chain, status == 200, None if status == 200 else ERROR_CLASS, None if status == 200 else status)
            for inv, chain, _n, _a, _m, _s, status in PLAN]
    return [] if got == want else [f"app invocations {got} != plan {want}"]


# ----------------------------------------------------------------------------------------------- capture

def capture(suite: str) -> None:
    """Run the app against fakellm + the capture sink; write <suite>.json and <suite>.truth.json (with the
    expected figures, which `harness.py capture` does not compute)."""
    import tempfile
    work = Path(tempfile.mkdtemp(prefix=f"capture-{suite}-"))
    fake = harness.Fakellm(work)
    sink = harness.CaptureSink()
    try:
        app = harness.run_app(suite, fake.url, sink.endpoint)
        exported = int(app.summary.get("spans_exported") or 0)
        deadline = time.monotonic() + 10
        while sink.span_count() < exported and time.monotonic() < deadline:
            time.sleep(0.1)
        reqs = harness.decode_captures(sink)
        calls = fake.calls()
    finally:
        sink.stop()
        fake.stop()
    spans = sum(len(s.get("spans", [])) for r in reqs for rs in r.get("resourceSpans", [])
                for s in rs.get("scopeSpans", []))
    out = harness.FIXTURES_DIR / f"{suite}.json"
    harness.FIXTURES_DIR.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(reqs, indent=1, ensure_ascii=False) + "\n")
    truth = dict(app.summary["truth"])
    exp = expected_figures(suite, calls, reasoning_reported=True, runs={})
    truth["ground_truth_figures"] = {
        "requests": exp["requests"],
        "llm_calls": [{"chain": k[0], "model": k[1], "status": k[2], "n": v} for k, v in exp["llm_calls"].items()],
        "tokens": [{"chain": k[0], "model": k[1], "type": k[2], "n": v} for k, v in exp["tokens"].items()],
        "cost_usd_at_test_prices": [{"chain": k[0], "model": k[1], "usd": v} for k, v in exp["cost"].items()],
        "embedding_calls": 1,
        "error_class": ERROR_CLASS,
        "ttft_observations": exp["ttft"],
    }
    truth["fakellm_calls"] = [{k: c.get(k) for k in ("endpoint", "model", "response_model", "stream", "status",
                                                      "error_type", "tool_calls", "usage")} for c in calls]
    (harness.FIXTURES_DIR / f"{suite}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"capture {suite}: {len(reqs)} export request(s), {spans} span(s), app said spans_exported={exported}, "
          f"{len(calls)} provider call(s), app {app.seconds:.1f}s; wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "capture":
        sys.exit("usage: vercel_ai_common.py capture <suite>")
    capture(sys.argv[2])
