// fedcl::Client against an in-process coordinator: offline learning, the bounded queue,
// re-basing, closed rounds, persistence with a corrupt file, the memory budget and concurrent use.
#include "fedcl/client.h"

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
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "tests/client/client_test_util.h"

namespace fedcl {
namespace {

using client::testing::CoordinatorTransport;

constexpr int kClasses = 4;
constexpr int kSide = 8;
constexpr int kPixels = kSide * kSide;

// A small ViT on 8×8 images: 4 patch tokens, width 16, four blocks (the adapter sits on 2 and 3).
nn::ModelConfig TinyVit() {
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
void MakeBatch(uint64_t seed, int n, std::vector<float>* pixels, std::vector<int32_t>* labels) {
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
std::unique_ptr<nn::Model> PretrainedBackbone() {
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
    if (server_method_ == "fedins") lo.method_options = absl::StrCat("pool_size: ", options_.fedins_pool_size);
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

TEST_F(ClientTest, LearnsOfflineAndNeverNeedsTheNetwork) {
  auto client = Make();
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  EXPECT_EQ(client->input_size(), kPixels);
  EXPECT_EQ(client->num_classes(), kClasses);
  const double before = Accuracy(*client, 1000);
  LearnBatches(*client, 60, 1);
  const double after = Accuracy(*client, 1000);
  EXPECT_GT(after, 0.9);
  EXPECT_GT(after, before + 0.2);
  const absl::StatusOr<SyncResult> sync = client->Sync();
  EXPECT_TRUE(absl::IsFailedPrecondition(sync.status())) << sync.status();
  const ClientStats stats = client->Stats();
  EXPECT_EQ(stats.learn_batches, 60);
  EXPECT_EQ(stats.learned_samples, 960);
  EXPECT_EQ(stats.predictions, 400);
  EXPECT_TRUE(stats.backbone_loaded);
}

TEST_F(ClientTest, BadInputGetsClearErrorsAndChangesNothing) {
  options_.method = "fedavg";  // not a continual method
  EXPECT_TRUE(absl::IsInvalidArgument(CreateClientForTesting(options_, {&fs_, nullptr}).status()));
  options_.method = "sequential_adapter";
  options_.storage_dir = "";
  EXPECT_TRUE(absl::IsInvalidArgument(CreateClientForTesting(options_, {&fs_, nullptr}).status()));
  options_.storage_dir = "/device";
  auto client = Make();
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(1, 4, &x, &y);
  EXPECT_TRUE(absl::IsFailedPrecondition(client->Learn(x, y).status()));  // no backbone yet
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  const std::vector<Prediction> reference = PredictAll(*client, x);
  std::vector<int32_t> wrong_label = y;
  wrong_label[2] = kClasses;
  absl::Status s = client->Learn(x, wrong_label).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s) && absl::StrContains(s.message(), "label 4")) << s;
  s = client->Learn(absl::MakeSpan(x).subspan(1), y).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s) && absl::StrContains(s.message(), "pixel values")) << s;
  std::vector<float> nan = x;
  nan[7] = std::nanf("");
  EXPECT_TRUE(absl::IsInvalidArgument(client->Learn(nan, y).status()));
  EXPECT_TRUE(absl::IsNotFound(client->LoadBackbone("/missing.ckpt")));
  ASSERT_TRUE(fs_.WriteFileAtomically("/junk.ckpt", "not a checkpoint").ok());
  EXPECT_FALSE(client->LoadBackbone("/junk.ckpt").ok());
  const std::vector<Prediction> again = PredictAll(*client, x);
  for (size_t i = 0; i < again.size(); ++i) EXPECT_EQ(again[i].confidence, reference[i].confidence);
  EXPECT_EQ(client->Stats().learn_batches, 0);
}

TEST_F(ClientTest, StateSurvivesARestart) {
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(77, 32, &x, &y);
  std::vector<Prediction> before;
  {
    auto client = Make();
    ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
    LearnBatches(*client, 10, 1);
    ASSERT_TRUE(client->Save().ok());
    before = PredictAll(*client, x);
  }
  auto client = Make();  // the cached backbone loads by itself
  const ClientStats stats = client->Stats();
  EXPECT_TRUE(stats.state_restored);
  EXPECT_TRUE(stats.backbone_loaded);
  EXPECT_EQ(stats.learn_batches, 10);
  EXPECT_EQ(stats.queue_records, 1);
  const std::vector<Prediction> after = PredictAll(*client, x);
  for (size_t i = 0; i < x.size() / kPixels; ++i) {
    EXPECT_EQ(after[i].label, before[i].label);
    EXPECT_FLOAT_EQ(after[i].confidence, before[i].confidence);
  }
}

// A task's classes mask the logits learning moves: a batch of classes 0 and 1 learned under the
// task {0, 1} leaves the head rows of classes 2 and 3 as they were (SGD's weight decay aside,
// which a masked row still sees), labels outside the task are refused, and the task survives a
// restart.
TEST_F(ClientTest, BeginTaskMasksOtherClassesAndIsPersisted) {
  std::vector<float> x;
  std::vector<int32_t> y;
  {
    auto client = Make();
    EXPECT_TRUE(absl::IsFailedPrecondition(client->BeginTask({0, 1})));
    ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
    EXPECT_TRUE(absl::IsInvalidArgument(client->BeginTask({0, kClasses})));
    ASSERT_TRUE(client->BeginTask({0, 1}).ok());
    MakeBatch(3, 64, &x, &y);
    EXPECT_TRUE(absl::IsInvalidArgument(client->Learn(x, y).status()));  // labels 2 and 3
    std::vector<float> kept;
    std::vector<int32_t> labels;
    for (size_t i = 0; i < y.size(); ++i) {
      if (y[i] > 1) continue;
      kept.insert(kept.end(), x.begin() + i * kPixels, x.begin() + (i + 1) * kPixels);
      labels.push_back(y[i]);
    }
    for (int b = 0; b < 20; ++b) ASSERT_TRUE(client->Learn(kept, labels).ok());
    // Classes 2 and 3 are never predicted from what was learned about 0 and 1 alone: their
    // logits were never trained, so the prediction for a class-0 image stays 0 or 1.
    std::vector<Prediction> p = PredictAll(*client, kept);
    int in_task = 0;
    for (const Prediction& q : p) in_task += q.label <= 1;
    EXPECT_EQ(in_task, static_cast<int>(p.size()));
    ASSERT_TRUE(client->Save().ok());
  }
  auto client = Make();
  EXPECT_TRUE(absl::IsInvalidArgument(client->Learn(x, y).status()));  // still the task {0, 1}
  ASSERT_TRUE(client->BeginTask({}).ok());
  EXPECT_TRUE(client->Learn(x, y).ok());
}

TEST_F(ClientTest, CorruptStateIsSetAsideAndThePreviousGoodOneLoads) {
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(77, 32, &x, &y);
  std::vector<Prediction> first;
  {
    auto client = Make();
    ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
    LearnBatches(*client, 5, 1);
    ASSERT_TRUE(client->Save().ok());
    first = PredictAll(*client, x);
    LearnBatches(*client, 5, 100);
    ASSERT_TRUE(client->Save().ok());  // the first save is now device_state.prev
  }
  absl::StatusOr<std::string> bytes = fs_.ReadFile("/device/device_state", 1 << 30);
  ASSERT_TRUE(bytes.ok());
  std::string damaged = *bytes;
  damaged[damaged.size() / 2] ^= 0x5a;
  ASSERT_TRUE(fs_.WriteFileAtomically("/device/device_state", damaged).ok());
  {
    auto client = Make();
    const ClientStats stats = client->Stats();
    EXPECT_TRUE(stats.state_set_aside);
    EXPECT_TRUE(stats.state_from_backup);
    EXPECT_EQ(stats.learn_batches, 5);
    EXPECT_TRUE(fs_.Exists("/device/device_state.corrupt"));
    EXPECT_TRUE(Logged("set aside"));
    const std::vector<Prediction> restored = PredictAll(*client, x);
    for (size_t i = 0; i < restored.size(); ++i)
      EXPECT_FLOAT_EQ(restored[i].confidence, first[i].confidence);
  }
  // Both copies damaged: a fresh device that keeps working.
  for (const char* path : {"/device/device_state", "/device/device_state.prev"})
    ASSERT_TRUE(fs_.WriteFileAtomically(path, "garbage").ok());
  auto client = Make();
  EXPECT_TRUE(client->Stats().state_set_aside);
  EXPECT_FALSE(client->Stats().state_restored);
  EXPECT_EQ(client->Stats().learn_batches, 0);
  LearnBatches(*client, 2, 1);
}

TEST_F(ClientTest, OfflineQueueIsBoundedOldestDroppedFirst) {
  options_.autosave_batches = 1;
  auto client = Make();
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  LearnBatches(*client, 1, 1);
  const int64_t record_bytes = client->Stats().queue_bytes;
  ASSERT_GT(record_bytes, 0);
  options_.offline_queue_bytes = 3 * record_bytes;
  client.reset();
  client = Make();
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(5, 32, &x, &y);
  LearnBatches(*client, 7, 10);
  const ClientStats stats = client->Stats();
  EXPECT_EQ(stats.queue_records, 3);
  EXPECT_EQ(stats.queue_bytes, 3 * record_bytes);
  EXPECT_EQ(stats.queue_records_dropped, 5);  // 8 records, 3 kept
  // Dropping changes what is submitted, not what the device predicts with.
  const std::vector<Prediction> live = PredictAll(*client, x);
  client.reset();
  client = Make();
  const std::vector<Prediction> restored = PredictAll(*client, x);
  for (size_t i = 0; i < live.size(); ++i)
    EXPECT_FLOAT_EQ(restored[i].confidence, live[i].confidence);
}

TEST_F(ClientTest, SyncDownloadsTheBackboneRebasesAndSubmits) {
  CoordinatorTransport* transport = nullptr;
  auto client = Make(/*with_server=*/true, &transport);
  // No backbone yet: the first sync downloads it, takes the server's modules, has nothing to send.
  absl::StatusOr<SyncResult> first = client->Sync();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(transport->backbone_downloads, 1);
  EXPECT_EQ(first->modules_downloaded, 2);
  EXPECT_FALSE(first->submitted);
  EXPECT_TRUE(fs_.Exists("/device/backbone.ckpt"));

  // Learn offline while another device moves the server's modules on (round 0 closes with its
  // update, publishing version 1).
  LearnBatches(*client, 8, 1);
  const double learned = Accuracy(*client, 1000);
  {
    ClientOptions other_options = options_;
    other_options.client_id = 6;
    other_options.storage_dir = "/other";
    ClientEnvironment env{
        &fs_, std::make_unique<CoordinatorTransport>(coordinator(), backbone_, TinyVit())};
    auto other = CreateClientForTesting(other_options, std::move(env));
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE((*other)->Sync().ok());
    LearnBatches(**other, 8, 500);
    absl::StatusOr<SyncResult> submitted = (*other)->Sync();
    ASSERT_TRUE(submitted.ok() && submitted->submitted && submitted->round == 0);
  }
  ASSERT_TRUE(coordinator().CloseRound().ok());
  ASSERT_EQ(coordinator().GetModule("adapter", 1).status(), absl::OkStatus());

  // The device re-bases its queued learning on version 1 and submits it: the coordinator refuses
  // an update whose base version is not the current one, so acceptance shows the re-base.
  absl::StatusOr<SyncResult> second = client->Sync();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->round, 1);
  EXPECT_EQ(second->modules_downloaded, 2);
  EXPECT_TRUE(second->submitted);
  EXPECT_GT(second->bytes_uploaded, 0);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{1}));
  EXPECT_EQ(client->Stats().queue_records, 0);
  EXPECT_EQ(client->Stats().submissions, 1);
  EXPECT_EQ(client->Stats().last_round, 1);
  // Its own learning survived the re-base.
  EXPECT_GT(Accuracy(*client, 1000), learned - 0.1);
  EXPECT_GT(Accuracy(*client, 1000), 0.8);

  // Nothing learned since: the next sync (round 2, version 2) submits nothing.
  ASSERT_TRUE(coordinator().CloseRound().ok());
  absl::StatusOr<SyncResult> third = client->Sync();
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->round, 2);
  EXPECT_EQ(third->modules_downloaded, 2);
  EXPECT_FALSE(third->submitted);
  EXPECT_GT(Accuracy(*client, 1000), 0.8);
}

