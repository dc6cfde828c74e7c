// Federated SimpleCIL end to end through the device code: learners of fed_simple_cil, their
// DeviceSessions and the coordinator's "sum" rule. Its defining property is an exact merge: after
// one sync, every device classifies as one SimpleCIL that saw all the devices' samples, including
// the classes the device itself never saw; and a lost acknowledgement adds nothing twice.
#include <memory>
#include <mutex>
#include <vector>

#include "core/base/clock.h"
#include "core/base/random.h"
#include "core/cl/learner.h"
#include "core/device/device_session.h"
#include "core/device/in_process_port.h"
#include "core/device/initial_modules.h"
#include "core/fl/coordinator.h"
#include "core/nn/model.h"
#include "gtest/gtest.h"
#include "tests/core/nn/test_models.h"
#include "tests/support/faulty_port.h"

namespace fedcl::device {
namespace {

constexpr int kDevices = 3, kClasses = 4;

std::unique_ptr<cl::Learner> MakeLearner(const std::string& method) {
  auto model = *nn::Model::Create(nn::testing::TinyConfig(nn::BackboneKind::kVit), 5);
  return *cl::Learner::Create(std::move(model), {.method = method});
}

// 8×8 images of `classes`: a random pattern per class plus noise.
void Batch(base::Rng& rng, const std::vector<int>& classes, int n, nn::Matrix* x,
           std::vector<int32_t>* y) {
  static const nn::Matrix patterns = [] {
    base::Rng p(17);
    nn::Matrix m(kClasses, 64);
    for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(p.Uniform(0.0, 0.7));
    return m;
  }();
  x->resize(n, 64);
  y->resize(n);
  for (int i = 0; i < n; ++i) {
    const int c = classes[rng.UniformInt(classes.size())];
    (*y)[i] = c;
    for (int j = 0; j < 64; ++j)
      (*x)(i, j) = patterns(c, j) + 0.1f * static_cast<float>(rng.Normal());
  }
}

class FedSimpleCilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int d = 0; d < kDevices; ++d) learners_.push_back(MakeLearner("fed_simple_cil"));
    std::vector<fl::StoredModule> initial = InitialModules(*learners_[0]);
    ASSERT_EQ(initial.size(), 1u);  // the statistics, nothing else
    EXPECT_EQ(initial[0].spec.role, fl::ModuleRole::kClassStatistics);
    fl::CoordinatorOptions options;  // FedAU for learning; statistics are summed regardless
    options.aggregator.global_learning_rate = 0.5;
    options.round = {.name = "barrier", .reporters = 1};
    coordinator_ = *fl::Coordinator::Create(options, clock_, nullptr, std::move(initial));
    ServerInfo info;
    info.protocol = std::string(kProtocol);
    port_ = std::make_unique<InProcessPort>(*coordinator_, info);
    faulty_ = std::make_unique<testing::FaultyPort>(*port_);
    for (int d = 0; d < kDevices; ++d) {
      sessions_.push_back(std::make_unique<DeviceSession>(
          SessionOptions{.client_id = static_cast<fl::ClientId>(d + 1)}, *learners_[d],
          SessionEnvironment{.port = faulty_.get(), .mu = &mu_}));
      ASSERT_TRUE(sessions_[d]->Join().ok());
    }
  }
  // Device d learns `batches` batches of `classes`; the reference learns the same batches.
  void Learn(int d, const std::vector<int>& classes, int batches, uint64_t seed) {
    base::Rng rng(seed);
    nn::Matrix x;
    std::vector<int32_t> y;
    std::lock_guard<std::mutex> lock(mu_);
    for (int b = 0; b < batches; ++b) {
      Batch(rng, classes, 16, &x, &y);
      ASSERT_TRUE(learners_[d]->Learn(x, y).ok());
      ASSERT_TRUE(pooled_->Learn(x, y).ok());
      sessions_[d]->AfterLearnLocked(x.rows(), 0.0);
    }
    ASSERT_TRUE(sessions_[d]->CommitLocked().ok());
  }
  void CloseRound() {
    auto closed = coordinator_->Report(0, 1, coordinator_->current_round());
    ASSERT_TRUE(closed.ok() && closed->closed && closed->close_status.ok());
  }
  // The class counts the server holds.
  std::vector<float> ServerCounts() {
    const nn::ParameterSet& stats = *coordinator_->Modules()[0].values;
    return {stats.values(1), stats.values(1) + kClasses};
  }

  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  std::unique_ptr<fl::Coordinator> coordinator_;
  std::unique_ptr<InProcessPort> port_;
  std::unique_ptr<testing::FaultyPort> faulty_;
  std::mutex mu_;
  std::vector<std::unique_ptr<cl::Learner>> learners_;
  std::vector<std::unique_ptr<DeviceSession>> sessions_;
  // One SimpleCIL that sees every device's samples: what the federation must equal.
  std::unique_ptr<cl::Learner> pooled_ = MakeLearner("simple_cil");
};

