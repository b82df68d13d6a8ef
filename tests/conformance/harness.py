#!/usr/bin/env python3
"""Harness of chainpulse's instrumentation conformance suite (tests/conformance).

Runs a suite's app (a real instrumentation library in its own venv / node_modules) against the scripted fake LLM
server (fakellm.py) and the real chainpulse binary, waits until every exported span is counted, then compares
exact expected figures with BOTH /metrics and the KPI API. Also captures what a library really sends.

IMPORTS: this module imports only the standard library at top level, so a suite app running in its own venv can
`sys.path.insert(0, "<repo>/tests/conformance"); from harness import CountingSpanExporter, print_summary`.
(The capture decoder needs opentelemetry-proto, imported lazily; it is in the main .venv.)

=== Writing a suite ===================================================================================
tests/conformance/suites/<suite>/
  requirements.txt          pinned (==) Python deps -> .venv-conformance/<suite> (scripts/setup-conformance.sh)
  package.json + lock       node deps -> suites/<suite>/node_modules (npm ci)
  app.py | app.mjs | app.js the app; run as `.venv-conformance/<suite>/bin/python app.py` or `node app.mjs`,
                            cwd = the suite dir. Set library env (e.g. OTEL_SEMCONV_STABILITY_OPT_IN) in the app
                            itself, so the test and the capture run the very same thing.
  harness.json (optional)   {"cmd": ["{python}", "app.py", "--x"], "env": {"K": "V"}, "timeout": 60}
                            ({python} = the suite venv's python, {node} = node, {suite_dir} = the suite dir)
The app gets this environment (other OTEL_* variables of the caller are removed):
  OPENAI_BASE_URL=http://127.0.0.1:<fakellm>/v1   OPENAI_API_KEY=sk-test
  ANTHROPIC_BASE_URL=http://127.0.0.1:<fakellm>   ANTHROPIC_API_KEY=sk-ant-test   FAKELLM_URL=http://127.0.0.1:<fakellm>
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<otlp http port>   (SDKs append /v1/traces)
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=<that>/v1/traces   OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
  OTEL_SERVICE_NAME=<suite>   OTEL_METRICS_EXPORTER=none   OTEL_LOGS_EXPORTER=none   OTEL_SDK_DISABLED=false
  TRACELOOP_TELEMETRY=false   OTEL_BSP_SCHEDULE_DELAY=200   CONFORMANCE_SUITE=<suite>   PYTHONUNBUFFERED=1
  + harness.json "env" + the extra_env of the call.
The app's LAST stdout line must be a JSON object (its summary). Put `"spans_exported": N` in it when you can
(wrap your exporter in CountingSpanExporter; flush/shutdown the provider before printing), so the harness knows
how many spans to wait for; otherwise it waits until chainpulse_spans_received_total is stable. Optional
`"truth": {...}` in it is written to tests/fixtures/conformance/<suite>.truth.json by the capture mode.
Every client must use max_retries=0 (one scripted failure = one provider call).

=== Using it from a test (tests/conformance/test_<suite>.py; fixtures in conftest.py) ===================
    def test_figures(conformance):                    # fixture: fresh fakellm + chainpulse per test
        res = conformance.run("my_suite")              # runs the app, waits until chainpulse settled, scrapes
        assert len(res.calls) == 7                     # fakellm's record of every provider call (list of dicts)
        res.assert_figures(EXPECTED)                   # one readable diff of every mismatch
`res.metrics` is a Metrics ({(name, frozenset(labels.items())): value}, with .sum/.group helpers),
`res.kpis` the /api/v1/kpis?window=5m JSON, `res.summary` the app's summary, `res.app` the AppResult.
Outside pytest: `with Conformance() as c: res = c.run(suite)` (same thing).

=== Expected figures (assert_figures / check_figures) =================================================
A dict; every key is optional; maps marked FULL are compared completely (a series present but not expected,
e.g. a model label `gpt-4o-mini-2024-07-18`, is a mismatch against 0):
  "service": "openai_v2"                         only look at series with this service label
  "requests": {"chain": {"total": 6, "failed": 1}}         FULL over chains; /metrics requests_total by status
                                                           and KPI requests/errors
  "llm_calls": {("gpt-4o-mini", "ok"): 4, ("gpt-4o-mini", "error"): 1}     FULL; key may be (chain, model, status)
  "tokens": {("gpt-4o-mini", "input"): 520, ("gpt-4o-mini", "cache_read"): 32, ...}   FULL over (model, type)
            types: input (incl. cached) output (incl. reasoning) cache_read cache_write reasoning;
            key may be (chain, model, type). A missing key means 0.
  "cost": {"gpt-4o-mini": 0.000123}              FULL over model (key may be (chain, model)); rel. tol 1e-9
  "errors": {("llm", "RateLimitError"): 1, ("chain", "RateLimitError"): 1}   errors_total by (kind, error_type),
            FULL for each kind mentioned (other kinds unchecked); a bare "RateLimitError" key means kind "llm"
  "runs": {"tool": 2, "agent": 1} or {("tool", "get_weather"): 2}            PARTIAL: only the listed kinds /
            (kind, step) pairs are checked (give 0 to assert absence); summed over status
  "ttft": {"gpt-4o-mini": 2}                     FULL: observation count of the TTFT histogram per model
  "usage_missing": {"gpt-4o-mini": 0}            FULL: chainpulse_llm_usage_missing_total per model
  "unpriced": {}                                 FULL: chainpulse_llm_unpriced_calls_total per model
The KPI API (window 5m) is checked per chain: requests, errors, tokens_input, tokens_output, cost_usd (derived
from the above: per chain when keys carry the chain, else the sums over all chains of the service), and it is
always checked to AGREE with /metrics on those figures.
expected_cost(model, input=, output=, cache_read=, cache_write=) prices ground-truth tokens with prices.toml.

=== Other building blocks ===============================================================================
Fakellm(), Chainpulse(workdir) (loopback ports, --config prices.toml, assembly trace timeout 5 s: a trace is
released when its root arrives, the timeout only delays root-less ones; env CONFORMANCE_TRACE_TIMEOUT_MS overrides),
CaptureSink(), run_app(suite, fakellm_url, otlp_endpoint, extra_env),
wait_settled(chainpulse, spans_exported), parse_metrics(text), suite_command(suite), decode_captures(sink),
check_figures(expected, metrics, kpis or None) / check_kpis(expected, metrics, kpis) -> [mismatch lines],
format_problems(lines), figures_summary(metrics) (what chainpulse reports, in the expected shape).
One run per module, several tests: `c = Conformance(tmp_path_factory.mktemp(..)); res = c.run(suite)` in a
module-scoped fixture, then each test calls `res.check({...one family...}, kpi=False)` and asserts it is empty.

=== Capture CLI ===========================================================================================
    .venv/bin/python tests/conformance/harness.py capture <suite> [--stdout]
runs the suite's app against fakellm + a capture sink and writes tests/fixtures/conformance/<suite>.json: a JSON
array of ExportTraceServiceRequest in OTLP/JSON (the protobuf JSON mapping with lowerCamelCase names, integer
enums, int64 as strings and, as OTLP/JSON requires and tests/fixtures/*.json use, hex trace/span ids), plus
<suite>.truth.json when the app's summary carries "truth" (with fakellm's call records under "fakellm_calls").
    .venv/bin/python tests/conformance/harness.py run <suite>     runs against chainpulse and prints the figures
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUITES_DIR = HERE / "suites"
FIXTURES_DIR = REPO / "tests" / "fixtures" / "conformance"
PRICES = HERE / "prices.toml"
VENVS = REPO / ".venv-conformance"
FAKELLM = HERE / "fakellm.py"
DEFAULT_BIN = REPO / "target" / "debug" / "chainpulse"
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")


class HarnessError(AssertionError):
    """A harness step failed (an app crashed, chainpulse did not settle, ...)."""


def _get(url: str, timeout: float = 5.0) -> bytes:
    req = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------------------------- fakellm

class Fakellm:
    """tests/conformance/fakellm.py as a subprocess on a free loopback port."""

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fakellm-"))
        self.stats_file = self.workdir / "fakellm-calls.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKELLM), "--port", "0", "--stats-file", str(self.stats_file)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.stop()
            raise HarnessError(f"fakellm did not start (first line {line!r})")
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self) -> list[dict]:
        """Every provider call served so far (fakellm's GET /stats)."""
        return json.loads(_get(self.url + "/stats"))

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/stats", method="DELETE")
        urllib.request.urlopen(req, timeout=5).read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


# --------------------------------------------------------------------------------------------- chainpulse

def chainpulse_bin() -> Path:
    return Path(os.environ.get("CHAINPULSE_BIN", str(DEFAULT_BIN)))


class Chainpulse:
    """A chainpulse collector on three loopback ports with the test prices; its log in a file."""

    def __init__(self, workdir: Path, binary: Path | None = None, extra_env: dict[str, str] | None = None,
                 config: Path | None = PRICES):
        self.binary = Path(binary or chainpulse_bin())
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise HarnessError(f"chainpulse binary not found at {self.binary} (cargo build, or set CHAINPULSE_BIN)")
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chainpulse.log"
        env = dict(os.environ)
        # A trace is released as soon as its root arrives, so the timeout only delays root-less traces. 1 s (as in
        # tests/e2e) split traces on this loaded 2-core machine (a root exported > 1 s after its children): 5 s.
        env.update({"CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS": os.environ.get("CONFORMANCE_TRACE_TIMEOUT_MS", "5000"),
                    "RUST_LOG": env.get("RUST_LOG", "info")})
        env.update(extra_env or {})
        self._log = open(self.log_path, "wb")
        cmd = [str(self.binary)]
        if config:
            cmd += ["--config", str(config)]
        cmd += ["--grpc-addr", f"127.0.0.1:{self.grpc_port}", "--http-addr", f"127.0.0.1:{self.http_port}",
                "--metrics-addr", f"127.0.0.1:{self.metrics_port}"]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_grpc(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def log(self, tail: int = 6000) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"chainpulse exited early with code {self.proc.returncode}; log:\n{self.log()}")
            try:
                _get(self.metrics_url + "/readyz", timeout=1)
                return
            except (urllib.error.URLError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise HarnessError(f"chainpulse not ready after {timeout}s ({last}); log:\n{self.log()}")

    def scrape_text(self) -> str:
        return _get(self.metrics_url + "/metrics").decode()

    def metrics(self) -> "Metrics":
        return parse_metrics(self.scrape_text())

    def kpis(self, window: str = "5m") -> dict:
        return json.loads(_get(f"{self.metrics_url}/api/v1/kpis?window={window}"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()


# --------------------------------------------------------------------------------------------- capture sink

class CaptureSink:
    """An OTLP/HTTP sink on 127.0.0.1: stores every POST (path, content type, body with gzip undone) and answers
    200 with an empty export response."""

    def __init__(self):
        sink = self
        self.posts: list[dict] = []
        self.lock = threading.Lock()

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self) -> bytes:
                # The OpenTelemetry JS exporter pipes every export body: chunked, no Content-Length.
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):
                body = self._body()
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                ctype = self.headers.get("Content-Type", "")
                with sink.lock:
                    sink.posts.append({"path": self.path, "content_type": ctype, "body": body})
                out = b"{}" if "json" in ctype else b""
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if "json" in ctype else "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class S(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def trace_posts(self) -> list[dict]:
        with self.lock:
            return [p for p in self.posts if p["path"].split("?")[0].endswith("/traces")]

    def span_count(self) -> int:
        return sum(len(s.get("spans", [])) for r in decode_captures(self) for rs in r.get("resourceSpans", [])
                   for s in rs.get("scopeSpans", []))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hexify_ids(obj: Any) -> Any:
    """protobuf JSON mapping writes bytes as base64; OTLP/JSON wants trace/span ids as hex."""
    import base64
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                out[k] = base64.b64decode(v).hex()
            else:
                out[k] = _hexify_ids(v)
        return out
    if isinstance(obj, list):
        return [_hexify_ids(v) for v in obj]
    return obj


def decode_captures(sink: CaptureSink) -> list[dict]:
    """The sink's /v1/traces posts as OTLP/JSON dicts (needs opentelemetry-proto, as in the main .venv)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = []
    for p in sink.trace_posts():
        if "json" in p["content_type"]:
            out.append(json.loads(p["body"]))
            continue
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(p["body"])
        out.append(_hexify_ids(json_format.MessageToDict(msg, use_integers_for_enums=True)))
    return out


# --------------------------------------------------------------------------------------------- apps

def suite_dir(suite: str) -> Path:
    d = SUITES_DIR / suite
    if not d.is_dir():
        raise HarnessError(f"no suite {suite!r} in {SUITES_DIR}")
    return d


def suite_command(suite: str) -> tuple[list[str], dict[str, str], float]:
    """(argv, env from harness.json, timeout) to run a suite's app, cwd = the suite dir."""
    d = suite_dir(suite)
    python = str(VENVS / suite / "bin" / "python")
    node = shutil.which("node") or "node"
    spec: dict = {}
    if (d / "harness.json").is_file():
        spec = json.loads((d / "harness.json").read_text())
    if spec.get("cmd"):
        cmd = [a.format(python=python, node=node, suite_dir=str(d)) for a in spec["cmd"]]
    elif (d / "app.py").is_file():
        cmd = [python, "app.py"]
    elif (d / "app.mjs").is_file():
        cmd = [node, "app.mjs"]
    elif (d / "app.js").is_file():
        cmd = [node, "app.js"]
    else:
        raise HarnessError(f"suite {suite}: no app.py / app.mjs / app.js / harness.json cmd in {d}")
    if cmd[0] == python and not Path(python).exists():
        raise HarnessError(f"suite {suite}: {python} missing; run scripts/setup-conformance.sh")
    return cmd, {k: str(v) for k, v in (spec.get("env") or {}).items()}, float(spec.get("timeout", 90))


def app_env(suite: str, fakellm_url: str, otlp_endpoint: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "OPENAI_", "ANTHROPIC_", "TRACELOOP_", "LANGFUSE_", "LANGSMITH_",
                                "LANGCHAIN_", "PHOENIX_", "OPENLIT_", "VIRTUAL_ENV"))}
    env.update({
        "OPENAI_BASE_URL": fakellm_url + "/v1", "OPENAI_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": fakellm_url, "ANTHROPIC_API_KEY": "sk-ant-test", "FAKELLM_URL": fakellm_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_endpoint + "/v1/traces",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": suite,
        "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_SDK_DISABLED": "false",
        "OTEL_BSP_SCHEDULE_DELAY": "200", "TRACELOOP_TELEMETRY": "false", "CONFORMANCE_SUITE": suite,
        "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore", "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    env.update(extra_env or {})
    return env


@dataclass
class AppResult:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    summary: dict = field(default_factory=dict)


def run_app(suite: str, fakellm_url: str, otlp_endpoint: str, extra_env: dict[str, str] | None = None,
            timeout: float | None = None) -> AppResult:
    """Run the suite's app; return its result with the JSON summary (last stdout line). Raises HarnessError when
    the app fails or prints no summary."""
    cmd, spec_env, spec_timeout = suite_command(suite)
    env = app_env(suite, fakellm_url, otlp_endpoint, {**spec_env, **(extra_env or {})})
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or spec_timeout, env=env,
                              cwd=str(suite_dir(suite)), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"app {suite} timed out after {exc.timeout}s: {' '.join(cmd)}\n"
                           f"stdout:\n{(exc.stdout or b'')[-3000:]!r}\nstderr:\n{(exc.stderr or b'')[-5000:]!r}")
    res = AppResult(cmd, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = None
    if lines:
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            summary = None
    if proc.returncode != 0 or not isinstance(summary, dict):
        raise HarnessError(f"app {suite} failed (rc={proc.returncode}, summary={'yes' if summary else 'no'}): "
                           f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}")
    res.summary = summary
    return res


# --------------------------------------------------------------------------------------------- app-side helpers

def CountingSpanExporter(inner):  # noqa: N802 (a class factory: the SDK is imported only in the app's venv)
    """Wrap an OpenTelemetry SpanExporter; `.exported` counts spans whose export succeeded. Usage in an app:
        exp = CountingSpanExporter(OTLPSpanExporter()); provider.add_span_processor(BatchSpanProcessor(exp))
        ... provider.force_flush(); print_summary(spans_exported=exp.exported, ...)"""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class _Counting(SpanExporter):
        def __init__(self, wrapped):
            self.inner = wrapped
            self.exported = 0
            self.failed = 0

        def export(self, spans):
            result = self.inner.export(spans)
            if result == SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
            return result

        def shutdown(self):
            return self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000):
            f = getattr(self.inner, "force_flush", None)
            return f(timeout_millis) if f else True

        def __getattr__(self, name):
            return getattr(self.inner, name)

    return _Counting(inner)


def print_summary(**fields) -> None:
    """Print the app's summary as the last stdout line (call after flushing the tracer provider)."""
    sys.stdout.flush()
    print(json.dumps(fields, default=str), flush=True)


# --------------------------------------------------------------------------------------------- metrics

class Metrics(dict):
    """{(name, frozenset(labels.items())): value} parsed from Prometheus text, with helpers."""

    def series(self, name: str, **where) -> list[tuple[dict, float]]:
        out = []
        for (n, labels), v in self.items():
            if n != name:
                continue
            d = dict(labels)
            if all(d.get(k) == w for k, w in where.items() if w is not None):
                out.append((d, v))
        return out

    def sum(self, name: str, **where) -> float:
        return sum(v for _, v in self.series(name, **where))

    def group(self, name: str, by: tuple[str, ...], **where) -> dict:
        """{tuple(label values in `by`) (or the single value): summed value}."""
        out: dict = {}
        for d, v in self.series(name, **where):
            key = tuple(d.get(b, "") for b in by)
            key = key[0] if len(by) == 1 else key
            out[key] = out.get(key, 0.0) + v
        return out


def _parse_labels(s: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i, n = 0, len(s)
    while i < n:
        while i < n and s[i] in " ,":
            i += 1
        if i >= n:
            break
        eq = s.index("=", i)
        key = s[i:eq].strip()
        i = eq + 1
        assert s[i] == '"', s
        i += 1
        val = []
        while s[i] != '"':
            if s[i] == "\\":
                nxt = s[i + 1]
                val.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, nxt))
                i += 2
            else:
                val.append(s[i])
                i += 1
        i += 1
        labels[key] = "".join(val)
    return labels


