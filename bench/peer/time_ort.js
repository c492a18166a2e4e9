// Times one ONNX model with ONNX Runtime's CPU provider (npm onnxruntime-node): a warm-up run,
// then `repeats` timed runs; prints one JSON line. With a reference logits file (raw float32,
// e.g. from `tucker-seg-models forward -o`), also prints max |ORT - reference| / max |reference|.
//
//   node time_ort.js MODEL.onnx INPUT.f32 C,Z,Y,X REPEATS THREADS [REFERENCE.f32]
const fs = require('fs');
const ort = require('onnxruntime-node');

function floats(path) {
  const b = fs.readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

async function main() {
  const [model, input, shape, repeats, threads, reference] = process.argv.slice(2);
  const dims = [1, ...shape.split(',').map(Number)];
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: Number(threads), interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential'});
  const feeds = {x: new ort.Tensor('float32', floats(input), dims)};
  const t0 = process.hrtime.bigint();
  let out = await session.run(feeds);
  const first = Number(process.hrtime.bigint() - t0) / 1e9;
  const times = [];
  for (let i = 0; i < Number(repeats); ++i) {
    const start = process.hrtime.bigint();
    out = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  const result = {model, ort: ort.env.versions.common, threads: Number(threads), first, times};
  if (reference) {
    const got = out.logits.data, ref = floats(reference);
    let diff = 0, scale = 0;
    for (let i = 0; i < ref.length; ++i) {
      diff = Math.max(diff, Math.abs(got[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
    result.relative_difference = diff / scale;
  }
  console.log(JSON.stringify(result));
}
main().catch((e) => { console.error(e); process.exit(1); });
