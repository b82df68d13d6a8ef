"""Two-replica fleet test: `chainpulse report --prometheus` against Debian's real Prometheus.

Starts two chainpulse sidecars (the debug binary) and a private Prometheus (own temp dir, own free ports; it never
touches a Prometheus the machine already runs) scraping both every second. Sends each sidecar known traffic through the
official OpenTelemetry Python SDK (OTLP/HTTP): different latencies, errors, models and token counts, every latency off
the bucket edges. Then checks that the fleet report agrees with the two sidecars' KPI APIs combined:
  * requests, errors, tokens exactly, cost to float rounding;
  * each quantile's stated bucket holds the true quantile of the known latencies (nearest rank), and per replica
    (--selector on its instance) it holds that sidecar's own sketch quantile;
  * every SLO verdict equals the verdict of the known latencies and counts (fleet) and the sidecar's own (per replica).
Prometheus requires basic auth (its --web.config.file), as a Thanos / Mimir front usually does: the report passes it
from `${env:…}` references. Plus the error paths: a bad selector, a wrong password, an unreachable Prometheus and a
non-Prometheus URL give a clear error and exit status 1.

Run: .venv/bin/python tests/deploy/fleet/test_fleet.py  (CHAINPULSE_BIN, PROMETHEUS_BIN, FLEET_KEEP=1 to keep logs).
"""
from __future__ import annotations

import base64
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.environ.get("CHAINPULSE_BIN", os.path.join(ROOT, "target", "debug", "chainpulse"))
PROM = os.environ.get("PROMETHEUS_BIN", "prometheus")
SERVICE, CHAIN = "fleet-app", "rag_query"

# (latency seconds, request fails, how many). Replica a: fast, two failures, gpt-4o-mini. Replica b: slower, one
# failure, gpt-4o. Fleet: 100 requests, 61 <= 1 s, exactly 95 <= 2 s (P95 <= 2 s met at exactly 95 %), 98 <= 3 s
# (P99 <= 3 s not met), 3 errors (error rate 3 %: not met).
TRAFFIC = {
    "a": {"model": "gpt-4o-mini", "tokens": (100, 20),
          "requests": [(0.3, False, 30), (1.5, False, 7), (2.5, True, 2), (4.0, False, 1)]},
    "b": {"model": "gpt-4o", "tokens": (300, 50),
          "requests": [(0.8, False, 31), (1.5, False, 26), (1.5, True, 1), (2.5, False, 1), (4.0, False, 1)]},
}
# Replica b's configuration sets a live-traffic throughput floor for the chain (opt-in); a sets none. The fleet report
# must read it from chainpulse_slo_target: no verdict for window all (no rate), NOT MET over a window.
FLOOR = 1000.0
CONFIG_B = f"""[[slo.overrides]]\nchain = "{CHAIN}"\nmin_throughput_rps = {FLOOR}\n"""
# Basic auth on the private Prometheus: a test credential (bcrypt cost 4 keeps each request cheap).
PROM_USER, PROM_PASSWORD = "fleet", "fleet-test-password"
PROM_BCRYPT = "$2b$04$BMcAQ7cB4CrZkoCD9xOcK.wIEcpeUMWatMhPdiZ6PSdNNnU8Z9Gfa"
AUTH_HEADER = "Basic " + base64.b64encode(f"{PROM_USER}:{PROM_PASSWORD}".encode()).decode()
AUTH_ARGS = ("--basic-auth", "${env:FLEET_PROM_USER}:${env:FLEET_PROM_PASSWORD}")
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
TARGETS = {"latency_p50_seconds": (1.0, 50), "latency_p95_seconds": (2.0, 95), "latency_p99_seconds": (3.0, 99)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, auth: bool = False) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": AUTH_HEADER} if auth else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def wait(what: str, cond, seconds: float = 60.0, procs: list[subprocess.Popen] | None = None) -> Any:
    deadline = time.time() + seconds
    last: Any = None
    while time.time() < deadline:
        for p in procs or []:
            if p.poll() is not None:
                raise SystemExit(f"fleet: a process exited early ({p.args[0]}, status {p.returncode}) while waiting for {what}")
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.25)
    raise SystemExit(f"fleet: timed out waiting for {what} (last: {last!r})")


