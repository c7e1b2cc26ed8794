#!/usr/bin/env python3
"""Turns bench/timings.toml into what the sandbox's simulators sleep, scaled (issue #31).

  python3 bench/timings.py SCALE NODE-NAMES-FILE OUT-DIR

writes OUT-DIR/node-<i> (one `key seconds` line per row, for fleet node i, with that node's
deterministic jitter inside the row's spread), OUT-DIR/double.json (what the API double
models: calico_ready and calico_start per node, argocd_ready and argocd_start),
OUT-DIR/describe_lag (seconds the AWS proxy hides a new instance: ec2_running + boot_ssh),
OUT-DIR/describe_lags.json (the same per node, each with its own draw inside the spreads),
OUT-DIR/stop_lag (ec2_stop) and OUT-DIR/image_lag (create_image). All values are already
multiplied by SCALE.
"""
import hashlib
import json
import os
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))


def load():
    with open(os.path.join(HERE, "timings.toml"), "rb") as f:
        return tomllib.load(f)


def draw(model, row, node):
    """The row's value for `node`: its mean plus a deterministic offset inside its spread."""
    r = model[row]
    h = hashlib.sha256(f"{model['seed']}/{node}/{row}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return max(0.0, r["seconds"] + r["spread"] * (2 * u - 1))


def main():
    scale, names_file, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    model = load()
    names = [n.strip() for n in open(names_file) if n.strip()]
    rows = [k for k, v in model.items() if isinstance(v, dict)]
    os.makedirs(out, exist_ok=True)
    for i, node in enumerate(names, 1):
        with open(os.path.join(out, f"node-{i}"), "w") as f:
            for row in rows:
                f.write(f"{row} {draw(model, row, node) * scale:.3f}\n")
    double = {"calico_ready": {n: draw(model, "calico_ready", n) * scale for n in names},
              "calico_start": {n: draw(model, "calico_start", n) * scale for n in names},
              "argocd_ready": draw(model, "argocd_ready", "argocd") * scale,
              "argocd_start": draw(model, "argocd_start", "argocd") * scale}
    with open(os.path.join(out, "double.json"), "w") as f:
        json.dump(double, f)
    lag = (model["ec2_running"]["seconds"] + model["boot_ssh"]["seconds"]) * scale
    with open(os.path.join(out, "describe_lag"), "w") as f:
        f.write(f"{lag:.3f}\n")
    lags = {n: (draw(model, "ec2_running", n) + draw(model, "boot_ssh", n)) * scale for n in names}
    with open(os.path.join(out, "describe_lags.json"), "w") as f:
        json.dump(lags, f)
    for key, row in (("stop_lag", "ec2_stop"), ("image_lag", "create_image")):
        with open(os.path.join(out, key), "w") as f:
            f.write(f"{model[row]['seconds'] * scale:.3f}\n")


if __name__ == "__main__":
    main()
