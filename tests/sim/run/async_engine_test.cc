// The buffered asynchronous run on the virtual clock (sim/run/async_engine.cc).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "gtest/gtest.h"
#include "sim/run/engine.h"
#include "tests/sim/run/run_test_util.h"

namespace fedcl::sim {
namespace {

// Four always-available devices; the profiles below make client 3 four times slower.
std::string ScenarioText(const std::string& method, int rounds, const std::string& devices = "") {
  return R"pb(
           name: "async"
           model { backbone: "mlp" mlp_hidden: 8 }
           data { partition: "iid" max_train_samples: 800 max_test_samples: 200 }
           population { num_clients: 4 }
           participation { probabilities: "uniform" p_mean: 1.0 }
           recipe { local_steps: 5 batch_size: 16 }
           eval_every: 2
         )pb" +
         method + " rounds: " + std::to_string(rounds) + " devices { default_ms_per_sample: 10 " +
         (devices.empty() ? std::string("async_tick_s: 1") : devices) + " }";
}

SimulationInputs SlowClientThree(const Scenario& s) {
  SimulationInputs inputs = LoadTestInputs(s);
  // 80 samples: 0.8 s for clients 0-2, 3.2 s for client 3.
  absl::StatusOr<DeviceProfiles> profiles =
      DeviceProfiles::Parse("client,ms_per_sample,bandwidth_kbps\n3,40,0\n", DeviceProfile{10, 0});
  EXPECT_TRUE(profiles.ok());
  inputs.profiles = std::move(*profiles);
  return inputs;
}

int64_t Sum(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), 0LL); }

TEST(AsyncEngineTest, BuffersFillWithLateUpdatesFromSlowDevices) {
  Scenario s = Parse(ScenarioText(R"pb(method {
                                         label: "fedbuff"
                                         aggregator { kind: "average_participating" }
                                         round_policy: "fedbuff"
                                         round_options: "buffer_size: 2 max_staleness: 4"
                                       })pb",
                                  12));
  SimulationInputs inputs = SlowClientThree(s);
  absl::StatusOr<RunResult> r = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  // Every buffer closed with K updates, each accepted once; nothing was too late.
  EXPECT_EQ(r->updates, 12 * 2);
  EXPECT_EQ(Sum(r->staleness_histogram), r->updates);
  EXPECT_EQ(r->refused_stale, 0);
  ASSERT_GE(r->staleness_histogram.size(), 2u) << "the slow device's updates arrive late";
  EXPECT_GT(r->staleness_histogram[0], 0);
  EXPECT_LE(r->staleness_histogram.size(), 5u);  // staleness <= max_staleness 4
  ASSERT_EQ(r->evals.size(), 6u);
  EXPECT_EQ(r->evals.back().round, 12);
  EXPECT_EQ(r->evals.back().updates, 24);
  for (size_t i = 1; i < r->evals.size(); ++i) {
    EXPECT_GT(r->evals[i].virtual_seconds, r->evals[i - 1].virtual_seconds);
  }
  EXPECT_LT(r->evals.back().weight_error, 0) << "not measured against the pattern's p_n";
}

TEST(AsyncEngineTest, UpdatesBeyondMaxStalenessAreRefusedAndNotCounted) {
  Scenario s = Parse(ScenarioText(R"pb(method {
                                         label: "fedbuff"
                                         aggregator { kind: "average_participating" }
                                         round_policy: "fedbuff"
                                         round_options: "buffer_size: 1 max_staleness: 0"
                                       })pb",
                                  10));
  SimulationInputs inputs = SlowClientThree(s);
  absl::StatusOr<RunResult> r = Engine(s, inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  // K = 1: of the updates trained on one version, the first to arrive closes it and the rest
  // are late.
  EXPECT_GT(r->refused_stale, 0);
  ASSERT_EQ(r->staleness_histogram.size(), 1u);
  EXPECT_EQ(r->staleness_histogram[0], 10);
  EXPECT_EQ(r->updates, 10);
}

