// The C API (fedcl/fedcl_c.h) over fedcl::Client: codes and messages for bad options and NULL
// arguments, status names and the version, NULL handles, an offline device on a real ViT
// backbone that learns, predicts, adapts, saves and restores through C calls alone, and counts
// beyond the caller's buffers (guard pages: a read past a buffer would fault).
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/base/filesystem.h"
#include "core/nn/model.h"
#include "fedcl/fedcl_c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"

namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr int kSide = 28;
constexpr int kPixels = kSide * kSide;

// Owns an options handle.
struct Options {
  Options() : handle(fedcl_options_create()) {}
  ~Options() { fedcl_options_destroy(handle); }
  fedcl_options* handle;
};

// `n` images of the four classes 0..3: class c lights quadrant c, the rest stays dark.
void MakeBatch(int n, int first, std::vector<float>* pixels, std::vector<int32_t>* labels) {
  pixels->assign(static_cast<size_t>(n) * kPixels, 0.05f);
  labels->resize(n);
  for (int i = 0; i < n; ++i) {
    const int c = (first + i) % 4;
    (*labels)[i] = c;
    for (int y = 0; y < kSide; ++y) {
      for (int x = 0; x < kSide; ++x) {
        if ((y / 14) * 2 + (x / 14) == c) {
          (*pixels)[static_cast<size_t>(i) * kPixels + y * kSide + x] = 0.9f;
        }
      }
    }
  }
}

// `n` elements of T that end exactly where a PROT_NONE page begins: reading or writing one element
// past them faults (SIGSEGV), so a test that passes shows that nothing went past the buffer.
template <typename T>
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t n) : n_(n) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t data_pages = (n * sizeof(T) + page - 1) / page;
    mapped_bytes_ = (data_pages + 1) * page;
    void* mapped =
        ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(mapped, MAP_FAILED);
    base_ = static_cast<char*>(mapped);
    char* guard = base_ + data_pages * page;
    EXPECT_EQ(::mprotect(guard, page, PROT_NONE), 0);
    data_ = reinterpret_cast<T*>(guard) - n;
  }
  ~GuardedBuffer() { ::munmap(base_, mapped_bytes_); }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  T* data() { return data_; }
  size_t size() const { return n_; }
  // Copies `values` (at most size()) to the start of the buffer.
  void Fill(const std::vector<T>& values) {
    std::memcpy(data_, values.data(), std::min(values.size(), n_) * sizeof(T));
  }

 private:
  size_t n_;
  size_t mapped_bytes_ = 0;
  char* base_ = nullptr;
  T* data_ = nullptr;
};

class CApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_c_api_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    fedcl_client_destroy(client_);
    fedcl_error_destroy(error_);
    std::filesystem::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // The learner's default backbone: a ViT on 28×28 images (patch 7, width 64, 4 blocks, 4 heads),
  // 10 classes, untrained.
  std::string WriteBackbone() {
    const std::string path = Path("vit.ckpt");
    auto model = fedcl::nn::Model::Create(fedcl::nn::ModelConfig(), 1);
    EXPECT_TRUE(model.ok()) << model.status();
    EXPECT_TRUE(
        fedcl::proto::SaveCheckpoint(fedcl::base::FileSystem::Default(), path, **model, {}, {})
            .ok());
    return path;
  }

  // Creates client_ on `storage` (a directory under dir_), offline.
  fedcl_status Create(const std::string& storage, int64_t memory_budget = 0) {
    Options options;
    EXPECT_EQ(
        fedcl_options_set_string(options.handle, FEDCL_OPTION_STORAGE_DIR, Path(storage).c_str()),
        FEDCL_OK);
    if (memory_budget > 0) {
      EXPECT_EQ(
          fedcl_options_set_int(options.handle, FEDCL_OPTION_MEMORY_BUDGET_BYTES, memory_budget),
          FEDCL_OK);
    }
    fedcl_client_destroy(client_);
    client_ = nullptr;
    return fedcl_client_create(options.handle, &client_, nullptr);
  }

  // Takes error_ (the last failed call's) and returns its message; "" if none.
  std::string TakeMessage() {
    std::string message = fedcl_error_message(error_);
    fedcl_error_destroy(error_);
    error_ = nullptr;
    return message;
  }

  std::string dir_;
  fedcl_client* client_ = nullptr;
  fedcl_error* error_ = nullptr;
};

