// The driver fuzz targets are linked with outside a libFuzzer build (fuzz_target.h): it runs a
// target on files and on deterministic mutations of them, so every change is checked against the
// seed corpus and every crash found so far, with any compiler.
//
//   fedcl_fuzz_idx tests/fuzz/corpus/idx                  # each file once
//   fedcl_fuzz_idx --mutations=500 tests/fuzz/corpus/idx  # and 500 mutants of each
//   fedcl_fuzz_idx --write_seeds=tests/fuzz/corpus/idx    # (re)write the target's seeds
//
// A mutant is a seed with a few random edits (bit flips, byte sets, inserts, erases, truncation,
// a copied range, a splice with another seed), from a fixed PRNG seed so that a failure replays.
// A crash or sanitizer report ends the process, which fails the test. This is a smoke run, not a
// fuzzer: the long runs use libFuzzer's coverage-guided search.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string ReadWhole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string Mutate(std::string input, const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t size = input.size();
    const size_t at = size == 0 ? 0 : rng() % size;
    switch (rng() % 7) {
      case 0:
        if (size > 0) input[at] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        if (size > 0) input[at] = static_cast<char>(rng());
        break;
      case 2:
        input.insert(at, 1 + rng() % 8, static_cast<char>(rng()));
        break;
      case 3:
        if (size > 0) input.erase(at, 1 + rng() % 8);
        break;
      case 4:
        input.resize(at);
        break;
      case 5:
        if (size > 0) {
          const size_t from = rng() % size;
          const size_t length = 1 + rng() % std::min<size_t>(64, size - from);
          input.insert(at, input.substr(from, length));
        }
        break;
      case 6: {
        const std::string& other = seeds[rng() % seeds.size()];
        input = input.substr(0, at) + other.substr(other.empty() ? 0 : rng() % other.size());
        break;
      }
    }
  }
  return input;
}

int WriteSeeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, bytes] : fedcl::fuzz::Seeds()) {
    std::ofstream(dir / ("seed-" + name), std::ios::binary) << bytes;
  }
  std::printf("wrote %zu seeds to %s\n", fedcl::fuzz::Seeds().size(), dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mutations = 0;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (absl::StartsWith(arg, "--write_seeds=")) return WriteSeeds(arg.substr(14));
    if (absl::StartsWith(arg, "--mutations=")) {
      if (!absl::SimpleAtoi(arg.substr(12), &mutations) || mutations < 0) {
        std::fprintf(stderr, "bad --mutations: %s\n", arg.c_str());
        return 2;
      }
      continue;
    }
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else if (std::filesystem::is_regular_file(arg)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "no such file or directory: %s\n", arg.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());  // a fixed order, so a mutant's failure replays
  std::vector<std::string> inputs;
  for (const auto& file : files) inputs.push_back(ReadWhole(file));
  for (const auto& [name, bytes] : fedcl::fuzz::Seeds()) inputs.push_back(bytes);

  const absl::Time start = absl::Now();
  for (const std::string& input : inputs) Run(input);
  std::mt19937_64 rng(20261207);
  int64_t mutants = 0;
  for (const std::string& input : inputs) {
    for (int64_t m = 0; m < mutations; ++m, ++mutants) Run(Mutate(input, inputs, rng));
  }
  std::printf("ran %zu inputs (%zu files + built-in seeds) and %lld mutants in %.2f s\n",
              inputs.size(), files.size(), static_cast<long long>(mutants),
              absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}
