#!/usr/bin/env bash
# Offline checks of the production kit: Prometheus rules and their unit tests,
# the PrometheusRule drift, Grafana dashboards, YAML lint, Kubernetes
# manifests, Dockerfile. Needs promtool (Debian package `prometheus`) and
# python3 with venv + pip (the Python tools go into .venv-deploy).
# Prints one line per check and closes with "N passed, M failed[, K skipped]";
# exits non-zero when any check failed.
# Env: DEPLOY_VENV (default .venv-deploy), CHAINPULSE_BIN (for check-config).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
VENV=${DEPLOY_VENV:-$ROOT/.venv-deploy}
REQS=tests/deploy/requirements.txt
PASSED=0
FAILED=0
SKIPPED=0
FAILURES=()
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

# check NAME CMD...: run CMD, show its output on failure only.
check() {
  local name=$1
  shift
  local out="$LOG/$((PASSED + FAILED + SKIPPED)).log"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    printf 'PASS  %s\n' "$name"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      | /' "$out" | tail -n 60
  fi
}
skip() {
  SKIPPED=$((SKIPPED + 1))
  printf 'SKIP  %s (%s)\n' "$1" "$2"
}

setup_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || return 1
  fi
  if ! cmp -s "$REQS" "$VENV/.deploy-requirements" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" || return 1
    cp "$REQS" "$VENV/.deploy-requirements"
  fi
}
check "python tooling venv ($VENV)" setup_venv
PY=$VENV/bin/python
BIN=$VENV/bin

# ---------------------------------------------------------------- Prometheus
have_promtool() { command -v promtool; }
check "promtool installed (apt-get install -y prometheus)" have_promtool
check "promtool check rules (recording + alert)" \
  promtool check rules deploy/prometheus/recording-rules.yaml deploy/prometheus/alert-rules.yaml
check "promtool test rules deploy/prometheus/tests/*.yaml" \
  bash -c 'promtool test rules deploy/prometheus/tests/*.yaml'
check "alert rules lint: labels, annotations, runbooks, test coverage" \
  "$PY" tests/deploy/check_rules.py
check "PrometheusRule matches the rule files (gen_prometheusrule.py --check)" \
  "$PY" tests/deploy/gen_prometheusrule.py --check

# ------------------------------------------------------------------- Grafana
check "dashboards match grafana/generate.py" python3 grafana/generate.py --check
check "dashboard structure, datasource variable, variables, PromQL syntax" \
  "$PY" tests/deploy/check_dashboards.py

# --------------------------------------------------------------- YAML, k8s
check "yamllint" "$BIN/yamllint" --strict -c tests/deploy/yamllint.yaml \
  deploy grafana/provisioning tests/deploy
check "Kubernetes manifests (kubernetes-validate + CRD structure + sidecar contract)" \
  "$PY" tests/deploy/check_k8s.py

# chainpulse check-config on the ConfigMap's chainpulse.toml, if built
CP=${CHAINPULSE_BIN:-}
if [ -z "$CP" ]; then
  for c in target/release/chainpulse target/debug/chainpulse; do
    if [ -x "$c" ]; then CP=$c; break; fi
  done
fi
check_config() {
  local toml="$LOG/chainpulse.toml"
  "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["chainpulse.toml"], end="")' \
    deploy/kubernetes/configmap.yaml >"$toml" && "$CP" check-config "$toml"
}
if [ -n "$CP" ] && "$CP" --help 2>/dev/null | grep -q check-config; then
  check "chainpulse check-config on deploy/kubernetes/configmap.yaml" check_config
else
  skip "chainpulse check-config on deploy/kubernetes/configmap.yaml" "no chainpulse binary with check-config"
fi

# ---------------------------------------------------------------- container
check "hadolint Dockerfile" "$BIN/hadolint" Dockerfile
check "Dockerfile/.dockerignore requirements" "$PY" tests/deploy/check_dockerfile.py

# ---------------------------------------------------------------- the kit's own scripts
check "shellcheck tests/deploy/*.sh" "$BIN/shellcheck" tests/deploy/run.sh tests/deploy/live.sh
check "python scripts compile" "$PY" -m py_compile tests/deploy/dashlib.py tests/deploy/check_rules.py \
  tests/deploy/check_dashboards.py tests/deploy/check_k8s.py tests/deploy/check_dockerfile.py \
  tests/deploy/gen_prometheusrule.py tests/deploy/live_dashboards.py grafana/generate.py
check "live_allow_empty.txt entries are justified" "$PY" -c '
import sys; sys.path.insert(0, "tests/deploy")
from live_dashboards import load_allowlist
entries, problems = load_allowlist("tests/deploy/live_allow_empty.txt")
print("\n".join(problems)); sys.exit(1 if problems else 0)'

echo
if [ "$FAILED" -gt 0 ]; then
  printf 'failed: %s\n' "${FAILURES[@]}"
fi
if [ "$SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