TEST_F(FedSimpleCilTest, AfterOneSyncEveryDeviceClassifiesAsOneLearnerOfAllTheSamples) {
  for (int d = 0; d < kDevices; ++d) ASSERT_TRUE(sessions_[d]->Begin().ok());
  Learn(0, {0, 1}, 3, 100);  // each device sees some classes only
  Learn(1, {2, 3}, 2, 101);
  Learn(2, {1, 2}, 4, 102);
  for (int d = 0; d < kDevices; ++d) {
    absl::StatusOr<SubmitOutcome> out = sessions_[d]->Submit(0);
    ASSERT_TRUE(out.ok()) << out.status();
    // The upload is the statistics the device added: sums and counts, nothing more.
    ASSERT_EQ(faulty_->submitted_updates.back().modules.size(), 1u);
    EXPECT_EQ(faulty_->submitted_updates.back().modules[0].values.size(),
              size_t{kClasses} * (learners_[0]->model().backbone().feature_dim() + 1));
  }
  CloseRound();
  EXPECT_EQ(ServerCounts()[0] + ServerCounts()[1] + ServerCounts()[2] + ServerCounts()[3],
            16.0f * (3 + 2 + 4));
  for (int d = 0; d < kDevices; ++d) ASSERT_TRUE(sessions_[d]->Begin().ok());

  base::Rng rng(7);
  nn::Matrix x;
  std::vector<int32_t> y;
  Batch(rng, {0, 1, 2, 3}, 200, &x, &y);
  const std::vector<cl::Prediction> expected = *pooled_->Predict(x);
  int correct = 0;
  for (size_t i = 0; i < expected.size(); ++i) correct += expected[i].label == y[i];
  EXPECT_GT(correct, 150);  // the classes are separable: the comparison below means something
  for (int d = 0; d < kDevices; ++d) {
    const std::vector<cl::Prediction> got = *learners_[d]->Predict(x);
    int differ = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      differ += got[i].label != expected[i].label;
      EXPECT_NEAR(got[i].confidence, expected[i].confidence, 1e-4) << "device " << d << " " << i;
    }
    EXPECT_EQ(differ, 0) << "device " << d;  // device 0 predicts classes 2 and 3 it never saw
  }
}

TEST_F(FedSimpleCilTest, ALostAcknowledgementAddsTheStatisticsOnce) {
  for (int d = 0; d < 2; ++d) ASSERT_TRUE(sessions_[d]->Begin().ok());
  Learn(0, {0, 1}, 2, 200);
  Learn(1, {3}, 1, 201);
  faulty_->lose_acknowledgements = 1;
  EXPECT_TRUE(absl::IsUnavailable(sessions_[0]->Submit(0).status()));  // the server kept it
  ASSERT_TRUE(sessions_[1]->Submit(0).ok());
  CloseRound();
  // Device 0 learns more, then resolves the lost reply and submits only the new samples.
  Learn(0, {0}, 1, 202);
  absl::StatusOr<RoundWork> work = sessions_[0]->Begin();
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_TRUE(work->train);
  ASSERT_TRUE(sessions_[0]->Submit(work->round).ok());
  CloseRound();
  std::vector<float> pooled(kClasses, 0.0f);
  const cl::LearnerProgress progress = pooled_->ExportProgress();
  const std::vector<int64_t>& counts = progress.method.ints.at("class_counts");
  for (int c = 0; c < kClasses; ++c) pooled[c] = static_cast<float>(counts[c]);
  EXPECT_EQ(ServerCounts(), pooled);  // 16 + 16 + 16 + 16 samples, each counted once
}

TEST_F(FedSimpleCilTest, StatisticsThatAreNotStatisticsAreRefusedOnTheDevice) {
  // fed_simple_cil keeps nothing private: its statistics travel as the shared module.
  cl::LearnerProgress progress = learners_[0]->ExportProgress();
  EXPECT_TRUE(progress.method.empty());
  progress.method.floats["class_sums"] = std::vector<float>(4, 1.0f);
  absl::Status refused = learners_[0]->RestoreProgress(progress);
  EXPECT_TRUE(absl::IsInvalidArgument(refused));
  EXPECT_NE(refused.message().find("fed_simple_cil keeps no private state"), std::string::npos);
  // A negative count (a corrupted download or store) is refused at prediction, naming it.
  Learn(0, {0, 1}, 1, 300);
  {
    std::lock_guard<std::mutex> lock(mu_);
    learners_[0]->SharedModules()[0]->values(1)[1] = -3.0f;
  }
  nn::Matrix x;
  std::vector<int32_t> y;
  base::Rng rng(1);
  Batch(rng, {0}, 4, &x, &y);
  absl::Status predicted = learners_[0]->Predict(x).status();
  EXPECT_TRUE(absl::IsInvalidArgument(predicted));
  EXPECT_NE(predicted.message().find("class_counts[1] is -3"), std::string::npos) << predicted;
}

}  // namespace
}  // namespace fedcl::device
