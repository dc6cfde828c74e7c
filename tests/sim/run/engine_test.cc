#include "sim/run/engine.h"

#include <set>

#include "core/base/filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/world/client_data.h"
#include "tests/sim/run/run_test_util.h"

namespace fedcl::sim {
namespace {

constexpr char kSmall[] = R"pb(
  name: "small"
  model { backbone: "mlp" mlp_hidden: 16 }
  data { max_train_samples: 3000 max_test_samples: 500 }
  population { num_clients: 20 }
  participation { probabilities: "uniform" p_mean: 0.3 pattern: "bernoulli" }
  method { label: "fedau" }
  rounds: 40
  eval_every: 10
)pb";

// Keyed draws and the exact fold: the thread count changes nothing, bit for bit.
TEST(EngineTest, SameResultWhateverTheThreadCount) {
  Scenario one = Parse(std::string(kSmall) + " threads: 1");
  Scenario two = Parse(std::string(kSmall) + " threads: 2");
  SimulationInputs inputs = LoadTestInputs(one);
  absl::StatusOr<RunResult> a =
      Engine(one, inputs).Run(one.methods[0], one.patterns[0], 3, nullptr);
  absl::StatusOr<RunResult> b =
      Engine(two, inputs).Run(two.methods[0], two.patterns[0], 3, nullptr);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->evals.size(), 4u);
  ASSERT_EQ(a->evals.size(), b->evals.size());
  for (size_t i = 0; i < a->evals.size(); ++i) {
    EXPECT_EQ(a->evals[i].accuracy, b->evals[i].accuracy);
    EXPECT_EQ(a->evals[i].loss, b->evals[i].loss);
    EXPECT_EQ(a->evals[i].bytes_up, b->evals[i].bytes_up);
    EXPECT_EQ(a->evals[i].weight_error, b->evals[i].weight_error);
  }
  EXPECT_EQ(a->updates, b->updates);
  // About 30% of 20 clients over 40 rounds took part, and the model learned.
  EXPECT_NEAR(a->updates, 0.3 * 20 * 40, 4 * std::sqrt(0.21 * 800));
  EXPECT_GT(a->evals.back().accuracy, 0.5);
  // A different seed is a different run.
  absl::StatusOr<RunResult> c =
      Engine(one, inputs).Run(one.methods[0], one.patterns[0], 4, nullptr);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->evals.back().loss, c->evals.back().loss);
}

// FedAU's defining property in the running system: each client's weight tends to 1/p_n.
TEST(EngineTest, FedAuWeightsConvergeToInverseParticipationProbability) {
  Scenario s = Parse(R"pb(
    name: "weights"
    model { backbone: "mlp" mlp_hidden: 4 }
    data { partition: "iid" max_train_samples: 1000 max_test_samples: 100 }
    population { num_clients: 5 }
    participation {
      probabilities: "list"
      probability: [ 0.05, 0.1, 0.2, 0.5, 1.0 ]
    }
    recipe { local_steps: 1 batch_size: 1 }
    rounds: 4000
    eval_every: 1000
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  absl::StatusOr<RunResult> r = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->inverse_probability_vs_weight.size(), 5u);
  for (const auto& [inverse_p, weight] : r->inverse_probability_vs_weight) {
    // Mean of ~4000·p geometric intervals: relative spread sqrt(1 − p) / sqrt(4000·p).
    EXPECT_NEAR(weight, inverse_p, 0.2 * inverse_p) << "1/p = " << inverse_p;
  }
  EXPECT_LT(r->evals.back().weight_error, r->evals.front().weight_error + 1e-9);
  EXPECT_LT(r->evals.back().weight_error, 0.1);
}

