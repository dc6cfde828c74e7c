#include "core/cl/learner.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/cl/accumulation.h"
#include "core/cl/instance_pool.h"
#include "core/nn/model.h"
#include "gtest/gtest.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::cl {
namespace {

// Four classes of 8×8 images: a fixed random pattern per class plus noise, in [0, 1]. The
// shifted domain is the contrast inversion 1 − x.
class Stream {
 public:
  explicit Stream(uint64_t seed) : rng_(seed), patterns_(4, 64) {
    for (int c = 0; c < 4; ++c)
      for (int j = 0; j < 64; ++j) patterns_(c, j) = static_cast<float>(rng_.Uniform(0.0, 0.6));
  }
  void Batch(int n, bool inverted, nn::Matrix* x, std::vector<int32_t>* y) {
    x->resize(n, 64);
    y->resize(n);
    for (int i = 0; i < n; ++i) {
      const int c = static_cast<int>(rng_.UniformInt(4));
      (*y)[i] = c;
      for (int j = 0; j < 64; ++j) {
        const float v =
            std::clamp(patterns_(c, j) + 0.05f * static_cast<float>(rng_.Normal()), 0.0f, 1.0f);
        (*x)(i, j) = inverted ? 1.0f - v : v;
      }
    }
  }

 private:
  base::Rng rng_;
  nn::Matrix patterns_;
};

// A learner on the tiny ViT: adapters of bottleneck 4 on blocks 0 and 1 (LAE: block 0), SEMA's
// descriptors of bottleneck 3, and the test's own knobs after those.
std::unique_ptr<Learner> MakeLearner(LearnerOptions options) {
  nn::ModelConfig config = nn::testing::TinyConfig(nn::BackboneKind::kVit);
  auto model = *nn::Model::Create(config, 5);
  std::string base;
  if (options.method == "sema" || options.method == "sema_replay") {
    base = "expandable_blocks: [0, 1] adapter_bottleneck: 4 descriptor_bottleneck: 3 ";
  } else if (options.method == "sequential_adapter") {
    base = "blocks: [0, 1] adapter_bottleneck: 4 ";
  } else if (options.method == "lae") {
    base = "blocks: [0] adapter_bottleneck: 4 ";
  }
  options.method_options = base + options.method_options;
  auto learner = Learner::Create(std::move(model), options);
  EXPECT_TRUE(learner.ok()) << learner.status();
  return std::move(*learner);
}

TEST(LearnerTest, SemaGrowsOnAShiftNotOnItsOwnDataAndRefusesAtTheCap) {
  LearnerOptions options{.method = "sema", .learning_rate = 0.05f};
  constexpr int kNewModuleSteps = 40, kConfirmBatches = 2;
  options.method_options = "new_module_steps: 40 max_adapters_per_block: 2";
  auto learner = MakeLearner(options);
  ExpansionHooks& sema = *learner->expansion();
  Stream stream(3);
  nn::Matrix x;
  std::vector<int32_t> y;
  // Task 0: the first adapters train, then clean batches are detection batches that never grow.
  for (int step = 0; step < 120; ++step) {
    stream.Batch(32, false, &x, &y);
    LearnStats s = *learner->Learn(x, y);
    EXPECT_EQ(s.grown_block, -1) << "step " << step;
    EXPECT_EQ(s.detected, step >= kNewModuleSteps);
  }
  EXPECT_EQ(sema.AdaptersPerBlock(), (std::vector<int>{1, 1}));
  EXPECT_TRUE(sema.TakeProposals().empty());  // the initial adapters are not proposals
  // The inverted domain: some block grows after confirm_batches detection batches.
  int grown_at = -1;
  for (int step = 0; step < 10 && grown_at < 0; ++step) {
    stream.Batch(32, true, &x, &y);
    LearnStats s = *learner->Learn(x, y);
    if (s.grown_block >= 0) grown_at = step;
  }
  ASSERT_EQ(grown_at, kConfirmBatches - 1);
  std::vector<ModuleProposal> proposals = sema.TakeProposals();
  ASSERT_EQ(proposals.size(), 1u);
  EXPECT_EQ(proposals[0].index, 1);
  EXPECT_EQ(proposals[0].mean.size(), 8u);
  for (float v : proposals[0].variance) EXPECT_GT(v, 0.0f);
  // Train the new adapter, then a third domain (clean again is known; noise-free inverted is
  // known now): at the cap, growth is refused with ResourceExhausted and nothing is added.
  for (int step = 0; step < kNewModuleSteps; ++step) {
    stream.Batch(32, true, &x, &y);
    ASSERT_TRUE(learner->Learn(x, y).ok());
  }
  const std::vector<int> before = sema.AdaptersPerBlock();
  int refused = 0;
  for (int step = 0; step < 20; ++step) {
    stream.Batch(32, false, &x, &y);
    x = x.array().square();  // a third domain
    LearnStats s = *learner->Learn(x, y);
    if (!s.refused.ok()) {
      EXPECT_EQ(s.refused.code(), absl::StatusCode::kResourceExhausted);
      ++refused;
    }
    if (s.grown_block >= 0) {
      EXPECT_LT(before[s.grown_block == 0 ? 0 : 1], 2);
    }
  }
  for (int a : sema.AdaptersPerBlock()) EXPECT_LE(a, 2);
  EXPECT_EQ(sema.growth_refusals(), refused);
}

// The cusum trigger: calibrated on the clean stream after the first adapters trained, it stays
// quiet on that stream, announces the inverted one within a few batches by growing one block,
// and, calibrated again on the inverted stream once the new adapter trained, stays quiet there.
// Fed the descriptors' per-sample z-scores and the head features' distance from their class's
// mean: the tiny random ViT's logits are too flat for its energy to say anything (the
// scenarios' pretrained ViT is where energy is measured).
class SemaCusumTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SemaCusumTest, GrowsOncePerShift) {
  LearnerOptions options{.method = "sema", .learning_rate = 0.05f};
  constexpr int kNewModuleSteps = 40, kCalibrationBatches = 16;
  options.method_options =
      absl::StrCat("new_module_steps: 40 trigger: cusum trigger_score: \"", GetParam(),
                   "\" calibration_samples: 512 false_alarms_per_10k: 1");
  auto learner = MakeLearner(options);
  ExpansionHooks& sema = *learner->expansion();
  Stream stream(5);
  nn::Matrix x;
  std::vector<int32_t> y;
  auto run = [&](int batches, bool inverted) {
    std::vector<int> grown_at;
    for (int step = 0; step < batches; ++step) {
      stream.Batch(32, inverted, &x, &y);
      absl::StatusOr<LearnStats> s = learner->Learn(x, y);
      EXPECT_TRUE(s.ok()) << s.status();
      if (s.ok() && s->grown_block >= 0) grown_at.push_back(step);
    }
    return grown_at;
  };
  // 6,400 clean samples at 1 false alarm per 10,000: at most one (without calibration, or
  // without the CUSUM's reset, it would grow to the cap).
  const std::vector<int> clean = run(kNewModuleSteps + kCalibrationBatches + 200, false);
  EXPECT_LE(clean.size(), 1u) << ::testing::PrintToString(clean);
  // The shift: found within 128 samples, and not announced again once the stream after it is
  // the new normal (3,200 samples: at most one false alarm there too).
  const std::vector<int> grown = run(kNewModuleSteps + kCalibrationBatches + 100, true);
  ASSERT_GE(grown.size(), 1u);
  EXPECT_LE(grown[0], 3);
  EXPECT_LE(grown.size(), 2u) << ::testing::PrintToString(grown);
  if (grown.size() == 2) EXPECT_GT(grown[1], grown[0] + kNewModuleSteps + kCalibrationBatches);
  EXPECT_EQ(sema.AdaptersPerBlock()[0] + sema.AdaptersPerBlock()[1],
            2 + static_cast<int>(clean.size() + grown.size()));
  EXPECT_EQ(sema.TakeProposals().size(), clean.size() + grown.size());
}

