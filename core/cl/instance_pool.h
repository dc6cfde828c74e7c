// FedIns' instance-adaptive selection (algorithms.md §3.3-3.4). A pool of P parameter sets (SSF
// scale/shift sets and heads) carries P keys; each instance picks its own top-k keys by cosine
// similarity to its query (the frozen backbone's CLS feature) and uses the UNIFORM mean of the
// selected sets. Selection is per instance, never per batch; instances that picked the same set
// can be run together (GroupBySelection).
//
// Matching loss (the keys' only gradient, since the selection itself is not differentiable):
//   reduced_sim(x) = Σ_{j ∈ I(x)} cos(q(x), K_j)      (a sum over the k keys, as the code has it)
//   L_match        = λ · mean_x (1 − reduced_sim(x))
#ifndef FEDCL_CORE_CL_INSTANCE_POOL_H_
#define FEDCL_CORE_CL_INSTANCE_POOL_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/random.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"
#include "core/peft/pet_module.h"

namespace fedcl::cl {

// FedIns' shared modules as a device's learner starts them and a server serves them (role
// instance_pool): P keys ("fedins/keys", one tensor "keys" [P, d], truncated N(0, .02²)), P SSF
// sets on every SSF site of the backbone ("fedins/ssf<j>": scales N(1, .02²), shifts
// N(0, .02²)) and P heads that start as `head` ("fedins/head<j>"). `working` is one more SSF
// module of the same layout, through which the learner runs the mean of an instance's selected
// sets; other hosts drop it.
struct InstancePoolModules {
  nn::ParameterSet keys;
  std::vector<nn::ParameterSet> ssf, heads;
  std::unique_ptr<peft::PetModule> working;
};
absl::StatusOr<InstancePoolModules> NewInstancePoolModules(const nn::Backbone& backbone,
                                                           const nn::ParameterSet& head,
                                                           int pool_size, base::Rng& rng);

struct InstanceSelection {
  std::vector<std::vector<int>> indices;  // per instance, k pool rows by decreasing similarity
  std::vector<float> reduced_similarity;  // per instance, Σ of the selected cosines
};

// queries: N × d, keys: P × d, 1 <= k <= P. Ties go to the lower index.
absl::StatusOr<InstanceSelection> SelectTopK(const nn::Matrix& queries, const nn::Matrix& keys,
                                             int k);

// Row i = the uniform mean of pool rows selection.indices[i] (pool: P × m → N × m).
nn::Matrix MeanOfSelected(const nn::Matrix& pool, const InstanceSelection& selection);

// Instances that selected the same set of rows (whatever the order), each group in increasing
// instance order, groups in order of their first instance.
std::vector<std::vector<int>> GroupBySelection(const InstanceSelection& selection);

// L_match for the selection, and its gradient with respect to the keys (P × d, rows outside
// every selection are zero) added into *key_gradient if not null.
double MatchingLoss(const nn::Matrix& queries, const nn::Matrix& keys,
                    const InstanceSelection& selection, double weight, nn::Matrix* key_gradient);

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_INSTANCE_POOL_H_
