# Sourced: sets ECOBOOT_CACHE to where builds, venvs and test data are cached, outside the
# clone: $ECOBOOT_CACHE if set, else /var/cache/ecoboot when it is (or can be made) writable
# (root, CI here), else $RUNNER_TEMP/ecoboot on a GitHub runner, else ~/.cache/ecoboot.
if [ -z "${ECOBOOT_CACHE:-}" ]; then
  if mkdir -p /var/cache/ecoboot 2>/dev/null && [ -w /var/cache/ecoboot ]; then
    ECOBOOT_CACHE=/var/cache/ecoboot
  elif [ -n "${RUNNER_TEMP:-}" ]; then
    ECOBOOT_CACHE="$RUNNER_TEMP/ecoboot"
  else
    ECOBOOT_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ecoboot"
  fi
fi
export ECOBOOT_CACHE
mkdir -p "$ECOBOOT_CACHE"
