// The fixture of the fedcl::Client suites (client_test.cc, client_methods_test.cc): a small
// ViT backbone, synthetic batches, and a device against an in-process coordinator.
#ifndef FEDCL_TESTS_SDK_CLIENT_FIXTURE_H_
#define FEDCL_TESTS_SDK_CLIENT_FIXTURE_H_

#include <atomic>
#include <cmath>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "core/device/initial_modules.h"
#include "core/fl/coordinator.h"
#include "core/nn/optimizer.h"
#include "core/nn/training.h"
#include "fedcl/client.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "tests/client/client_test_util.h"

namespace fedcl::sdk_test {

using client::testing::CoordinatorTransport;

constexpr int kClasses = 4;
constexpr int kSide = 8;
constexpr int kPixels = kSide * kSide;

// A small ViT on 8×8 images: 4 patch tokens, width 16, four blocks (the adapter sits on 2 and 3).
inline nn::ModelConfig TinyVit() {
  nn::ModelConfig c;
  c.backbone = nn::BackboneKind::kVit;
  c.vit = {.patch = 4, .dim = 16, .depth = 4, .heads = 2, .mlp_ratio = 2};
  c.image_height = c.image_width = kSide;
  c.num_classes = kClasses;
  return c;
}

// `n` images in [0, 1] with a texture per class (horizontal stripes, vertical stripes, a
// checkerboard, diagonals), plus noise: every patch shows its class, so even position-blind
// features separate them.
inline void MakeBatch(uint64_t seed, int n, std::vector<float>* pixels,
                      std::vector<int32_t>* labels) {
  base::Rng rng(seed);
  pixels->assign(static_cast<size_t>(n) * kPixels, 0.0f);
  labels->resize(n);
  for (int i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng.UniformInt(kClasses));
    (*labels)[i] = c;
    for (int y = 0; y < kSide; ++y) {
      for (int x = 0; x < kSide; ++x) {
        const bool lit = c == 0   ? y % 2 == 0
                         : c == 1 ? x % 2 == 0
                         : c == 2 ? (x + y) % 2 == 0
                                  : (x + y) % 4 < 2;
        (*pixels)[static_cast<size_t>(i) * kPixels + y * kSide + x] =
            std::clamp(static_cast<float>((lit ? 0.8 : 0.1) + 0.1 * rng.Normal()), 0.0f, 1.0f);
      }
    }
  }
}

