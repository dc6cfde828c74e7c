// Fuzz target: the .npy decoder (core/data/npy.h) and the image-dataset loader on top of it.
// Input: a selector byte (bit 0: channels last), a frame holding the images file, the rest is the
// labels file; the whole input after the selector is also decoded as one array.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/memory_filesystem.h"
#include "core/data/npy.h"
#include "tests/core/data/npy_test_util.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {

using data::testutil::EncodeNpy;

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::string pixels;
  for (int i = 0; i < 2 * 3 * 2 * 3; ++i) pixels.push_back(static_cast<char>(i * 7));
  std::string floats;
  for (int i = 0; i < 8; ++i) {
    const float v = i / 8.0f - 0.25f;
    floats.append(reinterpret_cast<const char*>(&v), 4);
  }
  const std::string labels =
      EncodeNpy("<i8", "(2,)", std::string("\x03\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0", 16));
  return {
      {"nhwc-uint8", "\x01" + MakeFrame(EncodeNpy("|u1", "(2, 3, 2, 3)", pixels)) + labels},
      {"nchw-uint8", std::string(1, '\0') + MakeFrame(EncodeNpy("|u1", "(2, 3, 2, 3)", pixels)) +
                         EncodeNpy("|u1", "(2,)", "\x01\x02")},
      {"float32", "\x01" + MakeFrame(EncodeNpy("<f4", "(2, 2, 2)", floats)) +
                      EncodeNpy("<u2", "(2,)", std::string("\x01\0\0\0", 4))}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  fuzz::FuzzInput input(data, size);
  data::NpyImageOptions options;
  options.channels_last = input.Byte() & 1;
  options.max_file_bytes = 1 << 20;
  const absl::string_view images = input.Frame();
  const absl::string_view labels = input.Rest();
  absl::StatusOr<data::NpyArray> array = data::DecodeNpy(images, "fuzz");
  if (array.ok()) {
    const int64_t expected = array->num_elements();
    if (expected < 0 || static_cast<int64_t>(array->bytes.size()) < expected) abort();
  }
  base::MemoryFileSystem fs;
  fs.SetFile("/images.npy", images);
  fs.SetFile("/labels.npy", labels);
  absl::StatusOr<data::Dataset> dataset =
      data::LoadNpyImageDataset(fs, "/images.npy", "/labels.npy", options);
  if (dataset.ok() && !dataset->Validate().ok()) abort();
  return 0;
}