def parse_metrics(text: str) -> Metrics:
    out = Metrics()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            lab, value = rest.rsplit("}", 1)
            labels = _parse_labels(lab)
        else:
            name, value = line.split(None, 1)
            labels = {}
        value = value.split()[0]
        v = float("inf") if value == "+Inf" else float("-inf") if value == "-Inf" else float(value)
        out[(name, frozenset(labels.items()))] = v
    return out


def wait_settled(cp: Chainpulse, spans_exported: int | None = None, timeout: float = 25.0) -> Metrics:
    """Wait until chainpulse received every exported span (or the received count is stable for 1.5 s when the
    app did not say) and assembly released them all (chainpulse_assembly_spans == 0); returns the last scrape."""
    deadline = time.monotonic() + timeout
    last_received, stable_since, m = -1.0, time.monotonic(), Metrics()
    while time.monotonic() < deadline:
        m = cp.metrics()
        received = m.sum("chainpulse_spans_received_total")
        held = m.sum("chainpulse_assembly_spans")
        inflight = m.sum("chainpulse_inflight_export_requests")
        if received != last_received:
            last_received, stable_since = received, time.monotonic()
        if spans_exported is not None:
            arrived = received >= spans_exported
        else:
            arrived = received > 0 and time.monotonic() - stable_since >= 1.5
        if arrived and held == 0 and inflight == 0:
            time.sleep(0.2)
            m2 = cp.metrics()
            if m2.sum("chainpulse_spans_received_total") == received and m2.sum("chainpulse_assembly_spans") == 0:
                return m2
        time.sleep(0.2)
    raise HarnessError(f"chainpulse did not settle in {timeout}s: spans received {last_received} "
                       f"(app exported {spans_exported}), assembly spans {m.sum('chainpulse_assembly_spans')}, "
                       f"rejected {m.sum('chainpulse_spans_rejected_total')}, "
                       f"requests rejected {m.group('chainpulse_otlp_requests_rejected_total', ('protocol', 'reason'))}"
                       f"\nlog:\n{cp.log()}")