TEST(AsyncEngineTest, SameResultWhateverTheThreadCount) {
  const std::string method =
      R"pb(method { label: "fedbuff" round_policy: "fedbuff" round_options: "buffer_size: 2" })pb";
  Scenario one = Parse(ScenarioText(method, 8) + " threads: 1");
  Scenario two = Parse(ScenarioText(method, 8) + " threads: 2");
  SimulationInputs inputs = SlowClientThree(one);
  absl::StatusOr<RunResult> a =
      Engine(one, inputs).Run(one.methods[0], one.patterns[0], 3, nullptr);
  absl::StatusOr<RunResult> b =
      Engine(two, inputs).Run(two.methods[0], two.patterns[0], 3, nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->staleness_histogram, b->staleness_histogram);
  ASSERT_EQ(a->evals.size(), b->evals.size());
  for (size_t i = 0; i < a->evals.size(); ++i) {
    EXPECT_EQ(a->evals[i].accuracy, b->evals[i].accuracy);
    EXPECT_EQ(a->evals[i].loss, b->evals[i].loss);
    EXPECT_EQ(a->evals[i].virtual_seconds, b->evals[i].virtual_seconds);
  }
}

// A synchronous round waits for its slowest participant; buffered aggregation does not, so the
// same number of updates takes less virtual time.
TEST(AsyncEngineTest, ASlowDeviceHoldsUpSynchronousRoundsButNotBuffers) {
  Scenario sync = Parse(ScenarioText(R"pb(method {
                                            label: "sync"
                                            aggregator { kind: "average_participating" }
                                          })pb",
                                     10));
  Scenario async = Parse(ScenarioText(R"pb(method {
                                             label: "async"
                                             aggregator { kind: "average_participating" }
                                             round_policy: "fedbuff"
                                             round_options: "buffer_size: 2 staleness: constant"
                                           })pb",
                                      20));
  SimulationInputs inputs = SlowClientThree(sync);
  absl::StatusOr<RunResult> a =
      Engine(sync, inputs).Run(sync.methods[0], sync.patterns[0], 1, nullptr);
  absl::StatusOr<RunResult> b =
      Engine(async, inputs).Run(async.methods[0], async.patterns[0], 1, nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->updates, 40);
  ASSERT_EQ(b->updates, 40);
  EXPECT_DOUBLE_EQ(a->evals.back().virtual_seconds, 10 * 3.2);
  EXPECT_LT(b->evals.back().virtual_seconds, 0.75 * a->evals.back().virtual_seconds);
}

TEST(AsyncEngineTest, ImpossibleConfigurationsAreRefusedNamingTheField) {
  struct Case {
    std::string method, message, devices;
  };
  const std::vector<Case> cases = {
      {R"pb(method { label: "a" round_policy: "fedbuff" round_options: "buffer_size: 5" })pb",
       "buffer_size 5 exceeds the 4 clients", ""},
      {R"pb(method { label: "a" round_policy: "deadline_quota" })pb", "is synchronous", ""},
      {R"pb(method { label: "a" round_policy: "fedbuf" })pb", "unknown round policy", ""},
      {R"pb(method { label: "a" round_options: "buffer_size: 2" })pb", "round_options", ""},
      {R"pb(method { label: "a" round_policy: "fedbuff" round_options: "max_staleness: -2" })pb",
       "max_staleness", ""},
      {R"pb(method { label: "a" })pb", "slowdown_max", "slowdown_max: 0.5"},
      {R"pb(method { label: "a" })pb", "async_tick_s", "async_tick_s: -1"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Scenario> s =
        ParseScenario(ScenarioText(c.method, 4, c.devices), "test.textproto");
    ASSERT_FALSE(s.ok()) << c.method;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.message), std::string::npos) << s.status();
  }
}

TEST(AsyncEngineTest, SlowdownsAreLogUniformPerDeviceAndSeed) {
  Scenario s = Parse(ScenarioText(R"pb(method { label: "a" })pb", 4, "slowdown_max: 8"));
  std::vector<double> factors;
  for (uint32_t n = 0; n < 2000; ++n) factors.push_back(DeviceSlowdown(s, 1, n));
  EXPECT_EQ(DeviceSlowdown(s, 1, 7), factors[7]);
  EXPECT_NE(DeviceSlowdown(s, 2, 7), factors[7]);
  int below_sqrt8 = 0;
  for (double k : factors) {
    EXPECT_GE(k, 1.0);
    EXPECT_LE(k, 8.0);
    below_sqrt8 += k < std::sqrt(8.0);
  }
  // log k is uniform on [0, log 8]: half of the devices are below sqrt(8).
  EXPECT_NEAR(below_sqrt8, 1000, 4 * std::sqrt(2000 * 0.25));
}

}  // namespace
}  // namespace fedcl::sim
