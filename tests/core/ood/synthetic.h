// Synthetic detector fixtures: three Gaussian classes in 8 dimensions (class c centred at 4·e_c,
// unit variance) for training and held-out data, and OOD samples from a wider cloud centred at
// shift·1.
#ifndef FEDCL_TESTS_CORE_OOD_SYNTHETIC_H_
#define FEDCL_TESTS_CORE_OOD_SYNTHETIC_H_

#include <cstdint>
#include <vector>

#include "core/base/random.h"
#include "core/nn/tensor.h"

namespace fedcl::ood::testing {

struct Synthetic {
  nn::Matrix train, held_out, ood;
  std::vector<int32_t> labels;  // of train: row i has class i % 3
};

inline Synthetic MakeData(int per_class, float shift, uint64_t seed = 7) {
  base::Rng rng(seed);
  const int d = 8;
  Synthetic s;
  auto sample = [&](nn::Matrix& m, int rows, bool out, std::vector<int32_t>* labels) {
    m.resize(rows, d);
    for (int i = 0; i < rows; ++i) {
      const int c = i % 3;
      if (labels) labels->push_back(c);
      for (int j = 0; j < d; ++j) {
        const float centre = out ? shift : (j == c ? 4.0f : 0.0f);
        m(i, j) = centre + static_cast<float>(rng.Normal()) * (out ? 1.5f : 1.0f);
      }
    }
  };
  sample(s.train, 3 * per_class, false, &s.labels);
  sample(s.held_out, 3 * per_class, false, nullptr);
  sample(s.ood, 3 * per_class, true, nullptr);
  return s;
}

}  // namespace fedcl::ood::testing

#endif  // FEDCL_TESTS_CORE_OOD_SYNTHETIC_H_
