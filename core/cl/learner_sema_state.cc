// Learner: SEMA's device state out and back in (learner.h, SemaState), for hosts that persist a
// device between runs.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/learner.h"

namespace fedcl::cl {
namespace {

std::vector<float> ToVector(const Eigen::RowVectorXf& v) { return {v.data(), v.data() + v.size()}; }

bool AllFinite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace

absl::StatusOr<SemaState> Learner::ExportSemaState() const {
  if (!IsSema(options_.method))
    return absl::FailedPreconditionError("only a SEMA learner has SEMA state");
  SemaState state;
  state.growth_steps_left = growing_ >= 0 ? growth_steps_left_ : 0;
  state.learned_classes = learned_classes_;
  state.task_labels = task_labels_;
  for (const auto& bp : blocks_) {
    const Block& b = *bp;
    SemaBlockState& out = state.blocks.emplace_back();
    out.block = b.index;
    out.growing_index = b.growing ? b.growing_index : -1;
    if (b.growing) {
      out.growth_buffer.resize(static_cast<int64_t>(b.buffer.size()), b.mixture.dim());
      for (size_t r = 0; r < b.buffer.size(); ++r) out.growth_buffer.row(r) = b.buffer[r];
    }
    out.adapters.resize(b.mixture.experts());
    for (int e = 0; e < b.mixture.experts(); ++e) {
      out.adapters[e].expert = b.mixture.expert(e);
      out.adapters[e].expert.DropGradients();
      if (e < static_cast<int>(b.anchor_mean.size()) && b.anchor_mean[e].size() > 0) {
        out.adapters[e].anchor_mean = ToVector(b.anchor_mean[e]);
        out.adapters[e].anchor_var = ToVector(b.anchor_var[e]);
      }
    }
    for (size_t k = 0; k < b.descriptors.size(); ++k) {
      SemaAdapterState& a = out.adapters[b.descriptor_expert[k]];
      const RepresentationDescriptor& rd = b.descriptors[k];
      a.has_descriptor = true;
      a.encoder = rd.encoder();
      a.decoder = rd.decoder();
      a.encoder_bias = rd.encoder_bias();
      a.decoder_bias = rd.decoder_bias();
      a.losses = b.records[k].values();
      a.records_frozen = b.records[k].frozen();
    }
  }
  return state;
}

absl::Status Learner::RestoreSemaState(const SemaState& state) {
  if (!IsSema(options_.method))
    return absl::FailedPreconditionError("only a SEMA learner takes SEMA state");
  if (task_steps_ > 0 || proposals_.size() > 0) {
    return absl::FailedPreconditionError(
        "SEMA state is restored into a learner that has not learned yet");
  }
  for (const auto& b : blocks_) {
    if (b->mixture.experts() != 1)
      return absl::FailedPreconditionError(
          "SEMA state is restored into a learner that has not grown or imported adapters");
  }
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("SEMA state: ", what));
  };
  if (state.blocks.size() != blocks_.size())
    return bad(absl::StrCat(state.blocks.size(), " blocks for a learner with ", blocks_.size()));
  const size_t classes = static_cast<size_t>(model_->config().num_classes);
  for (const std::vector<bool>* flags : {&state.learned_classes, &state.task_labels}) {
    if (!flags->empty() && flags->size() != classes)
      return bad(absl::StrCat("class flags for ", flags->size(), " classes, not ", classes));
  }
  if (state.growth_steps_left < 0 || state.growth_steps_left > options_.new_module_steps)
    return bad(absl::StrCat("growth_steps_left ", state.growth_steps_left, " outside [0, ",
                            options_.new_module_steps, "]"));
  // Check everything first: a state that does not fit changes nothing.
  bool any_growing = false;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = *blocks_[i];
    const SemaBlockState& s = state.blocks[i];
    const std::string where = absl::StrCat("block ", s.block);
    if (s.block != b.index)
      return bad(absl::StrCat(where, " where the learner expands block ", b.index));
    if (s.adapters.empty()) return bad(absl::StrCat(where, " has no adapter"));
    if (s.adapters.size() > 1024) return bad(absl::StrCat(where, " has too many adapters"));
    if (s.growing_index < -1 || s.growing_index >= static_cast<int>(s.adapters.size()))
      return bad(absl::StrCat(where, ": growing adapter ", s.growing_index, " does not exist"));
    if (s.growing_index >= 0) {
      any_growing = true;
      if (s.growth_buffer.cols() != b.mixture.dim() && s.growth_buffer.rows() > 0)
        return bad(absl::StrCat(where, ": the growth buffer is not ", b.mixture.dim(), " wide"));
      if (!s.growth_buffer.allFinite())
        return bad(absl::StrCat(where, ": the growth buffer is not finite"));
      if (!s.adapters[s.growing_index].has_descriptor)
        return bad(absl::StrCat(where, ": the growing adapter has no descriptor"));
    }
    for (size_t e = 0; e < s.adapters.size(); ++e) {
      const SemaAdapterState& a = s.adapters[e];
      const std::string adapter = absl::StrCat(where, " adapter ", e);
      if (absl::Status l = b.mixture.expert(0).CheckSameLayout(a.expert); !l.ok())
        return bad(absl::StrCat(adapter, ": ", l.message()));
      if (!a.expert.flat_values().allFinite())
        return bad(absl::StrCat(adapter, " has non-finite values"));
      const int d = b.mixture.dim(), r = options_.descriptor_bottleneck;
      if (a.has_descriptor &&
          (a.encoder.rows() != r || a.encoder.cols() != d || a.decoder.rows() != d ||
           a.decoder.cols() != r || a.encoder_bias.size() != r || a.decoder_bias.size() != d ||
           !a.encoder.allFinite() || !a.decoder.allFinite() || !a.encoder_bias.allFinite() ||
           !a.decoder_bias.allFinite() || !AllFinite(a.losses))) {
        return bad(absl::StrCat(adapter, ": its descriptor is not ", d, "→", r, "→", d,
                                " with finite values"));
      }
      if (a.anchor_mean.size() != a.anchor_var.size() ||
          (!a.anchor_mean.empty() && static_cast<int>(a.anchor_mean.size()) != d) ||
          !AllFinite(a.anchor_mean) || !AllFinite(a.anchor_var)) {
        return bad(absl::StrCat(adapter, ": its anchor is not ", d, " finite means and variances"));
      }
    }
  }
  if (any_growing != (state.growth_steps_left > 0))
    return bad("a growth in progress needs steps left, and steps left need a growing adapter");

  for (size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = *blocks_[i];
    const SemaBlockState& s = state.blocks[i];
    while (b.mixture.experts() > 0) b.mixture.RemoveLastExpert();
    b.descriptors.clear();
    b.records.clear();
    b.descriptor_expert.clear();
    b.anchor_mean.assign(s.adapters.size(), Eigen::RowVectorXf());
    b.anchor_var.assign(s.adapters.size(), Eigen::RowVectorXf());
    for (size_t e = 0; e < s.adapters.size(); ++e) {
      const SemaAdapterState& a = s.adapters[e];
      nn::ParameterSet expert = a.expert;
      expert.SetAllTrainable(static_cast<int>(e) == s.growing_index);
      FEDCL_RETURN_IF_ERROR(b.mixture.AddExpert(std::move(expert)).status());
      if (!a.anchor_mean.empty()) {
        b.anchor_mean[e] =
            Eigen::Map<const Eigen::RowVectorXf>(a.anchor_mean.data(), a.anchor_mean.size());
        b.anchor_var[e] =
            Eigen::Map<const Eigen::RowVectorXf>(a.anchor_var.data(), a.anchor_var.size());
      }
      if (!a.has_descriptor) continue;
      FEDCL_ASSIGN_OR_RETURN(
          RepresentationDescriptor rd,
          RepresentationDescriptor::Create(b.mixture.dim(), options_.descriptor_bottleneck, rng_));
      rd.encoder() = a.encoder;
      rd.decoder() = a.decoder;
      rd.encoder_bias() = a.encoder_bias;
      rd.decoder_bias() = a.decoder_bias;
      LossRecords records;
      records.Add(a.losses);
      if (a.records_frozen) records.Freeze();
      b.AddDescriptor(std::move(rd), std::move(records), static_cast<int>(e));
    }
    b.consecutive = 0;
    b.window.clear();
    b.growing = s.growing_index >= 0;
    b.growing_index = s.growing_index;
    b.buffer.clear();
    for (int64_t r = 0; r < s.growth_buffer.rows(); ++r) b.buffer.push_back(s.growth_buffer.row(r));
  }
  growing_ = -1;
  for (size_t i = 0; i < blocks_.size(); ++i)
    if (blocks_[i]->growing) growing_ = static_cast<int>(i);
  growth_steps_left_ = state.growth_steps_left;
  learned_classes_ = state.learned_classes;
  task_labels_ = state.task_labels;
  return absl::OkStatus();
}

}  // namespace fedcl::cl
