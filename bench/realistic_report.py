#!/usr/bin/env python3
"""Reads two `ecoboot --output json up` runs on the sandbox, one at model scale 0 (ecoboot's
own time) and one at SCALE (bench/timings.toml slept × SCALE), each line stamped with its
arrival time, plus the fleet's delay logs, and prints the modeled real-AWS minutes per stage:

  modeled = own + (scaled - own) / SCALE

(the part the model added, scaled back up, plus ecoboot's own time, which the model does not
stretch), the plain `scaled / SCALE` for comparison, and per stage the node on the critical
path with its slowest modeled step.

  python3 bench/realistic_report.py OWN.jsonl SCALED.jsonl SCALE FLEET_DIR NAMES_FILE
"""
import json
import sys
from collections import defaultdict


def windows(path):
    """Stage -> (start, end) in arrival time, and its wall seconds."""
    start, out = {}, {}
    for line in open(path):
        e = json.loads(line)
        ev, st, t = e.get("event"), e.get("stage"), e["t"]
        if ev == "stage_started":
            start[st] = t
        elif ev in ("stage_done", "stage_skipped", "stage_failed") and st in start:
            out[st] = (start[st], t)
    return out


def span(path):
    """Seconds from the run's first event to its last (a pipelined run's stages overlap, so
    their windows, as reported stage by stage, do not add up to it)."""
    ts = [json.loads(line)["t"] for line in open(path) if line.strip()]
    return (max(ts) - min(ts)) if ts else 0.0


def delays(fleet, names):
    """(node, key, start, end) of every modeled sleep on the fleet."""
    out = []
    for i, node in enumerate(names, 1):
        path = f"{fleet}/nodes/{i}/ov/var/upper/log/ecoboot-sim/delays.log"
        try:
            lines = open(path).read().split("\n")
        except OSError:
            continue
        begun = {}
        for l in lines:
            parts = l.split()
            if len(parts) != 4:
                continue
            t, what, key, _ = float(parts[0]), parts[1], parts[2], parts[3]
            if what == "start":
                begun[key] = t
            elif what == "end" and key in begun:
                out.append((node, key, begun.pop(key), t))
    return out


def main():
    own_path, scaled_path, scale, fleet, names_file = sys.argv[1:6]
    scale = float(scale)
    names = [n.strip() for n in open(names_file) if n.strip()]
    own, scaled = windows(own_path), windows(scaled_path)
    sleeps = delays(fleet, names)
    print(f"scale {scale}: model = bench/timings.toml; own = the same run without the model\n")
    print(f"{'stage':<16}{'own s':>8}{'scaled s':>10}{'modeled min':>13}{'wall/scale min':>16}  critical path (modeled)")
    tot_own = tot_scaled = tot_model = 0.0
    for stage, (a, b) in sorted(scaled.items(), key=lambda kv: kv[1][0]):
        s_wall = b - a
        o = own.get(stage)
        o_wall = (o[1] - o[0]) if o else 0.0
        modeled = o_wall + max(0.0, s_wall - o_wall) / scale
        per_node = defaultdict(float)
        steps = defaultdict(list)
        for node, key, t0, t1 in sleeps:
            if a <= t0 <= b:
                per_node[node] += (t1 - t0)
                steps[node].append((t1 - t0, key))
        crit = ""
        if per_node:
            node = max(per_node, key=per_node.get)
            top = max(steps[node])
            crit = f"{node}: {per_node[node] / scale / 60:.1f} min of modeled steps, slowest {top[1]} {top[0] / scale:.0f} s"
        elif s_wall - o_wall > 1:
            crit = "waits on the cluster (Calico/ArgoCD readiness or EC2, modeled in the double/proxy)"
        tot_own += o_wall
        tot_scaled += s_wall
        tot_model += modeled
        print(f"{stage:<16}{o_wall:>8.1f}{s_wall:>10.1f}{modeled / 60:>13.1f}{s_wall / scale / 60:>16.1f}  {crit}")
    print(f"{'sum of stages':<16}{tot_own:>8.1f}{tot_scaled:>10.1f}{tot_model / 60:>13.1f}{tot_scaled / scale / 60:>16.1f}")
    o_span, s_span = span(own_path), span(scaled_path)
    m_span = o_span + max(0.0, s_span - o_span) / scale
    print(f"{'whole run':<16}{o_span:>8.1f}{s_span:>10.1f}{m_span / 60:>13.1f}{s_span / scale / 60:>16.1f}  (first event to last: the figure for overlapping stages)")


if __name__ == "__main__":
    main()
