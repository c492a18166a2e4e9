#!/usr/bin/env python3
"""Checks that every library includes only the libraries below it (docs/architecture.md).

Each source folder may include, with quoted includes, only the folders listed for it; the serving
library includes no gRPC header at all (its request logic is testable and reusable without RPC),
and the Segment handler none of the serving core's internals. Exit 1 and one line per offending
include otherwise.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1])
BASE = ["vocabulary/"]
# Above the network only its executors reach the CPU engine (model_network links it privately).
ENGINE = ["model_store/format/", "model_store/network/"]
ALLOWED = {
    "vocabulary": BASE,
    "command_line": BASE + ["command_line/"],
    "image_io": BASE + ["image_io/"],
    "model_store/format": BASE + ["model_store/format/"],
    "model_store/cpu_engine": BASE + ["model_store/cpu_engine/"],
    "model_store/network": BASE + ENGINE + ["model_store/cpu_engine/"],
    "model_store/inference": BASE + ENGINE + ["model_store/inference/"],
    "model_store/import": BASE + ENGINE + ["model_store/import/"],
    "model_store/compression": BASE + ENGINE + ["model_store/compression/"],
    "model_store/training": BASE + ENGINE + ["model_store/inference/", "model_store/training/"],
    "model_store/tools": BASE + ["model_store/format/", "model_store/network/", "model_store/inference/", "model_store/import/",
                                 "model_store/compression/", "model_store/training/", "model_store/tools/", "image_io/", "command_line/"],
    "proto/wire": BASE + ["wire/", "tuckerseg/"],
    "server/serving": BASE + ENGINE + ["model_store/inference/", "server/serving/", "wire/", "tuckerseg/", "command_line/", "absl/"],
    "server": BASE + ENGINE + ["model_store/inference/", "server/", "wire/", "tuckerseg/", "grpc/", "google/rpc/", "command_line/", "absl/"],
    "client": BASE + ["client/", "image_io/", "wire/", "tuckerseg/", "grpc/", "command_line/"],
    "fuzz": BASE + ["model_store/format/", "model_store/import/", "wire/", "tuckerseg/"],
}

# Includes a folder must not have, whatever its layers allow: (folder or file, pattern, why).
FORBIDDEN = [
    ("server/serving", re.compile(r"grpc"), "a gRPC header in the gRPC-free serving library"),
    ("server/segment_rpc.cpp", re.compile(r"selector\.h|scheduler\.h|predictor\.h|model_pool\.h"),
     "the Segment handler moves bytes; selection, queueing and prediction are the serving core's"),
    ("model_store/network/network.h", re.compile(r"executor|cpu_engine|dnnl"), "the network is topology, weights and cost; executors run it"),
    ("model_store/network/network.cpp", re.compile(r"executor|cpu_engine|dnnl|ATen/Parallel"),
     "the network is topology, weights and cost; executors run it"),
]

include = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
any_include = re.compile(r'^\s*#\s*include\s+["<]([^">]+)[">]')
problems = []
for where, pattern, why in FORBIDDEN:
    target = ROOT / where
    for path in sorted(target.glob("*") if target.is_dir() else [target]):
        if path.suffix not in (".h", ".cpp"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = any_include.match(line)
            if m and pattern.search(m.group(1)):
                problems.append(f"{path.relative_to(ROOT)}:{number}: includes {m.group(1)}: {why}")
for folder, allowed in ALLOWED.items():
    for path in sorted((ROOT / folder).glob("*")):
        if path.suffix not in (".h", ".cpp"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = include.match(line)
            if m and not any(m.group(1).startswith(prefix) for prefix in allowed):
                problems.append(f"{path.relative_to(ROOT)}:{number}: includes {m.group(1)}, outside {folder}'s layers")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
