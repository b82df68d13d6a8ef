#!/usr/bin/env bash
# Live check of the dashboards and rules against a real chainpulse:
#   1. start Debian's prometheus on 127.0.0.1:19090, scraping 127.0.0.1:19464
#      every 1s and loading deploy/prometheus/{recording,alert}-rules.yaml;
#   2. start a second chainpulse as an upstream on 127.0.0.1:24317 (OTLP/gRPC),
#      and `chainpulse demo` (synthetic LCEL traffic) with its metrics on
#      127.0.0.1:19464, OTLP on 127.0.0.1:14317/14318, forwarding everything
#      to that upstream (so the forwarding panels and alerts have data; the
#      upstream must have received every span the demo accepted);
#   3. after ~40 s of scraping run tests/deploy/live_dashboards.py --rules:
#      every dashboard query and variable must return data (or be in
#      tests/deploy/live_allow_empty.txt), every rule must evaluate cleanly;
#   4. stop both (trap) and remove the temp dir.
# Env: CHAINPULSE_BIN (default target/debug/chainpulse), PROMETHEUS_BIN
# (default prometheus), LIVE_SCRAPE_SECONDS (40), LIVE_DEMO_DURATION (60),
# LIVE_DEMO_ARGS (extra demo args, e.g. "--rate 20"), LIVE_KEEP=1 keeps the
# temp dir with the logs; LIVE_PROM_ADDR (127.0.0.1:19090), LIVE_METRICS_ADDR
# (127.0.0.1:19464), LIVE_GRPC_ADDR (127.0.0.1:14317), LIVE_HTTP_ADDR
# (127.0.0.1:14318), LIVE_UPSTREAM_GRPC (127.0.0.1:24317), LIVE_UPSTREAM_HTTP
# (127.0.0.1:24318), LIVE_UPSTREAM_METRICS (127.0.0.1:29464) move the listeners
# if those ports are taken.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${CHAINPULSE_BIN:-$ROOT/target/debug/chainpulse}
PROM_BIN=${PROMETHEUS_BIN:-prometheus}
SCRAPE_SECONDS=${LIVE_SCRAPE_SECONDS:-40}
DEMO_DURATION=${LIVE_DEMO_DURATION:-60}
PY=python3
[ -x "$ROOT/.venv-deploy/bin/python" ] && PY=$ROOT/.venv-deploy/bin/python
PROM_ADDR=${LIVE_PROM_ADDR:-127.0.0.1:19090}
METRICS_ADDR=${LIVE_METRICS_ADDR:-127.0.0.1:19464}
GRPC_ADDR=${LIVE_GRPC_ADDR:-127.0.0.1:14317}
HTTP_ADDR=${LIVE_HTTP_ADDR:-127.0.0.1:14318}
UP_GRPC=${LIVE_UPSTREAM_GRPC:-127.0.0.1:24317}
UP_HTTP=${LIVE_UPSTREAM_HTTP:-127.0.0.1:24318}
UP_METRICS=${LIVE_UPSTREAM_METRICS:-127.0.0.1:29464}

if [ ! -x "$BIN" ]; then
  echo "live.sh: chainpulse binary not found at $BIN (set CHAINPULSE_BIN)" >&2
  exit 2
fi
if ! command -v "$PROM_BIN" >/dev/null 2>&1; then
  echo "live.sh: $PROM_BIN not found (apt-get install -y prometheus)" >&2
  exit 2
fi

WORK=$(mktemp -d)
PROM_PID=""
DEMO_PID=""
UP_PID=""
cleanup() {
  local rc=$?
  for pid in "$DEMO_PID" "$UP_PID" "$PROM_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$rc" -ne 0 ]; then
    echo "--- chainpulse demo log (tail)"; tail -n 30 "$WORK/demo.log" 2>/dev/null || true
    echo "--- upstream chainpulse log (tail)"; tail -n 10 "$WORK/upstream.log" 2>/dev/null || true
    echo "--- prometheus log (tail)"; tail -n 15 "$WORK/prometheus.log" 2>/dev/null || true
  fi
  if [ "${LIVE_KEEP:-0}" = 1 ]; then echo "live.sh: kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 5s
