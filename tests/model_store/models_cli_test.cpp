// The tucker-seg-models commands, run in-process.
#include "model_store/tools/models_cli.h"

#include "image_io/image_io.h"
#include "model_store/network/cpu_engine_executor.h"
#include "model_store/network/device.h"
#include "model_store/network/loaded_model.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;

struct CliRun {
  int code;
  std::string out, err;
};

CliRun Cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = RunModelsCli(args, out, err);
  return {code, out.str(), err.str()};
}

TEST(ModelsCli, InspectReportsTotalSegmentatorShapedCostsAsJson) {
  const auto arch = (testing::SourceDir() / "model_store/architectures/totalseg_3mm_shaped.json").string();
  const CliRun r = Cli({"inspect", arch, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"].get<int64_t>(), 16603736);
  // 367.8 GMACs per 112x112x128 patch (docs/performance.md, measured with PyTorch's profiler on the reference network).
  EXPECT_NEAR(j["macs"].get<double>() / 1e9, 367.8, 0.05);
  int64_t sum = 0;
  for (const auto& l : j["layers"]) sum += l["parameters"].get<int64_t>();
  EXPECT_EQ(sum, 16603736);
}

TEST(ModelsCli, ImportThenForwardReproducesReferenceLogits) {
  const auto store = testing::TempDir("cli-import");
  const auto out_model = (store / "iso4").string();
  CliRun r = Cli({"import-nnunet", "--results", testing::ResultsDir("iso4").string(), "--out", out_model});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("120 aliases recognised"));
  const auto c = testing::ConformanceCase("iso4");
  r = Cli({"forward", out_model, "--input", (c / "input.f32").string(), "--output", (store / "y.f32").string(),
           "--reference", (c / "logits.f32").string(), "--threads", "2", "--repeats", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("max |logits - reference|"));
  EXPECT_THAT(r.out, HasSubstr("CPU engine"));
  EXPECT_THAT(r.out, HasSubstr("warm runs: 3, median"));
  r = Cli({"inspect", out_model});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("total: 285106 parameters"));
}

TEST(ModelsCli, CompressWritesVariantsThatInspectAndForwardRead) {
  const auto store = testing::TempDir("cli-compress");
  const auto model = (store / "iso4").string();
  ASSERT_EQ(Cli({"import-nnunet", "--results", testing::ResultsDir("iso4").string(), "--out", model}).code, 0);
  CliRun r = Cli({"compress", model, "--df", "0.5,0.3", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("variants/df0.3"));
  std::ifstream in(store / "iso4/variants/df0.3/manifest.json");
  const auto manifest = nlohmann::json::parse(in);
  r = Cli({"inspect", model + "/variants/df0.3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto cost = nlohmann::json::parse(r.out);
  EXPECT_EQ(cost["parameters"], manifest["parameters"]);
  EXPECT_EQ(cost["macs"], manifest["macs"]);
  EXPECT_LT(cost["parameters"].get<int64_t>(), 285106);
  r = Cli({"compress", model, "--df", "abc"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--df"));
}

TEST(ModelsCli, PredictWritesALabelMapOnTheInputGrid) {
  const auto store = testing::TempDir("cli-predict");
  const auto model = (store / "iso4").string();
  ASSERT_EQ(Cli({"import-nnunet", "--results", testing::ResultsDir("iso4").string(), "--out", model}).code, 0);
  const auto ct = testing::TotalSegmentatorExample("example_ct_sm.nii.gz");
  const auto labels = store / "labels.nii.gz";
  CliRun r = Cli({"predict", model, "-i", ct.string(), "-o", labels.string(), "--step", "0.8", "--batch", "2", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("122x101x30 voxels"));
  EXPECT_THAT(r.out, HasSubstr("labels present:"));
  auto in = ReadCt(ct.string());
  auto out = ReadCt(labels.string());
  ASSERT_TRUE(in.ok() && out.ok());
  EXPECT_EQ(out.value().geometry.size, in.value().geometry.size);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out.value().geometry.origin[i], in.value().geometry.origin[i], 1e-3);
  for (float v : out.value().voxels) ASSERT_TRUE(v >= 0 && v <= 5);

  // Several CTs: a folder of NIfTI files -> one per-class folder per CT; multilabel on request.
  const auto cts = store / "cts";
  std::filesystem::create_directories(cts);
  std::filesystem::copy_file(ct, cts / "a.nii.gz");
  std::filesystem::copy_file(ct, cts / "b.nii.gz");
  r = Cli({"predict", model, "-i", cts.string(), "-o", (store / "many").string(), "--step", "0.8", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* name : {"a", "b"}) EXPECT_TRUE(std::filesystem::exists(store / "many" / name / "class_1.nii.gz")) << name;
  r = Cli({"predict", model, "-i", (cts / "a.nii.gz").string(), (cts / "b.nii.gz").string(), "-o", (store / "many-ml").string(),
           "--output-type", "multilabel", "--step", "0.8", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(store / "many-ml/b.nii.gz"));
  EXPECT_TRUE(std::filesystem::exists(store / "many-ml/b.json"));
  r = Cli({"predict", model, "-i", cts.string(), "-o", labels.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("-o is a folder"));

  r = Cli({"predict", model, "-i", "/nonexistent.nii.gz", "-o", labels.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("'/nonexistent.nii.gz' does not exist"));
  r = Cli({"predict", model, "-i", ct.string(), "-o", labels.string(), "--step", "1.5"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--step"));
  r = Cli({"predict", model, "-i", ct.string(), "-o", labels.string(), "--device", "gpu"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--device"));
  r = Cli({"predict", model, "-i", ct.string(), "-o", labels.string(), "--precision", "fp16"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("precision fp16 runs on CUDA devices only"));
  if (CudaDeviceCount() == 0) {
    for (const std::string command : {"predict", "forward"}) {
      r = command == "predict" ? Cli({"predict", model, "-i", ct.string(), "-o", labels.string(), "--device", "cuda"})
                               : Cli({"forward", model, "-i", "in.f32", "-o", "out.f32", "--device", "cuda:0"});
      EXPECT_EQ(r.code, 1) << command;
      EXPECT_THAT(r.err, HasSubstr("is not available")) << command;
    }
  }
}

// A composite model through the command line: imported from two results folders, compressed part
// by part, predicted with its parts merged (per-class files of the composite's classes).
TEST(ModelsCli, CompositeImportCompressPredict) {
  const auto store = testing::TempDir("cli-composite");
  const auto model = (store / "combo").string();
  CliRun r = Cli({"import-nnunet", "--results", testing::ResultsDir("iso4").string(), "--results", testing::ResultsDir("aniso5").string(),
                  "--part-names", "first,second", "--out", model});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("composite combo: 2 parts, 5 classes merged"));  // class_1..class_5, shared names merged
  r = Cli({"compress", model, "--df", "0.5", "--max-iterations", "0"});  // HOSVD only: the test is about the parts, not HOOI
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(store / "combo/parts/first/variants/df0.5/model.json"));
  EXPECT_TRUE(std::filesystem::exists(store / "combo/parts/second/variants/df0.5/model.json"));

  const auto ct = testing::TotalSegmentatorExample("example_ct_sm.nii.gz");
  const auto out = store / "segmentations";
  r = Cli({"predict", model, "-i", ct.string(), "-o", out.string(), "--variant", "df0.5", "--step", "0.8", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("predict combo (2 parts)"));
  for (const char* name : {"class_1", "class_2", "class_3", "class_4", "class_5"})
    EXPECT_TRUE(std::filesystem::exists(out / (std::string(name) + ".nii.gz"))) << name;
  r = Cli({"import-nnunet", "--results", testing::ResultsDir("iso4").string(), "--results", testing::ResultsDir("aniso5").string(),
           "--part-names", "only-one", "--out", model});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--part-names"));
}

// train -> compress -> distill -> finetune -> evaluate on a small synthetic CT written as NIfTI.
TEST(ModelsCli, TrainCompressDistillFinetuneEvaluate) {
  const auto dir = testing::TempDir("cli-train");
  CtVolume ct;
  ct.geometry.size = {48, 40, 20};
  ct.geometry.spacing = {3, 3, 3};
  CtVolume seg = ct;
  for (int64_t z = 0; z < 20; ++z)
    for (int64_t y = 0; y < 40; ++y)
      for (int64_t x = 0; x < 48; ++x) {
        const bool organ = (x - 16) * (x - 16) + (y - 20) * (y - 20) + (z - 10) * (z - 10) < 64;
        const bool bone = x > 30 && x < 40 && y > 10 && y < 30;
        // The background lies inside the labelled intensity range, which CTNormalization clips to.
        const auto wobble = static_cast<float>((x * 7 + y * 3 + z) % 11);
        ct.voxels.push_back(organ ? 60.0f + wobble : bone ? 700.0f - wobble : 250.0f + wobble);
        seg.voxels.push_back(organ ? 5.0f : bone ? 32.0f : 0.0f);
      }
  ASSERT_TRUE(WriteCt((dir / "ct.nii.gz").string(), ct).ok());
  ASSERT_TRUE(WriteCt((dir / "seg.nii.gz").string(), seg).ok());
  std::ofstream(dir / "classes.json") << R"({"5": "liver", "32": "vertebrae_T12"})";
  std::ofstream(dir / "arch.json") << R"({"architecture": {"network": "PlainConvUNet", "input_channels": 1, "num_classes": 2,
    "features_per_stage": [8, 16], "kernel_sizes": [[3,3,3],[3,3,3]], "strides": [[1,1,1],[2,2,2]],
    "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": true,
    "norm": {"op": "InstanceNorm3d", "eps": 1e-5, "affine": true}, "nonlin": {"op": "LeakyReLU", "negative_slope": 0.01}},
    "patch_size": [16, 32, 32]})";
  const std::string model = (dir / "model").string(), images = (dir / "ct.nii.gz").string(), labels = (dir / "seg.nii.gz").string();
  CliRun r = Cli({"train", "--architecture", (dir / "arch.json").string(), "--images", images, "--labels", labels, "--classes",
                  (dir / "classes.json").string(), "--class-ids", "5,32", "--spacing", "3,3,3", "--out", model, "--steps", "120",
                  "--lr", "3e-3", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("trained model: 2 classes"));
  r = Cli({"evaluate", model, "--images", images, "--labels", labels});
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir / "model/evaluation.json");
  const auto evaluation = nlohmann::json::parse(in);
  EXPECT_GT(evaluation["cases"][0]["mean_dice"].get<double>(), 0.9);
  EXPECT_THAT(r.out, HasSubstr("liver"));

  ASSERT_EQ(Cli({"compress", model, "--df", "0.5", "--rank-min", "2"}).code, 0);
  const std::string variant = model + "/variants/df0.5-rmin2";
  // A folder of unlabeled NIfTI CTs stands for its files.
  std::filesystem::create_directories(dir / "unlabeled");
  std::filesystem::copy_file(images, dir / "unlabeled/a.nii.gz");
  std::filesystem::copy_file(images, dir / "unlabeled/b.nii.gz");
  const auto variant_manifest = [&dir] {
    std::ifstream in(dir / "model/variants/df0.5-rmin2/manifest.json");
    return nlohmann::json::parse(in);
  };
  // The serving evaluation (the quality the server selects on) scores the compressed weights...
  r = Cli({"evaluate", variant, "--images", images, "--labels", labels, "--reference", model});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(variant_manifest().contains("evaluation"));
  r = Cli({"distill", variant, "--teacher", model, "--images", (dir / "unlabeled").string(), "--steps", "20", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  // ...and no longer describes them once distillation has replaced them.
  EXPECT_FALSE(variant_manifest().contains("evaluation"));
  r = Cli({"finetune", variant, "--images", images, "--labels", labels, "--steps", "10", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Cli({"evaluate", variant, "--images", images, "--labels", labels, "--reference", model, "--tag", "after"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("agreement Dice with model"));
  const auto manifest = variant_manifest();
  ASSERT_TRUE(manifest.contains("distilled"));
  EXPECT_EQ(manifest["distilled"]["images"].size(), 2u);
  EXPECT_TRUE(manifest.contains("finetuned"));
  EXPECT_TRUE(manifest["after"]["cases"][0].contains("agreement_dice"));
  EXPECT_TRUE(manifest["after"]["cases"][0]["agreement"].contains("5"));  // per class, by label id
  // Distillation reads no labels: it must not need --labels.
  r = Cli({"distill", variant, "--images", images});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--teacher"));
}

// quantize on an unlabeled CT, then evaluate: the bundled model's int8 original agrees with its
// float32 self on the example CT; the manifest records precision, calibration CT and ranges, and
// the variant runs on the CPU engine's int8 path.
TEST(ModelsCli, QuantizeWritesAnInt8VariantThatAgreesWithTheOriginal) {
  if (!CpuEngineBuilt()) GTEST_SKIP() << "this build has no CPU engine";
  const auto store = testing::TempDir("cli-quantize");
  const auto model = store / "tucker-abdomen-3mm";
  std::filesystem::create_directories(model);
  for (const char* file : {"model.json", "weights.safetensors"}) {
    std::filesystem::copy_file(testing::SourceDir() / "models/tucker-abdomen-3mm" / file, model / file);
  }
  const std::string data = (testing::SourceDir() / "tests/data/totalsegmentator").string();
  CliRun r = Cli({"quantize", model.string(), "--images", data + "/unlabeled_ct_1p5mm.nii.gz", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto variant = model / "variants/original-int8";
  EXPECT_THAT(r.out, HasSubstr(variant.string()));
  const auto manifest = [&variant] {
    std::ifstream in(variant / "manifest.json");
    return nlohmann::json::parse(in);
  };
  EXPECT_EQ(manifest()["precision"], "int8");
  EXPECT_EQ(manifest()["int8_calibration"]["images"][0], data + "/unlabeled_ct_1p5mm.nii.gz");
  EXPECT_GE(manifest()["int8_calibration"]["tiles"].get<int>(), 1);
  EXPECT_GE(manifest()["int8_calibration"]["input_bounds"].size(), 8u);
  auto loaded = LoadNetwork(variant.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded.value().Executor()->name(), "CPU engine (int8)");

  r = Cli({"evaluate", variant.string(), "--images", data + "/example_ct_sm.nii.gz", "--labels", data + "/example_seg.nii.gz",
           "--reference", model.string(), "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto evaluation = manifest()["evaluation"];
  EXPECT_GE(evaluation["cases"][0]["agreement_dice"].get<double>(), 0.9) << r.out;

  r = Cli({"quantize", variant.string(), "--images", data + "/unlabeled_ct_1p5mm.nii.gz"});  // already int8
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("already an int8 variant"));
  r = Cli({"distill", variant.string(), "--teacher", model.string(), "--images", data + "/unlabeled_ct_1p5mm.nii.gz"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("quantize that again"));
  r = Cli({"quantize", model.string(), "--images", data + "/unlabeled_ct_1p5mm.nii.gz", "--percentile", "20"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--percentile"));
}

TEST(ModelsCli, BadArgumentsGiveUsageErrors) {
  EXPECT_EQ(Cli({}).code, 2);
  CliRun r = Cli({"inspect", "/nonexistent"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("neither a model folder nor a readable architecture file"));
  r = Cli({"inspect", (testing::SourceDir() / "model_store/architectures/totalseg_3mm_shaped.json").string(), "--patch", "100,100,100"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("not divisible by the network's total stride 16x16x16"));
  r = Cli({"import-nnunet", "--results", "/nonexistent"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--results"));
  r = Cli({"predict", "model", "-i", "ct.nii.gz", "-o", "labels.nii.gz", "--batch", "two"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--batch"));
  r = Cli({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("tucker-seg-models"));
  EXPECT_EQ(Cli({"frobnicate"}).code, 2);
}

}  // namespace
}  // namespace tucker_seg
