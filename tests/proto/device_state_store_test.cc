// The device state on disk (proto/device_state_store.h) and its codec (proto/device_state.h):
// exact round trips of random states, damaged and foreign files set aside with the previous copy
// used, a failed save losing nothing, and the conversions of older files (an older fedcl-client's
// client_state, format 1 progress).
#include "proto/device_state_store.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "gtest/gtest.h"
#include "proto/device_state.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/client_state.pb.h"

namespace fedcl::proto {
namespace {

constexpr char kDir[] = "/state/7";
const std::string kPath = std::string(kDir) + "/device_state";

std::vector<float> RandomValues(base::Rng& rng, int n) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Normal());
  return v;
}

// A session state with every part filled with random values: two modules (one adopted PET
// module), two queued records, a submission in flight and counters.
device::SessionState RandomSessionState(uint64_t seed) {
  base::Rng rng(seed);
  device::SessionState s;
  device::SessionModuleState head;
  head.name = "head";
  head.server_name = "head";
  head.version = 4 + static_cast<int64_t>(rng.UniformInt(10));
  head.base = RandomValues(rng, 12);
  head.adopted = true;
  head.spec = {"head", peft::ModuleRole::kHead, {}};
  device::SessionModuleState ssf;
  ssf.name = "ssf";
  ssf.server_name = "ssf";
  ssf.version = 3;
  ssf.base = RandomValues(rng, 6);
  ssf.adopted = true;
  ssf.spec = {"ssf", peft::ModuleRole::kPet, {}};
  ssf.spec.pet.kind = peft::PetKind::kLora;  // not the default, so the kind must travel
  ssf.spec.pet.site_prefixes = {"backbone.layers.0"};
  ssf.residual = RandomValues(rng, 6);  // error feedback owed; the head owes none
  s.modules = {head, ssf};
  for (uint64_t seq : {5u, 6u}) {
    device::SessionRecordState r;
    r.sequence = seq;
    r.batches = 1 + static_cast<int64_t>(rng.UniformInt(5));
    r.samples = 8 * r.batches;
    r.loss_sum = rng.Uniform() * 3.0;
    r.deltas = {RandomValues(rng, 12), RandomValues(rng, 6)};
    s.queue.push_back(r);
  }
  s.next_sequence = 7;
  s.in_flight = device::InFlightSubmission{11, 5, {{"head", head.version}, {"ssf", 3}}};
  s.in_flight->compression = {*fl::ParseCompressionSpec("float32"),
                              *fl::ParseCompressionSpec("topk:0.05:64")};
  s.enrolled_round = 2;
  s.submissions = 9;
  s.rounds_closed = 1;
  s.updates_dropped = 2;
  s.records_dropped = 3;
  s.last_submitted_round = 10;
  return s;
}

v1::DeviceState StateMessage(uint64_t seed, uint64_t client_id = 7,
                             const std::string& method = "recipe") {
  v1::DeviceState state;
  state.set_format_version(kDeviceStateFormatVersion);
  state.set_client_id(client_id);
  state.set_method(method);
  state.set_backbone_digest("ab12cd");
  SessionStateToProto(RandomSessionState(seed), &state);
  return state;
}