TEST(CApiStatusTest, NamesFollowTheCodes) {
  EXPECT_STREQ(fedcl_status_name(FEDCL_OK), "OK");
  EXPECT_STREQ(fedcl_status_name(FEDCL_INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_STREQ(fedcl_status_name(FEDCL_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_STREQ(fedcl_status_name(FEDCL_UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_STREQ(fedcl_status_name(static_cast<fedcl_status>(99)), "INVALID_STATUS");
}

TEST(CApiStatusTest, CodesAreAbslStatusCodes) {
  EXPECT_EQ(FEDCL_CANCELLED, static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_EQ(FEDCL_FAILED_PRECONDITION, static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(FEDCL_UNAVAILABLE, static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(FEDCL_UNAUTHENTICATED, static_cast<int>(absl::StatusCode::kUnauthenticated));
}

TEST(CApiStatusTest, VersionIsMajorMinorPatch) {
  EXPECT_TRUE(std::regex_match(std::string(fedcl_version()), std::regex(R"(\d+\.\d+\.\d+)")))
      << fedcl_version();
}

TEST(CApiStatusTest, NullHandlesAreHarmless) {
  fedcl_options_destroy(nullptr);
  fedcl_client_destroy(nullptr);
  fedcl_error_destroy(nullptr);
  fedcl_client_cancel_sync(nullptr);
  EXPECT_EQ(fedcl_error_code(nullptr), FEDCL_OK);
  EXPECT_STREQ(fedcl_error_message(nullptr), "");
  EXPECT_EQ(fedcl_client_input_size(nullptr), 0);
  EXPECT_EQ(fedcl_client_num_classes(nullptr), 0);
  fedcl_stats stats;
  fedcl_client_stats(nullptr, &stats);
  EXPECT_EQ(stats.learn_batches, 0);
  EXPECT_EQ(stats.last_round, -1);
  EXPECT_EQ(stats.backbone_loaded, 0);
  fedcl_client_stats(nullptr, nullptr);
  fedcl_sync_progress progress;
  progress.stage = FEDCL_SYNC_FAILED;
  fedcl_client_sync_status(nullptr, &progress);
  EXPECT_EQ(progress.stage, FEDCL_SYNC_IDLE);
  fedcl_options_set_log_callback(nullptr, nullptr, nullptr);
}

TEST(CApiOptionsTest, OptionOfAnotherTypeIsInvalidArgument) {
  Options options;
  ASSERT_NE(options.handle, nullptr);
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_STORAGE_DIR, 1),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_double(options.handle, FEDCL_OPTION_AUTOSAVE_BATCHES, 2.0),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_string(options.handle, FEDCL_OPTION_CLIENT_ID, "7"),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_LEARNING_RATE, 1),
            FEDCL_INVALID_ARGUMENT);
}

TEST(CApiOptionsTest, UnknownOptionNullArgumentsAndOutOfRangeIntsAreInvalidArgument) {
  Options options;
  const auto unknown = static_cast<fedcl_option>(999);
  EXPECT_EQ(fedcl_options_set_string(options.handle, unknown, "x"), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_int(options.handle, unknown, 1), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_double(options.handle, unknown, 1.0), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_string(nullptr, FEDCL_OPTION_TOKEN, "x"), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_string(options.handle, FEDCL_OPTION_TOKEN, nullptr),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_int(nullptr, FEDCL_OPTION_AUTOSAVE_BATCHES, 1),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_double(nullptr, FEDCL_OPTION_LEARNING_RATE, 0.1),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_AUTOSAVE_BATCHES, int64_t{1} << 40),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_AUTOSAVE_BATCHES, 2), FEDCL_OK);
  EXPECT_EQ(fedcl_options_set_double(options.handle, FEDCL_OPTION_LEARNING_RATE, 0.1), FEDCL_OK);
  // LAE's and FedIns' knobs.
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_LAE_STEPS_PER_TASK, 50), FEDCL_OK);
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_FEDINS_POOL_SIZE, 4), FEDCL_OK);
  EXPECT_EQ(fedcl_options_set_int(options.handle, FEDCL_OPTION_FEDINS_TOP_K, 2), FEDCL_OK);
  EXPECT_EQ(fedcl_options_set_double(options.handle, FEDCL_OPTION_LAE_FRACTION_PER_TASK, 0.2),
            FEDCL_OK);
  EXPECT_EQ(fedcl_options_set_double(options.handle, FEDCL_OPTION_FEDINS_TOP_K, 2.0),
            FEDCL_INVALID_ARGUMENT);
}