# --------------------------------------------------------------------------------------------- prices

def _prices() -> dict:
    import tomllib
    with open(PRICES, "rb") as f:
        return tomllib.load(f)["pricing"]["models"]


def expected_cost(model: str, input: int = 0, output: int = 0, cache_read: int = 0, cache_write: int = 0,
                  **_ignored) -> float:
    """USD of ground-truth tokens at prices.toml's price (input includes cached tokens; reasoning is in output)."""
    p = _prices()[model]
    cr = p.get("cache_read", p["input"])
    cw = p.get("cache_write", p["input"])
    uncached = max(0, input - cache_read - cache_write)
    return (uncached * p["input"] + cache_read * cr + cache_write * cw + output * p["output"]) / 1e6


# --------------------------------------------------------------------------------------------- comparison

def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def _fmt(v) -> str:
    if isinstance(v, float) and v != int(v):
        return f"{v:.12g}"
    if isinstance(v, float):
        return str(int(v))
    return str(v)


def _cmp_full(problems: list, family: str, expected: dict, actual: dict, float_cmp: bool = False) -> None:
    for key in sorted(set(expected) | set(actual), key=repr):
        e = expected.get(key, 0)
        a = actual.get(key, 0)
        ok = _close(a, e) if float_cmp else a == e
        if not ok:
            tag = "" if key in expected else "   (not expected)"
            tag = "   (missing)" if key not in actual else tag
            problems.append(f"{family:<14} {str(key):<58} expected {_fmt(e):>14}   actual {_fmt(a):>14}{tag}")