// A server re-saves the pretrained checkpoint (its own head, metadata): a device that loaded the
// original file adopts the server's when the backbone weights are the same, keeping its learning,
// and refuses a server whose backbone has other weights.
TEST_F(ClientTest, AdoptsTheServersCopyOfTheSameBackboneAndRefusesAnother) {
  auto resaved = nn::Model::Create(TinyVit(), 11);  // another head, the same backbone
  FEDCL_CHECK_OK(resaved.status());
  (*resaved)->backbone().parameters().flat_values() = model_->backbone().parameters().flat_values();
  backbone_ = client::testing::BackboneBytes(**resaved);
  CoordinatorTransport* transport = nullptr;
  auto client = Make(true, &transport);
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  LearnBatches(*client, 4, 1);
  absl::StatusOr<SyncResult> synced = client->Sync();
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_TRUE(synced->submitted);
  EXPECT_EQ(transport->backbone_downloads, 1);
  EXPECT_TRUE(Logged("adopted the server's file"));
  // The app loads its bundled file again at the next start: nothing is lost.
  client.reset();
  client = Make(true, &transport);
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  EXPECT_EQ(client->Stats().submissions, 1);
  EXPECT_TRUE(client->Sync().ok());
  EXPECT_EQ(transport->backbone_downloads, 0);

  // Another backbone on the server: refused, the device's learning stays.
  auto other = nn::Model::Create(TinyVit(), 12);
  FEDCL_CHECK_OK(other.status());
  backbone_ = client::testing::BackboneBytes(**other);
  options_.storage_dir = "/third";
  client = Make(true, &transport);
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  LearnBatches(*client, 2, 1);
  absl::Status refused = client->Sync().status();
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "weights differ")) << refused;
  EXPECT_EQ(client->Stats().learn_batches, 2);
}

