#!/usr/bin/env bash
# The peer a user would pick instead: ONNX Runtime (CPU) against tucker-seg's engine on the same
# networks, in one run. Not part of CI (it needs python3-torch and npm's onnxruntime-node).
#
#   apt-get install python3-torch        # Debian's PyTorch 1.13, for the ONNX export only
#   bash bench/peer/run.sh [build-dir]   # ROUNDS=2 REPEATS=3 THREADS=2 OUT=/tmp/tucker-seg-peer
#
# 1. tucker_variants_bench writes the TotalSegmentator-shaped 3 mm network and its DF 0.5/0.3/0.1
#    variants (random weights) and prints the engine's own table.
# 2. export_onnx.py exports each to ONNX (the same convolutions and ranks).
# 3. For ROUNDS rounds, per variant: ONNX Runtime (warm-up + REPEATS runs), then
#    `tucker-seg-models forward --repeats REPEATS` on the same input; the engine's logits are
#    checked against ONNX Runtime's. Then each int8 variant through `forward`, its logits against
#    its float32 source's. The tables give medians over all warm runs, and the minima.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
out=${OUT:-/tmp/tucker-seg-peer}
rounds=${ROUNDS:-2} repeats=${REPEATS:-3} threads=${THREADS:-2}
python=/usr/bin/python3  # Debian's, where python3-torch lives

"$python" -c 'import torch' 2>/dev/null || { echo "needs Debian's python3-torch (apt-get install python3-torch)" >&2; exit 1; }
if [[ ! -d "$here/node_modules/onnxruntime-node" ]]; then
  # --ignore-scripts: the package's install script fetches CUDA libraries; the CPU library ships inside.
  (cd "$here" && npm install --no-save --ignore-scripts onnxruntime-node@1.30.0 >/dev/null)
fi
mkdir -p "$out/models" "$out/onnx" "$out/logits"
variants=(original df0.5 df0.3 df0.1)
# int8 variants (tucker_variants_bench --save writes them calibrated): the engine only. ONNX
# Runtime's int8 needs its Python quantization tool (onnxruntime.quantization), which Debian does
# not package; its float32 rows are the baseline beside them.
int8_variants=(original-int8 df0.5-int8 df0.3-int8 df0.1-int8)

echo "== tucker_variants_bench (the engine alone) =="
"$build/bench/tucker_variants_bench" --threads "$threads" --repeats "$repeats" --libtorch 0 --bf16 0 --save "$out/models" | tee "$out/engine_bench.txt"

echo "== export to ONNX =="
for v in "${variants[@]}"; do
  [[ -f "$out/onnx/$v.onnx" ]] || "$python" "$here/export_onnx.py" "$out/models/$v" "$out/onnx/$v.onnx" --input "$out/input.f32"
done
shape=$("$python" -c "import json,sys; a=json.load(open(sys.argv[1])); print(','.join(map(str,[a['architecture']['input_channels']]+a['patch_size'])))" "$out/models/original/model.json")

: >"$out/runs.jsonl"
for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    "$build/tucker-seg-models" forward "$out/models/$v" -i "$out/input.f32" -o "$out/logits/$v.f32" --patch "${shape#*,}" \
      --threads "$threads" --repeats "$repeats" >"$out/forward.txt"
    "$python" - "$v" "$round" "$out/forward.txt" >>"$out/runs.jsonl" <<'PY'
import json, re, sys
text = open(sys.argv[3]).read()
first = float(re.search(r"in ([0-9.]+) s", text).group(1))
median = float(re.search(r"median ([0-9.]+) s", text).group(1))
low = float(re.search(r"min ([0-9.]+) s", text).group(1))
print(json.dumps({"runtime": "engine", "variant": sys.argv[1], "round": int(sys.argv[2]), "first": first, "median": median, "min": low}))
PY
    node "$here/time_ort.js" "$out/onnx/$v.onnx" "$out/input.f32" "$shape" "$repeats" "$threads" "$out/logits/$v.f32" |
      "$python" -c "import json,sys; r=json.load(sys.stdin); t=sorted(r['times']); print(json.dumps({'runtime':'ort '+r['ort'],'variant':'$v','round':$round,'first':r['first'],'median':t[len(t)//2],'min':t[0],'relative_difference':r.get('relative_difference')}))" >>"$out/runs.jsonl"
  done
  for v in "${int8_variants[@]}"; do
    "$build/tucker-seg-models" forward "$out/models/$v" -i "$out/input.f32" -o "$out/logits/$v.f32" --patch "${shape#*,}" \
      --threads "$threads" --repeats "$repeats" >"$out/forward.txt"
    "$python" - "$v" "$round" "$out/forward.txt" "$out/logits/$v.f32" "$out/logits/${v%-int8}.f32" >>"$out/runs.jsonl" <<'PY'
import json, re, sys
import numpy as np
text = open(sys.argv[3]).read()
q, f = np.fromfile(sys.argv[4], np.float32), np.fromfile(sys.argv[5], np.float32)
print(json.dumps({"runtime": "engine", "variant": sys.argv[1], "round": int(sys.argv[2]),
                  "first": float(re.search(r"in ([0-9.]+) s", text).group(1)), "median": float(re.search(r"median ([0-9.]+) s", text).group(1)),
                  "min": float(re.search(r"min ([0-9.]+) s", text).group(1)),
                  "relative_difference": float(np.abs(q - f).max() / np.abs(f).max())}))
PY
  done
done

"$python" - "$out/runs.jsonl" "${variants[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
variants = sys.argv[2:]
def pick(runtime, v):
    return [r for r in runs if r["variant"] == v and r["runtime"].startswith(runtime)]
print("\n== engine vs ONNX Runtime, same networks, same input, interleaved; seconds per patch ==")
print(f"{'variant':9} {'engine med':>10} {'engine min':>10} {'ORT med':>8} {'ORT min':>8} {'engine/ORT':>10} {'vs original (engine)':>21} {'vs original (ORT)':>18} {'max rel diff':>12}")
base_e = statistics.median(r["median"] for r in pick("engine", "original"))
base_o = statistics.median(r["median"] for r in pick("ort", "original"))
for v in variants:
    e, o = pick("engine", v), pick("ort", v)
    em, om = statistics.median(r["median"] for r in e), statistics.median(r["median"] for r in o)
    diff = max(r["relative_difference"] or 0 for r in o)
    print(f"{v:9} {em:10.3f} {min(r['min'] for r in e):10.3f} {om:8.3f} {min(r['min'] for r in o):8.3f} {em/om:9.2f}x {base_e/em:20.2f}x {base_o/om:17.2f}x {diff:12.1e}")
print(f"(ONNX Runtime {o[0]['runtime'].split()[1]}, CPU provider; medians of the rounds' medians)")
print(f"\n== engine int8 beside float32 (engine) and ONNX Runtime float32, the same rounds ==")
print(f"{'variant':14} {'int8 med':>9} {'int8 min':>9} {'vs engine fp32':>15} {'vs ORT fp32':>12} {'vs original fp32 (engine)':>26} {'max rel diff vs fp32':>21}")
for v in variants:
    q = pick("engine", v + "-int8")
    if not q:
        continue
    qm = statistics.median(r["median"] for r in q)
    em = statistics.median(r["median"] for r in pick("engine", v))
    om = statistics.median(r["median"] for r in pick("ort", v))
    print(f"{v + '-int8':14} {qm:9.3f} {min(r['min'] for r in q):9.3f} {em/qm:14.2f}x {om/qm:11.2f}x {base_e/qm:25.2f}x {max(r['relative_difference'] for r in q):21.4f}")
PY
