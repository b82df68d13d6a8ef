"""App-side code shared by the conformance suite's Python apps (tests/conformance/suites/<suite>/app.py).

IMPORTS: the standard library, harness.py (stdlib only) and, inside functions, opentelemetry-sdk + the OTLP/HTTP
exporter, which every suite venv has. Nothing library-specific: that stays in each app. An app imports it by path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
    import appkit

Pieces:
  setup_tracing(default_service, set_global=)  TracerProvider + BatchSpanProcessor(CountingSpanExporter(OTLP/HTTP))
  counting_exports(provider) / counting_langfuse_exports(lf)  count what a library's own exporter sends
  invoke_all(workload, run, record)            the invocation loop; an exception's class is the invocation's error
  finish(provider, **summary)                  flush + shut down the provider, print the JSON summary line
  usage_of(prompt)                             the usage fakellm answers for a prompt's [[usage:...]] marker
  scripted_calls / truth_of                    ground truth of a (prompt, model, stream) workload (LangChain apps)
  build_truth(rows, ...)                       ground truth of a (chain, model, stream, prompt) workload
  fakellm_truth()                              the provider side's truth from fakellm's GET /stats
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance: harness (stdlib only)
from harness import CountingSpanExporter, print_summary  # noqa: E402,F401  (re-exported for the apps)

# ----------------------------------------------------------------------------------------------- tracing


def setup_tracing(default_service: str, set_global: bool = False):
    """A TracerProvider (resource service.name = $OTEL_SERVICE_NAME or `default_service`) exporting OTLP/HTTP to
    $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces through a CountingSpanExporter. Returns (provider, exporter)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    service = os.environ.get("OTEL_SERVICE_NAME", default_service)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = CountingSpanExporter(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if set_global:
        from opentelemetry import trace as trace_api
        trace_api.set_tracer_provider(provider)
    return provider, exporter


def counting_exports(provider) -> list:
    """Wrap the exporter of each batch/simple span processor of an SDK TracerProvider (one a library made, e.g.
    openlit.init) in CountingSpanExporter, so the summary can say how many spans were exported."""
    counters = []
    for proc in getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ()):
        inner = getattr(proc, "_batch_processor", None)
        if inner is not None and hasattr(inner, "_exporter"):
            inner._exporter = CountingSpanExporter(inner._exporter)
            counters.append(inner._exporter)
        elif hasattr(proc, "span_exporter"):
            proc.span_exporter = CountingSpanExporter(proc.span_exporter)
            counters.append(proc.span_exporter)
    return counters


def counting_langfuse_exports(lf) -> list:
    """Wrap the exporter inside Langfuse's own LangfuseSpanProcessor (its OTLP exporter to
    <host>/api/public/otel/v1/traces, untouched otherwise) in CountingSpanExporter, so the summary can say how many
    spans were exported. Best effort: returns [] when the SDK's internals differ."""
    counters = []
    provider = getattr(getattr(lf, "_resources", None), "tracer_provider", None)
    for proc in getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ()):
        inner = getattr(proc, "_batch_processor", None)
        if type(proc).__name__ == "LangfuseSpanProcessor" and inner is not None and hasattr(inner, "_exporter"):
            inner._exporter = CountingSpanExporter(inner._exporter)
            counters.append(inner._exporter)
    return counters


def invoke_all(workload, run, record) -> list[dict]:
    """For each item: rec = record(item); run(item); an exception marks rec ok=False with its class name as the
    error (failures are part of the workload). Returns the records, in order."""
    results = []
    for item in workload:
        rec = record(item)
        try:
            run(item)
        except Exception as exc:  # noqa: BLE001 - the error class is the point
            rec.update(ok=False, error=type(exc).__name__)
        results.append(rec)
    return results


def finish(provider, **summary) -> None:
    """Flush and shut down the tracer provider, then print the summary as the last stdout line."""
    provider.force_flush()
    provider.shutdown()
    print_summary(**summary)


# ----------------------------------------------------------------------------------------------- ground truth

USAGE_DEFAULTS = {"in": 100, "cached": 0, "out": 20, "reasoning": 0, "cache_write": 0, "cw5m": 0, "cw1h": 0}


def usage_of(prompt: str) -> dict:
    """The usage fakellm answers for this prompt's [[usage:...]] marker (its defaults and cw5m/cw1h rule)."""
    u = dict(USAGE_DEFAULTS)
    m = re.search(r"\[\[usage:(.*?)\]\]", prompt)
    given = dict((k.strip(), int(v)) for k, v in (kv.split("=") for kv in m.group(1).split(","))) if m else {}
    u.update(given)
    if ("cw5m" in given or "cw1h" in given) and "cache_write" not in given:
        u["cache_write"] = u["cw5m"] + u["cw1h"]
    return u


def _new_tokens() -> dict:
    return {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0, "reasoning": 0}