INSTANTIATE_TEST_SUITE_P(Scores, SemaCusumTest, ::testing::Values("descriptor", "class_features"));

// The cusum trigger's settings that cannot work are refused, naming the field.
TEST(LearnerTest, SemaCusumSettingsAreChecked) {
  for (const auto& [text, field] : std::vector<std::pair<std::string, std::string>>{
           {"trigger: window", "trigger"},
           {"trigger: cusum trigger_score: hdc", "trigger_score"},
           {"trigger: cusum calibration_samples: 4", "calibration_samples"},
           {"trigger: cusum false_alarms_per_10k: 0", "false_alarms_per_10k"}}) {
    absl::Status refused =
        Learner::Create(*nn::Model::Create(nn::testing::TinyConfig(nn::BackboneKind::kVit), 5),
                        {.method = "sema", .method_options = text})
            .status();
    EXPECT_TRUE(absl::IsInvalidArgument(refused)) << text;
    EXPECT_NE(refused.message().find(field), std::string::npos) << refused;
  }
}

// SEMA's pool shares descriptors: a device that runs a pooled adapter with the descriptor its
// founder trained does not grow again for the shift that adapter serves, while one that runs it
// without the descriptor does (every descriptor it has finds the stream unusual).
TEST(LearnerTest, PooledDescriptorKeepsADeviceFromRegrowingForAKnownShift) {
  LearnerOptions options{.method = "sema", .learning_rate = 0.05f};
  constexpr int kNewModuleSteps = 40;
  options.method_options = "new_module_steps: 40";
  nn::Matrix x;
  std::vector<int32_t> y;
  auto clean_task = [&](Learner& learner, Stream& stream) {
    for (int step = 0; step < 120; ++step) {
      stream.Batch(32, false, &x, &y);
      ASSERT_TRUE(learner.Learn(x, y).ok());
    }
  };
  auto founder = MakeLearner(options);
  Stream founder_stream(3);
  clean_task(*founder, founder_stream);
  int block = -1;
  for (int step = 0; step < 10 && block < 0; ++step) {
    founder_stream.Batch(32, true, &x, &y);
    block = founder->Learn(x, y)->grown_block;
  }
  ASSERT_GE(block, 0);
  ExpansionHooks& founder_sema = *founder->expansion();
  const std::vector<ModuleProposal> proposals = founder_sema.TakeProposals();
  ASSERT_EQ(proposals.size(), 1u);
  const int index = proposals[0].index;
  EXPECT_FALSE(founder_sema.ExpertDescriptor(block, index).has_value());  // still training
  for (int step = 0; step < kNewModuleSteps; ++step) {
    founder_stream.Batch(32, true, &x, &y);
    ASSERT_TRUE(founder->Learn(x, y).ok());
  }
  const std::optional<nn::ParameterSet> descriptor = founder_sema.ExpertDescriptor(block, index);
  ASSERT_TRUE(descriptor.has_value());
  EXPECT_EQ(descriptor->info(4).name, "losses");
  const nn::ParameterSet adapter = *founder_sema.Expert(block, index);
  const int position = block == 0 ? 0 : 1;  // in AdaptersPerBlock (blocks 0 and 1)

  for (bool with_descriptor : {true, false}) {
    SCOPED_TRACE(with_descriptor ? "with the descriptor" : "without it");
    auto device = MakeLearner(options);
    Stream stream(3);
    clean_task(*device, stream);
    ExpansionHooks& sema = *device->expansion();
    absl::StatusOr<int> added =
        sema.AddPooledExpert(block, adapter, with_descriptor ? &*descriptor : nullptr);
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_EQ(sema.ExpertDescriptor(block, *added).has_value(), with_descriptor);
    for (int step = 0; step < 10; ++step) {
      stream.Batch(32, true, &x, &y);
      ASSERT_TRUE(device->Learn(x, y).ok());
    }
    EXPECT_EQ(sema.AdaptersPerBlock()[position], with_descriptor ? 2 : 3);
  }
  // A descriptor of another shape is refused and adds nothing.
  auto device = MakeLearner(options);
  nn::ParameterSet wrong = *descriptor;
  wrong.set_name("wrong");
  nn::ParameterSet truncated("descriptor");
  truncated.Add("encoder", {3, 8}, false);
  ExpansionHooks& sema = *device->expansion();
  EXPECT_EQ(sema.AddPooledExpert(block, adapter, &truncated).status().code(),
            absl::StatusCode::kInvalidArgument);
  wrong.flat_values()(0) = NAN;
  EXPECT_EQ(sema.AddPooledExpert(block, adapter, &wrong).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sema.AdaptersPerBlock(), (std::vector<int>{1, 1}));
}

