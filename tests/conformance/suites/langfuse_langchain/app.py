"""Conformance app `langfuse_langchain`: Langfuse's LangChain CallbackHandler (`langfuse.langchain.CallbackHandler`)
tracing a small LCEL chain (prompt | ChatOpenAI | StrOutputParser) and a tool-using runnable, exporting through
the Langfuse SDK's own OTLP exporter to `<LANGFUSE_HOST>/api/public/otel/v1/traces` (dummy keys).

Chains (LangChain run_name = the chain label): `qa_chain` (LCEL sequence) and `weather_agent` (a RunnableLambda that
calls ChatOpenAI.bind_tools, runs the `get_weather` tool, then calls the model again).

Environment (set by the harness):
  OPENAI_BASE_URL                fakellm, e.g. http://127.0.0.1:P/v1
  LANGFUSE_HOST                  chainpulse's OTLP/HTTP base URL (or the capture sink)
  (falls back to OTEL_EXPORTER_OTLP_ENDPOINT when LANGFUSE_HOST is not set)

Prints one JSON line: {"suite":..., "invocations":[{"chain","ok","error","stream","model"}...]}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

SUITE = "langfuse_langchain"

# (chain, model, stream, question). The markers in the question are the whole script of that invocation.
WORKLOAD = [
    # 1. plain invoke, cached tokens
    ("qa_chain", "gpt-4o-mini", False,
     "What is the capital of France? [[usage:in=120,cached=32,out=40]] [[text:Paris is the capital.]]"),
    # 2. streamed (chain.stream, stream_usage=True), cached tokens, measurable TTFT
    ("qa_chain", "gpt-4o-mini", True,
     "Tell me about Lyon. [[usage:in=150,cached=64,out=30]] [[delay:60]] [[chunkdelay:15]] "
     "[[text:Lyon is a large city in France.]]"),
    # 3. reasoning model: cached + reasoning tokens
    ("qa_chain", "o4-mini", False,
     "Prove that 17 is prime. [[usage:in=200,cached=50,out=60,reasoning=24]] [[text:It has no divisors.]]"),
    # 4. reasoning model, streamed
    ("qa_chain", "o4-mini", True,
     "Explain primes briefly. [[usage:in=180,cached=96,out=50,reasoning=16]] [[chunkdelay:15]] "
     "[[text:Primes have two divisors.]]"),
    # 5. rate limited -> openai.RateLimitError, the request fails
    ("qa_chain", "gpt-4o-mini", False, "Anything? [[fail:429]]"),
    # 6. tool round trip: 2 provider calls, 1 tool run
    ("weather_agent", "gpt-4o-mini", False,
     'Weather in Paris? [[tool:get_weather:{"city": "Paris"}]] [[usage:in=90,out=15]] [[text:Sunny, 21 C.]]'),
]


def main() -> int:
    host = (os.environ.get("LANGFUSE_HOST") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "http://127.0.0.1:4318").rstrip("/")
    os.environ["LANGFUSE_HOST"] = host
    os.environ["LANGFUSE_BASE_URL"] = host
    os.environ.setdefault("LANGFUSE_PUBLIC_KEY", "pk-lf-conformance")
    os.environ.setdefault("LANGFUSE_SECRET_KEY", "sk-lf-conformance")
    os.environ.setdefault("LANGFUSE_TRACING_ENVIRONMENT", "conformance")
    os.environ.setdefault("OPENAI_API_KEY", "sk-conformance-dummy")

    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langfuse import get_client
    from langfuse.langchain import CallbackHandler

    base_url = os.environ["OPENAI_BASE_URL"]

    def llm(model: str, streaming: bool = False) -> ChatOpenAI:
        return ChatOpenAI(model=model, base_url=base_url, api_key="sk-conformance-dummy", max_retries=0,
                          stream_usage=True, streaming=streaming)

    prompt = ChatPromptTemplate.from_messages([("system", "You answer briefly."), ("human", "{question}")])

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return json.dumps({"city": city, "weather": "sunny", "temp_c": 21})

    def weather_flow(inputs: dict) -> str:
        model = llm(inputs["model"]).bind_tools([get_weather])
        messages = [HumanMessage(inputs["question"])]
        ai = model.invoke(messages)
        messages.append(ai)
        for call in ai.tool_calls:
            messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
        return model.invoke(messages).content

    counters = appkit.counting_langfuse_exports(get_client())
    handler = CallbackHandler()

    def run(item):
        chain, model, stream, question = item
        config = {"callbacks": [handler], "run_name": chain}
        if chain == "qa_chain":
            runnable = prompt | llm(model, streaming=stream) | StrOutputParser()
            if stream:
                "".join(runnable.stream({"question": question}, config=config))
            else:
                runnable.invoke({"question": question}, config=config)
        else:
            RunnableLambda(weather_flow).invoke({"question": question, "model": model}, config=config)

    out = appkit.invoke_all(WORKLOAD, run,
                            lambda w: {"chain": w[0], "model": w[1], "stream": w[2], "ok": True, "error": None})
    records = list(zip(WORKLOAD, out))

    lf = get_client()
    lf.flush()
    lf.shutdown()
    truth = appkit.build_truth(records)
    truth["steps"]["agent"] = sum(1 for (c, *_), r in records if "agent" in c)  # Langfuse: a run named *agent*
    truth["steps"]["prompt"] = sum(1 for (c, *_), r in records if c == "qa_chain")
    truth["steps"]["parser"] = sum(1 for (c, *_), r in records if c == "qa_chain" and r["ok"])
    import importlib.metadata as md
    truth["versions"] = {p: md.version(p) for p in ("langfuse", "langchain-core", "langchain-openai", "openai",
                                                   "opentelemetry-sdk")}
    appkit.print_summary(suite=SUITE, invocations=out,
                         spans_exported=sum(c.exported for c in counters) if counters else None,
                         export_failures=sum(c.failed for c in counters), truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
