# shellcheck shell=bash
# Shared helpers for scripts/test and scripts/test.d/*.sh: install what the tests need
# on a Debian/Ubuntu machine when it is missing. Sourced, never run on its own.

# ensure_apt PACKAGE COMMAND: install the Debian package when COMMAND is not on PATH.
ensure_apt() {
  local pkg=$1 cmd=$2
  if command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "error: '$cmd' is missing; install the Debian package '$pkg' (apt-get install $pkg)" >&2
    return 1
  fi
  local SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  if [ -z "${HUBBUB_APT_UPDATED:-}" ]; then
    echo "==> apt-get update"
    $SUDO apt-get update -qq || { echo "error: apt-get update failed" >&2; return 1; }
    export HUBBUB_APT_UPDATED=1
  fi
  echo "==> installing $pkg (for $cmd)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null \
    || { echo "error: could not install '$pkg'; install it by hand (apt-get install $pkg)" >&2; return 1; }
  command -v "$cmd" >/dev/null 2>&1 || { echo "error: '$pkg' installed but '$cmd' is still missing" >&2; return 1; }
}

# ensure_npm DIR: `npm ci` in DIR (from its committed package-lock.json) when node_modules is stale.
ensure_npm() {
  local dir=$1
  ensure_apt nodejs node || return 1
  ensure_apt npm npm || return 1
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "==> npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || { echo "error: npm ci failed in $dir" >&2; return 1; }
  fi
}

# ensure_venv DIR REQUIREMENTS: a Python virtualenv in DIR with the pinned requirements.
ensure_venv() {
  local dir=$1 req=$2
  if [ ! -x "$dir/bin/python" ]; then
    echo "==> creating virtualenv $dir"
    python3 -m venv "$dir" || { echo "error: python3 -m venv failed; install python3-venv" >&2; return 1; }
  fi
  if [ ! -f "$dir/.installed" ] || [ "$req" -nt "$dir/.installed" ]; then
    echo "==> pip install -r $req"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" || { echo "error: pip install failed for $req" >&2; return 1; }
    touch "$dir/.installed"
  fi
}
