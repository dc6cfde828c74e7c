#include "proto/federation_convert.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/tensor_convert.h"

namespace fedcl::proto {

void ToProto(const fl::Recipe& recipe, v1::Recipe* message) {
  message->set_local_steps(recipe.local_steps);
  message->set_batch_size(recipe.batch_size);
  message->set_learning_rate(recipe.learning_rate);
  message->set_optimizer(recipe.optimizer);
  message->set_momentum(recipe.momentum);
  message->set_weight_decay(recipe.weight_decay);
  message->set_clip_grad_norm(recipe.clip_grad_norm);
}

absl::StatusOr<fl::Recipe> FromProto(const v1::Recipe& message) {
  fl::Recipe recipe;
  recipe.local_steps = message.local_steps();
  recipe.batch_size = message.batch_size();
  recipe.learning_rate = message.learning_rate();
  recipe.optimizer = message.optimizer().empty() ? "sgd" : message.optimizer();
  recipe.momentum = message.momentum();
  recipe.weight_decay = message.weight_decay();
  recipe.clip_grad_norm = message.clip_grad_norm();
  FEDCL_RETURN_IF_ERROR(recipe.Validate());
  return recipe;
}

void ToProto(const fl::ModuleSpec& spec, v1::ModuleDescriptor* message) {
  message->set_name(spec.name);
  message->set_role(std::string(fl::ModuleRoleName(spec.role)));
  if (spec.role == fl::ModuleRole::kPet) ToProto(spec.pet, message->mutable_pet());
  if (spec.role == fl::ModuleRole::kExpert || spec.role == fl::ModuleRole::kBaseExpert)
    message->set_block(spec.block);
}

absl::StatusOr<fl::ModuleSpec> SpecFromProto(const v1::ModuleDescriptor& message) {
  fl::ModuleSpec spec;
  spec.name = message.name();
  if (spec.name.empty()) return absl::InvalidArgumentError("module descriptor without a name");
  FEDCL_ASSIGN_OR_RETURN(spec.role, fl::ParseModuleRole(message.role()));
  if (spec.role == fl::ModuleRole::kPet) {
    FEDCL_ASSIGN_OR_RETURN(spec.pet, FromProto(message.pet()));
  }
  if (spec.role == fl::ModuleRole::kExpert || spec.role == fl::ModuleRole::kBaseExpert)
    spec.block = message.block();
  return spec;
}

void ToProto(const fl::WorkAssignment& work, v1::GetWorkResponse* message) {
  message->set_action(work.action == fl::WorkAssignment::Action::kTrain
                          ? v1::GetWorkResponse::ACTION_TRAIN
                          : v1::GetWorkResponse::ACTION_WAIT);
  message->set_round(work.round);
  message->set_deadline_unix_ms(absl::ToUnixMillis(work.deadline));
  ToProto(work.recipe, message->mutable_recipe());
  for (const fl::ModuleInfo& info : work.modules) {
    v1::ModuleDescriptor* d = message->add_modules();
    ToProto(info.spec, d);
    d->set_version(info.version);
    d->set_num_values(info.num_values);
    d->set_download(info.download);
    d->set_has_descriptor(info.has_descriptor);
    if (info.upload.compresses()) d->set_upload_compression(fl::CompressionSpecText(info.upload));
  }
  message->set_retry_after_ms(absl::ToInt64Milliseconds(work.retry_after));
}

absl::StatusOr<fl::ModuleProposal> ProposalFromProto(const v1::ProposeModuleRequest& message) {
  fl::ModuleProposal proposal;
  proposal.client = message.client_id();
  proposal.round = message.round();
  proposal.block = message.block();
  FEDCL_ASSIGN_OR_RETURN(proposal.spec.role, fl::ParseModuleRole(message.role()));
  proposal.spec.block = message.block();
  absl::StatusOr<nn::ParameterSet> values = FromProto(message.parameters());
  if (!values.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("proposed parameters: ", values.status().message()));
  }
  proposal.values = *std::move(values);
  proposal.values.DropGradients();  // the server keeps values only
  absl::StatusOr<nn::ParameterSet> descriptor = FromProto(message.descriptor_tensors());
  if (!descriptor.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("proposed descriptor: ", descriptor.status().message()));
  }
  proposal.descriptor = *std::move(descriptor);
  proposal.descriptor.DropGradients();
  proposal.statistics.mean.assign(message.statistics_mean().begin(),
                                  message.statistics_mean().end());
  proposal.statistics.variance.assign(message.statistics_variance().begin(),
                                      message.statistics_variance().end());
  return proposal;
}

void ToProto(const fl::ModuleProposal& proposal, v1::ProposeModuleRequest* message) {
  message->set_client_id(proposal.client);
  message->set_round(proposal.round);
  message->set_block(proposal.block);
  message->set_role(std::string(fl::ModuleRoleName(proposal.spec.role)));
  ToProto(proposal.values, message->mutable_parameters());
  if (proposal.descriptor.num_tensors() > 0) {
    ToProto(proposal.descriptor, message->mutable_descriptor_tensors());
  }
  for (float m : proposal.statistics.mean) message->add_statistics_mean(m);
  for (float v : proposal.statistics.variance) message->add_statistics_variance(v);
}

absl::StatusOr<std::vector<fl::TensorSpec>> LayoutFromProto(const v1::ParameterSet& layout) {
  std::vector<fl::TensorSpec> specs;
  for (const v1::Tensor& tensor : layout.tensors()) {
    if (tensor.dtype() != v1::DTYPE_FLOAT32) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", tensor.name(), "' has dtype ",
                                                     tensor.dtype(),
                                                     "; only float32 deltas are accepted"));
    }
    fl::TensorSpec spec{tensor.name(), {}};
    for (int64_t dim : tensor.shape()) {
      if (dim <= 0 || dim > (int64_t{1} << 32)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", tensor.name(), "' has an invalid dimension ", dim));
      }
      spec.shape.push_back(dim);
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

void LayoutToProto(const std::vector<fl::TensorSpec>& layout, v1::ParameterSet* message) {
  for (const fl::TensorSpec& spec : layout) {
    v1::Tensor* tensor = message->add_tensors();
    tensor->set_name(spec.name);
    for (int64_t dim : spec.shape) tensor->add_shape(dim);
    tensor->set_dtype(v1::DTYPE_FLOAT32);
  }
}

}  // namespace fedcl::proto
