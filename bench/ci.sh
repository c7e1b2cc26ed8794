#!/usr/bin/env bash
# The suite's wall time and where it goes: runs `bash scripts/test.sh` (concurrent test
# binaries with cargo-nextest), then prints the total wall time and, per test binary, its
# tests, their summed time and its longest test (the critical path is the longest binary's
# longest test). Usage: bash bench/ci.sh [extra runner args]
set -uo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
start=$(date +%s)
bash scripts/test.sh "$@" 2>&1 | tee "$log" >/dev/null
code=${PIPESTATUS[0]}
end=$(date +%s)
echo "suite: exit $code, wall $((end - start)) s (setup, build, lint and tests)"
grep -E '^\s+(PASS|FAIL|SLOW)? *\[ *[0-9.]+s\]' "$log" | grep -E '^\s+(PASS|FAIL)' |
  sed -E 's/^\s+(PASS|FAIL) \[ *([0-9.]+)s\] \([0-9/]+\) ecoboot::([a-z_]+) (.*)$/\3 \2 \4/' |
  awk '{ n[$1]++; s[$1]+=$2; if ($2>m[$1]) { m[$1]=$2; t[$1]=$3 } }
       END { printf "%-18s %5s %9s %9s  %s\n", "binary", "tests", "sum (s)", "max (s)", "longest test";
             for (b in n) printf "%-18s %5d %9.1f %9.1f  %s\n", b, n[b], s[b], m[b], t[b] }' |
  sort -k3 -n -r
grep -E 'Summary \[' "$log" | tail -1
rm -f "$log"
exit "$code"