def _add_usage(t: dict, u: dict, n: int = 1) -> None:
    """Add n calls of fakellm usage u to chainpulse-style totals t (input incl. cached, output incl. reasoning)."""
    t["input"] += n * u["in"]
    t["output"] += n * u["out"]
    t["cache_read"] += n * u["cached"]
    t["cache_write"] += n * u["cache_write"]
    t["reasoning"] += n * u["reasoning"]


def scripted_calls(prompt: str, model: str, stream: bool) -> list[dict]:
    """The provider calls one invocation makes: a failure marker = 1 failed call; a tool marker = 2 calls (tool
    call, then the answer after the tool result); else 1 call."""
    fail = re.search(r"\[\[fail:(\d+)\]\]", prompt)
    if fail:
        return [{"model": model, "stream": stream, "status": int(fail.group(1)), "usage": None}]
    n = 2 if "[[tool:" in prompt else 1
    return [{"model": model, "stream": stream, "status": 200, "usage": usage_of(prompt)} for _ in range(n)]


def truth_of(chain: str, workload_calls: list[list[dict]], results: list[dict], **extra) -> dict:
    """Ground truth of the run, in chainpulse's terms (input includes cached, output includes reasoning)."""
    calls = [c for inv in workload_calls for c in inv]
    by_ms: dict = {}
    tokens: dict = {}
    for c in calls:
        key = f'{c["model"]}|{"ok" if c["status"] == 200 else "error"}'
        by_ms[key] = by_ms.get(key, 0) + 1
        if c["usage"]:
            _add_usage(tokens.setdefault(c["model"], _new_tokens()), c["usage"])
    errors: dict = {}
    for r in results:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {
        "requests": {chain: {"total": len(results), "failed": sum(1 for r in results if not r["ok"])}},
        "chains": [chain],
        "provider_calls": calls,
        "llm_calls_by_model_status": by_ms,
        "streamed_calls": sum(1 for c in calls if c["stream"]),
        "tokens_by_model": tokens,
        "error_classes": errors,
        **extra,
    }


def build_truth(rows, agent_chains=(), tool_steps: bool = True, tool_chain: str = "weather_agent") -> dict:
    """Ground truth of what the app did: requests, provider calls, usage served, error classes, steps, TTFT.
    rows: ((chain, model, stream, prompt), rec) per invocation; an ok invocation of `tool_chain` whose prompt has
    a tool marker made 2 provider calls (tool call, answer), any other 1. A chain in `agent_chains` is an agent
    step; tool_steps: a tool round trip is also a tool step."""
    truth: dict = {"requests": {}, "llm_calls": {}, "streamed_llm_calls": {}, "tokens": {}, "errors": {},
                   "steps": {"tool": 0, "retriever": 0, "agent": 0}, "tool_calls_executed": 0, "ttft_calls": {}}
    for (chain, model, stream, prompt), rec in rows:
        r = truth["requests"].setdefault(chain, {"total": 0, "failed": 0})
        r["total"] += 1
        r["failed"] += 0 if rec["ok"] else 1
        n = (2 if "[[tool:" in prompt and chain == tool_chain else 1) if rec["ok"] else 1
        status = "ok" if rec["ok"] else "error"
        key = f"{model}|{status}"
        truth["llm_calls"][key] = truth["llm_calls"].get(key, 0) + n
        if stream:
            truth["streamed_llm_calls"][key] = truth["streamed_llm_calls"].get(key, 0) + n
        if not rec["ok"]:
            truth["errors"][rec["error"]] = truth["errors"].get(rec["error"], 0) + 1
            continue
        if chain in agent_chains:
            truth["steps"]["agent"] += 1
        if n == 2:
            truth["tool_calls_executed"] += 1
            if tool_steps:
                truth["steps"]["tool"] += 1
        if stream:
            truth["ttft_calls"][model] = truth["ttft_calls"].get(model, 0) + n
        _add_usage(truth["tokens"].setdefault(model, _new_tokens()), usage_of(prompt), n)
    return truth


def fakellm_truth() -> dict:
    """Ground truth of the provider side, from fakellm's record of every call it served (GET /stats)."""
    url = os.environ.get("FAKELLM_URL") or os.environ["OPENAI_BASE_URL"].rsplit("/v1", 1)[0]
    calls = json.loads(urllib.request.urlopen(url + "/stats", timeout=5).read())
    by_call: dict = {}
    tokens: dict = {}
    for c in calls:
        status = "ok" if c["status"] == 200 else "error"
        key = f'{c["endpoint"]}|{c["model"]}|{status}|{"stream" if c["stream"] else "plain"}'
        by_call[key] = by_call.get(key, 0) + 1
        u = c.get("usage") or {}
        if status == "ok" and u:
            t = tokens.setdefault(c["model"], _new_tokens())
            t["input"] += u.get("in", 0)
            t["output"] += u.get("out", 0)
            t["cache_read"] += u.get("cached", 0)
            t["cache_write"] += u.get("cache_write", 0)
            t["reasoning"] += u.get("reasoning", 0)
    return {"provider_calls": len(calls), "calls_by_endpoint_model_status_stream": by_call,
            "usage_by_model": tokens}
