#include "command_line/command_line.h"

#include <algorithm>

namespace tucker_seg::command_line {

std::string VersionLine(const std::string& program) {
  return program + " " + ProjectVersion() + " (commit " + GitCommit() + ")";
}

void Configure(CLI::App& app, const std::string& program) {
  app.name(program);
  app.set_version_flag("--version", VersionLine(program), "Print the version and the commit built, then exit");
  app.set_help_flag("-h,--help", "Print this help and exit");
  app.allow_extras(false);
  app.get_formatter()->column_width(36);
}

std::optional<int> Parse(CLI::App& app, const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e, out, err);
    return kExitOk;
  } catch (const CLI::CallForAllHelp& e) {
    app.exit(e, out, err);
    return kExitOk;
  } catch (const CLI::CallForVersion& e) {
    app.exit(e, out, err);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    err << "error: " << e.what() << "\n";
    std::string command = app.get_name();
    for (const CLI::App* chosen = &app; !chosen->get_subcommands().empty();) {
      chosen = chosen->get_subcommands().front();
      command += " " + chosen->get_name();
    }
    err << "run '" << command << " --help' for the options\n";
    return kExitUsage;
  }
  return std::nullopt;
}

int Fail(std::ostream& err, const Status& status) {
  err << "error: " << status.message() << "\n";
  return kExitFailure;
}

}  // namespace tucker_seg::command_line
