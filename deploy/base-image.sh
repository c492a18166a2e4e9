#!/usr/bin/env bash
# The container build's base image: Debian bookworm (minbase) made with debootstrap and imported
# into podman as docker.io/library/debian:bookworm, unless podman has it already. Network-bound,
# so scripts/test.sh starts it in the background while the code compiles; deploy/test-image.sh
# calls it again (a no-op by then). Needs root, podman, runc, debootstrap (scripts/install-deps.sh).
set -euo pipefail

podman_cmd=(podman --runtime runc)
base=docker.io/library/debian:bookworm

# podman on these machines: no default ulimits, cgroupfs (docs/deploy.md).
if ! grep -q cgroupfs /etc/containers/containers.conf 2>/dev/null; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\n' > /etc/containers/containers.conf
fi

if ! "${podman_cmd[@]}" image exists "$base"; then
  echo "== debootstrap a bookworm base image"
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian
  tar -C "$rootfs" -c . | "${podman_cmd[@]}" import - "$base"
fi
