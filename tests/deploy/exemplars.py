"""Exemplars reach a real Prometheus and name traces chainpulse really received.

Starts Debian's prometheus (``--enable-feature=exemplar-storage``, its own
free port and temp dir, scraping every second; it negotiates OpenMetrics by
itself) and a chainpulse on free ports, sends requests with known trace ids
through the official OpenTelemetry SDK (OTLP/HTTP), then checks:

* ``GET /api/v1/query_exemplars`` on
  ``chainpulse_request_duration_seconds_bucket{chain=...}`` returns the trace
  ids that were sent, each on the bucket its duration falls in, with the
  root span id; the LLM duration and the request cost histograms carry them too;
* the KPI API's ``recent`` lists, ``/api/v1/requests`` and ``chainpulse
  report`` name the same requests, slowest / costliest / failed, with trace
  links from ``[links]`` (Jaeger preset);
* ``/metrics`` without ``Accept`` is still the 0.0.4 text format (no exemplars).

Only processes this script started are stopped. Env: CHAINPULSE_BIN,
PROMETHEUS_BIN, EXEMPLARS_KEEP=1 keeps the temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CHAINPULSE_BIN", str(ROOT / "target" / "debug" / "chainpulse"))
PROM = os.environ.get("PROMETHEUS_BIN", "prometheus")
SERVICE = "exemplar-app"
CHAIN = "exemplar_chain"
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120]
# Durations in distinct buckets (so each keeps its own exemplar); the 4 s one fails.
REQUESTS = [(0.03, False), (0.3, False), (1.5, False), (4.0, True), (20.0, False)]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def wait_for(what: str, fn, seconds: float, procs: list[subprocess.Popen]):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"exemplars: {p.args[0]} exited early ({p.returncode}) while waiting for {what}")
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.5)
    raise SystemExit(f"exemplars: timed out waiting for {what} (last error: {last})")


def bucket_of(v: float) -> str:
    for b in LATENCY_BUCKETS:
        if v <= b:
            return str(float(b))
    return "+Inf"


def send(otlp_http: int) -> list[dict]:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp_http}/v1/traces")))
    tracer = provider.get_tracer("exemplars-test")
    sent = []
    now = time.time_ns()
    for i, (duration, failed) in enumerate(REQUESTS):
        end = now - (len(REQUESTS) - i) * 1_000_000
        start = end - int(duration * 1e9)
        root = tracer.start_span(CHAIN, start_time=start, attributes={"openinference.span.kind": "CHAIN"})
        ctx = trace.set_span_in_context(root)
        llm = tracer.start_span("ChatOpenAI", context=ctx, start_time=start + 1000, attributes={
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.token_count.prompt": 1000 * (i + 1),
            "llm.token_count.completion": 100 * (i + 1),
        })
        llm.end(end_time=end - 1000)
        if failed:
            root.set_status(Status(StatusCode.ERROR, "boom"))
            root.set_attribute("exception.type", "RateLimitError")
            root.add_event("exception", {"exception.type": "RateLimitError", "exception.message": "x"})
        root.end(end_time=end)
        sc = root.get_span_context()
        sent.append({
            "trace_id": format(sc.trace_id, "032x"),
            "span_id": format(sc.span_id, "016x"),
            "llm_span_id": format(llm.get_span_context().span_id, "016x"),
            "duration": duration,
            "failed": failed,
        })
    provider.shutdown()
    return sent


def main() -> int:
    if shutil.which(PROM) is None:
        print(f"exemplars: {PROM} not found (apt-get install -y prometheus)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="chainpulse-exemplars-"))
    prom_port, grpc, http, metrics = free_ports(4)
    procs: list[subprocess.Popen] = []
    ok = False
    try:
        (work / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: chainpulse\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics}']\n")
        prom_log = open(work / "prometheus.log", "wb")
        procs.append(subprocess.Popen(
            [PROM, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--enable-feature=exemplar-storage"],
            stdout=prom_log, stderr=subprocess.STDOUT))
        env = dict(os.environ, CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS="1000",
                   CHAINPULSE_LINKS__PRESET="jaeger", CHAINPULSE_LINKS__BASE_URL="http://jaeger.test:16686")
        cp_log = open(work / "chainpulse.log", "wb")
        procs.append(subprocess.Popen(
            [BIN, "run", "--grpc-addr", f"127.0.0.1:{grpc}", "--http-addr", f"127.0.0.1:{http}",
             "--metrics-addr", f"127.0.0.1:{metrics}"], stdout=cp_log, stderr=subprocess.STDOUT, env=env))
        prom = f"http://127.0.0.1:{prom_port}"
        api = f"http://127.0.0.1:{metrics}"
        wait_for("prometheus ready", lambda: get(f"{prom}/-/ready"), 30, procs)
        wait_for("chainpulse /metrics", lambda: get(f"{api}/metrics"), 30, procs)

        sent = send(http)
        by_trace = {s["trace_id"]: s for s in sent}
        print(f"exemplars: sent {len(sent)} requests: {', '.join(by_trace)}")

        # The KPI API names them (recent lists, links).
        def kpis():
            _, body = get(f"{api}/api/v1/kpis?window=5m&service={SERVICE}&chain={CHAIN}")
            chains = json.loads(body)["chains"]
            return chains if chains and chains[0]["requests"] >= len(sent) else None
        chain = wait_for("the KPI API to count the requests", kpis, 30, procs)[0]
        recent = chain["recent"]
        slowest = [r["trace_id"] for r in recent["slowest"]]
        want_slowest = [s["trace_id"] for s in sorted(sent, key=lambda s: -s["duration"])]
        assert slowest == want_slowest, f"slowest {slowest} != {want_slowest}"
        failed = [r["trace_id"] for r in recent["failed"]]
        assert failed == [s["trace_id"] for s in sent if s["failed"]], f"failed {failed}"
        costliest = [r["trace_id"] for r in recent["costliest"]]
        # Token counts grow with i, so cost does: costliest is the reverse sending order.
        assert costliest == [s["trace_id"] for s in reversed(sent)], f"costliest {costliest} {recent}"
        for r in recent["slowest"]:
            s = by_trace[r["trace_id"]]
            assert r["span_id"] == s["span_id"], r
            assert r["trace_url"] == f"http://jaeger.test:16686/trace/{r['trace_id']}", r
            assert r["service"] == SERVICE and r["chain"] == CHAIN, r
            assert abs(r["duration_seconds"] - s["duration"]) < 1e-3, r
            assert (r["error_type"] == "RateLimitError") == s["failed"], r
        _, body = get(f"{api}/api/v1/requests?by=failed&window=1h&service={SERVICE}")
        assert [r["trace_id"] for r in json.loads(body)["requests"]] == failed, body
        report = subprocess.run([BIN, "report", "--url", api, "--window", "5m", "--service", SERVICE],
                                capture_output=True, text=True, timeout=30, check=True).stdout
        assert "recent requests" in report, report
        for s in sent:
            if s["failed"] or s["duration"] >= 1.5:
                assert f"http://jaeger.test:16686/trace/{s['trace_id']}" in report, report
        print("exemplars: KPI API recent lists, /api/v1/requests and chainpulse report name the sent traces, "
              "with Jaeger links")

        # Plain scrape: text 0.0.4, no exemplars; OpenMetrics on request.
        ctype, text = get(f"{api}/metrics")
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        assert " # {" not in text and "# EOF" not in text
        ctype, om = get(f"{api}/metrics", {"Accept": "application/openmetrics-text;version=1.0.0"})
        assert ctype.startswith("application/openmetrics-text"), ctype
        assert om.endswith("# EOF\n") and 'trace_id="' in om

        def exemplars(series: str):
            now = time.time()
            q = urllib.parse.urlencode({"query": series, "start": now - 600, "end": now + 60})
            _, body = get(f"{prom}/api/v1/query_exemplars?{q}")
            return json.loads(body)["data"]

        sel = f'chainpulse_request_duration_seconds_bucket{{service="{SERVICE}",chain="{CHAIN}"}}'

        def all_found():
            data = exemplars(sel)
            seen = {e["labels"]["trace_id"]: (d["seriesLabels"], e) for d in data for e in d["exemplars"]}
            return data if set(by_trace) <= set(seen) else None
        data = wait_for("Prometheus to store the exemplars", all_found, 40, procs)
        for d in data:
            labels = d["seriesLabels"]
            assert labels["chain"] == CHAIN and labels["service"] == SERVICE, labels
            for e in d["exemplars"]:
                s = by_trace.get(e["labels"]["trace_id"])
                assert s, f"exemplar names a trace that was never sent: {e}"
                assert e["labels"]["span_id"] == s["span_id"], e
                assert abs(float(e["value"]) - s["duration"]) < 1e-3, e
                assert labels["le"] == bucket_of(s["duration"]), (labels, e)
        print(f"exemplars: query_exemplars returns all {len(sent)} trace ids on {sel}, each on its bucket")

        llm = exemplars(f'chainpulse_llm_duration_seconds_bucket{{service="{SERVICE}",chain="{CHAIN}"}}')
        llm_ids = {e["labels"]["span_id"] for d in llm for e in d["exemplars"]}
        assert llm_ids and llm_ids <= {s["llm_span_id"] for s in sent}, llm
        cost = exemplars(f'chainpulse_request_cost_usd_bucket{{service="{SERVICE}",chain="{CHAIN}"}}')
        cost_ids = {e["labels"]["trace_id"] for d in cost for e in d["exemplars"]}
        assert cost_ids and cost_ids <= set(by_trace), cost
        print(f"exemplars: LLM duration ({len(llm_ids)}) and request cost ({len(cost_ids)}) exemplars are sent traces")
        ok = True
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not ok:
            for name in ("chainpulse.log", "prometheus.log"):
                f = work / name
                if f.exists():
                    print(f"--- {name} (tail)", file=sys.stderr)
                    print("\n".join(f.read_text(errors="replace").splitlines()[-20:]), file=sys.stderr)
        if os.environ.get("EXEMPLARS_KEEP") == "1":
            print(f"exemplars: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
