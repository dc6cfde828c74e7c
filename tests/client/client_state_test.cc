#include "client/client_state.h"

#include <cstring>
#include <string>

#include "core/base/memory_filesystem.h"
#include "gtest/gtest.h"
#include "proto/envelope.h"

namespace fedcl::client {
namespace {

constexpr char kDir[] = "/state/client7";
const std::string kPath = std::string(kDir) + "/client_state";

ClientState SampleState() {
  ClientState state;
  state.client_id = 7;
  state.enrolled_round = 3;
  state.backbone_digest = "ab12";
  HeldModule head;
  head.spec = {"head", fl::ModuleRole::kHead, {}};
  head.version = 9;
  head.values.Add("w", {2, 3}, true);
  head.values.Add("b", {2}, true);
  for (int i = 0; i < 8; ++i) head.values.flat_values()[i] = 0.5f * i - 1.0f;
  state.modules.push_back(head);
  HeldModule ssf;
  ssf.spec = {"ssf", fl::ModuleRole::kPet, {}};
  ssf.spec.pet.site_prefixes = {"layers.0"};
  ssf.version = 8;
  ssf.values.Add("layers.0.ssf_scale", {4}, true);
  ssf.values.flat_values().setConstant(1.5f);
  state.modules.push_back(ssf);
  state.last_submitted_round = 11;
  PendingUpdate pending;
  pending.round = 12;
  pending.update.num_samples = 80;
  pending.update.local_steps = 5;
  pending.update.loss = 0.75;
  pending.update.modules.push_back(
      {"head", 9, {{"w", {2, 3}}, {"b", {2}}}, {1, 2, 3, 4, 5, 6, 7, 8}});
  state.pending = pending;
  state.participations = 6;
  state.dropped_updates = 2;
  return state;
}

void ExpectSameState(const ClientState& a, const ClientState& b) {
  EXPECT_EQ(a.client_id, b.client_id);
  EXPECT_EQ(a.enrolled_round, b.enrolled_round);
  EXPECT_EQ(a.backbone_digest, b.backbone_digest);
  ASSERT_EQ(a.modules.size(), b.modules.size());
  for (size_t i = 0; i < a.modules.size(); ++i) {
    EXPECT_EQ(a.modules[i].spec.name, b.modules[i].spec.name);
    EXPECT_EQ(a.modules[i].spec.role, b.modules[i].spec.role);
    EXPECT_EQ(a.modules[i].spec.pet.site_prefixes, b.modules[i].spec.pet.site_prefixes);
    EXPECT_EQ(a.modules[i].version, b.modules[i].version);
    EXPECT_TRUE(a.modules[i].values.CheckSameLayout(b.modules[i].values).ok());
    EXPECT_EQ(a.modules[i].values.flat_values(), b.modules[i].values.flat_values());
  }
  EXPECT_EQ(a.last_submitted_round, b.last_submitted_round);
  ASSERT_EQ(a.pending.has_value(), b.pending.has_value());
  if (a.pending.has_value()) {
    EXPECT_EQ(a.pending->round, b.pending->round);
    EXPECT_EQ(a.pending->update.num_samples, b.pending->update.num_samples);
    EXPECT_EQ(a.pending->update.local_steps, b.pending->update.local_steps);
    EXPECT_EQ(a.pending->update.loss, b.pending->update.loss);
    ASSERT_EQ(a.pending->update.modules.size(), b.pending->update.modules.size());
    for (size_t i = 0; i < a.pending->update.modules.size(); ++i) {
      const fl::ModuleUpdate& x = a.pending->update.modules[i];
      const fl::ModuleUpdate& y = b.pending->update.modules[i];
      EXPECT_EQ(x.name, y.name);
      EXPECT_EQ(x.base_version, y.base_version);
      ASSERT_EQ(x.layout.size(), y.layout.size());
      for (size_t t = 0; t < x.layout.size(); ++t) {
        EXPECT_EQ(x.layout[t].name, y.layout[t].name);
        EXPECT_EQ(x.layout[t].shape, y.layout[t].shape);
      }
      EXPECT_EQ(x.values, y.values);
    }
  }
  EXPECT_EQ(a.participations, b.participations);
  EXPECT_EQ(a.dropped_updates, b.dropped_updates);
}

TEST(ClientStateStoreTest, SavedStateLoadsBackExactly) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  const ClientState state = SampleState();
  ASSERT_TRUE(store.Save(state).ok());
  absl::StatusOr<ClientStateStore::Loaded> loaded = ClientStateStore(fs, kDir).Load(7);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->resumed);
  EXPECT_FALSE(loaded->set_aside);
  ExpectSameState(state, loaded->state);
}

TEST(ClientStateStoreTest, StateWithoutOptionalPartsRoundTrips) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  ClientState state;
  state.client_id = 7;
  ASSERT_TRUE(store.Save(state).ok());
  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->state.enrolled_round.has_value());
  EXPECT_FALSE(loaded->state.last_submitted_round.has_value());
  EXPECT_FALSE(loaded->state.pending.has_value());
  EXPECT_TRUE(loaded->state.modules.empty());
}

