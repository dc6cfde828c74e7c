// Learning in batches, cancellable (issue 18, item 5): Learn with LearnOptions learns exactly what
// as many one-batch calls would, and a call cancelled between two of its batches leaves the device
// as it was before the call. Each check compares twin devices, one of which never made the call:
// their predictions bit for bit, their counters, and the state each then saves, byte for byte.
// The cancel is raised from the batch callback, so where it falls does not depend on timing.
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/device_state.pb.h"
#include "tests/sdk/client_fixture.h"

namespace fedcl::sdk_test {
namespace {

class ClientCancelTest : public ClientTest {
 protected:
  // A device of `method` in `dir` with a backbone, a history of `history` one-batch calls of
  // `images` (the same for every twin; some of it committed, some not) and a fitted detector.
  std::unique_ptr<Client> Device(const std::string& dir, int history, int images = 16) {
    options_.storage_dir = dir;
    std::unique_ptr<Client> device = Make();
    EXPECT_NE(device, nullptr);
    if (device == nullptr) return nullptr;
    EXPECT_TRUE(device->LoadBackbone("/backbone.ckpt").ok());
    std::vector<float> x;
    std::vector<int32_t> y;
    for (int b = 0; b < history; ++b) {
      MakeBatch(1 + b, images, &x, &y);
      EXPECT_TRUE(device->Learn(x, y).ok());
    }
    MakeBatch(9, 60, &x, &y);
    const absl::Status fitted = device->FitDetector(x, y);
    EXPECT_TRUE(fitted.ok()) << fitted;
    return device;
  }

  // The stored state `client` writes when it saves now: the file's bytes, and the message.
  std::string SavedState(Client& client, const std::string& dir, v1::DeviceState* state) {
    EXPECT_TRUE(client.Save().ok());
    absl::StatusOr<std::string> bytes = fs_.ReadFile(dir + "/device_state");
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_TRUE(proto::ReadEnvelope(fs_, dir + "/device_state", proto::PayloadKind::kDeviceState,
                                    state, int64_t{1} << 30)
                    .ok());
    return bytes.ok() ? *bytes : std::string();
  }

