"""End to end: a real LangChain app, traced by a real instrumentation, exports OTLP to the chainpulse binary;
the chain KPIs on /metrics must match exactly what the app did.

Each test starts chainpulse on free loopback ports, runs examples/langchain_app/app.py (6 requests; in invoke
mode every third fails in retrieve_docs with RuntimeError("vector store timeout"), streams don't fail), then
polls /metrics and checks exact values. Then it asks the same chainpulse for the KPIs and top spenders, over
HTTP (/api/v1/kpis, /api/v1/top) and over gRPC (chainpulse.kpi.v1.KpiService on the OTLP/gRPC port, client
compiled from proto/chainpulse/kpi.proto at test time), and checks those too.
Run: scripts/setup-python.sh && .venv/bin/python -m pytest tests/e2e -q
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable

import pytest
import requests

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

# gpt-4o-mini list price (built-in table generated from genai-prices), USD per million tokens.
PRICE_IN, PRICE_OUT = 0.15, 0.60
COST_TOL = 1e-12
# Default SLO targets (src/config.rs): (kpi, target, comparison), in the order the API lists them. No
# throughput_rps: the live-traffic throughput floor is opt-in (slo.min_throughput_rps), so by default the API
# reports throughput without a pass/fail.
DEFAULT_KPIS = [
    ("latency_p50_seconds", 1.0, "<="),
    ("latency_p95_seconds", 2.0, "<="),
    ("latency_p99_seconds", 3.0, "<="),
    ("error_rate", 0.001, "<="),
    ("availability", 0.999, ">="),
]
# The top-level field each KPI check reports the value of.
KPI_SOURCE = {
    "latency_p50_seconds": ("latency_seconds", "p50"),
    "latency_p95_seconds": ("latency_seconds", "p95"),
    "latency_p99_seconds": ("latency_seconds", "p99"),
    "error_rate": ("error_rate",),
    "availability": ("availability",),
}
# Fields that depend on when the query ran (the "all" window grows by the second).
TIME_DEPENDENT = {"covered_seconds", "throughput_rps"}

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


# ------------------------------------------------------------------------------------------------------------
# The KPI API: HTTP /api/v1/kpis + /api/v1/top, gRPC chainpulse.kpi.v1.KpiService
# ------------------------------------------------------------------------------------------------------------
def near(a: float | None, b: float, tol: float = COST_TOL) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=0.0, abs_tol=tol)


def http_json(url: str, exp: Expect, what: str, status: int = 200) -> Any:
    """GET url; record a problem unless it answers `status` with a JSON body; return the body (or None)."""
    try:
        r = requests.get(url, timeout=5)
    except requests.RequestException as exc:
        exp.problems.append(f"{what}: GET {url} failed: {exc!r}")
        return None
    if r.status_code != status:
        exp.problems.append(f"{what}: expected HTTP {status}, got {r.status_code}: {r.text[:300]}")
    if not r.headers.get("content-type", "").startswith("application/json"):
        exp.problems.append(f"{what}: content-type {r.headers.get('content-type')!r}, expected application/json")
    try:
        return r.json()
    except ValueError:
        exp.problems.append(f"{what}: body is not JSON: {r.text[:300]!r}")
        return None


def grpc_chain_to_dict(c: Any) -> dict[str, Any]:
    """A gRPC ChainKpis in the HTTP JSON's shape (unset optionals as None)."""
    def opt(msg: Any, name: str) -> float | None:
        return getattr(msg, name) if msg.HasField(name) else None

    return {
        "service": c.service, "chain": c.chain, "window": c.window, "covered_seconds": c.covered_seconds,
        "requests": c.requests, "errors": c.errors, "throughput_rps": opt(c, "throughput_rps"),
        "latency_seconds": {"p50": opt(c, "latency_p50_seconds"), "p95": opt(c, "latency_p95_seconds"),
                            "p99": opt(c, "latency_p99_seconds")},
        "error_rate": opt(c, "error_rate"), "availability": opt(c, "availability"),
        "tokens_input": c.tokens_input, "tokens_output": c.tokens_output, "cost_usd": c.cost_usd,
        "cost_per_request_usd": opt(c, "cost_per_request_usd"), "unpriced_requests": c.unpriced_requests,
        "cache_hit_rate": opt(c, "cache_hit_rate"),
        "kpis": [{"kpi": k.kpi, "value": opt(k, "value"), "target": k.target, "comparison": k.comparison,
                  "status": k.status} for k in c.kpis],
        "targets_met": c.targets_met,
        "recent": {name: [grpc_recent_to_dict(r) for r in getattr(c.recent, name)]
                   for name in ("slowest", "costliest", "failed")} if c.HasField("recent") else None,
    }


