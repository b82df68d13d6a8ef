"""Conformance app `double_instrumentation`: an LCEL chain (prompt | ChatOpenAI | parser) instrumented TWICE, by a
framework instrumentor and by the provider SDK's instrumentor at once (a very common setup), exporting OTLP/HTTP.

  CONFORMANCE_VARIANT=openinference  openinference-instrumentation-langchain + openinference-instrumentation-openai
  CONFORMANCE_VARIANT=openllmetry    opentelemetry-instrumentation-langchain + opentelemetry-instrumentation-openai
  (unset: both, one after the other, each in its own process, service.name <OTEL_SERVICE_NAME>-<variant>)

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-double-<variant>)

Workload: 6 invocations of the chain `qa_chain` (LangChain run_name), 2 failing; one provider call each.
Prints one JSON line: {"suite", "variant", "invocations", "spans_exported", "truth"}.
"""

import subprocess
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/conformance: harness (stdlib only)
from harness import CountingSpanExporter  # noqa: E402

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SUITE = "double_instrumentation"
CHAIN_NAME = "qa_chain"

# (question, model, stream)
WORKLOAD = [
    # 1. cached prompt, not streamed
    ("What is OTLP? [[usage:in=250,cached=100,out=40]] [[text:A telemetry protocol.]]", "gpt-4o-mini", False),
    # 2. streamed, cached (TTFT measurable)
    ("What is a span? [[usage:in=180,cached=60,out=30]] [[chunkdelay:30]] [[text:One timed operation in a trace.]]",
     "gpt-4o-mini", True),
    # 3. reasoning model, not streamed
    ("Why sample traces? [[usage:in=300,out=120,reasoning=80]] [[text:To bound cost.]]", "o4-mini", False),
    # 4. rate limited
    ("What is a metric? [[fail:429]]", "gpt-4o-mini", False),
    # 5. reasoning model, streamed, cached
    ("What is a log? [[usage:in=220,cached=20,out=70,reasoning=30]] [[chunkdelay:20]] [[text:A timestamped record.]]",
     "o4-mini", True),
    # 6. server error, streamed
    ("What is a baggage? [[fail:500]]", "gpt-4o-mini", True),
]


EXPORTER = None