// A linear-head device against a server that also pools an adapter: it takes and sends the
// head only, and the adapter's version does not move.
TEST_F(ClientTest, ALinearHeadDeviceSyncsOnlyTheModulesItRuns) {
  options_.method = "linear_head";
  CoordinatorTransport* transport = nullptr;
  auto client = Make(true, &transport);
  absl::StatusOr<SyncResult> first = client->Sync();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->modules_downloaded, 1);  // the head
  LearnBatches(*client, 4, 1);
  absl::StatusOr<SyncResult> second = client->Sync();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->submitted);
  ASSERT_TRUE(coordinator().CloseRound().ok());
  EXPECT_TRUE(coordinator().GetModule("head", 1).ok());
  EXPECT_FALSE(coordinator().GetModule("adapter", 1).ok());
}

TEST_F(ClientTest, AnUpdateForAClosedRoundIsKeptForTheNextRound) {
  CoordinatorTransport* transport = nullptr;
  auto client = Make(true, &transport);
  ASSERT_TRUE(client->Sync().ok());
  LearnBatches(*client, 4, 1);
  transport->submit_failures.push_back(absl::AbortedError("round 0 has closed"));
  absl::StatusOr<SyncResult> refused = client->Sync();
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(refused->round_closed);
  EXPECT_FALSE(refused->submitted);
  EXPECT_EQ(client->Stats().rounds_closed, 1);
  EXPECT_EQ(client->Stats().queue_records, 1);
  ASSERT_TRUE(coordinator().CloseRound().ok());
  absl::StatusOr<SyncResult> next = client->Sync();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(next->submitted);
  EXPECT_EQ(next->round, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{1}));
  EXPECT_EQ(client->Stats().queue_records, 0);
}