// A descriptor's plain SGD diverges on inputs of a large scale (a grown adapter upstream can
// raise it tenfold): the growth then trains it again with smaller steps, and what it keeps and
// shares is finite.
TEST(LearnerTest, ADescriptorThatDivergesIsTrainedAgainWithSmallerSteps) {
  LearnerOptions options{.method = "sema", .learning_rate = 0.01f};
  constexpr int kNewModuleSteps = 10;
  // A descriptor step far past the stable one for these inputs.
  options.method_options = "new_module_steps: 10 descriptor_learning_rate: 0.5";
  auto learner = MakeLearner(options);
  Stream stream(5);
  nn::Matrix x;
  std::vector<int32_t> y;
  for (int step = 0; step < kNewModuleSteps; ++step) {
    stream.Batch(32, false, &x, &y);
    x *= 50.0f;
    ASSERT_TRUE(learner->Learn(x, y).ok());
  }
  for (int block : {0, 1}) {
    const std::optional<nn::ParameterSet> descriptor =
        learner->expansion()->ExpertDescriptor(block, 0);
    ASSERT_TRUE(descriptor.has_value()) << block;
    EXPECT_TRUE(descriptor->flat_values().allFinite()) << block;
  }
  // Detection with it works: familiar data does not grow the blocks.
  for (int step = 0; step < 5; ++step) {
    stream.Batch(32, false, &x, &y);
    x *= 50.0f;
    EXPECT_EQ(learner->Learn(x, y)->grown_block, -1);
  }
}