TEST_F(CApiTest, MissingStorageDirIsInvalidArgumentNamingIt) {
  Options options;
  EXPECT_EQ(fedcl_client_create(options.handle, &client_, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(client_, nullptr);
  EXPECT_EQ(fedcl_error_code(error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("storage_dir"));
}

TEST_F(CApiTest, UnknownMethodIsInvalidArgumentNamingIt) {
  Options options;
  fedcl_options_set_string(options.handle, FEDCL_OPTION_STORAGE_DIR, Path("device").c_str());
  ASSERT_EQ(fedcl_options_set_string(options.handle, FEDCL_OPTION_METHOD, "no_such_method"),
            FEDCL_OK);  // values are checked at create
  EXPECT_EQ(fedcl_client_create(options.handle, &client_, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), AnyOf(HasSubstr("no_such_method"), HasSubstr("method")));
}

// A method's own knobs travel as text: a key the method does not take is refused at create,
// naming it; one it takes is accepted.
TEST_F(CApiTest, MethodOptionsAreTheMethodsOwnKnobs) {
  Options options;
  fedcl_options_set_string(options.handle, FEDCL_OPTION_STORAGE_DIR, Path("device").c_str());
  ASSERT_EQ(fedcl_options_set_string(options.handle, FEDCL_OPTION_METHOD, "sema"), FEDCL_OK);
  ASSERT_EQ(fedcl_options_set_string(options.handle, FEDCL_OPTION_METHOD_OPTIONS,
                                     "confirm_batches: 3 no_such_knob: 1"),
            FEDCL_OK);
  EXPECT_EQ(fedcl_client_create(options.handle, &client_, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("no_such_knob"));
  ASSERT_EQ(fedcl_options_set_string(options.handle, FEDCL_OPTION_METHOD_OPTIONS,
                                     "confirm_batches: 3 expansion_tau: 1.5"),
            FEDCL_OK);
  EXPECT_EQ(fedcl_client_create(options.handle, &client_, &error_), FEDCL_OK) << TakeMessage();
}

TEST_F(CApiTest, BadValueWithoutErrorArgumentReturnsTheCodeAlone) {
  Options options;
  fedcl_options_set_string(options.handle, FEDCL_OPTION_STORAGE_DIR, Path("device").c_str());
  fedcl_options_set_int(options.handle, FEDCL_OPTION_AUTOSAVE_BATCHES, 0);
  EXPECT_EQ(fedcl_client_create(options.handle, &client_, nullptr), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(client_, nullptr);
}

TEST_F(CApiTest, NullArgumentsAreInvalidArgumentNamingTheArgument) {
  Options options;
  EXPECT_EQ(fedcl_client_create(nullptr, &client_, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("options is NULL"));
  EXPECT_EQ(fedcl_client_create(options.handle, nullptr, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("client is NULL"));

  float loss = 0.0f;
  EXPECT_EQ(fedcl_client_learn(nullptr, nullptr, nullptr, 0, &loss, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("fedcl_client_learn: client is NULL"));
  EXPECT_EQ(fedcl_client_sync(nullptr, nullptr, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("fedcl_client_sync: client is NULL"));
  EXPECT_EQ(fedcl_client_save(nullptr, nullptr), FEDCL_INVALID_ARGUMENT);

  ASSERT_EQ(Create("device"), FEDCL_OK);
  EXPECT_EQ(fedcl_client_load_backbone(client_, nullptr, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("checkpoint_path is NULL"));
  const std::vector<float> pixels(kPixels, 0.5f);
  const int32_t label = 0;
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), nullptr, 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("labels is NULL"));
  EXPECT_EQ(fedcl_client_learn(client_, nullptr, &label, 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("pixels is NULL"));
  EXPECT_EQ(fedcl_client_predict(client_, pixels.data(), 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("out is NULL"));
}

TEST_F(CApiTest, OfflineDeviceWithoutBackboneRefusesLearningAndSync) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  EXPECT_EQ(fedcl_client_input_size(client_), 0);
  EXPECT_EQ(fedcl_client_num_classes(client_), 0);
  const std::vector<float> pixels(kPixels, 0.5f);
  const int32_t label = 0;
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), &label, 1, nullptr, &error_),
            FEDCL_FAILED_PRECONDITION);
  EXPECT_THAT(TakeMessage(), HasSubstr("backbone"));
  fedcl_sync_result result;
  result.round = 12345;
  EXPECT_EQ(fedcl_client_sync(client_, &result, &error_), FEDCL_FAILED_PRECONDITION);
  EXPECT_NE(TakeMessage(), "");
  EXPECT_EQ(result.round, 12345) << "outputs are written only on success";
  // No background sync was started.
  EXPECT_EQ(fedcl_client_wait_sync(client_, &result, nullptr), FEDCL_FAILED_PRECONDITION);
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.backbone_loaded, 0);
  EXPECT_EQ(stats.state_restored, 0);
  EXPECT_EQ(stats.last_round, -1);
}

TEST_F(CApiTest, FileThatIsNotACheckpointIsRefused) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  std::ofstream(Path("junk.ckpt")) << "not a checkpoint";
  const fedcl_status status =
      fedcl_client_load_backbone(client_, Path("junk.ckpt").c_str(), &error_);
  EXPECT_THAT(status, AnyOf(FEDCL_INVALID_ARGUMENT, FEDCL_DATA_LOSS));
  EXPECT_EQ(fedcl_error_code(error_), status);
  EXPECT_THAT(TakeMessage(), HasSubstr("junk.ckpt"));
  EXPECT_EQ(fedcl_client_load_backbone(client_, Path("missing.ckpt").c_str(), &error_),
            FEDCL_NOT_FOUND);
  TakeMessage();
}

TEST_F(CApiTest, OfflineDeviceLearnsPredictsSavesAndRestores) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  ASSERT_EQ(fedcl_client_input_size(client_), kPixels);
  ASSERT_EQ(fedcl_client_num_classes(client_), 10);

  std::vector<float> pixels;
  std::vector<int32_t> labels;
  constexpr int kBatch = 16, kBatches = 5;
  for (int b = 0; b < kBatches; ++b) {
    MakeBatch(kBatch, b, &pixels, &labels);
    float loss = -1.0f;
    ASSERT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), kBatch, &loss, &error_),
              FEDCL_OK)
        << TakeMessage();
    EXPECT_TRUE(std::isfinite(loss) && loss >= 0.0f) << loss;
  }
  // A label outside [0, classes) is refused and learns nothing.
  labels[3] = 10;
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), kBatch, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("10"));

  MakeBatch(8, 0, &pixels, &labels);
  std::vector<fedcl_prediction> before(8);
  ASSERT_EQ(fedcl_client_predict(client_, pixels.data(), 8, before.data(), &error_), FEDCL_OK)
      << TakeMessage();
  for (const fedcl_prediction& p : before) {
    EXPECT_GE(p.label, 0);
    EXPECT_LT(p.label, 10);
    EXPECT_GT(p.confidence, 0.0f);
    EXPECT_LE(p.confidence, 1.0f);
    EXPECT_TRUE(std::isfinite(p.ood_score));
    EXPECT_TRUE(p.ood == 0 || p.ood == 1);
  }
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, kBatches);
  EXPECT_EQ(stats.learned_samples, kBatches * kBatch);
  EXPECT_EQ(stats.predictions, 8);
  EXPECT_EQ(stats.backbone_loaded, 1);
  EXPECT_GT(stats.memory_used_bytes, 0);
  EXPECT_EQ(stats.memory_budget_bytes, int64_t{48} << 20);
  ASSERT_EQ(fedcl_client_save(client_, &error_), FEDCL_OK) << TakeMessage();

  // A new client on the same storage: the cached backbone and the learned modules come back.
  ASSERT_EQ(Create("device"), FEDCL_OK);
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.state_restored, 1);
  EXPECT_EQ(stats.backbone_loaded, 1);
  EXPECT_EQ(stats.learn_batches, kBatches);
  EXPECT_EQ(stats.predictions, 0) << "per run";
  std::vector<fedcl_prediction> after(8);
  ASSERT_EQ(fedcl_client_predict(client_, pixels.data(), 8, after.data(), &error_), FEDCL_OK)
      << TakeMessage();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(after[i].label, before[i].label) << i;
    EXPECT_NEAR(after[i].confidence, before[i].confidence, 1e-5) << i;
  }
}

