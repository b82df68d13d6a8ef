#!/usr/bin/env python3
"""chainpulse vs Rotel, side by side, on one captured LangChain OTLP/HTTP request (see README.md here).

For every round, configuration and measurement, each chainpulse binary runs first (`--chainpulse NAME=PATH`, given
once or more: e.g. a `before` and an `after` build measured in the same run) and Rotel right after, each in a fresh
process (so RSS is that of the measured load only), with a fresh null upstream (nullsink) beside it. Only processes
this script started are ever signalled, by PID.

Measurements (h2load, HTTP/1.1, 4 connections):
  sat    -n 20000 -m 1 flat out: spans/s accepted (2xx x spans per request / h2load's time) and CPU us per span
  paced  556 req/s (-c 4 --rps 139) of the 18-span fixture for 10 s: CPU % of one core, RSS, latency p50/p99
  big    20 req/s (-c 4 --rps 5) of a 504-span request (fixture x 28) for 20 s: same figures
CPU is utime+stime of the collector process from /proc/PID/stat, from just before h2load starts until the
collector has nothing left to do (configuration A: 0.5 s after h2load ends; B: once the upstream has counted every
accepted span, then 0.2 s). The upstream's CPU is not counted (reported for information).
"""
import argparse, json, math, os, re, resource, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

HZ = os.sysconf("SC_CLK_TCK")
# Below the ephemeral range (32768-60999 here): a port inside it can be taken by any client socket on the machine,
# and polling a port that is not listening yet can even connect to itself.
CP_PORTS = dict(grpc=31317, http=31318, metrics=31464)
RO_PORTS = dict(grpc=32317, http=32318)
SINK_PORT = 32418
OWN = []  # PIDs this script started and has not yet reaped


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of the line)


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def sys_busy_ticks():
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:]))
    return sum(v) - v[3] - v[4], sum(v)  # busy (all but idle, iowait), total


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_port(port, secs=20):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def start(cmd, logpath, cwd, env=None):
    p = subprocess.Popen(cmd, stdout=open(logpath, "ab"), stderr=subprocess.STDOUT, cwd=cwd,
                         env=env, start_new_session=True)
    OWN.append(p)
    return p