def send(endpoint: str, spec: dict[str, Any]) -> None:
    """Known requests through the official OTel SDK: an OpenInference CHAIN root with one LLM child."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    tracer = provider.get_tracer("chainpulse-fleet-test")
    t0 = time.time_ns() - 30 * 10**9
    tin, tout = spec["tokens"]
    for latency, fails, n in spec["requests"]:
        for _ in range(n):
            end = t0 + int(latency * 1e9)
            root = tracer.start_span(CHAIN, start_time=t0, attributes={"openinference.span.kind": "CHAIN"})
            ctx = trace.set_span_in_context(root)
            llm = tracer.start_span("ChatOpenAI", context=ctx, start_time=t0 + 1_000_000, kind=trace.SpanKind.CLIENT,
                                    attributes={"openinference.span.kind": "LLM", "llm.model_name": spec["model"],
                                                "llm.provider": "openai",
                                                "llm.token_count.prompt": 0 if fails else tin,
                                                "llm.token_count.completion": 0 if fails else tout,
                                                "llm.token_count.total": 0 if fails else tin + tout})
            if fails:
                llm.set_status(Status(StatusCode.ERROR, "RateLimitError('rate limit')"))
                root.set_status(Status(StatusCode.ERROR, "RateLimitError('rate limit')"))
            llm.end(end_time=end - 1_000_000)
            root.end(end_time=end)
    provider.force_flush()
    provider.shutdown()


def latencies(specs) -> list[float]:
    return sorted(lat for spec in specs for lat, _, n in spec["requests"] for _ in range(n))


def nearest_rank(values: list[float], q: float) -> float:
    return values[max(1, math.ceil(q * len(values))) - 1]


def report(prom: str, *extra: str, password: str = PROM_PASSWORD) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLEET_PROM_USER=PROM_USER, FLEET_PROM_PASSWORD=password)
    return subprocess.run([BIN, "report", "--prometheus", prom, *AUTH_ARGS, *extra], capture_output=True, text=True,
                          timeout=60, env=env)


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.n = 0

    def check(self, ok: bool, msg: str) -> None:
        self.n += 1
        if not ok:
            self.failures.append(msg)
            print(f"fleet: FAIL {msg}")


def compare(c: Checks, what: str, fleet: dict[str, Any], apis: list[dict[str, Any]], truth: list[float] | None,
            errors: int, throughput: str | None) -> None:
    """Fleet report chain `fleet` against the KPI API chains `apis` (one per replica it covers). `throughput`: the
    expected status of the throughput check (a replica exports a floor), or None (no floor exported: no check)."""
    for field in ("requests", "errors", "tokens_input", "tokens_output", "unpriced_requests"):
        want = sum(a[field] for a in apis)
        c.check(fleet[field] == want, f"{what}: {field} {fleet[field]} != KPI APIs' {want}")
    want_cost = sum(a["cost_usd"] for a in apis)
    c.check(math.isclose(fleet["cost_usd"], want_cost, rel_tol=1e-9, abs_tol=1e-12),
            f"{what}: cost_usd {fleet['cost_usd']!r} != KPI APIs' {want_cost!r}")
    priced = sum(a["requests"] - a["unpriced_requests"] for a in apis)
    want_cpr = sum(a["cost_per_request_usd"] * (a["requests"] - a["unpriced_requests"]) for a in apis) / priced
    c.check(math.isclose(fleet["cost_per_request_usd"], want_cpr, rel_tol=1e-9),
            f"{what}: cost_per_request_usd {fleet['cost_per_request_usd']!r} != {want_cpr!r}")
    c.check(fleet["errors"] == errors, f"{what}: errors {fleet['errors']} != sent {errors}")
    for name, q in QUANTILES.items():
        got = fleet["latency_seconds"][name]
        lo, hi = got["bucket_lower"], got["bucket_upper"] if got["bucket_upper"] is not None else math.inf
        c.check(lo <= got["value"] <= hi, f"{what}: {name} {got['value']} outside its stated bucket ({lo}, {hi}]")
        if truth is not None:
            t = nearest_rank(truth, q)
            c.check(lo < t <= hi, f"{what}: true {name} {t} outside the stated bucket ({lo}, {hi}]")
        if len(apis) == 1:
            s = apis[0]["latency_seconds"][name]
            # The sidecar's sketch has 1 % relative error.
            c.check(lo / 1.01 < s <= hi * 1.01, f"{what}: sidecar {name} {s} outside the stated bucket ({lo}, {hi}]")
    verdicts = {k["kpi"]: k["status"] for k in fleet["kpis"]}
    if throughput is None:
        c.check("throughput_rps" not in verdicts, f"{what}: a throughput verdict without a configured floor: {verdicts}")
    else:
        t = next((k for k in fleet["kpis"] if k["kpi"] == "throughput_rps"), {})
        got = (t.get("target"), t.get("target_source"), t.get("status"))
        c.check(got == (FLOOR, "chainpulse_slo_target", throughput),
                f"{what}: throughput check {got} != ({FLOOR}, chainpulse_slo_target, {throughput})")
    if truth is not None:
        for kpi, (target, pct) in TARGETS.items():
            within = sum(1 for v in truth if v <= target)
            want = "pass" if within * 100 >= pct * len(truth) else "fail"
            c.check(verdicts.get(kpi) == want, f"{what}: {kpi} {verdicts.get(kpi)} != {want} ({within}/{len(truth)} <= {target} s)")
        want_err = "pass" if errors / len(truth) <= 0.001 else "fail"
        c.check(verdicts.get("error_rate") == want_err, f"{what}: error_rate verdict {verdicts.get('error_rate')} != {want_err}")
        c.check(verdicts.get("availability") == want_err, f"{what}: availability verdict {verdicts.get('availability')} != {want_err}")
    if len(apis) == 1:
        mine = {k["kpi"]: k["status"] for k in apis[0]["kpis"]}
        for kpi in ("latency_p50_seconds", "latency_p95_seconds", "latency_p99_seconds", "error_rate", "availability"):
            c.check(verdicts.get(kpi) == mine.get(kpi), f"{what}: {kpi} fleet {verdicts.get(kpi)} != sidecar {mine.get(kpi)}")
        c.check(fleet["targets_met"] == apis[0]["targets_met"], f"{what}: targets_met differs from the sidecar's")
        c.check(("throughput_rps" in mine) == (throughput is not None),
                f"{what}: the sidecar's throughput check {mine.get('throughput_rps')} (floor configured: {throughput is not None})")


def main() -> int:
    if not os.access(BIN, os.X_OK):
        print(f"fleet: chainpulse binary not found at {BIN} (set CHAINPULSE_BIN)", file=sys.stderr)
        return 2
    if shutil.which(PROM) is None:
        print(f"fleet: {PROM} not found (apt-get install -y prometheus)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="chainpulse-fleet-")
    procs: list[subprocess.Popen] = []
    logs = []
    ok = False
    try:
        replicas = {}
        for name in TRAFFIC:
            ports = {k: free_port() for k in ("grpc", "http", "metrics")}
            log = open(os.path.join(work, f"chainpulse-{name}.log"), "w")
            logs.append(log)
            config = os.path.join(work, f"chainpulse-{name}.toml")
            with open(config, "w") as f:
                f.write(CONFIG_B if name == "b" else "")
            procs.append(subprocess.Popen(
                [BIN, "run", "--config", config, "--grpc-addr", f"127.0.0.1:{ports['grpc']}", "--http-addr", f"127.0.0.1:{ports['http']}",
                 "--metrics-addr", f"127.0.0.1:{ports['metrics']}"], stdout=log, stderr=subprocess.STDOUT))
            replicas[name] = ports
        prom_port = free_port()
        targets = ", ".join(f"'127.0.0.1:{p['metrics']}'" for p in replicas.values())
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                    f"  - job_name: chainpulse\n    static_configs:\n      - targets: [{targets}]\n")
        with open(os.path.join(work, "web.yml"), "w") as f:
            f.write(f"basic_auth_users:\n  {PROM_USER}: '{PROM_BCRYPT}'\n")
        log = open(os.path.join(work, "prometheus.log"), "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [PROM, f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/data",
             f"--web.config.file={work}/web.yml", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT))
        prom = f"http://127.0.0.1:{prom_port}"
        for name, p in replicas.items():
            wait(f"sidecar {name}", lambda p=p: urllib.request.urlopen(f"http://127.0.0.1:{p['metrics']}/metrics", timeout=1), procs=procs)
        wait("prometheus", lambda: urllib.request.urlopen(
            urllib.request.Request(f"{prom}/-/ready", headers={"Authorization": AUTH_HEADER}), timeout=1), procs=procs)

        for name, spec in TRAFFIC.items():
            send(f"http://127.0.0.1:{replicas[name]['http']}", spec)
        expected = {name: sum(n for _, _, n in spec["requests"]) for name, spec in TRAFFIC.items()}
        apis = {}
        for name, p in replicas.items():
            url = f"http://127.0.0.1:{p['metrics']}/api/v1/kpis?window=all&service={SERVICE}&chain={CHAIN}"
            body = wait(f"sidecar {name} to count {expected[name]} requests",
                        lambda url=url, n=expected[name]: (lambda b: b if b["chains"] and b["chains"][0]["requests"] == n else None)(get_json(url)),
                        procs=procs)
            apis[name] = body["chains"][0]
        total = sum(expected.values())
        q = urllib.parse.quote(f'sum(chainpulse_requests_total{{service="{SERVICE}"}})')
        wait("prometheus to scrape every request",
             lambda: (lambda r: r and float(r[0]["value"][1]) == total)(get_json(f"{prom}/api/v1/query?query={q}", auth=True)["data"]["result"]),
             procs=procs)
        # Both replicas' latest values are in; one more scrape of each so no series lags behind the sum.
        time.sleep(2.5)

        c = Checks()
        truth = latencies(TRAFFIC.values())
        errors = sum(n for spec in TRAFFIC.values() for _, fails, n in spec["requests"] if fails)
        for window in ("all", "10m"):
            r = report(prom, "--window", window, "--format", "json")
            c.check(r.returncode == 0, f"report --window {window} failed: {r.stderr}")
            if r.returncode:
                continue
            body = json.loads(r.stdout)
            chains = [x for x in body["chains"] if (x["service"], x["chain"]) == (SERVICE, CHAIN)]
            c.check(len(chains) == 1, f"window {window}: expected one {SERVICE}/{CHAIN} chain, got {body['chains']}")
            if chains:
                c.check(chains[0]["replicas"] == 2, f"window {window}: replicas {chains[0]['replicas']} != 2")
                compare(c, f"fleet window {window}", chains[0], list(apis.values()), truth, errors,
                        "no_data" if window == "all" else "fail")
        for name, p in replicas.items():
            sel = f'{{instance="127.0.0.1:{p["metrics"]}"}}'
            r = report(prom, "--window", "all", "--format", "json", "--selector", sel, "--service", SERVICE)
            c.check(r.returncode == 0, f"report --selector {sel} failed: {r.stderr}")
            if r.returncode == 0:
                chain = json.loads(r.stdout)["chains"][0]
                spec_errors = sum(n for _, fails, n in TRAFFIC[name]["requests"] if fails)
                compare(c, f"replica {name}", chain, [apis[name]], latencies([TRAFFIC[name]]), spec_errors,
                        "no_data" if name == "b" else None)
        # A window that starts between two batches counts only the second one, exactly: the per-series difference
        # to the scrape one window back (no extrapolation), on series that already existed before the window.
        t_quiet = time.time()
        time.sleep(4)
        second = {"model": "gpt-4o-mini", "tokens": (100, 20), "requests": [(0.3, False, 9), (2.5, True, 1)]}
        t_send = time.time()
        send(f"http://127.0.0.1:{replicas['a']['http']}", second)
        total += 10
        wait("prometheus to scrape the second batch",
             lambda: (lambda r: r and float(r[0]["value"][1]) == total)(get_json(f"{prom}/api/v1/query?query={q}", auth=True)["data"]["result"]),
             procs=procs)
        time.sleep(2.5)
        start = (t_quiet + t_send) / 2  # 2 s from either edge
        w = f"{math.ceil(time.time() - start)}s"
        r = report(prom, "--window", w, "--format", "json")
        c.check(r.returncode == 0, f"report --window {w} failed: {r.stderr}")
        if r.returncode == 0:
            chain = json.loads(r.stdout)["chains"][0]
            got = (chain["requests"], chain["errors"], chain["tokens_input"], chain["tokens_output"])
            c.check(got == (10, 1, 900, 180), f"window {w} over the second batch: (requests, errors, tokens in, out) {got} != (10, 1, 900, 180)")
            c.check(chain["counter_resets"] == 0, f"window {w}: counter resets {chain['counter_resets']}")
            c.check(chain["throughput_rps"] is not None and chain["throughput_rps"] > 0, f"window {w}: throughput {chain['throughput_rps']}")
            verdicts = {k["kpi"]: k["status"] for k in chain["kpis"]}
            # 9 of 10 <= 1 s: P50 met, P95 <= 2 s not met (90 %).
            c.check((verdicts.get("latency_p50_seconds"), verdicts.get("latency_p95_seconds")) == ("pass", "fail"),
                    f"window {w}: verdicts {verdicts}")

        text = report(prom, "--window", "all")
        print(text.stdout)
        c.check(text.returncode == 0 and "2 replicas" in text.stdout and 'bucket le="2"' in text.stdout,
                f"text report: {text.stdout}{text.stderr}")

        # Bad input: a clear error, exit status 1.
        bad = report(prom, "--selector", '{namespace=~"("}')
        c.check(bad.returncode == 1 and "bad_data" in bad.stderr, f"bad selector: status {bad.returncode}, {bad.stderr!r}")
        wrong = report(prom, "--window", "all", password="wrong")
        c.check(wrong.returncode == 1 and "401" in wrong.stderr and "wrong" not in wrong.stderr,
                f"wrong password: status {wrong.returncode}, {wrong.stderr!r}")
        down = report(f"http://127.0.0.1:{free_port()}", "--window", "all")
        c.check(down.returncode == 1 and "cannot reach Prometheus" in down.stderr,
                f"unreachable Prometheus: status {down.returncode}, {down.stderr!r}")
        sidecar = report(f"http://127.0.0.1:{replicas['a']['metrics']}", "--window", "all")
        c.check(sidecar.returncode == 1 and "not a Prometheus API answer" in sidecar.stderr,
                f"a sidecar's URL as --prometheus: status {sidecar.returncode}, {sidecar.stderr!r}")
        window = report(prom, "--window", "five")
        c.check(window.returncode == 1 and "Prometheus duration" in window.stderr, f"bad window: {window.stderr!r}")

        print(f"fleet: {c.n} checks, {len(c.failures)} failed")
        ok = not c.failures
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        if not ok:
            for name in sorted(os.listdir(work)):
                if name.endswith(".log"):
                    print(f"--- {name} (tail)")
                    with open(os.path.join(work, name)) as f:
                        print("".join(f.readlines()[-15:]))
        if os.environ.get("FLEET_KEEP") == "1":
            print(f"fleet: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
