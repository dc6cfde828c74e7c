#include "sim/modes/modes.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/fedcl/v1/server_config.pb.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "proto/json.h"
#include "proto/text_format.h"
#include "sim/modes/progress.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;

constexpr char kScenario[] = R"pb(
  name: "modes"
  model { backbone: "mlp" mlp_hidden: 8 }
  data { partition: "iid" max_train_samples: 600 max_test_samples: 100 }
  population { num_clients: 6 }
  participation { probabilities: "uniform" p_mean: 0.5 pattern: "bernoulli" pattern: "cyclic-4" }
  method { label: "fedau" }
  method {
    label: "known_prob"
    aggregator { kind: "known_prob" global_learning_rate: 0.5 }
  }
  seed: 3
  rounds: 4
  eval_every: 2
  threads: 1
)pb";

class ModesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Scenario> scenario = ParseScenario(kScenario, "modes.textproto");
    ASSERT_TRUE(scenario.ok()) << scenario.status();
    scenario_ = *std::move(scenario);
    absl::StatusOr<SimulationInputs> inputs = LoadInputs(fs_, scenario_);
    ASSERT_TRUE(inputs.ok()) << inputs.status();
    inputs_ = *std::move(inputs);
    char dir[] = "/tmp/fedcl-sim-modes-XXXXXX";
    dir_ = mkdtemp(dir);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::string Read(const std::string& name) const {
    std::ifstream in(base::JoinPath(dir_, name));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  base::FileSystem& fs_ = base::FileSystem::Default();
  Scenario scenario_;
  SimulationInputs inputs_;
  std::string dir_;
};

TEST_F(ModesTest, AFederatedRunWritesAMetricsLinePerEvaluationAndTheReport) {
  ASSERT_TRUE(RunFederatedScenario(scenario_, inputs_, {.out = dir_, .progress = false}, fs_).ok());
  const std::string metrics = Read("metrics.jsonl");
  // 2 methods × 2 patterns × 1 seed × 2 evaluations.
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 8);
  EXPECT_THAT(metrics, HasSubstr("{\"method\":\"known_prob\",\"pattern\":\"cyclic-4\",\"seed\":3,"
                                 "\"round\":4,"));
  EXPECT_THAT(Read("summary.json"), HasSubstr("\"scenario\": \"modes\""));
  EXPECT_THAT(Read("report.html"), HasSubstr("<title>fedcl-sim: modes</title>"));
}

// The server config a multi-process run needs: the method's rule, recipe, shards, seed, and the
// true p_n for known_prob.
TEST_F(ModesTest, TheEmittedServerConfigRunsTheNamedMethod) {
  ASSERT_TRUE(EmitServerConfig(
                  scenario_, inputs_,
                  {.dir = dir_, .state_dir = "st", .method = "known_prob", .seed = 3, .shards = 2},
                  fs_)
                  .ok());
  v1::ServerConfig config;
  ASSERT_TRUE(proto::ParseTextFormat(Read("server.textproto"), &config).ok());
  EXPECT_EQ(config.aggregator().kind(), "known_prob");
  EXPECT_EQ(config.aggregator().global_learning_rate(), 0.5);
  EXPECT_EQ(config.round().shards(), 2);
  EXPECT_EQ(config.seed(), 3u);
  EXPECT_EQ(config.participation_probability_size(), 6);
  EXPECT_EQ(config.participation_probability().at(5), 0.5f);
  EXPECT_TRUE(fs_.Exists(base::JoinPath(dir_, "initial.ckpt")));
  absl::Status unknown =
      EmitServerConfig(scenario_, inputs_, {.dir = dir_, .method = "fedavg"}, fs_);
  EXPECT_EQ(unknown.message(), "method 'fedavg' is not one of the scenario's");

  // Under a drifting pattern known_prob is told each client's long-run rate: (1 - a)·p_n.
  std::string drifting = kScenario;
  const std::string cyclic = "pattern: \"cyclic-4\"";
  drifting.replace(drifting.find(cyclic), cyclic.size(), "pattern: \"sine-0.3\"");
  absl::StatusOr<Scenario> sine = ParseScenario(drifting, "sine.textproto");
  ASSERT_TRUE(sine.ok()) << sine.status();
  ASSERT_TRUE(
      EmitServerConfig(*sine, inputs_,
                       {.dir = dir_, .method = "known_prob", .seed = 3, .pattern = "sine-0.3"}, fs_)
          .ok());
  ASSERT_TRUE(proto::ParseTextFormat(Read("server.textproto"), &config).ok());
  EXPECT_NEAR(config.participation_probability().at(5), 0.35f, 1e-6);

  // A method that compresses asks fedcl-server to ask its devices for the same codec.
  Scenario compressing = scenario_;
  compressing.methods[0].upload = *fl::ParseCompressionSpec("int8");
  ASSERT_TRUE(EmitServerConfig(compressing, inputs_,
                               {.dir = dir_, .method = compressing.methods[0].label}, fs_)
                  .ok());
  ASSERT_TRUE(proto::ParseTextFormat(Read("server.textproto"), &config).ok());
  EXPECT_EQ(config.upload_compression(), "int8:256");
}