def _chain_keyed(exp: dict, width: int) -> bool:
    """True when the expected map's keys carry the chain first (tuple of `width`)."""
    return any(isinstance(k, tuple) and len(k) == width for k in exp)


def check_figures(expected: dict, metrics: Metrics, kpis: dict | None) -> list[str]:
    """Every mismatch between `expected` (see the module doc) and /metrics + the KPI API, as readable lines."""
    problems: list[str] = []
    svc = expected.get("service")
    w = {"service": svc} if svc else {}

    if "requests" in expected:
        actual_total = metrics.group("chainpulse_requests_total", ("chain",), **w)
        actual_failed = metrics.group("chainpulse_requests_total", ("chain",), status="error", **w)
        exp_total = {c: v["total"] for c, v in expected["requests"].items()}
        exp_failed = {c: v.get("failed", 0) for c, v in expected["requests"].items()}
        _cmp_full(problems, "requests", exp_total, actual_total)
        _cmp_full(problems, "failed", exp_failed, actual_failed)

    if "llm_calls" in expected:
        e = expected["llm_calls"]
        by = ("chain", "model", "status") if _chain_keyed(e, 3) else ("model", "status")
        _cmp_full(problems, "llm_calls", e, metrics.group("chainpulse_llm_calls_total", by, **w))

    if "tokens" in expected:
        e = expected["tokens"]
        by = ("chain", "model", "type") if _chain_keyed(e, 3) else ("model", "type")
        _cmp_full(problems, "tokens", e, metrics.group("chainpulse_llm_tokens_total", by, **w))

    if "cost" in expected:
        e = expected["cost"]
        by = ("chain", "model") if _chain_keyed(e, 2) else ("model",)
        _cmp_full(problems, "cost_usd", e, metrics.group("chainpulse_llm_cost_usd_total", by, **w), float_cmp=True)

    if "errors" in expected:
        e = {(k if isinstance(k, tuple) else ("llm", k)): v for k, v in expected["errors"].items()}
        kinds = {k for k, _ in e}
        actual = {k: v for k, v in metrics.group("chainpulse_errors_total", ("kind", "error_type"), **w).items()
                  if k[0] in kinds}
        _cmp_full(problems, "errors", e, actual)

    if "runs" in expected:
        for key, want in expected["runs"].items():
            if isinstance(key, tuple):
                got = metrics.sum("chainpulse_runs_total", kind=key[0], step=key[1], **w)
            else:
                got = metrics.sum("chainpulse_runs_total", kind=key, **w)
            if got != want:
                problems.append(f"{'runs':<14} {str(key):<58} expected {_fmt(want):>14}   actual {_fmt(got):>14}")

    if "ttft" in expected:
        _cmp_full(problems, "ttft_count", expected["ttft"],
                  metrics.group("chainpulse_llm_time_to_first_token_seconds_count", ("model",), **w))

    if "usage_missing" in expected:
        _cmp_full(problems, "usage_missing", expected["usage_missing"],
                  metrics.group("chainpulse_llm_usage_missing_total", ("model",)))

    if "unpriced" in expected:
        _cmp_full(problems, "unpriced", expected["unpriced"],
                  metrics.group("chainpulse_llm_unpriced_calls_total", ("model",)))

    if kpis is not None:
        problems += _check_kpis(expected, metrics, kpis)
    return problems