TEST_F(ClientTest, ServerUnreachableKeepsLearningQueued) {
  CoordinatorTransport* transport = nullptr;
  auto client = Make(true, &transport);
  ASSERT_TRUE(client->Sync().ok());
  LearnBatches(*client, 4, 1);
  transport->get_work_failures.push_back(absl::UnavailableError("connection refused"));
  EXPECT_TRUE(absl::IsUnavailable(client->Sync().status()));
  EXPECT_EQ(client->Stats().learn_batches, 4);
  absl::StatusOr<SyncResult> back = client->Sync();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->submitted);
}

TEST_F(ClientTest, MemoryBudgetRefusesWorkThatWouldExceedIt) {
  auto client = Make();
  ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
  const int64_t held = client->Stats().memory_used_bytes;
  ASSERT_GT(held, 0);
  // Room for a training batch of a few images (about 35 KiB each on this model), not 64.
  options_.memory_budget_bytes = held + 200 * 1024;
  client.reset();
  client = Make();
  std::vector<float> x, small_x;
  std::vector<int32_t> y, small_y;
  MakeBatch(1, 64, &x, &y);
  const std::vector<Prediction> chunked = PredictAll(*client, x);  // predicts in chunks
  absl::Status refused = client->Learn(x, y).status();
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "memory budget")) << refused;
  EXPECT_EQ(client->Stats().learn_batches, 0);
  EXPECT_EQ(client->Stats().memory_refusals, 1);
  const std::vector<Prediction> unchanged = PredictAll(*client, x);
  for (size_t i = 0; i < unchanged.size(); ++i)
    EXPECT_EQ(unchanged[i].confidence, chunked[i].confidence);
  MakeBatch(2, 2, &small_x, &small_y);
  EXPECT_TRUE(client->Learn(small_x, small_y).ok());
  EXPECT_LE(client->Stats().memory_used_bytes, options_.memory_budget_bytes);
  // A budget below the model itself refuses the backbone.
  options_.memory_budget_bytes = 1024;
  options_.storage_dir = "/other";
  client.reset();
  client = Make();
  EXPECT_TRUE(absl::IsResourceExhausted(client->LoadBackbone("/backbone.ckpt")));
}

