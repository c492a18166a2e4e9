// The server links what serving needs (model format, network, inference) and nothing that only
// the model tools need: no pickle reader or checkpoint importer, no Tucker compression, no trainer.
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ServerLink, HoldsTheEngineButNotTheImporterCompressorOrTrainer) {
  const std::string server = tucker_seg::testing::ProgramPath("tucker-seg-server");
  const auto symbols = testing::RunCommand("nm -C " + server);
  ASSERT_EQ(symbols.exit_code, 0) << symbols.output.substr(0, 2000);
  EXPECT_THAT(symbols.output, HasSubstr("tucker_seg::MakeExecutor("));
  EXPECT_THAT(symbols.output, HasSubstr("tucker_seg::LibTorchForward("));
  EXPECT_THAT(symbols.output, HasSubstr("tucker_seg::Predict("));
  for (const char* absent : {"tucker_seg::Distill(", "tucker_seg::Train(", "tucker_seg::Unpickle(", "tucker_seg::ReadCheckpointStateDict(",
                             "tucker_seg::ImportNnUNet(", "tucker_seg::DecomposeTucker2(", "tucker_seg::CompressModel("}) {
    EXPECT_THAT(symbols.output, Not(HasSubstr(absent))) << absent;
  }
}

}  // namespace
}  // namespace tucker_seg