def _kpi_expectations(expected: dict) -> list[tuple[str, str, float]]:
    """[(chain or '<all chains>', kpi field, expected value)] derived from the expected figures."""
    out: list[tuple[str, str, float]] = []
    for chain, v in expected.get("requests", {}).items():
        out += [(chain, "requests", v["total"]), (chain, "errors", v.get("failed", 0))]
    tok, cost = expected.get("tokens"), expected.get("cost")
    if tok is not None:
        for typ in ("input", "output"):
            if _chain_keyed(tok, 3):
                per: dict = {c: 0 for c in expected.get("requests", {})}
                for k, v in tok.items():
                    if k[2] == typ:
                        per[k[0]] = per.get(k[0], 0) + v
                out += [(c, "tokens_" + typ, v) for c, v in per.items()]
            else:
                out.append(("<all chains>", "tokens_" + typ, sum(v for k, v in tok.items() if k[-1] == typ)))
    if cost is not None:
        if _chain_keyed(cost, 2):
            per = {c: 0.0 for c in expected.get("requests", {})}
            for k, v in cost.items():
                per[k[0]] = per.get(k[0], 0.0) + v
            out += [(c, "cost_usd", v) for c, v in per.items()]
        else:
            out.append(("<all chains>", "cost_usd", sum(cost.values())))
    return out


