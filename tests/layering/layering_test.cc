// The dependency rules of ../shared/design/architecture.md, checked from the includes of every
// source file: core/base ← nn, peft, data ← fl, ood, cl ← device; core ← proto ← the hosts
// (server, client, sim); no host includes another host's headers (the SDK's public headers,
// fedcl/*.h, are the one way in from outside client/); nothing in core includes a gRPC or
// protobuf header. A rule broken here names the file, the line and the rule.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl {
namespace {

// The layer of a repository path ("core/fl/coordinator.cc" → "core/fl"), or "" for files no
// rule covers (tests, tools, third-party).
std::string LayerOf(const std::string& path) {
  static const char* kLayers[] = {
      "core/base",   "core/nn", "core/peft", "core/data",  "core/fl",        "core/ood", "core/cl",
      "core/device", "proto",   "server",    "client/sdk", "client/include", "client",   "sim"};
  for (const char* layer : kLayers) {
    if (absl::StartsWith(path, absl::StrCat(layer, "/"))) return layer;
  }
  return "";
}

// Rank within core: a layer may include its own rank and those below.
int CoreRank(const std::string& layer) {
  if (layer == "core/base") return 0;
  if (layer == "core/nn" || layer == "core/peft" || layer == "core/data") return 1;
  if (layer == "core/fl" || layer == "core/ood" || layer == "core/cl") return 2;
  if (layer == "core/device") return 3;
  return -1;
}

bool IsHost(const std::string& layer) {
  return layer == "server" || layer == "sim" || absl::StartsWith(layer, "client");
}
std::string HostOf(const std::string& layer) {
  return absl::StartsWith(layer, "client") ? "client" : layer;
}

// Why `file` (in `layer`) may not include `header`, or "" if it may.
std::string Violation(const std::string& layer, const std::string& header) {
  const bool protobuf_or_grpc = absl::StartsWith(header, "grpc") ||
                                absl::StartsWith(header, "google/protobuf") ||
                                absl::EndsWith(header, ".pb.h");
  const std::string target = LayerOf(header);
  if (absl::StartsWith(layer, "core/")) {
    if (protobuf_or_grpc) return "core includes no gRPC or protobuf header";
    if (target.empty()) return "";
    if (!absl::StartsWith(target, "core/")) return "core includes only core";
    if (CoreRank(target) > CoreRank(layer)) {
      return "core layers point down: base <- nn, peft, data <- fl, ood, cl <- device";
    }
    return "";
  }
  if (layer == "proto") {
    if (IsHost(target)) return "proto includes only core and proto";
    return "";
  }
  if (IsHost(layer)) {
    // The SDK's public headers are how anything outside client/ uses the device library.
    if (absl::StartsWith(header, "fedcl/")) return "";
    if (IsHost(target) && HostOf(target) != HostOf(layer)) {
      return "no host includes another host's headers";
    }
  }
  return "";
}

// The violations of one file's text, as "path:line: #include "h" — rule".
std::vector<std::string> CheckFile(const std::string& path, const std::string& text) {
  std::vector<std::string> found;
  const std::string layer = LayerOf(path);
  if (layer.empty()) return found;
  static const std::regex kInclude(R"(^\s*#\s*include\s*[<"]([^>"]+)[>"])");
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    std::smatch match;
    if (!std::regex_search(line, match, kInclude)) continue;
    const std::string why = Violation(layer, match[1].str());
    if (!why.empty()) {
      found.push_back(
          absl::StrCat(path, ":", number, ": #include \"", match[1].str(), "\" — ", why));
    }
  }
  return found;
}

TEST(LayeringTest, EverySourceFileKeepsTheDependencyRules) {
  const std::filesystem::path root = FEDCL_SOURCE_DIR;
  std::vector<std::string> violations;
  int checked = 0;
  for (const char* top : {"core", "proto", "server", "client", "sim"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root / top)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc" && ext != ".c")) continue;
      std::ifstream in(entry.path());
      std::stringstream text;
      text << in.rdbuf();
      const std::string relative = std::filesystem::relative(entry.path(), root).string();
      for (std::string& v : CheckFile(relative, text.str())) violations.push_back(std::move(v));
      ++checked;
    }
  }
  EXPECT_GT(checked, 200) << "the source tree was not found under " << root;
  EXPECT_THAT(violations, ::testing::IsEmpty());
}

// Each rule catches the include it is for (planted violations).
TEST(LayeringTest, PlantedIncludesAreCaught) {
  auto one = [](const std::string& path, const std::string& include) {
    const std::vector<std::string> v =
        CheckFile(path, absl::StrCat("#include \"", include, "\"\n"));
    return v.size() == 1 ? v[0] : absl::StrCat(v.size(), " violations");
  };
  EXPECT_THAT(one("core/fl/coordinator.cc", "grpcpp/grpcpp.h"), ::testing::HasSubstr("gRPC"));
  EXPECT_THAT(one("core/cl/learner.h", "proto/fedcl/v1/device_state.pb.h"),
              ::testing::HasSubstr("protobuf"));
  EXPECT_THAT(one("core/nn/model.cc", "core/fl/coordinator.h"), ::testing::HasSubstr("point down"));
  EXPECT_THAT(one("core/cl/learner.cc", "core/device/device_session.h"),
              ::testing::HasSubstr("point down"));
  EXPECT_THAT(one("core/device/x.cc", "server/server_config.h"),
              ::testing::HasSubstr("core includes only core"));
  EXPECT_THAT(one("proto/grpc_port.cc", "client/device.h"), ::testing::HasSubstr("proto"));
  EXPECT_THAT(one("sim/world/scenario.cc", "server/server_config.h"),
              ::testing::HasSubstr("another host"));
  EXPECT_THAT(one("server/main.cc", "sim/run/engine.h"), ::testing::HasSubstr("another host"));
  EXPECT_THAT(one("client/device.cc", "server/federation_server.h"),
              ::testing::HasSubstr("another host"));
  // What the rules allow.
  EXPECT_TRUE(CheckFile("client/sdk/client.cc", "#include \"client/device.h\"\n").empty());
  EXPECT_TRUE(CheckFile("sim/run/cl_device.cc", "#include \"fedcl/client.h\"\n").empty());
  EXPECT_TRUE(CheckFile("core/device/a.cc", "#include \"core/cl/learner.h\"\n").empty());
  EXPECT_TRUE(CheckFile("server/a.cc", "#include \"proto/chunks.h\"\n").empty());
}

}  // namespace
}  // namespace fedcl
