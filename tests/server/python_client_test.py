#!/usr/bin/env python3
"""An independent client: Python grpcio (Debian) with stubs generated from proto/ at build time.

Starts the real tucker-seg-server binary on loopback, waits for grpc.health.v1 to report SERVING
(a Watch stream, no polling), lists models and describes one without server reflection, and
segments a small volume; then clients/python/tucker_seg_client.py and the C++ client segment the
example CT and must write the same labels. Reflection is off unless asked for: the default server answers it
UNIMPLEMENTED, a second one started with --reflection lists the service. Exits non-zero with a
message on any mismatch.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile


# grpc.reflection.v1alpha.ServerReflectionRequest{list_services: ""}, serialised by hand (field 7).
LIST_SERVICES = b"\x3a\x00"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def start_server(args, *flags):
    """The server process and its gRPC port."""
    log = tempfile.NamedTemporaryFile(prefix="tucker-seg-python-client-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [args.server, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--threads", "2",
         "--calibration-repeats", "1", *flags],
        env=dict(os.environ, TUCKER_SEG_MODEL_STORE=args.model_store),
        stdout=subprocess.PIPE, stderr=log, text=True)
    first_line = server.stdout.readline()
    match = re.search(r"listening on port (\d+)", first_line)
    if not match:
        server.terminate()
        sys.exit(f"server did not report its port: {first_line!r} (log: {log.name})")
    return server, match.group(1)


def reflection_services(grpc, port):
    """The raw ListServices answer, or the RpcError."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.stream_stream(REFLECTION, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        return b"".join(call(iter([LIST_SERVICES]), timeout=30))
    except grpc.RpcError as e:
        return e


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--client", required=True, help="clients/python/tucker_seg_client.py")
    parser.add_argument("--cli", required=True, help="the tucker-seg binary")
    parser.add_argument("--ct", required=True, help="a NIfTI CT both clients segment")
    parser.add_argument("--model-store", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    from grpc_health_stubs import health_pb2, health_pb2_grpc
    from tuckerseg.v1 import segmentation_pb2 as pb, segmentation_pb2_grpc as pb_grpc

    server, port = start_server(args)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")

        health = health_pb2_grpc.HealthStub(channel)
        for update in health.Watch(health_pb2.HealthCheckRequest(service="tuckerseg.v1.Segmentation"), timeout=300):
            if update.status == health_pb2.HealthCheckResponse.SERVING:
                break
        check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING, check

        stub = pb_grpc.SegmentationStub(channel)
        models = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
        assert [m.name for m in models] == ["tucker-abdomen-3mm"], models
        assert "original" in models[0].variants and len(models[0].variants) == 8, models[0].variants
        assert models[0].labels[1].name == "spleen", models[0].labels[1]
        # The coded concept and colour a DICOM SEG needs travel with each label.
        by_name = {label.name: label for label in models[0].labels}
        liver = by_name["liver"]
        assert liver.name == "liver" and (liver.type.scheme, liver.type.value, liver.type.meaning) == ("SCT", "10200004", "Liver"), liver
        assert liver.category.value and len(liver.display_rgb) == 3, liver
        kidney_left = by_name["kidney_left"]
        assert kidney_left.type_modifier.value == "7771000", kidney_left  # laterality: left
        assert not models[0].labels[0].HasField("type"), models[0].labels[0]

        described = stub.DescribeModel(pb.DescribeModelRequest(model="tucker-abdomen-3mm"), timeout=10)
        assert described.device.kind == "cpu", described.device
        assert all(v.calibrated_seconds_per_tile > 0 for v in described.variants), described.variants
        assert {v.name: v.precision for v in described.variants}["original-int8"] == "int8", described.variants

        try:
            stub.DescribeModel(pb.DescribeModelRequest(model="nope"), timeout=10)
            sys.exit("DescribeModel(nope) succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e

        size = (20, 20, 12)
        header = pb.SegmentHeader(request_id="python", variant="auto", volume=pb.VolumeGeometry(
            size=size, spacing=[3, 3, 3], origin=[0, 0, 0], direction=[1, 0, 0, 0, 1, 0, 0, 0, 1],
            voxel_type=pb.VOXEL_TYPE_INT16))
        voxels = (40).to_bytes(2, "little", signed=True) * (size[0] * size[1] * size[2])
        requests = [pb.SegmentRequest(header=header), pb.SegmentRequest(voxels=voxels)]
        result, labels = None, b""
        for response in stub.Segment(iter(requests), timeout=120):
            if response.HasField("header"):
                result = response.header
            elif response.HasField("labels"):
                labels += response.labels
        assert result is not None and result.request_id == "python", result
        assert len(labels) == size[0] * size[1] * size[2] == result.label_bytes, (len(labels), result.label_bytes)
        compare_with_the_cpp_client(args, port)
        refused = reflection_services(grpc, port)
        assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.UNIMPLEMENTED, refused
        print(f"ok: health SERVING, {len(models)} model(s), variant {result.variant} ({result.selection_reason}), "
              f"{len(labels)} labels, reflection off")
    finally:
        server.terminate()
        server.wait(timeout=60)

    server, port = start_server(args, "--reflection")
    try:
        listed = reflection_services(grpc, port)
        assert isinstance(listed, bytes) and b"tuckerseg.v1.Segmentation" in listed, listed
        print("ok: --reflection lists tuckerseg.v1.Segmentation")
    finally:
        server.terminate()
        server.wait(timeout=60)


def compare_with_the_cpp_client(args, port):
    """clients/python/tucker_seg_client.py and `tucker-seg segment` on the same CT and variant
    write the same labels on the same grid; a failed call names the status and the request id."""
    import json
    import nibabel
    import numpy as np
    out = tempfile.mkdtemp(prefix="tucker-seg-python-client-")
    server = f"127.0.0.1:{port}"
    python = [sys.executable, args.client, "--stubs", args.stubs, "--server", server, "-i", args.ct]
    done = subprocess.run(python + ["-o", f"{out}/python.nii.gz", "--variant", "original"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([args.cli, "segment", "--quiet", "--server", server, "-i", args.ct, "-o", f"{out}/cpp.nii.gz",
                           "--variant", "original"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    python_labels, cpp_labels = nibabel.load(f"{out}/python.nii.gz"), nibabel.load(f"{out}/cpp.nii.gz")
    assert np.allclose(python_labels.affine, cpp_labels.affine), (python_labels.affine, cpp_labels.affine)
    a, b = np.asanyarray(python_labels.dataobj), np.asanyarray(cpp_labels.dataobj)
    assert a.shape == b.shape and (a == b).all(), f"{(a != b).sum()} of {a.size} labels differ"
    assert len(np.unique(a)) > 5, np.unique(a)
    with open(f"{out}/python.json") as f:
        table = json.load(f)
    assert table["variant"] == "original" and table["labels"]["5"] == "liver", table
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", table["model_version"]), table
    failed = subprocess.run(python + ["-o", f"{out}/none.nii.gz", "--model", "no-such-model"], capture_output=True, text=True)
    assert failed.returncode != 0 and re.search(r"error: NOT_FOUND: .*\(request id [0-9a-f]+-\d+\)", failed.stderr), failed.stderr
    bad_step = subprocess.run(python + ["-o", f"{out}/none.nii.gz", "--step", "3"], capture_output=True, text=True)
    assert bad_step.returncode != 0 and re.search(r"error: INVALID_ARGUMENT: header\.step .*\(field header\.step\) \(request id ",
                                                   bad_step.stderr), bad_step.stderr
    print(f"ok: the Python client's labels equal the C++ client's ({a.size} voxels); a failed call: {failed.stderr.strip()}; "
          f"a bad field: {bad_step.stderr.strip()}")


if __name__ == "__main__":
    main()
