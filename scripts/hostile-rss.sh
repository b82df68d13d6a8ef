#!/usr/bin/env bash
# Peak RSS of the release binary under each hostile-input attack of issue 13
# (tests/hostile_rss.rs): builds target/release/chainpulse, then starts it
# once per attack with the default configuration and prints a table (attack,
# idle RSS, peak RSS from VmHWM, whether /healthz answered, what a normal
# exporter got). Fails if the collector died, /healthz stopped answering or a
# normal export did not get 200. Takes a few minutes; not part of test.sh.
#
#   scripts/hostile-rss.sh
#   CHAINPULSE_BIN=/path/to/chainpulse scripts/hostile-rss.sh   # another build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${CHAINPULSE_BIN:-}" ]; then
  cargo build --release --locked --bin chainpulse
  export CHAINPULSE_BIN="$ROOT/target/release/chainpulse"
fi
cargo test --locked --test hostile_rss -- --ignored --nocapture --test-threads=1
