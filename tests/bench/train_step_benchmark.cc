// Training-step and inference throughput of each backbone, the figures docs/performance.md's
// table and tests/bench/torch_compare.py report.
//
// Cases are named <backbone>/<mode>/<batch>:
//   ssf   — backbone frozen, SSF at every site and the head trainable (the federated setting)
//   full  — every backbone and head tensor trainable
//   infer — forward only, nothing kept for backward
// A training step is forward, cross-entropy, backward and an SGD (momentum 0.9) update, exactly
// what the PyTorch twin in torch_models.py does. One thread: Eigen runs single-threaded here.
//
//   build/bin/fedcl_train_step_benchmark --benchmark_filter='vit/.*'
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"
#include "core/nn/training.h"
#include "core/peft/pet_module.h"

namespace fedcl {
namespace {

enum class Mode { kSsf, kFull, kInfer };

struct Fixture {
  std::unique_ptr<nn::Model> model;
  std::unique_ptr<peft::PetModule> ssf;
  nn::Matrix images;
  std::vector<int32_t> labels;
};

Fixture Build(nn::BackboneKind kind, Mode mode, int batch) {
  Fixture f;
  nn::ModelConfig config;
  config.backbone = kind;
  f.model = *nn::Model::Create(config, 1);
  base::Rng rng(2);
  if (mode == Mode::kSsf) {
    f.model->SetBackboneTrainable(false);
    f.ssf = *peft::PetModule::Create("ssf", peft::PetConfig{}, f.model->backbone(), rng);
    FEDCL_CHECK_OK(f.ssf->Attach(*f.model));
  }
  f.images.resize(batch, config.input_size());
  for (Eigen::Index i = 0; i < f.images.size(); ++i) f.images.data()[i] = rng.Normal();
  for (int i = 0; i < batch; ++i) f.labels.push_back(static_cast<int32_t>(rng.UniformInt(10)));
  return f;
}

void BM_Step(benchmark::State& state, nn::BackboneKind kind, Mode mode) {
  const int batch = static_cast<int>(state.range(0));
  Fixture f = Build(kind, mode, batch);
  nn::Sgd sgd({.learning_rate = 0.01f, .momentum = 0.9f});
  for (auto _ : state) {
    if (mode == Mode::kInfer) {
      benchmark::DoNotOptimize(f.model->Forward(f.images, /*training=*/false).data());
    } else {
      benchmark::DoNotOptimize(nn::TrainStep(*f.model, sgd, f.images, f.labels));
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["samples_per_second"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

void RegisterAll() {
  const std::pair<const char*, nn::BackboneKind> backbones[] = {{"mlp", nn::BackboneKind::kMlp},
                                                                {"cnn", nn::BackboneKind::kCnn},
                                                                {"vit", nn::BackboneKind::kVit}};
  const std::pair<const char*, Mode> modes[] = {
      {"ssf", Mode::kSsf}, {"full", Mode::kFull}, {"infer", Mode::kInfer}};
  for (auto [backbone_name, backbone] : backbones) {
    for (auto [mode_name, mode] : modes) {
      for (int batch : {16, 128}) {
        std::string name =
            std::string(backbone_name) + "/" + mode_name + "/" + std::to_string(batch);
        benchmark::RegisterBenchmark(
            name.c_str(),
            [backbone = backbone, mode = mode](benchmark::State& s) { BM_Step(s, backbone, mode); })
            ->Arg(batch)
            ->ArgName("")
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
    }
  }
}

}  // namespace
}  // namespace fedcl

int main(int argc, char** argv) {
  fedcl::RegisterAll();
  benchmark::AddCustomContext("fedcl_isa", FEDCL_ISA);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
