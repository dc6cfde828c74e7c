#include "sim/world/scenario.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;

constexpr absl::string_view kMinimal = R"pb(
  name: "t"
  population { num_clients: 10 }
  rounds: 5
)pb";

TEST(ScenarioTest, MinimalScenarioGetsTheReferenceDefaults) {
  absl::StatusOr<Scenario> s = ParseScenario(kMinimal, "/dir/t.textproto");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->model.backbone, nn::BackboneKind::kMlp);
  EXPECT_EQ(s->model.mlp.hidden, std::vector<int>{64});
  ASSERT_EQ(s->modules.size(), 2u);
  EXPECT_EQ(s->modules[0].role, fl::ModuleRole::kBackbone);
  EXPECT_EQ(s->modules[1].role, fl::ModuleRole::kHead);
  ASSERT_EQ(s->methods.size(), 1u);
  EXPECT_EQ(s->methods[0].aggregator.name, "adaptive");
  EXPECT_EQ(s->methods[0].recipe.local_steps, 5);
  EXPECT_EQ(s->methods[0].recipe.batch_size, 16);
  EXPECT_FLOAT_EQ(s->methods[0].recipe.learning_rate, 0.1f);
  EXPECT_EQ(s->patterns.size(), 1u);
  EXPECT_EQ(s->config.participation().p_mean(), 0.1);
  EXPECT_EQ(s->config.participation().p_min(), 0.02);
  EXPECT_EQ(s->config.seed_size(), 1);
  EXPECT_EQ(s->partition, PartitionKind::kDirichlet);
}

TEST(ScenarioTest, MethodRecipeOverridesOnlyWhatItSets) {
  absl::StatusOr<Scenario> s =
      ParseScenario(R"pb(
                      name: "t"
                      population { num_clients: 10 }
                      rounds: 5
                      recipe { local_steps: 7 learning_rate: 0.2 }
                      method {
                        label: "a"
                        recipe { learning_rate: 0.05 }
                        aggregator { kind: "known_prob" }
                      }
                      participation { trace_file: "traces/x.csv" pattern: "trace" }
                    )pb",
                    "/dir/t.textproto");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->methods[0].recipe.local_steps, 7);
  EXPECT_FLOAT_EQ(s->methods[0].recipe.learning_rate, 0.05f);
  EXPECT_EQ(s->methods[0].aggregator.name, "known_prob");
  EXPECT_EQ(s->trace_path, "/dir/traces/x.csv");  // relative to the scenario file
}

TEST(ScenarioTest, BadInputIsNamed) {
  struct Case {
    const char* text;
    const char* expected;
  };
  const Case cases[] = {
      {"name: 't' population { num_clients: 10 } rounds: 5 colour: 3", "colour"},
      {"population { num_clients: 10 } rounds: 5", "name is required"},
      {"name: 't' population { num_clients: 0 } rounds: 5", "num_clients"},
      {"name: 't' population { num_clients: 10 } rounds: 0", "rounds"},
      {"name: 't' population { num_clients: 10 } rounds: 5 participation { p_mean: 2 }", "p_mean"},
      {"name: 't' population { num_clients: 10 } rounds: 5 participation { pattern: 'weekly' }",
       "weekly"},
      {"name: 't' population { num_clients: 10 } rounds: 5 participation { pattern: 'trace' }",
       "trace_file"},
      {"name: 't' population { num_clients: 2 } rounds: 5 participation { probabilities: 'list' "
       "probability: 0.5 }",
       "1 entries for 2 clients"},
      {"name: 't' population { num_clients: 10 } rounds: 5 method { label: 'a' } method { label: "
       "'a' }",
       "appears twice"},
      {"name: 't' population { num_clients: 10 } rounds: 5 method { label: 'a' aggregator { kind: "
       "'fedmagic' } }",
       "fedmagic"},
      {"name: 't' population { num_clients: 10 } rounds: 5 data { partition: 'by_zip_code' }",
       "by_zip_code"},
      {"name: 't' population { num_clients: 10 } rounds: 5 devices { dropout_probability: 1 }",
       "dropout_probability"},
      {"name: 't' population { num_clients: 10 } rounds: 5 model { backbone: 'rnn' }", "rnn"},
      {"name: 't' population { num_clients: 10 } rounds: 5 seed: 1 seed: 1", "seed 1"},
      {"name: 't' population { num_clients: 10 } rounds: 5 method { label: 'a' "
       "upload_compression: 'int3' }",
       "method 'a': compression 'int3'"},
      {"name: 't' population { num_clients: 10 } rounds: 5 method { label: 'a' "
       "upload_compression: 'topk:2' }",
       "fraction of 2"},
      {"name: 't' population { num_clients: 10 } rounds: 5 method { label: 'a' recipe { "
       "batch_size: -3 } }",
       "method 'a'"},
      {"name: 't' population { num_clients: 10 } rounds: 5 tuning { validation_fraction: 0.9 }",
       "tuning.validation_fraction"},
      {"name: 't' population { num_clients: 10 } rounds: 5 tuning { learning_rate: [0.1, 0.1] }",
       "tuning.learning_rate lists 0.1 twice"},
      {"name: 't' population { num_clients: 10 } rounds: 5 tuning { global_learning_rate: -1 }",
       "tuning.global_learning_rate"},
      {"name: 't' population { num_clients: 10 } rounds: 5 tuning { seed: [3, 3] }",
       "tuning.seed 3"},
      {"name: 't' population { num_clients: 10 } rounds: 5 method { label: 'a' "
       "tune_global_learning_rate: 2 }",
       "without a tuning block"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Scenario> s = ParseScenario(c.text, "bad.textproto");
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), HasSubstr(c.expected)) << c.text;
    EXPECT_THAT(s.status().message(), HasSubstr("bad.textproto"));
  }
}

// A scenario the README or the docs tell users to run must at least load: every file shipped in
// sim/scenarios/ parses and validates (its data and checkpoints are only read when it runs).
TEST(ScenarioTest, EveryShippedScenarioLoads) {
  const base::FileSystem& fs = base::FileSystem::Default();
  const std::string dir = absl::StrCat(FEDCL_SOURCE_DIR, "/sim/scenarios");
  absl::StatusOr<std::vector<std::string>> names = fs.ListDirectory(dir);
  ASSERT_TRUE(names.ok()) << names.status();
  int loaded = 0;
  for (const std::string& name : *names) {
    if (!absl::EndsWith(name, ".textproto")) continue;
    absl::StatusOr<Scenario> scenario = LoadScenario(fs, absl::StrCat(dir, "/", name));
    EXPECT_TRUE(scenario.ok()) << name << ": " << scenario.status();
    ++loaded;
  }
  EXPECT_GE(loaded, 10);
}

}  // namespace
}  // namespace fedcl::sim
