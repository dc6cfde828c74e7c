// Loading and validating a fedcl-sim scenario (fedcl.v1.SimScenario, protobuf text format).
//
// ParseScenario parses strictly (an unknown field is an error with its line and column), fills
// defaults and validates every value, naming the field, before anything runs. The result holds
// the core types the engine needs: model config, module specs, patterns and, per method, the
// aggregator options and the recipe with the method's overrides applied.
#ifndef FEDCL_SIM_WORLD_SCENARIO_H_
#define FEDCL_SIM_WORLD_SCENARIO_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/cl/learner.h"
#include "core/fl/aggregator.h"
#include "core/fl/module_registry.h"
#include "core/fl/round_policy.h"
#include "core/fl/round_types.h"
#include "core/nn/model_config.h"
#include "proto/fedcl/v1/scenario.pb.h"
#include "sim/world/participation.h"

namespace fedcl::sim {

struct MethodSpec {
  std::string label;
  fl::RuleConfig aggregator;
  fl::Recipe recipe;
  std::string note;
  // Buffered asynchronous aggregation (SimMethod.round_policy, "fedbuff"): the coordinator's
  // policy; unset for synchronous rounds (the barrier).
  std::optional<fl::RoundPolicyConfig> round;
  bool asynchronous() const { return round.has_value(); }
  // How devices compress their deltas (SimMethod.upload_compression).
  fl::CompressionSpec upload;
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

// How much slower than its profile device `client` is under `seed`: devices.slowdown_max's
// log-uniform factor in [1, slowdown_max], 1 without one.
double DeviceSlowdown(const Scenario& scenario, uint64_t seed, uint32_t client);

// The scenario's method labelled `label` and pattern named `name`, or null if it has none.
const MethodSpec* FindMethod(const Scenario& scenario, absl::string_view label);
const PatternSpec* FindPattern(const Scenario& scenario, absl::string_view name);

// The learner options a continual scenario sets for `method` (a registered cl method): the
// learner section's rate, and its method knobs as the method's options text (SEMA's growth
// knobs, the adapters' bottleneck, LAE's step counts from rounds_per_task × steps_per_round,
// FedIns' pool), and the seed.
cl::LearnerOptions LearnerOptionsFor(const v1::ContinualConfig& config, const std::string& method,
                                     uint64_t seed);
// The server's pool for a growing method (SEMA) in a continual scenario: the method's expandable
// blocks and adapter bottleneck (from its options text), the pool section's capacity, round
// window and divergence threshold, for block inputs of `statistics_dim` features; mapped as
// fedcl-server maps its pool section. InvalidArgument if the options do not parse.
absl::StatusOr<fl::ModulePoolOptions> ContinualPoolOptions(const v1::ContinualConfig& config,
                                                           const cl::LearnerOptions& learner,
                                                           int statistics_dim);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_WORLD_SCENARIO_H_
