#!/usr/bin/env bash
# The README's first command: install dependencies, build, and run the main job.
# Today's main job: import an nnU-Net v2 model (the bundled conformance model), report its
# costs, and run it on its reference input, checking the logits against the reference.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

models=build/tucker-seg-models
default_model=models/tucker-abdomen-3mm
ct=tests/data/totalsegmentator/example_ct_sm.nii.gz
example=tests/data/nnunet-v2-iso4
store=out/models
mkdir -p "$store"

echo "== segment a real CT with the bundled default model, and with its DF 0.3 Tucker variant"
"$models" predict "$default_model" -i "$ct" -o out/example_ct_sm-labels.nii.gz --threads "$(nproc)"
"$models" predict "$default_model/variants/df0.3-rmin4" -i "$ct" -o out/example_ct_sm-labels-df0.3-rmin4.nii.gz --threads "$(nproc)"
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