def grpc_recent_to_dict(r: Any) -> dict[str, Any]:
    """A gRPC RecentRequest in the HTTP JSON's shape."""
    def opt(name: str) -> Any:
        return getattr(r, name) if r.HasField(name) else None

    return {"trace_id": r.trace_id, "span_id": r.span_id, "service": r.service, "chain": r.chain,
            "ended_at_unix_ms": r.ended_at_unix_ms, "duration_seconds": r.duration_seconds,
            "cost_usd": opt("cost_usd"), "error_type": opt("error_type"), "trace_url": opt("trace_url")}


def grpc_top_to_dict(t: Any) -> dict[str, Any]:
    return {"total": t.total, "capacity": t.capacity, "tracked": t.tracked, "max_error": t.max_error,
            "entries": [{"key": e.key, "estimate": e.estimate, "error_bound": e.error_bound} for e in t.entries]}


def check_chain_kpis(c: dict[str, Any], exp: Expect, via: str) -> None:
    """One chain's KPIs ("all" window) against what the app did."""
    requests_n, errors, calls = exp.ok + exp.failed, exp.failed, exp.llm_calls
    p = f"{via} kpis"
    for key, want in (("service", SERVICE), ("chain", CHAIN), ("window", "all")):
        exp.check(c.get(key) == want, f"{p}.{key}: expected {want!r}, got {c.get(key)!r}")
    exp.eq(f"{p}.requests", c.get("requests", -1), requests_n)
    exp.eq(f"{p}.errors", c.get("errors", -1), errors)
    er, av = c.get("error_rate"), c.get("availability")
    exp.check(near(er, errors / requests_n), f"{p}.error_rate: expected errors/requests = "
                                              f"{errors / requests_n!r}, got {er!r}")
    exp.check(er is not None and near(av, 1.0 - er), f"{p}.availability: expected 1 - error_rate, got {av!r} "
                                                      f"(error_rate {er!r})")
    exp.eq(f"{p}.tokens_input", c.get("tokens_input", -1), IN_TOKENS * calls)
    exp.eq(f"{p}.tokens_output", c.get("tokens_output", -1), OUT_TOKENS * calls)
    want_cost = calls * (IN_TOKENS * PRICE_IN + OUT_TOKENS * PRICE_OUT) / 1e6
    exp.check(near(c.get("cost_usd"), want_cost),
              f"{p}.cost_usd: expected {want_cost!r} (gpt-4o-mini list price), got {c.get('cost_usd')!r}")
    exp.eq(f"{p}.unpriced_requests", c.get("unpriced_requests", -1), 0)
    exp.check(near(c.get("cost_per_request_usd"), want_cost / requests_n),
              f"{p}.cost_per_request_usd: expected cost/requests = {want_cost / requests_n!r}, "
              f"got {c.get('cost_per_request_usd')!r}")
    exp.check(c.get("cache_hit_rate") is None,
              f"{p}.cache_hit_rate: expected null (no cache lookups), got {c.get('cache_hit_rate')!r}")
    lat = c.get("latency_seconds") or {}
    q = [lat.get(k) for k in ("p50", "p95", "p99")]
    exp.check(all(isinstance(v, (int, float)) and v > 0 for v in q) and q[0] <= q[1] <= q[2],
              f"{p}.latency_seconds: expected 0 < p50 <= p95 <= p99, got {lat!r}")
    cov, tput = c.get("covered_seconds", 0), c.get("throughput_rps")
    exp.check(cov >= 1 and near(tput, requests_n / max(cov, 1), 1e-9),
              f"{p}: expected covered_seconds >= 1 and throughput_rps == requests/covered_seconds, got "
              f"covered_seconds={cov!r} throughput_rps={tput!r}")

    kpis = c.get("kpis") or []
    names = [k.get("kpi") for k in kpis]
    exp.check(sorted(names) == sorted(n for n, _, _ in DEFAULT_KPIS),
              f"{p}.kpis: expected {[n for n, _, _ in DEFAULT_KPIS]}, got {names}")
    by_name = {k.get("kpi"): k for k in kpis}
    for name, target, cmp in DEFAULT_KPIS:
        k = by_name.get(name)
        if k is None:
            continue
        exp.check(k.get("target") == target and k.get("comparison") == cmp,
                  f"{p}.kpis[{name}]: expected default target {cmp} {target:g}, got "
                  f"{k.get('comparison')} {k.get('target')!r}")
        src: Any = c
        for part in KPI_SOURCE[name]:
            src = (src or {}).get(part)
        exp.check(k.get("value") == src, f"{p}.kpis[{name}].value {k.get('value')!r} != the reported {src!r}")
        v = k.get("value")
        want_status = ("no_data" if v is None else
                       "pass" if (v <= target if cmp == "<=" else v >= target) else "fail")
        exp.check(k.get("status") == want_status,
                  f"{p}.kpis[{name}].status: expected {want_status!r} (value {v!r} {cmp} {target:g}), "
                  f"got {k.get('status')!r}")
    # Pinned, not derived: 2 of 6 requests failed, so the error-rate SLO must fail (and availability with it).
    want_err = "fail" if errors else "pass"
    for name in ("error_rate", "availability"):
        got = by_name.get(name, {}).get("status")
        exp.check(got == want_err, f"{p}.kpis[{name}].status: expected {want_err!r} with {errors} of "
                                   f"{requests_n} requests failed, got {got!r}")
    want_met = all(k.get("status") != "fail" for k in kpis)
    exp.check(c.get("targets_met") is want_met and (not errors or c.get("targets_met") is False),
              f"{p}.targets_met: expected {want_met}, got {c.get('targets_met')!r}")


