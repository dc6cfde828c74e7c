// The C API (fedcl/fedcl_c.h) over fedcl::Client. Each function is a thin translation: check the
// pointers, convert the arguments, call the C++ API, convert the result. Every body runs inside
// Guard(), so no C++ exception reaches a C caller.
#include "fedcl/fedcl_c.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "fedcl/client.h"

#ifndef FEDCL_VERSION
#error "FEDCL_VERSION must be defined by the build (client/sdk/packaging.cmake)"
#endif

#include "client/sdk/fedcl_c_internal.h"

namespace {

using namespace fedcl::c_api;  // NOLINT: the helpers every C entry point uses

// The buffer length the old calls (fedcl_client_learn, ...) pass on: they trust the caller's
// count, as they are documented to.
constexpr size_t kUnstated = std::numeric_limits<size_t>::max();

// The checks of a caller's buffers that read nothing from them. Each API function makes them all
// before the C++ call, which makes every other check on the count (the memory budget among them)
// before it reads a value; so a count beyond a buffer is refused without a read past its end
// (when the buffer's length is stated, or the count is beyond what the budget allows).

// `count` images as a span of pixels, or InvalidArgument when the pointer is NULL, when
// count × input_size overflows (size_t or int64), or when it exceeds `pixels_len` floats.
// Without a backbone input_size() is 0 and the span is empty: the C++ call then reports the
// missing backbone.
fedcl_status PixelSpan(const fedcl_client* client, const float* pixels, size_t pixels_len,
                       size_t count, const char* function, fedcl_error** error,
                       absl::Span<const float>* out) {
  if (pixels == nullptr && count > 0) return NullArgument(error, function, "pixels");
  const int64_t input_size = client->client->input_size();
  const size_t max_values =
      std::min<uint64_t>(std::numeric_limits<size_t>::max(), std::numeric_limits<int64_t>::max());
  if (input_size > 0 && count > max_values / static_cast<size_t>(input_size)) {
    return Fail(error, FEDCL_INVALID_ARGUMENT,
                absl::StrCat(function, ": count ", count, " images is too many"));
  }
  const size_t values = count * static_cast<size_t>(input_size);
  if (pixels_len != kUnstated && values > pixels_len) {
    return Fail(error, FEDCL_INVALID_ARGUMENT,
                absl::StrCat(function, ": count ", count, " needs ", values,
                             " pixels; pixels_len is ", pixels_len));
  }
  *out = absl::Span<const float>(pixels, pixels == nullptr ? 0 : values);
  return FEDCL_OK;
}

// InvalidArgument naming `argument` when `count` elements are needed from a NULL pointer or
// from a buffer of `len` (kUnstated: trusted).
fedcl_status CheckElements(const void* pointer, size_t len, size_t count, const char* function,
                           const char* argument, const char* elements, fedcl_error** error) {
  if (pointer == nullptr && count > 0) return NullArgument(error, function, argument);
  if (len != kUnstated && count > len) {
    return Fail(error, FEDCL_INVALID_ARGUMENT,
                absl::StrCat(function, ": count ", count, " needs ", count, " ", elements, "; ",
                             argument, "_len is ", len));
  }
  return FEDCL_OK;
}

fedcl_sync_stage ToC(fedcl::SyncProgress::Stage stage) {
  using Stage = fedcl::SyncProgress::Stage;
  switch (stage) {
    case Stage::kIdle:
      return FEDCL_SYNC_IDLE;
    case Stage::kConnecting:
      return FEDCL_SYNC_CONNECTING;
    case Stage::kDownloading:
      return FEDCL_SYNC_DOWNLOADING;
    case Stage::kSubmitting:
      return FEDCL_SYNC_SUBMITTING;
    case Stage::kDone:
      return FEDCL_SYNC_DONE;
    case Stage::kFailed:
      return FEDCL_SYNC_FAILED;
  }
  return FEDCL_SYNC_FAILED;
}

fedcl_sync_progress ToC(const fedcl::SyncProgress& progress) {
  fedcl_sync_progress c{};
  c.stage = ToC(progress.stage);
  c.bytes_done = progress.bytes_done;
  c.bytes_total = progress.bytes_total;
  return c;
}

fedcl_sync_result ToC(const fedcl::SyncResult& result) {
  fedcl_sync_result c{};
  c.round = result.round;
  c.submitted = result.submitted ? 1 : 0;
  c.round_closed = result.round_closed ? 1 : 0;
  c.modules_downloaded = result.modules_downloaded;
  c.bytes_downloaded = result.bytes_downloaded;
  c.bytes_uploaded = result.bytes_uploaded;
  c.retry_after_ms = absl::ToInt64Milliseconds(result.retry_after);
  return c;
}

fedcl_stats ToC(const fedcl::ClientStats& s) {
  fedcl_stats c{};
  c.learn_batches = s.learn_batches;
  c.learned_samples = s.learned_samples;
  c.predictions = s.predictions;
  c.adapt_batches = s.adapt_batches;
  c.syncs = s.syncs;
  c.submissions = s.submissions;
  c.rounds_closed = s.rounds_closed;
  c.queue_records = s.queue_records;
  c.queue_bytes = s.queue_bytes;
  c.queue_records_dropped = s.queue_records_dropped;
  c.memory_used_bytes = s.memory_used_bytes;
  c.memory_budget_bytes = s.memory_budget_bytes;
  c.memory_refusals = s.memory_refusals;
  c.last_round = s.last_round;
  c.backbone_loaded = s.backbone_loaded ? 1 : 0;
  c.state_restored = s.state_restored ? 1 : 0;
  c.state_set_aside = s.state_set_aside ? 1 : 0;
  c.state_from_backup = s.state_from_backup ? 1 : 0;
  return c;
}

// A labelled batch's checks (Learn, FitDetector): the labels, then the pixels as a span.
fedcl_status LabelledBatch(const fedcl_client* client, const float* pixels, size_t pixels_len,
                           const int32_t* labels, size_t labels_len, size_t count, const char* fn,
                           fedcl_error** error, absl::Span<const float>* pixel_span) {
  const fedcl_status checked =
      CheckElements(labels, labels_len, count, fn, "labels", "labels", error);
  if (checked != FEDCL_OK) return checked;
  return PixelSpan(client, pixels, pixels_len, count, fn, error, pixel_span);
}

// The bodies of the batch calls, shared by the old calls (lengths kUnstated) and their _n
// variants. `fn` is the API function's name, for messages. Every check on a pointer or a count
// comes before the C++ call, which reads the buffers only after its own checks on the count.

// `options` null: the one-batch call. `batches` may be null.
fedcl_status DoLearn(fedcl_client* client, const float* pixels, size_t pixels_len,
                     const int32_t* labels, size_t labels_len, size_t count,
                     const fedcl::LearnOptions* options, float* loss, int64_t* batches,
                     fedcl_error** error, const char* fn) {
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    absl::Span<const float> pixel_span;
    const fedcl_status checked = LabelledBatch(client, pixels, pixels_len, labels, labels_len,
                                               count, fn, error, &pixel_span);
    if (checked != FEDCL_OK) return checked;
    const absl::Span<const int32_t> label_span(labels, labels == nullptr ? 0 : count);
    absl::StatusOr<fedcl::LearnResult> learned =
        options == nullptr ? client->client->Learn(pixel_span, label_span)
                           : client->client->Learn(pixel_span, label_span, *options);
    if (!learned.ok()) return FromStatus(learned.status(), error);
    if (loss != nullptr) *loss = learned->loss;
    if (batches != nullptr) *batches = learned->batches;
    return FEDCL_OK;
  });
}

