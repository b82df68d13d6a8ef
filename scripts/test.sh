#!/usr/bin/env bash
# chainpulse's test command (the README's): formatting, lints, Rust unit and
# integration tests, a short run of every fuzz target, the real-LangChain
# end-to-end suite, the instrumentation conformance suite (CHAINPULSE_QUICK=1
# skips it), and the production kit's checks (rules, dashboards against a
# real Prometheus, manifests).
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

step "fuzzing: every target in fuzz/ for ${CHAINPULSE_FUZZ_SECONDS:-20} s (scripts/fuzz.sh)"
scripts/fuzz.sh "${CHAINPULSE_FUZZ_SECONDS:-20}"

step "built-in prices match the pinned genai-prices release (scripts/gen-prices.py --check)"
python3 scripts/gen-prices.py --check

export CHAINPULSE_BIN="$ROOT/target/debug/chainpulse"

step "end-to-end: real LangChain app + OpenInference / OpenLLMetry / LangSmith"
scripts/setup-python.sh
"$ROOT/.venv/bin/python" -m pytest tests/e2e -q

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

step "all test suites passed"
