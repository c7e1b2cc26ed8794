#!/usr/bin/env bash
# Installs what ecoboot's build and tests need on a fresh Debian/Ubuntu machine, idempotently
# and without questions: Debian packages (OpenSSH for the test fleet, ...; as root, or through
# sudo for a non-root user such as a GitHub runner's) and a pinned moto venv (the AWS API
# emulator). For a non-root user it also makes sure the test fleet's user namespaces work
# (scripts/userns.sh). It says what it installs and what it changes. Everything cached lives
# under $ECOBOOT_CACHE (scripts/cache-dir.sh: /var/cache/ecoboot when writable, else
# $RUNNER_TEMP or ~/.cache), outside the clone.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/cache-dir.sh"
MOTO_VERSION="5.2.5"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo -n"

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# libfaketime: the lock test runs a stealer whose clock is an hour ahead.
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
# The node simulators read kubeadm configs with a real YAML parser (Debian's python3).
/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || need_apt+=(python3-yaml)
# The moto venv is made with Debian's python3.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# A non-root user's test fleet maps its nodes' users through newuidmap (scripts/fleet.sh).
[ "$(id -u)" = 0 ] || command -v newuidmap >/dev/null 2>&1 || need_apt+=(uidmap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

[ "$(id -u)" = 0 ] || bash "$ROOT/scripts/userns.sh"

venv="$ECOBOOT_CACHE/venv"
# moto with EC2, IAM and S3 (remote state: conditional writes are enforced since moto 5.1).
if ! "$venv/bin/python" -c "import moto, moto.s3.models, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "setup: installing moto[server,ec2,iam,s3]==$MOTO_VERSION into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[server,ec2,iam,s3]==$MOTO_VERSION"
fi
# The schema test validates configs with the reference JSON Schema implementation.
if ! "$venv/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
  "$venv/bin/pip" install -q "jsonschema==4.26.0" "pyyaml==6.0.3"
fi
echo "setup: ok (cache $ECOBOOT_CACHE)"
