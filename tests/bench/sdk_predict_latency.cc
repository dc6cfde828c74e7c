// The edge SDK's per-call costs on a real backbone: prediction latency per sample (batch 1 and
// batch 32, p50/p99 over many calls), a learning step, and heap allocations per prediction call
// after warm-up (counted by replacing the global operator new in this program).
//
//   build/bin/fedcl_sdk_latency --backbone=out/vit.ckpt
//
// Prints one table; measures, asserts nothing.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "client/sdk/memory_estimate.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/data/fashion_mnist.h"
#include "core/nn/model_config.h"
#include "fedcl/client.h"
#include "fedcl/fedcl_c.h"

ABSL_FLAG(std::string, backbone, "out/vit.ckpt", "Backbone checkpoint (fedcl-pretrain).");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST directory.");
ABSL_FLAG(std::string, storage_dir, "/tmp/fedcl-sdk-latency", "The client's storage directory.");
ABSL_FLAG(int, calls, 2000, "Timed calls per measurement.");
ABSL_FLAG(std::string, method, "sequential_adapter", "The learner's method.");
ABSL_FLAG(int, threads, 1, "ClientOptions::threads: threads one prediction may use.");

namespace {

std::atomic<int64_t> g_allocations{0};

}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t align) { return operator new(size, align); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

struct Summary {
  double p50_us = 0, p99_us = 0;
};

Summary Percentiles(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[static_cast<size_t>(q * static_cast<double>(us.size() - 1))];
  };
  return {at(0.5), at(0.99)};
}

