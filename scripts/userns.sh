#!/usr/bin/env bash
# For a non-root user (a GitHub runner's, a developer's): makes sure the test fleet can give
# each node its own user namespace (scripts/fleet.sh), changing only what is missing and saying
# what it changes: a range of subordinate ids in /etc/subuid and /etc/subgid, and, where
# AppArmor restricts unprivileged user namespaces (Ubuntu >= 23.10, the ubuntu-24.04 runner),
# a profile that allows them for the fleet's own copy of unshare only ($ECOBOOT_CACHE/bin).
# Needs sudo only for those two changes. Sourced settings: scripts/cache-dir.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/cache-dir.sh"
SUDO="sudo -n"
me="$(id -un)"

if ! unshare --help 2>&1 | grep -q -- --map-users; then
  echo "userns: unshare $(unshare --version | awk '{print $NF}') cannot map subordinate ids (--map-users); the test fleet needs util-linux >= 2.38 (Debian 12, Ubuntu 24.04) or root" >&2
  exit 1
fi

if ! grep -q "^$me:" /etc/subuid 2>/dev/null || ! grep -q "^$me:" /etc/subgid 2>/dev/null; then
  # The first free range after every range already given out.
  start="$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: '{ e = $2 + $3; if (e > m) m = e } END { print (m > 100000 ? m : 100000) }')"
  range="$start-$((start + 65535))"
  echo "userns: giving $me the subordinate ids $range (/etc/subuid, /etc/subgid)"
  $SUDO usermod --add-subuids "$range" --add-subgids "$range" "$me"
fi

unshare_bin="$(command -v unshare)"
if [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo 0)" = 1 ]; then
  unshare_bin="$ECOBOOT_CACHE/bin/unshare"
  install -D -m 755 "$(command -v unshare)" "$unshare_bin"
  profile=/etc/apparmor.d/ecoboot-test-fleet
  want="abi <abi/4.0>,
include <tunables/global>
profile ecoboot-test-fleet \"$unshare_bin\" flags=(unconfined) {
  userns,
}"
  if [ "$(cat "$profile" 2>/dev/null)" != "$want" ]; then
    echo "userns: AppArmor restricts unprivileged user namespaces here; allowing them for $unshare_bin alone ($profile)"
    printf '%s\n' "$want" | $SUDO tee "$profile" >/dev/null
    $SUDO apparmor_parser -r "$profile"
  fi
fi

FLEET_UNSHARE="$unshare_bin" bash "$ROOT/scripts/fleet.sh" check