fedcl_status DoPredict(fedcl_client* client, const float* pixels, size_t pixels_len, size_t count,
                       fedcl_prediction* out, size_t out_len, fedcl_error** error, const char* fn) {
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    fedcl_status checked = CheckElements(out, out_len, count, fn, "out", "predictions", error);
    if (checked != FEDCL_OK) return checked;
    absl::Span<const float> pixel_span;
    checked = PixelSpan(client, pixels, pixels_len, count, fn, error, &pixel_span);
    if (checked != FEDCL_OK) return checked;
    // fedcl::Prediction and fedcl_prediction differ in layout (bool vs int32): predict into the
    // client's C++ buffer and convert.
    std::lock_guard<std::mutex> lock(client->predict_mu);
    std::vector<fedcl::Prediction>& predictions = client->predictions;
    if (predictions.size() < count) predictions.resize(count);
    const absl::Status status =
        client->client->Predict(pixel_span, absl::MakeSpan(predictions.data(), count));
    if (!status.ok()) return FromStatus(status, error);
    for (size_t i = 0; i < count; ++i) {
      out[i].label = predictions[i].label;
      out[i].confidence = predictions[i].confidence;
      out[i].ood_score = predictions[i].ood_score;
      out[i].ood = predictions[i].ood ? 1 : 0;
    }
    return FEDCL_OK;
  });
}

