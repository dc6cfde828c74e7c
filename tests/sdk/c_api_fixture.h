// The fixture of the C API suites (c_api_test.cc, c_api_bounds_test.cc): an options handle,
// synthetic batches, buffers that end at a guard page, and an offline device on a ViT backbone.
#ifndef FEDCL_TESTS_SDK_C_API_FIXTURE_H_
#define FEDCL_TESTS_SDK_C_API_FIXTURE_H_

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

namespace fedcl::c_api_test {

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
inline void MakeBatch(int n, int first, std::vector<float>* pixels, std::vector<int32_t>* labels) {
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

}  // namespace fedcl::c_api_test

#endif  // FEDCL_TESTS_SDK_C_API_FIXTURE_H_
