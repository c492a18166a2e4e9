// predict: a whole CT segmented in-process (nnU-Net preprocessing, sliding window, export on the
// input's grid).
#include <iomanip>
#include <memory>

#include <torch/torch.h>

#include "image_io/image_io.h"
#include "model_store/inference/predictor.h"
#include "model_store/network/loaded_model.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {

Command AddPredictCommand(CLI::App& parent) {
  struct Flags {
    std::string model, input, output;
    PredictionOptions prediction;
    DeviceFlags device;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = parent.add_subcommand(
      "predict", "Segment a whole CT in-process and write the label map on the input's grid; --step 0.8 reproduces TotalSegmentator.");
  app->add_option("model", f->model, "Model or variant folder")->required();
  app->add_option("-i,--input", f->input, "CT: NIfTI/NRRD/MHA file or DICOM series folder")->required();
  app->add_option("-o,--output", f->output, "Label map to write (.nii.gz)")->required();
  app->add_option("--step", f->prediction.window.step, "Sliding-window step, a fraction of the patch in (0, 1]")
      ->check(CLI::Range(0.01, 1.0))->capture_default_str();
  app->add_option("--batch", f->prediction.window.batch, "Tiles per network call")->check(CLI::Range(1, 64))->capture_default_str();
  app->add_flag("--mirror", f->prediction.window.mirror, "Test-time mirroring over the three axes");
  AddDeviceOptions(app, &f->device);

  return {app, [f](std::ostream& out, std::ostream& err) {
            auto model = LoadNetworkOn(f->model, f->device);
            if (!model.ok()) return command_line::Fail(err, model.status());
            auto ct = ReadCt(f->input);
            if (!ct.ok()) return command_line::Fail(err, ct.status());
            UNetPatchNetwork patch_net(model.value().network);
            auto p = Predict(model.value().info, patch_net, ct.value(), f->prediction);
            if (!p.ok()) return command_line::Fail(err, p.status());
            const Status written = WriteLabelMap(f->output, p.value().labels);
            if (!written.ok()) return command_line::Fail(err, written);

            const auto& g = ct.value().geometry;
            const auto& t = p.value().timings;
            const auto& window = f->prediction.window;
            out << "predict " << model.value().info.name << ": " << g.size[0] << "x" << g.size[1] << "x" << g.size[2]
                << " voxels at " << std::fixed << std::setprecision(2) << g.spacing[0] << "x" << g.spacing[1] << "x" << g.spacing[2]
                << " mm -> network grid " << ToString(p.value().network_shape) << ", " << p.value().tiles << " tiles (step "
                << window.step << ", batch " << window.batch << (window.mirror ? ", mirrored" : "") << ", "
                << model.value().network.device() << " " << f->device.precision << ", " << torch::get_num_threads() << " CPU threads)\n"
                << "  preprocess " << t.preprocess_seconds << " s, network " << t.network_seconds << " s, aggregation "
                << t.aggregation_seconds << " s, export " << t.export_seconds << " s\n";
            std::vector<int64_t> counts(256, 0);  // by label id
            for (uint8_t v : p.value().labels.voxels) ++counts[v];
            out << "  labels present:";
            for (const auto& [id, name] : p.value().label_table)
              if (id > 0 && counts[static_cast<size_t>(id)] > 0) out << " " << name << " (" << counts[static_cast<size_t>(id)] << ")";
            out << "\n  wrote " << f->output << "\n";
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
