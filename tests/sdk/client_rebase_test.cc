// fedcl::Client's re-basing against an in-process coordinator, checked value by value: the
// modules a sync leaves on the device and the update it submits.
#include <map>
#include <string>

#include "proto/device_state.h"
#include "proto/device_state_store.h"
#include "tests/sdk/client_fixture.h"

namespace fedcl::sdk_test {
namespace {

// A device's shared modules as its saved state holds them, by server name (Save commits learning
// first): the values its learning is measured from, and those plus every queued delta.
struct SavedModule {
  int64_t version = -1;
  Eigen::VectorXf base, committed;
};
struct SavedState {
  std::map<std::string, SavedModule> modules;
  size_t queue_records = 0;
};

SavedState SaveAndRead(Client& client, base::FileSystem& fs, const ClientOptions& options) {
  SavedState out;
  EXPECT_TRUE(client.Save().ok());
  proto::DeviceStateStore store(fs, options.storage_dir);
  absl::StatusOr<proto::DeviceStateStore::Loaded> loaded =
      store.Load(options.client_id, options.method);
  EXPECT_TRUE(loaded.ok() && loaded->state.has_value()) << loaded.status();
  if (!loaded.ok() || !loaded->state.has_value()) return out;
  absl::StatusOr<device::SessionState> state = proto::SessionStateFromProto(*loaded->state);
  EXPECT_TRUE(state.ok()) << state.status();
  if (!state.ok()) return out;
  out.queue_records = state->queue.size();
  for (size_t i = 0; i < state->modules.size(); ++i) {
    const device::SessionModuleState& m = state->modules[i];
    SavedModule& saved = out.modules[m.server_name];
    saved.version = m.version;
    saved.base = Eigen::Map<const Eigen::VectorXf>(m.base.data(), m.base.size());
    saved.committed = saved.base;
    for (const device::SessionRecordState& r : state->queue) {
      saved.committed += Eigen::Map<const Eigen::VectorXf>(r.deltas[i].data(), r.deltas[i].size());
    }
  }
  return out;
}

Eigen::VectorXf ServerValues(fl::Coordinator& coordinator, const std::string& name,
                             int64_t version) {
  absl::StatusOr<fl::ModuleSnapshot> module = coordinator.GetModule(name, version);
  EXPECT_TRUE(module.ok()) << name << " v" << version << ": " << module.status();
  return module.ok() ? Eigen::VectorXf(module->values->flat_values()) : Eigen::VectorXf();
}

// |a − b| <= tolerance · (1 + |reference|) elementwise: float sums of a few terms of order 1.
::testing::AssertionResult Near(const Eigen::VectorXf& a, const Eigen::VectorXf& b,
                                const Eigen::VectorXf& reference, float tolerance = 2e-6f) {
  if (a.size() != b.size() || a.size() != reference.size()) {
    return ::testing::AssertionFailure() << "sizes " << a.size() << ", " << b.size();
  }
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > tolerance * (1.0f + std::fabs(reference[i]))) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i]
                                           << " (max diff " << (a - b).cwiseAbs().maxCoeff() << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// Whether `client` predicts as a device restored from its saved state (a copy of its storage, no
// server) does, to 1e-5 in confidence: what it runs is what it saved.
::testing::AssertionResult RunsWhatItSaved(Client& client, base::MemoryFileSystem& fs,
                                           ClientOptions options) {
  if (!client.Save().ok()) return ::testing::AssertionFailure() << "save failed";
  for (const char* file : {"device_state", "backbone.ckpt"}) {
    absl::StatusOr<std::string> bytes =
        fs.ReadFile(absl::StrCat(options.storage_dir, "/", file), 1 << 30);
    if (!bytes.ok()) return ::testing::AssertionFailure() << file << ": " << bytes.status();
    if (!fs.WriteFileAtomically(absl::StrCat("/restored/", file), *bytes).ok())
      return ::testing::AssertionFailure() << "cannot copy " << file;
  }
  options.storage_dir = "/restored";
  absl::StatusOr<std::unique_ptr<Client>> restored =
      CreateClientForTesting(options, {&fs, nullptr});
  if (!restored.ok()) return ::testing::AssertionFailure() << restored.status();
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(4242, 64, &x, &y);
  std::vector<Prediction> live(64), saved(64);
  if (!client.Predict(x, absl::MakeSpan(live)).ok() ||
      !(*restored)->Predict(x, absl::MakeSpan(saved)).ok()) {
    return ::testing::AssertionFailure() << "predict failed";
  }
  for (size_t i = 0; i < live.size(); ++i) {
    // The saved values are base + each queued delta, summed in float: a few ulps off the live.
    if (live[i].label != saved[i].label ||
        std::fabs(live[i].confidence - saved[i].confidence) > 1e-5f) {
      return ::testing::AssertionFailure()
             << "image " << i << ": runs " << live[i].label << " at " << live[i].confidence
             << ", saved " << saved[i].label << " at " << saved[i].confidence;
    }
  }
  return ::testing::AssertionSuccess();
}

// Re-basing (core/device/device_session.h): on server values S the device's modules become S plus
// its queued learning, and the submission is exactly that learning, at S's version. Checked
// against values computed here from the server's modules and the device's saved state, and the
// device's live modules against what it saved.
TEST_F(ClientTest, SyncDownloadsTheBackboneRebasesAndSubmits) {
  options_.autosave_batches = 3;  // several queued records, summed into one submission
  CoordinatorTransport* transport = nullptr;
  auto client = Make(/*with_server=*/true, &transport);
  // No backbone yet: the first sync downloads it, takes the server's modules, has nothing to send.
  absl::StatusOr<SyncResult> first = client->Sync();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(transport->backbone_downloads, 1);
  EXPECT_EQ(first->modules_downloaded, 2);
  EXPECT_FALSE(first->submitted);
  EXPECT_TRUE(fs_.Exists("/device/backbone.ckpt"));
  // Nothing learned yet: the modules are the server's version 0 exactly (the device's own initial
  // values differ).
  std::map<std::string, Eigen::VectorXf> v0;
  const SavedState synced = SaveAndRead(*client, fs_, options_);
  ASSERT_EQ(synced.modules.size(), 2u);
  for (const auto& [name, m] : synced.modules) {
    v0[name] = ServerValues(coordinator(), name, 0);
    EXPECT_EQ(m.version, 0) << name;
    EXPECT_EQ(m.committed, v0[name]) << name;
  }
  EXPECT_TRUE(RunsWhatItSaved(*client, fs_, options_));

  // Learn offline while another device moves the server's modules on (round 0 closes with its
  // update, publishing version 1).
  LearnBatches(*client, 8, 1);
  const double learned = Accuracy(*client, 1000);
  const SavedState queued = SaveAndRead(*client, fs_, options_);
  EXPECT_EQ(queued.queue_records, 3u);  // 3 + 3 autosaved, 2 at the save
  EXPECT_TRUE(RunsWhatItSaved(*client, fs_, options_));
  std::map<std::string, Eigen::VectorXf> learning;  // what the device learned since version 0
  for (const auto& [name, m] : queued.modules) {
    EXPECT_EQ(m.base, v0[name]) << name;
    learning[name] = m.committed - v0[name];
    EXPECT_GT(learning[name].cwiseAbs().maxCoeff(), 1e-3f) << name << " learned nothing";
  }
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
  std::map<std::string, Eigen::VectorXf> v1;
  for (const auto& [name, values] : v0) {
    v1[name] = ServerValues(coordinator(), name, 1);
    // The server moved far more than the tolerance below: a device that kept version 0 fails.
    ASSERT_GT((v1[name] - values).cwiseAbs().maxCoeff(), 1e-3f) << name;
  }

  // The device re-bases its queued learning on version 1 and submits it.
  absl::StatusOr<SyncResult> second = client->Sync();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->round, 1);
  EXPECT_EQ(second->modules_downloaded, 2);
  EXPECT_TRUE(second->submitted);
  EXPECT_GT(second->bytes_uploaded, 0);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{1}));
  // The submission is the learning since version 0, for both modules, based on version 1.
  ASSERT_EQ(transport->submitted_updates.size(), 1u);
  const fl::LocalUpdate& sent = transport->submitted_updates[0];
  EXPECT_EQ(sent.num_samples, 8 * 16);
  EXPECT_EQ(sent.local_steps, 8);
  ASSERT_EQ(sent.modules.size(), 2u);
  for (const fl::ModuleUpdate& mu : sent.modules) {
    ASSERT_TRUE(learning.contains(mu.name)) << mu.name;
    EXPECT_EQ(mu.base_version, 1) << mu.name;
    const Eigen::Map<const Eigen::VectorXf> delta(mu.values.data(), mu.values.size());
    EXPECT_TRUE(Near(delta, learning[mu.name], v0[mu.name])) << mu.name;
  }
  // Acknowledged: the modules are version 1 plus that learning, nothing queued, and the device
  // runs them.
  const SavedState rebased = SaveAndRead(*client, fs_, options_);
  EXPECT_EQ(rebased.queue_records, 0u);
  for (const auto& [name, m] : rebased.modules) {
    EXPECT_EQ(m.version, 1) << name;
    EXPECT_TRUE(Near(m.base, v1[name] + learning[name], v1[name])) << name;
  }
  EXPECT_TRUE(RunsWhatItSaved(*client, fs_, options_));
  EXPECT_EQ(client->Stats().queue_records, 0);
  EXPECT_EQ(client->Stats().submissions, 1);
  EXPECT_EQ(client->Stats().last_round, 1);
  // Its own learning survived the re-base.
  EXPECT_GT(Accuracy(*client, 1000), learned - 0.1);
  EXPECT_GT(Accuracy(*client, 1000), 0.8);

  // Nothing learned since: the next sync (round 2, version 2) submits nothing and lands on the
  // server's version 2 exactly.
  ASSERT_TRUE(coordinator().CloseRound().ok());
  absl::StatusOr<SyncResult> third = client->Sync();
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->round, 2);
  EXPECT_EQ(third->modules_downloaded, 2);
  EXPECT_FALSE(third->submitted);
  EXPECT_EQ(transport->submitted_updates.size(), 1u);
  for (const auto& [name, m] : SaveAndRead(*client, fs_, options_).modules) {
    EXPECT_EQ(m.version, 2) << name;
    EXPECT_EQ(m.committed, ServerValues(coordinator(), name, 2)) << name;
  }
  EXPECT_TRUE(RunsWhatItSaved(*client, fs_, options_));
  EXPECT_GT(Accuracy(*client, 1000), 0.8);
}

}  // namespace
}  // namespace fedcl::sdk_test
