#!/usr/bin/env bash
# Modeled real-AWS bring-up time (issue #31; prints, asserts nothing). Every simulated real-world
# operation of bench/timings.toml is slept × ECOBOOT_SIM_SCALE (default 0.05: 1 modeled minute =
# 3 s): apt, downloads, image pulls, kubeadm init and joins on the nodes (scripts/sim), Calico's
# and ArgoCD's readiness in the API double, EC2's pending → running + boot, stop and CreateImage
# in the AWS proxy. Each figure comes from two runs on fresh sandboxes, one as it is (ecoboot's
# own time) and one under the model: modeled = own + (scaled − own) ÷ scale, per stage, with the
# critical path (which node, which step).
#   1. baseline: `ecoboot up --no-pipeline` from an empty account (stages strictly one after
#      another), then `ecoboot upgrade` 1.36 → 1.37 (--max-unavailable 3)
#   2. pipelining: `ecoboot up` (per node: prepared as soon as its instance runs, the control
#      plane initialised as soon as it is prepared, each node joined when its own preparation is
#      done); EC2's launch + boot is drawn per instance inside the model's spreads
#   3. golden image: `ecoboot image build`, then `down` (the image is kept) and new disks for
#      every node, then `up` (pipelined) from the empty account with spec.aws.ami.golden: true
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
next="" golden=""
cleanup() { rm -rf "$work"; rm -f $next $golden; }
trap cleanup EXIT
sed -n 's/^    - name: //p' "$CONFIG" >"$work/names"
echo image-builder >>"$work/names" # fleet node 15
next="$(mktemp --suffix=.yaml -p "$ROOT/inventory" .bench-realistic-XXXX)"
sed 's/version: "1.36" /version: "1.37" /' "$CONFIG" >"$next"
golden="$(mktemp --suffix=.yaml -p "$ROOT/inventory" .bench-golden-XXXX)"
sed 's/      golden: false /      golden: true /' "$CONFIG" >"$golden"
python3 bench/timings.py "$SCALE" "$work/names" "$work/t"

stamp() { python3 -c 'import json,sys,time
for l in sys.stdin:
    l = l.strip()
    if l.startswith("{"):
        e = json.loads(l); e["t"] = time.time(); print(json.dumps(e), flush=True)'; }

fresh() { # fresh [model]: a new sandbox; under the model the fleet, the double and the proxy sleep
  bash scripts/sandbox.sh down >/dev/null 2>&1 || true
  if [ "${1:-}" = model ]; then
    export ECOBOOT_SIM_TIMINGS="$work/t/double.json" FLEET_TIMINGS_DIR="$work/t"
  else
    unset ECOBOOT_SIM_TIMINGS FLEET_TIMINGS_DIR
  fi
  bash scripts/sandbox.sh up >/dev/null
  # shellcheck disable=SC1091
  . "$SB/env"
  local lags='"describe_lag": 0'
  [ "${1:-}" = model ] && lags="\"describe_lags\": $(cat "$work/t/describe_lags.json"), \"describe_lag\": $(cat "$work/t/describe_lag"), \"stop_lag\": $(cat "$work/t/stop_lag"), \"image_lag\": $(cat "$work/t/image_lag")"
  python3 -c "import json,sys; c = json.load(open('$SB/proxy.json')); c.update(json.loads('{$lags}')); print(json.dumps(c))" >"$work/proxy.json"
  curl -sf -X POST "$AWS_ENDPOINT_URL/_proxy/config" --data-binary @"$work/proxy.json" >/dev/null
}

timed() { # timed NAME CONFIG ARGS...: one ecoboot command, its stamped events in $work/NAME.jsonl
  local name="$1" cfg="$2" t0 t1
  shift 2
  t0=$(date +%s.%N)
  ecoboot -c "$cfg" --output json "$@" --yes 2>"$work/$name.err" | stamp >"$work/$name.jsonl"
  t1=$(date +%s.%N)
  echo "$name: ecoboot $1 took $(python3 -c "print(round($t1 - $t0, 1))") s of wall time"
}

new_disks() { # the cluster's 14 nodes get new, empty disks (the builder's node keeps its own)
  ecoboot -c "$golden" down --yes >/dev/null 2>&1
  export FLEET_DIR="$SB/fleet" FLEET_N=15 FLEET_PORT=2222 FLEET_KUBECONFIG="$SB/kube/admin.conf"
  bash scripts/fleet.sh stop
  for n in $(seq 1 14); do rm -rf "$SB/fleet/nodes/$n/ov" "$SB/fleet/nodes/$n/root"; done
  bash scripts/fleet.sh start >/dev/null
}

keep_logs() { # keep_logs NAME: the fleet's delay logs of this run, for its critical path
  local n log
  for n in $(seq 1 15); do
    log="nodes/$n/ov/var/upper/log/ecoboot-sim/delays.log"
    [ -f "$SB/fleet/$log" ] && install -D "$SB/fleet/$log" "$work/$1-fleet/$log"
  done
  mkdir -p "$work/$1-fleet"
}

baseline() { # baseline NAME [model]: stages one after another, then the upgrade
  fresh "${2:-}"
  timed "$1" "$CONFIG" up --no-pipeline
  timed "$1-upgrade" "$next" upgrade --max-unavailable 3
  keep_logs "$1"
}

pipelined() { # pipelined NAME [model]
  fresh "${2:-}"
  timed "$1" "$CONFIG" up
  keep_logs "$1"
}

with_golden() { # with_golden NAME [model]
  fresh "${2:-}"
  timed "$1-image" "$golden" image build
  new_disks
  timed "$1" "$golden" up
  keep_logs "$1"
}

report() { # report OWN SCALED FLEET-LOGS
  python3 bench/realistic_report.py "$work/$1.jsonl" "$work/$2.jsonl" "$SCALE" "$work/$3-fleet" "$work/names"
}

baseline own
baseline scaled model
pipelined own-pipe
pipelined pipe model
with_golden own-golden
with_golden golden model
echo
echo "== baseline: ecoboot up --no-pipeline from an empty account"
report own scaled scaled
echo
echo "== pipelining: ecoboot up from an empty account"
report own-pipe pipe pipe
echo
echo "== baseline: ecoboot upgrade 1.36 -> 1.37, --max-unavailable 3"
report own-upgrade scaled-upgrade scaled
echo
echo "== golden image: ecoboot image build (once; again when the config's hash changes)"
report own-golden-image golden-image golden
echo
echo "== golden image: ecoboot up from an empty account, spec.aws.ami.golden: true"
report own-golden golden golden
bash scripts/sandbox.sh down >/dev/null
