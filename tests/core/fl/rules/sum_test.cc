// The "sum" rule through the coordinator: a class-statistics module (peft::class_statistics.h) is
// the exact sum of what every device added, whatever the server's rule, clipping or staleness
// discount does to the learning beside it; and statistics that are not statistics are refused
// before anything changes.
#include <cmath>
#include <vector>

#include "core/base/random.h"
#include "core/fl/coordinator.h"
#include "core/peft/class_statistics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

constexpr int64_t kClasses = 3, kDim = 4, kStats = kClasses * kDim + kClasses;

// A head "m" (9 values) and statistics "stats", both with random starting values.
std::vector<StoredModule> Modules() {
  base::Rng rng(41);
  std::vector<StoredModule> modules(2);
  modules[0].spec = {"m", ModuleRole::kHead, {}};
  modules[0].values.Add("w", {2, 3}, true);
  modules[0].values.Add("b", {3}, true);
  for (int64_t i = 0; i < 9; ++i) modules[0].values.flat_values()[i] = rng.Normal(0.2, 1.0);
  modules[1].spec = {"stats", ModuleRole::kClassStatistics, {}};
  modules[1].values = peft::NewClassStatistics("stats", kClasses, kDim);
  for (int64_t c = 0; c < kClasses; ++c) {
    modules[1].values.values(1)[c] = static_cast<float>(5 + c);
    for (int64_t k = 0; k < kDim; ++k)
      modules[1].values.values(0)[c * kDim + k] = static_cast<float>(rng.Normal(3.0, 2.0));
  }
  return modules;
}

// One device's update: a head delta and the statistics of a few random samples.
struct Update {
  std::vector<float> head = std::vector<float>(9), stats = std::vector<float>(kStats, 0.0f);
  UpdateSubmission submission;
  Update(ClientId client, int64_t round, uint64_t seed, int64_t base_version) {
    base::Rng rng(seed);
    for (float& v : head) v = static_cast<float>(rng.Normal(0.0, 2.0));
    for (int s = 0; s < 7; ++s) {
      const int64_t c = static_cast<int64_t>(rng.UniformInt(kClasses));
      stats[kClasses * kDim + c] += 1.0f;
      for (int64_t k = 0; k < kDim; ++k) stats[c * kDim + k] += static_cast<float>(rng.Normal());
    }
    submission.client = client;
    submission.round = round;
    submission.num_samples = 7;
    submission.local_steps = 1;
    submission.modules.push_back(
        {"m", base_version, {{"w", {2, 3}}, {"b", {3}}}, absl::MakeSpan(head)});
    submission.modules.push_back({"stats",
                                  base_version,
                                  {{"class_sums", {kClasses, kDim}}, {"class_counts", {kClasses}}},
                                  absl::MakeSpan(stats)});
  }
};

std::vector<float> ValuesOf(const Coordinator& c, const std::string& name) {
  for (const ModuleSnapshot& m : c.Modules()) {
    if (m.spec.name == name)
      return {m.values->flat_values().data(),
              m.values->flat_values().data() + m.values->num_values()};
  }
  return {};
}

class SumRuleTest : public ::testing::Test {
 protected:
  std::unique_ptr<Coordinator> Make(CoordinatorOptions options) {
    auto c = Coordinator::Create(options, clock_, &store_, Modules());
    EXPECT_TRUE(c.ok()) << c.status();
    for (ClientId id = 1; id <= 4; ++id) EXPECT_TRUE((*c)->Enroll(id).ok());
    return *std::move(c);
  }
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  MemoryStateStore store_;
};