  // Predictions, counters and saved state agree exactly.
  void ExpectTwins(Client& a, const std::string& a_dir, Client& b, const std::string& b_dir) {
    std::vector<float> x;
    std::vector<int32_t> y;
    MakeBatch(4242, 48, &x, &y);
    for (size_t i = 0; i < x.size() / 2; ++i) x[i] = 1.0f - x[i];  // some unusual images too
    const std::vector<Prediction> pa = PredictAll(a, x), pb = PredictAll(b, x);
    for (size_t i = 0; i < pa.size(); ++i) {
      ASSERT_EQ(pa[i].label, pb[i].label) << i;
      ASSERT_EQ(pa[i].confidence, pb[i].confidence) << i;
      ASSERT_EQ(pa[i].ood_score, pb[i].ood_score) << i;
      ASSERT_EQ(pa[i].ood, pb[i].ood) << i;
    }
    const ClientStats sa = a.Stats(), sb = b.Stats();
    EXPECT_EQ(sa.learn_batches, sb.learn_batches);
    EXPECT_EQ(sa.learned_samples, sb.learned_samples);
    EXPECT_EQ(sa.queue_records, sb.queue_records);
    EXPECT_EQ(sa.queue_bytes, sb.queue_bytes);
    EXPECT_EQ(sa.adapters, sb.adapters);
    EXPECT_EQ(sa.proposals_pending, sb.proposals_pending);
    v1::DeviceState state_a, state_b;
    const std::string bytes_a = SavedState(a, a_dir, &state_a);
    const std::string bytes_b = SavedState(b, b_dir, &state_b);
    std::string differences;
    google::protobuf::util::MessageDifferencer differ;
    differ.ReportDifferencesToString(&differences);
    EXPECT_TRUE(differ.Compare(state_a, state_b)) << differences;
    EXPECT_TRUE(bytes_a == bytes_b) << "the saved files differ";
  }
};

std::vector<float> Inverted(std::vector<float> x) {
  for (float& v : x) v = 1.0f - v;
  return x;
}

// One call of 96 images in batches of 16 over 2 epochs learns exactly what 12 one-batch calls on
// the same batches learn.
TEST_F(ClientCancelTest, BatchesAndEpochsLearnWhatAsManyOneBatchCallsLearn) {
  for (const std::string method : {"sequential_adapter", "lae", "fed_simple_cil"}) {
    SCOPED_TRACE(method);
    options_.method = method;
    options_.lae_steps_per_task = 10;
    options_.autosave_batches = 5;  // the call saves on its way
    std::unique_ptr<Client> a = Device("/batches-a-" + method, 3);
    std::unique_ptr<Client> b = Device("/batches-b-" + method, 3);
    std::vector<float> x;
    std::vector<int32_t> y;
    MakeBatch(300, 90, &x, &y);  // the last batch of each epoch has 10 images
    int64_t reported = 0;
    LearnOptions options{.batch_size = 16, .epochs = 2, .cancel = nullptr, .on_batch = nullptr};
    options.on_batch = [&](int64_t done, int64_t total) {
      EXPECT_EQ(total, 12);
      EXPECT_EQ(done, reported + 1);
      reported = done;
    };
    absl::StatusOr<LearnResult> learned = a->Learn(x, y, options);
    ASSERT_TRUE(learned.ok()) << learned.status();
    EXPECT_EQ(learned->batches, 12);
    EXPECT_EQ(reported, 12);
    double loss_sum = 0.0;
    for (int epoch = 0; epoch < 2; ++epoch) {
      for (int start = 0; start < 90; start += 16) {
        const int n = std::min(16, 90 - start);
        absl::StatusOr<LearnResult> one =
            b->Learn(absl::MakeSpan(x).subspan(start * kPixels, n * kPixels),
                     absl::MakeSpan(y).subspan(start, n));
        ASSERT_TRUE(one.ok()) << one.status();
        loss_sum += one->loss;
      }
    }
    EXPECT_FLOAT_EQ(learned->loss, static_cast<float>(loss_sum / 12));
    ExpectTwins(*a, "/batches-a-" + method, *b, "/batches-b-" + method);
  }
}

// A call cancelled after 9 of its 12 batches (after an autosave inside it) leaves the device as
// its twin that never made the call; the two then learn on in step, bit for bit.
TEST_F(ClientCancelTest, ACancelledCallLeavesTheDeviceAsItWasBeforeIt) {
  for (const std::string method :
       {"sequential_adapter", "lae", "fed_simple_cil", "fedins", "linear_head"}) {
    SCOPED_TRACE(method);
    options_.method = method;
    options_.lae_steps_per_task = 10;
    options_.fedins_pool_size = 4;
    options_.autosave_batches = 6;  // 8 calls of history: one commit, 2 batches uncommitted
    const std::string a_dir = "/cancel-a-" + method, b_dir = "/cancel-b-" + method;
    std::unique_ptr<Client> a = Device(a_dir, 8);
    std::unique_ptr<Client> b = Device(b_dir, 8);
    std::vector<float> x;
    std::vector<int32_t> y;
    MakeBatch(400, 96, &x, &y);
    CancelToken token;
    LearnOptions options{.batch_size = 16, .epochs = 2, .cancel = &token, .on_batch = nullptr};
    options.on_batch = [&](int64_t done, int64_t) {
      if (done == 9) token.Cancel();
    };
    absl::StatusOr<LearnResult> cancelled = a->Learn(x, y, options);
    ASSERT_TRUE(absl::IsCancelled(cancelled.status())) << cancelled.status();
    EXPECT_TRUE(absl::StrContains(cancelled.status().message(), "after 9 of its 12 batches"))
        << cancelled.status();
    ExpectTwins(*a, a_dir, *b, b_dir);
    // Momentum and random draws were restored too: the twins learn on identically.
    LearnBatches(*a, 4, 700);
    LearnBatches(*b, 4, 700);
    ExpectTwins(*a, a_dir, *b, b_dir);
    // A token already cancelled stops the call before it learns anything.
    absl::StatusOr<LearnResult> not_started = a->Learn(x, y, options);
    EXPECT_TRUE(absl::IsCancelled(not_started.status())) << not_started.status();
    ExpectTwins(*a, a_dir, *b, b_dir);
  }
}

// SEMA grows an adapter inside the call (inverted images, after its first adapters trained) and
// proposes it; cancelled after that, the device has its earlier mixture and no proposal, and its
// state and predictions are its twin's.
TEST_F(ClientCancelTest, ACancelledCallUndoesTheAdapterSemaGrewInIt) {
  options_.method = "sema";
  // The CUSUM trigger grows offline within a few inverted batches (on the descriptors' z-score
  // an offline device of this tiny model does not).
  options_.method_options = "trigger: cusum";
  options_.autosave_batches = 1000;
  std::unique_ptr<Client> a = Device("/sema-a", 170, 32);
  std::unique_ptr<Client> b = Device("/sema-b", 170, 32);
  std::unique_ptr<Client> grown = Device("/sema-c", 170, 32);
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(500, 640, &x, &y);
  x = Inverted(std::move(x));
  const int64_t adapters = b->Stats().adapters;
  // Uncancelled, the call grows.
  LearnOptions options{.batch_size = 32, .epochs = 1, .cancel = nullptr, .on_batch = nullptr};
  ASSERT_TRUE(grown->Learn(x, y, options).ok());
  ASSERT_GT(grown->Stats().adapters, adapters) << "the call must grow for this test to mean much";
  EXPECT_GT(grown->Stats().proposals_pending, 0);
  // Cancelled after 15 of its 20 batches, it leaves nothing of the growth.
  CancelToken token;
  options.cancel = &token;
  options.on_batch = [&](int64_t done, int64_t) {
    if (done == 15) token.Cancel();
  };
  ASSERT_TRUE(absl::IsCancelled(a->Learn(x, y, options).status()));
  EXPECT_EQ(a->Stats().adapters, adapters);
  EXPECT_EQ(a->Stats().proposals_pending, 0);
  ExpectTwins(*a, "/sema-a", *b, "/sema-b");
}

TEST_F(ClientCancelTest, BadBatchOptionsAndLabelsOutsideTheTaskAreRefusedBeforeLearning) {
  std::unique_ptr<Client> a = Device("/bad-a", 2);
  std::unique_ptr<Client> b = Device("/bad-b", 2);
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(600, 40, &x, &y);
  for (const auto& [batch_size, epochs] :
       std::vector<std::pair<int64_t, int>>{{-1, 1}, {8, 0}, {8, 1001}}) {
    LearnOptions options;
    options.batch_size = batch_size;
    options.epochs = epochs;
    absl::StatusOr<LearnResult> refused = a->Learn(x, y, options);
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
    EXPECT_TRUE(absl::StrContains(refused.status().message(), "LearnOptions.")) << refused.status();
  }
  // The task holds classes 0 and 1; a label 2 in the last batch is refused before the first.
  const std::vector<int32_t> task = {0, 1};
  ASSERT_TRUE(a->BeginTask(task).ok());
  ASSERT_TRUE(b->BeginTask(task).ok());
  for (int32_t& label : y) label = label % 2;
  y.back() = 2;
  LearnOptions options;
  options.batch_size = 8;
  absl::StatusOr<LearnResult> refused = a->Learn(x, y, options);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "current task")) << refused.status();
  ExpectTwins(*a, "/bad-a", *b, "/bad-b");
}

}  // namespace
}  // namespace fedcl::sdk_test
