"""Conformance app `anthropic_langchain`: an LCEL chain (prompt | ChatAnthropic | parser) with langchain-anthropic,
traced by openinference-instrumentation-langchain, exporting OTLP/HTTP. Prompt caching: cache reads and cache
writes split into 5-minute and 1-hour TTLs.

Environment (set by the harness):
  ANTHROPIC_BASE_URL             fakellm, e.g. http://127.0.0.1:P
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-anthropic-langchain)

Workload: 6 invocations of the chain `support_answer` (LangChain run_name), 2 failing.
Prints one JSON line: {"suite", "invocations": [{"name","ok","error","stream","model"}], "spans_exported", "truth"}.

anthropic>=2.x traces its own API calls with OpenTelemetry (scope com.anthropic.sdk.python) by default, through
the global tracer provider: with it on (the library default, what the capture records) every provider call is
ALSO a `anthropic.messages.create` span in a trace of its own. ANTHROPIC_OPEN_TELEMETRY=false turns it off.
"""

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

from openinference.instrumentation.langchain import LangChainInstrumentor
from langchain_anthropic import ChatAnthropic
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

SUITE = "anthropic_langchain"
CHAIN_NAME = "support_answer"
MODEL = "claude-sonnet-4-5"

# (question, stream). `in` is the TOTAL prompt incl. cache reads and writes; fakellm answers Anthropic-style
# (input_tokens = in - cached - cache_write, cache_read_input_tokens, cache_creation_input_tokens and the
# cache_creation {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens} split).
WORKLOAD = [
    # 1. cache read + 5-minute write, not streamed
    ("Summarize the manual. [[usage:in=2000,cached=1500,cw5m=300,out=50]] [[text:The manual explains setup.]]",
     False),
    # 2. 1-hour write only, not streamed
    ("Summarize the FAQ. [[usage:in=3000,cw1h=2500,out=40]] [[text:The FAQ covers billing.]]", False),
    # 3. read + both writes, streamed (TTFT measurable)
    ("Summarize the policy. [[usage:in=4000,cached=1000,cw5m=1000,cw1h=1500,out=80]] [[chunkdelay:20]] "
     "[[text:The policy is strict about refunds.]]", True),
    # 4. cache read only, streamed
    ("Summarize the changelog. [[usage:in=1200,cached=1000,out=30]] [[chunkdelay:10]] "
     "[[text:Version two adds caching.]]", True),
    # 5. rate limited -> anthropic.RateLimitError
    ("Summarize the blog. [[fail:429]]", False),
    # 6. server error, streamed -> anthropic.InternalServerError
    ("Summarize the wiki. [[fail:500]]", True),
]


EXPORTER = None


def setup_tracing() -> TracerProvider:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    service = os.environ.get("OTEL_SERVICE_NAME", "conformance-anthropic-langchain")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    global EXPORTER
    EXPORTER = CountingSpanExporter(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    provider.add_span_processor(BatchSpanProcessor(EXPORTER))
    trace_api.set_tracer_provider(provider)
    LangChainInstrumentor().instrument(tracer_provider=provider)
    return provider


def build_chain(stream: bool):
    llm = ChatAnthropic(model=MODEL, api_key="sk-ant-conformance",
                        base_url=os.environ.get("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080"),
                        max_retries=0, max_tokens=256, timeout=30, streaming=stream)
    prompt = ChatPromptTemplate.from_messages([
        ("system", [{"type": "text", "text": "You answer support questions from the attached documents.",
                     "cache_control": {"type": "ephemeral"}}]),
        ("human", "{question}"),
    ])
    return (prompt | llm | StrOutputParser()).with_config(run_name=CHAIN_NAME)


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
    provider = setup_tracing()
    chains = {False: build_chain(False), True: build_chain(True)}
    results = []
    for question, stream in WORKLOAD:
        rec = {"name": CHAIN_NAME, "model": MODEL, "stream": stream, "ok": True, "error": None}
        try:
            if stream:
                for _ in chains[True].stream({"question": question}):
                    pass
            else:
                chains[False].invoke({"question": question})
        except Exception as exc:  # noqa: BLE001 - the error class is the point
            rec.update(ok=False, error=type(exc).__name__)
        results.append(rec)
    provider.force_flush()
    provider.shutdown()
    truth = truth_of(CHAIN_NAME, [scripted_calls(q, MODEL, st) for q, st in WORKLOAD], results,
                     sdk_native_tracing=os.environ.get("ANTHROPIC_OPEN_TELEMETRY", "").lower() != "false",
                     cannot_give=["ttft on the LangChain spans (the SDK's own spans carry it)"],
                     ttft="langchain spans: none (OpenInference exports no streaming events); the anthropic SDK's own "
                          "spans (when on) carry gen_ai.response.time_to_first_chunk on each successful streamed call")
    print(json.dumps({"suite": SUITE, "invocations": results, "spans_exported": EXPORTER.exported, "truth": truth}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
