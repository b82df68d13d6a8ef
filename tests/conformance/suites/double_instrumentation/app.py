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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

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


def setup_tracing(variant: str):
    provider, exporter = appkit.setup_tracing(f"conformance-double-{variant}", set_global=True)
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
    return provider, exporter


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


def main() -> int:
    variant = os.environ.get("CONFORMANCE_VARIANT", "")
    if not variant:
        return run_all_variants()
    provider, exporter = setup_tracing(variant)

    def run(item):
        question, model, stream = item
        chain = build_chain(model, stream)
        if stream:
            for _ in chain.stream({"question": question}):
                pass
        else:
            chain.invoke({"question": question})

    results = appkit.invoke_all(WORKLOAD, run, lambda item: {"name": CHAIN_NAME, "model": item[1], "stream": item[2],
                                                             "ok": True, "error": None})
    provider.force_flush()
    provider.shutdown()
    ttft = {"openinference": "openinference-instrumentation-openai: a `First Token Stream Event` span event on the "
                             "SDK span (ChatCompletion) of each successful streamed call; the LangChain span has none",
            "openllmetry": "none: opentelemetry-instrumentation-openai is suppressed under LangChain LLM spans, and "
                           "opentelemetry-instrumentation-langchain sets no TTFT attribute"}[variant]
    cannot_give = {"openinference": ["ttft on the LangChain span (only the SDK span has it)"],
                   "openllmetry": ["ttft", "reasoning tokens (no attribute on the LangChain LLM span)"]}[variant]
    truth = appkit.truth_of(CHAIN_NAME, [appkit.scripted_calls(q, m, st) for q, m, st in WORKLOAD], results,
                            variant=variant, ttft=ttft, cannot_give=cannot_give)
    appkit.print_summary(suite=SUITE, variant=variant, invocations=results, spans_exported=exporter.exported,
                         truth=truth)
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