// The SDK takes any detector fedcl registers, by name, with options it parses: a bad name lists
// the registered ones and a bad option names its key, both at Init; a detector that reads labels
// (hdc) or the ViT's token means (rd_zscore) fits and flags few of its own distribution.
TEST_F(ClientTest, AnyRegisteredDetectorIsAcceptedWithItsOptions) {
  options_.ood_detector = "odin";
  absl::Status s = CreateClientForTesting(options_, {&fs_, nullptr}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s) && absl::StrContains(s.message(), "registered: ")) << s;
  options_.ood_detector = "hdc";
  options_.ood_options = "dimension: 0";
  s = CreateClientForTesting(options_, {&fs_, nullptr}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s) && absl::StrContains(s.message(), "'dimension'")) << s;
  std::vector<float> x, held;
  std::vector<int32_t> y, held_labels;
  MakeBatch(8, 200, &x, &y);
  MakeBatch(9, 100, &held, &held_labels);
  for (auto [detector, options] : {std::pair<const char*, const char*>{"hdc", "dimension: 256"},
                                   {"rd_zscore", "bottleneck: 4"}}) {
    options_.ood_detector = detector;
    options_.ood_options = options;
    options_.storage_dir = absl::StrCat("/", detector);
    auto client = Make();
    ASSERT_TRUE(client->LoadBackbone("/backbone.ckpt").ok());
    ASSERT_TRUE(client->FitDetector(x, y).ok()) << detector;
    int flagged = 0;
    for (const Prediction& p : PredictAll(*client, held)) {
      EXPECT_TRUE(std::isfinite(p.ood_score)) << detector;
      flagged += p.ood;
    }
    EXPECT_LT(flagged, 20) << detector;  // calibrated at 95% on the same distribution
  }
}

// threads = 3 splits a prediction batch across the learner and two copies: the same predictions
// and OOD scores as one thread, after learning, adaptation and fitting the detector; the copies
// are counted in the memory budget.
TEST_F(ClientTest, ThreadsSplitPredictionsAcrossCopiesWithTheSameResults) {
  options_.threads = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(CreateClientForTesting(options_, {&fs_, nullptr}).status()));
  options_.threads = 1;
  auto one = Make();
  options_.threads = 3;
  options_.storage_dir = "/three";
  auto three = Make();
  for (Client* c : {one.get(), three.get()}) {
    ASSERT_TRUE(c->LoadBackbone("/backbone.ckpt").ok());
    LearnBatches(*c, 10, 1);
  }
  // Two more copies of the model and modules (the working buffers are shared out, not copied).
  EXPECT_GT(three->Stats().memory_used_bytes, one->Stats().memory_used_bytes);
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(42, 64, &x, &y);
  auto same = [&](absl::string_view after) {
    const std::vector<Prediction> a = PredictAll(*one, x), b = PredictAll(*three, x);
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].label, b[i].label) << after << ", image " << i;
      ASSERT_NEAR(a[i].confidence, b[i].confidence, 1e-5) << after << ", image " << i;
      ASSERT_NEAR(a[i].ood_score, b[i].ood_score, 1e-4) << after << ", image " << i;
      ASSERT_EQ(a[i].ood, b[i].ood) << after << ", image " << i;
    }
  };
  same("learning");
  std::vector<float> unlabelled;
  std::vector<int32_t> ignored;
  MakeBatch(7, 32, &unlabelled, &ignored);
  for (Client* c : {one.get(), three.get()}) ASSERT_TRUE(c->Adapt(unlabelled).ok());
  same("adaptation");
  MakeBatch(8, 100, &unlabelled, &ignored);
  for (Client* c : {one.get(), three.get()}) ASSERT_TRUE(c->FitDetector(unlabelled, ignored).ok());
  same("fitting the detector");
  // An odd batch (three unequal parts) and a single image (no split).
  MakeBatch(9, 7, &x, &y);
  same("seven images");
  MakeBatch(10, 1, &x, &y);
  same("one image");
}

// Learning and prediction go on while a sync waits on the server.
class BlockingTransport final : public device::FederationPort {
 public:
  explicit BlockingTransport(std::unique_ptr<CoordinatorTransport> inner)
      : inner_(std::move(inner)) {}
  absl::StatusOr<device::JoinResult> Join(fl::ClientId c, absl::string_view s) override {
    return inner_->Join(c, s);
  }
  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId c,
                                             absl::Span<const fl::ModuleVersion> held) override {
    if (block.load()) {
      entered.store(true);
      while (block.load()) std::this_thread::yield();
    }
    return inner_->GetWork(c, held);
  }
  absl::StatusOr<std::string> DownloadBackbone(fl::ClientId c) override {
    return inner_->DownloadBackbone(c);
  }
  absl::StatusOr<device::DownloadedModule> DownloadModule(fl::ClientId c, const std::string& n,
                                                          int64_t v, bool d) override {
    return inner_->DownloadModule(c, n, v, d);
  }
  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId c, int64_t r, const fl::LocalUpdate& u,
                                                int64_t b) override {
    return inner_->SubmitUpdate(c, r, u, b);
  }
  absl::Status Leave(fl::ClientId c, bool p) override { return inner_->Leave(c, p); }
  std::atomic<bool> block{false}, entered{false};

 private:
  std::unique_ptr<CoordinatorTransport> inner_;
};