def check_top(t: dict[str, Any] | None, exp: Expect, what: str, want: dict[str, float]) -> None:
    """A top-spenders answer that must hold exactly `want` (key -> estimate), every count exact."""
    if t is None:
        exp.problems.append(f"{what}: no answer")
        return
    entries = t.get("entries") or []
    got = {e.get("key"): e.get("estimate") for e in entries}
    exp.check(got == want, f"{what}.entries: expected {want}, got {got}")
    exp.check(len(entries) == len(got), f"{what}.entries: duplicate keys: {entries}")
    ests = [e.get("estimate", 0) for e in entries]
    exp.check(ests == sorted(ests, reverse=True), f"{what}.entries: not sorted by estimate: {ests}")
    exp.check(all(e.get("error_bound") == 0 for e in entries), f"{what}.entries: nonzero error_bound: {entries}")
    exp.eq(f"{what}.total", t.get("total", -1), sum(want.values()))
    exp.eq(f"{what}.tracked", t.get("tracked", -1), len(want))
    exp.eq(f"{what}.max_error", t.get("max_error", -1), 0)
    exp.check(t.get("capacity", 0) >= len(want), f"{what}.capacity: {t.get('capacity')!r} < tracked")


def check_kpi_api(cp: Chainpulse, kg: SimpleNamespace, exp: Expect) -> dict[str, Any]:
    """The KPI API over HTTP and gRPC; returns what it got (for the failure report)."""
    got: dict[str, Any] = {}
    api = cp.metrics_url + "/api/v1"
    calls = exp.llm_calls
    users = {f"user-{i}": 1.0 for i in range(exp.ok + exp.failed)}
    model_tokens = {MODEL: float((IN_TOKENS + OUT_TOKENS) * calls)}
    model_requests = {MODEL: float(calls)}

    # --- HTTP
    body = got["http kpis"] = http_json(f"{api}/kpis?window=all&service={SERVICE}&chain={CHAIN}", exp,
                                        "GET /api/v1/kpis")
    http_chain = None
    if isinstance(body, dict):
        exp.check(body.get("window") == "all", f"HTTP kpis: top-level window {body.get('window')!r} != 'all'")
        chains = body.get("chains") or []
        exp.check(len(chains) == 1, f"HTTP kpis: expected 1 chain for service={SERVICE} chain={CHAIN}, got "
                                    f"{[(c.get('service'), c.get('chain')) for c in chains]}")
        if chains:
            http_chain = chains[0]
            check_chain_kpis(http_chain, exp, "HTTP")
    top_users = got["http top users"] = http_json(f"{api}/top?by=user&metric=requests&n=10", exp,
                                                  "GET /api/v1/top?by=user")
    check_top(top_users, exp, "HTTP top by=user metric=requests", users)
    top_tokens = got["http top model tokens"] = http_json(f"{api}/top?by=model&metric=tokens", exp,
                                                          "GET /api/v1/top?by=model&metric=tokens")
    check_top(top_tokens, exp, "HTTP top by=model metric=tokens", model_tokens)
    top_models = got["http top model requests"] = http_json(f"{api}/top?by=model&metric=requests&n=5", exp,
                                                            "GET /api/v1/top?by=model&metric=requests")
    check_top(top_models, exp, "HTTP top by=model metric=requests", model_requests)

    # Bad parameters: 400 with {"error": "..."} that names the problem.
    for path, needles in (("/kpis?window=2m", ("2m", "accepted windows")),
                          ("/top?by=tenant", ("tenant", "user, session, chain, model"))):
        err = got[f"http {path}"] = http_json(api + path, exp, f"GET /api/v1{path}", status=400)
        msg = err.get("error") if isinstance(err, dict) else None
        exp.check(isinstance(msg, str) and all(n in msg for n in needles) and set(err) == {"error"},
                  f"GET /api/v1{path}: expected {{\"error\": ...}} mentioning {needles}, got {err!r}")

    # --- gRPC, on the OTLP/gRPC port
    pb2, grpc = kg.pb2, kg.grpc
    try:
        resp = kg.stub.GetKpis(pb2.GetKpisRequest(window="all", service=SERVICE, chain=CHAIN), timeout=5)
        chains = [grpc_chain_to_dict(c) for c in resp.chains]
        got["grpc GetKpis"] = chains
        exp.check(len(chains) == 1, f"gRPC GetKpis: expected 1 chain, got {[(c['service'], c['chain']) for c in chains]}")
        if chains:
            check_chain_kpis(chains[0], exp, "gRPC")
            if http_chain is not None:
                check_same(http_chain, chains[0], exp)
        top = grpc_top_to_dict(kg.stub.GetTop(pb2.GetTopRequest(by="model", metric="requests", n=5), timeout=5))
        got["grpc GetTop model requests"] = top
        check_top(top, exp, "gRPC GetTop by=model metric=requests", model_requests)
        if top_models is not None:
            exp.check(top == top_models, f"gRPC GetTop differs from HTTP /top: {top} vs {top_models}")
    except grpc.RpcError as exc:
        exp.problems.append(f"gRPC KpiService call failed: {exc.code()} {exc.details()!r}")

    for what, call, needles in (
            ("GetKpis(window=\"forever\")", lambda: kg.stub.GetKpis(pb2.GetKpisRequest(window="forever"), timeout=5),
             ("forever", "accepted windows")),
            ("GetTop(by=\"tenant\")", lambda: kg.stub.GetTop(pb2.GetTopRequest(by="tenant"), timeout=5),
             ("tenant", "user, session, chain, model"))):
        try:
            call()
            exp.problems.append(f"gRPC {what}: expected INVALID_ARGUMENT, got a response")
        except grpc.RpcError as exc:
            details = exc.details() or ""
            got[f"grpc {what}"] = f"{exc.code()} {details!r}"
            exp.check(exc.code() == grpc.StatusCode.INVALID_ARGUMENT and all(n in details for n in needles),
                      f"gRPC {what}: expected INVALID_ARGUMENT mentioning {needles}, got {exc.code()} {details!r}")
    return got


