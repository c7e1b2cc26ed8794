#!/usr/bin/env bash
# Figures for the whole pipeline on the local sandbox (prints, asserts nothing):
# wall time of a fresh `ecoboot up` per stage, of the idempotent rerun, AWS and Kubernetes API
# call counts. Starts a fresh sandbox and stops it at the end.
#   bash bench/e2e.sh              the 14-node sandbox (one control plane)
#   bash bench/e2e.sh ha           inventory/sandbox-ha.yaml (three control planes, the NLB)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SB=/tmp/ecoboot-sandbox
CONFIG=inventory/sandbox.yaml
[ "${1:-}" = ha ] && CONFIG=inventory/sandbox-ha.yaml
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${ECOBOOT_CACHE:-/var/cache/ecoboot}/target}"
bash scripts/sandbox.sh down >/dev/null 2>&1 || true
bash scripts/sandbox.sh up >/dev/null
cargo build --quiet --bin ecoboot
# shellcheck disable=SC1091
. "$SB/env"
hook="http://127.0.0.1:$(cat "$SB/kube/hook_port")"

timed() { # label, then the ecoboot arguments; JSON events to $SB/<label>.jsonl
  local label="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  ecoboot -c "$CONFIG" --output json "$@" >"$SB/$label.jsonl" 2>"$SB/$label.err"
  t1=$(date +%s.%N)
  curl -s "$hook/_double/stats" >"$SB/$label.api.json"
  echo "$label $(python3 -c "print($t1 - $t0)")" >>"$SB/times"
}
: >"$SB/times"
timed fresh up --yes
timed rerun up --yes
python3 - "$SB" <<'PY'
import json, sys
sb = sys.argv[1]
times = dict(l.split() for l in open(f"{sb}/times"))
def load(label):
    ev = [json.loads(l) for l in open(f"{sb}/{label}.jsonl") if l.startswith("{")]
    ev = [e for e in ev if "event" in e]  # the validation report is one object without it
    api = json.load(open(f"{sb}/{label}.api.json"))
    return ev, api
def aws(ev):
    mut = read = 0
    for e in ev:
        for op, n in (e.get("aws_calls") or {}).items():
            if op.startswith(("Describe", "Get", "List")): read += n
            else: mut += n
    return mut, read
fresh, api1 = load("fresh")
rerun, api2 = load("rerun")
print(f"{'stage':<20}{'fresh s':>9}")
for e in fresh:
    if e["event"] in ("stage_done", "stage_skipped"):
        print(f"{e['stage']:<20}{e.get('duration_ms', 0) / 1000:>9.1f}")
m1, r1 = aws(fresh); m2, r2 = aws(rerun)
w = lambda a: a["creates"] + a["updates"] + a["applies_changed"] + a["deletes"]
req = lambda a: sum(a["requests"].values())
print(f"\nfresh up: {float(times['fresh']):.1f} s wall; AWS {m1} mutating + {r1} read calls; "
      f"Kubernetes API {req(api1)} requests, {w(api1)} writes (incl. the fake controllers')")
print(f"rerun:    {float(times['rerun']):.1f} s wall; AWS {m2} mutating + {r2} read calls; "
      f"Kubernetes API {req(api2) - req(api1)} requests, {w(api2) - w(api1)} writes; "
      f"{sum(1 for e in rerun if e['event'] == 'stage_skipped')}/{sum(1 for e in rerun if e['event'] in ('stage_skipped', 'stage_done'))} stages skipped")
PY
bash scripts/sandbox.sh down >/dev/null
