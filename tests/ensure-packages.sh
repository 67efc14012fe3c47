#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages named on the command line that are missing, and says so.
# Used by the Makefile (compiler, GoogleTest) and bench.sh (wrk, caddy), so that a fresh machine
# needs nothing but `make run`, `make test` or `./bench.sh`.
#
#   tests/ensure-packages.sh PACKAGE...
set -euo pipefail

usage() {
  echo "usage: $0 PACKAGE..." >&2
  exit 2
}

missing_packages() {
  local package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      echo "$package"
    fi
  done
}

main() {
  [ "$#" -gt 0 ] || usage
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "ensure-packages: not a Debian/Ubuntu system; please install: $*" >&2
    if [ "$(uname -s)" = "Darwin" ]; then
      echo "ensure-packages: on macOS: brew install googletest (and Xcode's command line tools)" >&2
    fi
    exit 1
  fi

  local missing
  missing=$(missing_packages "$@")
  [ -n "$missing" ] || return 0

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "ensure-packages: missing $(echo "$missing" | tr '\n' ' ')and no sudo to install them" >&2
      exit 1
    fi
    sudo=(sudo)
  fi

  # shellcheck disable=SC2086 # one package name per word
  echo "ensure-packages: installing missing packages:" $missing
  "${sudo[@]}" apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq $missing
}

main "$@"