// Compressed uploads (SimMethod.upload_compression): the devices send the codec's bytes, and
// error feedback, kept for each virtual client between its rounds, keeps the learning close to
// float32's even at a keep fraction of 1%.
TEST(EngineTest, CompressedUploadsSendFewerBytesAndKeepLearning) {
  Scenario s = Parse(std::string(kSmall) + R"pb(
    method { label: "int8" upload_compression: "int8:64" }
    method { label: "topk" upload_compression: "topk:0.01:64" }
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  std::vector<RunResult> runs;
  for (const MethodSpec& method : s.methods) {
    absl::StatusOr<RunResult> r = Engine(s, inputs).Run(method, s.patterns[0], 3, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    runs.push_back(*std::move(r));
  }
  const RunResult &plain = runs[0], &int8 = runs[1], &topk = runs[2];
  ASSERT_EQ(int8.updates, plain.updates);  // the same draws: the same participants
  ASSERT_GT(plain.updates, 0);
  // The MLP's two modules, backbone 784x16 + 16 and head 16x10 + 10, each in blocks of 64.
  const int64_t backbone = 784 * 16 + 16, head = 16 * 10 + 10;
  ASSERT_EQ(plain.evals.back().bytes_up, plain.updates * 4 * (backbone + head));
  EXPECT_EQ(int8.evals.back().bytes_up,
            int8.updates * (backbone + head + 4 * ((backbone + 63) / 64 + (head + 63) / 64)));
  EXPECT_LT(topk.evals.back().bytes_up * 40, plain.evals.back().bytes_up);
  EXPECT_NEAR(int8.evals.back().accuracy, plain.evals.back().accuracy, 0.02);
  EXPECT_GT(topk.evals.back().accuracy, 0.5);
}

// Error feedback across a virtual client's rounds: each session is fresh, so the residual must
// wait in the runner. With every client in every round, top-k at 1% reached 0.682 with it when
// this test was written, 0.628 without, and float32 0.772 (the run is deterministic).
TEST(EngineTest, ErrorFeedbackOutlivesEachRoundsFreshSession) {
  Scenario s = Parse(R"pb(
    name: "feedback"
    model { backbone: "mlp" mlp_hidden: 16 }
    data { max_train_samples: 3000 max_test_samples: 500 }
    population { num_clients: 10 }
    participation { probabilities: "uniform" p_mean: 1 pattern: "bernoulli" }
    method { label: "fedau" }
    method { label: "topk" upload_compression: "topk:0.01:64" }
    rounds: 40
    eval_every: 40
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  absl::StatusOr<RunResult> plain = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 3, nullptr);
  absl::StatusOr<RunResult> topk = Engine(s, inputs).Run(s.methods[1], s.patterns[0], 3, nullptr);
  ASSERT_TRUE(plain.ok() && topk.ok());
  EXPECT_GT(topk->evals.back().accuracy, plain->evals.back().accuracy - 0.12);
}

TEST(EngineTest, StragglersAndDropoutsDoNotCount) {
  Scenario s = Parse(R"pb(
    name: "devices"
    model { backbone: "mlp" mlp_hidden: 4 }
    data { partition: "iid" max_train_samples: 400 max_test_samples: 100 }
    population { num_clients: 4 }
    participation { probabilities: "uniform" p_mean: 1.0 }
    devices { round_deadline_s: 10 default_ms_per_sample: 10 }
    recipe { local_steps: 5 batch_size: 16 }
    rounds: 10
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  // Client 2 needs 80 samples × 200 ms = 16 s > 10 s: a straggler every round.
  absl::StatusOr<DeviceProfiles> profiles =
      DeviceProfiles::Parse("client,ms_per_sample,bandwidth_kbps\n2,200,0\n", DeviceProfile{10, 0});
  ASSERT_TRUE(profiles.ok());
  inputs.profiles = std::move(*profiles);
  absl::StatusOr<RunResult> r = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stragglers, 10);
  EXPECT_EQ(r->updates, 30);
  EXPECT_EQ(r->evals.back().participants, 3);
  // Each round lasts until the deadline, since someone missed it.
  EXPECT_DOUBLE_EQ(r->evals.back().virtual_seconds, 100.0);

  Scenario drops = Parse(R"pb(
    name: "dropouts"
    model { backbone: "mlp" mlp_hidden: 4 }
    data { partition: "iid" max_train_samples: 400 max_test_samples: 100 }
    population { num_clients: 10 }
    participation { probabilities: "uniform" p_mean: 1.0 }
    devices { dropout_probability: 0.25 }
    recipe { local_steps: 1 batch_size: 4 }
    rounds: 200
  )pb");
  SimulationInputs drop_inputs = LoadTestInputs(drops);
  r = Engine(drops, drop_inputs).Run(drops.methods[0], drops.patterns[0], 1, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->updates + r->dropouts, 2000);
  EXPECT_NEAR(r->dropouts, 500, 4 * std::sqrt(2000 * 0.25 * 0.75));
}

TEST(EngineTest, OnDemandClientsHoldFixedDataDrawnByTheirLabelMix) {
  Scenario s = Parse(R"pb(
    name: "on demand"
    model { backbone: "mlp" mlp_hidden: 8 }
    data {
      partition: "on_demand"
      samples_per_client: 200
      max_train_samples: 5000
      max_test_samples: 200
    }
    population { num_clients: 1000 }
    participation { p_mean: 0.01 p_min: 0.001 }
    rounds: 5
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  absl::StatusOr<ClientData> data = ClientData::Create(s, inputs.train, 1);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->bytes(), 0);
  std::vector<int> scratch_a, scratch_b;
  std::vector<int> first(data->Indices(17, scratch_a).begin(), data->Indices(17, scratch_a).end());
  absl::Span<const int> again = data->Indices(17, scratch_b);
  EXPECT_EQ(first, std::vector<int>(again.begin(), again.end()));
  // The samples' labels follow the client's mix (alpha 0.1: concentrated on few labels).
  std::vector<float> mix(10);
  data->LabelMix(17, absl::MakeSpan(mix));
  std::vector<int> counts(10);
  for (int i : first) ++counts[inputs.train.labels[i]];
  for (int c = 0; c < 10; ++c) EXPECT_NEAR(counts[c] / 200.0, mix[c], 0.12) << "label " << c;
  // The mean p_n is about p_mean before clipping.
  std::vector<float> p = data->Probabilities(s, 1);
  double mean = 0;
  for (float x : p) mean += x;
  EXPECT_NEAR(mean / p.size(), 0.01, 0.005);
  absl::StatusOr<RunResult> r = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST(EngineTest, EveryAggregatorRunsAndMemoryHeavyOnesHoldPerClientVectors) {
  Scenario s = Parse(R"pb(
    name: "all"
    model { backbone: "mlp" mlp_hidden: 8 }
    data { max_train_samples: 2000 max_test_samples: 200 }
    population { num_clients: 10 }
    method { label: "fedau" }
    method {
      label: "known"
      aggregator { kind: "known_prob" }
    }
    method {
      label: "part"
      aggregator { kind: "average_participating" }
    }
    method {
      label: "all"
      aggregator { kind: "average_all" }
    }
    method {
      label: "fedvarp"
      aggregator { kind: "fedvarp" }
    }
    method {
      label: "mifa"
      aggregator { kind: "mifa" }
    }
    method {
      label: "fedawe"
      aggregator { kind: "fedawe" }
    }
    participation { pattern: "markov-0.05" }
    rounds: 30
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  int64_t fedau_bytes = 0;
  for (const MethodSpec& method : s.methods) {
    absl::StatusOr<RunResult> r = Engine(s, inputs).Run(method, s.patterns[0], 1, nullptr);
    ASSERT_TRUE(r.ok()) << method.label << ": " << r.status();
    EXPECT_TRUE(std::isfinite(r->evals.back().loss)) << method.label;
    if (method.label == "fedau") fedau_bytes = r->aggregator_bytes;
    if (method.label == "fedvarp" || method.label == "mifa" || method.label == "fedawe") {
      // O(N·d): at least one stored vector per participant seen (FedAWE: per base version in
      // use), against FedAU's O(d).
      EXPECT_GT(r->aggregator_bytes, 2 * fedau_bytes) << method.label;
    }
    // FedAWE is also scored on the mean of all clients' local copies, which is another model
    // than the server's; the other rules are not.
    for (const EvalPoint& point : r->evals) {
      if (method.label == "fedawe") {
        EXPECT_GE(point.local_mean_accuracy, 0.0);
      } else {
        EXPECT_EQ(point.local_mean_accuracy, -1.0) << method.label;
      }
    }
    if (method.label == "fedawe") {
      EXPECT_NE(r->evals.back().local_mean_accuracy, r->evals.back().accuracy);
    }
  }
}

TEST(EngineTest, ParticipationMapRecordsTheDraws) {
  Scenario s = Parse(std::string(kSmall) + " heatmap_clients: 5");
  SimulationInputs inputs = LoadTestInputs(s);
  ParticipationMap map;
  absl::StatusOr<RunResult> r =
      Engine(s, inputs).Run(s.methods[0], s.patterns[0], 3, nullptr, &map);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(map.clients, 5);
  EXPECT_EQ(map.rounds, 40);
  int ones = 0;
  for (uint8_t bit : map.participated) ones += bit;
  EXPECT_NEAR(ones, 0.3 * 200, 4 * std::sqrt(200 * 0.21));
}

// A learning rate far too large makes local training diverge: the run goes on without those
// updates and counts them, as a tuning grid needs (it would otherwise stop at its worst point).
TEST(EngineTest, DivergingLocalTrainingIsCountedNotFatal) {
  for (const char* policy : {"", "round_policy: 'fedbuff' round_options: 'buffer_size: 2'"}) {
    SCOPED_TRACE(policy);
    Scenario s =
        Parse(std::string(R"pb(
                name: "diverging"
                model { backbone: "mlp" mlp_hidden: 8 }
                data { partition: "iid" max_train_samples: 400 max_test_samples: 100 }
                population { num_clients: 4 }
                participation { probabilities: "uniform" p_mean: 1.0 }
                devices { default_ms_per_sample: 1 }
                rounds: 6
                method { label: "m"
                         aggregator { kind: "average_participating" global_learning_rate: 4 }
                         recipe { learning_rate: 1000 })pb") +
              policy + " }");
    SimulationInputs inputs = LoadTestInputs(s);
    absl::StatusOr<RunResult> r = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->failed_trainings, 0);
  }
}

}  // namespace
}  // namespace fedcl::sim
