#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 20) and
# fails on the first crash, leak-free timeout or OOM libFuzzer reports.
#
#   scripts/fuzz.sh            # CI: ~20 s a target
#   scripts/fuzz.sh 3600       # a longer run: an hour a target
#   scripts/fuzz.sh 600 wal_reader config   # some targets only
#   scripts/fuzz.sh build      # only build the instrumented targets (the
#                              # test command starts this in the background
#                              # early, so the slow instrumented build of the
#                              # whole dependency tree overlaps the Python and
#                              # browser suites instead of adding to CI time)
#
# Where things land: the growing corpus in fuzz/corpus/<target>/ (not
# committed; the committed seeds are fuzz/seeds/<target>/), a crashing input
# in fuzz/artifacts/<target>/crash-<sha1> (libFuzzer prints its path and
# `cargo fuzz run <target> <file>` replays it). Every crash becomes a file in
# fuzz/regressions/<target>/, replayed by tests/fuzz_regressions.rs.
#
# Why `--sanitizer none` and RUSTC_BOOTSTRAP: this machine (and CI) has only
# the stable toolchain and no nightly can be fetched. cargo-fuzz's coverage
# instrumentation (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*)
# works on stable, but its default AddressSanitizer needs -Zsanitizer, a
# nightly flag. chainpulse has no unsafe code of its own, so ASan would add
# little but a 2x slowdown: the targets run without a sanitizer and every
# panic, overflow (debug assertions are on) or OOM is still a crash.
# cargo-fuzz itself passes a few -Z flags to cargo/rustc in some versions,
# so RUSTC_BOOTSTRAP=1 is set for its build only (the main crate's build
# never sees it). `FUZZ_SANITIZER=address scripts/fuzz.sh` runs with ASan
# (works on stable with RUSTC_BOOTSTRAP=1, since rust-std ships the ASan
# runtime).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"

build_only=0
if [ "${1:-}" = build ]; then
  build_only=1
  shift
fi
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(otlp_protobuf otlp_json wal_reader config)
fi
sanitizer="${FUZZ_SANITIZER:-none}"
# FUZZ_PROFILE=dev builds the targets without optimizations: the test command's
# 20-second smoke runs use it, because cargo-fuzz builds release targets with
# one codegen unit, and that instrumented build of the whole dependency tree
# takes most of CI's time budget on 2 cores; an unoptimized target runs
# fewer executions per second, which a smoke run can afford and a long run
# (the default, release) cannot.
profile_flag=()
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
  profile_flag=(--dev)
fi
# libFuzzer's own limits: an input that takes over 10 s, or a process over
# 2 GiB, is a bug (a request must not cost that).
rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked (scripts/install-deps.sh does)" >&2
  exit 1
fi

export RUSTC_BOOTSTRAP=1
build_log="$(mktemp)"
if ! cargo fuzz build "${profile_flag[@]}" --sanitizer "$sanitizer" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  echo "the fuzz targets do not build" >&2
  exit 1
fi
tail -n 1 "$build_log"
rm -f "$build_log"
if [ "$build_only" = 1 ]; then
  exit 0
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "=== fuzz $t for ${seconds}s"
  log="$(mktemp)"
  if cargo fuzz run "${profile_flag[@]}" --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | sed "s/^/$t: /" || true
  else
    status=1
    echo "!!! $t crashed; the last lines of libFuzzer's output:" >&2
    tail -n 60 "$log" >&2
    ls -1 "artifacts/$t" >&2 || true
  fi
  rm -f "$log"
done
exit "$status"
