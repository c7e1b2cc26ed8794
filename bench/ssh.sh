#!/usr/bin/env bash
# Benchmark: ecoboot's SSH engine on a fleet of real sshd nodes (scripts/fleet.sh), a 10-step
# playbook where every step sleeps 0.2 s (critical path 2.0 s), against Ansible on the same
# fleet with strict host keys, default (forks 5) and tuned (forks = N, pipelining,
# ControlPersist, strategy free). Prints figures; asserts nothing about time.
#   bash bench/ssh.sh            # 14 nodes with Ansible, then 50 and 100 nodes ecoboot only
#   SIZES="14" bash bench/ssh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ECOBOOT_CACHE="${ECOBOOT_CACHE:-/var/cache/ecoboot}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ECOBOOT_CACHE/target}"
SIZES="${SIZES:-14 50 100}"
ANSIBLE_VENV="$ECOBOOT_CACHE/ansible"
cargo build -q
bin="$CARGO_TARGET_DIR/debug/ecoboot"
work="$(mktemp -d /tmp/eb.XXXX)"
export FLEET_DIR="$work/f" FLEET_PORT="${FLEET_PORT:-2299}"
cleanup() { FLEET_N="${FLEET_N:-100}" bash scripts/fleet.sh stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

if [ ! -x "$ANSIBLE_VENV/bin/ansible-playbook" ]; then
  python3 -m venv "$ANSIBLE_VENV" && "$ANSIBLE_VENV/bin/pip" install -q ansible-core
fi

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

make_config() { # N -> $work/cluster.yaml (1 control plane + N-1 workers at 127.0.1.i)
  python3 - "$1" "$work" "$FLEET_DIR" "$FLEET_PORT" <<'PY'
import sys
n, work, fleet, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
head = open("inventory/cluster.yaml").read().split("  nodes:\n")[0]
head = (head.replace("name: sesacthon\nspec", "name: bench\nspec").replace("user: ubuntu", "user: root")
        .replace("~/.ssh/sesacthon.pem", f"{fleet}/keys/id_ed25519").replace("~/.ssh/sesacthon.pub", f"{fleet}/keys/id_ed25519.pub").replace("knownHosts: accept-new", "knownHosts: strict"))
nodes = "".join(
    f"    - name: node-{i}\n      role: {'control-plane' if i == 1 else 'worker'}\n      instanceType: t3.small\n"
    f"      diskGb: 20\n      subnet: public-a\n      address: \"127.0.1.{i}:{port}\"\n" for i in range(1, n + 1))
open(f"{work}/cluster.yaml", "w").write(head + "  nodes:\n" + nodes)
PY
}

write_books() { # guarded like every ecoboot step: a marker per run and step (guard + re-probe included)
  local id="$RANDOM$RANDOM"
  mkdir -p "$work/sleep" "$work/one"
  { echo "name: prepare-nodes"; echo "steps:"
    for i in $(seq 1 10); do printf '  - name: step %s\n    creates: /run/bench-%s-%s\n    run: sleep 0.2 && touch /run/bench-%s-%s\n' "$i" "$id" "$i" "$id" "$i"; done; } >"$work/sleep/prepare-nodes.yaml"
  printf 'name: prepare-nodes\nsteps:\n  - name: connect only\n    creates: /run/bench-%s-one\n    run: touch /run/bench-%s-one\n' "$id" "$id" >"$work/one/prepare-nodes.yaml"
  { echo "- hosts: all"; echo "  gather_facts: false"; echo "  tasks:"
    for i in $(seq 1 10); do printf '    - name: step %s\n      shell: sleep 0.2\n' "$i"; done; } >"$work/play.yml"
}

ecoboot_run() { # books-dir -> wall seconds
  write_books
  rm -rf "$work/state"; mkdir -p "$work/state/bench"
  cp "$FLEET_DIR/known_hosts" "$work/state/bench/known_hosts"
  local t0 t1 TIMEFORMAT='%U %S'; t0=$(now)
  { time "$bin" -c "$work/cluster.yaml" --state-dir "$work/state" --playbooks "$1" stage prepare-nodes --yes -q >/dev/null 2>"$work/err"; } 2>"$work/cpu" \
    || { cat "$work/err" >&2; exit 1; }
  t1=$(now)
  echo "$(elapsed "$t0" "$t1") $(awk '{printf "%.2f", $1 + $2}' "$work/cpu")"
}

ansible_run() { # cfg-file -> wall seconds
  local n="$1" cfg="$2" t0 t1
  python3 - "$n" "$work" "$FLEET_DIR" "$FLEET_PORT" <<'PY'
import sys
n, work, fleet, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(f"{work}/hosts.ini", "w") as f:
    f.write("[all]\n" + "".join(f"node-{i} ansible_host=127.0.1.{i} ansible_port={port}\n" for i in range(1, n + 1)))
    f.write(f"[all:vars]\nansible_user=root\nansible_ssh_private_key_file={fleet}/keys/id_ed25519\n"
            f"ansible_python_interpreter=/usr/bin/python3\n")
PY
  t0=$(now)
  ANSIBLE_CONFIG="$cfg" ANSIBLE_HOME="$work/ansible-home" ANSIBLE_HOST_KEY_CHECKING=True \
    "$ANSIBLE_VENV/bin/ansible-playbook" -i "$work/hosts.ini" "$work/play.yml" >"$work/ansible.log" 2>&1 || { tail -20 "$work/ansible.log" >&2; exit 1; }
  t1=$(now); elapsed "$t0" "$t1"
}

write_books
printf '%-6s %-34s %9s\n' nodes run "wall (s)"
for n in $SIZES; do
  export FLEET_N="$n"
  bash scripts/fleet.sh start >/dev/null
  make_config "$n"
  read -r connect connect_cpu <<<"$(ecoboot_run "$work/one")"
  read -r wall wall_cpu <<<"$(ecoboot_run "$work/sleep")"
  over=$(python3 -c "print(f'{$wall - 2.0 - $connect:.2f}')")
  printf '%-6s %-34s %9s  (ecoboot CPU %s s)\n' "$n" "ecoboot: connect + 1 no-op step" "$connect" "$connect_cpu"
  printf '%-6s %-34s %9s  (ecoboot CPU %s s)\n' "$n" "ecoboot: 10 x sleep 0.2" "$wall" "$wall_cpu"
  printf '%-6s %-34s %9s\n' "$n" "  overhead above 2.0 s + connect" "$over"
  if [ "$n" = 14 ]; then
    ssh_common="-o UserKnownHostsFile=$FLEET_DIR/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    printf '[defaults]\n[ssh_connection]\nssh_common_args = %s\n' "$ssh_common" >"$work/default.cfg"
    printf '[defaults]\nforks = %s\nstrategy = free\n[ssh_connection]\npipelining = True\nssh_args = -o ControlMaster=auto -o ControlPersist=60s\nssh_common_args = %s\n' "$n" "$ssh_common" >"$work/tuned.cfg"
    default=$(ansible_run "$n" "$work/default.cfg")
    tuned=$(ansible_run "$n" "$work/tuned.cfg")
    printf '%-6s %-34s %9s  (%sx ecoboot)\n' "$n" "ansible: defaults (forks 5)" "$default" "$(python3 -c "print(f'{$default / $wall:.1f}')")"
    printf '%-6s %-34s %9s  (%sx ecoboot)\n' "$n" "ansible: tuned" "$tuned" "$(python3 -c "print(f'{$tuned / $wall:.1f}')")"
  fi
  bash scripts/fleet.sh stop >/dev/null
done
