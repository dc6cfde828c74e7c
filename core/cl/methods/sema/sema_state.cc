// SEMA's private state out and back in: the typed SemaState, and its MethodState form (named
// arrays, what hosts persist) — sema_method.h has the contract.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/sema/sema_method.h"

namespace fedcl::cl {
namespace {

std::vector<float> ToVector(const Eigen::RowVectorXf& v) { return {v.data(), v.data() + v.size()}; }
template <typename M>
std::vector<float> Flat(const M& m) {
  return {m.data(), m.data() + m.size()};
}

bool AllFinite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

std::string Key(size_t block, absl::string_view what) {
  return absl::StrCat("b", block, "/", what);
}
std::string Key(size_t block, size_t adapter, absl::string_view what) {
  return absl::StrCat("b", block, "/a", adapter, "/", what);
}

// Reads named arrays, failing with the name of what is missing or malformed.
class Reader {
 public:
  explicit Reader(const MethodState& state) : state_(state) {}
  absl::StatusOr<std::vector<float>> Floats(const std::string& key, bool required = true) const {
    auto it = state_.floats.find(key);
    if (it != state_.floats.end()) return it->second;
    if (!required) return std::vector<float>();
    return Missing(key);
  }
  absl::StatusOr<std::vector<int64_t>> Ints(const std::string& key, size_t size) const {
    auto it = state_.ints.find(key);
    if (it == state_.ints.end()) return Missing(key);
    if (it->second.size() != size && size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SEMA state: '", key, "' has ", it->second.size(), " values, not ", size));
    }
    return it->second;
  }
  absl::StatusOr<std::string> String(const std::string& key) const {
    auto it = state_.strings.find(key);
    if (it == state_.strings.end()) return Missing(key);
    return it->second;
  }

 private:
  static absl::Status Missing(const std::string& key) {
    return absl::InvalidArgumentError(absl::StrCat("SEMA state: '", key, "' is missing"));
  }
  const MethodState& state_;
};

absl::StatusOr<nn::Matrix> MatrixFrom(const std::vector<float>& v, int64_t rows, int64_t cols,
                                      const std::string& what) {
  if (static_cast<int64_t>(v.size()) != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("SEMA state: ", what, " has ", v.size(), " values, not ", rows, "×", cols));
  }
  return nn::Matrix(Eigen::Map<const nn::Matrix>(v.data(), rows, cols));
}

void EncodeAdapter(const SemaAdapterState& a, size_t i, size_t e, MethodState& out) {
  out.strings[Key(i, e, "name")] = a.expert.name();
  out.floats[Key(i, e, "expert")] = Flat(a.expert.flat_values());
  std::vector<int64_t>& trainable = out.ints[Key(i, e, "trainable")];
  for (int t = 0; t < a.expert.num_tensors(); ++t) trainable.push_back(a.expert.trainable(t));
  out.ints[Key(i, e, "descriptor")] = {a.has_descriptor, a.records_frozen};
  if (a.has_descriptor) {
    out.floats[Key(i, e, "encoder")] = Flat(a.encoder);
    out.floats[Key(i, e, "encoder_bias")] = Flat(a.encoder_bias);
    out.floats[Key(i, e, "decoder")] = Flat(a.decoder);
    out.floats[Key(i, e, "decoder_bias")] = Flat(a.decoder_bias);
    out.floats[Key(i, e, "losses")] = a.losses;
  }
  if (!a.anchor_mean.empty()) {
    out.floats[Key(i, e, "anchor_mean")] = a.anchor_mean;
    out.floats[Key(i, e, "anchor_var")] = a.anchor_var;
  }
}

absl::StatusOr<SemaAdapterState> DecodeAdapter(const Reader& in, size_t i, size_t e, int dim,
                                               int adapter_bottleneck, int r) {
  SemaAdapterState a;
  FEDCL_ASSIGN_OR_RETURN(std::string name, in.String(Key(i, e, "name")));
  base::Rng unused(0);
  a.expert = NewExpert(name, dim, adapter_bottleneck, unused);  // the layout
  FEDCL_ASSIGN_OR_RETURN(std::vector<float> values, in.Floats(Key(i, e, "expert")));
  if (static_cast<int64_t>(values.size()) != a.expert.num_values()) {
    return absl::InvalidArgumentError(absl::StrCat("SEMA state: adapter ", e, " of block ", i,
                                                   " has ", values.size(), " values, not ",
                                                   a.expert.num_values()));
  }
  a.expert.flat_values() = Eigen::Map<const Eigen::VectorXf>(values.data(), values.size());
  FEDCL_ASSIGN_OR_RETURN(std::vector<int64_t> trainable,
                         in.Ints(Key(i, e, "trainable"), a.expert.num_tensors()));
  for (int t = 0; t < a.expert.num_tensors(); ++t) a.expert.set_trainable(t, trainable[t] != 0);
  FEDCL_ASSIGN_OR_RETURN(std::vector<int64_t> flags, in.Ints(Key(i, e, "descriptor"), 2));
  a.has_descriptor = flags[0] != 0;
  a.records_frozen = flags[1] != 0;
  if (a.has_descriptor) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> enc, in.Floats(Key(i, e, "encoder")));
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> dec, in.Floats(Key(i, e, "decoder")));
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> eb, in.Floats(Key(i, e, "encoder_bias")));
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> db, in.Floats(Key(i, e, "decoder_bias")));
    FEDCL_ASSIGN_OR_RETURN(a.encoder, MatrixFrom(enc, r, dim, "an encoder"));
    FEDCL_ASSIGN_OR_RETURN(a.decoder, MatrixFrom(dec, dim, r, "a decoder"));
    FEDCL_ASSIGN_OR_RETURN(nn::Matrix ebm, MatrixFrom(eb, r, 1, "an encoder bias"));
    FEDCL_ASSIGN_OR_RETURN(nn::Matrix dbm, MatrixFrom(db, dim, 1, "a decoder bias"));
    a.encoder_bias = ebm.col(0);
    a.decoder_bias = dbm.col(0);
    FEDCL_ASSIGN_OR_RETURN(a.losses, in.Floats(Key(i, e, "losses")));
  }
  FEDCL_ASSIGN_OR_RETURN(a.anchor_mean, in.Floats(Key(i, e, "anchor_mean"), false));
  FEDCL_ASSIGN_OR_RETURN(a.anchor_var, in.Floats(Key(i, e, "anchor_var"), false));
  return a;
}

}  // namespace

