#!/usr/bin/env bash
# int8 variants of the bundled default model and of each of its Tucker variants
# (models/tucker-abdomen-3mm/variants/<name>-int8): static calibration on an unlabeled CT the
# model was not trained on (no labels read), then the agreement Dice with the float32 original on
# the training CT and the held-out DICOM series (the serving evaluation). About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-tests/data/totalsegmentator}
models=build/tucker-seg-models
out=models/tucker-abdomen-3mm
threads=${THREADS:-$(nproc)}
calibration="$data/unlabeled_ct_1p5mm.nii.gz"
eval_images="$data/example_ct_sm.nii.gz,$data/example_ct_dicom"
eval_labels="$data/example_seg.nii.gz,$data/example_seg_dicom.nii.gz"

rm -rf "$out"/variants/*-int8
for source in "$out" "$out/variants/df0.5" "$out/variants/df0.3" "$out/variants/df0.1"; do
  "$models" quantize "$source" --images "$calibration" --threads "$threads"
done
for variant in original-int8 df0.5-int8 df0.3-int8 df0.1-int8; do
  "$models" evaluate "$out/variants/$variant" --images "$eval_images" --labels "$eval_labels" --reference "$out" --tag evaluation --threads "$threads"
done
