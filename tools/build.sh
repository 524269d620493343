#!/bin/sh
# Compiles renderbus to JavaScript in dist/ (tsconfig.build.json), so that no TypeScript loader
# runs in production: `renderbus` starts in ~0.1 s instead of ~0.8 s through tsx.
#   sh tools/build.sh           build when a source is newer than the last build
#   sh tools/build.sh --force   build anyway
# tools/bin/renderbus.js runs dist/ when it is current and the sources through tsx otherwise,
# so a stale build is slow, never wrong. Tests and benchmarks import the sources through tsx.
set -eu

cd "$(dirname "$0")/.."

stamp=dist/.tsbuildinfo
# what the build reads (tsconfig.build.json "include", plus the configs and the lock)
sources="protocol actors sites tools/cli tools/web tools/lib tools/demo"

force=no
for arg in "$@"; do
  case "$arg" in
    --force) force=yes ;;
    *) echo "build: unknown argument '$arg' (expected --force)" >&2; exit 2 ;;
  esac
done

if [ "$force" = no ] && [ -f "$stamp" ] &&
  [ -z "$(find $sources tsconfig.json tsconfig.build.json package-lock.json -newer "$stamp" -name '*.ts' -o -newer "$stamp" -name '*.json' 2>/dev/null | head -n 1)" ]; then
  exit 0
fi

echo "build: compiling to dist/" >&2
node_modules/.bin/tsc -p tsconfig.build.json
# files the code finds beside itself (import.meta.dirname), and package.json for "type":
# "module" and the version; links, so that they are never out of step with the checkout
for f in package.json actors/render-slot/launcher.pl tools/web/static tools/demo/scene.pov; do
  mkdir -p "dist/$(dirname "$f")"
  ln -sfn --relative "$f" "dist/$f"
done
# tsc leaves its build info alone when nothing changed: the stamp must still move forward
touch "$stamp"
