#!/usr/bin/env bash
# Idempotent: create the Python venv for the end-to-end tests ($VENV, default <repo>/.venv) and install
# examples/langchain_app/requirements.txt into it. Needs CPython 3.11 (python3, or $PYTHON) and PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
REQ="$ROOT/examples/langchain_app/requirements.txt"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

make_venv() {
  rm -rf "$VENV"
  if "$PY" -m venv "$VENV" 2>/dev/null; then return 0; fi
  rm -rf "$VENV"
  # Debian splits ensurepip into python3-venv: install it when we can, else bootstrap with virtualenv from PyPI.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "python3 -m venv failed; installing python3-venv" >&2
    ver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    (apt-get install -y -q "python${ver}-venv" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "python${ver}-venv" >/dev/null; }) || true
    if "$PY" -m venv "$VENV" 2>/dev/null; then return 0; fi
    rm -rf "$VENV"
  fi
  echo "python3 -m venv unavailable; bootstrapping with virtualenv" >&2
  local tmp
  tmp="$(mktemp -d)"
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q --target "$tmp" virtualenv
  PYTHONPATH="$tmp" "$PY" -m virtualenv -q "$VENV"
  rm -rf "$tmp"
}

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "creating venv at $VENV"
  make_venv
fi

# Reinstall only when requirements.txt changed (or a previous install did not finish).
STAMP="$VENV/.requirements.sha256"
SUM="$( (sha256sum "$REQ" 2>/dev/null || shasum -a 256 "$REQ") | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$SUM" ]; then
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  echo "$SUM" > "$STAMP"
fi

"$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import version
print("python", sys.version.split()[0], sys.executable)
for dist in ["langchain-core", "langsmith", "openinference-instrumentation-langchain",
             "opentelemetry-instrumentation-langchain", "opentelemetry-sdk",
             "opentelemetry-exporter-otlp-proto-http", "opentelemetry-exporter-otlp-proto-grpc",
             "pytest", "requests"]:
    print(f"  {dist}=={version(dist)}")
PY
