#!/usr/bin/env python3
"""Every YAML document under deploy/ parses, Kubernetes objects name their apiVersion and kind,
the compose file's services and the Grafana dashboard's queries are there."""
import glob
import json
import os
import sys

import yaml


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
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "ConfigMap"}
    assert expected <= kinds, f"missing Kubernetes kinds: {expected - kinds}"

    with open(os.path.join(deploy, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    assert {"tucker-seg-server", "prometheus", "grafana"} <= set(compose["services"]), compose["services"].keys()

    with open(os.path.join(deploy, "grafana", "dashboards", "tucker-seg.json")) as f:
        dashboard = json.load(f)
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("tuckerseg_requests_total", "tuckerseg_voxels_processed_total", "tuckerseg_request_duration_seconds_bucket",
                   "tuckerseg_queue_depth", "tuckerseg_selections_total", "tuckerseg_gpu_utilization_ratio"):
        assert metric in queries, f"dashboard does not query {metric}"
    print(f"ok: {len(files)} YAML files, Kubernetes kinds {sorted(kinds)}, {len(dashboard['panels'])} dashboard panels")


if __name__ == "__main__":
    main()