rule_files:
  - $ROOT/deploy/prometheus/recording-rules.yaml
  - $ROOT/deploy/prometheus/alert-rules.yaml
scrape_configs:
  - job_name: chainpulse
    static_configs:
      - targets: ['$METRICS_ADDR']
YAML

"$PROM_BIN" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
  --web.listen-address="$PROM_ADDR" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!

"$BIN" run --grpc-addr "$UP_GRPC" --http-addr "$UP_HTTP" --metrics-addr "$UP_METRICS" \
  >"$WORK/upstream.log" 2>&1 &
UP_PID=$!

# shellcheck disable=SC2086  # LIVE_DEMO_ARGS is split on purpose
"$BIN" demo --duration "$DEMO_DURATION" \
  --metrics-addr "$METRICS_ADDR" --grpc-addr "$GRPC_ADDR" --http-addr "$HTTP_ADDR" \
  --forward "grpc://$UP_GRPC" \
  ${LIVE_DEMO_ARGS:-} >"$WORK/demo.log" 2>&1 &
DEMO_PID=$!

wait_http() { # url seconds pid: until url answers, the time is up or pid exits
  "$PY" - "$1" "$2" "$3" <<'PY'
import os, sys, time, urllib.request
url, deadline, pid = sys.argv[1], time.time() + float(sys.argv[2]), int(sys.argv[3])
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        urllib.request.urlopen(url, timeout=1).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(1)
PY
}
wait_http "http://$PROM_ADDR/-/ready" 30 "$PROM_PID" || { echo "live.sh: prometheus did not become ready" >&2; exit 1; }
wait_http "http://$METRICS_ADDR/metrics" 60 "$DEMO_PID" || { echo "live.sh: chainpulse /metrics did not come up" >&2; exit 1; }
echo "live.sh: prometheus and chainpulse demo up; scraping for ${SCRAPE_SECONDS}s"
for _ in $(seq "$SCRAPE_SECONDS"); do
  kill -0 "$DEMO_PID" 2>/dev/null || { echo "live.sh: chainpulse demo exited early" >&2; exit 1; }
  sleep 1
done

# What the demo's traffic looked like to the collector (orphans, rejects):
# context for any failure below.
"$PY" - "http://$METRICS_ADDR/metrics" <<'PY' || true
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("chainpulse_assembly_", "chainpulse_otlp_requests_rejected_total", "chainpulse_spans_rejected_total")) \
            and not line.endswith(" 0"):
        print("live.sh: " + line)
PY
"$PY" "$ROOT/tests/deploy/live_dashboards.py" --prometheus "http://$PROM_ADDR" --rules

# Forwarding worked: the demo delivered spans upstream, lost none, and the
# upstream counted at least what the demo counts as delivered.
"$PY" - "http://$METRICS_ADDR/metrics" "http://$UP_METRICS/metrics" <<'PY'
import re, sys, urllib.request
def total(url, name, **labels):
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    s = 0.0
    for line in body.splitlines():
        m = re.match(r'^(\w+)(\{[^}]*\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            s += float(m.group(3))
    return s
demo, up = sys.argv[1], sys.argv[2]
sent = total(demo, "chainpulse_forward_spans_total", result="sent")
lost = total(demo, "chainpulse_forward_spans_total", result="failed") + total(demo, "chainpulse_forward_spans_total", result="dropped")
received = total(up, "chainpulse_spans_received_total")
print(f"live.sh: forwarding: demo sent {sent:.0f} spans upstream, lost {lost:.0f}; upstream received {received:.0f}")
if sent <= 0 or lost != 0 or received < sent:
    print("live.sh: FAIL forwarding to the upstream chainpulse")
    sys.exit(1)
PY
