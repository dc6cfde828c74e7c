#include "core/peft/site_layout.h"

#include <array>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/init.h"

namespace fedcl::peft::internal {
namespace {

using nn::ParamRef;
using nn::Shape;

// Tensor roles per kind, in the order they sit in SiteBinding::tensors.
std::vector<absl::string_view> Roles(PetKind kind) {
  switch (kind) {
    case PetKind::kSsf:
      return {"ssf_scale", "ssf_shift"};
    case PetKind::kAdapter:
      return {"down.weight", "down.bias", "up.weight", "up.bias"};
    case PetKind::kLora:
      return {"lora_a", "lora_b"};
  }
  return {};
}

std::string TensorName(absl::string_view site, absl::string_view role) {
  return absl::StrCat(site, ".", role);
}

template <typename T>
T* FindByName(const std::vector<T*>& items, absl::string_view name) {
  for (T* item : items) {
    if (item->name() == name) return item;
  }
  return nullptr;
}

ParamRef Ref(nn::ParameterSet& params, int index) { return ParamRef{&params, index}; }

absl::Status ShapeMismatch(absl::string_view tensor, const Shape& got, const Shape& want) {
  return absl::InvalidArgumentError(absl::StrCat("tensor '", tensor, "' has shape ",
                                                 nn::ShapeToString(got), ", the site needs ",
                                                 nn::ShapeToString(want)));
}

// Expected shapes of a site's tensors given the site's own dimensions.
std::vector<Shape> ExpectedShapes(const PetConfig& config, int64_t in, int64_t out) {
  switch (config.kind) {
    case PetKind::kSsf:
      return {{out}, {out}};
    case PetKind::kAdapter: {
      int64_t r = config.adapter_bottleneck;
      return {{r, in}, {r}, {in, r}, {in}};
    }
    case PetKind::kLora: {
      int64_t r = config.lora_rank;
      return {{r, in}, {out, r}};
    }
  }
  return {};
}

}  // namespace

std::vector<PetModule::SiteBinding> CreateTensors(const PetConfig& config,
                                                  const nn::Backbone& backbone,
                                                  nn::ParameterSet& params, base::Rng& rng) {
  std::vector<PetModule::SiteBinding> sites;
  auto add_site = [&](absl::string_view site, int64_t in, int64_t out) {
    PetModule::SiteBinding binding;
    binding.site = std::string(site);
    std::vector<absl::string_view> roles = Roles(config.kind);
    std::vector<Shape> shapes = ExpectedShapes(config, in, out);
    for (size_t i = 0; i < roles.size(); ++i) {
      binding.tensors[i] = params.Add(TensorName(site, roles[i]), shapes[i], true);
    }
    sites.push_back(std::move(binding));
    return &sites.back();
  };
  const double sd = config.ssf_init_stddev;
  switch (config.kind) {
    case PetKind::kSsf:
      for (const nn::SsfSite* site : backbone.ssf_sites()) {
        if (!config.Covers(site->name())) continue;
        auto* b = add_site(site->name(), site->channels(), site->channels());
        nn::InitNormal(Ref(params, b->tensors[0]), 1.0, sd, rng);
        nn::InitNormal(Ref(params, b->tensors[1]), 0.0, sd, rng);
      }
      break;
    case PetKind::kAdapter:
      for (const nn::AdapterBranch* site : backbone.adapter_sites()) {
        if (!config.Covers(site->name())) continue;
        auto* b = add_site(site->name(), site->dim(), site->dim());
        nn::InitKaimingUniform(Ref(params, b->tensors[0]), site->dim(), rng);
      }
      break;
    case PetKind::kLora:
      for (const nn::Linear* linear : backbone.lora_targets()) {
        if (!config.Covers(linear->name())) continue;
        auto* b = add_site(linear->name(), linear->in_features(), linear->out_features());
        nn::InitKaimingUniform(Ref(params, b->tensors[0]), linear->in_features(), rng);
      }
      break;
  }
  return sites;
}

absl::StatusOr<std::vector<PetModule::SiteBinding>> GroupTensors(const PetConfig& config,
                                                                 const nn::ParameterSet& params) {
  std::vector<absl::string_view> roles = Roles(config.kind);
  std::vector<PetModule::SiteBinding> sites;
  absl::flat_hash_map<std::string, size_t> site_index;
  for (int t = 0; t < params.num_tensors(); ++t) {
    const std::string& name = params.info(t).name;
    int role = -1;
    for (size_t r = 0; r < roles.size() && role < 0; ++r) {
      if (absl::EndsWith(name, absl::StrCat(".", roles[r]))) role = static_cast<int>(r);
    }
    if (role < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' is not a ", PetKindName(config.kind), " tensor"));
    }
    std::string site = name.substr(0, name.size() - roles[role].size() - 1);
    auto [it, inserted] = site_index.try_emplace(site, sites.size());
    if (inserted) sites.push_back(PetModule::SiteBinding{site});
    sites[it->second].tensors[role] = t;
  }
  if (sites.empty()) return absl::InvalidArgumentError("module has no tensors");
  for (const PetModule::SiteBinding& site : sites) {
    for (size_t r = 0; r < roles.size(); ++r) {
      if (site.tensors[r] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("site '", site.site, "' lacks tensor '",
                                                       TensorName(site.site, roles[r]), "'"));
      }
    }
    // The site's dimensions follow from the first tensor; the rest must agree with them and
    // with the configured rank or bottleneck.
    const Shape& first = params.info(site.tensors[0]).shape;
    int64_t in = 0, out = 0;
    if (config.kind == PetKind::kSsf) {
      out = first.empty() ? 0 : first[0];
    } else if (first.size() == 2) {
      in = first[1];
      out = config.kind == PetKind::kLora ? params.info(site.tensors[1]).shape[0] : in;
    }
    std::vector<Shape> want = ExpectedShapes(config, in, out);
    for (size_t r = 0; r < roles.size(); ++r) {
      const nn::TensorInfo& info = params.info(site.tensors[r]);
      if (info.shape != want[r]) return ShapeMismatch(info.name, info.shape, want[r]);
    }
  }
  return sites;
}

