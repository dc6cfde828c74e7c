#include "core/cl/methods/method_util.h"

#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/nn/vit_backbone.h"

namespace fedcl::cl {

absl::Status CheckVitBlocks(const nn::Model& model, const std::vector<int>& blocks,
                            absl::string_view what) {
  if (model.config().backbone != nn::BackboneKind::kVit)
    return absl::InvalidArgumentError(absl::StrCat(what, " needs a ViT backbone"));
  const int depth = model.config().vit.depth;
  for (int b : blocks) {
    if (b < 0 || b >= depth)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": block ", b, " is not a block of this ", depth, "-block ViT"));
  }
  return absl::OkStatus();
}

peft::PetConfig AdapterConfig(const std::vector<int>& blocks, int bottleneck) {
  peft::PetConfig config{.kind = peft::PetKind::kAdapter};
  config.adapter_bottleneck = bottleneck;
  for (int b : blocks) config.site_prefixes.push_back(absl::StrCat("blocks.", b));
  return config;
}

absl::StatusOr<std::unique_ptr<peft::PetModule>> AttachAdapter(LearnerCore& core,
                                                               const std::vector<int>& blocks,
                                                               int bottleneck) {
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<peft::PetModule> adapter,
                         peft::PetModule::Create("adapter", AdapterConfig(blocks, bottleneck),
                                                 core.model().backbone(), core.rng()));
  FEDCL_RETURN_IF_ERROR(adapter->Attach(core.model()));
  return adapter;
}

absl::Status HeadAndAdapterMethod::Init(LearnerCore& core) {
  FEDCL_RETURN_IF_ERROR(
      CheckVitBlocks(core.model(), blocks_, absl::StrCat("method ", name(), " blocks")));
  FEDCL_ASSIGN_OR_RETURN(adapter_, AttachAdapter(core, blocks_, bottleneck_));
  return absl::OkStatus();
}

absl::Status RefuseOptions(const MethodConfig& config) {
  FEDCL_ASSIGN_OR_RETURN(
      base::OptionText options,
      base::OptionText::Parse(config.options, absl::StrCat("method ", config.name)));
  return options.CheckAllRead();
}

}  // namespace fedcl::cl
