// Fuzz target: Gunzip (core/data/gzip.h) with a 64 KiB output budget. Whatever the input, the
// output never passes the budget.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/data/gzip.h"
#include "tests/core/data/idx_test_util.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {
using data::testutil::Gzip;
using data::testutil::ZlibCompress;

std::vector<std::pair<std::string, std::string>> Seeds() {
  const std::string text = "fedcl fuzz seed: some text, some repeats, repeats, repeats.";
  return {{"gzip", Gzip(text, 9)},
          {"zlib", ZlibCompress(text)},
          {"two-members", Gzip(text, 9) + Gzip("more", 9)},
          {"bomb", Gzip(std::string(2 << 20, 'z'), 9)}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kBudget = 64 << 10;  // small: a bomb is refused as surely, and faster
  absl::StatusOr<std::string> out = fedcl::data::Gunzip(
      absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz", kBudget);
  if (out.ok() && out->size() > kBudget) abort();
  return 0;
}
