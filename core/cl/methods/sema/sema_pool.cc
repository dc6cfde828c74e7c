// SEMA's growth hooks, used by the device session (core/device): proposals of grown adapters,
// adapters other devices grew joining the mixture, and descriptors through the server's pool.
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/sema/sema_method.h"

namespace fedcl::cl {

std::vector<ModuleProposal> SemaMethod::TakeProposals() {
  std::vector<ModuleProposal> out = std::move(proposals_);
  proposals_.clear();
  return out;
}

absl::StatusOr<SemaMethod::Block*> SemaMethod::FindBlock(int block) {
  for (auto& b : blocks_)
    if (b->index == block) return b.get();
  return absl::InvalidArgumentError(
      absl::StrCat("block ", block, " is not an expandable block of this learner"));
}

nn::ParameterSet* SemaMethod::Expert(int block, int index) {
  for (auto& b : blocks_)
    if (b->index == block && index >= 0 && index < b->mixture.experts())
      return &b->mixture.expert(index);
  return nullptr;
}

std::pair<int, int> SemaMethod::SlotOf(const nn::ParameterSet* set) {
  for (auto& b : blocks_) {
    for (int e = 0; e < b->mixture.experts(); ++e)
      if (&b->mixture.expert(e) == set) return {b->index, e};
  }
  return {-1, -1};
}

std::vector<int> SemaMethod::AdaptersPerBlock() const {
  std::vector<int> out;
  for (const auto& b : blocks_) out.push_back(b->mixture.experts());
  return out;
}

absl::StatusOr<int> SemaMethod::AddPooledExpert(int block, const nn::ParameterSet& values,
                                                const nn::ParameterSet* descriptor) {
  FEDCL_ASSIGN_OR_RETURN(Block * b, FindBlock(block));
  std::optional<SharedDescriptor> shared;
  if (descriptor != nullptr) {
    FEDCL_ASSIGN_OR_RETURN(shared, DescriptorFromParameters(*descriptor, b->mixture.dim(),
                                                            options_.descriptor_bottleneck));
  }
  const int64_t bytes =
      b->mixture.expert_bytes() +
      (shared.has_value() ? shared->rd.num_parameters() * int64_t{sizeof(float)} : int64_t{0});
  FEDCL_RETURN_IF_ERROR(budget_.Check(block, b->mixture.experts(), bytes, UsedBytes()));
  if (!values.flat_values().allFinite())
    return absl::InvalidArgumentError("a pooled adapter has non-finite values");
  FEDCL_ASSIGN_OR_RETURN(int index, b->mixture.AddExpert(values));
  b->mixture.expert(index).SetAllTrainable(false);
  if (shared.has_value())
    b->AddDescriptor(std::move(shared->rd), std::move(shared->records), index);
  return index;
}

bool SemaMethod::ExpertHasDescriptor(int block, int index) const {
  for (const auto& b : blocks_)
    if (b->index == block) return b->DescriptorOf(index) >= 0;
  return false;
}

absl::Status SemaMethod::AttachPooledDescriptor(int block, int index,
                                                const nn::ParameterSet& descriptor) {
  FEDCL_ASSIGN_OR_RETURN(Block * b, FindBlock(block));
  if (index < 0 || index >= b->mixture.experts()) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", block, " has ", b->mixture.experts(), " adapters, not ", index + 1));
  }
  if (ExpertHasDescriptor(block, index)) {
    return absl::InvalidArgumentError(
        absl::StrCat("adapter ", index, " of block ", block, " already has a descriptor"));
  }
  FEDCL_ASSIGN_OR_RETURN(
      SharedDescriptor shared,
      DescriptorFromParameters(descriptor, b->mixture.dim(), options_.descriptor_bottleneck));
  const int64_t bytes = shared.rd.num_parameters() * int64_t{sizeof(float)};
  const int64_t budget = core_->options().module_memory_budget_bytes;
  if (budget > 0 && UsedBytes() + bytes > budget) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a pooled descriptor of ", bytes,
                     " bytes would take the modules past the budget of ", budget, " bytes"));
  }
  b->AddDescriptor(std::move(shared.rd), std::move(shared.records), index);
  return absl::OkStatus();
}

std::optional<nn::ParameterSet> SemaMethod::ExpertDescriptor(int block, int index) const {
  for (const auto& b : blocks_) {
    if (b->index != block) continue;
    const int k = b->DescriptorOf(index);
    if (k < 0 || !b->records[k].frozen()) return std::nullopt;
    return DescriptorToParameters(b->descriptors[k], b->records[k]);
  }
  return std::nullopt;
}

}  // namespace fedcl::cl
