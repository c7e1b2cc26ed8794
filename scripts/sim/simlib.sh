# Shared by the node simulators (test support, never part of ecoboot). Each simulator logs its
# argv to the node's private /var/log/ecoboot-sim/calls.log and keeps state in /var/lib/ecoboot-sim.
SIM=/var/lib/ecoboot-sim
# Shell builtins only on this path (every simulated command runs it; thousands per suite).
[ -d "$SIM/holds" ] && [ -d "$SIM/units" ] && [ -d "$SIM/pkgs" ] && [ -d /var/log/ecoboot-sim ] ||
  mkdir -p "$SIM/pkgs" "$SIM/units" "$SIM/holds" /var/log/ecoboot-sim
echo "${0##*/} $*" >>/var/log/ecoboot-sim/calls.log
# The fleet's shared directory (etcd members, uploaded certificates) and this node's number.
FLEET=""
[ -r "$SIM/fleet-dir" ] && { read -r FLEET <"$SIM/fleet-dir" || true; }
SHARED="${FLEET:-/nonexistent}/shared"
NODE_N="${ECOBOOT_SIM_NODE:-0}"

# sim_delay KEY: sleeps what bench/timings.toml models for KEY on this node, scaled by the
# bench (the file $SIM/timings exists only under bench/realistic.sh; otherwise no delay), and
# logs it (what the bench reads back for the critical path).
sim_delay() {
  [ -s "$SIM/timings" ] || return 0
  local s
  s="$(awk -v k="$1" '$1 == k {print $2}' "$SIM/timings")"
  [ -n "$s" ] || return 0
  echo "$(date +%s.%N) start $1 $s" >>/var/log/ecoboot-sim/delays.log
  sleep "$s"
  echo "$(date +%s.%N) end $1 $s" >>/var/log/ecoboot-sim/delays.log
}
