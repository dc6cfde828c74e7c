// Server-side aggregation throughput: ModuleAggregator("adaptive")::Fold and FinishRound for
// modules of D float32 parameters, on 1 and 2 threads (a oneTBB arena of that size).
//
// A fold reads the 4-byte delta and reads and writes the 8-byte fixed-point sum, so it is bound
// by memory bandwidth; bytes/s below counts the delta consumed (4·D per fold). Cases:
//   BM_Fold/<D>/<threads>/0  the same delta every time (it stays in cache, like a delta that was
//                            just decoded from the network)
//   BM_Fold/<D>/<threads>/1  a different delta each time, cycling over 64 MiB of them (cold)
//   BM_FinishRound/<D>/<threads>  params += γ/N·sum, then clearing the sum
//
//   build/bin/fedcl_fold_benchmark --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/fl/aggregator.h"
#include "tbb/task_arena.h"

namespace fedcl {
namespace {

std::vector<std::vector<float>> MakeDeltas(int64_t size, int64_t count) {
  base::Rng rng(1);
  std::vector<std::vector<float>> deltas(count, std::vector<float>(size));
  for (auto& delta : deltas) {
    for (float& v : delta) v = static_cast<float>(rng.Normal(0, 0.01));
  }
  return deltas;
}

void BM_Fold(benchmark::State& state) {
  const int64_t size = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const bool cold = state.range(2) != 0;
  const int64_t count = cold ? std::max<int64_t>(2, (int64_t{64} << 20) / (4 * size)) : 1;
  const std::vector<std::vector<float>> deltas = MakeDeltas(size, count);
  tbb::task_arena arena(threads);
  auto aggregator = fl::ModuleAggregator::Create(fl::RuleConfig{}, size, &arena);
  aggregator->BeginRound(0);
  fl::ClientId client = 0;
  for (auto _ : state) {
    // Distinct clients, as in a round; the weight is a typical FedAU weight.
    FEDCL_CHECK_OK(aggregator->Fold(client, deltas[client % count], 3.0));
    ++client;
  }
  state.SetBytesProcessed(state.iterations() * size * static_cast<int64_t>(sizeof(float)));
  state.SetItemsProcessed(state.iterations() * size);
}

void BM_FinishRound(benchmark::State& state) {
  const int64_t size = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const std::vector<std::vector<float>> deltas = MakeDeltas(size, 1);
  std::vector<float> params(size, 0.0f);
  tbb::task_arena arena(threads);
  auto aggregator = fl::ModuleAggregator::Create(fl::RuleConfig{}, size, &arena);
  int64_t round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    aggregator->BeginRound(round++);
    FEDCL_CHECK_OK(aggregator->Fold(0, deltas[0], 2.0));
    state.ResumeTiming();
    FEDCL_CHECK_OK(aggregator->FinishRound(1, 250, absl::MakeSpan(params)));
  }
  state.SetBytesProcessed(state.iterations() * size * static_cast<int64_t>(sizeof(float)));
}

BENCHMARK(BM_Fold)
    ->ArgNames({"D", "threads", "cold"})
    ->ArgsProduct({{100000, 1000000}, {1, 2}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FinishRound)
    ->ArgNames({"D", "threads"})
    ->ArgsProduct({{100000, 1000000}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace fedcl

BENCHMARK_MAIN();