TEST_F(ClientTest, LearningProceedsWhileABackgroundSyncWaitsOnTheServer) {
  auto inner = std::make_unique<CoordinatorTransport>(coordinator(), backbone_, TinyVit());
  auto blocking = std::make_unique<BlockingTransport>(std::move(inner));
  BlockingTransport* transport = blocking.get();
  ClientEnvironment env{&fs_, std::move(blocking)};
  auto created = CreateClientForTesting(options_, std::move(env));
  ASSERT_TRUE(created.ok());
  Client& client = **created;
  ASSERT_TRUE(client.LoadBackbone("/backbone.ckpt").ok());
  transport->block.store(true);
  std::mutex stages_mu;
  std::vector<SyncProgress::Stage> stages;
  ASSERT_TRUE(client
                  .StartSync([&](const SyncProgress& p) {
                    std::lock_guard<std::mutex> lock(stages_mu);
                    stages.push_back(p.stage);
                  })
                  .ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(client.StartSync()));  // one at a time
  while (!transport->entered.load()) std::this_thread::yield();
  LearnBatches(client, 3, 1);  // would deadlock if the sync held the model
  EXPECT_EQ(client.SyncStatus().stage, SyncProgress::Stage::kConnecting);
  transport->block.store(false);
  absl::StatusOr<SyncResult> result = client.WaitSync();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->submitted);
  std::lock_guard<std::mutex> lock(stages_mu);
  ASSERT_FALSE(stages.empty());
  EXPECT_EQ(stages.front(), SyncProgress::Stage::kConnecting);
  EXPECT_EQ(stages.back(), SyncProgress::Stage::kDone);
  EXPECT_TRUE(absl::IsFailedPrecondition(client.WaitSync().status()));
}

// Run under ThreadSanitizer by the documented target (docs/sdk.md, "ThreadSanitizer").
TEST_F(ClientTest, ConcurrentCallsFromSeveralThreadsAreSafe) {
  options_.threads = 2;  // predictions split across the worker pool as well
  CoordinatorTransport* transport = nullptr;
  auto client = Make(true, &transport);
  ASSERT_TRUE(client->Sync().ok());
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    std::vector<float> x;
    std::vector<int32_t> y;
    for (int i = 0; i < 20; ++i) {
      MakeBatch(i, 8, &x, &y);
      if (!client->Learn(x, y).ok()) ++errors;
    }
  });
  threads.emplace_back([&] {
    std::vector<float> x;
    std::vector<int32_t> y;
    MakeBatch(9, 8, &x, &y);
    std::vector<Prediction> out(8);
    while (!stop.load())
      if (!client->Predict(x, absl::MakeSpan(out)).ok()) ++errors;
  });
  threads.emplace_back([&] {
    while (!stop.load()) {
      (void)client->Stats();
      (void)client->SyncStatus();
      std::this_thread::yield();
    }
  });
  for (int i = 0; i < 3; ++i) {
    if (!client->StartSync().ok() || !client->WaitSync().ok()) ++errors;
    if (!client->Save().ok()) ++errors;
  }
  threads[0].join();
  stop.store(true);
  threads[1].join();
  threads[2].join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(client->Stats().learn_batches, 20);
}