TEST_F(CApiTest, AdaptAndDetectorWorkThroughC) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  MakeBatch(32, 0, &pixels, &labels);
  ASSERT_EQ(fedcl_client_fit_detector(client_, pixels.data(), labels.data(), 32, &error_), FEDCL_OK)
      << TakeMessage();
  const int32_t task[] = {0, 1};
  ASSERT_EQ(fedcl_client_begin_task(client_, task, 2, &error_), FEDCL_OK) << TakeMessage();
  EXPECT_EQ(fedcl_client_begin_task(client_, nullptr, 1, nullptr), FEDCL_INVALID_ARGUMENT);
  ASSERT_EQ(fedcl_client_begin_task(client_, nullptr, 0, &error_), FEDCL_OK) << TakeMessage();
  int64_t used = -1;
  ASSERT_EQ(fedcl_client_adapt(client_, pixels.data(), 32, &used, &error_), FEDCL_OK)
      << TakeMessage();
  EXPECT_GE(used, 0);
  EXPECT_LE(used, 32);
  EXPECT_EQ(fedcl_client_adapt(client_, pixels.data(), 32, nullptr, nullptr), FEDCL_OK);
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.adapt_batches, 2);
}

TEST_F(CApiTest, BatchOverTheMemoryBudgetIsResourceExhausted) {
  ASSERT_EQ(Create("device", int64_t{8} << 20), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  MakeBatch(2048, 0, &pixels, &labels);
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), 2048, nullptr, &error_),
            FEDCL_RESOURCE_EXHAUSTED);
  EXPECT_THAT(TakeMessage(), HasSubstr("budget"));
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 0);
  EXPECT_EQ(stats.memory_refusals, 1);
}

