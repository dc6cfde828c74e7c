// fedcl::Client against an in-process coordinator: concurrent use (a sync waiting on the server
// while the device learns, calls from several threads) and every continual method's devices
// (SEMA's shared pool, state over a restart, LAE and FedIns federating).
#include "tests/sdk/client_fixture.h"

namespace fedcl::sdk_test {
namespace {

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
}  // namespace fedcl::sdk_test
