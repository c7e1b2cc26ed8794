#!/usr/bin/env bash
# Lints .github/workflows/*.yml against the GitHub workflow JSON schema (check-jsonschema's
# vendored copy: no network needed), installing check-jsonschema into a cached venv if missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/cache-dir.sh"
venv="$ECOBOOT_CACHE/lint"
if ! "$venv/bin/check-jsonschema" --version >/dev/null 2>&1; then
  echo "lint: installing check-jsonschema==0.39.0 into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "check-jsonschema==0.39.0"
fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$ROOT"/.github/workflows/*.yml
# Every action is pinned by a full commit SHA with its version in a comment (tags can move).
unpinned="$(grep -nE '^\s*(-\s+)?uses:' "$ROOT"/.github/workflows/*.yml | grep -vE 'uses: [^@ ]+@[0-9a-f]{40} # \S' || true)"
if [ -n "$unpinned" ]; then
  echo "actions not pinned by commit SHA with a version comment:" >&2
  echo "$unpinned" >&2
  exit 1
fi
