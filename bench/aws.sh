#!/usr/bin/env bash
# Benchmark: AWS calls and wall time of a fresh 14-node provision, an idempotent rerun and
# `down`, against moto_server on 127.0.0.1 (through tests/support/aws_fault_proxy.py with no
# faults). Prints a table; asserts nothing about time. Uses the debug build the tests use.
#   bash bench/aws.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ECOBOOT_CACHE="${ECOBOOT_CACHE:-/var/cache/ecoboot}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ECOBOOT_CACHE/target}"
cargo build -q
bin="$CARGO_TARGET_DIR/debug/ecoboot"
py="$ECOBOOT_CACHE/venv/bin/python"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_AMIS_PATH="$PWD/tests/fixtures/amis.json" \
MOTO_ENABLE_AMI_VALIDATION=true MOTO_ENABLE_KEYPAIR_VALIDATION=true MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true \
  "$ECOBOOT_CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null; do sleep 0.1; done
coproc PROXY { "$py" tests/support/aws_fault_proxy.py "http://127.0.0.1:$port" 2>"$work/proxy.log"; }
pids+=("$PROXY_PID")
read -r _ proxy_port <&"${PROXY[0]}"
endpoint="http://127.0.0.1:$proxy_port"
curl -sf "$endpoint/_proxy/inventory?cluster=warmup" >/dev/null   # moto's first EC2 call sets up the region

ssh-keygen -q -t ed25519 -N '' -f "$work/id"
# The load balancer controller's policy as scripts/testdata.sh resolves it (sha256-checked).
testdata="$(bash scripts/testdata.sh)"
sed -e "s#~/.ssh/sesacthon.pub#$work/id.pub#" -e 's/^  name: sesacthon$/  name: bench/' \
    -e "s#^\(        sha256: 16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a\)\$#\1\n        path: $testdata/aws-load-balancer-controller-iam-policy-v3.5.0.json#" \
    inventory/cluster.yaml >"$work/cluster.yaml"
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
       AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_REGION

printf '%-24s %9s %9s %6s\n' run "wall (s)" mutating read
measure() {
  local label="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" -c "$work/cluster.yaml" --state-dir "$work/state" "$@" --output json >"$work/out.json" 2>"$work/err.log" \
    || { cat "$work/err.log"; exit 1; }
  t1=$(date +%s.%N)
  "$py" - "$label" "$t0" "$t1" "$work/out.json" <<'PY'
import json, sys
label, t0, t1, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
mut = read = 0
for line in open(path):
    for op, n in json.loads(line).get("aws_calls", {}).items():
        if op.startswith(("Describe", "Get", "List")): read += n
        else: mut += n
print(f"{label:<24} {t1 - t0:9.2f} {mut:9d} {read:6d}")
PY
}
measure "fresh provision (14)" up --yes --to instances
measure "idempotent rerun" up --yes --to instances
measure "down" down --yes
measure "down again (no-op)" down --yes