TEST_F(ModesTest, AReportFromTheServerCoversTheRunThatHappened) {
  const std::string log = base::JoinPath(dir_, "server-metrics.jsonl");
  ASSERT_TRUE(fs_.WriteFileAtomically(log,
                                      "{\"round\":0,\"participants\":3,\"accuracy\":null}\n"
                                      "{\"round\":1,\"participants\":2,\"mean_loss\":0.5,"
                                      "\"accuracy\":0.625}\n")
                  .ok());
  const std::string out = base::JoinPath(dir_, "out");
  ASSERT_TRUE(
      ReportFromServer(scenario_, inputs_,
                       {.server_metrics = log, .out = out, .pattern = "cyclic-4", .seed = 3}, fs_)
          .ok());
  EXPECT_EQ(Read("out/metrics.jsonl"),
            "{\"method\":\"fedau\",\"pattern\":\"cyclic-4\",\"seed\":3,\"round\":2,"
            "\"accuracy\":0.625,\"loss\":null,\"train_loss\":0.5,\"participants\":2,"
            "\"bytes_up\":0,\"bytes_down\":0,\"fedau_weight_error\":null,\"wall_seconds\":0,"
            "\"virtual_seconds\":0,\"updates\":5,\"local_mean_accuracy\":null}\n");
  EXPECT_THAT(Read("out/summary.json"), HasSubstr("\"updates\": 5"));
  EXPECT_EQ(ReportFromServer(scenario_, inputs_, {.server_metrics = log, .method = "mifa"}, fs_)
                .message(),
            "method 'mifa' is not in the scenario");
}

TEST_F(ModesTest, ADeviceNeedsAContinualScenarioAndAStorageDirectory) {
  EXPECT_EQ(RunDevice(scenario_, inputs_, {.storage_dir = dir_}, fs_).message(),
            "--device needs a continual scenario");
  EXPECT_EQ(DeviceOptions{}.Validate().message(), "--device needs --storage_dir");
}

TEST(ModeSupportTest, ClockPatternAndToken) {
  EXPECT_EQ(ClockText(59.4), "0:59");
  EXPECT_EQ(ClockText(3599.6), "1:00:00");
  EXPECT_EQ(ClockText(3725), "1:02:05");
  absl::StatusOr<Scenario> s = ParseScenario(kScenario, "modes.textproto");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(SelectPattern(*s, "")->name, "bernoulli");
  EXPECT_EQ(SelectPattern(*s, "cyclic-4")->name, "cyclic-4");
  EXPECT_EQ(SelectPattern(*s, "markov-0.1").status().message(),
            "pattern 'markov-0.1' is not in the scenario");
  const std::string token = ::testing::TempDir() + "/modes_test.token";
  std::ofstream(token) << "  s3cret\n";
  EXPECT_EQ(*ReadToken(base::FileSystem::Default(), token), "s3cret");
  EXPECT_EQ(*ReadToken(base::FileSystem::Default(), ""), "");
  EXPECT_FALSE(ReadToken(base::FileSystem::Default(), token + ".missing").ok());
}

// Tuning selects each method's best grid point on a validation split of the training set: a
// learning rate that cannot learn loses, every point is recorded, and the scores do not depend on
// the test set, which tuning must never read.
TEST_F(ModesTest, TuningSelectsOnValidationDataAndNeverReadsTheTestSet) {
  absl::StatusOr<Scenario> scenario = ParseScenario(std::string(kScenario) +
                                                        R"pb(tuning {
                                                               learning_rate: [ 0.000001, 0.1 ]
                                                               global_learning_rate: [ 1, 2 ]
                                                               validation_fraction: 0.25
                                                               rounds: 6
                                                             })pb",
                                                    "tune.textproto");
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  // known_prob brings its own γ grid.
  scenario->config.mutable_method(1)->add_tune_global_learning_rate(0.5);
  absl::StatusOr<TunedScenario> tuned =
      TuneMethods(*scenario, inputs_, {.out = dir_, .progress = false}, fs_);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_FALSE(tuned->scenario.config.has_tuning());
  const std::string json = Read("tuning.json");
  v1::SimTuning record;
  ASSERT_TRUE(proto::ParseJson(json, &record).ok()) << json;
  ASSERT_EQ(record.methods_size(), 2);
  EXPECT_EQ(record.validation_samples(), 150);  // a quarter of the 600 training samples
  EXPECT_EQ(record.methods(0).grid_size(), 4);
  EXPECT_EQ(record.methods(1).grid_size(), 2);
  for (int m = 0; m < 2; ++m) {
    const v1::SimTuning::Method& method = record.methods(m);
    double best = 0;
    for (const v1::SimTuning::Point& p : method.grid()) {
      EXPECT_EQ(p.validation_accuracy_per_pattern_size(), 2);
      best = std::max(best, p.validation_accuracy());
    }
    EXPECT_EQ(method.selected_validation_accuracy(), best);
    EXPECT_FLOAT_EQ(method.selected_learning_rate(), 0.1f) << method.method();
    EXPECT_FLOAT_EQ(tuned->scenario.methods[m].recipe.learning_rate, 0.1f);
    EXPECT_EQ(tuned->scenario.methods[m].aggregator.global_learning_rate,
              method.selected_global_learning_rate());
  }
  EXPECT_THAT(Read("tuned_methods.textproto"), HasSubstr("learning_rate: 0.1"));
  EXPECT_EQ(tuned->record.methods_size(), 2);

  // The same tuning with another test set scores the same.
  absl::StatusOr<data::Dataset> other_test = data::Subset(inputs_.train, {0, 1, 2, 3, 4});
  ASSERT_TRUE(other_test.ok());
  inputs_.test = *std::move(other_test);
  ASSERT_TRUE(TuneMethods(*scenario, inputs_, {.out = dir_, .progress = false}, fs_).ok());
  v1::SimTuning again;
  ASSERT_TRUE(proto::ParseJson(Read("tuning.json"), &again).ok());
  for (int m = 0; m < 2; ++m) {
    for (int i = 0; i < record.methods(m).grid_size(); ++i) {
      EXPECT_EQ(again.methods(m).grid(i).validation_accuracy(),
                record.methods(m).grid(i).validation_accuracy());
    }
  }
}

}  // namespace
}  // namespace fedcl::sim
