#include "core/base/command_line.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace fedcl::base {

bool ParseCommandLine(int argc, char** argv, absl::string_view program, absl::string_view usage,
                      absl::string_view flags_source) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [source = std::string(flags_source)](absl::string_view path) {
    return absl::StrContains(path, source);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr, "%.*s: unexpected argument '%s' (see --help)\n",
                 static_cast<int>(program.size()), program.data(), args[1]);
    return false;
  }
  return true;
}

}  // namespace fedcl::base
