#!/usr/bin/env bash
# Idempotent: install the environments of the instrumentation conformance suite (tests/conformance).
#  - the main venv ($VENV, default <repo>/.venv, made by scripts/setup-python.sh if missing) gets uv (pinned) and
#    tests/conformance/requirements-harness.txt when present;
#  - each tests/conformance/suites/<suite>/requirements.txt -> .venv-conformance/<suite> (CPython 3.11), installed
#    with uv, skipped while a stamp file matches the requirements' sha256;
#  - each suite with a package.json -> `npm ci` in the suite dir (node 20 + npm from the machine; package-lock.json
#    required), skipped while a stamp matches the lock file's sha256.
# Works from a fresh clone as root on Debian with only the package registries. SUITES="a b" limits the suites.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
CONF="$ROOT/tests/conformance"
VENVS="$ROOT/.venv-conformance"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
UV_VERSION="0.13.8"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
export UV_CACHE_DIR="${UV_CACHE_DIR:-$ROOT/.venv-conformance/.uv-cache}"
t_start=$(date +%s)

sha() { (sha256sum "$@" 2>/dev/null || shasum -a 256 "$@") | cut -d' ' -f1 | sha256sum | cut -d' ' -f1; }

# 1. main venv + uv
if [ ! -x "$VENV/bin/python" ]; then
  VENV="$VENV" bash "$ROOT/scripts/setup-python.sh"
fi
if ! "$VENV/bin/python" -m uv --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  "$VENV/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
UV=("$VENV/bin/python" -m uv)
if [ -f "$CONF/requirements-harness.txt" ]; then
  stamp="$VENV/.conformance-harness.sha256"
  sum="$(sha "$CONF/requirements-harness.txt")"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    "${UV[@]}" pip install -q --python "$VENV/bin/python" -r "$CONF/requirements-harness.txt"
    echo "$sum" > "$stamp"
  fi
fi

PYEXE="$(command -v "$PY")"
# pyenv shims are scripts: hand uv the real interpreter.
PYEXE="$("$PYEXE" -c 'import sys; print(sys.executable)')"

suites=()
if [ -n "${SUITES:-}" ]; then
  read -r -a suites <<< "$SUITES"
else
  for d in "$CONF"/suites/*/; do [ -d "$d" ] && suites+=("$(basename "$d")"); done
fi

# node + npm for the JavaScript suites: on the machine image; Debian's packages otherwise.
if ! command -v npm >/dev/null 2>&1 && ls "$CONF"/suites/*/package.json >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "npm missing: installing Debian's nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -q nodejs npm >/dev/null 2>&1) || { apt-get update -q >/dev/null && apt-get install -y -q nodejs npm >/dev/null; }
  else
    echo "npm is missing: install node 20 and npm" >&2
    exit 1
  fi
fi

mkdir -p "$VENVS"
for suite in "${suites[@]}"; do
  dir="$CONF/suites/$suite"
  t0=$(date +%s)
  # 2. Python suites
  if [ -f "$dir/requirements.txt" ]; then
    venv="$VENVS/$suite"
    stamp="$venv/.requirements.sha256"
    sum="$(sha "$dir/requirements.txt")"
    if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
      echo "[$suite] installing $dir/requirements.txt into $venv"
      rm -rf "$venv"
      "${UV[@]}" venv -q --python "$PYEXE" "$venv"
      "${UV[@]}" pip install -q --python "$venv/bin/python" -r "$dir/requirements.txt"
      echo "$sum" > "$stamp"
    fi
  fi
  # 3. Node suites
  if [ -f "$dir/package.json" ]; then
    if [ ! -f "$dir/package-lock.json" ]; then
      echo "[$suite] package.json without package-lock.json: run npm install there once and commit the lock" >&2
      exit 1
    fi
    stamp="$dir/node_modules/.conformance.sha256"
    sum="$(sha "$dir/package-lock.json" "$dir/package.json")"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
      echo "[$suite] npm ci in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
      echo "$sum" > "$stamp"
    fi
  fi
  echo "[$suite] ready in $(( $(date +%s) - t0 ))s"
done

# 4. what is installed
echo "uv $("${UV[@]}" --version | cut -d' ' -f2); node $(node --version 2>/dev/null || echo none); npm $(npm --version 2>/dev/null || echo none)"
for suite in "${suites[@]}"; do
  dir="$CONF/suites/$suite"
  if [ -f "$dir/requirements.txt" ]; then
    echo "[$suite] $("$VENVS/$suite/bin/python" --version 2>&1)"
    # the directly pinned packages (the requirements lines before the first blank line or comment block)
    "$VENVS/$suite/bin/python" - "$dir/requirements.txt" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
names = []
for line in open(sys.argv[1]):
    if not line.strip() and names:
        break  # the direct pins come first; the transitive freeze follows a blank line
    line = line.split("#")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==", line)
    if m:
        names.append(m.group(1))
interesting = names
if len(names) > 12:  # one flat freeze: show the instrumentation-relevant packages only
    interesting = [n for n in names if re.search(r"openai|anthropic|opentelemetry-(sdk|api|instrumentation-(?!"
                   r"asgi|aiohttp|django|falcon|fastapi|flask|pyramid|requests|starlette|tornado|urllib|wsgi|redis|"
                   r"sqlalchemy|threading|logging))|util-genai|traceloop|langfuse|openlit|openinference|pydantic-ai|"
                   r"llama-index|langchain|langgraph|langsmith|agents|logfire", n, re.I)]
for n in interesting or names:
    try:
        print(f"  {n}=={version(n)}")
    except PackageNotFoundError:
        print(f"  {n}: NOT INSTALLED")
PY
  fi
  if [ -f "$dir/package.json" ]; then
    echo "[$suite] node packages:"
    (cd "$dir" && node -e '
const p = require("./package.json");
for (const n of Object.keys({...(p.dependencies||{}), ...(p.devDependencies||{})})) {
  try { console.log("  " + n + "@" + require("./node_modules/" + n + "/package.json").version); }
  catch (e) { console.log("  " + n + ": NOT INSTALLED"); }
}')
  fi
done
echo "setup-conformance done in $(( $(date +%s) - t_start ))s"
