# Shared by the node simulators (test support, never part of ecoboot). Each simulator logs its
# argv to the node's private /var/log/ecoboot-sim/calls.log and keeps state in /var/lib/ecoboot-sim.
SIM=/var/lib/ecoboot-sim
mkdir -p "$SIM/pkgs" "$SIM/units" "$SIM/holds" /var/log/ecoboot-sim
echo "$(basename "$0") $*" >>/var/log/ecoboot-sim/calls.log
