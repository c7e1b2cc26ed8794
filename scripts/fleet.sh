#!/usr/bin/env bash
# A fleet of real OpenSSH daemons, one per node on 127.0.1.N:$FLEET_PORT, each in its own mount
# and UTS namespace with private overlays of /etc /var /opt /usr/local /run and its own /root,
# and the node simulators of scripts/sim first in PATH (/usr/local/sbin). Test support only.
#
# Root is not needed. As a non-root user each node also gets its own user namespace, with the
# user as the node's root and the user's /etc/subuid range for the other users (sshd's privsep
# user): `unshare --map-root-user --map-users` (util-linux >= 2.38, the `uidmap` package). The
# overlays' lower layers are therefore the fleet's own copies (base/): a copy of the host's
# /etc (without its password hashes and host keys) and a fresh Ubuntu-like skeleton of /var,
# /opt, /usr/local and /run, owned by whoever runs the fleet. Host files owned by the real root
# could not be changed from a user namespace; nodes see the host's /usr read-only.
#
#   FLEET_DIR=/tmp/f FLEET_N=14 FLEET_PORT=2222 [FLEET_KUBECONFIG=admin.conf] scripts/fleet.sh start|stop|status|down N|up N|wipe N|reset [N]|destroy
#   scripts/fleet.sh check   (can this user make the nodes' namespaces? says what to do if not)
#
# Node state lives in $FLEET_DIR/nodes/N/ov/<dir>/upper and survives stop/start until `reset`.
set -euo pipefail

if [ "${1:-}" = check ]; then FLEET_DIR=""; else
  FLEET_DIR="${FLEET_DIR:?set FLEET_DIR (a short path: ssh control sockets are limited to 108 bytes)}"
fi
FLEET_N="${FLEET_N:-14}"
FLEET_PORT="${FLEET_PORT:-22}"
SIM_DIR="$(cd "$(dirname "$0")" && pwd)/sim"
OVERLAYS="etc var opt usr/local run"

addr() { echo "127.0.1.$1"; }

# How a node's namespaces are made: as root, plain mount+UTS namespaces; otherwise inside a user
# namespace of its own (see above). FLEET_ROOTLESS=1 forces the latter as root too.
# On Ubuntu >= 23.10 AppArmor lets only profiled programs do that: scripts/userns.sh (run by
# setup.sh) installs a profile for its own copy of unshare (FLEET_UNSHARE, $ECOBOOT_CACHE/bin).
UNSHARE="${FLEET_UNSHARE:-unshare}"
if [ -z "${FLEET_UNSHARE:-}" ] && [ -n "${ECOBOOT_CACHE:-}" ] && [ -x "$ECOBOOT_CACHE/bin/unshare" ]; then
  UNSHARE="$ECOBOOT_CACHE/bin/unshare"
fi
# The user's first subordinate range (name or uid) from /etc/subuid or /etc/subgid: "start,count".
subids() { awk -F: -v n="$(id -un)" -v u="$(id -u)" '($1 == n || $1 == u) && $3 > 0 { print $2 "," $3; exit }' "$1" 2>/dev/null; }
if [ "${FLEET_ROOTLESS:-}" = 1 ] || [ "$(id -u)" != 0 ]; then
  # (--map-auto would do the same but picks a wrong range in util-linux 2.38.)
  USERNS=(--map-root-user "--map-users=$(subids /etc/subuid | sed 's/,/,1,/')" "--map-groups=$(subids /etc/subgid | sed 's/,/,1,/')")
else
  USERNS=()
fi

