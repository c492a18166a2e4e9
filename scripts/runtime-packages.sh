#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given binaries load (for the
# container's slim runtime stage): ldd -> file -> dpkg -S.
set -euo pipefail
for lib in $(ldd "$@" | awk '/=> \//{print $3}' | sort -u); do
  real=$(realpath "$lib")
  for candidate in "$real" "$lib" "/usr$lib" "${real#/usr}"; do
    if owner=$(dpkg -S "$candidate" 2>/dev/null); then
      echo "${owner%%:*}"
      break
    fi
  done
done | sort -u
