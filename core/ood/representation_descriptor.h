// SEMA's representation descriptor (algorithms.md §4.2-4.3), the novelty measure behind both the
// rd_zscore detector (detectors/rd_zscore.cc) and SEMA's expansion test (core/cl/sema.h):
//
// - RepresentationDescriptor: a linear autoencoder z ↦ D(E z + b_e) + b_d (d → r → d, no
//   activation) on the token-mean z of a block's input, with per-sample loss
//   ℓ(z) = mean_d (ẑ − z)². Its bottleneck r must be smaller than d, or it reconstructs
//   everything and its z-score means nothing. Kaiming-uniform weights, zero biases.
// - LossRecords: the FIFO of the last `capacity` (500) per-sample losses seen while the
//   descriptor trains, frozen with it; z(x) = |ℓ(x) − μ| / σ with the unbiased σ, and 0 while it
//   holds two values or fewer.
//
//   base::Rng rng(seed);
//   FEDCL_ASSIGN_OR_RETURN(ood::RepresentationDescriptor rd,
//                          ood::RepresentationDescriptor::Create(64, 16, rng));
//   ood::LossRecords records;
//   for (const nn::Matrix& batch : batches) {
//     records.Add(rd.Losses(batch));
//     rd.TrainStep(batch, 0.05f);
//   }
//   records.Freeze();
//   double z = records.ZScore(rd.Losses(probe)[0]);
//
// Value types, not thread-safe; Losses is const and may run concurrently.
#ifndef FEDCL_CORE_OOD_REPRESENTATION_DESCRIPTOR_H_
#define FEDCL_CORE_OOD_REPRESENTATION_DESCRIPTOR_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/random.h"
#include "core/nn/tensor.h"

namespace fedcl::ood {

// PyTorch's default Linear weight init (Kaiming-uniform with a = √5): U(±1/√fan_in), drawn
// row by row. Plain Eigen matrices, unlike nn::InitKaimingUniform's bound parameters.
void InitLinearWeight(nn::Matrix& w, int fan_in, base::Rng& rng);

class RepresentationDescriptor {
 public:
  // InvalidArgument unless 1 <= bottleneck < dim.
  static absl::StatusOr<RepresentationDescriptor> Create(int dim, int bottleneck, base::Rng& rng);

  // Per-sample losses of a batch z (N × dim).
  std::vector<float> Losses(const nn::Matrix& z) const;
  // One SGD step (momentum 0, optional weight decay on the weights) on the batch-mean loss;
  // returns that loss before the step.
  float TrainStep(const nn::Matrix& z, float learning_rate, float weight_decay = 0.0f);
  // Gradients of the batch-mean loss (for checks): dE, db_e, dD, db_d.
  void Gradients(const nn::Matrix& z, nn::Matrix* d_encoder, Eigen::VectorXf* d_encoder_bias,
                 nn::Matrix* d_decoder, Eigen::VectorXf* d_decoder_bias) const;

  int dim() const { return static_cast<int>(encoder_.cols()); }
  int bottleneck() const { return static_cast<int>(encoder_.rows()); }
  nn::Matrix& encoder() { return encoder_; }  // r × d
  nn::Matrix& decoder() { return decoder_; }  // d × r
  Eigen::VectorXf& encoder_bias() { return encoder_bias_; }
  Eigen::VectorXf& decoder_bias() { return decoder_bias_; }
  const nn::Matrix& encoder() const { return encoder_; }
  const nn::Matrix& decoder() const { return decoder_; }
  const Eigen::VectorXf& encoder_bias() const { return encoder_bias_; }
  const Eigen::VectorXf& decoder_bias() const { return decoder_bias_; }
  int64_t num_parameters() const;

 private:
  nn::Matrix encoder_, decoder_;
  Eigen::VectorXf encoder_bias_, decoder_bias_;
};

class LossRecords {
 public:
  explicit LossRecords(int capacity = 500) : capacity_(capacity) {}
  void Add(absl::Span<const float> losses);  // ignored once frozen
  void Freeze() { frozen_ = true; }
  bool frozen() const { return frozen_; }
  double mean() const;
  double stddev() const;  // unbiased
  double ZScore(float loss) const;
  int size() const { return static_cast<int>(losses_.size()); }
  std::vector<float> values() const { return {losses_.begin(), losses_.end()}; }

 private:
  int capacity_;
  bool frozen_ = false;
  std::deque<float> losses_;
};

}  // namespace fedcl::ood

#endif  // FEDCL_CORE_OOD_REPRESENTATION_DESCRIPTOR_H_
