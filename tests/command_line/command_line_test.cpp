// The three programs' flags, run as a user runs them: --version, --help on every command,
// unknown options and malformed numbers refused with exit code 2 and a message naming the option.
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
using testing::RunCommand;

std::string Program(const std::string& name) { return tucker_seg::testing::ProgramPath(name); }

TEST(CommandLine, EveryProgramPrintsItsVersion) {
  for (const char* program : {"tucker-seg", "tucker-seg-models", "tucker-seg-server"}) {
    const auto r = RunCommand(Program(program) + " --version");
    EXPECT_EQ(r.exit_code, 0) << program << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr(std::string(program) + " " + TUCKER_SEG_VERSION + " (commit ")) << program;
  }
}

TEST(CommandLine, HelpOfACommandListsItsOptions) {
  auto r = RunCommand(Program("tucker-seg") + " segment --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* option : {"--input", "--output", "--dicom-seg", "--statistics", "--variant", "--server"})
    EXPECT_THAT(r.output, HasSubstr(option)) << option;
  r = RunCommand(Program("tucker-seg-models") + " predict --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* option : {"--input", "--output", "--step", "--batch", "--mirror", "--threads"})
    EXPECT_THAT(r.output, HasSubstr(option)) << option;
  r = RunCommand(Program("tucker-seg-server") + " --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("TUCKER_SEG_MODEL_STORE"));  // flags show their environment variables
  for (const char* command : {"import-nnunet", "inspect", "compress", "train", "finetune", "distill", "evaluate", "forward"}) {
    r = RunCommand(Program("tucker-seg-models") + " " + command + " --help");
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.output;
  }
  for (const char* command : {"models", "health", "pacs"}) {
    r = RunCommand(Program("tucker-seg") + " " + command + " --help");
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.output;
  }
}

TEST(CommandLine, UnknownOptionsAndBadNumbersAreUsageErrorsNamingTheOption) {
  auto r = RunCommand(Program("tucker-seg") + " segment -i x.nii.gz -o y.nii.gz --statistcs s.json");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--statistcs"));
  r = RunCommand(Program("tucker-seg-models") + " inspect model --threads abc");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--threads"));
  r = RunCommand(Program("tucker-seg-server") + " --threads abc");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--threads"));
  r = RunCommand("TUCKER_SEG_WORKERS=many " + Program("tucker-seg-server"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--workers"));
  r = RunCommand(Program("tucker-seg-server") + " --frobnicate 1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--frobnicate"));
  r = RunCommand(Program("tucker-seg") + " frobnicate");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunCommand(Program("tucker-seg-models"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  for (const auto* run : {&r}) EXPECT_THAT(run->output, Not(HasSubstr("terminate called")));
}

}  // namespace
}  // namespace tucker_seg