// SEMA devices: two see the same shift and grow; their proposals become one pool module that
// both then train, a third device on the old data neither grows nor runs it, and a device that
// restarts keeps its mixture, descriptors and server names.
TEST_F(ClientTest, SemaDevicesShareOneModulePerShiftAndKeepTheirMixtureOverARestart) {
  server_method_ = "sema";
  options_.method = "sema";
  std::vector<std::unique_ptr<Client>> devices;
  std::vector<CoordinatorTransport*> transports(3);
  for (int d = 0; d < 3; ++d) {
    options_.client_id = 5 + d;
    options_.storage_dir = absl::StrCat("/device", d);
    devices.push_back(Make(/*with_server=*/true, &transports[d]));
    ASSERT_NE(devices.back(), nullptr);
    ASSERT_TRUE(devices[d]->LoadBackbone("/backbone.ckpt").ok());
    ASSERT_TRUE(devices[d]->Sync().ok());
    EXPECT_EQ(devices[d]->Stats().adapters, 2);  // the base experts of blocks 2 and 3
  }
  std::vector<float> x;
  std::vector<int32_t> y;
  auto learn = [&](Client& device, int batches, uint64_t seed, bool inverted) {
    for (int b = 0; b < batches; ++b) {
      MakeBatch(seed + b, 32, &x, &y);
      if (inverted)
        for (float& v : x) v = 1.0f - v;
      ASSERT_TRUE(device.Learn(x, y).ok());
    }
  };
  // The first adapters train (150 steps) and their descriptors freeze; the data is familiar.
  for (int d = 0; d < 3; ++d) {
    learn(*devices[d], 170, 100 * d, false);
    EXPECT_EQ(devices[d]->Stats().adapters, 2);
    ASSERT_TRUE(devices[d]->Sync().ok());
  }
  ASSERT_TRUE(coordinator().CloseRound().ok());
  // Devices 0 and 1 see the inverted domain and each grow one adapter.
  for (int d = 0; d < 2; ++d) {
    learn(*devices[d], 20, 1000 + 100 * d, true);
    EXPECT_EQ(devices[d]->Stats().adapters, 3) << "device " << d;
    EXPECT_EQ(devices[d]->Stats().proposals_pending, 1);
  }
  learn(*devices[2], 20, 1200, false);
  EXPECT_EQ(devices[2]->Stats().adapters, 2);
  for (int d = 0; d < 3; ++d) {
    absl::StatusOr<SyncResult> synced = devices[d]->Sync();
    ASSERT_TRUE(synced.ok()) << synced.status();
    EXPECT_TRUE(synced->submitted) << "device " << d;
    EXPECT_EQ(devices[d]->Stats().proposals_pending, 0);
  }
  fl::CoordinatorStatus status = coordinator().Status();
  EXPECT_EQ(transports[0]->proposals + transports[1]->proposals, 2);
  ASSERT_EQ(status.pool.size(), 1u);  // one shift, one module
  EXPECT_EQ(status.pool_merges, 1);
  // Both devices hold and trained the one module this round; device 2 does not run it.
  EXPECT_EQ(status.pool[0].holders, 2);
  EXPECT_EQ(status.pool[0].contributors, 2);
  EXPECT_EQ(devices[2]->Stats().adapters, 2);
  // The descriptors are still training: none has reached the pool.
  EXPECT_EQ(transports[0]->descriptors_attached + transports[1]->descriptors_attached, 0);
  EXPECT_EQ(coordinator().GetModule(status.pool[0].name, status.pool[0].version)->descriptor,
            nullptr);
  ASSERT_TRUE(coordinator().CloseRound().ok());
  // The growths end (150 steps from the second inverted batch): the first device to sync gives
  // the pool its descriptor, which the pool keeps for the devices that will run the module.
  for (int d = 0; d < 2; ++d) learn(*devices[d], 131, 2000 + 100 * d, true);
  for (int d = 0; d < 2; ++d) ASSERT_TRUE(devices[d]->Sync().ok());
  EXPECT_EQ(transports[0]->descriptors_attached, 1);
  EXPECT_EQ(transports[1]->descriptors_attached, 0);  // the module had one already
  status = coordinator().Status();
  absl::StatusOr<fl::ModuleSnapshot> pooled =
      coordinator().GetModule(status.pool[0].name, status.pool[0].version);
  ASSERT_TRUE(pooled.ok()) << pooled.status();
  ASSERT_NE(pooled->descriptor, nullptr);
  EXPECT_EQ(pooled->descriptor->info(4).name, "losses");
  ASSERT_TRUE(coordinator().CloseRound().ok());

  // Device 1 restarts: same mixture, same predictions, nothing pending, and it syncs on.
  MakeBatch(77, 64, &x, &y);
  for (float& v : x) v = 1.0f - v;
  std::vector<Prediction> before = PredictAll(*devices[1], x);
  ASSERT_TRUE(devices[1]->Save().ok());
  devices[1].reset();
  options_.client_id = 6;
  options_.storage_dir = "/device1";
  devices[1] = Make(/*with_server=*/true, &transports[1]);
  ASSERT_NE(devices[1], nullptr);
  EXPECT_EQ(devices[1]->Stats().adapters, 3);
  std::vector<Prediction> after = PredictAll(*devices[1], x);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].label, after[i].label);
    EXPECT_NEAR(before[i].confidence, after[i].confidence, 1e-5);  // base + Σ deltas, rounded
  }
  // Its descriptors came back: more of the inverted domain does not grow block 2 again; block 3,
  // whose only descriptor is the clean data's, grows once (SEMA expands block by block).
  learn(*devices[1], 10, 3000, true);
  EXPECT_EQ(devices[1]->Stats().adapters, 4);
  absl::StatusOr<SyncResult> synced = devices[1]->Sync();
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_TRUE(synced->submitted);
  EXPECT_EQ(transports[1]->proposals, 1);  // a new transport counts from zero
  std::vector<int> pool_blocks;
  for (const fl::PoolModuleStatus& m : coordinator().Status().pool) pool_blocks.push_back(m.block);
  EXPECT_EQ(pool_blocks, (std::vector<int>{2, 3}));
}

