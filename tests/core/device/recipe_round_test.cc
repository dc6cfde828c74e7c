// TrainRecipeRound against its definition (algorithms.md §1.4), written out here as a reference:
// start from the server's values, a fresh optimizer from the round's recipe, only the server's
// modules trainable, minibatches of the device's samples shuffled by the stream keyed by
// (seed, client, round) and taken in order, cyclically; the update is y − x per module. The
// device-side code (a recipe cl::Learner in a DeviceSession) must submit exactly that.
#include "core/device/recipe_round.h"

#include <mutex>
#include <string>
#include <vector>

#include "core/base/clock.h"
#include "core/base/random.h"
#include "core/device/in_process_port.h"
#include "core/fl/client_model.h"
#include "core/fl/coordinator.h"
#include "core/nn/training.h"
#include "gtest/gtest.h"
#include "tests/support/faulty_port.h"

namespace fedcl::device {
namespace {

constexpr fl::ClientId kClient = 4;
constexpr uint64_t kSeed = 11;

nn::ModelConfig Tiny() {
  nn::ModelConfig c;
  c.backbone = nn::BackboneKind::kMlp;
  c.mlp.hidden = {12};
  c.image_height = 4;
  c.image_width = 4;
  c.num_classes = 3;
  return c;
}

std::unique_ptr<nn::Model> TinyModel() {
  auto model = nn::Model::Create(Tiny(), 3);
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

data::Dataset RandomData(int n) {
  base::Rng rng(5);
  data::Dataset d;
  d.images.resize(n, 16);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 16; ++j) d.images(i, j) = static_cast<float>(rng.Normal(0.2, 1.3));
  for (int i = 0; i < n; ++i) d.labels.push_back(static_cast<int32_t>(rng.UniformInt(3)));
  d.num_classes = 3;
  d.channels = 1;
  d.height = d.width = 4;
  return d;
}

class RecipeRoundTest : public ::testing::Test {
 protected:
  void SetUp() override {
    recipe_ = {.local_steps = 7,
               .batch_size = 5,
               .learning_rate = 0.05f,
               .momentum = 0.9f,
               .weight_decay = 1e-3f,
               .clip_grad_norm = 2.0f};
    std::vector<fl::ModuleSpec> specs(2);
    specs[0] = {"head", fl::ModuleRole::kHead, {}};
    specs[1] = {"ssf", fl::ModuleRole::kPet, {.kind = peft::PetKind::kSsf}};
    auto model = TinyModel();
    absl::StatusOr<std::vector<fl::StoredModule>> initial =
        fl::CreateInitialModules(*model, specs, 7);
    ASSERT_TRUE(initial.ok()) << initial.status();
    // Random values, not the initialiser's ones and zeros, so a wrong start cannot hide.
    base::Rng rng(9);
    for (fl::StoredModule& m : *initial)
      for (float& v : m.values.flat_values()) v = static_cast<float>(rng.Normal(0.0, 0.5));
    fl::CoordinatorOptions options;
    options.recipe = recipe_;
    options.round = {.name = "barrier", .reporters = 1};
    auto coordinator = fl::Coordinator::Create(options, clock_, nullptr, *std::move(initial));
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    coordinator_ = *std::move(coordinator);
    ServerInfo info;
    info.protocol = std::string(kProtocol);
    port_ = std::make_unique<InProcessPort>(*coordinator_, info);
    recorder_ = std::make_unique<testing::FaultyPort>(*port_);
    auto learner = cl::Learner::Create(TinyModel(), {.method = "recipe", .seed = 1});
    ASSERT_TRUE(learner.ok()) << learner.status();
    learner_ = *std::move(learner);
    session_ = std::make_unique<DeviceSession>(
        SessionOptions{.client_id = kClient, .unsent = SessionOptions::Unsent::kDrop}, *learner_,
        SessionEnvironment{.port = recorder_.get(), .mu = &mu_});
  }

