#!/bin/sh
# Runs every test/**/*.test.ts with node's test runner (two files at a time) and exits with
# its code. Arguments narrow the search: sh tools/run-tests.sh test/unit test/integration/cli.test.ts
set -eu

cd "$(dirname "$0")/.."

[ "$#" -gt 0 ] || set -- test
list=$(mktemp)
trap 'rm -f "$list"' EXIT
for where in "$@"; do
  if [ ! -e "$where" ]; then
    echo "run-tests: $where does not exist" >&2
    exit 2
  fi
done
# Node 20's --test takes no glob: find the files
find "$@" -type f -name '*.test.ts' -not -path '*/node_modules/*' | sort -u >"$list"

set --
while IFS= read -r file; do
  set -- "$@" "$file"
done <"$list"
if [ "$#" -eq 0 ]; then
  echo "run-tests: no *.test.ts files found" >&2
  exit 1
fi

# the processes the tests start (renderbus up, the actors, CLI commands) run the build: bring it
# up to date (a no-op when it is), or they run the sources through tsx, several times slower
node tools/build.mjs

status=0
# --test-force-exit: a file whose tests are done ends even if a failed test left a handle open
# (a render server it never got to stop): one failure must not hang the whole suite
node --import tsx --test --test-concurrency=2 --test-force-exit "$@" || status=$?
exit "$status"
