#include "core/cl/sema.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/loss.h"

namespace fedcl::cl {

double SmallestMeanZScore(const std::vector<std::vector<double>>& z_scores) {
  constexpr double kNone = -std::numeric_limits<double>::infinity();
  if (z_scores.empty()) return kNone;
  double smallest = std::numeric_limits<double>::infinity();
  for (const std::vector<double>& adapter : z_scores) {
    if (adapter.empty()) return kNone;
    double mean = 0;
    for (double z : adapter) mean += z / static_cast<double>(adapter.size());
    smallest = std::min(smallest, mean);
  }
  return smallest;
}

bool ShouldExpand(const std::vector<std::vector<double>>& z_scores, double tau) {
  return SmallestMeanZScore(z_scores) > tau;
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
