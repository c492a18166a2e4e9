# tucker-seg-server: multi-stage on Debian bookworm.
#   podman --runtime runc build --pull=never --network=host --format docker -t tucker-seg-server .
#   podman --runtime runc run -p 50051:50051 -p 9180:9180 tucker-seg-server
# The DICOM node is the image's second entrypoint (docs/client.md), with a volume on its spool:
#   podman run --entrypoint tucker-seg -v spool:/var/spool/tucker-seg -p 11112:11112 tucker-seg-server \
#     dicom-node --server HOST:50051 --destination PACS@HOST:104 --spool /var/spool/tucker-seg
# A volume on /opt/tucker-seg/models replaces the bundled model store. Configuration: the
# TUCKER_SEG_* environment variables (docs/server.md). CUDA image: docs/gpu.md.
ARG BASE_IMAGE=docker.io/library/debian:bookworm

FROM ${BASE_IMAGE} AS build
# Extra CMake arguments, e.g. -DTorch_DIR=/src/third_party/libtorch/share/cmake/Torch for a CUDA
# LibTorch placed in the build context (docs/deploy.md).
ARG CMAKE_EXTRA_ARGS=""
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN TUCKER_SEG_DEPS=build bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# CI's CMake build (scripts/build.sh), without tests and benchmarks. ccache keys paths relative to
# /src: `podman build -v <host ccache dir>:/ccache` reuses a host build's objects (deploy/test-image.sh).
ENV CCACHE_DIR=/ccache
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTUCKER_SEG_BUILD_TESTS=OFF -DTUCKER_SEG_BUILD_BENCH=OFF ${CMAKE_EXTRA_ARGS} \
 && cmake --build build -j "$(nproc)" --target tucker-seg-server tucker-seg tucker-seg-models \
 && bash scripts/runtime-packages.sh build/tucker-seg-server build/tucker-seg build/tucker-seg-models > /runtime-packages.txt \
 && mkdir -p /opt/tucker-seg-lib \
 && if [ -d third_party/libtorch/lib ]; then cp -a third_party/libtorch/lib/. /opt/tucker-seg-lib/; fi

FROM ${BASE_IMAGE}
COPY --from=build /runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --home-dir /opt/tucker-seg --shell /usr/sbin/nologin tucker \
 && install -d -o tucker -g tucker -m 0700 /var/spool/tucker-seg
COPY --from=build /src/build/tucker-seg-server /src/build/tucker-seg /src/build/tucker-seg-models /usr/local/bin/
# Empty for Debian's LibTorch; a CUDA LibTorch's libraries otherwise (docs/gpu.md).
COPY --from=build /opt/tucker-seg-lib /opt/tucker-seg/lib
COPY models /opt/tucker-seg/models
ENV LD_LIBRARY_PATH=/opt/tucker-seg/lib \
    TUCKER_SEG_MODEL_STORE=/opt/tucker-seg/models \
    TUCKER_SEG_LISTEN=0.0.0.0:50051 \
    TUCKER_SEG_METRICS_LISTEN=0.0.0.0:9180
USER tucker
EXPOSE 50051 9180
# /readyz on the metrics port: ready once every variant is calibrated. HTTP, so that it works
# whatever TLS, client certificates or tokens the gRPC port requires.
HEALTHCHECK --interval=15s --timeout=10s --start-period=120s --retries=3 \
  CMD ["tucker-seg", "health", "--readyz", "http://127.0.0.1:9180/readyz", "--wait", "5"]
ENTRYPOINT ["tucker-seg-server"]