// ---- Counts beyond the caller's buffers --------------------------------------------------------

// The calls without lengths cannot see a buffer's end, but a count the memory budget refuses is
// refused before any pixel or label is read: one image and one label, each ending at a guard
// page, with a count of 2048 (or 2^50, whose working bytes overflow an int64) give
// ResourceExhausted, not SIGSEGV.
TEST_F(CApiTest, CountBeyondTheBudgetIsRefusedBeforeReadingPastOneImage) {
  ASSERT_EQ(Create("device", int64_t{8} << 20), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> image;
  std::vector<int32_t> label;
  MakeBatch(1, 0, &image, &label);
  GuardedBuffer<float> pixels(kPixels);
  pixels.Fill(image);
  GuardedBuffer<int32_t> labels(1);
  labels.Fill(label);

  for (const size_t count : {size_t{2048}, size_t{1} << 50}) {
    SCOPED_TRACE(count);
    EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), count, nullptr, &error_),
              FEDCL_RESOURCE_EXHAUSTED);
    EXPECT_THAT(TakeMessage(), HasSubstr("budget"));
    EXPECT_EQ(fedcl_client_adapt(client_, pixels.data(), count, nullptr, &error_),
              FEDCL_RESOURCE_EXHAUSTED);
    EXPECT_THAT(TakeMessage(), HasSubstr("budget"));
    EXPECT_EQ(fedcl_client_fit_detector(client_, pixels.data(), labels.data(), count, &error_),
              FEDCL_RESOURCE_EXHAUSTED);
    EXPECT_THAT(TakeMessage(), HasSubstr("budget"));
  }
  // A count whose pixel count overflows is refused by the C layer itself.
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), SIZE_MAX, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("too many"));
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 0);
  EXPECT_EQ(stats.adapt_batches, 0);
  EXPECT_EQ(stats.memory_refusals, 6);
  // The one image itself is learned.
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), 1, nullptr, &error_),
            FEDCL_OK)
      << TakeMessage();
}

// A batch refused after the budget check (a pixel that is not finite) leaves the memory
// estimate as it was: the working buffers it would have needed are counted only once every check
// passed.
TEST_F(CApiTest, RefusedBatchLeavesTheMemoryEstimateUnchanged) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  MakeBatch(4, 0, &pixels, &labels);
  ASSERT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), 2, nullptr, &error_),
            FEDCL_OK)
      << TakeMessage();
  fedcl_stats before;
  fedcl_client_stats(client_, &before);
  pixels.back() = std::nanf("");
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), 4, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("not finite"));
  fedcl_stats after;
  fedcl_client_stats(client_, &after);
  EXPECT_EQ(after.memory_used_bytes, before.memory_used_bytes);
  EXPECT_EQ(after.learn_batches, before.learn_batches);
}

