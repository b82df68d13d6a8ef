"""End to end: a real LangChain app, traced by a real instrumentation, exports OTLP to the chainpulse binary;
the chain KPIs on /metrics must match exactly what the app did.

Each test starts chainpulse on free loopback ports, runs examples/langchain_app/app.py (6 requests; in invoke
mode every third fails in retrieve_docs with RuntimeError("vector store timeout"), streams don't fail), then
polls /metrics and checks exact values. Run: scripts/setup-python.sh && .venv/bin/python -m pytest tests/e2e -q
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import pytest

from conftest import Chainpulse, run_app

SERVICE = "rag-app"
CHAIN = "rag_query"
PROVIDER = "openai"
MODEL = "gpt-4o-mini"
MODEL_CLASS = "ScriptedChat"
IN_TOKENS, OUT_TOKENS = 142, 42
N_REQUESTS = 6
POLL_SECONDS = 15.0
# Spans in one request: rag_query, RunnableParallel, retrieve_docs, RunnableLambda, ChatPromptTemplate,
# ScriptedChat, StrOutputParser. A failed request stops in the RunnableParallel: 4 spans, 3 of them in error
# (retrieve_docs, RunnableParallel, rag_query).
# The "nested" shape wraps `prompt | model` in a sub-chain named "generate": one more span per successful request,
# and LangSmith copies the LLM usage onto that chain span (its output is the AIMessage).
SPANS_OK = {"rag": 7, "nested": 8}
SPANS_FAILED, ERROR_SPANS_PER_FAILURE = 4, 3

# Kind of ChatPromptTemplate and StrOutputParser. What the dialects send differs: OpenInference PROMPT / CHAIN,
# OpenLLMetry task / task, LangSmith prompt / parser. chainpulse refines a generic chain kind by LangChain's class
# naming (`…PromptTemplate`, `…Parser`; src/normalize/kind.rs) so a step has one kind whatever sent it.
PROMPT_KIND = {"openinference": "prompt", "openllmetry": "prompt", "langsmith": "prompt"}
PARSER_KIND = {"openinference": "parser", "openllmetry": "parser", "langsmith": "parser"}


# ------------------------------------------------------------------------------------------------------------
# Prometheus text format parser (exposition format 0.0.4)
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def _parse_labels(s: str, i: int, line: str) -> tuple[dict[str, str], int]:
    """Parse `{a="b",c="d"}` starting at s[i] == '{'; return (labels, index after '}')."""
    assert s[i] == "{"
    i += 1
    labels: dict[str, str] = {}
    while True:
        while i < len(s) and s[i] in " ,":
            i += 1
        if i >= len(s):
            raise ValueError(f"unterminated label set: {line!r}")
        if s[i] == "}":
            return labels, i + 1
        j = i
        while j < len(s) and (s[j].isalnum() or s[j] == "_"):
            j += 1
        name = s[i:j]
        if not name:
            raise ValueError(f"bad label name at {i}: {line!r}")
        while j < len(s) and s[j] == " ":
            j += 1
        if s[j:j + 2] != '="':
            raise ValueError(f"expected =\" after label {name}: {line!r}")
        j += 2
        out = []
        while True:
            if j >= len(s):
                raise ValueError(f"unterminated label value: {line!r}")
            c = s[j]
            if c == "\\":
                nxt = s[j + 1]
                out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
                j += 2
            elif c == '"':
                j += 1
                break
            else:
                out.append(c)
                j += 1
        if name in labels:
            raise ValueError(f"duplicate label {name}: {line!r}")
        labels[name] = "".join(out)
        i = j


def _parse_value(tok: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(tok) or float(tok)


def parse_prometheus(text: str) -> list[Sample]:
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        i = 0
        while i < len(line) and (line[i].isalnum() or line[i] in "_:"):
            i += 1
        name = line[:i]
        if not name:
            raise ValueError(f"bad sample line: {raw!r}")
        labels: dict[str, str] = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, raw)
        rest = line[i:].split()
        if len(rest) not in (1, 2):
            raise ValueError(f"bad sample line: {raw!r}")
        samples.append(Sample(name, tuple(sorted(labels.items())), _parse_value(rest[0])))
    return samples


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.samples = parse_prometheus(text)

    def series(self, name: str, **match: str) -> list[Sample]:
        """Samples of `name` whose labels include `match` (a subset match)."""
        return [s for s in self.samples if s.name == name and all(s.label_dict.get(k) == v for k, v in match.items())]

    def exact(self, name: str, **labels: str) -> float:
        """The value of the one series whose label set is exactly `labels` (0 if absent)."""
        want = tuple(sorted(labels.items()))
        found = [s for s in self.samples if s.name == name and s.labels == want]
        assert len(found) <= 1, f"duplicate series {name}{labels}"
        return found[0].value if found else 0.0

    def total(self, name: str, **match: str) -> float:
        return sum(s.value for s in self.series(name, **match))

    def dump(self, prefixes: Iterable[str]) -> str:
        return "\n".join(ln for ln in self.text.splitlines()
                         if not ln.startswith("#") and any(ln.startswith(p) for p in prefixes))


def test_parser_handles_escapes_and_specials():
    text = ('# HELP x y\n# TYPE x counter\nx{a="q\\"uo\\\\te",b="n\\nl"} 3\n'
            'h_bucket{le="+Inf"} 7 1700000000000\nup 1\nnan_metric NaN\n')
    m = Metrics(text)
    assert m.exact("x", a='q"uo\\te', b="n\nl") == 3
    assert m.exact("h_bucket", le="+Inf") == 7
    assert m.exact("up") == 1
    assert math.isnan(m.series("nan_metric")[0].value)


# ------------------------------------------------------------------------------------------------------------
# The end-to-end checks
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Expect:
    instrumentation: str
    protocol: str
    shape: str
    ok: int
    failed: int
    llm_calls: int
    spans: int
    problems: list[str] = field(default_factory=list)

    def eq(self, what: str, got: float, want: float) -> None:
        if got != want:
            self.problems.append(f"{what}: expected {want:g}, got {got:g}")

    def check(self, cond: bool, msg: str) -> None:
        if not cond:
            self.problems.append(msg)


def settled(m: Metrics, exp: Expect) -> bool:
    """Everything the app sent has been received and every trace has been accounted for."""
    return (m.total("chainpulse_spans_received_total") >= exp.spans
            and m.total("chainpulse_requests_total", service=SERVICE) >= exp.ok + exp.failed
            and m.total("chainpulse_llm_calls_total", service=SERVICE) >= exp.llm_calls)


def poll_metrics(cp: Chainpulse, exp: Expect) -> Metrics:
    deadline = time.monotonic() + POLL_SECONDS
    m = Metrics(cp.scrape())
    while not settled(m, exp) and time.monotonic() < deadline:
        time.sleep(0.25)
        m = Metrics(cp.scrape())
    # Let one more assembly timeout pass so a late flush (e.g. a trace re-emitted on timeout) would show up
    # as double counting instead of slipping past the check.
    time.sleep(1.5)
    return Metrics(cp.scrape())


def check_metrics(m: Metrics, exp: Expect) -> None:
    base = {"service": SERVICE, "chain": CHAIN}
    ok, failed, calls = exp.ok, exp.failed, exp.llm_calls

    # Requests: one per root run, named after run_name (OpenLLMetry's root span is `rag_query.workflow`).
    exp.eq('requests_total{status="ok"}', m.exact("chainpulse_requests_total", **base, status="ok"), ok)
    exp.eq('requests_total{status="error"}', m.exact("chainpulse_requests_total", **base, status="error"), failed)
    exp.eq("requests_total summed over every chain of the service",
           m.total("chainpulse_requests_total", service=SERVICE), ok + failed)
    exp.eq("request_duration_seconds_count",
           m.exact("chainpulse_request_duration_seconds_count", **base), ok + failed)

    # Errors: RuntimeError (LangSmith only says `Exception` in exception.type; the class is in the message),
    # counted at least on every failed root, at most on every failed run.
    err_total = m.total("chainpulse_errors_total", **base, error_type="RuntimeError")
    exp.check(failed <= err_total <= failed * ERROR_SPANS_PER_FAILURE,
              f'errors_total{{error_type="RuntimeError"}} summed over kind: expected between {failed} and '
              f"{failed * ERROR_SPANS_PER_FAILURE}, got {err_total:g}")
    exp.check(m.exact("chainpulse_errors_total", **base, kind="chain", error_type="RuntimeError") >= failed,
              f'errors_total{{kind="chain",error_type="RuntimeError"}} must count the {failed} failed roots, got '
              f'{m.exact("chainpulse_errors_total", **base, kind="chain", error_type="RuntimeError"):g}')
    other = {s.label_dict["error_type"]: s.value for s in m.series("chainpulse_errors_total", service=SERVICE)
             if s.label_dict.get("error_type") != "RuntimeError" and s.value}
    exp.check(not other, f"errors_total has error types other than RuntimeError: {other}")

    # LLM tokens: LLM runs only, 142/42 per call (exact: catches chain spans that repeat usage).
    llm = {**base, "provider": PROVIDER, "model": MODEL}
    exp.eq("llm_tokens_total{type=input}", m.exact("chainpulse_llm_tokens_total", **llm, type="input"),
           IN_TOKENS * calls)
    exp.eq("llm_tokens_total{type=output}", m.exact("chainpulse_llm_tokens_total", **llm, type="output"),
           OUT_TOKENS * calls)
    exp.eq("llm_tokens_total{type=input} over all labels", m.total("chainpulse_llm_tokens_total", service=SERVICE,
                                                                    type="input"), IN_TOKENS * calls)
    exp.eq("llm_tokens_total{type=output} over all labels", m.total("chainpulse_llm_tokens_total", service=SERVICE,
                                                                     type="output"), OUT_TOKENS * calls)
    exp.eq('llm_calls_total{status="ok"}', m.exact("chainpulse_llm_calls_total", **llm, status="ok"), calls)
    exp.eq("llm_calls_total over all labels", m.total("chainpulse_llm_calls_total", service=SERVICE), calls)
    exp.eq("llm_duration_seconds_count", m.exact("chainpulse_llm_duration_seconds_count", **llm), calls)

    # Runs: every span is one run.
    runs = "chainpulse_runs_total"
    exp.eq("runs_total summed (== spans sent)", m.total(runs, service=SERVICE), exp.spans)
    exp.eq(f'runs_total{{kind="llm",step="{MODEL_CLASS}",status="ok"}}',
           m.exact(runs, **base, kind="llm", step=MODEL_CLASS, status="ok"), calls)
    exp.eq('runs_total{kind="llm"} over all steps', m.total(runs, **base, kind="llm"), calls)
    pk = PROMPT_KIND[exp.instrumentation]
    exp.eq(f'runs_total{{kind="{pk}",step="ChatPromptTemplate",status="ok"}}',
           m.exact(runs, **base, kind=pk, step="ChatPromptTemplate", status="ok"), ok)
    pak = PARSER_KIND[exp.instrumentation]
    exp.eq(f'runs_total{{kind="{pak}",step="StrOutputParser",status="ok"}}',
           m.exact(runs, **base, kind=pak, step="StrOutputParser", status="ok"), ok)
    for status, want in (("ok", ok), ("error", failed)):
        exp.eq(f'runs_total{{kind="chain",step="rag_query",status="{status}"}}',
               m.exact(runs, **base, kind="chain", step=CHAIN, status=status), want)
        exp.eq(f'runs_total{{kind="chain",step="retrieve_docs",status="{status}"}}',
               m.exact(runs, **base, kind="chain", step="retrieve_docs", status=status), want)
    if exp.shape == "nested":
        exp.eq('runs_total{kind="chain",step="generate",status="ok"}',
               m.exact(runs, **base, kind="chain", step="generate", status="ok"), ok)
    exp.eq('runs_total{step="RunnableLambda"} (the query lambda, ok in every request)',
           m.total(runs, **base, kind="chain", step="RunnableLambda", status="ok"), ok + failed)
    bad_steps = sorted({s.label_dict.get("step", "") for s in m.series(runs, service=SERVICE)
                        if s.label_dict.get("step", "").endswith((".workflow", ".chat", ".task"))
                        or s.label_dict.get("step", "").startswith("execute_task ")})
    exp.check(not bad_steps, f"runs_total steps carry OpenLLMetry span-name decorations: {bad_steps}")

    # Self metrics: every exported span was received, over the right protocol.
    proto = "grpc" if exp.protocol == "grpc" else "http_protobuf"
    exp.eq(f'spans_received_total{{protocol="{proto}"}}',
           m.exact("chainpulse_spans_received_total", protocol=proto), exp.spans)
    exp.eq("spans_received_total over protocols", m.total("chainpulse_spans_received_total"), exp.spans)
    exp.eq("spans_rejected_total", m.total("chainpulse_spans_rejected_total"), 0)


CASES = [
    pytest.param(inst, mode, "http", "none", "rag", id=f"{inst}-{mode}")
    for inst in ("openinference", "openllmetry", "langsmith")
    for mode in ("invoke", "stream")
] + [
    pytest.param("openinference", "invoke", "grpc", "none", "rag", id="openinference-invoke-grpc"),
    pytest.param("openllmetry", "invoke", "http", "gzip", "rag", id="openllmetry-invoke-http-gzip"),
    # LangSmith repeats the usage on the "generate" chain span: tokens must still be counted once.
    pytest.param("langsmith", "invoke", "http", "none", "nested", id="langsmith-invoke-nested"),
]


@pytest.mark.parametrize("instrumentation,mode,protocol,compression,shape", CASES)
def test_langchain_app_kpis(chainpulse: Chainpulse, instrumentation: str, mode: str, protocol: str,
                            compression: str, shape: str):
    stream = mode == "stream"
    fail_every = 0 if stream else 3
    summary = run_app(chainpulse.endpoint(protocol), instrumentation, N_REQUESTS, stream=stream,
                      fail_every=fail_every, protocol=protocol, compression=compression, shape=shape)

    # What the app did (sanity: the app itself behaved as scripted).
    want_failed = N_REQUESTS // 3 if fail_every else 0
    assert summary["requests"] == N_REQUESTS
    assert summary["failed"] == want_failed, summary
    assert summary["ok"] == N_REQUESTS - want_failed, summary
    assert summary["llm_calls"] == summary["ok"], summary
    assert summary["spans_failed"] == 0, summary
    assert summary["spans_exported"] == summary["ok"] * SPANS_OK[shape] + summary["failed"] * SPANS_FAILED, summary

    exp = Expect(instrumentation, protocol, shape, ok=summary["ok"], failed=summary["failed"],
                 llm_calls=summary["llm_calls"], spans=summary["spans_exported"])
    m = poll_metrics(chainpulse, exp)
    check_metrics(m, exp)

    rc = chainpulse.terminate(timeout=10)
    exp.check(rc == 0, f"chainpulse exited with {rc} after SIGTERM")

    if exp.problems:
        dump = m.dump(["chainpulse_requests_total", "chainpulse_errors_total", "chainpulse_llm_",
                       "chainpulse_runs_total", "chainpulse_spans_", "chainpulse_assembly"])
        dump = "\n".join(ln for ln in dump.splitlines() if "_bucket" not in ln)
        pytest.fail(f"{instrumentation}/{mode}/{protocol}/{shape}: app summary {summary}\n"
                    + "\n".join(f"  - {p}" for p in exp.problems)
                    + f"\n--- relevant /metrics ---\n{dump}\n--- chainpulse log (tail) ---\n{chainpulse.log()[-2000:]}")