void ExpectSameSession(const device::SessionState& a, const device::SessionState& b) {
  ASSERT_EQ(a.modules.size(), b.modules.size());
  for (size_t i = 0; i < a.modules.size(); ++i) {
    EXPECT_EQ(a.modules[i].name, b.modules[i].name);
    EXPECT_EQ(a.modules[i].server_name, b.modules[i].server_name);
    EXPECT_EQ(a.modules[i].version, b.modules[i].version);
    EXPECT_EQ(a.modules[i].base, b.modules[i].base);
    EXPECT_EQ(a.modules[i].residual, b.modules[i].residual);
    EXPECT_EQ(a.modules[i].adopted, b.modules[i].adopted);
    EXPECT_EQ(a.modules[i].spec.role, b.modules[i].spec.role);
    EXPECT_EQ(a.modules[i].spec.pet.kind, b.modules[i].spec.pet.kind);
    EXPECT_EQ(a.modules[i].spec.pet.site_prefixes, b.modules[i].spec.pet.site_prefixes);
  }
  ASSERT_EQ(a.queue.size(), b.queue.size());
  for (size_t i = 0; i < a.queue.size(); ++i) {
    EXPECT_EQ(a.queue[i].sequence, b.queue[i].sequence);
    EXPECT_EQ(a.queue[i].batches, b.queue[i].batches);
    EXPECT_EQ(a.queue[i].samples, b.queue[i].samples);
    EXPECT_EQ(a.queue[i].loss_sum, b.queue[i].loss_sum);
    EXPECT_EQ(a.queue[i].deltas, b.queue[i].deltas);
  }
  EXPECT_EQ(a.next_sequence, b.next_sequence);
  ASSERT_EQ(a.in_flight.has_value(), b.in_flight.has_value());
  if (a.in_flight.has_value()) {
    EXPECT_EQ(a.in_flight->round, b.in_flight->round);
    EXPECT_EQ(a.in_flight->last_sequence, b.in_flight->last_sequence);
    ASSERT_EQ(a.in_flight->modules.size(), b.in_flight->modules.size());
    for (size_t i = 0; i < a.in_flight->modules.size(); ++i) {
      EXPECT_EQ(a.in_flight->modules[i].name, b.in_flight->modules[i].name);
      EXPECT_EQ(a.in_flight->modules[i].version, b.in_flight->modules[i].version);
    }
    EXPECT_EQ(a.in_flight->compression, b.in_flight->compression);
  }
  EXPECT_EQ(a.enrolled_round, b.enrolled_round);
  EXPECT_EQ(a.submissions, b.submissions);
  EXPECT_EQ(a.rounds_closed, b.rounds_closed);
  EXPECT_EQ(a.updates_dropped, b.updates_dropped);
  EXPECT_EQ(a.records_dropped, b.records_dropped);
  EXPECT_EQ(a.last_submitted_round, b.last_submitted_round);
}

TEST(DeviceStateStoreTest, SavedSessionStateLoadsBackExactly) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    base::MemoryFileSystem fs;
    DeviceStateStore store(fs, kDir);
    const device::SessionState session = RandomSessionState(seed);
    v1::DeviceState message = StateMessage(seed);
    ASSERT_TRUE(store.Save(message).ok());
    absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->state.has_value());
    EXPECT_FALSE(loaded->set_aside || loaded->from_backup || loaded->from_client_state);
    absl::StatusOr<device::SessionState> decoded = SessionStateFromProto(*loaded->state);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ExpectSameSession(session, *decoded);
  }
}

TEST(DeviceStateStoreTest, MissingFileGivesNoState) {
  base::MemoryFileSystem fs;
  DeviceStateStore store(fs, kDir);
  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->state.has_value());
  EXPECT_FALSE(loaded->set_aside);
}

TEST(DeviceStateStoreTest, CorruptFileIsSetAsideAndThePreviousCopyLoads) {
  base::MemoryFileSystem fs;
  DeviceStateStore store(fs, kDir);
  ASSERT_TRUE(store.Save(StateMessage(1)).ok());
  ASSERT_TRUE(store.Save(StateMessage(2)).ok());  // the first is now device_state.prev
  std::string bytes = *fs.ReadFile(kPath);
  bytes[bytes.size() / 2] ^= 0x40;  // bit rot in the payload
  fs.SetFile(kPath, bytes);

  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->set_aside);
  EXPECT_TRUE(loaded->from_backup);
  EXPECT_TRUE(absl::StrContains(loaded->problem, "checksum")) << loaded->problem;
  ASSERT_TRUE(loaded->state.has_value());
  absl::StatusOr<device::SessionState> decoded = SessionStateFromProto(*loaded->state);
  ASSERT_TRUE(decoded.ok());
  ExpectSameSession(RandomSessionState(1), *decoded);
  ASSERT_TRUE(fs.Exists(kPath + ".corrupt"));
  EXPECT_EQ(*fs.ReadFile(kPath + ".corrupt"), bytes) << "kept as it was, for inspection";
}

TEST(DeviceStateStoreTest, TruncatedOrForeignFilesAreSetAside) {
  base::MemoryFileSystem fs;
  DeviceStateStore store(fs, kDir);
  ASSERT_TRUE(store.Save(StateMessage(1)).ok());
  const std::string bytes = *fs.ReadFile(kPath);
  for (const std::string& damaged : {bytes.substr(0, bytes.size() - 3), bytes.substr(0, 10),
                                     std::string("not a state"), std::string()}) {
    fs.SetFile(kPath, damaged);
    absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_TRUE(loaded->set_aside) << damaged.size() << " bytes";
    EXPECT_FALSE(loaded->state.has_value());
  }
  // An intact envelope of another kind is foreign too.
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kModelCheckpoint, StateMessage(1)).ok());
  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->set_aside);
}