TEST(ClientStateStoreTest, MissingFileGivesAFreshStateForTheClient) {
  base::MemoryFileSystem fs;
  absl::StatusOr<ClientStateStore::Loaded> loaded = ClientStateStore(fs, kDir).Load(7);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->resumed);
  EXPECT_FALSE(loaded->set_aside);
  EXPECT_EQ(loaded->state.client_id, 7u);
  EXPECT_FALSE(loaded->state.enrolled_round.has_value());
}

TEST(ClientStateStoreTest, CorruptFileIsSetAsideAndTheClientStartsFresh) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  ASSERT_TRUE(store.Save(SampleState()).ok());
  std::string bytes = *fs.ReadFile(kPath);
  bytes[bytes.size() / 2] ^= 0x40;  // bit rot in the payload
  fs.SetFile(kPath, bytes);

  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->set_aside);
  EXPECT_FALSE(loaded->resumed);
  EXPECT_NE(loaded->problem.find("checksum"), std::string::npos) << loaded->problem;
  EXPECT_FALSE(loaded->state.enrolled_round.has_value());
  EXPECT_FALSE(fs.Exists(kPath));
  ASSERT_TRUE(fs.Exists(kPath + ".corrupt"));
  EXPECT_EQ(*fs.ReadFile(kPath + ".corrupt"), bytes) << "kept as it was, for inspection";

  // The next save and load work normally.
  ASSERT_TRUE(store.Save(SampleState()).ok());
  loaded = store.Load(7);
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->resumed);
}

TEST(ClientStateStoreTest, TruncatedOrForeignFilesAreSetAside) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  ASSERT_TRUE(store.Save(SampleState()).ok());
  const std::string bytes = *fs.ReadFile(kPath);
  for (const std::string& damaged : {bytes.substr(0, bytes.size() - 3), bytes.substr(0, 10),
                                     std::string("not a state"), std::string()}) {
    fs.SetFile(kPath, damaged);
    absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_TRUE(loaded->set_aside) << damaged.size() << " bytes";
  }
  // An intact envelope of another kind is foreign too.
  v1::ClientState message;
  ToProto(SampleState(), &message);
  ASSERT_TRUE(proto::WriteEnvelope(fs, kPath, proto::PayloadKind::kModelCheckpoint, message).ok());
  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->set_aside);
}

TEST(ClientStateStoreTest, UndecodableContentIsSetAside) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  v1::ClientState message;
  ToProto(SampleState(), &message);
  // A held module whose values are not finite: intact envelope, unusable content.
  v1::Tensor* tensor = message.mutable_modules(0)->mutable_parameters()->mutable_tensors(0);
  std::string data = tensor->data();
  const uint32_t nan_bits = 0x7fc00000;
  std::memcpy(data.data(), &nan_bits, 4);
  tensor->set_data(data);
  ASSERT_TRUE(proto::WriteEnvelope(fs, kPath, proto::PayloadKind::kClientState, message).ok());
  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->set_aside);
  EXPECT_NE(loaded->problem.find("head"), std::string::npos) << loaded->problem;
}

TEST(ClientStateStoreTest, StateOfAnotherClientIsRefusedAndKept) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  ASSERT_TRUE(store.Save(SampleState()).ok());
  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(8);
  EXPECT_TRUE(absl::IsFailedPrecondition(loaded.status())) << loaded.status();
  EXPECT_TRUE(fs.Exists(kPath));
}

TEST(ClientStateStoreTest, NewerFormatIsRefusedAndKept) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  v1::ClientState message;
  ToProto(SampleState(), &message);
  message.set_format_version(kClientStateFormatVersion + 1);
  ASSERT_TRUE(proto::WriteEnvelope(fs, kPath, proto::PayloadKind::kClientState, message).ok());
  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
  EXPECT_TRUE(absl::IsFailedPrecondition(loaded.status())) << loaded.status();
  EXPECT_TRUE(fs.Exists(kPath));
  EXPECT_FALSE(fs.Exists(kPath + ".corrupt"));
}

TEST(ClientStateStoreTest, FailedSaveLeavesThePreviousState) {
  base::MemoryFileSystem fs;
  ClientStateStore store(fs, kDir);
  ClientState state = SampleState();
  ASSERT_TRUE(store.Save(state).ok());
  fs.FailNextWrites(1, absl::ResourceExhaustedError("disk full"));
  ClientState changed = state;
  changed.pending.reset();
  EXPECT_TRUE(absl::IsResourceExhausted(store.Save(changed)));
  absl::StatusOr<ClientStateStore::Loaded> loaded = store.Load(7);
  ASSERT_TRUE(loaded.ok());
  ExpectSameState(state, loaded->state);
}

}  // namespace
}  // namespace fedcl::client
