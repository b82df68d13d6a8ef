#!/usr/bin/env bash
# Installs the system packages the tests use, when they are missing:
# promtool/prometheus (Debian's `prometheus`), python3-venv, Debian's
# `chromium` and node/npm (the live page's browser test, tests/page), the
# openssl CLI (tests/e2e/test_tls_auth.py makes its throwaway CA with it), the
# Rust components rustfmt and clippy, and cargo-fuzz. Idempotent; a no-op on a
# prepared machine.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a Prometheus service where an init system exists;
  # the tests run their own instance on other ports.
  (systemctl stop prometheus || service prometheus stop || pkill -x prometheus) >/dev/null 2>&1 || true
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
# cargo-fuzz for scripts/fuzz.sh (built from crates.io with the stable
# toolchain; its libFuzzer is compiled by libfuzzer-sys, which needs a C++
# compiler: Debian's g++).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  if ! command -v c++ >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "missing g++: apt-get install g++ or run as root" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends g++ >/dev/null
  fi
  cargo install cargo-fuzz --locked --version 0.13.2
fi
echo "promtool: $(promtool --version 2>&1 | head -n 1)"
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
echo "cargo-fuzz: $(cargo fuzz --version 2>&1 | head -n 1)"
