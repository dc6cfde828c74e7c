#include "core/cl/sema.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/loss.h"

namespace fedcl::cl {
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

bool ShouldExpand(const std::vector<std::vector<double>>& z_scores, double tau) {
  if (z_scores.empty()) return false;
  double smallest = std::numeric_limits<double>::infinity();
  for (const std::vector<double>& adapter : z_scores) {
    if (adapter.empty()) return false;
    double mean = 0;
    for (double z : adapter) mean += z / static_cast<double>(adapter.size());
    smallest = std::min(smallest, mean);
  }
  return smallest > tau;
}

nn::ParameterSet DescriptorToParameters(const RepresentationDescriptor& rd,
                                        const LossRecords& records) {
  const int d = rd.dim(), r = rd.bottleneck();
  const std::vector<float> losses = records.values();
  nn::ParameterSet set("descriptor");
  const int encoder = set.Add("encoder", {r, d}, false);
  const int encoder_bias = set.Add("encoder_bias", {r}, false);
  const int decoder = set.Add("decoder", {d, r}, false);
  const int decoder_bias = set.Add("decoder_bias", {d}, false);
  const int loss = set.Add("losses", {static_cast<int64_t>(losses.size())}, false);
  // nn::Matrix is row-major: its storage is the tensor's.
  std::copy_n(rd.encoder().data(), rd.encoder().size(), set.values(encoder));
  std::copy_n(rd.encoder_bias().data(), r, set.values(encoder_bias));
  std::copy_n(rd.decoder().data(), rd.decoder().size(), set.values(decoder));
  std::copy_n(rd.decoder_bias().data(), d, set.values(decoder_bias));
  std::copy(losses.begin(), losses.end(), set.values(loss));
  return set;
}

absl::StatusOr<SharedDescriptor> DescriptorFromParameters(const nn::ParameterSet& set, int dim,
                                                          int bottleneck) {
  const std::vector<std::pair<std::string, nn::Shape>> expected = {{"encoder", {bottleneck, dim}},
                                                                   {"encoder_bias", {bottleneck}},
                                                                   {"decoder", {dim, bottleneck}},
                                                                   {"decoder_bias", {dim}}};
  const std::string layout = absl::StrCat("encoder [", bottleneck, ", ", dim,
                                          "], encoder_bias, decoder, decoder_bias, "
                                          "losses [n >= 3]");
  if (set.num_tensors() != 5 || set.info(4).name != "losses" || set.info(4).shape.size() != 1 ||
      set.info(4).size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("a descriptor must hold ", layout));
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    if (set.info(static_cast<int>(i)).name != expected[i].first ||
        set.info(static_cast<int>(i)).shape != expected[i].second) {
      return absl::InvalidArgumentError(absl::StrCat("a descriptor must hold ", layout));
    }
  }
  if (!set.flat_values().allFinite())
    return absl::InvalidArgumentError("a descriptor has non-finite values");
  if (set.info(4).size < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("a descriptor needs at least 3 loss records, not ", set.info(4).size));
  }
  base::Rng unused(0);  // every value is overwritten below
  FEDCL_ASSIGN_OR_RETURN(RepresentationDescriptor rd,
                         RepresentationDescriptor::Create(dim, bottleneck, unused));
  std::copy_n(set.values(0), rd.encoder().size(), rd.encoder().data());
  std::copy_n(set.values(1), bottleneck, rd.encoder_bias().data());
  std::copy_n(set.values(2), rd.decoder().size(), rd.decoder().data());
  std::copy_n(set.values(3), dim, rd.decoder_bias().data());
  LossRecords records;
  records.Add(absl::MakeConstSpan(set.values(4), set.info(4).size));
  records.Freeze();
  // Records that do not vary give every loss a z-score of 0: such a descriptor would call every
  // stream familiar and stop the block from ever growing.
  if (!(records.stddev() > 0.0))
    return absl::InvalidArgumentError("a descriptor's loss records do not vary");
  return SharedDescriptor{std::move(rd), std::move(records)};
}

}  // namespace fedcl::cl