// A device restarted from its exported progress (task bookkeeping and SEMA's private state)
// predicts exactly as before, finishes the growth in progress, and its descriptors still know
// the shift they grew for.
TEST(LearnerTest, SemaStateRestoresMidGrowthAndKeepsDetection) {
  LearnerOptions options{.method = "sema", .learning_rate = 0.05f};
  options.method_options = "new_module_steps: 40";
  options.task_at_shift = true;  // no BeginTask calls: the growth makes the classes old
  auto learner = MakeLearner(options);
  Stream stream(3);
  nn::Matrix x;
  std::vector<int32_t> y;
  for (int step = 0; step < 60; ++step) {
    stream.Batch(32, false, &x, &y);
    ASSERT_TRUE(learner->Learn(x, y).ok());
  }
  int grown = 0;
  for (int step = 0; step < 12; ++step) {  // grows, then is 10 steps into training the adapter
    stream.Batch(32, true, &x, &y);
    grown += learner->Learn(x, y)->grown_block >= 0;
  }
  ASSERT_EQ(grown, 1);
  learner->expansion()->TakeProposals();
  const LearnerProgress state = learner->ExportProgress();
  ASSERT_EQ(state.method.ints.at("growth_steps_left").size(), 1u);
  EXPECT_GT(state.method.ints.at("growth_steps_left")[0], 0);
  EXPECT_EQ(state.learned_classes, std::vector<bool>(4, true));

  auto restored = MakeLearner(options);
  ASSERT_TRUE(restored->RestoreProgress(state).ok());
  EXPECT_EQ(restored->expansion()->AdaptersPerBlock(), learner->expansion()->AdaptersPerBlock());
  EXPECT_EQ(restored->ExportProgress().learned_classes, state.learned_classes);
  EXPECT_EQ(restored->ExportProgress().method, state.method);
  // The head is a shared module the host restores itself.
  restored->model().head().parameters().flat_values() =
      learner->model().head().parameters().flat_values();
  stream.Batch(64, true, &x, &y);
  std::vector<Prediction> a = *learner->Predict(x), b = *restored->Predict(x);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].label, b[i].label);
    EXPECT_FLOAT_EQ(a[i].confidence, b[i].confidence);
  }
  // It finishes the growth, then neither domain grows it again.
  for (int step = 0; step < 80; ++step) {
    stream.Batch(32, step % 2 == 0, &x, &y);
    absl::StatusOr<LearnStats> s = restored->Learn(x, y);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->grown_block, -1) << "step " << step;
  }
  // A third domain does grow it: every restored descriptor finds it unusual.
  grown = 0;
  for (int step = 0; step < 10 && grown == 0; ++step) {
    stream.Batch(32, false, &x, &y);
    x = x.array().square();
    grown += restored->Learn(x, y)->grown_block >= 0;
  }
  EXPECT_EQ(grown, 1);
  // Bad state is refused with a message and leaves the fresh learner as it was.
  auto fresh = MakeLearner(options);
  const LearnerProgress untouched = fresh->ExportProgress();
  LearnerProgress broken = state;
  broken.method.floats.at("b0/a0/expert")[0] = std::nanf("");
  absl::Status refused = fresh->RestoreProgress(broken);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("non-finite"), std::string::npos) << refused;
  broken = state;
  broken.method.ints.at("blocks")[1] = 7;
  EXPECT_EQ(fresh->RestoreProgress(broken).code(), absl::StatusCode::kInvalidArgument);
  broken = state;
  broken.method.floats.erase("b1/a0/expert");
  EXPECT_EQ(fresh->RestoreProgress(broken).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fresh->expansion()->AdaptersPerBlock(), (std::vector<int>{1, 1}));
  EXPECT_EQ(fresh->ExportProgress().method, untouched.method);
  EXPECT_TRUE(fresh->RestoreProgress(state).ok());
}

