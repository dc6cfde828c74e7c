#include "core/ood/representation_descriptor.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedcl::ood {

void InitLinearWeight(nn::Matrix& w, int fan_in, base::Rng& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  for (int64_t i = 0; i < w.rows(); ++i)
    for (int64_t j = 0; j < w.cols(); ++j) w(i, j) = static_cast<float>(rng.Uniform(-bound, bound));
}

absl::StatusOr<RepresentationDescriptor> RepresentationDescriptor::Create(int dim, int bottleneck,
                                                                          base::Rng& rng) {
  if (bottleneck < 1 || bottleneck >= dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a representation descriptor's bottleneck (", bottleneck,
        ") must be at least 1 and below its input dimension (", dim, ") so that it compresses"));
  }
  RepresentationDescriptor rd;
  rd.encoder_.resize(bottleneck, dim);
  rd.decoder_.resize(dim, bottleneck);
  InitLinearWeight(rd.encoder_, dim, rng);
  InitLinearWeight(rd.decoder_, bottleneck, rng);
  rd.encoder_bias_ = Eigen::VectorXf::Zero(bottleneck);
  rd.decoder_bias_ = Eigen::VectorXf::Zero(dim);
  return rd;
}

int64_t RepresentationDescriptor::num_parameters() const {
  return encoder_.size() + decoder_.size() + encoder_bias_.size() + decoder_bias_.size();
}

std::vector<float> RepresentationDescriptor::Losses(const nn::Matrix& z) const {
  const nn::Matrix code = (z * encoder_.transpose()).rowwise() + encoder_bias_.transpose();
  const nn::Matrix residual =
      ((code * decoder_.transpose()).rowwise() + decoder_bias_.transpose()) - z;
  std::vector<float> losses(z.rows());
  for (int64_t i = 0; i < z.rows(); ++i)
    losses[i] = residual.row(i).squaredNorm() / static_cast<float>(z.cols());
  return losses;
}

void RepresentationDescriptor::Gradients(const nn::Matrix& z, nn::Matrix* d_encoder,
                                         Eigen::VectorXf* d_encoder_bias, nn::Matrix* d_decoder,
                                         Eigen::VectorXf* d_decoder_bias) const {
  const float n = static_cast<float>(z.rows()), d = static_cast<float>(z.cols());
  const nn::Matrix code = (z * encoder_.transpose()).rowwise() + encoder_bias_.transpose();
  const nn::Matrix residual =
      ((code * decoder_.transpose()).rowwise() + decoder_bias_.transpose()) - z;
  // L = (1 / (n d)) Σ |r|²  →  dL/dẑ = 2 r / (n d).
  const nn::Matrix d_output = residual * (2.0f / (n * d));
  *d_decoder = d_output.transpose() * code;
  *d_decoder_bias = d_output.colwise().sum().transpose();
  const nn::Matrix d_code = d_output * decoder_;
  *d_encoder = d_code.transpose() * z;
  *d_encoder_bias = d_code.colwise().sum().transpose();
}

float RepresentationDescriptor::TrainStep(const nn::Matrix& z, float learning_rate,
                                          float weight_decay) {
  std::vector<float> losses = Losses(z);
  float mean = 0;
  for (float l : losses) mean += l / static_cast<float>(losses.size());
  nn::Matrix de, dd;
  Eigen::VectorXf dbe, dbd;
  Gradients(z, &de, &dbe, &dd, &dbd);
  encoder_ -= learning_rate * (de + weight_decay * encoder_);
  decoder_ -= learning_rate * (dd + weight_decay * decoder_);
  encoder_bias_ -= learning_rate * dbe;
  decoder_bias_ -= learning_rate * dbd;
  return mean;
}

void LossRecords::Add(absl::Span<const float> losses) {
  if (frozen_) return;
  for (float l : losses) {
    losses_.push_back(l);
    if (static_cast<int>(losses_.size()) > capacity_) losses_.pop_front();
  }
}

double LossRecords::mean() const {
  double sum = 0;
  for (float l : losses_) sum += l;
  return losses_.empty() ? 0.0 : sum / static_cast<double>(losses_.size());
}

double LossRecords::stddev() const {
  if (losses_.size() < 2) return 0.0;
  const double m = mean();
  double squares = 0;
  for (float l : losses_) squares += (l - m) * (l - m);
  return std::sqrt(squares / static_cast<double>(losses_.size() - 1));
}

double LossRecords::ZScore(float loss) const {
  if (losses_.size() <= 2) return 0.0;
  const double sigma = stddev();
  return sigma > 0 ? std::abs(loss - mean()) / sigma : 0.0;
}

}  // namespace fedcl::ood
