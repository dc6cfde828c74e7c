// SEMA's self-expansion pieces (algorithms.md §4.2-4.3), independent of the backbone they sit in:
//
// - RepresentationDescriptor and LossRecords (core/ood/representation_descriptor.h): a linear
//   autoencoder on the token-mean of a block's input, and the losses recorded while its adapter
//   trains, frozen with it; a sample's novelty is its loss's z-score against them.
// - ShouldExpand: the expansion test of §4.3 on a batch: every existing adapter's batch-mean
//   z-score exceeds τ (default 2).
// The router and the adapters themselves are in adapter_mixture.h.
#ifndef FEDCL_CORE_CL_SEMA_H_
#define FEDCL_CORE_CL_SEMA_H_

#include <vector>

#include "absl/status/statusor.h"
#include "core/nn/parameter_set.h"
#include "core/ood/representation_descriptor.h"

namespace fedcl::cl {

// The descriptor and its loss records live in core/ood (the rd_zscore detector uses them too);
// SEMA's code names them as its own.
using ood::InitLinearWeight;
using ood::LossRecords;
using ood::RepresentationDescriptor;

// The smallest over the block's adapters of the batch-mean z-score: how unusual the batch is to
// the adapter it suits best. `z_scores[i]` holds adapter i's z-scores for the batch. −∞ with no
// adapters, or with one that scored no sample.
double SmallestMeanZScore(const std::vector<std::vector<double>>& z_scores);

// §4.3: expand iff SmallestMeanZScore(z_scores) > τ (default 2).
bool ShouldExpand(const std::vector<std::vector<double>>& z_scores, double tau = 2.0);

// A descriptor with its frozen loss records as one parameter set, the form the server's pool
// carries from the device that grew an adapter to the devices that detect with it: tensors
// "encoder" [r, d], "encoder_bias" [r], "decoder" [d, r], "decoder_bias" [d] and "losses" [n]
// (oldest first).
nn::ParameterSet DescriptorToParameters(const RepresentationDescriptor& rd,
                                        const LossRecords& records);
struct SharedDescriptor {
  RepresentationDescriptor rd;
  LossRecords records;  // frozen
};
// The inverse, for a d → r → d descriptor: InvalidArgument (naming what) unless the set has
// exactly those tensors in that order, finite values and at least three losses that vary.
absl::StatusOr<SharedDescriptor> DescriptorFromParameters(const nn::ParameterSet& set, int dim,
                                                          int bottleneck);

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_SEMA_H_