TEST(DeviceStateStoreTest, StateOfAnotherClientOrMethodIsNeverLoaded) {
  for (const auto& [client, method] :
       std::vector<std::pair<uint64_t, std::string>>{{8, "recipe"}, {7, "sema"}}) {
    base::MemoryFileSystem fs;
    DeviceStateStore store(fs, kDir);
    ASSERT_TRUE(store.Save(StateMessage(1)).ok());
    absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(client, method);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_FALSE(loaded->state.has_value()) << client << " " << method;
    EXPECT_TRUE(loaded->set_aside);
    EXPECT_TRUE(fs.Exists(kPath + ".corrupt")) << "kept for inspection";
  }
}

TEST(DeviceStateStoreTest, NewerFormatIsRefusedAndKept) {
  base::MemoryFileSystem fs;
  DeviceStateStore store(fs, kDir);
  v1::DeviceState message = StateMessage(1);
  message.set_format_version(kDeviceStateFormatVersion + 1);
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kDeviceState, message).ok());
  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  EXPECT_TRUE(absl::IsFailedPrecondition(loaded.status())) << loaded.status();
  EXPECT_TRUE(fs.Exists(kPath));
  EXPECT_FALSE(fs.Exists(kPath + ".corrupt"));
}

TEST(DeviceStateStoreTest, FailedSaveLeavesThePreviousState) {
  base::MemoryFileSystem fs;
  DeviceStateStore store(fs, kDir);
  ASSERT_TRUE(store.Save(StateMessage(1)).ok());
  fs.FailNextWrites(1, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(absl::IsResourceExhausted(store.Save(StateMessage(2))));
  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->state.has_value());
  absl::StatusOr<device::SessionState> decoded = SessionStateFromProto(*loaded->state);
  ASSERT_TRUE(decoded.ok());
  ExpectSameSession(RandomSessionState(1), *decoded);
}

// An older fedcl-client's state: a head and an SSF module, and an update awaiting its answer.
v1::ClientState OldClientState(base::Rng& rng) {
  v1::ClientState old;
  old.set_format_version(1);
  old.set_client_id(7);
  old.set_enrolled_round(3);
  old.set_backbone_digest("ab12cd");
  for (const char* name : {"head", "ssf"}) {
    v1::ModulePayload* m = old.add_modules();
    m->mutable_module()->set_name(name);
    m->mutable_module()->set_version(9);
    m->mutable_module()->set_role(std::string(name) == "head" ? "head" : "pet");
    if (std::string(name) == "ssf") m->mutable_module()->mutable_pet()->set_kind("ssf");
    v1::ParameterSet* values = m->mutable_parameters();
    v1::Tensor* t = values->add_tensors();
    t->set_name(std::string(name) + ".w");
    t->add_shape(4);
    t->set_dtype(v1::DTYPE_FLOAT32);
    const std::vector<float> v = RandomValues(rng, 4);
    t->set_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
  }
  old.set_last_submitted_round(11);
  v1::PendingUpdate* pending = old.mutable_pending();
  pending->set_round(12);
  pending->set_num_samples(80);
  pending->set_local_steps(5);
  pending->set_loss(0.75);
  v1::PendingModuleDelta* delta = pending->add_modules();
  delta->set_name("head");
  delta->set_base_version(9);
  *delta->mutable_delta() = old.modules(0).parameters();
  old.set_participations(6);
  old.set_dropped_updates(2);
  return old;
}

