#!/bin/sh
# Installs what renderbus needs, and says nothing when nothing is missing.
#   sh tools/bootstrap.sh          Node >= 20.19, npm packages, the build (dist/), nats-server
#                                  povray povray-includes bubblewrap; `renderbus` on PATH
#   sh tools/bootstrap.sh --test   also GNU parallel (the benchmark compares against it),
#                                  chromium (the web monitor's browser test drives it), age
#                                  and blender (the Blender adapter's tests render with it)
# As root, missing Debian packages are installed; otherwise the command to run is printed and
# the script exits 1. `renderbus` is linked into /usr/local/bin as root, else into ~/.local/bin
# when that is on PATH, else the command that does it is printed (RENDERBUS_BIN_DIR=DIR links
# it there instead). Safe to run any number of times.
set -eu

cd "$(dirname "$0")/.."

with_test=no
for arg in "$@"; do
  case "$arg" in
    --test) with_test=yes ;;
    -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument '$arg' (expected --test)" >&2; exit 2 ;;
  esac
done

say() { echo "bootstrap: $*" >&2; }

# --- Node.js --------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1; then
  say "Node.js is not installed: renderbus needs Node.js 20.19 or later (https://nodejs.org/, or 'sudo apt-get install nodejs npm' on Debian 13+)"
  exit 1
fi
node_version=$(node -p 'process.versions.node')
node_major=${node_version%%.*}
node_minor=${node_version#*.}; node_minor=${node_minor%%.*}
if [ "$node_major" -lt 20 ] || { [ "$node_major" -eq 20 ] && [ "$node_minor" -lt 19 ]; }; then
  say "Node.js $node_version is too old: renderbus needs 20.19 or later (package.json engines; the age-encryption package's @noble libraries need it)"
  exit 1
fi

# --- npm packages: install when node_modules is missing or older than the manifests ---------
# npm rewrites node_modules/.package-lock.json on every install: it is the stamp.
stamp=node_modules/.package-lock.json
stale=no
if [ ! -f "$stamp" ]; then
  stale=yes
elif [ -n "$(find package.json package-lock.json -newer "$stamp" 2>/dev/null)" ]; then
  stale=yes
fi
if [ "$stale" = yes ]; then
  if ! command -v npm >/dev/null 2>&1; then
    say "npm is not installed (it comes with Node.js)"
    exit 1
  fi
  # npm ci installs exactly the committed lock and never rewrites it (npm install may, and a
  # demo must not leave the checkout modified); a lock out of step with package.json is the
  # committer's mistake, so it is named rather than papered over
  say "installing npm packages"
  if ! npm ci --no-audit --no-fund --loglevel=error; then
    say "npm ci failed: if package-lock.json is out of step with package.json, run 'npm install' and commit the lock"
    exit 1
  fi
  touch "$stamp"
fi

# --- the compiled build: renderbus runs JavaScript, no TypeScript loader -------------------
node tools/build.mjs

# --- `renderbus` on PATH ------------------------------------------------------------------
# npx finds the command only inside the checkout; a link to tools/bin/renderbus.js works from
# anywhere (the program finds its modules through its real path). A `renderbus` that is
# another checkout's is left alone.
bin=$(pwd -P)/tools/bin/renderbus.js
link_dir=${RENDERBUS_BIN_DIR:-}
if [ -z "$link_dir" ]; then
  if [ "$(id -u)" = 0 ]; then
    link_dir=/usr/local/bin
  else
    case ":$PATH:" in *":$HOME/.local/bin:"*) link_dir=$HOME/.local/bin ;; esac
  fi
fi
current=$(command -v renderbus 2>/dev/null || true)
if [ -n "$current" ] && [ "$(readlink -f "$current")" = "$bin" ]; then
  : # already this checkout's
elif [ -n "$current" ] && [ -e "$current" ]; then
  say "'renderbus' on PATH is $current, not this checkout's: run $bin, or change that link"
elif [ -n "$link_dir" ] && mkdir -p "$link_dir" && ln -sf "$bin" "$link_dir/renderbus"; then
  case ":$PATH:" in
    *":$link_dir:"*) say "linked $link_dir/renderbus to this checkout: 'renderbus' works from any folder" ;;
    *) say "linked $link_dir/renderbus to this checkout; $link_dir is not on PATH" ;;
  esac
else
  say "to run 'renderbus' from any folder: sudo ln -sf $bin /usr/local/bin/renderbus (or mkdir -p ~/.local/bin && ln -sf $bin ~/.local/bin/renderbus, with ~/.local/bin on PATH)"
fi

# --- Debian packages ------------------------------------------------------------------------
# Each is checked by the program it provides, so a copy installed some other way counts too.
program_of() {
  case "$1" in
    nats-server) echo "${NATS_SERVER_BIN:-nats-server}" ;;
    bubblewrap) echo bwrap ;;
    *) echo "$1" ;;
  esac
}

# POV-Ray's include files (colors.inc, textures.inc...) are only a Recommends of povray, which
# --no-install-recommends leaves out: without them any ordinary scene fails to parse
povray_includes_present() {
  for d in /usr/share/povray*/include /usr/local/share/povray*/include; do
    [ -f "$d/colors.inc" ] && return 0
  done
  return 1
}

missing=""
# Debian puts nats-server in /usr/sbin, on root's PATH only: look there too (renderbus does)
has_program() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}
for pkg in nats-server povray bubblewrap; do
  has_program "$(program_of "$pkg")" || missing="$missing $pkg"
done
povray_includes_present || missing="$missing povray-includes"
if [ "$with_test" = yes ]; then
  command -v parallel >/dev/null 2>&1 || missing="$missing parallel"
  # the transfer benchmark's baseline (npm run bench -- --only transfer)
  command -v rsync >/dev/null 2>&1 || missing="$missing rsync"
  # the age tool: the encrypted-results tests check that it decrypts what the farm encrypts
  command -v age >/dev/null 2>&1 || missing="$missing age"
  # Debian's chromium, driven by playwright-core (which downloads no browser of its own)
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing="$missing chromium"
  # Debian's Blender 3.4.1 (about 630 MB): test/integration/farm-blender.test.ts renders with it
  command -v blender >/dev/null 2>&1 || missing="$missing blender"
fi
[ -z "$missing" ] && exit 0

is_root=no
[ "$(id -u)" = 0 ] && is_root=yes

lists_empty() {
  ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1
}

apt_updated=no
apt_update() {
  if [ "$apt_updated" = no ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=yes
  fi
}


if ! command -v apt-get >/dev/null 2>&1; then
  say "missing:$missing (no apt-get here: install them with your package manager)"
  exit 1
fi
if [ "$is_root" = no ]; then
  say "missing:$missing; install them with:"
  echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
say "installing:$missing"
lists_empty && apt_update
# shellcheck disable=SC2086 # one word per package
if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
  apt_update
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