# Removes node files as the nodes' root: a non-root user cannot list the overlays' work
# directories (the kernel makes them mode 000) and Rust's remove_dir_all gives up on them.
remove() {
  if [ ${#USERNS[@]} -gt 0 ]; then "$UNSHARE" "${USERNS[@]}" rm -rf "$@"; else rm -rf "$@"; fi
}

# Fails with what to do when this user cannot make the nodes' namespaces.
check_namespaces() {
  local err
  err="$("$UNSHARE" "${USERNS[@]}" --mount --uts --propagation private true 2>&1)" && return 0
  echo "fleet: cannot create the nodes' namespaces as $(id -un): $err" >&2
  if [ ${#USERNS[@]} -gt 0 ]; then
    echo "fleet: a non-root fleet needs util-linux >= 2.38, newuidmap (package uidmap), a range in /etc/subuid and /etc/subgid for $(id -un), and user namespaces allowed; run 'bash scripts/setup.sh', which sets these up and says what it changes" >&2
  fi
  exit 1
}

init_node() { # runs inside the node's namespaces
  local n="$1" d="$FLEET_DIR/nodes/$1"
  hostname "node-$n"
  for o in $OVERLAYS; do
    mount -t overlay "fleet-$n-${o//\//-}" -o "lowerdir=$FLEET_DIR/base/$o,upperdir=$d/ov/$o/upper,workdir=$d/ov/$o/work" "/$o"
  done
  mount --bind "$d/root" /root
  mount --bind "$d/stubs" /usr/local/sbin
  mkdir -p /run/sshd
  exec /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
}

# The nodes' lower layers (see the top), made once per fleet.
base() {
  local b="$FLEET_DIR/base"
  [ -e "$b/ready" ] && return 0
  rm -rf "$b"
  mkdir -p "$b/etc" "$b/opt" "$b/run/lock" "$b/usr/local/bin" "$b/usr/local/sbin" "$b/usr/local/lib" "$b/usr/local/share"
  mkdir -p "$b/var/lib" "$b/var/log" "$b/var/cache" "$b/var/spool" "$b/var/tmp" "$b/var/backups"
  chmod 1777 "$b/var/tmp"
  ln -s /run "$b/var/run"
  ln -s /run/lock "$b/var/lock"
  # The host's /etc as a non-root user can read it (unreadable files are skipped), without
  # the host's password hashes, sudoers and host keys: every account gets a hash nothing
  # matches ('*': key logins work, a locked '!' would refuse them without PAM).
  tar -C / --exclude='etc/shadow*' --exclude='etc/gshadow*' --exclude='etc/sudoers*' \
    --exclude='etc/ssh/ssh_host_*' -cf - etc 2>/dev/null | tar -C "$b" -xf - 2>/dev/null || true
  cut -d: -f1 /etc/passwd | sed 's/$/:*:19000:0:99999:7:::/' >"$b/etc/shadow"
  chmod 640 "$b/etc/shadow"
  touch "$b/ready"
}

prepare() {
  base
  mkdir -p "$FLEET_DIR/keys"
  [ -f "$FLEET_DIR/keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fleet -f "$FLEET_DIR/keys/id_ed25519"
  cp "$FLEET_DIR/keys/id_ed25519.pub" "$FLEET_DIR/authorized_keys"
  chmod 600 "$FLEET_DIR/authorized_keys"
  : >"$FLEET_DIR/known_hosts"
  # What the whole simulated cluster shares (etcd's member list, the uploaded control-plane
  # certificates' key, the ClusterConfiguration): kept outside the nodes' overlays.
  mkdir -p "$FLEET_DIR/shared"
  # What a fresh node's disk holds beyond the host's (the base image's own files): an image
  # made from a node that deleted one of them no longer has it (the AWS proxy's CreateImage).
  echo "var/lib/ecoboot-sim/swap" >"$FLEET_DIR/shared/base-files"
  for n in $(seq 1 "$FLEET_N"); do
    local d="$FLEET_DIR/nodes/$n"
    mkdir -p "$d/root" "$d/stubs"
    for o in $OVERLAYS; do mkdir -p "$d/ov/$o/upper" "$d/ov/$o/work"; done
    [ -f "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "node-$n" -f "$d/ssh_host_ed25519_key"
    cp "$SIM_DIR"/* "$d/stubs/"
    chmod 755 "$d/stubs/"*
    if [ ! -e "$d/ov/var/upper/lib/ecoboot-sim/seeded" ]; then
      # A fresh Ubuntu-like node: swap is on.
      mkdir -p "$d/ov/var/upper/lib/ecoboot-sim"
      echo "/swap.img file 2G 0B -2" >"$d/ov/var/upper/lib/ecoboot-sim/swap"
      touch "$d/ov/var/upper/lib/ecoboot-sim/seeded"
    fi
    echo "$FLEET_DIR" >"$d/ov/var/upper/lib/ecoboot-sim/fleet-dir"
    # bench/realistic.sh: what this node's simulators sleep (bench/timings.toml, scaled).
    if [ -n "${FLEET_TIMINGS_DIR:-}" ] && [ -f "$FLEET_TIMINGS_DIR/node-$n" ]; then
      install -D -m 644 "$FLEET_TIMINGS_DIR/node-$n" "$d/ov/var/upper/lib/ecoboot-sim/timings"
    fi
    if [ -n "${FLEET_KUBECONFIG:-}" ]; then
      # The cluster API the node simulators register with (API double or real kube-apiserver).
      install -D -m 600 "$FLEET_KUBECONFIG" "$d/ov/var/upper/lib/ecoboot-sim/cluster-admin.conf"
      # The API double's loopback hook port (it issues renewed admin certificates).
      hp="$(dirname "$FLEET_KUBECONFIG")/hook_port"
      [ -f "$hp" ] && install -m 600 "$hp" "$d/ov/var/upper/lib/ecoboot-sim/cluster-hook-port"
    fi
    local host="$(addr "$n")"
    [ "$FLEET_PORT" = 22 ] || host="[$host]:$FLEET_PORT"
    echo "$host $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >>"$FLEET_DIR/known_hosts"
    cat >"$d/sshd_config" <<EOF
ListenAddress $(addr "$n"):$FLEET_PORT
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile $FLEET_DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 10
SetEnv ECOBOOT_SIM_NODE=$n
# The suite makes thousands of connections. OpenSSH 9.2's default post-quantum key exchange
# (sntrup761x25519) costs its client about 120 ms of CPU per handshake, curve25519 about 10
# (20 connections: 2.64 s against 0.20 s of user CPU). Real nodes negotiate the defaults.
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
EOF
  done
}

alive() { # pid file -> running (not zombie) sshd?
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -r "/proc/$pid/stat" ] && [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ]
}

start_node() {
  local n="$1" d="$FLEET_DIR/nodes/$1"
  alive "$d/sshd.pid" && return 0
  rm -f "$d/sshd.pid"
  "$UNSHARE" "${USERNS[@]}" --mount --uts --propagation private "$0" __init "$n"
}

stop_node() {
  local d="$FLEET_DIR/nodes/$1" pid
  pid="$(cat "$d/sshd.pid" 2>/dev/null)" || return 0
  # Freeze the listener so it accepts (forks) nothing more, end its connection handlers so no
  # session outlives its node, then end the listener.
  kill -STOP "$pid" 2>/dev/null || true
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$d/sshd.pid" || break; sleep 0.05; done
  rm -f "$d/sshd.pid"
}

wait_ready() {
  for n in "$@"; do
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/$(addr "$n")/$FLEET_PORT") 2>/dev/null && break
      sleep 0.05
    done
  done
}

case "${1:-}" in
  __init) init_node "$2" ;;
  check) check_namespaces ;;
  start)
    check_namespaces
    prepare
    for n in $(seq 1 "$FLEET_N"); do start_node "$n" & done
    wait
    wait_ready $(seq 1 "$FLEET_N")
    echo "fleet: $FLEET_N nodes on 127.0.1.1-$FLEET_N port $FLEET_PORT (dir $FLEET_DIR)"
    ;;
  stop) for n in $(seq 1 "$FLEET_N"); do stop_node "$n" & done; wait ;;
  down) stop_node "$2" ;;
  up) start_node "$2"; wait_ready "$2" ;;
  status)
    for n in $(seq 1 "$FLEET_N"); do
      if alive "$FLEET_DIR/nodes/$n/sshd.pid"; then echo "node $n up"; else echo "node $n down"; fi
    done
    ;;
  reset)
    "$0" stop
    if [ -n "${2:-}" ]; then remove "$FLEET_DIR/nodes/$2/ov" "$FLEET_DIR/nodes/$2/root"; else remove "$FLEET_DIR/nodes"; fi
    ;;
  wipe) # node N as a new instance's disk: stopped, its overlays and /root gone (start makes them)
    stop_node "$2"
    remove "$FLEET_DIR/nodes/$2/ov" "$FLEET_DIR/nodes/$2/root"
    ;;
  destroy) # every node stopped and everything in FLEET_DIR removed
    for n in $(seq 1 "$FLEET_N"); do stop_node "$n" & done
    wait
    remove "${FLEET_DIR:?}"/*
    ;;
  *) echo "usage: FLEET_DIR=... $0 start|stop|status|down N|up N|wipe N|reset [N]|destroy | $0 check" >&2; exit 2 ;;
esac
