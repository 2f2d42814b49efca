#!/usr/bin/env bash
# Runs every fuzz target of every package for FUZZTIME (default 5s). A
# crasher is written to the package's testdata/fuzz/<target>/: keep it there
# (it becomes a test) and fix the bug.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" at the -fuzztime boundary on a busy machine, with no crasher
# (golang/go#75804, fixed in Go 1.27). Such a run is retried once; a run that
# writes a crasher, or fails any other way, fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
go=${GO:-go}

corpus() { { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | sort; }

for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for target in $($go test -list '^Fuzz' "$dir" | grep '^Fuzz'); do
    for attempt in 1 2; do
      echo "fuzz $dir $target ($fuzztime)"
      before=$(corpus "$dir" "$target")
      out=$(mktemp)
      if $go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$dir" 2>&1 | tee "$out"; then
        rm -f "$out"
        break
      fi
      if [ "$(corpus "$dir" "$target")" != "$before" ] || ! grep -q 'context deadline exceeded' "$out" || [ $attempt -eq 2 ]; then
        rm -f "$out"
        echo "fuzz: $target failed in $dir" >&2
        exit 1
      fi
      rm -f "$out"
      echo "fuzz: $target stopped with Go's fuzztime race (golang/go#75804) and no crasher: running it again"
    done
  done
done