// Each _n call refuses a count its buffers cannot hold, naming the argument, before touching
// them: every buffer ends at a guard page and the counts are well within the budget, so a read
// (or for predict a write) past one would fault.
TEST_F(CApiTest, LengthCheckedCallsRefuseACountBeyondTheirBuffers) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> batch;
  std::vector<int32_t> batch_labels;
  MakeBatch(12, 0, &batch, &batch_labels);
  GuardedBuffer<float> one_image(kPixels);
  one_image.Fill(batch);
  GuardedBuffer<float> twelve_images(12 * kPixels);
  twelve_images.Fill(batch);
  GuardedBuffer<int32_t> one_label(1);
  one_label.Fill(batch_labels);
  GuardedBuffer<int32_t> twelve_labels(12);
  twelve_labels.Fill(batch_labels);
  GuardedBuffer<fedcl_prediction> one_out(1);

  // Pixels short.
  EXPECT_EQ(fedcl_client_learn_n(client_, one_image.data(), kPixels, twelve_labels.data(), 12, 2,
                                 nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_learn_n: count 2 needs 1568 pixels; pixels_len is 784");
  EXPECT_EQ(
      fedcl_client_predict_n(client_, one_image.data(), kPixels, 2, one_out.data(), 2, &error_),
      FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_predict_n: count 2 needs 1568 pixels; pixels_len is 784");
  EXPECT_EQ(fedcl_client_adapt_n(client_, one_image.data(), kPixels, 2, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_adapt_n: count 2 needs 1568 pixels; pixels_len is 784");
  EXPECT_EQ(fedcl_client_fit_detector_n(client_, one_image.data(), kPixels, twelve_labels.data(),
                                        12, 12, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("count 12 needs 9408 pixels; pixels_len is 784"));
  // Labels short.
  EXPECT_EQ(fedcl_client_learn_n(client_, twelve_images.data(), 12 * kPixels, one_label.data(), 1,
                                 2, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_learn_n: count 2 needs 2 labels; labels_len is 1");
  EXPECT_EQ(fedcl_client_fit_detector_n(client_, twelve_images.data(), 12 * kPixels,
                                        one_label.data(), 1, 12, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("count 12 needs 12 labels; labels_len is 1"));
  // Predictions short: nothing is written past `out`.
  EXPECT_EQ(fedcl_client_predict_n(client_, twelve_images.data(), 12 * kPixels, 2, one_out.data(),
                                   1, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_predict_n: count 2 needs 2 predictions; out_len is 1");
  // A length one float short of the count's images.
  EXPECT_EQ(
      fedcl_client_adapt_n(client_, twelve_images.data(), 12 * kPixels - 1, 12, nullptr, &error_),
      FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("pixels_len is 9407"));

  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 0);
  EXPECT_EQ(stats.adapt_batches, 0);
  EXPECT_EQ(stats.predictions, 0);

  // Counts within the buffers (which may be longer than needed) are accepted.
  EXPECT_EQ(fedcl_client_learn_n(client_, twelve_images.data(), 12 * kPixels, twelve_labels.data(),
                                 12, 2, nullptr, &error_),
            FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(fedcl_client_learn_n(client_, one_image.data(), kPixels, one_label.data(), 1, 1,
                                 nullptr, &error_),
            FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(
      fedcl_client_predict_n(client_, one_image.data(), kPixels, 1, one_out.data(), 1, &error_),
      FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(fedcl_client_adapt_n(client_, twelve_images.data(), 12 * kPixels, 12, nullptr, &error_),
            FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(fedcl_client_fit_detector_n(client_, twelve_images.data(), 12 * kPixels,
                                        twelve_labels.data(), 12, 12, &error_),
            FEDCL_OK)
      << TakeMessage();
}

// The _n calls are the old calls with a check in front: two devices from the same backbone and
// seed, one driven through the old calls and one through the _n calls (buffers one image longer
// than needed), learn, adapt, fit and predict the same.
TEST_F(CApiTest, LengthCheckedCallsGiveTheSameResultsAsTheOldCalls) {
  const std::string backbone = WriteBackbone();
  ASSERT_EQ(Create("device_n"), FEDCL_OK);
  fedcl_client* with_n = client_;
  client_ = nullptr;
  ASSERT_EQ(Create("device_old"), FEDCL_OK);
  fedcl_client* old = client_;
  ASSERT_EQ(fedcl_client_load_backbone(old, backbone.c_str(), &error_), FEDCL_OK) << TakeMessage();
  ASSERT_EQ(fedcl_client_load_backbone(with_n, backbone.c_str(), &error_), FEDCL_OK)
      << TakeMessage();

  constexpr int kBatch = 16;
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  for (int b = 0; b < 3; ++b) {
    MakeBatch(kBatch + 1, b, &pixels, &labels);
    float loss_old = -1.0f, loss_n = -2.0f;
    ASSERT_EQ(fedcl_client_learn(old, pixels.data(), labels.data(), kBatch, &loss_old, &error_),
              FEDCL_OK)
        << TakeMessage();
    ASSERT_EQ(fedcl_client_learn_n(with_n, pixels.data(), pixels.size(), labels.data(),
                                   labels.size(), kBatch, &loss_n, &error_),
              FEDCL_OK)
        << TakeMessage();
    EXPECT_EQ(loss_n, loss_old) << b;
  }
  int64_t used_old = -1, used_n = -2;
  ASSERT_EQ(fedcl_client_adapt(old, pixels.data(), kBatch, &used_old, &error_), FEDCL_OK)
      << TakeMessage();
  ASSERT_EQ(fedcl_client_adapt_n(with_n, pixels.data(), pixels.size(), kBatch, &used_n, &error_),
            FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(used_n, used_old);
  ASSERT_EQ(fedcl_client_fit_detector(old, pixels.data(), labels.data(), kBatch, &error_), FEDCL_OK)
      << TakeMessage();
  ASSERT_EQ(fedcl_client_fit_detector_n(with_n, pixels.data(), pixels.size(), labels.data(),
                                        labels.size(), kBatch, &error_),
            FEDCL_OK)
      << TakeMessage();

  MakeBatch(9, 1, &pixels, &labels);
  std::vector<fedcl_prediction> out_old(8), out_n(9);
  ASSERT_EQ(fedcl_client_predict(old, pixels.data(), 8, out_old.data(), &error_), FEDCL_OK)
      << TakeMessage();
  ASSERT_EQ(fedcl_client_predict_n(with_n, pixels.data(), pixels.size(), 8, out_n.data(),
                                   out_n.size(), &error_),
            FEDCL_OK)
      << TakeMessage();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(out_n[i].label, out_old[i].label) << i;
    EXPECT_EQ(out_n[i].confidence, out_old[i].confidence) << i;
    EXPECT_EQ(out_n[i].ood_score, out_old[i].ood_score) << i;
    EXPECT_EQ(out_n[i].ood, out_old[i].ood) << i;
  }
  fedcl_stats stats_old, stats_n;
  fedcl_client_stats(old, &stats_old);
  fedcl_client_stats(with_n, &stats_n);
  EXPECT_EQ(stats_n.learned_samples, 3 * kBatch);
  EXPECT_EQ(stats_n.learned_samples, stats_old.learned_samples);
  EXPECT_EQ(stats_n.predictions, stats_old.predictions);
  fedcl_client_destroy(with_n);
}

// NULL pointers with a nonzero count are refused naming the pointer, whatever length is stated;
// with a zero count they are the empty batch, which the SDK refuses as such.
TEST_F(CApiTest, NullBuffersWithNonzeroCountsAreInvalidArgumentNamingThem) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  const std::vector<float> pixels(kPixels, 0.5f);
  const int32_t label = 0;
  fedcl_prediction out;

  EXPECT_EQ(fedcl_client_learn_n(nullptr, pixels.data(), kPixels, &label, 1, 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_learn_n: client is NULL");
  EXPECT_EQ(fedcl_client_learn_n(client_, nullptr, kPixels, &label, 1, 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_learn_n: pixels is NULL");
  EXPECT_EQ(fedcl_client_learn_n(client_, pixels.data(), kPixels, nullptr, 1, 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_learn_n: labels is NULL");
  EXPECT_EQ(fedcl_client_predict_n(client_, nullptr, kPixels, 1, &out, 1, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_predict_n: pixels is NULL");
  EXPECT_EQ(fedcl_client_predict_n(client_, pixels.data(), kPixels, 1, nullptr, 1, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_predict_n: out is NULL");
  EXPECT_EQ(fedcl_client_adapt_n(client_, nullptr, kPixels, 1, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_adapt_n: pixels is NULL");
  EXPECT_EQ(fedcl_client_fit_detector_n(client_, nullptr, kPixels, &label, 1, 1, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_fit_detector_n: pixels is NULL");
  EXPECT_EQ(fedcl_client_fit_detector_n(client_, pixels.data(), kPixels, nullptr, 1, 1, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_fit_detector_n: labels is NULL");
  // The old calls.
  EXPECT_EQ(fedcl_client_adapt(client_, nullptr, 1, nullptr, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_adapt: pixels is NULL");
  EXPECT_EQ(fedcl_client_predict(client_, nullptr, 1, &out, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_predict: pixels is NULL");
  EXPECT_EQ(fedcl_client_fit_detector(client_, pixels.data(), nullptr, 1, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_fit_detector: labels is NULL");
  EXPECT_EQ(fedcl_client_begin_task(client_, nullptr, 1, &error_), FEDCL_INVALID_ARGUMENT);
  EXPECT_EQ(TakeMessage(), "fedcl_client_begin_task: classes is NULL");
  // NULL with a zero count: the empty batch.
  EXPECT_EQ(fedcl_client_learn_n(client_, nullptr, 0, nullptr, 0, 0, nullptr, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("no images"));
  EXPECT_EQ(fedcl_client_predict_n(client_, nullptr, 0, 0, nullptr, 0, &error_),
            FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("no images"));
}

struct LogRecord {
  std::vector<std::pair<fedcl_log_level, std::string>> messages;
};

void RecordLog(void* user_data, fedcl_log_level level, const char* message) {
  static_cast<LogRecord*>(user_data)->messages.emplace_back(level, message);
}

TEST_F(CApiTest, LogCallbackHearsAboutACorruptStateFile) {
  std::filesystem::create_directories(Path("device"));
  std::ofstream(Path("device/device_state")) << "this is not a device state";
  LogRecord log;
  Options options;
  fedcl_options_set_string(options.handle, FEDCL_OPTION_STORAGE_DIR, Path("device").c_str());
  fedcl_options_set_log_callback(options.handle, RecordLog, &log);
  ASSERT_EQ(fedcl_client_create(options.handle, &client_, &error_), FEDCL_OK) << TakeMessage();
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.state_set_aside, 1);
  ASSERT_FALSE(log.messages.empty());
  bool warned = false;
  for (const auto& [level, message] : log.messages) {
    warned |= level >= FEDCL_LOG_WARNING && message.find("device_state") != std::string::npos;
  }
  EXPECT_TRUE(warned) << log.messages[0].second;
}

TEST_F(CApiTest, ClientKeepsItsOwnCopyOfTheOptions) {
  fedcl_options* options = fedcl_options_create();
  fedcl_options_set_string(options, FEDCL_OPTION_STORAGE_DIR, Path("device").c_str());
  ASSERT_EQ(fedcl_client_create(options, &client_, &error_), FEDCL_OK) << TakeMessage();
  fedcl_options_destroy(options);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  EXPECT_TRUE(std::filesystem::exists(Path("device/backbone.ckpt")));
}

struct ProgressRecord {
  std::vector<fedcl_sync_stage> stages;
};

void RecordProgress(void* user_data, const fedcl_sync_progress* progress) {
  static_cast<ProgressRecord*>(user_data)->stages.push_back(progress->stage);
}

TEST_F(CApiTest, BackgroundSyncOfAnOfflineDeviceFailsWithFailedPrecondition) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ProgressRecord progress;
  fedcl_status status = fedcl_client_start_sync(client_, RecordProgress, &progress, &error_);
  if (status == FEDCL_OK) {
    fedcl_sync_result result;
    status = fedcl_client_wait_sync(client_, &result, &error_);
  }
  EXPECT_EQ(status, FEDCL_FAILED_PRECONDITION);
  EXPECT_NE(TakeMessage(), "");
  fedcl_sync_progress now;
  fedcl_client_sync_status(client_, &now);
  EXPECT_NE(now.stage, FEDCL_SYNC_CONNECTING);
  EXPECT_NE(now.stage, FEDCL_SYNC_DOWNLOADING);
}

}  // namespace