fedcl_status DoAdapt(fedcl_client* client, const float* pixels, size_t pixels_len, size_t count,
                     int64_t* samples_used, fedcl_error** error, const char* fn) {
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    absl::Span<const float> pixel_span;
    const fedcl_status checked =
        PixelSpan(client, pixels, pixels_len, count, fn, error, &pixel_span);
    if (checked != FEDCL_OK) return checked;
    absl::StatusOr<fedcl::AdaptResult> adapted = client->client->Adapt(pixel_span);
    if (!adapted.ok()) return FromStatus(adapted.status(), error);
    if (samples_used != nullptr) *samples_used = adapted->samples_used;
    return FEDCL_OK;
  });
}

fedcl_status DoFitDetector(fedcl_client* client, const float* pixels, size_t pixels_len,
                           const int32_t* labels, size_t labels_len, size_t count,
                           fedcl_error** error, const char* fn) {
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    absl::Span<const float> pixel_span;
    const fedcl_status checked = LabelledBatch(client, pixels, pixels_len, labels, labels_len,
                                               count, fn, error, &pixel_span);
    if (checked != FEDCL_OK) return checked;
    return FromStatus(client->client->FitDetector(
                          pixel_span, absl::Span<const int32_t>(labels, labels ? count : 0)),
                      error);
  });
}

}  // namespace

extern "C" {
// ---- The client ------------------------------------------------------------------------------

fedcl_status fedcl_client_create(const fedcl_options* options, fedcl_client** client,
                                 fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (options == nullptr) return NullArgument(error, fn, "options");
    if (client == nullptr) return NullArgument(error, fn, "client");
    absl::StatusOr<std::unique_ptr<fedcl::Client>> created =
        fedcl::Client::Create(options->options);
    if (!created.ok()) return FromStatus(created.status(), error);
    auto handle = std::make_unique<fedcl_client>();
    handle->client = *std::move(created);
    *client = handle.release();
    return FEDCL_OK;
  });
}

void fedcl_client_destroy(fedcl_client* client) {
  GuardVoid([&] { delete client; });
}

fedcl_status fedcl_client_load_backbone(fedcl_client* client, const char* checkpoint_path,
                                        fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    if (checkpoint_path == nullptr) return NullArgument(error, fn, "checkpoint_path");
    return FromStatus(client->client->LoadBackbone(checkpoint_path), error);
  });
}

// The old calls and their _n variants share one body each; the old ones pass kUnstated lengths.

fedcl_status fedcl_client_learn(fedcl_client* client, const float* pixels, const int32_t* labels,
                                size_t count, float* loss, fedcl_error** error) {
  return DoLearn(client, pixels, kUnstated, labels, kUnstated, count, nullptr, loss, nullptr, error,
                 __func__);
}

fedcl_status fedcl_client_learn_n(fedcl_client* client, const float* pixels, size_t pixels_len,
                                  const int32_t* labels, size_t labels_len, size_t count,
                                  float* loss, fedcl_error** error) {
  return DoLearn(client, pixels, pixels_len, labels, labels_len, count, nullptr, loss, nullptr,
                 error, __func__);
}

fedcl_cancel_token* fedcl_cancel_token_new(void) { return new (std::nothrow) fedcl_cancel_token(); }
void fedcl_cancel_token_cancel(fedcl_cancel_token* token) {
  if (token != nullptr) token->token.Cancel();
}
void fedcl_cancel_token_reset(fedcl_cancel_token* token) {
  if (token != nullptr) token->token.Reset();
}
void fedcl_cancel_token_free(fedcl_cancel_token* token) { delete token; }

fedcl_status fedcl_client_learn_batches(fedcl_client* client, const float* pixels,
                                        size_t pixels_len, const int32_t* labels, size_t labels_len,
                                        size_t count, size_t batch_size, int32_t epochs,
                                        const fedcl_cancel_token* cancel, float* loss,
                                        int64_t* batches, fedcl_error** error) {
  fedcl::LearnOptions options;
  // A batch larger than the images is all of them in one: clamping keeps the value an int64.
  options.batch_size = static_cast<int64_t>(std::min<size_t>(batch_size, count));
  options.epochs = epochs;
  options.cancel = cancel == nullptr ? nullptr : &cancel->token;
  return DoLearn(client, pixels, pixels_len, labels, labels_len, count, &options, loss, batches,
                 error, __func__);
}

fedcl_status fedcl_client_predict(fedcl_client* client, const float* pixels, size_t count,
                                  fedcl_prediction* out, fedcl_error** error) {
  return DoPredict(client, pixels, kUnstated, count, out, kUnstated, error, __func__);
}