// SimpleCIL, LAE and FedIns on the device: each learns, predicts the same with one thread or
// three (the copies take LAE's offline module and SimpleCIL's prototypes too), and after a
// restart predicts exactly as before it: what the method keeps besides its modules (the offline
// module LAE started after lae_steps_per_task batches without tasks, the class sums) is in the
// device state.
TEST_F(ClientTest, EveryContinualMethodKeepsItsStateOverARestartAndSplitsPredictions) {
  for (const std::string method : {"simple_cil", "lae", "fedins"}) {
    SCOPED_TRACE(method);
    options_.method = method;
    options_.lae_steps_per_task = 10;
    options_.fedins_pool_size = 4;
    options_.threads = 1;
    options_.storage_dir = "/one-" + method;
    std::vector<float> x;
    std::vector<int32_t> y;
    MakeBatch(77, 40, &x, &y);
    std::vector<Prediction> before;
    {
      auto one = Make();
      options_.threads = 3;
      options_.storage_dir = "/three-" + method;
      auto three = Make();
      for (Client* c : {one.get(), three.get()}) {
        ASSERT_TRUE(c->LoadBackbone("/backbone.ckpt").ok());
        LearnBatches(*c, 24, 1);
      }
      EXPECT_GT(Accuracy(*one, 1000), 0.6);
      before = PredictAll(*one, x);
      const std::vector<Prediction> split = PredictAll(*three, x);
      for (size_t i = 0; i < before.size(); ++i) {
        ASSERT_EQ(split[i].label, before[i].label) << i;
        ASSERT_NEAR(split[i].confidence, before[i].confidence, 1e-5) << i;
      }
      ASSERT_TRUE(one->Save().ok());
    }
    options_.threads = 1;
    options_.storage_dir = "/one-" + method;
    auto restarted = Make();
    EXPECT_TRUE(restarted->Stats().state_restored);
    const std::vector<Prediction> after = PredictAll(*restarted, x);
    for (size_t i = 0; i < before.size(); ++i) {
      ASSERT_EQ(after[i].label, before[i].label) << i;
      ASSERT_FLOAT_EQ(after[i].confidence, before[i].confidence) << i;
    }
  }
  options_.method = "fedins";
  options_.fedins_top_k = 5;
  EXPECT_TRUE(absl::IsInvalidArgument(CreateClientForTesting(options_, {&fs_, nullptr}).status()));
  options_.fedins_top_k = 2;
  options_.method = "lae";  // each method checks its own knobs
  options_.lae_fraction_per_task = 1.0;
  EXPECT_TRUE(absl::IsInvalidArgument(CreateClientForTesting(options_, {&fs_, nullptr}).status()));
}

// LAE and FedIns federate what they share: a device's learning, submitted and aggregated, is
// what a second device downloads. FedIns keeps nothing else, so the second device then predicts
// exactly as the first; LAE's second device runs the first one's online adapter and head.
TEST_F(ClientTest, LaeAndFedInsDevicesFederateTheirSharedModules) {
  for (const std::string method : {"lae", "fedins"}) {
    const std::string& name = method;
    SCOPED_TRACE(name);
    coordinator_.reset();
    server_method_ = method;
    options_.method = name;
    options_.fedins_pool_size = 4;
    options_.lae_steps_per_task = 10;
    options_.client_id = 5;
    options_.storage_dir = "/first-" + name;
    auto first = Make(/*with_server=*/true);
    absl::StatusOr<SyncResult> joined = first->Sync();
    ASSERT_TRUE(joined.ok()) << joined.status();
    EXPECT_EQ(joined->modules_downloaded, method == "lae" ? 2 : 1 + 2 * 4);
    LearnBatches(*first, 16, 1);
    absl::StatusOr<SyncResult> submitted = first->Sync();
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    EXPECT_TRUE(submitted->submitted);
    ASSERT_TRUE(coordinator().CloseRound().ok());

    options_.client_id = 6;
    options_.storage_dir = "/second-" + name;
    auto second = Make(/*with_server=*/true);
    ASSERT_TRUE(second->Sync().ok());
    const double learned = Accuracy(*first, 1000);
    EXPECT_GT(learned, 0.6);
    EXPECT_GT(Accuracy(*second, 1000), learned - 0.1);
    if (method == "fedins") {
      std::vector<float> x;
      std::vector<int32_t> y;
      MakeBatch(31, 40, &x, &y);
      const std::vector<Prediction> a = PredictAll(*first, x), b = PredictAll(*second, x);
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].label, b[i].label) << i;
        ASSERT_NEAR(a[i].confidence, b[i].confidence, 1e-5) << i;
      }
    }
  }
}

}  // namespace
}  // namespace fedcl
