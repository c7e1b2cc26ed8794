#!/usr/bin/env bash
# Resolves the upstream files the sandbox and the tests use (testdata/upstream.tsv: name, pinned
# URL, sha256) into $ECOBOOT_CACHE/testdata (or $ECOBOOT_TESTDATA_DIR) and prints that directory. Each file is taken from
# the first of: $ECOBOOT_TESTDATA, ../shared/testdata next to the clone (override:
# $ECOBOOT_SHARED_TESTDATA), the cache itself, else downloaded from its pinned URL, or from
# $ECOBOOT_TESTDATA_MIRROR/<name> when that is set (air-gapped users, tests). Copies with a
# 4-line provenance header are accepted (the header is removed). Every file is checked against
# its sha256 wherever it came from; the files never enter the repository.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/cache-dir.sh"
OUT="${ECOBOOT_TESTDATA_DIR:-$ECOBOOT_CACHE/testdata}"
mkdir -p "$OUT"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# place SRC NAME SHA: installs SRC as $OUT/NAME if it (or its body below a provenance header)
# has the pinned sha256.
place() {
  local tmp="$OUT/.$2.$$"
  if [ "$(sha "$1")" = "$3" ]; then
    cp "$1" "$tmp"
  elif head -n 1 "$1" | grep -q '^# Source: ' && tail -n +5 "$1" >"$tmp" && [ "$(sha "$tmp")" = "$3" ]; then
    :
  else
    rm -f "$tmp"
    return 1
  fi
  chmod 644 "$tmp"
  mv "$tmp" "$OUT/$2"
}

fail() {
  echo "testdata: cannot get $1: $2." >&2
  echo "testdata: put the file in \$ECOBOOT_TESTDATA (a folder), or set ECOBOOT_TESTDATA_MIRROR=http://host:port/path/ to a mirror serving it as <mirror>/$1; its sha256 must be $3" >&2
  exit 1
}

while IFS=$'\t' read -r name url want; do
  case "$name" in '' | '#'*) continue ;; esac
  if [ -f "$OUT/$name" ] && [ "$(sha "$OUT/$name")" = "$want" ]; then continue; fi
  found=""
  for d in "${ECOBOOT_TESTDATA:-}" "${ECOBOOT_SHARED_TESTDATA:-$ROOT/../shared/testdata}"; do
    if [ -n "$d" ] && [ "$d" != "$OUT" ] && [ -f "$d/$name" ] && place "$d/$name" "$name" "$want"; then
      found=1
      break
    fi
  done
  [ -n "$found" ] && continue
  from="$url"
  [ -n "${ECOBOOT_TESTDATA_MIRROR:-}" ] && from="${ECOBOOT_TESTDATA_MIRROR%/}/$name"
  echo "testdata: downloading $name from $from" >&2
  dl="$OUT/.$name.download.$$"
  if ! curl -fsSL --retry 2 --connect-timeout 10 --max-time 300 -o "$dl" "$from"; then
    rm -f "$dl"
    fail "$name" "not found locally and the download from $from failed" "$want"
  fi
  if ! place "$dl" "$name" "$want"; then
    got="$(sha "$dl")"
    rm -f "$dl"
    fail "$name" "$from served a file with sha256 $got" "$want"
  fi
  rm -f "$dl"
done <"$ROOT/testdata/upstream.tsv"
echo "$OUT"