def check_kpis(expected: dict, metrics: Metrics, kpis: dict) -> list[str]:
    """Only the KPI API checks of check_figures: expected per-chain figures, and agreement with /metrics."""
    return _check_kpis(expected, metrics, kpis)


def _check_kpis(expected: dict, metrics: Metrics, kpis: dict) -> list[str]:
    problems: list[str] = []
    svc = expected.get("service")
    rows = [r for r in kpis.get("chains", []) if not svc or r.get("service") == svc]
    fields = ("requests", "errors", "tokens_input", "tokens_output", "cost_usd")
    by_chain: dict = {}
    for r in rows:
        agg = by_chain.setdefault(r["chain"], {f: 0 for f in fields})
        for f in fields:
            agg[f] += r.get(f) or 0

    # 1. expected figures in the KPI API (chains with requests but not expected: expected 0)
    checks = _kpi_expectations(expected)
    if "requests" in expected:
        checks += [(c, f, 0) for c in by_chain if c not in expected["requests"] for f in ("requests", "errors")]
    for chain, f, ev in checks:
        if chain == "<all chains>":
            av = sum(a[f] for a in by_chain.values())
        else:
            av = by_chain.get(chain, {}).get(f, 0)
        if not (_close(av, ev) if f == "cost_usd" else av == ev):
            problems.append(f"{'kpi':<14} {str((chain, f)):<58} expected {_fmt(ev):>14}   actual {_fmt(av):>14}")

    # 2. KPI API and /metrics agree
    w = {"service": svc} if svc else {}
    m_req = metrics.group("chainpulse_requests_total", ("chain",), **w)
    m_err = metrics.group("chainpulse_requests_total", ("chain",), status="error", **w)
    m_tok = metrics.group("chainpulse_llm_tokens_total", ("chain", "type"), **w)
    m_cost = metrics.group("chainpulse_llm_cost_usd_total", ("chain",), **w)
    for chain in sorted(set(by_chain) | set(m_req)):
        prom = {"requests": m_req.get(chain, 0), "errors": m_err.get(chain, 0),
                "tokens_input": m_tok.get((chain, "input"), 0), "tokens_output": m_tok.get((chain, "output"), 0),
                "cost_usd": m_cost.get(chain, 0.0)}
        a = by_chain.get(chain, {f: 0 for f in fields})
        for f in fields:
            if not (_close(a[f], prom[f]) if f == "cost_usd" else a[f] == prom[f]):
                problems.append(f"{'kpi≠metrics':<14} {str((chain, f)):<58} metrics  {_fmt(prom[f]):>14}   kpi    "
                                f"{_fmt(a[f]):>14}")
    return problems


