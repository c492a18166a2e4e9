// The `tucker-seg` binary: it does not link LibTorch, and bad input gets a clear message and a
// non-zero exit (no crash, no stack trace).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
using tucker_seg::testing::RunCommand;

fs::path Example() { return tucker_seg::testing::ExampleDicomSeries(); }
std::string Cli() { return tucker_seg::testing::ProgramPath("tucker-seg"); }

TEST(ClientCli, DoesNotLinkLibTorch) {
  const auto ldd = RunCommand("ldd " + Cli());
  ASSERT_EQ(ldd.exit_code, 0) << ldd.output;
  EXPECT_NE(ldd.output.find("libgrpc++"), std::string::npos) << ldd.output;  // it is the gRPC client
  EXPECT_EQ(ldd.output.find("libtorch"), std::string::npos) << ldd.output;
  EXPECT_EQ(ldd.output.find("libc10"), std::string::npos) << ldd.output;
}

TEST(ClientCli, BadInputGetsAClearMessageAndNonZeroExit) {
  const auto missing = RunCommand(Cli() + " segment -i /nonexistent/ct.nii.gz -o /dev/null");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("error: -i '/nonexistent/ct.nii.gz' does not exist"), std::string::npos) << missing.output;

  const auto garbage = tucker_seg::testing::TempDir("cli-garbage") / "ct.nii.gz";
  { std::ofstream(garbage) << "not an image"; }
  const auto unreadable = RunCommand(Cli() + " segment -i " + garbage.string() + " -o /dev/null");
  EXPECT_EQ(unreadable.exit_code, 1);
  EXPECT_NE(unreadable.output.find("cannot read"), std::string::npos) << unreadable.output;

  const auto empty = tucker_seg::testing::TempDir("cli-empty");
  const auto empty_run = RunCommand(Cli() + " segment -i " + empty.string() + " -o /dev/null");
  EXPECT_EQ(empty_run.exit_code, 1);
  EXPECT_NE(empty_run.output.find("holds neither DICOM files nor .nii/.nii.gz/.nrrd/.mha images"), std::string::npos) << empty_run.output;

  const auto down = RunCommand(Cli() + " segment -i " + Example().string() + " -o /dev/null --server 127.0.0.1:1 --timeout 20");
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.output.find("server 127.0.0.1:1 is unavailable"), std::string::npos) << down.output;

  const auto usage = RunCommand(Cli() + " segment -i " + Example().string());
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.output.find("-o <labels>"), std::string::npos) << usage.output;
  for (const auto* run : {&missing, &unreadable, &empty_run, &down, &usage}) {
    EXPECT_EQ(run->output.find("terminate called"), std::string::npos) << run->output;
    EXPECT_EQ(run->output.find("Aborted"), std::string::npos) << run->output;
  }
}

}  // namespace
}  // namespace tucker_seg