int Run() {
  fedcl::data::FashionMnistOptions data_options;
  data_options.directory = absl::GetFlag(FLAGS_data_dir);
  data_options.normalize = false;  // the SDK takes pixels in [0, 1]
  data_options.max_samples = 4096;
  auto test = fedcl::data::LoadFashionMnist(fedcl::base::FileSystem::Default(), data_options,
                                            fedcl::data::Split::kTest);
  if (!test.ok()) {
    std::fprintf(stderr, "%s\n", std::string(test.status().message()).c_str());
    return 1;
  }
  fedcl::ClientOptions options;
  options.storage_dir = absl::GetFlag(FLAGS_storage_dir);
  options.method = absl::GetFlag(FLAGS_method);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.autosave_batches = 1 << 30;  // time the step, not the disk
  auto client = fedcl::Client::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  fedcl::Client& c = **client;
  if (absl::Status s = c.LoadBackbone(absl::GetFlag(FLAGS_backbone)); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  const int64_t per_image = c.input_size();
  const std::vector<float> pixels(test->images.data(), test->images.data() + test->images.size());
  const int calls = absl::GetFlag(FLAGS_calls);
  const int64_t n = test->size();
  using Clock = std::chrono::steady_clock;

  // The memory budget's batch estimate against the heap a first call of that size really keeps
  // (layers keep their buffers between calls): in-use heap bytes before and after.
  std::vector<int32_t> all_labels(test->labels.begin(), test->labels.end());
  auto heap_in_use = [] { return static_cast<int64_t>(mallinfo2().uordblks); };
  const int64_t before_predict = heap_in_use();
  {
    std::vector<fedcl::Prediction> out(32);
    (void)c.Predict(absl::MakeConstSpan(pixels).subspan(0, 32 * per_image), absl::MakeSpan(out));
  }
  const int64_t predict_kept = heap_in_use() - before_predict;
  const int64_t before_learn = heap_in_use();
  (void)c.Learn(absl::MakeConstSpan(pixels).subspan(0, 32 * per_image),
                absl::MakeConstSpan(all_labels).subspan(0, 32));
  const int64_t learn_kept = heap_in_use() - before_learn;
  const fedcl::nn::ModelConfig vit;  // out/vit.ckpt's shape: fedcl-pretrain's ViT defaults
  const int64_t predict_estimate = fedcl::sdk::BatchWorkingBytes(vit, 32, false);
  const int64_t learn_estimate = fedcl::sdk::BatchWorkingBytes(vit, 32, true);

  auto time_predict = [&](int batch, int64_t* allocations) {
    std::vector<fedcl::Prediction> out(batch);
    std::vector<double> us;
    us.reserve(calls);
    for (int warm = 0; warm < 20; ++warm) {
      (void)c.Predict(absl::MakeConstSpan(pixels).subspan(0, batch * per_image),
                      absl::MakeSpan(out));
    }
    const int64_t before = g_allocations.load();
    for (int i = 0; i < calls; ++i) {
      const int64_t start = (static_cast<int64_t>(i) * batch) % (n - batch);
      const auto t0 = Clock::now();
      absl::Status s =
          c.Predict(absl::MakeConstSpan(pixels).subspan(start * per_image, batch * per_image),
                    absl::MakeSpan(out));
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / batch);
      if (!s.ok()) std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    }
    *allocations = (g_allocations.load() - before) / calls;
    return Percentiles(std::move(us));
  };
  int64_t alloc1 = 0, alloc32 = 0;
  const Summary one = time_predict(1, &alloc1);
  const Summary thirty_two = time_predict(32, &alloc32);

  std::vector<double> learn_us;
  std::vector<int32_t> labels(test->labels.begin(), test->labels.end());
  const int learn_calls = std::min(calls, 300);
  for (int i = 0; i < learn_calls; ++i) {
    const int64_t start = (static_cast<int64_t>(i) * 32) % (n - 32);
    const auto t0 = Clock::now();
    (void)c.Learn(absl::MakeConstSpan(pixels).subspan(start * per_image, 32 * per_image),
                  absl::MakeConstSpan(labels).subspan(start, 32));
    learn_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const Summary learn = Percentiles(learn_us);
  // The same prediction through the C API.
  int64_t c_allocations = -1;
  {
    fedcl_options* o = fedcl_options_create();
    const std::string dir = absl::GetFlag(FLAGS_storage_dir) + "-c";
    fedcl_options_set_string(o, FEDCL_OPTION_STORAGE_DIR, dir.c_str());
    fedcl_client* cc = nullptr;
    if (fedcl_client_create(o, &cc, nullptr) == FEDCL_OK &&
        fedcl_client_load_backbone(cc, absl::GetFlag(FLAGS_backbone).c_str(), nullptr) ==
            FEDCL_OK) {
      fedcl_prediction out[1];
      for (int warm = 0; warm < 20; ++warm)
        fedcl_client_predict(cc, pixels.data(), 1, out, nullptr);
      const int64_t before = g_allocations.load();
      for (int i = 0; i < calls; ++i) {
        fedcl_client_predict(cc, pixels.data() + (i % n) * per_image, 1, out, nullptr);
      }
      c_allocations = (g_allocations.load() - before) / calls;
    }
    fedcl_client_destroy(cc);
    fedcl_options_destroy(o);
  }
  const fedcl::ClientStats stats = c.Stats();
  std::printf("edge SDK, %s on %s, %d thread(s), %d calls each\n", options.method.c_str(),
              absl::GetFlag(FLAGS_backbone).c_str(), options.threads, calls);
  std::printf("%-34s %10s %10s %14s\n", "call", "p50 (us)", "p99 (us)", "allocs/call");
  std::printf("%-34s %10.1f %10.1f %14lld\n", "predict, batch 1 (per sample)", one.p50_us,
              one.p99_us, static_cast<long long>(alloc1));
  std::printf("%-34s %10.1f %10.1f %14lld\n", "predict, batch 32 (per sample)", thirty_two.p50_us,
              thirty_two.p99_us, static_cast<long long>(alloc32));
  std::printf("%-34s %10s %10s %14lld\n", "predict through the C API, batch 1", "-", "-",
              static_cast<long long>(c_allocations));
  std::printf("%-34s %10.1f %10.1f %14s\n", "learn, batch 32 (per call)", learn.p50_us,
              learn.p99_us, "-");
  std::printf(
      "heap kept by the first calls on 32 images, measured / the budget's estimate: predict "
      "%.2f / %.2f MiB; predict then learn %.2f / %.2f MiB\n",
      predict_kept / 1048576.0, predict_estimate / 1048576.0,
      (predict_kept + learn_kept) / 1048576.0, learn_estimate / 1048576.0);
  std::printf("memory held by fedcl (estimate): %.2f MiB of a %.0f MiB budget\n",
              static_cast<double>(stats.memory_used_bytes) / (1 << 20),
              static_cast<double>(stats.memory_budget_bytes) / (1 << 20));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!fedcl::base::ParseCommandLine(argc, argv, "fedcl_sdk_latency",
                                     "Edge SDK per-call latency and allocations.",
                                     "sdk_predict_latency")) {
    return 2;
  }
  return Run();
}