def format_problems(problems: list[str], header: str = "") -> str:
    lines = [header or f"{len(problems)} figure(s) differ from the ground truth:"]
    lines += ["  " + p for p in problems]
    return "\n".join(lines)


def assert_figures(expected: dict, metrics: Metrics, kpis: dict | None, context: str = "") -> None:
    problems = check_figures(expected, metrics, kpis)
    if problems:
        raise AssertionError(format_problems(problems, f"{len(problems)} figure(s) differ from the ground truth"
                                                       f"{' (' + context + ')' if context else ''}:"))


def figures_summary(metrics: Metrics, service: str | None = None) -> dict:
    """The figures chainpulse reports, in the expected-figures shape (for printing / writing expectations)."""
    w = {"service": service} if service else {}
    req = metrics.group("chainpulse_requests_total", ("chain", "status"), **w)
    requests: dict = {}
    for (chain, status), v in req.items():
        r = requests.setdefault(chain, {"total": 0, "failed": 0})
        r["total"] += int(v)
        if status == "error":
            r["failed"] += int(v)
    return {
        "requests": requests,
        "llm_calls": metrics.group("chainpulse_llm_calls_total", ("chain", "model", "status"), **w),
        "tokens": metrics.group("chainpulse_llm_tokens_total", ("chain", "model", "type"), **w),
        "cost": metrics.group("chainpulse_llm_cost_usd_total", ("chain", "model"), **w),
        "errors": metrics.group("chainpulse_errors_total", ("kind", "error_type"), **w),
        "runs": metrics.group("chainpulse_runs_total", ("kind", "step", "status"), **w),
        "ttft": metrics.group("chainpulse_llm_time_to_first_token_seconds_count", ("model",), **w),
        "usage_missing": metrics.group("chainpulse_llm_usage_missing_total", ("model",)),
        "unpriced": metrics.group("chainpulse_llm_unpriced_calls_total", ("model",)),
    }


# --------------------------------------------------------------------------------------------- one run

@dataclass
class RunResult:
    suite: str
    app: AppResult
    calls: list[dict]
    metrics: Metrics
    kpis: dict
    chainpulse: Chainpulse

    @property
    def summary(self) -> dict:
        return self.app.summary

    def check(self, expected: dict, kpi: bool = True) -> list[str]:
        """Mismatch lines; kpi=False checks /metrics only (KPI checks: check_kpis)."""
        return check_figures(expected, self.metrics, self.kpis if kpi else None)

    def assert_figures(self, expected: dict) -> None:
        assert_figures(expected, self.metrics, self.kpis, context=self.suite)

    def figures(self) -> dict:
        return figures_summary(self.metrics)


class Conformance:
    """A fresh fakellm + chainpulse; `run(suite)` runs the app against them and returns a RunResult."""

    def __init__(self, workdir: Path | None = None, chainpulse_env: dict[str, str] | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="conformance-"))
        self.fakellm = Fakellm(self.workdir)
        try:
            self.chainpulse = Chainpulse(self.workdir, extra_env=chainpulse_env)
            self.chainpulse.wait_ready()
        except BaseException:
            self.fakellm.stop()
            raise

    def run(self, suite: str, extra_env: dict[str, str] | None = None, timeout: float | None = None,
            window: str = "5m") -> RunResult:
        app = run_app(suite, self.fakellm.url, self.chainpulse.otlp_http, extra_env, timeout)
        exported = app.summary.get("spans_exported")
        metrics = wait_settled(self.chainpulse, int(exported) if exported is not None else None)
        return RunResult(suite, app, self.fakellm.calls(), metrics, self.chainpulse.kpis(window), self.chainpulse)

    def close(self) -> None:
        self.chainpulse.stop()
        self.fakellm.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------- test helpers

