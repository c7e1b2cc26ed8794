#!/usr/bin/env bash
# Lints .github/workflows/*.yml against the GitHub workflow JSON schema (check-jsonschema's
# vendored copy: no network needed), installing check-jsonschema into a cached venv if missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ECOBOOT_CACHE:-/var/cache/ecoboot}/lint"
if ! "$venv/bin/check-jsonschema" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "check-jsonschema==0.39.0"
fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$ROOT"/.github/workflows/*.yml
