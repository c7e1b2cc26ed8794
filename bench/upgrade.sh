#!/usr/bin/env bash
# Figures for `ecoboot upgrade` on the local sandbox (prints, asserts nothing): wall time of a
# 14-node upgrade 1.36 → 1.37 with --max-unavailable 1 and 3, and the time each node spent in
# each phase (drain, packages + restart, back to Ready). Each run starts from a fresh sandbox
# brought up with `ecoboot up`; the sandbox is stopped at the end.
#   bash bench/upgrade.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SB=/tmp/ecoboot-sandbox
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${ECOBOOT_CACHE:-/var/cache/ecoboot}/target}"
cargo build --quiet --bin ecoboot
next="$(mktemp --suffix=.yaml -p "$ROOT/inventory" .bench-upgrade-XXXX)"
trap 'rm -f "$next"' EXIT
sed 's/version: "1.36" /version: "1.37" /' inventory/sandbox.yaml >"$next"

for mu in 1 3; do
  bash scripts/sandbox.sh down >/dev/null 2>&1 || true
  bash scripts/sandbox.sh up >/dev/null
  # shellcheck disable=SC1091
  . "$SB/env"
  ecoboot -c inventory/sandbox.yaml up --yes --to label-nodes -q >/dev/null 2>"$SB/up.err"
  t0=$(date +%s.%N)
  ecoboot -c "$next" --output json upgrade --yes --max-unavailable "$mu" >"$SB/upgrade-$mu.jsonl" 2>"$SB/upgrade-$mu.err"
  t1=$(date +%s.%N)
  echo "--max-unavailable $mu: $(python3 -c "print(round($t1 - $t0, 1))") s for the whole command"
  cp "$SB/upgrade-$mu.jsonl" "/tmp/ecoboot-upgrade-$mu.jsonl"
done
bash scripts/sandbox.sh down >/dev/null

python3 - <<'PY'
import json
from datetime import datetime

def ts(e):
    return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()

for mu in (1, 3):
    ev = [json.loads(l) for l in open(f"/tmp/ecoboot-upgrade-{mu}.jsonl") if l.startswith("{")]
    marks = {}
    for e in ev:
        if e.get("event") != "progress" or not e.get("node"):
            continue
        m = e["message"]
        phase = ("start" if m.startswith("cordoned") else "drained" if m.startswith("drained")
                 else "installed" if m.startswith("kubelet") else "done" if m.startswith("upgraded") else None)
        if phase:
            marks.setdefault(e["node"], {})[phase] = ts(e)
    start = ts(ev[0]); end = ts(ev[-1])
    print(f"\n--max-unavailable {mu}: {end - start:.1f} s wall for {len(marks)} nodes")
    print(f"{'node':<22}{'drain s':>9}{'upgrade s':>11}{'ready s':>9}")
    for node, m in sorted(marks.items(), key=lambda kv: kv[1].get("start", 0)):
        d = m.get("drained", 0) - m.get("start", 0)
        u = m.get("installed", 0) - m.get("drained", 0)
        r = m.get("done", 0) - m.get("installed", 0)
        print(f"{node:<22}{d:>9.1f}{u:>11.1f}{r:>9.1f}")
PY
