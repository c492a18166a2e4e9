#!/usr/bin/env python3
"""Prints the Markdown accuracy tables of a model folder and its variants (from their evaluations)."""
import json
import os
import sys

model = sys.argv[1]
info = json.load(open(os.path.join(model, "model.json")))
names = {str(l["id"]): l["name"] for l in info["labels"]}


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def case_name(path):
    return "training CT (example_ct_sm)" if "example_ct_sm" in path else "held-out DICOM series"


rows = [("original", load(os.path.join(model, "evaluation.json")), None, None)]
for v in ("df0.5", "df0.3", "df0.1"):
    d = os.path.join(model, "variants", v)
    m = load(os.path.join(d, "manifest.json"))
    if m is None:
        continue
    rows.append((v, m.get("evaluation"), m.get("evaluation-compressed"), m.get("evaluation-distilled")))

print("| model | parameters | case | Dice: compressed | after distillation | after fine-tuning | agreement with original: compressed | distilled | fine-tuned |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
for name, final, compressed, distilled in rows:
    if final is None:
        continue
    params = ""
    if name != "original":
        params = str(load(os.path.join(model, "variants", name, "manifest.json"))["parameters"])
    for i, case in enumerate(final["cases"]):
        def get(e, key):
            return "%.3f" % e["cases"][i][key] if e and key in e["cases"][i] else "-"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, params, case_name(case["image"]), get(compressed, "mean_dice"), get(distilled, "mean_dice"),
            get(final, "mean_dice"), get(compressed, "agreement_dice"), get(distilled, "agreement_dice"),
            get(final, "agreement_dice")))

print()
print("Per-class Dice of the original against TotalSegmentator's labels:")
print()
orig = rows[0][1]
print("| class | " + " | ".join(case_name(c["image"]) for c in orig["cases"]) + " |")
print("|---|" + "---:|" * len(orig["cases"]))
for lid in [str(l["id"]) for l in info["labels"] if l["id"] != 0]:
    cells = []
    for c in orig["cases"]:
        cells.append("%.3f" % c["dice"][lid] if lid in c["dice"] else "absent")
    print("| %s (%s) | %s |" % (names[lid], lid, " | ".join(cells)))