MethodState SemaStateToMethodState(const SemaState& state) {
  MethodState out;
  out.ints["growth_steps_left"] = {state.growth_steps_left};
  std::vector<int64_t>& blocks = out.ints["blocks"];
  for (size_t i = 0; i < state.blocks.size(); ++i) {
    const SemaBlockState& b = state.blocks[i];
    blocks.push_back(b.block);
    out.ints[Key(i, "growing_index")] = {b.growing_index};
    out.ints[Key(i, "adapters")] = {static_cast<int64_t>(b.adapters.size())};
    if (b.growth_buffer.size() > 0) out.floats[Key(i, "growth_buffer")] = Flat(b.growth_buffer);
    for (size_t e = 0; e < b.adapters.size(); ++e) EncodeAdapter(b.adapters[e], i, e, out);
  }
  return out;
}

absl::StatusOr<SemaState> SemaStateFromMethodState(const MethodState& state, int dim,
                                                   int adapter_bottleneck, int bottleneck) {
  const Reader in(state);
  SemaState out;
  FEDCL_ASSIGN_OR_RETURN(std::vector<int64_t> steps, in.Ints("growth_steps_left", 1));
  out.growth_steps_left = static_cast<int>(steps[0]);
  FEDCL_ASSIGN_OR_RETURN(std::vector<int64_t> blocks, in.Ints("blocks", 0));
  for (size_t i = 0; i < blocks.size(); ++i) {
    SemaBlockState& b = out.blocks.emplace_back();
    b.block = static_cast<int>(blocks[i]);
    FEDCL_ASSIGN_OR_RETURN(std::vector<int64_t> growing, in.Ints(Key(i, "growing_index"), 1));
    b.growing_index = static_cast<int>(growing[0]);
    FEDCL_ASSIGN_OR_RETURN(std::vector<int64_t> count, in.Ints(Key(i, "adapters"), 1));
    if (count[0] < 1 || count[0] > 1024) {
      return absl::InvalidArgumentError(
          absl::StrCat("SEMA state: block ", b.block, " has ", count[0], " adapters"));
    }
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> buffer, in.Floats(Key(i, "growth_buffer"), false));
    FEDCL_ASSIGN_OR_RETURN(
        b.growth_buffer,
        MatrixFrom(buffer, static_cast<int64_t>(buffer.size()) / dim, dim, "a growth buffer"));
    for (int64_t e = 0; e < count[0]; ++e) {
      FEDCL_ASSIGN_OR_RETURN(SemaAdapterState a,
                             DecodeAdapter(in, i, e, dim, adapter_bottleneck, bottleneck));
      b.adapters.push_back(std::move(a));
    }
  }
  return out;
}

MethodState SemaMethod::ExportState(const LearnerCore& core) const {
  return SemaStateToMethodState(ExportSemaState());
}

absl::Status SemaMethod::RestoreState(LearnerCore& core, const MethodState& state) {
  if (state.empty()) return absl::OkStatus();  // nothing stored: the learner as it starts
  FEDCL_ASSIGN_OR_RETURN(
      SemaState sema,
      SemaStateFromMethodState(state, blocks_.empty() ? 0 : blocks_[0]->mixture.dim(),
                               options_.adapter_bottleneck, options_.descriptor_bottleneck));
  return RestoreSemaState(sema);
}

SemaState SemaMethod::ExportSemaState() const {
  SemaState state;
  state.growth_steps_left = growing_ >= 0 ? growth_steps_left_ : 0;
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

absl::Status SemaMethod::RestoreSemaState(const SemaState& state) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("SEMA state: ", what));
  };
  if (state.blocks.size() != blocks_.size())
    return bad(absl::StrCat(state.blocks.size(), " blocks for a learner with ", blocks_.size()));
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
      FEDCL_ASSIGN_OR_RETURN(RepresentationDescriptor rd,
                             RepresentationDescriptor::Create(
                                 b.mixture.dim(), options_.descriptor_bottleneck, core_->rng()));
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
  proposals_.clear();  // proposals belong to the session that syncs this learner
  cusum_.reset();      // like the detection window, the trigger calibrates afresh
  calibration_.clear();
  class_reference_.reset();
  reference_features_.resize(0, 0);
  reference_labels_.clear();
  return absl::OkStatus();
}

}  // namespace fedcl::cl
