// The C API (fedcl/fedcl_c.h) over fedcl::Client: codes and messages for bad options and NULL
// arguments, status names and the version, NULL handles, an offline device on a real ViT
// backbone that learns, predicts, adapts, saves and restores through C calls alone (counts
// beyond the caller's buffers: c_api_bounds_test.cc).
#include "tests/sdk/c_api_fixture.h"

namespace fedcl::c_api_test {
namespace {

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

// The app's device conditions through the C API: the callback's bits against what learning and
// syncing require; a refused call names the missing condition and changes nothing.
TEST_F(CApiTest, DeviceConditionsGateLearningAndSyncing) {
  unsigned conditions = FEDCL_CONDITION_IDLE;  // in a user's pocket: not charging, metered
  Options options;
  ASSERT_EQ(
      fedcl_options_set_string(options.handle, FEDCL_OPTION_STORAGE_DIR, Path("device").c_str()),
      FEDCL_OK);
  fedcl_options_set_conditions(
      options.handle, [](void* user) { return *static_cast<unsigned*>(user); }, &conditions,
      FEDCL_CONDITION_CHARGING | FEDCL_CONDITION_IDLE, FEDCL_CONDITION_UNMETERED_NETWORK);
  ASSERT_EQ(fedcl_client_create(options.handle, &client_, &error_), FEDCL_OK) << TakeMessage();
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  MakeBatch(8, 0, &pixels, &labels);
  float loss = -1.0f;
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), 8, &loss, &error_),
            FEDCL_FAILED_PRECONDITION);
  EXPECT_THAT(TakeMessage(), HasSubstr("not eligible to learn: the device is not charging"));
  EXPECT_EQ(loss, -1.0f) << "outputs are written only on success";
  fedcl_sync_result result;
  EXPECT_EQ(fedcl_client_sync(client_, &result, &error_), FEDCL_FAILED_PRECONDITION);
  EXPECT_THAT(TakeMessage(), HasSubstr("on a metered network"));
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 0);

  conditions |= FEDCL_CONDITION_CHARGING;
  EXPECT_EQ(fedcl_client_learn(client_, pixels.data(), labels.data(), 8, &loss, &error_), FEDCL_OK)
      << TakeMessage();
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 1);
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

// fedcl_client_learn_batches: batches over epochs, a token that stops the call, bad arguments.
// (A cancel in the middle of a call is tested through the C++ API, client_cancel_test.cc.)
TEST_F(CApiTest, LearningInBatchesIsCancellableThroughC) {
  ASSERT_EQ(Create("device"), FEDCL_OK);
  ASSERT_EQ(fedcl_client_load_backbone(client_, WriteBackbone().c_str(), &error_), FEDCL_OK)
      << TakeMessage();
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  MakeBatch(40, 0, &pixels, &labels);
  float loss = -1.0f;
  int64_t batches = -1;
  ASSERT_EQ(fedcl_client_learn_batches(client_, pixels.data(), pixels.size(), labels.data(),
                                       labels.size(), 40, 16, 2, nullptr, &loss, &batches, &error_),
            FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(batches, 6) << "16 + 16 + 8 images, twice";
  EXPECT_TRUE(std::isfinite(loss) && loss >= 0.0f) << loss;
  fedcl_stats stats;
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 6);
  EXPECT_EQ(stats.learned_samples, 80);

  fedcl_cancel_token* token = fedcl_cancel_token_new();
  ASSERT_NE(token, nullptr);
  fedcl_cancel_token_cancel(token);
  EXPECT_EQ(fedcl_client_learn_batches(client_, pixels.data(), pixels.size(), labels.data(),
                                       labels.size(), 40, 16, 2, token, nullptr, nullptr, &error_),
            FEDCL_CANCELLED);
  EXPECT_THAT(TakeMessage(), HasSubstr("cancelled"));
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 6) << "a cancelled call learns nothing";
  fedcl_cancel_token_reset(token);
  ASSERT_EQ(fedcl_client_learn_batches(client_, pixels.data(), pixels.size(), labels.data(),
                                       labels.size(), 40, 0, 1, token, nullptr, &batches, &error_),
            FEDCL_OK)
      << TakeMessage();
  EXPECT_EQ(batches, 1) << "batch_size 0: one step";
  fedcl_cancel_token_free(token);
  fedcl_cancel_token_cancel(nullptr);  // NULL is ignored
  fedcl_cancel_token_free(nullptr);

  EXPECT_EQ(
      fedcl_client_learn_batches(client_, pixels.data(), pixels.size(), labels.data(),
                                 labels.size(), 40, 16, 0, nullptr, nullptr, nullptr, &error_),
      FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("epochs"));
  // A count beyond the buffers is refused before anything is read.
  EXPECT_EQ(
      fedcl_client_learn_batches(client_, pixels.data(), pixels.size(), labels.data(),
                                 labels.size(), 41, 16, 1, nullptr, nullptr, nullptr, &error_),
      FEDCL_INVALID_ARGUMENT);
  EXPECT_THAT(TakeMessage(), HasSubstr("41"));
  fedcl_client_stats(client_, &stats);
  EXPECT_EQ(stats.learn_batches, 7);
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
}  // namespace fedcl::c_api_test