  // The reference: §1.4 on a fresh replica of the server's current modules.
  std::vector<std::vector<float>> ReferenceDeltas(const data::Dataset& data,
                                                  std::vector<int> samples, int64_t round,
                                                  double* mean_loss) {
    fl::ClientModel replica(TinyModel());
    std::vector<nn::ParameterSet*> sets;
    for (const fl::ModuleSnapshot& m : coordinator_->Modules()) {
      EXPECT_TRUE(replica.Install(m.spec, m.version, *m.values).ok());
      sets.push_back(replica.Find(m.spec.name));
    }
    for (nn::ParameterSet* set : replica.model().parameter_sets())
      set->SetAllTrainable(std::find(sets.begin(), sets.end(), set) != sets.end());
    std::vector<Eigen::VectorXf> start;
    for (nn::ParameterSet* set : sets) start.push_back(set->flat_values());
    base::Rng::ForStream(kSeed, {kClient, static_cast<uint64_t>(round)}).Shuffle(samples);
    std::unique_ptr<nn::Optimizer> optimizer = nn::MakeOptimizer(recipe_);
    nn::Matrix x;
    std::vector<int32_t> y;
    std::vector<int> batch(recipe_.batch_size);
    size_t cursor = 0;
    double loss_sum = 0.0;
    for (int step = 0; step < recipe_.local_steps; ++step) {
      for (int& index : batch) {
        index = samples[cursor];
        cursor = (cursor + 1) % samples.size();
      }
      EXPECT_TRUE(data::GatherBatch(data, batch, &x, &y).ok());
      loss_sum += nn::TrainStep(replica.model(), *optimizer, x, y,
                                {.clip_grad_norm = recipe_.clip_grad_norm});
    }
    *mean_loss = loss_sum / recipe_.local_steps;
    std::vector<std::vector<float>> deltas;
    for (size_t i = 0; i < sets.size(); ++i) {
      Eigen::VectorXf d = sets[i]->flat_values() - start[i];
      deltas.emplace_back(d.data(), d.data() + d.size());
    }
    return deltas;
  }

  base::ManualClock clock_{absl::UnixEpoch()};
  nn::Recipe recipe_;
  std::unique_ptr<fl::Coordinator> coordinator_;
  std::unique_ptr<InProcessPort> port_;
  std::unique_ptr<testing::FaultyPort> recorder_;
  std::unique_ptr<cl::Learner> learner_;
  std::mutex mu_;
  std::unique_ptr<DeviceSession> session_;
};

TEST_F(RecipeRoundTest, SubmitsExactlyWhatTheRecipeTrainsFromTheServersValues) {
  const data::Dataset data = RandomData(60);
  std::vector<int> indices;
  for (int i = 1; i < 60; i += 3) indices.push_back(i);  // 20 of the 60 samples
  for (int round = 0; round < 2; ++round) {
    absl::StatusOr<RoundWork> work = session_->Begin();
    ASSERT_TRUE(work.ok()) << work.status();
    ASSERT_TRUE(work->train);
    double expected_loss = 0.0;
    const std::vector<std::vector<float>> expected =
        ReferenceDeltas(data, indices, work->round, &expected_loss);
    ASSERT_TRUE(TrainRecipeRound(*learner_, *session_, mu_, work->recipe, data, indices,
                                 {kSeed, kClient, work->round})
                    .ok());
    absl::StatusOr<SubmitOutcome> outcome = session_->Submit(work->round);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_EQ(outcome->kind, SubmitOutcome::Kind::kAccepted);
    ASSERT_EQ(recorder_->submitted_updates.size(), static_cast<size_t>(round + 1));
    const fl::LocalUpdate& sent = recorder_->submitted_updates.back();
    EXPECT_EQ(sent.num_samples, int64_t{recipe_.local_steps} * recipe_.batch_size);
    EXPECT_EQ(sent.local_steps, recipe_.local_steps);
    EXPECT_EQ(sent.loss, expected_loss);
    ASSERT_EQ(sent.modules.size(), 2u);
    for (size_t m = 0; m < 2; ++m) {
      EXPECT_EQ(sent.modules[m].values, expected[m]) << "round " << round << " module " << m;
    }
    ASSERT_TRUE(coordinator_->CloseRound().ok());  // the next round starts from the new model
  }
}

// A diverging round changes nothing: the modules are back to the server's values and nothing is
// queued for the round.
TEST_F(RecipeRoundTest, ADivergingRoundIsDiscarded) {
  recipe_.learning_rate = 1e25f;
  recipe_.clip_grad_norm = 0.0f;
  const data::Dataset data = RandomData(30);
  absl::StatusOr<RoundWork> work = session_->Begin();
  ASSERT_TRUE(work.ok() && work->train);
  std::vector<Eigen::VectorXf> before;
  for (nn::ParameterSet* s : learner_->SharedModules()) before.push_back(s->flat_values());
  const absl::Status trained =
      TrainRecipeRound(*learner_, *session_, mu_, recipe_, data, {}, {kSeed, kClient, 0});
  EXPECT_TRUE(absl::IsFailedPrecondition(trained)) << trained;
  std::vector<nn::ParameterSet*> after = learner_->SharedModules();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i]->flat_values(), before[i]);
  absl::StatusOr<SubmitOutcome> outcome = session_->Submit(work->round);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, SubmitOutcome::Kind::kNothingToSubmit);
}

}  // namespace
}  // namespace fedcl::device