TEST(LearnerTest, LaeEnsembleIsTheElementwiseMaxOfItsExperts) {
  LearnerOptions options{.method = "lae", .learning_rate = 0.05f};
  options.method_options = "steps_per_task: 20 warmup_steps: 5";
  auto learner = MakeLearner(options);
  Stream stream(4);
  nn::Matrix x;
  std::vector<int32_t> y;
  for (int task = 0; task < 2; ++task) {
    ASSERT_TRUE(learner->BeginTask({}).ok());
    for (int step = 0; step < 20; ++step) {
      stream.Batch(16, task == 1, &x, &y);
      ASSERT_TRUE(learner->Learn(x, y).ok());
    }
  }
  for (bool inverted : {false, true}) {
    stream.Batch(50, inverted, &x, &y);
    ASSERT_TRUE(learner->SetMethodOption("inference", "ensemble").ok());
    const std::vector<Prediction> ensemble = *learner->Predict(x);
    ASSERT_TRUE(learner->SetMethodOption("inference", "online").ok());
    const std::vector<Prediction> online = *learner->Predict(x);
    ASSERT_TRUE(learner->SetMethodOption("inference", "offline").ok());
    const std::vector<Prediction> offline = *learner->Predict(x);
    int online_differs = 0;
    for (size_t i = 0; i < ensemble.size(); ++i) {
      // max_c max(p_on, p_off) = max(max_c p_on, max_c p_off), with that expert's label.
      EXPECT_NEAR(ensemble[i].confidence, std::max(online[i].confidence, offline[i].confidence),
                  1e-5f);
      EXPECT_EQ(ensemble[i].label,
                online[i].confidence >= offline[i].confidence ? online[i].label : offline[i].label);
      online_differs += std::abs(online[i].confidence - offline[i].confidence) > 1e-4f;
    }
    EXPECT_GT(online_differs, 0);  // the offline expert lags behind the online one
  }
}