def stop(p, secs=15):
    """SIGTERM the process we started (by PID), SIGKILL it if it has not exited after `secs`."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(secs)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    if p in OWN:
        OWN.remove(p)


def h2load(url, body, out_txt, log_file=None, n=None, dur=None, rps=None, conns=4):
    cmd = ["h2load", "--h1", "-c", str(conns), "-m", "1", "-d", body, "-H", "content-type: application/x-protobuf"]
    if n:
        cmd += ["-n", str(n)]
    if dur:
        cmd += ["-D", str(dur)]
    if rps:
        cmd += ["--rps", str(rps)]
    if log_file:
        cmd += [f"--log-file={log_file}"]
    cmd.append(url)
    with open(out_txt, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    txt = open(out_txt).read()
    r = {}
    m = re.search(r"finished in ([\d.]+)(ms|s),", txt)
    r["elapsed_s"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1) if m else float("nan")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", txt)
    if m:
        r.update(dict(zip(["total", "started", "done", "succeeded", "failed", "errored", "timeout"], map(int, m.groups()))))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", txt)
    r.update(dict(zip(["s2xx", "s3xx", "s4xx", "s5xx"], map(int, m.groups()))) if m else dict(s2xx=0, s3xx=0, s4xx=0, s5xx=0))
    if log_file and os.path.exists(log_file):
        lat = sorted(int(x.split()[2]) for x in open(log_file) if len(x.split()) >= 3)
        if lat:
            q = lambda p: lat[max(0, math.ceil(p * len(lat)) - 1)] / 1000.0
            r.update(p50_ms=q(0.50), p99_ms=q(0.99), max_ms=lat[-1] / 1000.0, n_lat=len(lat))
    return r


def cp_counters():
    txt = http_get(f"http://127.0.0.1:{CP_PORTS['metrics']}/metrics")
    rec = sum(float(l.split()[-1]) for l in txt.splitlines() if l.startswith("chainpulse_spans_received_total"))
    sent = sum(float(l.split()[-1]) for l in txt.splitlines()
               if l.startswith("chainpulse_forward_spans_total") and 'result="sent"' in l)
    return rec, sent


def sink_stats():
    return json.loads(http_get(f"http://127.0.0.1:{SINK_PORT}/stats"))


class Run:
    def __init__(self, a, work):
        self.a, self.work = a, work
        self.fix_spans, self.big_spans = a.spans_per_request, a.spans_per_request * a.big_factor

    def collector_cmd(self, system, config):
        if system != "rotel":
            cmd = [self.a.cp[system], "--grpc-addr", f"127.0.0.1:{CP_PORTS['grpc']}",
                   "--http-addr", f"127.0.0.1:{CP_PORTS['http']}", "--metrics-addr", f"127.0.0.1:{CP_PORTS['metrics']}"]
            env = dict(os.environ)
            if config == "B":
                cmd += ["--forward", f"http://127.0.0.1:{SINK_PORT}/v1/traces"]
            elif config == "Bgz":
                cfg = os.path.join(self.work, "cp-gzip.toml")
                with open(cfg, "w") as f:
                    f.write(f'[[forward.destinations]]\nprotocol = "http"\nendpoint = "http://127.0.0.1:{SINK_PORT}/v1/traces"\n'
                            'compression = "gzip"\n')
                cmd += ["--config", cfg]
            return cmd, env
        base = [self.a.rotel, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{RO_PORTS['grpc']}",
                "--otlp-http-endpoint", f"127.0.0.1:{RO_PORTS['http']}", "--enable-internal-telemetry",
                "--pid-file", os.path.join(self.work, "rotel.pid"), "--log-file", os.path.join(self.work, "rotel.log")]
        env = dict(os.environ)
        if config == "A":
            # traces -> blackhole; rotel's own metrics (rotel_receiver_accepted_spans ...) -> the null upstream,
            # which reads them: that is how we check that Rotel accepted every span.
            env.update(ROTEL_EXPORTER_M_ENDPOINT=f"http://127.0.0.1:{SINK_PORT}", ROTEL_EXPORTER_M_PROTOCOL="http")
            return base + ["--exporters", "bh:blackhole,m:otlp", "--exporters-traces", "bh", "--exporters-metrics", "m"], env
        # B and Bgz: the OTLP exporter over HTTP to the null upstream. `--otlp-exporter-compression none` is asked
        # for, but this build gzips regardless (the flag's value is wrapped in Some(..); see README.md).
        return base + ["--exporter", "otlp", "--otlp-exporter-endpoint", f"http://127.0.0.1:{SINK_PORT}",
                       "--otlp-exporter-protocol", "http", "--otlp-exporter-compression", "none"], env

    def one(self, system, config, meas, rnd):
        tag = f"r{rnd}-{config}-{meas}-{system}"
        wd = os.path.join(self.work, tag)
        os.makedirs(wd)
        sink = start([self.a.sink, f"127.0.0.1:{SINK_PORT}"], os.path.join(wd, "sink.log"), wd)
        col = None
        try:
            assert wait_port(SINK_PORT), "null upstream did not start"
            cmd, env = self.collector_cmd(system, config)
            col = start(cmd, os.path.join(wd, "collector.log"), wd, env)
            port = CP_PORTS["http"] if system != "rotel" else RO_PORTS["http"]
            if system != "rotel":
                end = time.time() + 20
                while time.time() < end:
                    try:
                        http_get(f"http://127.0.0.1:{CP_PORTS['metrics']}/readyz", 1); break
                    except Exception:
                        time.sleep(0.05)
            assert wait_port(port), f"{system} did not open {port}"
            url = f"http://127.0.0.1:{port}/v1/traces"
            body, spr = (self.a.big, self.big_spans) if meas == "big" else (self.a.fixture, self.fix_spans)
            # warm-up: the same for both (connections, allocator, first batches)
            w = h2load(url, body, os.path.join(wd, "warmup.txt"), n=(8 if meas == "big" else 200))
            warm_spans = w["s2xx"] * spr
            time.sleep(0.5 if config == "A" else 0.3)
            if config != "A":  # let the warm-up drain upstream
                self.wait_sink(warm_spans, 15)
            sink_cpu0 = cpu_ticks(sink.pid)
            b0, k0 = sys_busy_ticks()
            ch0 = children_cpu_s()
            c0, t0 = cpu_ticks(col.pid), time.time()
            lf = os.path.join(wd, "h2.log")
            if meas == "sat":
                h = h2load(url, body, os.path.join(wd, "h2.txt"), log_file=lf, n=self.a.sat_requests)
            elif meas == "paced":
                h = h2load(url, body, os.path.join(wd, "h2.txt"), log_file=lf, dur=self.a.paced_secs, rps=self.a.paced_rps)
            else:
                h = h2load(url, body, os.path.join(wd, "h2.txt"), log_file=lf, dur=self.a.big_secs, rps=self.a.big_rps)
            t1 = time.time()
            h2_cpu = children_cpu_s() - ch0
            rss_kib, hwm_kib = status_kib(col.pid, "VmRSS"), status_kib(col.pid, "VmHWM")
            accepted = h["s2xx"] * spr
            drained_s = None
            if config == "A":
                time.sleep(0.5)
            else:
                ok = self.wait_sink(warm_spans + accepted, 60)
                drained_s = (time.time() - t0) if ok else None
                time.sleep(0.2)
            c1 = cpu_ticks(col.pid)
            b1, k1 = sys_busy_ticks()
            sink_cpu = (cpu_ticks(sink.pid) - sink_cpu0) / HZ
            cpu_s = (c1 - c0) / HZ
            r = dict(system=system, config=config, meas=meas, round=rnd, spans_per_request=spr,
                     h2=h, accepted_spans=accepted, cpu_s=cpu_s,
                     cpu_us_per_span=cpu_s * 1e6 / accepted if accepted else None,
                     load_s=h["elapsed_s"], wall_s=t1 - t0,
                     spans_per_s=accepted / h["elapsed_s"] if h["elapsed_s"] > 0 else None,
                     cpu_pct=100.0 * cpu_s / h["elapsed_s"] if h["elapsed_s"] > 0 else None,
                     rss_mib=rss_kib / 1024, hwm_mib=hwm_kib / 1024, sink_cpu_s=sink_cpu,
                     drained_s=drained_s, warmup_spans=warm_spans, h2load_cpu_s=h2_cpu,
                     # everything else on the machine over the same window, in cores (interference check)
                     other_cores=((b1 - b0) / HZ - cpu_s - sink_cpu - h2_cpu) / max(1e-9, time.time() - t0))
            if drained_s:
                r["delivered_spans_per_s"] = accepted / drained_s
            # the collector's own count of what it accepted (warm-up included)
            if system != "rotel":
                rec, sent = cp_counters()
                r["own_accepted_spans"], r["own_forwarded_spans"] = rec, sent
            stop(col)
            col = None
            if system == "rotel":
                # rotel flushes its cumulative internal metrics to the null upstream when it shuts down
                end = time.time() + 5
                while time.time() < end:
                    m = sink_stats()["metrics"]
                    if m.get("rotel_receiver_accepted_spans", 0) >= warm_spans + accepted:
                        break
                    time.sleep(0.2)
                m = sink_stats()["metrics"]
                r["own_accepted_spans"] = m.get("rotel_receiver_accepted_spans")
                r["own_refused_spans"] = m.get("rotel_receiver_refused_spans", 0)
            s = sink_stats()
            r["upstream"] = {k: s[k] for k in ("trace_requests", "trace_bytes", "spans", "gzip_requests", "bad_requests")}
            # A duration-bound h2load (-D: paced, big) stops with up to one request per connection in flight:
            # the collector may have accepted those (h2load never saw their answer), so up to `conns` requests
            # more than h2load's 2xx are allowed, and the count of such requests is recorded. A count request
            # (-n: sat) must match exactly.
            own = r.get("own_accepted_spans")
            slack = 0 if meas == "sat" else 4 * spr
            expected = warm_spans + accepted
            r["cut_in_flight_spans"] = (own - expected) if own is not None else None
            r["verified"] = (own is not None and expected <= own <= expected + slack and
                             (config == "A" or s["spans"] == own))
            return r
        finally:
            if col is not None:
                stop(col)
            stop(sink)

    def wait_sink(self, want, secs):
        end = time.time() + secs
        while time.time() < end:
            if sink_stats()["spans"] >= want:
                return True
            time.sleep(0.02)
        return False


def summarize(results, ceil_us, ceil_big_us, configs, variants):
    def vals(system, config, meas, key):
        return [r[key] for r in results if r["system"] == system and r["config"] == config and r["meas"] == meas
                and r.get(key) is not None]

    def mmm(v, fmt):
        if not v:
            return "n/a"
        if len(v) == 1:
            return fmt(v[0])
        return f"{fmt(statistics.median(v))} ({fmt(min(v))}–{fmt(max(v))})"

    def ratio(system, config, meas, key):
        # per-round ratio chainpulse/rotel, then median (min–max) of the ratios
        rs = []
        for rnd in sorted({r["round"] for r in results}):
            c = [r[key] for r in results if r["system"] == system and r["config"] == config and r["meas"] == meas
                 and r["round"] == rnd and r.get(key) is not None]
            o = [r[key] for r in results if r["system"] == "rotel" and r["config"] == config and r["meas"] == meas
                 and r["round"] == rnd and r.get(key) is not None]
            if c and o and o[0]:
                rs.append(c[0] / o[0])
        return mmm(rs, lambda x: f"{x:.2f}×")

    f0 = lambda x: f"{x:,.0f}"
    f1 = lambda x: f"{x:.1f}"
    f2 = lambda x: f"{x:.2f}"
    rows = []
    rows.append("| Config | Measurement | Metric | " + " | ".join(f"{v}" for v in variants) + " | Rotel | "
                + " | ".join(f"{v}/Rotel" for v in variants) + " |")
    rows.append("|---" * (4 + 2 * len(variants)) + "|")
    spec = [("sat", "spans/s accepted", "spans_per_s", f0),
            ("sat", "CPU µs/span", "cpu_us_per_span", f2),
            ("sat", "CPU ÷ ceiling", "x_ceiling", f2),
            ("sat", "RSS MiB at the end", "rss_mib", f1),
            ("paced", "CPU % of a core", "cpu_pct", f1),
            ("paced", "CPU µs/span", "cpu_us_per_span", f2),
            ("paced", "CPU ÷ ceiling", "x_ceiling", f2),
            ("paced", "RSS MiB", "rss_mib", f1),
            ("paced", "p50 ms", "p50_ms", f2),
            ("paced", "p99 ms", "p99_ms", f2),
            ("big", "CPU % of a core", "cpu_pct", f1),
            ("big", "CPU µs/span", "cpu_us_per_span", f2),
            ("big", "CPU ÷ ceiling", "x_ceiling", f2),
            ("big", "RSS MiB", "rss_mib", f1),
            ("big", "p50 ms", "p50_ms", f2),
            ("big", "p99 ms", "p99_ms", f2)]
    for r in results:
        r["p50_ms"], r["p99_ms"] = r["h2"].get("p50_ms"), r["h2"].get("p99_ms")
        if r.get("cpu_us_per_span"):
            r["x_ceiling"] = r["cpu_us_per_span"] / (ceil_big_us if r["meas"] == "big" else ceil_us)
    names = {"A": "A receive only", "B": "B receive+forward", "Bgz": "B' forward, both gzip"}
    measured = {(r["config"], r["meas"]) for r in results}
    for config in configs:
        for meas, label, key, fmt in spec:
            if (config, meas) not in measured:
                continue
            rows.append(f"| {names[config]} | {meas} | {label} | "
                        + " | ".join(mmm(vals(v, config, meas, key), fmt) for v in variants)
                        + f" | {mmm(vals('rotel', config, meas, key), fmt)} | "
                        + " | ".join(ratio(v, config, meas, key) for v in variants) + " |")
        if config != "A" and (config, "sat") in measured:
            key = "delivered_spans_per_s"
            rows.append(f"| {names[config]} | sat | delivered end-to-end spans/s | "
                        + " | ".join(mmm(vals(v, config, "sat", key), f0) for v in variants)
                        + f" | {mmm(vals('rotel', config, 'sat', key), f0)} | "
                        + " | ".join(ratio(v, config, "sat", key) for v in variants) + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chainpulse", action="append",
                    help="NAME=PATH (or PATH, named chainpulse) of a chainpulse binary; once or more")
    ap.add_argument("--rotel")
    ap.add_argument("--sink")
    ap.add_argument("--ceiling")
    ap.add_argument("--fixture")
    ap.add_argument("--spans-per-request", type=int, default=18)
    ap.add_argument("--big-factor", type=int, default=28)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="A,B,Bgz")
    ap.add_argument("--measurements", default="sat,paced,big")
    ap.add_argument("--sat-requests", type=int, default=20000)
    ap.add_argument("--paced-secs", type=int, default=10)
    ap.add_argument("--paced-rps", type=int, default=139)
    ap.add_argument("--big-secs", type=int, default=20)
    ap.add_argument("--big-rps", type=int, default=5)
    ap.add_argument("--out", help="directory for results.json, table.md and per-run logs")
    ap.add_argument("--summarize", help="only print the table and summary line of an earlier results.json")
    a = ap.parse_args()
    if a.summarize:
        return resummarize(a)
    missing = [k for k in ("chainpulse", "rotel", "sink", "ceiling", "fixture", "out") if not getattr(a, k)]
    if missing:
        ap.error("needed: " + ", ".join("--" + k for k in missing))
    a.cp = {}
    for c in a.chainpulse:
        name, _, path = c.rpartition("=")
        a.cp[name or "chainpulse"] = path
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="peer-rotel-", dir=a.out)
    a.big = os.path.join(work, "big.pb")
    with open(a.fixture, "rb") as f:
        raw = f.read()
    with open(a.big, "wb") as f:
        f.write(raw * a.big_factor)

    def ceiling(path):
        # `ceiling FILE 3`, three times: the median run (the machine is noisy; all three are kept in results.json)
        runs = [json.loads(subprocess.run([a.ceiling, path, "3"], capture_output=True, text=True, check=True).stdout)
                for _ in range(3)]
        runs.sort(key=lambda r: r["spans_per_s_one_core"])
        return dict(runs[1], runs=[r["spans_per_s_one_core"] for r in runs])
    c1, c2 = ceiling(a.fixture), ceiling(a.big)
    assert c1["spans_per_request"] == a.spans_per_request, c1
    ceil_us, ceil_big_us = 1e6 / c1["spans_per_s_one_core"], 1e6 / c2["spans_per_s_one_core"]
    log(f"ceiling: fixture {c1}, big {c2}")
    rotel_version = subprocess.run([a.rotel, "--version"], capture_output=True, text=True).stdout.strip()
    cp_version = {v: subprocess.run([p, "--version"], capture_output=True, text=True).stdout.strip()
                  for v, p in a.cp.items()}

    configs = a.configs.split(",")
    run = Run(a, work)
    results = []
    try:
        for rnd in range(1, a.rounds + 1):
            for config in configs:
                for meas in a.measurements.split(","):
                    for system in (*a.cp, "rotel"):
                        r = run.one(system, config, meas, rnd)
                        results.append(r)
                        h = r["h2"]
                        log(f"r{rnd} {config:3} {meas:5} {system:10} 2xx {h['s2xx']}/{h.get('total')} "
                            f"non2xx {h['s4xx'] + h['s5xx']} spans/s {r['spans_per_s'] or 0:,.0f} "
                            f"cpu {r['cpu_s']:.2f}s = {r['cpu_us_per_span'] or 0:.2f}us/span {r['cpu_pct'] or 0:.1f}% "
                            f"rss {r['rss_mib']:.1f} p50 {h.get('p50_ms')} p99 {h.get('p99_ms')} "
                            f"own {r.get('own_accepted_spans')} up {r['upstream']['spans']} "
                            f"gz {r['upstream']['gzip_requests']}/{r['upstream']['trace_requests']} "
                            f"sinkcpu {r['sink_cpu_s']:.2f} h2cpu {r['h2load_cpu_s']:.2f} other {r['other_cores']:.2f} verified {r['verified']}")
    finally:
        for p in list(OWN):
            stop(p)
        table = summarize(results, ceil_us, ceil_big_us, configs, list(a.cp)) if results else ""
        meta = dict(rotel_version=rotel_version, chainpulse_version=cp_version, ceiling_fixture=c1, ceiling_big=c2,
                    ceiling_us_per_span=ceil_us, ceiling_big_us_per_span=ceil_big_us, args={k: v for k, v in vars(a).items()},
                    host=dict(nproc=os.cpu_count(), loadavg=open("/proc/loadavg").read().strip()))
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(dict(meta=meta, results=results), f, indent=1)
        with open(os.path.join(a.out, "table.md"), "w") as f:
            f.write(table + "\n")
    print(table)
    return summary_line(results, configs, rotel_version, a.rounds, ceil_us, list(a.cp))


def resummarize(a):
    d = json.load(open(a.summarize))
    m, results = d["meta"], d["results"]
    configs = m["args"]["configs"].split(",")
    variants = list(dict.fromkeys(r["system"] for r in results if r["system"] != "rotel"))
    print(summarize(results, m["ceiling_us_per_span"], m["ceiling_big_us_per_span"], configs, variants))
    return summary_line(results, configs, m["rotel_version"], m["args"]["rounds"], m["ceiling_us_per_span"], variants)


def summary_line(results, configs, rotel_version, rounds, ceil_us, variants):
    bad = [f"r{r['round']}-{r['config']}-{r['meas']}-{r['system']}" for r in results if not r["verified"]]
    non2xx = sum(r["h2"]["s4xx"] + r["h2"]["s5xx"] + r["h2"].get("errored", 0) for r in results)

    def med(system, config, meas, key):
        v = [r[key] for r in results if r["system"] == system and r["config"] == config and r["meas"] == meas and r.get(key)]
        return statistics.median(v) if v else float("nan")
    parts = []
    for config in configs:
        for v in variants:
            parts.append(f"{config} {v}: sat {med(v, config, 'sat', 'spans_per_s'):,.0f} vs {med('rotel', config, 'sat', 'spans_per_s'):,.0f} spans/s, "
                         f"{med(v, config, 'sat', 'cpu_us_per_span'):.2f} vs {med('rotel', config, 'sat', 'cpu_us_per_span'):.2f} us/span, "
                         f"paced {med(v, config, 'paced', 'cpu_pct'):.1f}% vs {med('rotel', config, 'paced', 'cpu_pct'):.1f}%")
    print(f"peer_rotel: {'/'.join(variants)} vs {rotel_version} ({rounds} rounds, ceiling {ceil_us:.2f} us/span): " + "; ".join(parts)
          + f" | unverified runs: {len(bad)} {bad if bad else ''} | non-2xx/errored requests: {non2xx}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
