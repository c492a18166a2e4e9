#!/usr/bin/env python3
"""Segments a NIfTI CT with a tucker-seg server from Python: grpcio and nibabel (Debian's
python3-grpcio, python3-nibabel), stubs generated from proto/tuckerseg/v1/segmentation.proto.

    python3 clients/python/tucker_seg_client.py --stubs build/proto/python --server localhost:50051 \
        -i ct.nii.gz -o labels.nii.gz [--variant auto] [--model NAME] [--roi-subset liver,spleen] \
        [--tls-ca ca.pem] [--timeout S]        # bearer token: $TUCKER_SEG_TOKEN

Writes the label map on the CT's own grid (its affine and header, uint8) and `<stem>.json` with
the label table, model and variant. The wire contract it follows (docs/server.md): a
SegmentHeader with the volume's geometry in ITK's LPS convention, then the voxels in chunks (x
fastest, little-endian), then half-close; the server answers Progress messages, one
ResultHeader, then the labels in chunks.
"""
import argparse
import json
import os
import sys

CHUNK_BYTES = 4 << 20
RAS_TO_LPS = (-1.0, -1.0, 1.0)  # NIfTI's world is RAS, ITK's (and the wire's) LPS


def geometry(pb, image):
    """The VolumeGeometry of a nibabel image, as ITK would read it: size, spacing, LPS origin and
    direction (row-major; columns are the voxel axes' directions)."""
    import numpy as np
    affine = image.affine
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = affine[:3, :3] / spacing
    flip = np.array(RAS_TO_LPS)
    g = pb.VolumeGeometry()
    g.size.extend(int(n) for n in image.shape[:3])
    g.spacing.extend(float(s) for s in spacing)
    g.origin.extend(float(o) for o in flip * affine[:3, 3])
    g.direction.extend(float(d) for d in (flip[:, None] * direction).reshape(-1))
    return g


def voxels(pb, image):
    """The CT's voxels as wire bytes: int16 when every value is a whole number in range, else float32."""
    import numpy as np
    data = np.asanyarray(image.dataobj)
    if data.ndim != 3:
        raise SystemExit(f"error: -i: a 3D CT is needed, this image has {data.ndim} dimensions")
    if np.issubdtype(data.dtype, np.integer) and data.min() >= -32768 and data.max() <= 32767:
        return pb.VOXEL_TYPE_INT16, data.astype("<i2").tobytes(order="F")
    return pb.VOXEL_TYPE_FLOAT32, data.astype("<f4").tobytes(order="F")


def requests(pb, header, payload):
    yield pb.SegmentRequest(header=header)
    for offset in range(0, len(payload), CHUNK_BYTES):
        yield pb.SegmentRequest(voxels=payload[offset:offset + CHUNK_BYTES])


def field_violations(details):
    """The fields that the google.rpc.BadRequest in a failed call's status details names."""
    if not details:
        return []
    from google.rpc import error_details_pb2, status_pb2
    fields = []
    for detail in status_pb2.Status.FromString(details).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields.extend(v.field for v in bad_request.field_violations)
    return fields


def segment(args):
    sys.path.insert(0, args.stubs)
    import grpc
    import nibabel
    import numpy as np
    from tuckerseg.v1 import segmentation_pb2 as pb, segmentation_pb2_grpc as pb_grpc

    image = nibabel.load(args.input)
    volume = geometry(pb, image)
    volume.voxel_type, payload = voxels(pb, image)
    header = pb.SegmentHeader(model=args.model, variant=args.variant, volume=volume, step=args.step)
    header.roi_subset.extend(n for n in args.roi_subset.split(",") if n)

    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(args.server)
    metadata = []
    token = os.environ.get("TUCKER_SEG_TOKEN", "")
    if token:
        metadata.append(("authorization", "Bearer " + token))
    stub = pb_grpc.SegmentationStub(channel)
    result, chunks = None, []
    call = stub.Segment(requests(pb, header, payload), metadata=metadata, timeout=args.timeout or None)
    try:
        for response in call:
            kind = response.WhichOneof("kind")
            if kind == "header":
                result = response.header
            elif kind == "labels":
                chunks.append(response.labels)
    except grpc.RpcError as e:
        trailers = dict(call.trailing_metadata() or ())
        request = trailers.get("tuckerseg-request-id", "")
        fields = field_violations(trailers.get("grpc-status-details-bin"))
        raise SystemExit(f"error: {e.code().name}: {e.details()}" + (f" (field {', '.join(fields)})" if fields else "") +
                         (f" (request id {request})" if request else ""))
    if result is None:
        raise SystemExit("error: the server sent no ResultHeader")
    labels = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    if labels.size != int(np.prod(image.shape[:3])):
        raise SystemExit(f"error: {labels.size} labels for {int(np.prod(image.shape[:3]))} voxels")
    labels = labels.reshape(image.shape[:3], order="F")

    out_header = image.header.copy()
    out_header.set_data_dtype(np.uint8)
    out_header.set_slope_inter(1, 0)
    out_header["descrip"] = f"tucker-seg model={result.model} variant={result.variant}"[:79].encode()
    out = nibabel.Nifti1Image(labels, image.affine, out_header)
    nibabel.save(out, args.output)
    stem = args.output[:-7] if args.output.endswith(".nii.gz") else os.path.splitext(args.output)[0]
    with open(stem + ".json", "w") as f:
        json.dump({"model": result.model, "variant": result.variant, "model_version": result.model_version,
                   "request_id": result.request_id,
                   "labels": {str(label.id): label.name for label in result.labels if label.id}}, f, indent=2)
    present = sorted(set(np.unique(labels).tolist()) - {0})
    print(f"{args.input}: model {result.model}, variant {result.variant} ({result.selection_reason}), "
          f"{result.timings.total_seconds:.1f} s on {result.device}, {len(present)} classes -> {args.output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stubs", default=os.environ.get("TUCKER_SEG_PYTHON_STUBS", "build/proto/python"),
                        help="folder of the generated stubs (the build's proto/python)")
    parser.add_argument("--server", default=os.environ.get("TUCKER_SEG_SERVER", "localhost:50051"))
    parser.add_argument("-i", "--input", required=True, help="a NIfTI CT (.nii or .nii.gz)")
    parser.add_argument("-o", "--output", required=True, help="the label map to write (.nii.gz)")
    parser.add_argument("--model", default="")
    parser.add_argument("--variant", default="auto")
    parser.add_argument("--roi-subset", default="", help="class names, comma-separated")
    parser.add_argument("--step", type=float, default=0, help="sliding-window step, 0.1-1 (0: the server's 0.5)")
    parser.add_argument("--tls-ca", default=os.environ.get("TUCKER_SEG_TLS_CA", ""))
    parser.add_argument("--timeout", type=float, default=0, help="seconds the whole request may take (0: none)")
    segment(parser.parse_args())


if __name__ == "__main__":
    main()
