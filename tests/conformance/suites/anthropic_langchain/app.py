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

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

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


def setup_tracing():
    provider, exporter = appkit.setup_tracing("conformance-anthropic-langchain", set_global=True)
    LangChainInstrumentor().instrument(tracer_provider=provider)
    return provider, exporter


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


def main() -> int:
    provider, exporter = setup_tracing()
    chains = {False: build_chain(False), True: build_chain(True)}

    def run(item):
        question, stream = item
        if stream:
            for _ in chains[True].stream({"question": question}):
                pass
        else:
            chains[False].invoke({"question": question})

    results = appkit.invoke_all(WORKLOAD, run, lambda item: {"name": CHAIN_NAME, "model": MODEL, "stream": item[1],
                                                             "ok": True, "error": None})
    provider.force_flush()
    provider.shutdown()
    truth = appkit.truth_of(CHAIN_NAME, [appkit.scripted_calls(q, MODEL, st) for q, st in WORKLOAD], results,
                            sdk_native_tracing=os.environ.get("ANTHROPIC_OPEN_TELEMETRY", "").lower() != "false",
                            cannot_give=["ttft on the LangChain spans (the SDK's own spans carry it)"],
                            ttft="langchain spans: none (OpenInference exports no streaming events); the anthropic "
                                 "SDK's own spans (when on) carry gen_ai.response.time_to_first_chunk on each "
                                 "successful streamed call")
    appkit.print_summary(suite=SUITE, invocations=results, spans_exported=exporter.exported, truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
