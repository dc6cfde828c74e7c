// Loading and validating a fedcl-sim scenario (fedcl.v1.SimScenario, protobuf text format).
//
// ParseScenario parses strictly (an unknown field is an error with its line and column), fills
// defaults and validates every value, naming the field, before anything runs. The result holds
// the core types the engine needs: model config, module specs, patterns and, per method, the
// aggregator options and the recipe with the method's overrides applied.
#ifndef FEDCL_SIM_SCENARIO_H_
#define FEDCL_SIM_SCENARIO_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/fl/aggregator.h"
#include "core/fl/round_types.h"
#include "core/nn/model_config.h"
#include "proto/fedcl/v1/scenario.pb.h"
#include "sim/participation.h"

namespace fedcl::sim {

struct MethodSpec {
  std::string label;
  fl::RuleConfig aggregator;
  fl::Recipe recipe;
  std::string note;
};

enum class PartitionKind { kDirichlet, kIid, kOnDemand };

struct Scenario {
  v1::SimScenario config;  // as parsed, with defaults filled in
  nn::ModelConfig model;
  std::vector<fl::ModuleSpec> modules;
  std::vector<PatternSpec> patterns;
  std::vector<MethodSpec> methods;
  PartitionKind partition = PartitionKind::kDirichlet;
  // Paths of the trace and profile files, resolved against the scenario file's directory.
  std::string trace_path, profile_path, checkpoint_path;

  int num_clients() const { return config.population().num_clients(); }
  int64_t rounds() const { return config.rounds(); }
};

// `source` names the text in messages and is the base for relative paths in it.
absl::StatusOr<Scenario> ParseScenario(absl::string_view text, absl::string_view source);
absl::StatusOr<Scenario> LoadScenario(const base::FileSystem& fs, absl::string_view path);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_SCENARIO_H_
