#include "core/nn/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedcl::nn {
namespace {

absl::Status InRange(absl::string_view what, float value, float low, float high,
                     bool low_inclusive) {
  bool ok = (low_inclusive ? value >= low : value > low) && value < high && std::isfinite(value);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer option ", what, " = ", value, " is out of range"));
  }
  return absl::OkStatus();
}

// Calls fn(offset, size) for each trainable tensor of `set`.
template <typename Fn>
void ForEachTrainable(const ParameterSet& set, Fn fn) {
  for (const TensorInfo& info : set.tensors()) {
    if (info.trainable) fn(info.offset, info.size);
  }
}

}  // namespace

absl::Status SgdOptions::Validate() const {
  absl::Status s = InRange("learning_rate", learning_rate, 0.0f, INFINITY, false);
  if (s.ok()) s = InRange("momentum", momentum, 0.0f, 1.0f, true);
  if (s.ok()) s = InRange("weight_decay", weight_decay, 0.0f, INFINITY, true);
  if (s.ok() && nesterov && momentum == 0.0f) {
    s = absl::InvalidArgumentError("optimizer option nesterov needs momentum > 0");
  }
  return s;
}

absl::Status AdamWOptions::Validate() const {
  absl::Status s = InRange("learning_rate", learning_rate, 0.0f, INFINITY, false);
  if (s.ok()) s = InRange("beta1", beta1, 0.0f, 1.0f, true);
  if (s.ok()) s = InRange("beta2", beta2, 0.0f, 1.0f, true);
  if (s.ok()) s = InRange("epsilon", epsilon, 0.0f, INFINITY, false);
  if (s.ok()) s = InRange("weight_decay", weight_decay, 0.0f, INFINITY, true);
  return s;
}

void Sgd::Step(const std::vector<ParameterSet*>& sets) {
  const float lr = options_.learning_rate;
  const float mu = options_.momentum;
  const float wd = options_.weight_decay;
  for (ParameterSet* set : sets) {
    if (!set->any_trainable()) continue;
    AlignedFloats* buffer = nullptr;
    bool first = false;
    if (mu > 0.0f) {
      auto [it, inserted] = momentum_.try_emplace(set);
      if (inserted) it->second.assign(set->num_values(), 0.0f);
      buffer = &it->second;
      first = inserted;
    }
    VectorMap w = set->flat_values();
    VectorMap g = set->flat_grads();
    // Each branch is one fused expression: no temporaries, one pass over memory.
    ForEachTrainable(*set, [&](int64_t offset, int64_t size) {
      auto wi = w.segment(offset, size);
      auto gi = g.segment(offset, size);
      if (buffer == nullptr) {
        wi -= lr * (gi + wd * wi);
        return;
      }
      VectorMap b(buffer->data() + offset, size);
      if (first) {
        b = gi + wd * wi;
      } else {
        b = mu * b + (gi + wd * wi);
      }
      if (options_.nesterov) {
        wi -= lr * ((gi + wd * wi) + mu * b);
      } else {
        wi -= lr * b;
      }
    });
  }
}

void AdamW::Step(const std::vector<ParameterSet*>& sets) {
  const AdamWOptions& o = options_;
  for (ParameterSet* set : sets) {
    if (!set->any_trainable()) continue;
    auto [it, inserted] = state_.try_emplace(set);
    State& state = it->second;
    if (inserted) {
      state.m.assign(set->num_values(), 0.0f);
      state.v.assign(set->num_values(), 0.0f);
    }
    ++state.steps;
    const float correction1 = 1.0f - std::pow(o.beta1, static_cast<float>(state.steps));
    const float correction2 = 1.0f - std::pow(o.beta2, static_cast<float>(state.steps));
    const float step_size = o.learning_rate / correction1;
    const float inv_sqrt_c2 = 1.0f / std::sqrt(correction2);
    VectorMap w = set->flat_values();
    VectorMap g = set->flat_grads();
    ForEachTrainable(*set, [&](int64_t offset, int64_t size) {
      auto wi = w.segment(offset, size);
      auto gi = g.segment(offset, size);
      VectorMap m(state.m.data() + offset, size);
      VectorMap v(state.v.data() + offset, size);
      wi *= 1.0f - o.learning_rate * o.weight_decay;
      m = o.beta1 * m + (1.0f - o.beta1) * gi;
      v = o.beta2 * v + (1.0f - o.beta2) * gi.cwiseProduct(gi);
      wi.array() -= step_size * m.array() / (v.array().sqrt() * inv_sqrt_c2 + o.epsilon);
    });
  }
}

float ClipGradNorm(const std::vector<ParameterSet*>& sets, float max_norm) {
  double squared = 0.0;
  for (ParameterSet* set : sets) {
    ForEachTrainable(*set, [&](int64_t offset, int64_t size) {
      squared += set->flat_grads().segment(offset, size).squaredNorm();
    });
  }
  const float norm = static_cast<float>(std::sqrt(squared));
  if (max_norm > 0.0f && norm > max_norm) {
    const float factor = max_norm / (norm + 1e-6f);
    for (ParameterSet* set : sets) {
      ForEachTrainable(*set, [&](int64_t offset, int64_t size) {
        set->flat_grads().segment(offset, size) *= factor;
      });
    }
  }
  return norm;
}

}  // namespace fedcl::nn
