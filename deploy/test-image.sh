#!/usr/bin/env bash
# Builds the tucker-seg-server image from a debootstrapped Debian base with podman, starts it
# hardened (read-only root filesystem, no capabilities, TLS and a bearer token required),
# segments the example CT through it with the tucker-seg client, and checks the container's
# health status and /metrics. Needs root, podman, runc, debootstrap (scripts/install-deps.sh)
# and a built client (scripts/build.sh). scripts/test.sh runs it after the tests (about 2 minutes
# with the host's ccache shared, once the base image exists, deploy/base-image.sh; docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."

podman_cmd=(podman --runtime runc)
image=tucker-seg-server
name=tucker-seg-test-image
grpc_port=${TUCKER_SEG_IMAGE_PORT:-50061}
metrics_port=${TUCKER_SEG_IMAGE_METRICS_PORT:-9099}

bash deploy/base-image.sh

echo "== build the image"
# The host's ccache lends the image's build the objects scripts/build.sh compiled (the same Debian
# compiler and headers; keys relative to the source tree), so CI does not compile everything twice.
cache=()
if command -v ccache >/dev/null; then
  cache_dir=$(ccache -k cache_dir)
  mkdir -p "$cache_dir"
  cache=(-v "$cache_dir:/ccache")
fi
time "${podman_cmd[@]}" build --pull=never --network=host --format docker "${cache[@]}" -t "$image" .
"${podman_cmd[@]}" image inspect "$image" --format 'image size: {{.Size}} bytes, user {{.Config.User}}, ports {{.Config.ExposedPorts}}'

echo "== a certificate and a token for it"
secrets=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$secrets/tls.key" -out "$secrets/tls.crt" 2>/dev/null
openssl rand -hex 24 > "$secrets/tokens"
chmod 0755 "$secrets"; chmod 0644 "$secrets"/*  # readable by the container's user (a test key only)
export TUCKER_SEG_TOKEN=$(cat "$secrets/tokens")

echo "== run it (read-only root filesystem, no capabilities, TLS, bearer token)"
"${podman_cmd[@]}" rm -f "$name" >/dev/null 2>&1 || true
"${podman_cmd[@]}" run -d --name "$name" --read-only --cap-drop=ALL --security-opt no-new-privileges \
  -v "$secrets:/etc/tucker-seg/tls:ro" -e TUCKER_SEG_TLS_CERT=/etc/tucker-seg/tls/tls.crt -e TUCKER_SEG_TLS_KEY=/etc/tucker-seg/tls/tls.key \
  -e TUCKER_SEG_AUTH_TOKENS=/etc/tucker-seg/tls/tokens \
  -p "127.0.0.1:$grpc_port:50051" -p "127.0.0.1:$metrics_port:9180" "$image"
trap '"${podman_cmd[@]}" logs "$name" | tail -n 20; "${podman_cmd[@]}" rm -f "$name" >/dev/null; rm -rf "$secrets"' EXIT

tls=(--server "localhost:$grpc_port" --tls-ca "$secrets/tls.crt")
build/tucker-seg health "${tls[@]}" --wait 300
echo "== segment the example CT through the container"
mkdir -p out
build/tucker-seg segment -i tests/data/totalsegmentator/example_ct_sm.nii.gz -o out/image-test-labels.nii.gz "${tls[@]}" --quiet
build/tucker-seg segment -i tests/data/totalsegmentator/example_ct_dicom_uids -o out/image-test-dicom-labels.nii.gz \
  --dicom-seg out/image-test-seg.dcm "${tls[@]}" --quiet
if TUCKER_SEG_TOKEN= build/tucker-seg models "${tls[@]}" > /dev/null 2>&1; then echo "a caller without the token was served"; exit 1; fi
echo "without the token: refused"

echo "== the container's health check (/readyz inside the container)"
"${podman_cmd[@]}" healthcheck run "$name" && echo "healthcheck: healthy"
echo "== its /metrics"
metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics').read().decode())")
echo "$metrics" | grep -E '^tuckerseg_(requests_total|voxels_processed_total)'
echo "$metrics" | grep -q 'tuckerseg_requests_total{.*status="OK".*} 2' || { echo "expected 2 OK requests in /metrics"; exit 1; }
echo "image test passed"
