#!/usr/bin/env python3
"""A RAG-shaped LangChain LCEL app, traced by a real instrumentation, exporting OTLP to chainpulse.

The chain is

    RunnableParallel(context=retrieve_docs, query=lambda) | ChatPromptTemplate | ScriptedChat | StrOutputParser

invoked with run_name="rag_query", tags=["production", "rag", "v2"] and
metadata={"user_id": "user-N", "environment": "prod", "version": "2.0"}. The chat model is scripted (no
network): it answers "The answer is 42." and reports 142 input / 42 output tokens for model gpt-4o-mini,
provider openai. Every --fail-every'th request (1-based) makes retrieve_docs raise
RuntimeError("vector store timeout").

    python app.py --instrumentation openinference|openllmetry|langsmith --endpoint http://127.0.0.1:4318 \
        --requests 6 [--stream] [--fail-every 3] [--protocol http|grpc] [--compression none|gzip]

--endpoint is the OTLP/HTTP base URL (spans go to {endpoint}/v1/traces) or, with --protocol grpc, the gRPC
address (http://host:port; plaintext). The last line printed on stdout is a JSON summary:
{"instrumentation", "protocol", "stream", "requests", "ok", "failed", "llm_calls", "spans_exported",
 "spans_failed", "export_calls"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any, Iterator

SERVICE_NAME = "rag-app"
RUN_NAME = "rag_query"
TAGS = ["production", "rag", "v2"]
MODEL = "gpt-4o-mini"
PROVIDER = "openai"
ANSWER = "The answer is 42."
INPUT_TOKENS = 142
OUTPUT_TOKENS = 42
DOCS = "Doc A: LCEL composes runnables. Doc B: use caching in production to cut cost."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instrumentation", required=True, choices=["openinference", "openllmetry", "langsmith"])
    p.add_argument("--endpoint", default="http://127.0.0.1:4318")
    p.add_argument("--requests", type=int, default=6)
    p.add_argument("--stream", action="store_true", help="call chain.stream() instead of chain.invoke()")
    p.add_argument("--fail-every", type=int, default=3,
                   help="every Nth request (1-based) fails in retrieve_docs; 0 = never")
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--compression", choices=["none", "gzip"], default="none")
    p.add_argument("--shape", choices=["rag", "nested"], default="rag",
                   help="rag: the chain above; nested: prompt | model wrapped in a sub-chain named 'generate' "
                        "(its output is the AIMessage, so LangSmith repeats the usage on that chain span)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Export accounting: every OTLP exporter class (HTTP and gRPC) is patched so that the spans it
# delivered successfully are counted, whoever created the exporter (us, or LangSmith's own provider).
# --------------------------------------------------------------------------------------------------
class ExportStats:
    lock = threading.Lock()
    exported = 0
    failed = 0
    calls = 0


def _patch_exporter_class(cls: Any) -> None:
    if getattr(cls, "_chainpulse_counting", False):
        return
    original = cls.export

    def export(self: Any, spans: Any, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        spans = list(spans)
        result = original(self, spans, *args, **kwargs)
        with ExportStats.lock:
            ExportStats.calls += 1
            if result == SpanExportResult.SUCCESS:
                ExportStats.exported += len(spans)
            else:
                ExportStats.failed += len(spans)
        return result

    cls.export = export
    cls._chainpulse_counting = True


def patch_exporters() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    _patch_exporter_class(HttpExporter)
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    except ImportError:  # gRPC exporter not installed: only HTTP is available
        return
    _patch_exporter_class(GrpcExporter)


def make_exporter(args: argparse.Namespace) -> Any:
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from grpc import Compression

        target = args.endpoint.split("://", 1)[-1].rstrip("/")
        return OTLPSpanExporter(
            endpoint=target,
            insecure=True,
            compression=Compression.Gzip if args.compression == "gzip" else Compression.NoCompression,
            timeout=10,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=args.endpoint.rstrip("/") + "/v1/traces",
        compression=Compression.Gzip if args.compression == "gzip" else Compression.NoCompression,
        timeout=10,
    )


def make_tracer_provider(args: argparse.Namespace) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(make_exporter(args)))
    return provider


# --------------------------------------------------------------------------------------------------
# Environment. Must run before langchain_core / langsmith are imported (they cache env lookups).
# --------------------------------------------------------------------------------------------------
def prepare_environment(args: argparse.Namespace) -> None:
    # Start from a clean slate: no tracing switches inherited from the caller's shell.
    for key in list(os.environ):
        if key.startswith(("LANGSMITH_", "LANGCHAIN_", "OTEL_", "TRACELOOP_", "OPENINFERENCE_")):
            del os.environ[key]
    os.environ["OTEL_SERVICE_NAME"] = SERVICE_NAME
    os.environ["OTEL_SDK_DISABLED"] = "false"
    if args.instrumentation == "langsmith":
        os.environ["LANGSMITH_TRACING"] = "true"
        os.environ["LANGSMITH_OTEL_ONLY"] = "true"
        os.environ["LANGSMITH_OTEL_ENABLED"] = "true"
        # LangSmith's own OTLP/HTTP provider reads these (used unless we installed a global provider).
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = args.endpoint.rstrip("/") + "/v1/traces"
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.endpoint.rstrip("/")
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        if args.compression == "gzip":
            os.environ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"] = "gzip"
        # Never talk to LangSmith's cloud: a dummy key (no hosted-key warning) and an API URL on a loopback
        # port nobody listens on, so an unexpected API call fails fast instead of leaving the machine.
        os.environ["LANGSMITH_API_KEY"] = "lsv2_dummy_chainpulse_e2e"
        os.environ["LANGSMITH_ENDPOINT"] = "http://127.0.0.1:9"
        os.environ["LANGSMITH_PROJECT"] = "default"
    else:
        os.environ["LANGSMITH_TRACING"] = "false"
        os.environ["LANGCHAIN_TRACING_V2"] = "false"
    if args.instrumentation == "openllmetry":
        os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
        os.environ["TRACELOOP_TELEMETRY"] = "false"


# --------------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------------
class Counters:
    lock = threading.Lock()
    llm_calls = 0


def build_chain(shape: str = "rag") -> Any:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.language_models.base import LangSmithParams
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel

    usage = {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
             "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}

    class ScriptedChat(BaseChatModel):
        """An OpenAI-looking chat model that answers from a script (no network)."""

        model_name: str = MODEL
        answer: str = ANSWER

        @property
        def _llm_type(self) -> str:
            return "openai-chat"

        @property
        def _identifying_params(self) -> dict[str, Any]:
            return {"model_name": self.model_name}

        def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
            params = LangSmithParams(ls_provider=PROVIDER, ls_model_name=self.model_name,
                                     ls_model_type="chat")
            if stop:
                params["ls_stop"] = stop
            return params

        def _count_call(self) -> None:
            with Counters.lock:
                Counters.llm_calls += 1

        def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                      run_manager: Any = None, **kwargs: Any) -> ChatResult:
            self._count_call()
            message = AIMessage(
                content=self.answer,
                usage_metadata=dict(usage),
                response_metadata={"model_name": self.model_name, "finish_reason": "stop",
                                   "model_provider": PROVIDER},
            )
            return ChatResult(
                generations=[ChatGeneration(message=message, generation_info={"finish_reason": "stop"})],
                llm_output={"model_name": self.model_name,
                            "token_usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                                            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}},
            )

        def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                    run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
            self._count_call()
            words = self.answer.split(" ")
            for i, word in enumerate(words):
                text = word if i == 0 else " " + word
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
            # The last chunk carries usage and the response metadata, like OpenAI's stream_options usage.
            last = ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata=dict(usage),
                    response_metadata={"model_name": self.model_name, "finish_reason": "stop",
                                       "model_provider": PROVIDER},
                    chunk_position="last",
                ),
                generation_info={"finish_reason": "stop"},
            )
            if run_manager is not None:
                run_manager.on_llm_new_token("", chunk=last)
            yield last

    def retrieve_docs(inputs: dict[str, Any]) -> str:
        time.sleep(0.002)
        if inputs.get("fail"):
            raise RuntimeError("vector store timeout")
        return DOCS

    prompt = ChatPromptTemplate.from_messages([("system", "Answer from context: {context}"), ("user", "{query}")])
    gather = RunnableParallel(context=RunnableLambda(retrieve_docs), query=RunnableLambda(lambda x: x["query"]))
    if shape == "nested":
        return gather | (prompt | ScriptedChat()).with_config(run_name="generate") | StrOutputParser()
    return gather | prompt | ScriptedChat() | StrOutputParser()


def run(args: argparse.Namespace) -> dict[str, Any]:
    prepare_environment(args)
    patch_exporters()

    from opentelemetry import trace

    provider = None
    if args.instrumentation == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        provider = make_tracer_provider(args)
        trace.set_tracer_provider(provider)
        LangChainInstrumentor().instrument(tracer_provider=provider)
    elif args.instrumentation == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        provider = make_tracer_provider(args)
        trace.set_tracer_provider(provider)
        LangchainInstrumentor().instrument(tracer_provider=provider)
    else:
        # LangSmith: with LANGSMITH_OTEL_ONLY it builds its own OTLP/HTTP provider from the OTEL_EXPORTER_*
        # variables (resource: service.name=$OTEL_SERVICE_NAME, langsmith.internal_provider=true) unless a
        # global provider exists. For gRPC we install ours, which LangSmith then exports through.
        if args.protocol == "grpc":
            provider = make_tracer_provider(args)
            trace.set_tracer_provider(provider)

    chain = build_chain(args.shape)
    ok = failed = 0
    errors: list[str] = []
    for i in range(args.requests):
        fail = args.fail_every > 0 and (i + 1) % args.fail_every == 0
        config = {"run_name": RUN_NAME, "tags": list(TAGS),
                  "metadata": {"user_id": f"user-{i}", "environment": "prod", "version": "2.0"}}
        inputs = {"query": f"test {i}", "fail": fail}
        try:
            if args.stream:
                out = "".join(chain.stream(inputs, config=config))
            else:
                out = chain.invoke(inputs, config=config)
            if out != ANSWER:
                raise AssertionError(f"unexpected answer {out!r}")
            ok += 1
        except RuntimeError as exc:
            if not fail:
                raise
            failed += 1
            errors.append(f"{type(exc).__name__}: {exc}")

    if args.instrumentation == "langsmith":
        # LangSmith turns runs into spans on its background thread: drain it before flushing the provider.
        from langchain_core.tracers.langchain import wait_for_all_tracers

        wait_for_all_tracers()
        provider = provider or trace.get_tracer_provider()
        if not hasattr(provider, "force_flush"):
            raise RuntimeError(f"LangSmith did not install an SDK tracer provider: {provider!r}")

    if not provider.force_flush(timeout_millis=15_000):
        print("warning: force_flush timed out", file=sys.stderr)
    provider.shutdown()

    return {
        "instrumentation": args.instrumentation,
        "protocol": args.protocol,
        "stream": args.stream,
        "shape": args.shape,
        "requests": args.requests,
        "ok": ok,
        "failed": failed,
        "errors": errors,
        "llm_calls": Counters.llm_calls,
        "spans_exported": ExportStats.exported,
        "spans_failed": ExportStats.failed,
        "export_calls": ExportStats.calls,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    print(json.dumps(summary), flush=True)
    return 0 if summary["spans_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