def check_same(http: dict[str, Any], grpc_: dict[str, Any], exp: Expect) -> None:
    """gRPC must report the HTTP figures, field for field (the window's age may have ticked by a second)."""
    for key in sorted(set(http) | set(grpc_)):
        if key in TIME_DEPENDENT:
            continue
        if key == "kpis":
            h = [k for k in http.get("kpis") or [] if k.get("kpi") != "throughput_rps"]
            g = [k for k in grpc_.get("kpis") or [] if k.get("kpi") != "throughput_rps"]
            exp.check(h == g, f"gRPC kpis differ from HTTP: {g} vs {h}")
        else:
            exp.check(http.get(key) == grpc_.get(key),
                      f"gRPC {key} = {grpc_.get(key)!r}, HTTP {key} = {http.get(key)!r}")
    dc = grpc_.get("covered_seconds", 0) - http.get("covered_seconds", 0)
    exp.check(0 <= dc <= 1, f"gRPC covered_seconds {grpc_.get('covered_seconds')} vs HTTP "
                            f"{http.get('covered_seconds')} (queried right after)")


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
def test_langchain_app_kpis(chainpulse: Chainpulse, kpi_grpc: SimpleNamespace, instrumentation: str, mode: str,
                            protocol: str, compression: str, shape: str):
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
    api = check_kpi_api(chainpulse, kpi_grpc, exp)

    # The KPI client's gRPC channel is still connected: an idle client must not hold up the shutdown.
    rc = chainpulse.terminate(timeout=10)
    exp.check(rc == 0, f"chainpulse exited with {rc} after SIGTERM")

    if exp.problems:
        dump = m.dump(["chainpulse_requests_total", "chainpulse_errors_total", "chainpulse_llm_",
                       "chainpulse_runs_total", "chainpulse_spans_", "chainpulse_assembly"])
        dump = "\n".join(ln for ln in dump.splitlines() if "_bucket" not in ln)
        pytest.fail(f"{instrumentation}/{mode}/{protocol}/{shape}: app summary {summary}\n"
                    + "\n".join(f"  - {p}" for p in exp.problems)
                    + f"\n--- relevant /metrics ---\n{dump}"
                    + f"\n--- KPI API answers ---\n{json.dumps(api, indent=1, default=str)[-6000:]}"
                    + f"\n--- chainpulse log (tail) ---\n{chainpulse.log()[-2000:]}")
