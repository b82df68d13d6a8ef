#!/usr/bin/env bash
# Prepares the live page's browser test (tests/page): `npm ci` from the
# committed package-lock.json (playwright-core, pinned, which downloads no
# browser; the official OpenTelemetry JS SDK for traffic), redone only when
# the lock changes. Debian's chromium and node/npm come from
# scripts/install-deps.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tests/page"
stamp="$DIR/node_modules/.page-test.sha256"
sum="$(cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "npm ci in tests/page"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$sum" > "$stamp"
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo missing); node $(node --version)"
