#!/usr/bin/env python3
"""Every YAML document under deploy/ parses, Kubernetes objects name their apiVersion and kind,
the compose file's services and the Grafana dashboard's queries are there."""
import glob
import json
import os
import sys

import yaml


def parse_seconds(text):
    return float(str(text).rstrip("s"))


def check_restricted(path, deployment):
    """Pod Security "restricted", HTTP probes that work with TLS on, a grace period beyond the drain."""
    pod = deployment["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security.get("runAsNonRoot") is True, f"{path}: runAsNonRoot"
    assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{path}: seccompProfile"
    for c in pod["containers"]:
        cs = c["securityContext"]
        assert cs.get("allowPrivilegeEscalation") is False, f"{path}: allowPrivilegeEscalation"
        assert cs.get("readOnlyRootFilesystem") is True, f"{path}: readOnlyRootFilesystem"
        assert cs.get("capabilities", {}).get("drop") == ["ALL"], f"{path}: capabilities"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "httpGet" in c[probe], f"{path}: {probe} must be HTTP (gRPC probes cannot speak TLS)"
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert "TUCKER_SEG_TLS_CERT" in env and "TUCKER_SEG_AUTH_TOKENS" in env, f"{path}: TLS and tokens"
        drain = float(env.get("TUCKER_SEG_DRAIN_SECONDS", 30))
        assert pod["terminationGracePeriodSeconds"] > drain, f"{path}: grace period must exceed the drain"


def main():
    root = sys.argv[1]
    deploy = os.path.join(root, "deploy")
    files = sorted(glob.glob(os.path.join(deploy, "**", "*.y*ml"), recursive=True))
    assert files, "no YAML files under deploy/"
    kinds = set()
    for path in files:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
        assert documents, f"{path}: no YAML document"
        if os.sep + "k8s" + os.sep in path:
            for d in documents:
                assert "apiVersion" in d and "kind" in d and "metadata" in d, f"{path}: not a Kubernetes object"
                kinds.add(d["kind"])
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "ConfigMap", "NetworkPolicy",
                "ScaledObject"}
    assert expected <= kinds, f"missing Kubernetes kinds: {expected - kinds}"

    for path in files:
        if os.sep + "k8s" + os.sep not in path:
            continue
        with open(path) as f:
            for d in yaml.safe_load_all(f):
                if d and d["kind"] == "Deployment":
                    check_restricted(path, d)

    # KEDA's alternative scales the same Deployment, on metrics the server exports.
    with open(os.path.join(deploy, "k8s", "keda-scaledobject.yaml")) as f:
        scaled = yaml.safe_load(f)
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tucker-seg-server", scaled["spec"]
    triggers = " ".join(t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus")
    for metric in ("tuckerseg_in_flight_requests", "tuckerseg_budgeted_requests_total"):
        assert metric in triggers, f"keda-scaledobject.yaml does not query {metric}"

    with open(os.path.join(deploy, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    assert {"tucker-seg-server", "dicom-node", "prometheus", "grafana"} <= set(compose["services"]), compose["services"].keys()
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"compose: {name} publishes {port} beyond localhost"
    grafana = compose["services"]["grafana"]["environment"]
    assert str(grafana.get("GF_SECURITY_ADMIN_PASSWORD", "")).startswith("${GRAFANA_ADMIN_PASSWORD:?"), f"compose: Grafana needs a password from the environment: {grafana}"
    server = compose["services"]["tucker-seg-server"]
    assert server.get("read_only") is True and "ALL" in server.get("cap_drop", []), server
    assert parse_seconds(server["stop_grace_period"]) > float(server["environment"]["TUCKER_SEG_DRAIN_SECONDS"]), server
    node = compose["services"]["dicom-node"]
    assert node["entrypoint"] == ["tucker-seg", "dicom-node"] and node.get("read_only") is True and "ALL" in node.get("cap_drop", []), node
    spool = node["command"][node["command"].index("--spool") + 1]
    assert any(v.split(":")[1] == spool and v.split(":")[0] in compose.get("volumes", {}) for v in node["volumes"]), f"compose: the node's spool {spool} is not a volume"

    with open(os.path.join(deploy, "grafana", "dashboards", "tucker-seg.json")) as f:
        dashboard = json.load(f)
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("tuckerseg_requests_total", "tuckerseg_voxels_processed_total", "tuckerseg_request_duration_seconds_bucket",
                   "tuckerseg_queue_depth", "tuckerseg_selections_total", "tuckerseg_gpu_utilization_ratio",
                   "tuckerseg_budgeted_requests_total", "tuckerseg_queue_wait_seconds_bucket", "tuckerseg_interleaved_requests_total"):
        assert metric in queries, f"dashboard does not query {metric}"
    print(f"ok: {len(files)} YAML files, Kubernetes kinds {sorted(kinds)}, {len(dashboard['panels'])} dashboard panels")


if __name__ == "__main__":
    main()