// A randomly initialised ViT's features do not separate the classes; like a real device's, the
// backbone is pretrained (whole model, the same task), then given a fresh head to learn.
inline std::unique_ptr<nn::Model> PretrainedBackbone() {
  auto trained = nn::Model::Create(TinyVit(), 3);
  FEDCL_CHECK_OK(trained.status());
  nn::Sgd sgd({.learning_rate = 0.05f, .momentum = 0.9f});
  std::vector<float> x;
  std::vector<int32_t> y;
  for (int step = 0; step < 150; ++step) {
    MakeBatch(5000 + step, 32, &x, &y);
    const Eigen::Map<const nn::Matrix> images(x.data(), 32, kPixels);
    nn::Matrix standardized =
        (images.array() - data::kFashionMnistMean) / data::kFashionMnistStddev;
    nn::TrainStep(**trained, sgd, standardized, y);
  }
  auto fresh = nn::Model::Create(TinyVit(), 4);
  FEDCL_CHECK_OK(fresh.status());
  (*fresh)->backbone().parameters().flat_values() =
      (*trained)->backbone().parameters().flat_values();
  return *std::move(fresh);
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = PretrainedBackbone();
    FEDCL_CHECK_OK(proto::SaveCheckpoint(fs_, "/backbone.ckpt", *model_, {}, {}));
    backbone_ = client::testing::BackboneBytes(*model_);
    options_.storage_dir = "/device";
    options_.client_id = 5;
    options_.learning_rate = 0.05f;
    options_.log = [this](LogLevel level, absl::string_view message) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(std::string(message));
    };
    coordinator_options_.round.round_duration = absl::Seconds(10);
    coordinator_options_.round.min_participants = 0;
  }

  // The server's modules: those a learner of server_method_ shares (sequential_adapter: the head
  // and the adapter), with the roles fedcl-server gives them.
  fl::Coordinator& coordinator() {
    if (coordinator_ != nullptr) return *coordinator_;
    const bool sema_server_ = server_method_ == "sema" || server_method_ == "sema_replay";
    cl::LearnerOptions lo;
    lo.method = server_method_;
    if (server_method_ == "fedins")
      lo.method_options = absl::StrCat("pool_size: ", options_.fedins_pool_size);
    if (sema_server_) lo.method_options = "descriptor_bottleneck: 4";
    lo.seed = 99;  // other initial values than the device's: the first sync must re-base
    auto learner = cl::Learner::Create(PretrainedBackbone(), lo);
    FEDCL_CHECK_OK(learner.status());
    if (sema_server_) {  // the growing pool at the ViT's last two blocks, with base experts
      coordinator_options_.pool.expandable_blocks = {2, 3};
      coordinator_options_.pool.statistics_dim = TinyVit().vit.dim;
      coordinator_options_.pool.expert_bottleneck = 8;  // SEMA's adapter bottleneck
      coordinator_options_.pool.round_window = 10;
      coordinator_options_.pool.divergence_threshold = 2.0;
    }
    // The method says what the server pools, with the learner's initial values.
    std::vector<fl::StoredModule> initial = device::InitialModules(**learner);
    auto created = fl::Coordinator::Create(coordinator_options_, clock_, nullptr, initial);
    FEDCL_CHECK_OK(created.status());
    coordinator_ = *std::move(created);
    return *coordinator_;
  }

  std::unique_ptr<Client> Make(bool with_server = false, CoordinatorTransport** out = nullptr) {
    ClientEnvironment env;
    env.fs = &fs_;
    if (with_server) {
      auto transport = std::make_unique<CoordinatorTransport>(coordinator(), backbone_, TinyVit());
      if (out != nullptr) *out = transport.get();
      env.transport = std::move(transport);
    }
    auto client = CreateClientForTesting(options_, std::move(env));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::vector<Prediction> PredictAll(Client& client, const std::vector<float>& pixels) {
    std::vector<Prediction> out(pixels.size() / kPixels);
    EXPECT_TRUE(client.Predict(pixels, absl::MakeSpan(out)).ok());
    return out;
  }

  double Accuracy(Client& client, uint64_t seed) {
    std::vector<float> x;
    std::vector<int32_t> y;
    MakeBatch(seed, 200, &x, &y);
    const std::vector<Prediction> p = PredictAll(client, x);
    int correct = 0;
    for (size_t i = 0; i < p.size(); ++i) correct += p[i].label == y[i];
    return static_cast<double>(correct) / static_cast<double>(p.size());
  }

  void LearnBatches(Client& client, int batches, uint64_t seed) {
    std::vector<float> x;
    std::vector<int32_t> y;
    for (int b = 0; b < batches; ++b) {
      MakeBatch(seed + b, 16, &x, &y);
      ASSERT_TRUE(client.Learn(x, y).ok());
    }
  }

  bool Logged(absl::string_view text) {
    std::lock_guard<std::mutex> lock(log_mu_);
    for (const std::string& line : log_)
      if (absl::StrContains(line, text)) return true;
    return false;
  }

  base::MemoryFileSystem fs_;
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  std::unique_ptr<nn::Model> model_;
  std::string backbone_;
  ClientOptions options_;
  fl::CoordinatorOptions coordinator_options_;
  std::string server_method_ = "sequential_adapter";  // whose modules it serves
  std::unique_ptr<fl::Coordinator> coordinator_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

}  // namespace fedcl::sdk_test

#endif  // FEDCL_TESTS_SDK_CLIENT_FIXTURE_H_
