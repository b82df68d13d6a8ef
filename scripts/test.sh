#!/usr/bin/env bash
# chainpulse's test command (the README's): formatting, lints, Rust unit and
# integration tests, a short run of every fuzz target, the real-LangChain
# end-to-end suite, the instrumentation conformance suite (CHAINPULSE_QUICK=1
# skips it), the live page in headless Chromium, the production kit's checks
# (rules, dashboards against a real Prometheus, manifests), and the
# two-replica fleet report against a real Prometheus.
# Installs what it needs on a fresh Debian machine (needs root for apt-get).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n=== %s\n' "$*"; }

step "prerequisites"
scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (unit + integration)"
cargo test --locked

# The fuzz targets need their own instrumented build of the whole dependency
# tree (several minutes on 2 cores, unoptimized for these smoke runs — see
# scripts/fuzz.sh): it starts now, at the lowest priority, and
# overlaps the Python, browser and Prometheus suites below, which mostly wait
# on I/O; the fuzz runs themselves come last.
step "fuzz targets: instrumented build started in the background (scripts/fuzz.sh build)"
mkdir -p target
FUZZ_BUILD_LOG="$ROOT/target/fuzz-build.log"
FUZZ_PROFILE=dev nice -n 19 scripts/fuzz.sh build >"$FUZZ_BUILD_LOG" 2>&1 &
FUZZ_BUILD_PID=$!

step "built-in prices match the pinned genai-prices release (scripts/gen-prices.py --check)"
python3 scripts/gen-prices.py --check

export CHAINPULSE_BIN="$ROOT/target/debug/chainpulse"

step "end-to-end: real LangChain app + OpenInference / OpenLLMetry / LangSmith"
scripts/setup-python.sh
"$ROOT/.venv/bin/python" -m pytest tests/e2e -q

step "live page: headless Chromium (Debian's) against the debug binary (tests/page)"
scripts/setup-page-test.sh
node --test tests/page/page.test.mjs

if [ "${CHAINPULSE_QUICK:-0}" != 1 ]; then
  step "instrumentation conformance: 15 real instrumentations, exact figures (tests/conformance)"
  scripts/setup-conformance.sh
  "$ROOT/.venv/bin/python" -m pytest tests/conformance -q
else
  step "instrumentation conformance: skipped (CHAINPULSE_QUICK=1)"
fi

step "production kit: rules, dashboards, manifests, Dockerfile"
bash tests/deploy/run.sh

step "dashboards and rules against a real Prometheus scraping chainpulse"
bash tests/deploy/live.sh

step "fleet report: two sidecars, a real Prometheus, chainpulse report --prometheus (tests/deploy/fleet)"
"$ROOT/.venv/bin/python" tests/deploy/fleet/test_fleet.py

step "exemplars and recent requests against a real Prometheus (exemplar storage), official OTel SDK"
"$ROOT/.venv/bin/python" tests/deploy/exemplars.py

step "fuzzing: every target in fuzz/ for ${CHAINPULSE_FUZZ_SECONDS:-20} s (scripts/fuzz.sh)"
if ! wait "$FUZZ_BUILD_PID"; then
  cat "$FUZZ_BUILD_LOG" >&2
  echo "the fuzz targets do not build" >&2
  exit 1
fi
FUZZ_PROFILE=dev scripts/fuzz.sh "${CHAINPULSE_FUZZ_SECONDS:-20}"

step "all test suites passed"
