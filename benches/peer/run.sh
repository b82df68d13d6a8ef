#!/usr/bin/env bash
# chainpulse vs Rotel (a Rust OTLP collector, PyPI `rotel`), side by side, and both against a bare prost decode
# of the same bodies. Not part of scripts/test.sh (minutes long, and noisy on a shared machine). From the root:
#   cargo build --release
#   benches/peer/run.sh                                        # 3 rounds: configs A,B,Bgz x sat,paced,big
#   benches/peer/run.sh --rounds 1 --configs A --measurements paced      # a quick look (~1 min)
#   CHAINPULSE_BINS="before=/tmp/cp-before,after=target/release/chainpulse" benches/peer/run.sh ...
#                                                              # two builds in one run, each next to Rotel
#   python3 benches/peer/bench.py --summarize OUT/results.json # re-print an earlier run's table
# Env: CHAINPULSE_BIN (default target/release/chainpulse) or CHAINPULSE_BINS (NAME=PATH,...); ROTEL_VENV (default
# target/peer-bench/rotel-venv); ROTEL_PKG (pinned below); OUT (default target/peer-bench/runs/<UTC time>).
# See benches/peer/README.md for what each configuration and measurement is, and how each run is verified.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TGT="$ROOT/target/peer-bench"
VENV="${ROTEL_VENV:-$TGT/rotel-venv}"
ROTEL_PKG="${ROTEL_PKG:-rotel==0.0.1a15}"
FIX="$ROOT/tests/fixtures/langchain-openinference.pb"
OUT="${OUT:-$TGT/runs/$(date -u +%Y%m%dT%H%M%SZ)}"
command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
BINS=()
IFS=',' read -ra SPEC <<< "${CHAINPULSE_BINS:-chainpulse=${CHAINPULSE_BIN:-$ROOT/target/release/chainpulse}}"
for s in "${SPEC[@]}"; do
  [ -x "${s#*=}" ] || { echo "no chainpulse binary at ${s#*=} (cargo build --release first)"; exit 1; }
  BINS+=(--chainpulse "$s")
done
if ! ls "$VENV"/lib/python3*/site-packages/rotel/rotel-agent >/dev/null 2>&1; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "$ROTEL_PKG"
fi
ROTEL="$("$VENV/bin/python" -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
[ -x "$ROTEL" ] || { echo "no rotel-agent binary in the rotel package ($ROTEL)"; exit 1; }
SINK="$TGT/nullsink/release/nullsink"
[ -x "$SINK" ] || cargo build --release -q --manifest-path "$HERE/nullsink/Cargo.toml" --target-dir "$TGT/nullsink"
CEIL="$TGT/ceiling/release/ceiling"
[ -x "$CEIL" ] || cargo build --release -q --manifest-path "$HERE/ceiling/Cargo.toml" --target-dir "$TGT/ceiling"
mkdir -p "$OUT"
echo "results and logs: $OUT" >&2
exec python3 "$HERE/bench.py" "${BINS[@]}" --rotel "$ROTEL" --sink "$SINK" --ceiling "$CEIL" \
  --fixture "$FIX" --out "$OUT" "$@"
