// fedcl::Client against an in-process coordinator: offline learning, the bounded queue,
// closed rounds, persistence with a corrupt file and the memory budget.
#include "tests/sdk/client_fixture.h"

namespace fedcl::sdk_test {
namespace {

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

}  // namespace
}  // namespace fedcl::sdk_test
