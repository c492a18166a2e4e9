#!/usr/bin/env bash
# The README's first command: install dependencies, build, and run the main job.
# The main job: serve the bundled model store with tucker-seg-server and segment real CTs through
# it with the tucker-seg client (NIfTI in -> NIfTI + statistics + preview; DICOM series in ->
# DICOM SEG). Then the model-store tools: predict in-process, import an nnU-Net v2 model (the
# bundled conformance model), report costs, run it against its reference logits, compress it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

models=build/tucker-seg-models
default_model=models/tucker-abdomen-3mm
mkdir -p out
ct=tests/data/totalsegmentator/example_ct_sm.nii.gz
example=tests/data/nnunet-v2-iso4
store=out/models
mkdir -p "$store"

port=${TUCKER_SEG_DEMO_PORT:-50051}
metrics_port=${TUCKER_SEG_DEMO_METRICS_PORT:-9180}
server=127.0.0.1:$port
echo "== start tucker-seg-server on $server (metrics on :$metrics_port), log in out/server.log"
build/tucker-seg-server --model-store models --listen "$server" --metrics-listen "127.0.0.1:$metrics_port" > out/server.log 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
build/tucker-seg health --server "$server" --wait 300
build/tucker-seg models --server "$server"
echo "== segment a NIfTI CT through the server"
build/tucker-seg segment -i "$ct" -o out/example_ct_sm-labels-server.nii.gz --server "$server" \
  --statistics out/example_ct_sm-statistics.json --preview out/example_ct_sm-preview.png
echo "== the same CT with --fast (the fastest selectable variant): one file per class and statistics, as TotalSegmentator writes them"
build/tucker-seg segment -i "$ct" -o out/example_ct_sm-segmentations --fast --statistics --server "$server" --quiet
ls out/example_ct_sm-segmentations | head -n 5
echo "== segment a DICOM series (JPEG 2000) through the server, write a DICOM SEG"
build/tucker-seg segment -i tests/data/totalsegmentator/example_ct_dicom_uids -o out/example_ct_dicom-labels.nii.gz \
  --dicom-seg out/example_ct_dicom-seg.dcm --server "$server"
echo "== requests as Prometheus sees them"
python3 -c "import urllib.request; print(''.join(l for l in urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics').read().decode().splitlines(True) if l.startswith(('tuckerseg_requests_total', 'tuckerseg_voxels_processed_total'))))"
kill "$server_pid"

echo "== segment a real CT in-process with the bundled default model, and with its DF 0.3 Tucker variant"
"$models" predict "$default_model" -i "$ct" -o out/example_ct_sm-labels.nii.gz --threads "$(nproc)"
"$models" predict "$default_model/variants/df0.3" -i "$ct" -o out/example_ct_sm-labels-df0.3.nii.gz --threads "$(nproc)"
echo "== the default model and its variants: cost per patch"
for m in "$default_model" "$default_model"/variants/*; do
  printf '%-40s ' "$m"; "$models" inspect "$m" | tail -n 1
done

echo "== import an nnU-Net v2 model (the bundled conformance model)"
"$models" import-nnunet --results "$example/Dataset999_Golden/nnUNetTrainer__nnUNetPlans__3d_fullres" --out "$store/golden-iso4"
echo "== its cost per patch"
"$models" inspect "$store/golden-iso4" | tail -n 1
echo "== the TotalSegmentator-shaped 3 mm network, per patch"
"$models" inspect model_store/architectures/totalseg_3mm_shaped.json | tail -n 1
echo "== run it on the reference input"
"$models" forward "$store/golden-iso4" --input "$example/input.f32" --output out/golden-iso4-logits.f32 \
  --reference "$example/logits.f32" --threads "$(nproc)"
echo "== compress it into Tucker variants and run them"
"$models" compress "$store/golden-iso4" --df 1.0,0.5,0.3 --factorize-all
for variant in df1-all df0.5-all df0.3-all; do
  "$models" forward "$store/golden-iso4/variants/$variant" --input "$example/input.f32" \
    --output "out/golden-iso4-$variant-logits.f32" --reference "$example/logits.f32" --threads "$(nproc)"
done
