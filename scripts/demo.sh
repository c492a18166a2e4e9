#!/usr/bin/env bash
# The README's first command: install dependencies, build, and run the main job.
# Today's main job: import an nnU-Net v2 model (the bundled conformance model), report its
# costs, and run it on its reference input, checking the logits against the reference.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

models=build/tucker-seg-models
example=tests/data/nnunet-v2-iso4
store=out/models
mkdir -p "$store"

echo "== import the nnU-Net v2 model"
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
echo "== segment a whole CT (a real TotalSegmentator example) with the imported model and its DF 0.5 variant"
echo "   (the bundled nnU-Net model has random weights: this shows the pipeline, not anatomy)"
"$models" predict "$store/golden-iso4" -i tests/data/totalsegmentator/example_ct_sm.nii.gz \
  -o out/example_ct_sm-labels.nii.gz --threads "$(nproc)"
"$models" predict "$store/golden-iso4/variants/df0.5-all" -i tests/data/totalsegmentator/example_ct_sm.nii.gz \
  -o out/example_ct_sm-labels-df0.5.nii.gz --step 0.8 --threads "$(nproc)"
