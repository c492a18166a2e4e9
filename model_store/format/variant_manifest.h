// <model>/variants/<variant>/manifest.json: how a variant was made (written by compression), what
// was done to it since (fine-tuning, distillation) and how good it is (evaluations). The one
// definition that compress, finetune/distill, evaluate and the server's model pool share.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// One convolution of the variant: its Tucker ranks and whether it was factorized.
struct LayerCompression {
  std::string name;  // state_dict prefix
  std::string op;    // "Conv3d" or "ConvTranspose3d"
  int64_t in_channels = 0, out_channels = 0;
  Int3 kernel{{1, 1, 1}};
  int64_t rank_in = 0, rank_out = 0;
  bool factorized = false;
  std::string skipped_reason;       // why a layer stayed dense
  double relative_error = 0;        // ||W - W_hat|| / ||W||
  double hosvd_relative_error = 0;  // after HOSVD only
  int hooi_iterations = 0;
  int64_t parameters = 0, macs = 0;  // per patch
};

// Scores of one evaluation case: Dice per label id against reference labels and, when a
// reference model was given, agreement Dice with its predictions.
struct EvaluationCase {
  std::string image, labels;
  std::map<int64_t, double> dice;
  double mean_dice = 0;
  std::map<int64_t, double> agreement;
  std::optional<double> agreement_dice;  // mean of `agreement`
};

struct Evaluation {
  double step = 0.5;  // sliding-window step used
  std::vector<EvaluationCase> cases;
  // Mean agreement Dice over the cases that have one; empty when none has.
  std::optional<double> MeanAgreement() const;
};

// An int8 variant's static calibration (`tucker-seg-models quantize`): per quantized layer
// (state_dict prefix), the bound of |input| per input channel over the calibration tiles.
struct Int8Calibration {
  std::string statistic = "percentile";  // "percentile" or "max" (percentile 100)
  double percentile = 100;
  std::vector<std::string> images;  // the calibration CTs' file names
  int64_t tiles = 0;
  std::map<std::string, std::vector<float>> input_bounds;
};

// The evaluation the server selects on is the one stored under this name.
constexpr char kServingEvaluation[] = "evaluation";

struct VariantManifest {
  std::string variant;  // folder name, e.g. "df0.3"
  std::string model;    // the original's name
  nlohmann::json method = nlohmann::json::object();  // compression settings, kept verbatim
  Int3 patch_size{{0, 0, 0}};
  int64_t parameters = 0, macs = 0, original_parameters = 0, original_macs = 0;
  double parameters_removed_fraction = 0;
  double mac_ratio = 1;
  std::vector<LayerCompression> layers;
  // Training applied after compression, by kind ("finetuned", "distilled"): the run's record.
  std::map<std::string, nlohmann::json> adaptations;
  // Evaluations by tag (`evaluate --tag`; kServingEvaluation is what the server uses).
  std::map<std::string, Evaluation> evaluations;
  // "float32", or "int8": the CPU engine runs the layers `int8` names as int8 convolutions.
  std::string precision = "float32";
  std::optional<Int8Calibration> int8;

  // Mean agreement Dice of the serving evaluation: what the server calls the variant's quality.
  std::optional<double> Quality() const;
};

// The manifest of `source`'s int8 variant (`source`: a float32 variant's manifest, or the
// original's figures as one): named "<variant>-int8", precision int8 with `calibration`, the
// method noting the quantization, and no evaluations (they scored the float32 weights).
VariantManifest Int8VariantManifest(VariantManifest source, Int8Calibration calibration);

nlohmann::json ToJson(const Evaluation& evaluation);
Result<Evaluation> EvaluationFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const VariantManifest& manifest);
Result<VariantManifest> VariantManifestFromJson(const nlohmann::json& j);

// <dir>/manifest.json. Reading names the file in its errors; NotFound when it is absent.
Result<VariantManifest> ReadVariantManifest(const std::string& dir);
Status WriteVariantManifest(const VariantManifest& manifest, const std::string& dir);

}  // namespace tucker_seg
