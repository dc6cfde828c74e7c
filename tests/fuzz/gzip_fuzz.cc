// Fuzz target: Gunzip (core/data/gzip.h) with a 64 KiB output budget. Whatever the input, the
// output never passes the budget.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/data/gzip.h"
#include "tests/fuzz/fuzz_target.h"
#include "zlib.h"

namespace fedcl::fuzz {
namespace {

std::string Compress(const std::string& raw, int window_bits) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, raw.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = raw.size();
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = out.size();
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  const std::string text = "fedcl fuzz seed: some text, some repeats, repeats, repeats.";
  return {{"gzip", Compress(text, 15 + 16)},
          {"zlib", Compress(text, 15)},
          {"two-members", Compress(text, 15 + 16) + Compress("more", 15 + 16)},
          {"bomb", Compress(std::string(2 << 20, 'z'), 15 + 16)}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kBudget = 64 << 10;  // small: a bomb is refused as surely, and faster
  absl::StatusOr<std::string> out = fedcl::data::Gunzip(
      absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz", kBudget);
  if (out.ok() && out->size() > kBudget) abort();
  return 0;
}
