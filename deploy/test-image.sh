#!/usr/bin/env bash
# Builds the tucker-seg-server image from a debootstrapped Debian base with podman, starts it
# hardened (read-only root filesystem, no capabilities, TLS and a bearer token required),
# segments the example CT through it with the tucker-seg client, and checks the container's
# health status and /metrics; then plays deploy/k8s/deployment.yaml with podman kube play and
# segments through its pod over mutual TLS. Needs root, podman, runc, debootstrap (scripts/install-deps.sh)
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

echo "== the DICOM node entrypoint: storescu -> node container -> server container -> SEG to a storescp"
node=tucker-seg-test-node
node_port=${TUCKER_SEG_IMAGE_DICOM_PORT:-11113}; destination_port=$((node_port + 1))
received=$(mktemp -d)
storescp --aetitle PACS --output-directory "$received" "$destination_port" &
storescp_pid=$!
"${podman_cmd[@]}" rm -f "$node" >/dev/null 2>&1 || true
"${podman_cmd[@]}" volume rm -f tucker-seg-test-spool >/dev/null 2>&1 || true
"${podman_cmd[@]}" run -d --name "$node" --read-only --cap-drop=ALL --security-opt no-new-privileges --network host \
  -v tucker-seg-test-spool:/var/spool/tucker-seg -v "$secrets:/etc/tucker-seg/tls:ro" -e TUCKER_SEG_TOKEN \
  --entrypoint tucker-seg "$image" dicom-node --port "$node_port" --destination "PACS@127.0.0.1:$destination_port" \
  --spool /var/spool/tucker-seg --series-timeout 2 --min-free-disk-mb 1 --server "localhost:$grpc_port" --tls-ca /etc/tucker-seg/tls/tls.crt
