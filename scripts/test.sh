#!/usr/bin/env bash
# Runs the whole test suite: installs prerequisites if missing, lints the GitHub workflows, then
# `cargo test`. Build artefacts go to $CARGO_TARGET_DIR (default $ECOBOOT_CACHE/target) so reruns
# are incremental. The real upstream manifests the tests apply come from $ECOBOOT_TESTDATA
# (default: ../shared/testdata next to the clone).
set -euo pipefail
cd "$(dirname "$0")/.."
export ECOBOOT_CACHE="${ECOBOOT_CACHE:-/var/cache/ecoboot}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ECOBOOT_CACHE/target}"
export MOTO_SERVER="${MOTO_SERVER:-$ECOBOOT_CACHE/venv/bin/moto_server}"
if [ -z "${ECOBOOT_TESTDATA:-}" ] && [ -f "$PWD/../shared/testdata/calico-v3.32.1.yaml" ]; then
  export ECOBOOT_TESTDATA="$PWD/../shared/testdata"
fi
bash scripts/setup.sh
bash scripts/lint-workflows.sh
cargo test "$@"
