// Fuzz target: a device's stored state (proto/device_state.h, proto/device_state_store.h), as
// the SDK and fedcl-client read it at start-up from a file that may be damaged or foreign.
// Input: a selector byte (its low bits pick the learner's method, bit 7 reads the rest through
// the store's checksummed envelope instead of as a bare DeviceState), then the bytes. A state
// that restores must encode again into a state that restores.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "core/cl/learner.h"
#include "core/device/device_session.h"
#include "core/nn/model.h"
#include "proto/device_state.h"
#include "proto/device_state_store.h"
#include "proto/envelope.h"
#include "tests/core/nn/test_models.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {
namespace {

constexpr uint64_t kClient = 41;
constexpr int kModelDim = 8;  // nn::testing::TinyConfig's ViT width
// Every built-in method: each stores a state of its own.
const char* const kMethods[] = {"sema",        "sema_replay", "lae",
                                "fedins",      "simple_cil",  "fed_simple_cil",
                                "linear_head", "recipe",      "sequential_adapter"};
constexpr int kNumMethods = static_cast<int>(sizeof(kMethods) / sizeof(kMethods[0]));

// A fresh device for `method`: a tiny ViT learner and its offline session.
struct Device {
  explicit Device(const std::string& method) {
    nn::ModelConfig config = nn::testing::TinyConfig(nn::BackboneKind::kVit);
    std::unique_ptr<nn::Model> model = *nn::Model::Create(config, 7);
    cl::LearnerOptions options;
    options.method = method;
    // The tiny ViT's width is 8: SEMA's descriptor must compress it. A small model keeps an
    // execution cheap (building the model is most of it).
    if (method == "sema" || method == "sema_replay")
      options.method_options = "expandable_blocks: [1] descriptor_bottleneck: 4";
    if (method == "sequential_adapter") options.method_options = "blocks: [1]";
    options.seed = 3;
    absl::StatusOr<std::unique_ptr<cl::Learner>> created =
        cl::Learner::Create(std::move(model), options);
    if (!created.ok()) {
      std::fprintf(stderr, "cannot build a %s learner: %s\n", method.c_str(),
                   created.status().ToString().c_str());
      abort();
    }
    learner = *std::move(created);
    device::SessionOptions session_options;
    session_options.client_id = kClient;
    session = std::make_unique<device::DeviceSession>(session_options, *learner,
                                                      device::SessionEnvironment{.mu = &mu});
  }
  absl::Status Restore(const v1::DeviceState& state) {
    std::lock_guard<std::mutex> lock(mu);
    return proto::RestoreDeviceState(state, *learner, *session);
  }
  v1::DeviceState Encode(const std::string& method) {
    std::lock_guard<std::mutex> lock(mu);
    return proto::EncodeDeviceState(kClient, method, "digest", *session, *learner);
  }

  std::mutex mu;
  std::unique_ptr<cl::Learner> learner;
  std::unique_ptr<device::DeviceSession> session;
};

}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  for (int m = 0; m < kNumMethods; ++m) {
    Device device(kMethods[m]);
    {  // some learning, so the state holds more than the initial modules
      std::lock_guard<std::mutex> lock(device.mu);
      base::Rng rng(m);
      nn::Matrix images(8, 64);
      for (int64_t i = 0; i < images.size(); ++i) images.data()[i] = rng.Uniform(0, 1);
      std::vector<int32_t> labels = {0, 1, 2, 3, 0, 1, 2, 3};
      (void)device.learner->Learn(images, labels);
    }
    const v1::DeviceState state = device.Encode(kMethods[m]);
    seeds.emplace_back(std::string(kMethods[m]) + "-bare",
                       std::string(1, static_cast<char>(m)) + state.SerializeAsString());
    seeds.emplace_back(std::string(kMethods[m]) + "-stored",
                       std::string(1, static_cast<char>(0x80 | m)) +
                           proto::EncodeEnvelope(proto::PayloadKind::kDeviceState, state).value());
  }
  return seeds;
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  fuzz::FuzzInput input(data, size);
  const uint8_t selector = input.Byte();
  const std::string method = fuzz::kMethods[(selector & 0x7f) % fuzz::kNumMethods];
  const absl::string_view bytes = input.Rest();
  v1::DeviceState state;
  if (selector & 0x80) {
    base::MemoryFileSystem fs;
    fs.SetFile("/dev0/device_state", bytes);
    proto::DeviceStateStore store(fs, "/dev0");
    absl::StatusOr<proto::DeviceStateStore::Loaded> loaded = store.Load(fuzz::kClient, method);
    if (!loaded.ok() || !loaded->state.has_value()) return 0;
    state = *std::move(loaded->state);
  } else if (!state.ParseFromString(std::string(bytes))) {
    return 0;
  }
  // RestoreDeviceState decodes both parts before it touches the learner, so a state that does
  // not decode needs no device (building one is most of an execution's cost).
  if (!proto::SessionStateFromProto(state).ok() ||
      !proto::ProgressFromProto(state, fuzz::kModelDim).ok()) {
    return 0;
  }
  fuzz::Device device(method);
  if (!device.Restore(state).ok()) return 0;
  fuzz::Device again(method);
  if (!again.Restore(device.Encode(method)).ok()) abort();  // what restores, saves and restores
  return 0;
}