absl::Status CheckBindable(const PetConfig& config,
                           const std::vector<PetModule::SiteBinding>& sites,
                           nn::ParameterSet& params, const nn::Backbone& backbone) {
  for (const PetModule::SiteBinding& b : sites) {
    int64_t in = 0, out = 0;
    bool taken = false;
    bool found = false;
    if (config.kind == PetKind::kSsf) {
      if (const nn::SsfSite* s = FindByName(backbone.ssf_sites(), b.site)) {
        found = true;
        out = s->channels();
        taken = s->active();
      }
    } else if (config.kind == PetKind::kAdapter) {
      if (const nn::AdapterBranch* s = FindByName(backbone.adapter_sites(), b.site)) {
        found = true;
        in = out = s->dim();
        taken = s->active();
      }
    } else if (const nn::Linear* s = FindByName(backbone.lora_targets(), b.site)) {
      found = true;
      in = s->in_features();
      out = s->out_features();
      taken = s->has_lora();
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat("this ", nn::BackboneKindName(backbone.kind()),
                                                     " backbone has no ", PetKindName(config.kind),
                                                     " site '", b.site, "'"));
    }
    if (taken) {
      return absl::FailedPreconditionError(absl::StrCat(PetKindName(config.kind), " site '", b.site,
                                                        "' is already taken by another module"));
    }
    std::vector<Shape> want = ExpectedShapes(config, in, out);
    for (size_t r = 0; r < want.size(); ++r) {
      const nn::TensorInfo& info = params.info(b.tensors[r]);
      if (info.shape != want[r]) return ShapeMismatch(info.name, info.shape, want[r]);
    }
  }
  return absl::OkStatus();
}

void Bind(const PetConfig& config, const std::vector<PetModule::SiteBinding>& sites,
          nn::ParameterSet& params, nn::Backbone& backbone) {
  for (const PetModule::SiteBinding& b : sites) {
    switch (config.kind) {
      case PetKind::kSsf:
        FindByName(backbone.ssf_sites(), b.site)
            ->Bind(Ref(params, b.tensors[0]), Ref(params, b.tensors[1]));
        break;
      case PetKind::kAdapter: {
        nn::AdapterBinding binding{Ref(params, b.tensors[0]), Ref(params, b.tensors[1]),
                                   Ref(params, b.tensors[2]), Ref(params, b.tensors[3]),
                                   config.adapter_bottleneck};
        FindByName(backbone.adapter_sites(), b.site)->Bind(binding);
        break;
      }
      case PetKind::kLora: {
        nn::LoraBinding binding{Ref(params, b.tensors[0]), Ref(params, b.tensors[1]),
                                config.lora_alpha / config.lora_rank, config.lora_rank};
        FindByName(backbone.lora_targets(), b.site)->AttachLora(binding);
        break;
      }
    }
  }
}

void Unbind(const PetConfig& config, const std::vector<PetModule::SiteBinding>& sites,
            nn::Backbone& backbone) {
  for (const PetModule::SiteBinding& b : sites) {
    switch (config.kind) {
      case PetKind::kSsf:
        FindByName(backbone.ssf_sites(), b.site)->Unbind();
        break;
      case PetKind::kAdapter:
        FindByName(backbone.adapter_sites(), b.site)->Unbind();
        break;
      case PetKind::kLora:
        FindByName(backbone.lora_targets(), b.site)->DetachLora();
        break;
    }
  }
}

absl::Status Merge(const PetConfig& config, const std::vector<PetModule::SiteBinding>& sites,
                   nn::Backbone& backbone) {
  if (config.kind == PetKind::kAdapter) {
    return absl::FailedPreconditionError(
        "an adapter is a nonlinear branch and cannot be merged into the backbone");
  }
  if (config.kind == PetKind::kLora) {
    for (const PetModule::SiteBinding& b : sites)
      FindByName(backbone.lora_targets(), b.site)->MergeLora();
    return absl::OkStatus();
  }
  // SSF: check every site before folding any, so a refusal changes nothing.
  for (const PetModule::SiteBinding& b : sites) {
    nn::SsfSite* site = FindByName(backbone.ssf_sites(), b.site);
    auto* linear = dynamic_cast<nn::Linear*>(site->preceding());
    if (linear != nullptr && linear->has_lora()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "SSF site '", b.site, "' follows a Linear with a LoRA branch; merge the LoRA first"));
    }
  }
  for (const PetModule::SiteBinding& b : sites) {
    nn::SsfSite* site = FindByName(backbone.ssf_sites(), b.site);
    site->preceding()->FoldScaleShift(site->scale().value(), site->shift().value());
    site->Unbind();
  }
  return absl::OkStatus();
}

}  // namespace fedcl::peft::internal