def setup_tracing(variant: str) -> TracerProvider:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    service = os.environ.get("OTEL_SERVICE_NAME", f"conformance-double-{variant}")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    global EXPORTER
    EXPORTER = CountingSpanExporter(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    provider.add_span_processor(BatchSpanProcessor(EXPORTER))
    trace_api.set_tracer_provider(provider)
    if variant == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor
        LangChainInstrumentor().instrument(tracer_provider=provider)
        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif variant == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        LangchainInstrumentor().instrument(tracer_provider=provider)
        OpenAIInstrumentor().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    return provider


def build_chain(model: str, stream: bool):
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    kw = dict(model=model, api_key="sk-conformance", max_retries=0, timeout=30,
              base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    if stream:
        kw.update(streaming=True, stream_usage=True)
    prompt = ChatPromptTemplate.from_messages([("system", "Answer in one short sentence."), ("human", "{question}")])
    return (prompt | ChatOpenAI(**kw) | StrOutputParser()).with_config(run_name=CHAIN_NAME)


# ----------------------------------------------------------------------------------------------- ground truth

def _usage(prompt: str) -> dict:
    """The usage fakellm answers for this prompt's [[usage:...]] marker (its defaults and cw5m/cw1h rule)."""
    u = {"in": 100, "cached": 0, "out": 20, "reasoning": 0, "cache_write": 0, "cw5m": 0, "cw1h": 0}
    m = re.search(r"\[\[usage:(.*?)\]\]", prompt)
    given = dict((k.strip(), int(v)) for k, v in (kv.split("=") for kv in m.group(1).split(","))) if m else {}
    u.update(given)
    if ("cw5m" in given or "cw1h" in given) and "cache_write" not in given:
        u["cache_write"] = u["cw5m"] + u["cw1h"]
    return u


def scripted_calls(prompt: str, model: str, stream: bool) -> list[dict]:
    """The provider calls one invocation makes: a failure marker = 1 failed call; a tool marker = 2 calls (tool
    call, then the answer after the tool result); else 1 call."""
    fail = re.search(r"\[\[fail:(\d+)\]\]", prompt)
    if fail:
        return [{"model": model, "stream": stream, "status": int(fail.group(1)), "usage": None}]
    n = 2 if "[[tool:" in prompt else 1
    return [{"model": model, "stream": stream, "status": 200, "usage": _usage(prompt)} for _ in range(n)]


def truth_of(chain: str, workload_calls: list[list[dict]], results: list[dict], **extra) -> dict:
    """Ground truth of the run, in chainpulse's terms (input includes cached, output includes reasoning)."""
    calls = [c for inv in workload_calls for c in inv]
    by_ms: dict = {}
    tokens: dict = {}
    for c in calls:
        key = f'{c["model"]}|{"ok" if c["status"] == 200 else "error"}'
        by_ms[key] = by_ms.get(key, 0) + 1
        if c["usage"]:
            u = c["usage"]
            t = tokens.setdefault(c["model"], {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0,
                                               "reasoning": 0})
            t["input"] += u["in"]
            t["output"] += u["out"]
            t["cache_read"] += u["cached"]
            t["cache_write"] += u["cache_write"]
            t["reasoning"] += u["reasoning"]
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


def main() -> int:
    variant = os.environ.get("CONFORMANCE_VARIANT", "")
    if not variant:
        return run_all_variants()
    provider = setup_tracing(variant)
    results = []
    for question, model, stream in WORKLOAD:
        rec = {"name": CHAIN_NAME, "model": model, "stream": stream, "ok": True, "error": None}
        chain = build_chain(model, stream)
        try:
            if stream:
                for _ in chain.stream({"question": question}):
                    pass
            else:
                chain.invoke({"question": question})
        except Exception as exc:  # noqa: BLE001 - the error class is the point
            rec.update(ok=False, error=type(exc).__name__)
        results.append(rec)
    provider.force_flush()
    provider.shutdown()
    ttft = {"openinference": "openinference-instrumentation-openai: a `First Token Stream Event` span event on the "
                             "SDK span (ChatCompletion) of each successful streamed call; the LangChain span has none",
            "openllmetry": "none: opentelemetry-instrumentation-openai is suppressed under LangChain LLM spans, and "
                           "opentelemetry-instrumentation-langchain sets no TTFT attribute"}[variant]
    cannot_give = {"openinference": ["ttft on the LangChain span (only the SDK span has it)"],
                   "openllmetry": ["ttft", "reasoning tokens (no attribute on the LangChain LLM span)"]}[variant]
    truth = truth_of(CHAIN_NAME, [scripted_calls(q, m, st) for q, m, st in WORKLOAD], results, variant=variant,
                     ttft=ttft, cannot_give=cannot_give)
    print(json.dumps({"suite": SUITE, "variant": variant, "invocations": results,
                      "spans_exported": EXPORTER.exported, "truth": truth}))
    return 0


def run_all_variants() -> int:
    """No CONFORMANCE_VARIANT (the capture mode): run every variant, each in its own process (instrumentors cannot
    be mixed in one), with service.name <service>-<variant>; one combined summary."""
    service = os.environ.get("OTEL_SERVICE_NAME", "conformance-double")
    out = {"suite": SUITE, "variants": {}, "spans_exported": 0, "truth": {}}
    for variant in ("openinference", "openllmetry"):
        env = dict(os.environ, CONFORMANCE_VARIANT=variant, OTEL_SERVICE_NAME=f"{service}-{variant}")
        proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            return proc.returncode
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        out["variants"][variant] = summary["invocations"]
        out["spans_exported"] += summary["spans_exported"]
        out["truth"][f"{service}-{variant}"] = summary["truth"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