TEST(DeviceStateStoreTest, AnOlderClientStateBecomesARecipeDeviceWithItsUpdateInFlight) {
  base::MemoryFileSystem fs;
  base::Rng rng(5);
  const v1::ClientState old = OldClientState(rng);
  ASSERT_TRUE(
      WriteEnvelope(fs, std::string(kDir) + "/client_state", PayloadKind::kClientState, old).ok());
  DeviceStateStore store(fs, kDir);
  absl::StatusOr<DeviceStateStore::Loaded> other = store.Load(7, "sema");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->state.has_value()) << "only a recipe device converts it";

  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->state.has_value());
  EXPECT_TRUE(loaded->from_client_state);
  absl::StatusOr<device::SessionState> s = SessionStateFromProto(*loaded->state);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->modules.size(), 2u);
  EXPECT_EQ(s->modules[0].name, "head");
  EXPECT_EQ(s->modules[1].name, "ssf");
  EXPECT_EQ(s->modules[1].spec.pet.kind, peft::PetKind::kSsf);
  for (const device::SessionModuleState& m : s->modules) {
    EXPECT_TRUE(m.adopted);
    EXPECT_EQ(m.version, 9);
  }
  const std::string& head_bytes = old.modules(0).parameters().tensors(0).data();
  std::vector<float> head(4);
  std::memcpy(head.data(), head_bytes.data(), head_bytes.size());
  EXPECT_EQ(s->modules[0].base, head);
  ASSERT_EQ(s->queue.size(), 1u);
  EXPECT_EQ(s->queue[0].samples, 80);
  EXPECT_EQ(s->queue[0].batches, 5);
  EXPECT_DOUBLE_EQ(s->queue[0].loss_sum, 0.75 * 5);
  EXPECT_EQ(s->queue[0].deltas[0], head) << "the pending delta, for the head";
  EXPECT_EQ(s->queue[0].deltas[1], std::vector<float>(4, 0.0f)) << "none for the SSF module";
  ASSERT_TRUE(s->in_flight.has_value());
  EXPECT_EQ(s->in_flight->round, 12);
  ASSERT_EQ(s->in_flight->modules.size(), 1u);
  EXPECT_EQ(s->in_flight->modules[0].name, "head");
  EXPECT_EQ(s->in_flight->modules[0].version, 9);
  EXPECT_EQ(s->submissions, 6);
  EXPECT_EQ(s->last_submitted_round, 11);
  EXPECT_EQ(s->enrolled_round, 3);
}

TEST(DeviceStateStoreTest, ADamagedOlderClientStateIsNotConverted) {
  base::MemoryFileSystem fs;
  fs.SetFile(std::string(kDir) + "/client_state", "an old file, but damaged");
  DeviceStateStore store(fs, kDir);
  absl::StatusOr<DeviceStateStore::Loaded> loaded = store.Load(7, "recipe");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->state.has_value());
}

TEST(DeviceStateCodecTest, AnInFlightCompressionThatIsNotOneOrDoesNotMatchIsRefusedNamingIt) {
  v1::DeviceState message = StateMessage(4);
  message.mutable_in_flight()->set_compression(1, "topk:7");
  absl::StatusOr<device::SessionState> decoded = SessionStateFromProto(message);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("fraction of 7"), std::string::npos)
      << decoded.status();
  message = StateMessage(4);
  message.mutable_in_flight()->mutable_compression()->RemoveLast();
  decoded = SessionStateFromProto(message);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("1 compressions for 2 modules"), std::string::npos)
      << decoded.status();
}

TEST(DeviceStateCodecTest, FormatOneProgressBecomesTheMethodsState) {
  v1::DeviceState in;
  in.set_format_version(1);
  v1::LearnerProgressState* p = in.mutable_progress();
  p->set_task(2);
  p->set_task_steps(40);
  p->set_has_lae_offline(true);
  for (float v : {0.5f, -1.25f, 2.0f}) p->add_lae_offline(v);
  for (float v : {1.0f, 2.0f}) p->add_class_sums(v);
  for (int64_t c : {3, 4}) p->add_class_counts(c);
  absl::StatusOr<cl::LearnerProgress> progress = ProgressFromProto(in, 0);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_EQ(progress->task, 2);
  EXPECT_EQ(progress->task_steps, 40);
  EXPECT_EQ(progress->method.floats.at("offline"), (std::vector<float>{0.5f, -1.25f, 2.0f}));
  EXPECT_EQ(progress->method.floats.at("class_sums"), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(progress->method.ints.at("class_counts"), (std::vector<int64_t>{3, 4}));

  // Format 2 carries the method's state as it is, and refuses an array named twice.
  cl::LearnerProgress written = *progress;
  v1::DeviceState in2;
  in2.set_format_version(2);
  ProgressToProto(written, in2.mutable_progress());
  absl::StatusOr<cl::LearnerProgress> read = ProgressFromProto(in2, 0);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->method, written.method);
  *in2.mutable_progress()->mutable_method()->add_floats() = in2.progress().method().floats(0);
  EXPECT_TRUE(absl::IsInvalidArgument(ProgressFromProto(in2, 0).status()));
}

}  // namespace
}  // namespace fedcl::proto