TEST(LearnerTest, SimpleCilLearnsPrototypesAndBadInputIsRefused) {
  auto learner = MakeLearner({.method = "simple_cil"});
  Stream stream(5);
  nn::Matrix x;
  std::vector<int32_t> y;
  stream.Batch(10, false, &x, &y);
  EXPECT_EQ(learner->Predict(x).status().code(), absl::StatusCode::kFailedPrecondition);
  for (int i = 0; i < 10; ++i) {
    stream.Batch(32, false, &x, &y);
    ASSERT_TRUE(learner->Learn(x, y).ok());
  }
  stream.Batch(200, false, &x, &y);
  const std::vector<Prediction> p = *learner->Predict(x);
  int correct = 0;
  for (size_t i = 0; i < p.size(); ++i) correct += p[i].label == y[i];
  EXPECT_GT(correct, 150);
  // Bad input.
  EXPECT_FALSE(learner->Learn(x, absl::MakeSpan(y).subspan(1)).ok());
  std::vector<int32_t> bad = y;
  bad[0] = 9;
  EXPECT_EQ(learner->Learn(x, bad).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(learner->BeginTask({0, 1}).ok());
  EXPECT_EQ(learner->Learn(x, y).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(learner->BeginTask({7}).ok());
  EXPECT_EQ(learner->expansion(), nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(learner->SetMethodOption("inference", "online")));
}

// LAE's offline module in exported progress.
Eigen::VectorXf Offline(const LearnerProgress& p) {
  const std::vector<float>& v = p.method.floats.at("offline");
  return Eigen::Map<const Eigen::VectorXf>(v.data(), v.size());
}

// Copies a learner's shared modules into another of the same method.
void CopySharedModules(Learner& from, Learner& to) {
  std::vector<nn::ParameterSet*> a = from.SharedModules(), b = to.SharedModules();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) b[i]->flat_values() = a[i]->flat_values();
}

// A host without task boundaries: LAE's offline module starts after lae_untasked_task_steps
// steps, then follows the online one by the EMA (v_off ← α·v_off + (1 − α)·v_on every step).
// Progress carried into a fresh learner with the shared modules predicts and learns on exactly
// as the original does.
TEST(LearnerTest, LaeProgressCarriesTheOfflineModuleAndUntaskedHostsStartIt) {
  LearnerOptions options{.method = "lae", .learning_rate = 0.05f};
  options.method_options = "steps_per_task: 20 fraction_per_task: 0.5 untasked_task_steps: 6";
  auto learner = MakeLearner(options);
  Stream stream(8);
  nn::Matrix x;
  std::vector<int32_t> y;
  for (int step = 1; step <= 6; ++step) {
    stream.Batch(16, false, &x, &y);
    ASSERT_TRUE(learner->Learn(x, y).ok());
    EXPECT_EQ(learner->ExportProgress().method.floats.contains("offline"), step == 6) << step;
  }
  // Started as a copy of the online adapter; one more step moves it by (1 − α)(v_on − v_off).
  const Eigen::VectorXf started = Offline(learner->ExportProgress());
  EXPECT_TRUE(started.isApprox(learner->SharedModules()[1]->flat_values()));
  stream.Batch(16, true, &x, &y);
  ASSERT_TRUE(learner->Learn(x, y).ok());
  const double alpha = *DecayForFraction(0.5, 20);
  const Eigen::VectorXf online = learner->SharedModules()[1]->flat_values();
  const Eigen::VectorXf expected =
      static_cast<float>(alpha) * started + static_cast<float>(1 - alpha) * online;
  EXPECT_LT((Offline(learner->ExportProgress()) - expected).cwiseAbs().maxCoeff(), 1e-6f);

  // Into a fresh learner: identical ensemble predictions, and identical after one more step.
  auto copy = MakeLearner(options);
  CopySharedModules(*learner, *copy);
  ASSERT_TRUE(copy->RestoreProgress(learner->ExportProgress()).ok());
  stream.Batch(40, true, &x, &y);
  const std::vector<Prediction> a = *learner->Predict(x), b = *copy->Predict(x);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].label, b[i].label);
    EXPECT_FLOAT_EQ(a[i].confidence, b[i].confidence);
  }
  const LearnerProgress before = copy->ExportProgress();
  EXPECT_EQ(before.task, -1);
  EXPECT_EQ(before.task_steps, 7);

  // Bad progress changes nothing.
  LearnerProgress bad = before;
  bad.method.floats.at("offline").resize(3);
  EXPECT_EQ(copy->RestoreProgress(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = before;
  bad.method.floats.at("offline")[0] = NAN;
  EXPECT_EQ(copy->RestoreProgress(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = before;
  bad.learned_classes = {true};
  EXPECT_EQ(copy->RestoreProgress(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = before;
  bad.method.ints["class_counts"] = {1, 1, 1, 1};
  bad.method.floats["class_sums"] = std::vector<float>(64, 0.0f);
  EXPECT_EQ(copy->RestoreProgress(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Offline(copy->ExportProgress()).isApprox(Offline(before)));

  // An app that marks tasks: the second BeginTask keeps the offline module already started.
  ASSERT_TRUE(copy->BeginTask({}).ok());
  ASSERT_TRUE(copy->BeginTask({}).ok());
  EXPECT_TRUE(Offline(copy->ExportProgress()).isApprox(Offline(before)));
}

// SimpleCIL's prototypes are the means of its class sums: carried into a fresh learner they
// classify exactly as the original, and further learning continues the same means.
TEST(LearnerTest, SimpleCilProgressCarriesItsPrototypes) {
  auto learner = MakeLearner({.method = "simple_cil"});
  Stream stream(9);
  nn::Matrix x;
  std::vector<int32_t> y;
  for (int i = 0; i < 4; ++i) {
    stream.Batch(24, false, &x, &y);
    ASSERT_TRUE(learner->Learn(x, y).ok());
  }
  auto copy = MakeLearner({.method = "simple_cil"});
  const LearnerProgress progress = learner->ExportProgress();
  const std::vector<int64_t>& counts = progress.method.ints.at("class_counts");
  EXPECT_EQ(counts.size(), 4u);
  int64_t seen = 0;
  for (int64_t n : counts) seen += n;
  EXPECT_EQ(seen, 96);
  ASSERT_TRUE(copy->RestoreProgress(progress).ok());
  stream.Batch(24, false, &x, &y);
  ASSERT_TRUE(learner->Learn(x, y).ok());
  ASSERT_TRUE(copy->Learn(x, y).ok());
  stream.Batch(60, false, &x, &y);
  const std::vector<Prediction> a = *learner->Predict(x), b = *copy->Predict(x);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].label, b[i].label);
    EXPECT_FLOAT_EQ(a[i].confidence, b[i].confidence);
  }
  LearnerProgress bad = copy->ExportProgress();
  bad.method.ints.at("class_counts")[2] = -1;
  EXPECT_EQ(copy->RestoreProgress(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = copy->ExportProgress();
  bad.method.floats["offline"] = std::vector<float>(4, 0.0f);
  EXPECT_EQ(copy->RestoreProgress(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(copy->ExportProgress().method, learner->ExportProgress().method);
}

// FedIns: gradients reach only the pool rows some instance selected (§3.4), so with two
// instances and k = 1 at most two of the eight SSF sets, heads and keys move; and it learns.
TEST(LearnerTest, FedInsUpdatesOnlyTheSelectedPoolRowsAndLearns) {
  LearnerOptions options{.method = "fedins", .learning_rate = 0.05f};
  options.method_options = "pool_size: 8 top_k: 1";
  auto learner = MakeLearner(options);
  Stream stream(6);
  nn::Matrix x;
  std::vector<int32_t> y;
  auto snapshot = [&] {
    std::vector<Eigen::VectorXf> values;
    for (nn::ParameterSet* s : learner->SharedModules()) values.push_back(s->flat_values());
    return values;
  };
  const std::vector<Eigen::VectorXf> before = snapshot();
  ASSERT_EQ(before.size(), 17u);  // keys, 8 SSF sets, 8 heads
  stream.Batch(2, false, &x, &y);
  ASSERT_TRUE(learner->Learn(x, y).ok());
  const std::vector<Eigen::VectorXf> after = snapshot();
  int ssf_moved = 0, heads_moved = 0;
  for (int j = 0; j < 8; ++j) {
    ssf_moved += after[1 + j] != before[1 + j];
    heads_moved += after[9 + j] != before[9 + j];
  }
  EXPECT_GE(ssf_moved, 1);
  EXPECT_LE(ssf_moved, 2);
  EXPECT_EQ(heads_moved, ssf_moved);
  const int key_values = static_cast<int>(before[0].size()) / 8;
  int keys_moved = 0;
  for (int j = 0; j < 8; ++j)
    keys_moved += after[0].segment(j * key_values, key_values) !=
                  before[0].segment(j * key_values, key_values);
  EXPECT_EQ(keys_moved, ssf_moved);
  // The matching loss is the keys' only gradient: it pulls the selected keys towards their
  // instances' queries, so the mean reduced similarity Σ_{j∈I(x)} cos(q(x), K_j) grows. The
  // queries are the frozen backbone's features (a model built from the same seed, no SSF).
  options.method_options = "pool_size: 8 top_k: 1 matching_weight: 0.5";
  learner = MakeLearner(options);
  auto query_model = *nn::Model::Create(nn::testing::TinyConfig(nn::BackboneKind::kVit), 5);
  stream.Batch(200, false, &x, &y);
  query_model->Forward(x, false);
  const nn::Matrix queries = query_model->features();
  auto mean_similarity = [&] {
    nn::ParameterSet* keys = learner->SharedModules()[0];
    const nn::Matrix k = Eigen::Map<const nn::Matrix>(keys->values(0), 8, keys->info(0).shape[1]);
    const InstanceSelection s = *SelectTopK(queries, k, 1);
    double sum = 0;
    for (float v : s.reduced_similarity) sum += v;
    return sum / static_cast<double>(s.reduced_similarity.size());
  };
  const double similarity_before = mean_similarity();
  for (int step = 0; step < 50; ++step) {
    stream.Batch(32, false, &x, &y);
    ASSERT_TRUE(learner->Learn(x, y).ok());
  }
  // k = 1: the similarity is at most 1; the gap to 1 at least halves.
  EXPECT_LT(1.0 - mean_similarity(), 0.5 * (1.0 - similarity_before));
}

// Label-free adaptation changes only LayerNorm affine parameters (no SSF here), learns from the
// samples CEMA's filters keep, and leaves the learner's trainable flags as they were.
TEST(LearnerTest, AdaptTouchesOnlyNormsAndRestoresTrainableFlags) {
  LearnerOptions options{.method = "linear_head"};
  options.label_free.filter.high_margin = 1.0;  // keep every sample: a random model is unsure
  options.label_free.filter.redundancy = 0.0;
  options.label_free.learning_rate = 0.05f;
  auto learner = MakeLearner(options);
  nn::ParameterSet& backbone = learner->model().backbone().parameters();
  const Eigen::VectorXf before = backbone.flat_values();
  const Eigen::VectorXf head_before = learner->model().head().parameters().flat_values();
  Stream stream(8);
  nn::Matrix x;
  std::vector<int32_t> y;
  stream.Batch(32, true, &x, &y);
  const AdaptStep step = *learner->Adapt(x);
  EXPECT_EQ(step.seen, 32);
  EXPECT_EQ(step.used, 32);
  EXPECT_GT(step.entropy, 0.0);
  for (int t = 0; t < backbone.num_tensors(); ++t) {
    const std::string& name = backbone.info(t).name;
    const bool norm = name.find("norm") != std::string::npos;
    const bool moved =
        backbone.vector(t) != before.segment(backbone.info(t).offset, backbone.info(t).size);
    if (!norm) {
      EXPECT_FALSE(moved) << name;
    }
    EXPECT_FALSE(backbone.trainable(t)) << name;  // the frozen backbone stays frozen
  }
  EXPECT_NE(backbone.flat_values(), before);
  EXPECT_EQ(learner->model().head().parameters().flat_values(), head_before);
  EXPECT_TRUE(learner->model().head().parameters().any_trainable());
  EXPECT_FALSE(learner->Adapt(nn::Matrix(0, 64)).ok());
}

TEST(LearnerTest, OptionsAndBlocksAreValidated) {
  nn::ModelConfig config = nn::testing::TinyConfig(nn::BackboneKind::kVit);
  LearnerOptions options{.method = "sema", .method_options = "expandable_blocks: [5]"};
  EXPECT_EQ(Learner::Create(*nn::Model::Create(config, 1), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A descriptor bottleneck that does not compress the width 8.
  options.method_options = "expandable_blocks: [1] descriptor_bottleneck: 8";
  EXPECT_FALSE(Learner::Create(*nn::Model::Create(config, 1), options).ok());
  options.method_options = "expansion_tau: 2 taux: 3";  // an unknown knob is named
  absl::Status unknown = Learner::Create(*nn::Model::Create(config, 1), options).status();
  EXPECT_TRUE(absl::IsInvalidArgument(unknown));
  EXPECT_NE(unknown.message().find("unknown key 'taux'"), std::string::npos) << unknown;
  options = {.method = "fedavg"};
  absl::Status method = Learner::Create(*nn::Model::Create(config, 1), options).status();
  EXPECT_TRUE(absl::IsInvalidArgument(method));
  EXPECT_NE(method.message().find("registered: fed_simple_cil, fedins, lae, linear_head, recipe"),
            std::string::npos)
      << method;
  EXPECT_EQ(RegisteredMethodNames(),
            (std::vector<std::string>{"fed_simple_cil", "fedins", "lae", "linear_head", "recipe",
                                      "sema", "sema_replay", "sequential_adapter", "simple_cil"}));
}

}  // namespace
}  // namespace fedcl::cl
