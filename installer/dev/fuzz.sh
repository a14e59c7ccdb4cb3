#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each (`make fuzz`,
# part of `make test`). Seed corpora live in each package's testdata/fuzz
# and run as ordinary tests too; this adds a few seconds of new inputs.
#
#   installer/dev/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
t=${1:-5}
go=${GO:-go}
n=0
for pkg in $($go list ./...); do
  for target in $($go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target (${t}s)"
    $go test -run '^$' -fuzz "^${target}\$" -fuzztime "${t}s" "$pkg" >/tmp/mamori-fuzz.log 2>&1 || {
      cat /tmp/mamori-fuzz.log; echo "fuzz target $target in $pkg failed; the failing input is in $pkg's testdata/fuzz/$target" >&2; exit 1; }
    n=$((n + 1))
  done
done
echo "$n fuzz targets ran ${t}s each without a failure"
