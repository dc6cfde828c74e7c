// The C API against counts beyond the caller's buffers: every buffer ends at a guard page, so a
// read past it would fault instead of passing unnoticed.
#include "tests/sdk/c_api_fixture.h"

namespace fedcl::c_api_test {
namespace {

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

}  // namespace
}  // namespace fedcl::c_api_test
