"""Conformance app `openlit_anthropic`: OpenLIT (openlit.init) auto-instrumenting the Anthropic Python SDK against
fakellm's /v1/messages, exporting OTLP/HTTP. Each invocation is one call of the function `ask_claude`, decorated
with `@openlit.trace` (OpenLIT's way of grouping a request under a root span named after the function), so the
chain label is `ask_claude`.

Environment (set by the harness):
  ANTHROPIC_BASE_URL             fakellm, e.g. http://127.0.0.1:P
  OTEL_EXPORTER_OTLP_ENDPOINT    OTLP/HTTP base URL (chainpulse or the capture sink); /v1/traces is appended
  OTEL_SERVICE_NAME              service.name (default conformance-openlit-anthropic)

Prints one JSON line: {"suite":..., "invocations":[{"chain","ok","error","stream","model","mode"}...]}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/conformance/suites: appkit
import appkit  # noqa: E402

SUITE = "openlit_anthropic"
MODEL = "claude-haiku-4-5"

# (mode, prompt): mode "create" = messages.create, "create_stream" = messages.create(stream=True),
# "stream_helper" = the messages.stream() context manager. Markers script fakellm (usage `in` = total input
# INCLUDING cache reads and writes; fakellm sends Anthropic-style input_tokens = in - cached - cache_write).
WORKLOAD = [
    # 1. cache read: input_tokens=200, cache_read_input_tokens=1000
    ("create", "Summarise the manual. [[usage:in=1200,cached=1000,out=50]] [[text:It is a manual.]]"),
    # 2. 5-minute cache write: input_tokens=300, cache_creation_input_tokens=1200 (ephemeral_5m=1200)
    ("create", "Summarise the contract. [[usage:in=1500,cw5m=1200,out=40]] [[text:It is a contract.]]"),
    # 3. 1-hour cache write plus a cache read: input_tokens=500, cache_read=500, cache_creation=1000 (ephemeral_1h)
    ("create", "Summarise the book. [[usage:in=2000,cached=500,cw1h=1000,out=60]] [[text:It is a book.]]"),
    # 4. streamed (create stream=True), measurable TTFT
    ("create_stream", "Stream a haiku. [[usage:in=300,out=45]] [[delay:60]] [[chunkdelay:15]] "
                      "[[text:Autumn moonlight, a worm digs silently into the chestnut.]]"),
    # 5. streamed through the messages.stream() helper
    ("stream_helper", "Stream a limerick. [[usage:in=400,out=30]] [[chunkdelay:10]] "
                      "[[text:There once was a model from Prague.]]"),
    # 6. rate limited -> anthropic.RateLimitError, the request fails
    ("create", "Anything? [[fail:429]]"),
]


def build_truth(records: list) -> dict:
    """Ground truth of what the app did (usage in OpenAI convention: input INCLUDES cache reads and writes)."""
    truth: dict = {"requests": {}, "llm_calls": {}, "streamed_llm_calls": {}, "tokens": {}, "errors": {},
                   "steps": {"tool": 0, "retriever": 0, "agent": 0}, "ttft_calls": {},
                   "cache_write_split": {"5m": 0, "1h": 0}}
    for (mode, prompt), rec in records:
        r = truth["requests"].setdefault(rec["chain"], {"total": 0, "failed": 0})
        r["total"] += 1
        r["failed"] += 0 if rec["ok"] else 1
        key = f"{MODEL}|{'ok' if rec['ok'] else 'error'}"
        truth["llm_calls"][key] = truth["llm_calls"].get(key, 0) + 1
        if rec["stream"]:
            truth["streamed_llm_calls"][key] = truth["streamed_llm_calls"].get(key, 0) + 1
        if not rec["ok"]:
            truth["errors"][rec["error"]] = truth["errors"].get(rec["error"], 0) + 1
            continue
        if rec["stream"]:
            truth["ttft_calls"][MODEL] = truth["ttft_calls"].get(MODEL, 0) + 1
        u = appkit.usage_of(prompt)
        t = truth["tokens"].setdefault(MODEL, {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0,
                                               "reasoning": 0})
        t["input"] += u["in"]
        t["output"] += u["out"]
        t["cache_read"] += u["cached"]
        t["cache_write"] += u["cache_write"]
        t["reasoning"] += u["reasoning"]
        truth["cache_write_split"]["5m"] += u["cw5m"] if (u["cw5m"] or u["cw1h"]) else u["cache_write"]
        truth["cache_write_split"]["1h"] += u["cw1h"]
    return truth


def main() -> int:
    import openlit
    import anthropic

    pricing = os.path.join(tempfile.mkdtemp(prefix="openlit-pricing-"), "pricing.json")
    with open(pricing, "w", encoding="utf-8") as f:  # local prices: no download at init
        json.dump({"chat": {MODEL: {"promptPrice": 0.001, "completionPrice": 0.005}}}, f)

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    openlit.init(
        service_name=os.environ.get("OTEL_SERVICE_NAME", "conformance-openlit-anthropic"),
        environment="conformance",
        otlp_endpoint=endpoint,
        pricing_json=pricing,
        disable_metrics=True,
        disable_events=True,
    )

    from opentelemetry import trace as trace_api
    provider = trace_api.get_tracer_provider()
    counters = appkit.counting_exports(provider)

    client = anthropic.Anthropic(api_key="sk-ant-conformance-dummy", base_url=os.environ["ANTHROPIC_BASE_URL"],
                                 max_retries=0)

    @openlit.trace
    def ask_claude(prompt: str, mode: str) -> str:
        kwargs = {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": prompt}]}
        if mode == "create":
            msg = client.messages.create(**kwargs)
            return "".join(b.text for b in msg.content if b.type == "text")
        if mode == "create_stream":
            text = ""
            for event in client.messages.create(stream=True, **kwargs):
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text += event.delta.text
            return text
        with client.messages.stream(**kwargs) as stream:
            return "".join(stream.text_stream)

    out = appkit.invoke_all(WORKLOAD, lambda w: ask_claude(w[1], w[0]),
                            lambda w: {"chain": "ask_claude", "model": MODEL, "mode": w[0], "stream": w[0] != "create",
                                       "ok": True, "error": None})
    records = list(zip(WORKLOAD, out))

    provider.force_flush()
    provider.shutdown()
    truth = build_truth(records)
    import importlib.metadata as md
    truth["versions"] = {p: md.version(p) for p in ("openlit", "anthropic", "opentelemetry-sdk")}
    appkit.print_summary(suite=SUITE, invocations=out,
                         spans_exported=sum(c.exported for c in counters) if counters else None, truth=truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
