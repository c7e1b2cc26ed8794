#!/usr/bin/env bash
# Modeled real-AWS bring-up time (issue #31; prints, asserts nothing). The sandbox runs
# `ecoboot up` twice from scratch: once as it is (ecoboot's own time), once with every
# simulated real-world operation of bench/timings.toml slept × ECOBOOT_SIM_SCALE (default
# 0.05: 1 modeled minute = 3 s): apt, downloads, kubeadm's image pulls, init and joins on the
# nodes (scripts/sim), Calico's and ArgoCD's readiness in the API double, EC2's pending →
# running + boot in the AWS proxy. Prints the modeled minutes per stage, the total, and the
# critical path (which node, which step); then the same for `ecoboot upgrade` 1.36 → 1.37
# (--max-unavailable 3) on each of the two clusters. The sandbox is stopped at the end.
#   bash bench/realistic.sh        the 14-node sandbox (one control plane)
#   bash bench/realistic.sh ha     inventory/sandbox-ha.yaml (three control planes)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/cache-dir.sh
SB=/tmp/ecoboot-sandbox
CONFIG=inventory/sandbox.yaml
[ "${1:-}" = ha ] && CONFIG=inventory/sandbox-ha.yaml
SCALE="${ECOBOOT_SIM_SCALE:-0.05}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ECOBOOT_CACHE/target}"
cargo build --quiet --bin ecoboot
work="$(mktemp -d)"
proxy=""
next=""
cleanup() { [ -n "$proxy" ] && kill "$proxy" 2>/dev/null; rm -rf "$work"; [ -n "$next" ] && rm -f "$next"; }
trap cleanup EXIT
sed -n 's/^    - name: //p' "$CONFIG" >"$work/names"
next="$(mktemp --suffix=.yaml -p "$ROOT/inventory" .bench-realistic-XXXX)"
sed 's/version: "1.36" /version: "1.37" /' "$CONFIG" >"$next"
python3 bench/timings.py "$SCALE" "$work/names" "$work/t"

stamp() { python3 -c 'import json,sys,time
for l in sys.stdin:
    l = l.strip()
    if l.startswith("{"):
        e = json.loads(l); e["t"] = time.time(); print(json.dumps(e), flush=True)'; }

run() { # run NAME [model]: a fresh sandbox, `ecoboot up`, stamped events in $work/NAME.jsonl
  bash scripts/sandbox.sh down >/dev/null 2>&1 || true
  if [ "${2:-}" = model ]; then
    ECOBOOT_SIM_TIMINGS="$work/t/double.json" FLEET_TIMINGS_DIR="$work/t" bash scripts/sandbox.sh up >/dev/null
  else
    bash scripts/sandbox.sh up >/dev/null
  fi
  # shellcheck disable=SC1091
  . "$SB/env"
  # AWS through the fault proxy: under the model it hides a new instance for EC2's modeled
  # pending → running + boot.
  "$ECOBOOT_CACHE/venv/bin/python" tests/support/aws_fault_proxy.py "$AWS_ENDPOINT_URL" >"$work/proxy.out" 2>/dev/null &
  proxy=$!
  for _ in $(seq 1 50); do grep -q '^ready' "$work/proxy.out" && break; sleep 0.1; done
  port="$(sed -n 's/^ready //p' "$work/proxy.out")"
  lag=0; [ "${2:-}" = model ] && lag="$(cat "$work/t/describe_lag")"
  curl -sf -X POST "http://127.0.0.1:$port/_proxy/config" -d "{\"describe_lag\": $lag, \"idempotent_tokens\": true}" >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  AWS_ENDPOINT_URL="http://127.0.0.1:$port" ecoboot -c "$CONFIG" --output json up --yes 2>"$work/$1.err" | stamp >"$work/$1.jsonl"
  t1=$(date +%s.%N)
  echo "$1: ecoboot up took $(python3 -c "print(round($t1 - $t0, 1))") s of wall time"
  t0=$(date +%s.%N)
  AWS_ENDPOINT_URL="http://127.0.0.1:$port" ecoboot -c "$next" --output json upgrade --yes --max-unavailable 3 2>"$work/$1-upgrade.err" | stamp >"$work/$1-upgrade.jsonl"
  t1=$(date +%s.%N)
  echo "$1: ecoboot upgrade took $(python3 -c "print(round($t1 - $t0, 1))") s of wall time"
  kill "$proxy" 2>/dev/null || true
  proxy=""
}

run own
run scaled model
python3 bench/realistic_report.py "$work/own.jsonl" "$work/scaled.jsonl" "$SCALE" "$SB/fleet" "$work/names"
echo
echo "ecoboot upgrade 1.36 -> 1.37, --max-unavailable 3:"
python3 bench/realistic_report.py "$work/own-upgrade.jsonl" "$work/scaled-upgrade.jsonl" "$SCALE" "$SB/fleet" "$work/names"
bash scripts/sandbox.sh down >/dev/null
