#!/usr/bin/env bash
# Runs the whole test suite: installs prerequisites if missing (scripts/setup.sh), resolves the
# upstream test data (scripts/testdata.sh: local copies, else pinned downloads, sha256-checked),
# lints the GitHub workflows, then runs the tests. Build artefacts go to $CARGO_TARGET_DIR
# (default $ECOBOOT_CACHE/target) so reruns are incremental. With cargo-nextest installed the
# test binaries run concurrently (ECOBOOT_TEST_JOBS at a time, default 5: the suite is CPU-bound on
# 2 cores, but its tests also wait on emulators and nodes; 5 keep both cores busy, bench/README.md);
# otherwise `cargo test` runs them one after another.
# Extra arguments go to the runner.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cache-dir.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ECOBOOT_CACHE/target}"
export MOTO_SERVER="${MOTO_SERVER:-$ECOBOOT_CACHE/venv/bin/moto_server}"
bash scripts/setup.sh
export ECOBOOT_TESTDATA="$(bash scripts/testdata.sh)"
bash scripts/lint-workflows.sh
if cargo nextest --version >/dev/null 2>&1 && [ -z "${ECOBOOT_TEST_SERIAL:-}" ]; then
  cargo nextest run --no-fail-fast --test-threads "${ECOBOOT_TEST_JOBS:-5}" "$@"
else
  cargo test --no-fail-fast "$@"
fi