for _ in $(seq 60); do echoscu -aec TUCKERSEG 127.0.0.1 "$node_port" 2>/dev/null && break; sleep 1; done  # polling a container starting
storescu -xv -aec TUCKERSEG 127.0.0.1 "$node_port" tests/data/totalsegmentator/example_ct_dicom_uids/*.dcm
for _ in $(seq 120); do "${podman_cmd[@]}" logs "$node" 2>&1 | grep -q "SEG accepted by PACS" && break; sleep 1; done
"${podman_cmd[@]}" logs "$node" 2>&1 | grep "dicom-node: series"
kill "$storescp_pid"
"${podman_cmd[@]}" rm -f "$node" >/dev/null; "${podman_cmd[@]}" volume rm -f tucker-seg-test-spool >/dev/null
[ "$(find "$received" -type f | wc -l)" = 1 ] || { echo "expected one SEG at the destination"; exit 1; }
dcmdump +P Modality "$(find "$received" -type f)" | grep -q SEG || { echo "the destination did not receive a SEG"; exit 1; }
rm -rf "$received"
echo "the node's SEG reached the destination"

echo "== deploy/k8s/deployment.yaml under podman kube play (the manifest's image, ports, env, probes' endpoints, security context)"
# podman 4.3 (Debian 12) plays a Deployment's containers, env, ports, livenessProbe and container
# securityContext, but not Secret volumes, readiness or startup probes, or the pod-level
# securityContext (podman-kube-play(1)'s support table). So the played copy differs from the file
# in exactly these ways: the local image, one replica, the two Secrets as host directories, the
# ports published on loopback; the readiness probe's own path and port are polled from here.
# The pod's infra container is built from the host's catatonit.
"${podman_cmd[@]}" rm -f "$name" >/dev/null
trap - EXIT
kube=$(mktemp -d)
mkdir -p "$kube/tls" "$kube/auth"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=tucker-seg-test-ca -keyout "$kube/ca.key" -out "$kube/tls/ca.crt" 2>/dev/null
issue() {  # $1: name, $2: subject, $3: extensions
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$kube/$1.key" -out "$kube/$1.csr" 2>/dev/null
  openssl x509 -req -in "$kube/$1.csr" -CA "$kube/tls/ca.crt" -CAkey "$kube/ca.key" -CAcreateserial -days 1 -extfile <(echo "$3") \
    -out "$kube/$1.crt" 2>/dev/null
}
issue server /CN=localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
issue client /CN=pacs-integration "extendedKeyUsage=clientAuth"
cp "$kube/server.crt" "$kube/tls/tls.crt"; cp "$kube/server.key" "$kube/tls/tls.key"
openssl rand -hex 24 > "$kube/auth/tokens"
chmod 0755 "$kube" "$kube/tls" "$kube/auth"; chmod 0644 "$kube"/tls/* "$kube"/auth/*
kube_grpc_port=$((grpc_port + 1)); kube_metrics_port=$((metrics_port - 1))
readiness=$(python3 - "$kube" "$kube_grpc_port" "$kube_metrics_port" <<'PY'
import sys, yaml
kube, grpc_port, metrics_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open("deploy/k8s/deployment.yaml") as f:
    deployment = yaml.safe_load(f)
spec = deployment["spec"]
spec["replicas"] = 1
pod = spec["template"]["spec"]
container = pod["containers"][0]
container["image"] = "localhost/tucker-seg-server:latest"
host_ports = {"grpc": grpc_port, "metrics": metrics_port}
for port in container["ports"]:
    port["hostPort"] = host_ports[port["name"]]
    port["hostIP"] = "127.0.0.1"
for volume in pod["volumes"]:
    assert "secret" in volume, volume
    volume.pop("secret")
    volume["hostPath"] = {"path": f"{kube}/{volume['name']}", "type": "Directory"}
with open(f"{kube}/deployment.yaml", "w") as f:
    yaml.safe_dump(deployment, f)
probe = container["readinessProbe"]["httpGet"]
print(probe["path"], host_ports[probe["port"]])
PY
)
trap '"${podman_cmd[@]}" ps -a --format "{{.Names}}" | grep -- "^tucker-seg-server.*-server$" | xargs -r -n1 "${podman_cmd[@]}" logs 2>&1 | tail -n 20; "${podman_cmd[@]}" kube down "$kube/deployment.yaml" >/dev/null 2>&1; rm -rf "$kube" "$secrets"' EXIT
"${podman_cmd[@]}" kube play "$kube/deployment.yaml"
read -r ready_path ready_port <<< "$readiness"
echo "waiting for the readiness probe's endpoint: http://127.0.0.1:$ready_port$ready_path"
python3 - "$ready_port" "$ready_path" <<'PY'
import sys, time, urllib.error, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}"
deadline = time.monotonic() + 300
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            print(f"{url}: {r.status} {r.read().decode().strip()}")
            break
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        if time.monotonic() > deadline:
            sys.exit(f"{url} not ready after 300 s: {e}")
        time.sleep(1)  # polling a process in a container; there is nothing to wait on instead
PY
mtls=(--server "localhost:$kube_grpc_port" --tls-ca "$kube/tls/ca.crt" --tls-cert "$kube/client.crt" --tls-key "$kube/client.key")
TUCKER_SEG_TOKEN=$(cat "$kube/auth/tokens") build/tucker-seg segment -i tests/data/totalsegmentator/example_ct_sm.nii.gz \
  -o out/image-test-kube-labels.nii.gz "${mtls[@]}" --quiet
kube_metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$kube_metrics_port/metrics').read().decode())")
echo "$kube_metrics" | grep -q 'tuckerseg_requests_total{.*status="OK".*} 1' || { echo "expected 1 OK request in the pod's /metrics"; exit 1; }
echo "segmented through the Deployment's pod (mutual TLS, bearer token)"
if TUCKER_SEG_TOKEN=$(cat "$kube/auth/tokens") build/tucker-seg models --server "localhost:$kube_grpc_port" --tls-ca "$kube/tls/ca.crt" \
  > /dev/null 2>&1; then echo "a caller without a client certificate was served"; exit 1; fi
echo "without a client certificate: refused"
server=$("${podman_cmd[@]}" ps --format '{{.Names}}' | grep -- '^tucker-seg-server.*-server$' | head -n 1)
[ -n "$server" ] || { echo "no container of the Deployment is running"; "${podman_cmd[@]}" ps -a; exit 1; }
user=$("${podman_cmd[@]}" exec "$server" id -u)
[ "$user" != 0 ] || { echo "the Deployment's container runs as root"; exit 1; }
if "${podman_cmd[@]}" exec "$server" touch /probe-write 2>/dev/null; then echo "the root filesystem is writable"; exit 1; fi
echo "container user $user, read-only root filesystem"
echo "image test passed"
