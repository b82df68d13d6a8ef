"""Conformance app `langgraph_openllmetry`: the LangGraph agent of ../langgraph_agent.py (create_react_agent with
langchain-openai's ChatOpenAI; workload, environment and summary documented there), traced by OpenLLMetry
(opentelemetry-instrumentation-langchain together with opentelemetry-instrumentation-openai, as `Traceloop.init()`
would enable both), exporting OTLP/HTTP (service.name default conformance-langgraph-openllmetry).
"""

import sys
from pathlib import Path

from opentelemetry.instrumentation.langchain import LangchainInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: the shared LangGraph app
import langgraph_agent  # noqa: E402


def instrument(provider) -> None:
    LangchainInstrumentor().instrument(tracer_provider=provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    sys.exit(langgraph_agent.main(
        "langgraph_openllmetry", instrument,
        cannot_give=["ttft", "reasoning tokens (no attribute on the LangChain LLM span)"],
        ttft="none: opentelemetry-instrumentation-langchain sets no TTFT attribute; opentelemetry-instrumentation-openai "
             "is suppressed under LangChain LLM spans"))
