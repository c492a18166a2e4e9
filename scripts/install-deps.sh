#!/usr/bin/env bash
# Installs every Debian package that tucker-seg's build, tests and demo need.
# Idempotent: apt-get skips what is already installed.
# TUCKER_SEG_DEPS=build installs only what compiling needs (the container's build stage).
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp libdnnl-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus-cpp-dev
  libdcmtk-dev libcurl4-openssl-dev libssl-dev
  libinsighttoolkit5-dev
  libcli11-dev clang libdeflate-dev
  python3
  # google/rpc/status.proto and error_details.proto (the only Debian package that ships them)
  golang-github-gogo-googleapis-dev
)
# Tests, demo and deployment checks: a real Prometheus, the Python client (grpcio, nibabel), a real
# PACS (Orthanc with DICOMweb), YAML parsing, containers, an independent DICOM reader (pydicom)
# and validator (dciodvfy) for the DICOM SEG; DCMTK's storescu/storescp/echoscu for the DICOM node.
test_packages=(
  prometheus python3-grpcio python3-protobuf python3-yaml python3-nibabel
  orthanc orthanc-dicomweb
  podman runc catatonit debootstrap
  time openssl
  python3-pydicom dicom3tools dcmtk
)

packages=("${build_packages[@]}")
if [[ "${TUCKER_SEG_DEPS:-all}" != build ]]; then packages+=("${test_packages[@]}"); fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
