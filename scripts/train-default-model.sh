#!/usr/bin/env bash
# Retrains the bundled default model models/tucker-abdomen-3mm and its variants from the real
# TotalSegmentator example CTs in tests/data/totalsegmentator (measured duration: docs/accuracy.md).
#   1. train the original on example_ct_sm with TotalSegmentator's labels (15 classes)
#   2. compress it at DF 0.5, 0.3, 0.1
#   3. distill every variant from the original on unlabeled CTs (no labels read)
#   4. fine-tune every variant with the labels (the paper's AdamW, constant lr)
#   5. evaluate original and variants on the training CT and the held-out DICOM series
#   6. int8 variants of the original and of each variant (scripts/quantize-default-model.sh)
set -euo pipefail
start=$(date +%s)
cd "$(dirname "$0")/.."
data=${DATA:-tests/data/totalsegmentator}
models=build/tucker-seg-models
out=models/tucker-abdomen-3mm
threads=${THREADS:-$(nproc)}
steps=${STEPS:-1200}
classes=1,2,3,5,6,20,30,31,32,52,63,79,86,87,117

if [[ -z "${SKIP_TRAIN:-}" ]]; then
rm -rf "$out"
"$models" train --architecture model_store/architectures/default_abdomen_3mm.json \
  --images "$data/example_ct_sm.nii.gz" --labels "$data/example_seg.nii.gz" \
  --classes models/totalsegmentator_classes.json --class-ids "$classes" --spacing 3,3,3 \
  --out "$out" --steps "$steps" --batch 2 --lr 1e-3 --optimizer adamw --schedule poly --seed 1 --threads "$threads"
fi
rm -rf "$out"/training-checkpoint.safetensors* "$out"/variants
# The paper's rank_min 8 leaves this model's 8-channel layers whole (rank_min 4 halved them too:
# 1.5% fewer parameters, but agreement 0.08 instead of 0.20 before distillation).
"$models" compress "$out" --df 0.5,0.3,0.1

train_images="$data/example_ct_sm.nii.gz"
train_labels="$data/example_seg.nii.gz"
# Held out: a different patient (the DICOM series, JPEG 2000) with TotalSegmentator's labels.
eval_images="$data/example_ct_sm.nii.gz,$data/example_ct_dicom"
eval_labels="$data/example_seg.nii.gz,$data/example_seg_dicom.nii.gz"
# Images for distillation, read without labels: the training CT, the full CT it was cut from and
# an unlabeled chest CT (the held-out series is not among them).
unlabeled="$data/example_ct_sm.nii.gz,$data/example_ct.nii.gz,$data/unlabeled_ct_1p5mm.nii.gz"
# DF 0.5 carries the issue's bar (agreement >= 0.95 after distillation) and gets the most steps;
# the smaller variants a third of them, which keeps the whole retrain near an hour on 2 cores.
declare -A distill_steps=([df0.5]=${DISTILL_STEPS:-1200} [df0.3]=${DISTILL_STEPS_SMALL:-400} [df0.1]=${DISTILL_STEPS_SMALL:-400})

"$models" evaluate "$out" --images "$eval_images" --labels "$eval_labels" --tag evaluation --threads "$threads"
for variant in df0.5 df0.3 df0.1; do
  v="$out/variants/$variant"
  "$models" evaluate "$v" --images "$eval_images" --labels "$eval_labels" --reference "$out" --tag evaluation-compressed --threads "$threads"
  "$models" distill "$v" --teacher "$out" --images "$unlabeled" --steps "${distill_steps[$variant]}" --lr 1e-3 --schedule poly --seed 2 --threads "$threads"
  "$models" evaluate "$v" --images "$eval_images" --labels "$eval_labels" --reference "$out" --tag evaluation-distilled --threads "$threads"
  "$models" finetune "$v" --images "$train_images" --labels "$train_labels" --steps "${FINETUNE_STEPS:-150}" --lr 1e-4 --seed 3 --threads "$threads"
  "$models" evaluate "$v" --images "$eval_images" --labels "$eval_labels" --reference "$out" --tag evaluation --threads "$threads"
done
bash scripts/quantize-default-model.sh
python3 scripts/accuracy-table.py "$out"  # paste into docs/accuracy.md
echo "retrained in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
