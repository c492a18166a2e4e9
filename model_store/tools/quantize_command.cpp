// quantize: an int8 variant of a model or variant, calibrated on CTs without labels.
#include <iomanip>
#include <memory>

#include "image_io/image_io.h"
#include "model_store/training/quantize.h"
#include "model_store/tools/command.h"
#include "model_store/tools/training_flags.h"

namespace tucker_seg::tools {
namespace {

struct QuantizeFlags {
  std::string model;
  std::vector<std::string> images;
  QuantizeOptions options;
};

int Quantize(const QuantizeFlags& f, std::ostream& out, std::ostream& err) {
  std::vector<CtVolume> cts;
  const std::vector<std::string> images = ExpandNiftiFolders(f.images);
  for (const auto& image : images) {
    auto ct = ReadCt(image);
    if (!ct.ok()) return command_line::Fail(err, ct.status());
    cts.push_back(std::move(ct).value());
  }
  auto source = LoadNetwork(f.model);
  if (!source.ok()) return command_line::Fail(err, source.status());
  auto calibration = CalibrateInt8(source.value(), cts, images, f.options);
  if (!calibration.ok()) return command_line::Fail(err, calibration.status());
  auto dir = SaveInt8Variant(f.model, source.value(), calibration.value());
  if (!dir.ok()) return command_line::Fail(err, dir.status());
  float smallest = 0, largest = 0;
  for (const auto& [layer, bounds] : calibration.value().input_bounds) {
    for (float b : bounds) {
      smallest = smallest == 0 ? b : std::min(smallest, b);
      largest = std::max(largest, b);
    }
  }
  out << "int8 variant " << dir.value() << ": " << calibration.value().input_bounds.size() << " layers quantized, calibrated on "
      << calibration.value().tiles << " tiles of " << images.size() << " CT(s), " << calibration.value().statistic << " "
      << f.options.percentile << "; input bounds " << std::setprecision(3) << smallest << " to " << largest << "\n"
      << "next: tucker-seg-models evaluate " << dir.value() << " --reference <the float32 original> (its agreement Dice)\n";
  return command_line::kExitOk;
}

}  // namespace

Command AddQuantizeCommand(CLI::App& parent) {
  auto f = std::make_shared<QuantizeFlags>();
  CLI::App* app = parent.add_subcommand(
      "quantize",
      "int8 variant (static post-training quantization; the CPU engine runs it): calibrated on CTs without labels, written to "
      "<model>/variants/<variant>-int8/ with precision and input ranges in its manifest.");
  app->add_option("model", f->model, "Model or float32 variant folder")->required()->check(CLI::ExistingDirectory);
  app->add_option("--images", f->images, "Calibration CTs: NIfTI files, folders of them, or DICOM series folders; no labels needed")->required()->delimiter(',');
  app->add_option("--percentile", f->options.percentile, "Per-channel bound: this percentile of |input| per tile (100: the largest)")
      ->check(CLI::Range(50.0, 100.0))->capture_default_str();
  app->add_option("--step", f->options.step, "Sliding-window step over the calibration CTs")->check(CLI::Range(0.01, 1.0))->capture_default_str();
  return {app, [f](std::ostream& out, std::ostream& err) { return Quantize(*f, out, err); }};
}

}  // namespace tucker_seg::tools
