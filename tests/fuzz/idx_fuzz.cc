// Fuzz target: the IDX decoder (core/data/idx.h) and the image-dataset loader on top of it, with
// and without gzip. Input: a frame holding the images file, the rest is the labels file; the
// whole input is also decoded as one IDX array.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/base/memory_filesystem.h"
#include "core/data/fashion_mnist.h"
#include "core/data/idx.h"
#include "tests/core/data/idx_test_util.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {
using data::testutil::EncodeIdx;
using data::testutil::Gzip;

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::string pixels;
  for (int i = 0; i < 3 * 4 * 5; ++i) pixels.push_back(static_cast<char>(i * 37));
  const std::string images = EncodeIdx({3, 4, 5}, pixels);
  const std::string labels = EncodeIdx({3}, std::string("\x01\x09\x00", 3));
  return {{"plain", MakeFrame(images) + labels},
          {"gzip", MakeFrame(Gzip(images)) + Gzip(labels)},
          {"one-array", EncodeIdx({2, 3}, "abcdef")}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  const absl::string_view whole(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<data::IdxArray> array = data::DecodeIdx(whole, "fuzz");
  if (array.ok() && static_cast<int64_t>(array->values.size()) != array->num_elements()) abort();

  fuzz::FuzzInput input(data, size);
  base::MemoryFileSystem fs;
  fs.SetFile("/images", input.Frame());
  fs.SetFile("/labels", input.Rest());
  data::IdxImageOptions options;
  options.max_file_bytes = 1 << 20;
  absl::StatusOr<data::Dataset> dataset =
      data::LoadIdxImageDataset(fs, "/images", "/labels", options);
  if (dataset.ok() && !dataset->Validate().ok()) abort();
  return 0;
}
