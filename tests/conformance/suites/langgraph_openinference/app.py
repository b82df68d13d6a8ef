"""Conformance app `langgraph_openinference`: the LangGraph agent of ../langgraph_agent.py (create_react_agent
with langchain-openai's ChatOpenAI; workload, environment and summary documented there), traced by
openinference-instrumentation-langchain, exporting OTLP/HTTP (service.name default
conformance-langgraph-openinference).
"""

import sys
from pathlib import Path

from openinference.instrumentation.langchain import LangChainInstrumentor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: the shared LangGraph app
import langgraph_agent  # noqa: E402


def instrument(provider) -> None:
    LangChainInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    sys.exit(langgraph_agent.main(
        "langgraph_openinference", instrument, cannot_give=["ttft"],
        ttft="none: openinference-instrumentation-langchain exports no streaming events (no First Token Stream "
             "Event, no time_to_first_chunk)"))
