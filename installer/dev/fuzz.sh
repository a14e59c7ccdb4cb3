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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The targets are found in the test files `go list` says build here (build
# constraints applied), not with `go test -list` per package: that links
# and runs every package's test binary, about a minute of a CI run.
list=$($go list -f '{{.ImportPath}}{{range .TestGoFiles}} {{$.Dir}}/{{.}}{{end}}{{range .XTestGoFiles}} {{$.Dir}}/{{.}}{{end}}' ./...)
while read -r pkg files; do
  [ -n "$files" ] || continue
  # shellcheck disable=SC2086 # file names from go list, without blanks
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' $files); do
    echo "fuzz $pkg $target (${t}s)"
    # Go's fuzzer can stop with "context deadline exceeded" when -fuzztime
    # ends while it is still minimising a new interesting input, on a busy
    # machine; that is the engine, not a finding (no failing input is
    # written). Such a run is retried once; a real failure never is.
    for try in 1 2; do
      if $go test -run '^$' -fuzz "^${target}\$" -fuzztime "${t}s" -fuzzminimizetime 1x "$pkg" >"$log" 2>&1 </dev/null; then
        break
      fi
      if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
        echo "  (the fuzz engine timed out while minimising; running $target again)"
        continue
      fi
      cat "$log"; echo "fuzz target $target in $pkg failed; the failing input is in $pkg's testdata/fuzz/$target" >&2; exit 1
    done
    n=$((n + 1))
  done
done <<<"$list"
if [ "$n" = 0 ]; then
  echo "no fuzz targets found: the listing above is broken" >&2
  exit 1
fi
echo "$n fuzz targets ran ${t}s each without a failure"
