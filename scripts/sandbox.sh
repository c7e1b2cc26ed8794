#!/usr/bin/env bash
# The local sandbox: everything `ecoboot up -c inventory/sandbox.yaml` talks to, on loopback only.
#   - AWS: moto_server on 127.0.0.1:$SANDBOX_MOTO_PORT (default 4566) behind the AWS proxy
#     (tests/support/aws_fault_proxy.py: EC2's disks on the fleet, so a golden image is one)
#   - 14 nodes and the image builder: real sshd on 127.0.1.1-15:2222, each in its own mount/UTS
#     namespace, with the node simulators of scripts/sim (apt, systemctl, kubeadm, ...)
#   - Kubernetes: the API double (tests/support/kube_api_double.py) with its fake controllers, or
#     the API server of the kubeconfig in $ECOBOOT_TEST_KUBECONFIG
#
#   scripts/sandbox.sh up       start what is not running (idempotent); installs prerequisites
#   scripts/sandbox.sh status   what runs
#   scripts/sandbox.sh down     stop it all and forget it (moto and the API double keep their
#                               state in memory, so node and ecoboot state are wiped with them)
#   scripts/sandbox.sh demo     up + build + `ecoboot up` through all stages + `ecoboot status`
#   scripts/sandbox.sh demo ha  the same with inventory/sandbox-ha.yaml (three control planes)
#
# Afterwards: `. /tmp/ecoboot-sandbox/env` points ecoboot at the sandbox.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SB=/tmp/ecoboot-sandbox # fixed: inventory/sandbox.yaml names files under it
. "$ROOT/scripts/cache-dir.sh"
CACHE="$ECOBOOT_CACHE"
MOTO_PORT="${SANDBOX_MOTO_PORT:-4566}"
export FLEET_DIR="$SB/fleet" FLEET_N=15 FLEET_PORT=2222 FLEET_KUBECONFIG="$SB/kube/admin.conf"