fedcl_status fedcl_client_predict_n(fedcl_client* client, const float* pixels, size_t pixels_len,
                                    size_t count, fedcl_prediction* out, size_t out_len,
                                    fedcl_error** error) {
  return DoPredict(client, pixels, pixels_len, count, out, out_len, error, __func__);
}

fedcl_status fedcl_client_adapt(fedcl_client* client, const float* pixels, size_t count,
                                int64_t* samples_used, fedcl_error** error) {
  return DoAdapt(client, pixels, kUnstated, count, samples_used, error, __func__);
}

fedcl_status fedcl_client_adapt_n(fedcl_client* client, const float* pixels, size_t pixels_len,
                                  size_t count, int64_t* samples_used, fedcl_error** error) {
  return DoAdapt(client, pixels, pixels_len, count, samples_used, error, __func__);
}

fedcl_status fedcl_client_fit_detector(fedcl_client* client, const float* pixels,
                                       const int32_t* labels, size_t count, fedcl_error** error) {
  return DoFitDetector(client, pixels, kUnstated, labels, kUnstated, count, error, __func__);
}

fedcl_status fedcl_client_fit_detector_n(fedcl_client* client, const float* pixels,
                                         size_t pixels_len, const int32_t* labels,
                                         size_t labels_len, size_t count, fedcl_error** error) {
  return DoFitDetector(client, pixels, pixels_len, labels, labels_len, count, error, __func__);
}

fedcl_status fedcl_client_begin_task(fedcl_client* client, const int32_t* classes, size_t count,
                                     fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    if (classes == nullptr && count > 0) return NullArgument(error, fn, "classes");
    return FromStatus(
        client->client->BeginTask(absl::Span<const int32_t>(classes, classes ? count : 0)), error);
  });
}

fedcl_status fedcl_client_sync(fedcl_client* client, fedcl_sync_result* result,
                               fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    absl::StatusOr<fedcl::SyncResult> synced = client->client->Sync();
    if (!synced.ok()) return FromStatus(synced.status(), error);
    if (result != nullptr) *result = ToC(*synced);
    return FEDCL_OK;
  });
}

fedcl_status fedcl_client_start_sync(fedcl_client* client, fedcl_progress_callback callback,
                                     void* user_data, fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    std::function<void(const fedcl::SyncProgress&)> on_progress;
    if (callback != nullptr) {
      on_progress = [callback, user_data](const fedcl::SyncProgress& progress) {
        const fedcl_sync_progress c = ToC(progress);
        callback(user_data, &c);
      };
    }
    return FromStatus(client->client->StartSync(std::move(on_progress)), error);
  });
}

void fedcl_client_sync_status(const fedcl_client* client, fedcl_sync_progress* progress) {
  GuardVoid([&] {
    if (progress == nullptr) return;
    *progress = client == nullptr ? ToC(fedcl::SyncProgress()) : ToC(client->client->SyncStatus());
  });
}

fedcl_status fedcl_client_wait_sync(fedcl_client* client, fedcl_sync_result* result,
                                    fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    absl::StatusOr<fedcl::SyncResult> synced = client->client->WaitSync();
    if (!synced.ok()) return FromStatus(synced.status(), error);
    if (result != nullptr) *result = ToC(*synced);
    return FEDCL_OK;
  });
}

void fedcl_client_cancel_sync(fedcl_client* client) {
  GuardVoid([&] {
    if (client != nullptr) client->client->CancelSync();
  });
}

fedcl_status fedcl_client_save(fedcl_client* client, fedcl_error** error) {
  const char* fn = __func__;
  return Guard(error, [&]() -> fedcl_status {
    if (client == nullptr) return NullArgument(error, fn, "client");
    return FromStatus(client->client->Save(), error);
  });
}

void fedcl_client_stats(const fedcl_client* client, fedcl_stats* stats) {
  GuardVoid([&] {
    if (stats == nullptr) return;
    *stats = client == nullptr ? ToC(fedcl::ClientStats()) : ToC(client->client->Stats());
  });
}

int64_t fedcl_client_input_size(const fedcl_client* client) {
  int64_t size = 0;
  GuardVoid([&] {
    if (client != nullptr) size = client->client->input_size();
  });
  return size;
}

int32_t fedcl_client_num_classes(const fedcl_client* client) {
  int32_t classes = 0;
  GuardVoid([&] {
    if (client != nullptr) classes = client->client->num_classes();
  });
  return classes;
}

}  // extern "C"
