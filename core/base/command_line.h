// Command-line parsing shared by the fedcl binaries, so they all behave alike: --help lists the
// binary's own flags (Abseil's default looks for a source file named after the binary, which
// ours are not), and a stray positional argument is refused instead of silently ignored.
#ifndef FEDCL_CORE_BASE_COMMAND_LINE_H_
#define FEDCL_CORE_BASE_COMMAND_LINE_H_

#include "absl/strings/string_view.h"

namespace fedcl::base {

// Sets the usage message, makes --help list the flags defined in source files whose path
// contains `flags_source`, and parses argv into the flags. Returns false after telling the user
// on stderr what was wrong; the caller exits with its bad-flags code. Call once, from main.
bool ParseCommandLine(int argc, char** argv, absl::string_view program, absl::string_view usage,
                      absl::string_view flags_source);

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_COMMAND_LINE_H_