say() { echo "sandbox: $*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

manifests() { # the upstream files, resolved and sha256-checked by scripts/testdata.sh
  local dir f
  dir="$(bash "$ROOT/scripts/testdata.sh")"
  mkdir -p "$SB/manifests"
  for f in calico-v3.32.1.yaml argocd-install-v3.5.1.yaml aws-load-balancer-controller-iam-policy-v3.5.0.json; do
    [ -s "$SB/manifests/$f" ] || cp "$dir/$f" "$SB/manifests/$f"
  done
}

start_moto() {
  if alive "$SB/moto.pid"; then return; fi
  MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_AMIS_PATH="$ROOT/tests/fixtures/amis.json" \
    MOTO_ENABLE_AMI_VALIDATION=true MOTO_ENABLE_KEYPAIR_VALIDATION=true \
    MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true \
    nohup "$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$SB/moto.log" 2>&1 &
  echo $! >"$SB/moto.pid"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && { say "moto on 127.0.0.1:$MOTO_PORT (pid $(cat "$SB/moto.pid"))"; return; }
    sleep 0.2
  done
  say "moto did not start; see $SB/moto.log" >&2
  exit 1
}

start_proxy() { # the AWS proxy in front of moto; node names -> fleet node from the inventories
  if alive "$SB/proxy.pid"; then return; fi
  rm -f "$SB/proxy.out"
  nohup "$CACHE/venv/bin/python" "$ROOT/tests/support/aws_fault_proxy.py" "http://127.0.0.1:$MOTO_PORT" >"$SB/proxy.out" 2>"$SB/proxy.log" &
  echo $! >"$SB/proxy.pid"
  for _ in $(seq 1 100); do grep -q '^ready' "$SB/proxy.out" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^ready //p' "$SB/proxy.out" >"$SB/proxy.port"
  [ -s "$SB/proxy.port" ] || { say "the AWS proxy did not start; see $SB/proxy.log" >&2; exit 1; }
  python3 - "$ROOT/inventory" "$FLEET_DIR" >"$SB/proxy.json" <<'PY'
import json, re, sys, glob
nodes = {"image-builder": 15}
for f in sorted(glob.glob(sys.argv[1] + "/sandbox*.yaml")):
    for name, n in re.findall(r"\n    - name: (\S+)\n(?:      .*\n)*?      address: \"127\.0\.1\.(\d+)", open(f).read()):
        nodes[name] = int(n)
print(json.dumps({"idempotent_tokens": True, "fleet": {"dir": sys.argv[2], "nodes": nodes}}))
PY
  curl -sf -X POST "http://127.0.0.1:$(cat "$SB/proxy.port")/_proxy/config" --data-binary @"$SB/proxy.json" >/dev/null
  say "AWS proxy on 127.0.0.1:$(cat "$SB/proxy.port") (pid $(cat "$SB/proxy.pid"))"
}

start_kube() {
  mkdir -p "$SB/kube"
  if [ -n "${ECOBOOT_TEST_KUBECONFIG:-}" ]; then
    install -m 600 "$ECOBOOT_TEST_KUBECONFIG" "$SB/kube/admin.conf"
    say "Kubernetes API: external, from $ECOBOOT_TEST_KUBECONFIG"
    return
  fi
  if alive "$SB/kube.pid"; then return; fi
  rm -f "$SB/kube/out"
  nohup "$CACHE/venv/bin/python" "$ROOT/tests/support/kube_api_double.py" "$SB/kube" >"$SB/kube/out" 2>&1 &
  echo $! >"$SB/kube.pid"
  for _ in $(seq 1 100); do
    grep -q '^ready' "$SB/kube/out" 2>/dev/null && { say "Kubernetes API double on 127.0.0.1:$(cat "$SB/kube/port") (pid $(cat "$SB/kube.pid"))"; return; }
    sleep 0.1
  done
  say "the API double did not start; see $SB/kube/out" >&2
  exit 1
}

write_env() {
  cat >"$SB/env" <<EOF
# Source this to point ecoboot at the sandbox.
export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$SB/proxy.port") AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export ECOBOOT_STATE_DIR=$SB/state
export PATH="${CARGO_TARGET_DIR:-$CACHE/target}/debug:\$PATH"
EOF
}

up() {
  # A start that fails part-way stops what it started (its logs stay in $SB for the reason), so
  # no emulator outlives it and the next `up` starts clean.
  trap 'code=$?; trap - EXIT; if [ $code != 0 ]; then say "up failed; stopping what it started (logs in $SB)" >&2; stop_all >&2; fi; exit $code' EXIT
  bash "$ROOT/scripts/setup.sh" >/dev/null
  mkdir -p "$SB"
  manifests
  start_moto
  start_proxy
  start_kube
  bash "$ROOT/scripts/fleet.sh" start | sed 's/^/sandbox: /'
  write_env
  say "ready. Use it with:  . $SB/env && ecoboot up -c inventory/sandbox.yaml"
  say "stop it with:        bash scripts/sandbox.sh down"
  trap - EXIT
}

# Stops the nodes and the emulators this sandbox started (by their PID files).
stop_all() {
  if [ -d "$FLEET_DIR" ]; then bash "$ROOT/scripts/fleet.sh" stop; fi
  for p in proxy moto kube; do
    if alive "$SB/$p.pid"; then kill "$(cat "$SB/$p.pid")"; say "stopped $p (pid $(cat "$SB/$p.pid"))"; fi
    rm -f "$SB/$p.pid"
  done
}

down() {
  stop_all
  if [ -d "$FLEET_DIR/nodes" ]; then bash "$ROOT/scripts/fleet.sh" destroy; fi
  rm -rf "$SB"
  say "stopped; node, API and ecoboot state of the sandbox removed"
}

status() {
  alive "$SB/moto.pid" && say "moto: running (pid $(cat "$SB/moto.pid"))" || say "moto: stopped"
  alive "$SB/proxy.pid" && say "AWS proxy: running (pid $(cat "$SB/proxy.pid"))" || say "AWS proxy: stopped"
  if [ -n "${ECOBOOT_TEST_KUBECONFIG:-}" ]; then say "Kubernetes API: external"
  elif alive "$SB/kube.pid"; then say "API double: running (pid $(cat "$SB/kube.pid"))"
  else say "API double: stopped"; fi
  if [ -d "$FLEET_DIR" ]; then
    say "nodes up: $(bash "$ROOT/scripts/fleet.sh" status | grep -c ' up$')/$FLEET_N"
  else
    say "nodes: none"
  fi
}

demo() { # demo [ha]: the 14-node sandbox, or sandbox-ha.yaml's three control planes
  local cfg=inventory/sandbox.yaml
  [ "${1:-}" = ha ] && cfg=inventory/sandbox-ha.yaml
  up
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
  say "building ecoboot (first build: ~5 min on 2 cores)"
  (cd "$ROOT" && cargo build --quiet --bin ecoboot)
  # shellcheck disable=SC1091
  . "$SB/env"
  cd "$ROOT"
  ecoboot -c "$cfg" up --yes
  ecoboot -c "$cfg" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  demo) demo "${2:-}" ;;
  *) echo "usage: $0 up|status|down|demo" >&2; exit 2 ;;
esac