def fakellm_tokens(calls: list[dict]) -> dict:
    """chainpulse-style token totals by (model, type) from fakellm's record of what it answered."""
    out: dict = {}
    for c in calls:
        u = c.get("usage")
        if not u:
            continue
        for typ, v in (("input", u["in"]), ("output", u["out"]), ("cache_read", u["cached"]),
                       ("cache_write", u["cache_write"]), ("reasoning", u["reasoning"])):
            if v:
                out[(c["model"], typ)] = out.get((c["model"], typ), 0) + v
    return out


def run_tolerant(suite: str, workdir, extra_env_of) -> types.SimpleNamespace:
    """Like Conformance.run, but a chainpulse that never receives the data (today: HTTP 404 on the
    Langfuse path) still yields the fakellm ground truth and a scrape; the settle error is kept for the figures
    test."""
    # A longer assembly timeout than the harness's 1 s: on a loaded machine a root's export batch can come more
    # than 1 s after its children's, and chainpulse then counts an inferred root AND the late root.
    c = Conformance(workdir, chainpulse_env={"CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS": "5000"})
    try:
        app = run_app(suite, c.fakellm.url, c.chainpulse.otlp_http, extra_env_of(c.chainpulse))
        exported = app.summary.get("spans_exported")
        try:
            metrics = wait_settled(c.chainpulse, int(exported) if exported is not None else None)
            settle_error = None
        except HarnessError as exc:
            metrics, settle_error = c.chainpulse.metrics(), str(exc).split("\nlog:")[0]
        return types.SimpleNamespace(app=app, summary=app.summary, calls=c.fakellm.calls(), metrics=metrics,
                                     kpis=c.chainpulse.kpis(), settle_error=settle_error, conformance=c)
    except BaseException:
        c.close()
        raise


# --------------------------------------------------------------------------------------------- CLI

def capture(suite: str, to_stdout: bool = False, extra_env: dict[str, str] | None = None) -> Path | None:
    """Run the suite's app against fakellm + a capture sink; write tests/fixtures/conformance/<suite>.json."""
    work = Path(tempfile.mkdtemp(prefix=f"capture-{suite}-"))
    fake = Fakellm(work)
    sink = CaptureSink()
    try:
        app = run_app(suite, fake.url, sink.endpoint, extra_env)
        exported = app.summary.get("spans_exported")
        deadline = time.monotonic() + 10
        while exported is not None and sink.span_count() < int(exported) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        reqs = decode_captures(sink)
        calls = fake.calls()
    finally:
        sink.stop()
        fake.stop()
    spans = sum(len(s.get("spans", [])) for r in reqs for rs in r.get("resourceSpans", [])
                for s in rs.get("scopeSpans", []))
    other = sorted({p["path"] for p in sink.posts} - {p["path"] for p in sink.trace_posts()})
    text = json.dumps(reqs, indent=1, ensure_ascii=False) + "\n"
    print(f"capture {suite}: {len(reqs)} export request(s), {spans} span(s), app said spans_exported="
          f"{exported}, {len(calls)} provider call(s), app {app.seconds:.1f}s"
          + (f"; non-trace posts ignored: {other}" if other else ""), file=sys.stderr)
    if to_stdout:
        sys.stdout.write(text)
        return None
    FIXTURES_DIR.mkdir(parents=True, exist_ok=True)
    out = FIXTURES_DIR / f"{suite}.json"
    out.write_text(text)
    if "truth" in app.summary:
        truth = dict(app.summary["truth"])
        truth["fakellm_calls"] = [{k: c.get(k) for k in ("endpoint", "model", "response_model", "stream", "status",
                                                          "error_type", "tool_calls", "usage")} for c in calls]
        (FIXTURES_DIR / f"{suite}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        print(f"wrote {FIXTURES_DIR / (suite + '.truth.json')}", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return out


def _run_cli(suite: str) -> int:
    with Conformance() as c:
        res = c.run(suite)
        print(json.dumps({"summary": res.summary, "provider_calls": len(res.calls),
                          "figures": {k: {str(kk): vv for kk, vv in v.items()} for k, v in res.figures().items()},
                          "kpis": res.kpis.get("chains")}, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="chainpulse conformance harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="capture what a suite's library sends to tests/fixtures/conformance")
    c.add_argument("suite")
    c.add_argument("--stdout", action="store_true", help="print the capture instead of writing the fixture")
    r = sub.add_parser("run", help="run a suite against chainpulse and print the figures")
    r.add_argument("suite")
    args = ap.parse_args(argv)
    if args.cmd == "capture":
        capture(args.suite, args.stdout)
        return 0
    return _run_cli(args.suite)


if __name__ == "__main__":
    sys.exit(main())
