#!/usr/bin/env bash
# Runs the whole test suite: installs prerequisites if missing, then `cargo test`.
# Build artefacts go to $CARGO_TARGET_DIR (default $ECOBOOT_CACHE/target) so reruns are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
export ECOBOOT_CACHE="${ECOBOOT_CACHE:-/var/cache/ecoboot}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ECOBOOT_CACHE/target}"
export MOTO_SERVER="${MOTO_SERVER:-$ECOBOOT_CACHE/venv/bin/moto_server}"
bash scripts/setup.sh
cargo test "$@"
