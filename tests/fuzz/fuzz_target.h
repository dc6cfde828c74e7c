// What every fuzz target in this directory provides, besides libFuzzer's entry point
// LLVMFuzzerTestOneInput: the valid inputs its seed corpus starts from, and a reader that cuts one
// fuzz input into the several pieces a target needs (a selector, framed messages).
//
// A target is built two ways (tests/fuzz/CMakeLists.txt):
//   * with clang and -DFEDCL_FUZZ=ON, linked with libFuzzer, for long runs (docs/development.md,
//     "Fuzzing");
//   * in every other build, linked with replay_main.cc, which runs the checked-in corpus and a
//     fixed number of deterministic mutations of it, so CI replays every seed and every crash
//     found so far on each change.
#ifndef FEDCL_TESTS_FUZZ_FUZZ_TARGET_H_
#define FEDCL_TESTS_FUZZ_FUZZ_TARGET_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace fedcl::fuzz {

// Named valid inputs of the target: `replay --write_seeds=DIR` writes them as the seed corpus.
std::vector<std::pair<std::string, std::string>> Seeds();

// Reads a fuzz input front to back; past the end every read gives zero or empty.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return b;
  }
  // A frame: a 16-bit little-endian length, then that many bytes (fewer if the input ends).
  absl::string_view Frame() {
    const size_t length = Byte() | (size_t{Byte()} << 8);
    const absl::string_view frame = rest_.substr(0, length);
    rest_.remove_prefix(frame.size());
    return frame;
  }
  absl::string_view Rest() {
    const absl::string_view rest = rest_;
    rest_ = {};
    return rest;
  }

 private:
  absl::string_view rest_;
};

// The inverse of FuzzInput::Frame, for writing seeds.
inline std::string MakeFrame(absl::string_view bytes) {
  std::string frame;
  const size_t length = std::min<size_t>(bytes.size(), 0xffff);
  frame.push_back(static_cast<char>(length & 0xff));
  frame.push_back(static_cast<char>(length >> 8));
  frame.append(bytes.data(), length);
  return frame;
}

}  // namespace fedcl::fuzz

#endif  // FEDCL_TESTS_FUZZ_FUZZ_TARGET_H_