TEST_F(SumRuleTest, StatisticsAreSummedExactlyWhileTheLearningBesideThemIsClipped) {
  CoordinatorOptions options;  // FedAU with γ = 2, a tight clip: the head is scaled, not stats
  options.aggregator.global_learning_rate = 2.0;
  options.max_update_norm = 0.5;
  options.norm_policy = NormPolicy::kClip;
  options.round = {.name = "barrier", .reporters = 1};
  auto c = Make(options);
  const std::vector<float> before = ValuesOf(*c, "stats");
  std::vector<double> expected(before.begin(), before.end());
  for (ClientId id = 1; id <= 3; ++id) {
    Update u(id, 0, 100 + id, 0);
    for (int64_t i = 0; i < kStats; ++i) expected[i] += u.stats[i];
    absl::StatusOr<SubmitResult> r = c->Submit(u.submission);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->clipped);  // the head's norm alone is far above 0.5
  }
  ASSERT_TRUE(c->Report(0, 1, 0).ok());
  const std::vector<float> after = ValuesOf(*c, "stats");
  for (int64_t i = 0; i < kStats; ++i)
    EXPECT_EQ(after[i], static_cast<float>(expected[i])) << i;  // one float rounding, no more
  EXPECT_TRUE(peft::CheckClassStatistics(*c->Modules()[1].values, kClasses, kDim).ok());
}

TEST_F(SumRuleTest, AStaleUpdatesStatisticsAreNotDiscounted) {
  CoordinatorOptions options;
  options.aggregator.name = "average_participating";
  options.round = {.name = "fedbuff", .round_duration = absl::Seconds(30)};
  options.round.options = "buffer_size: 1 max_staleness: 4";
  auto c = Make(options);
  Update first(1, 0, 7, 0);
  ASSERT_TRUE(c->Submit(first.submission).ok());  // closes buffer 0
  const std::vector<float> before = ValuesOf(*c, "stats");
  Update late(2, 0, 8, 0);  // trained on version 0, one version late: weight 1/sqrt(2)
  const std::vector<float> sent = late.stats;  // Submit scales the learning it folds in place
  absl::StatusOr<SubmitResult> r = c->Submit(late.submission);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->weight, 1.0 / std::sqrt(2.0), 1e-12);
  const std::vector<float> after = ValuesOf(*c, "stats");
  for (int64_t i = 0; i < kStats; ++i)
    EXPECT_EQ(after[i], static_cast<float>(double{before[i]} + sent[i])) << i;
}

TEST_F(SumRuleTest, CountsThatAreNotCountsAreRefusedAndChangeNothing) {
  CoordinatorOptions options;
  options.round = {.name = "barrier", .reporters = 1};
  auto c = Make(options);
  const std::vector<float> head = ValuesOf(*c, "m"), stats = ValuesOf(*c, "stats");
  const auto refused = [&](auto&& corrupt, const std::string& says) {
    Update u(1, 0, 9, 0);
    corrupt(u.stats);
    absl::StatusOr<SubmitResult> r = c->Submit(u.submission);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << says << ": " << r.status();
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr(says));
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr("'stats'"));
  };
  refused([](std::vector<float>& s) { s[kClasses * kDim + 1] = -1.0f; }, "class_counts[1] is -1");
  refused([](std::vector<float>& s) { s[kClasses * kDim + 2] += 0.5f; }, "class_counts[2]");
  refused(
      [](std::vector<float>& s) {
        s[kClasses * kDim] = 0.0f;
        s[0] = 1.0f;  // sums for class 0 without a sample
      },
      "class_sums[0] is not zero");
  refused([](std::vector<float>& s) { s[kDim + 1] = NAN; }, "class_sums[1] has a non-finite");
  EXPECT_EQ(ValuesOf(*c, "m"), head);
  EXPECT_EQ(ValuesOf(*c, "stats"), stats);
  Update fine(1, 0, 9, 0);  // the same device's real statistics still go through
  EXPECT_TRUE(c->Submit(fine.submission).ok());
  // A statistics module that is not one is refused when the coordinator starts.
  std::vector<StoredModule> modules = Modules();
  modules[1].values.values(1)[0] = -2.0f;
  absl::Status bad = Coordinator::Create(options, clock_, nullptr, std::move(modules)).status();
  EXPECT_TRUE(absl::IsInvalidArgument(bad));
  EXPECT_THAT(bad.message(), ::testing::HasSubstr("module 'stats': class statistics"));
}

}  // namespace
}  // namespace fedcl::fl
