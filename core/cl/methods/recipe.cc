// recipe: the federated recipe of algorithms.md §1.4, the device side of FedAU and its baselines
// (fedcl-client's recipe devices and the federated simulator's). The method runs no module of its
// own: it takes on the modules the server lists (the head, the whole backbone, or PET modules
// created from their configuration) and, each round, trains them with the recipe the server
// sends — a fresh optimizer (SGD or AdamW) per round, one plain step per batch, optional
// gradient clipping, every other parameter frozen. The host draws the round's minibatches
// (core/device/recipe_round.h) so that a client's update depends only on (seed, client, round).
// No options.
#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/method_util.h"

namespace fedcl::cl {
namespace {

class RecipeMethod final : public Method {
 public:
  absl::string_view name() const override { return "recipe"; }
  absl::Status Init(LearnerCore& core) override { return absl::OkStatus(); }
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override {
    std::vector<nn::ParameterSet*> out;
    for (const Adopted& a : adopted_) out.push_back(a.set);
    return out;
  }
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override {
    std::vector<peft::ModuleSpec> out;
    for (const Adopted& a : adopted_) out.push_back(a.spec);
    return out;
  }
  bool CanAdopt(const peft::ModuleSpec& spec) const override {
    return spec.role == peft::ModuleRole::kHead || spec.role == peft::ModuleRole::kBackbone ||
           spec.role == peft::ModuleRole::kPet;
  }
  absl::StatusOr<nn::ParameterSet*> AdoptModule(LearnerCore& core, const peft::ModuleSpec& spec,
                                                const nn::ParameterSet& values) override;
  absl::Status BeginRound(LearnerCore& core, const nn::Recipe& recipe) override;
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override {
    if (optimizer_ == nullptr) {
      return absl::FailedPreconditionError(
          "the recipe method trains in rounds: BeginRound with the server's recipe first");
    }
    LearnStats stats;
    stats.loss = nn::TrainStep(core.model(), *optimizer_, images, labels,
                               {.clip_grad_norm = recipe_.clip_grad_norm});
    core.CountStep();
    return stats;
  }
  int64_t ModuleValues() const override {
    int64_t values = 0;
    for (const Adopted& a : adopted_)
      if (a.pet != nullptr) values += a.set->num_values();
    return values;
  }

 private:
  struct Adopted {
    peft::ModuleSpec spec;
    nn::ParameterSet* set = nullptr;
    std::unique_ptr<peft::PetModule> pet;  // for role pet
  };

  std::vector<Adopted> adopted_;
  nn::Recipe recipe_;
  std::unique_ptr<nn::Optimizer> optimizer_;
};

absl::StatusOr<nn::ParameterSet*> RecipeMethod::AdoptModule(LearnerCore& core,
                                                            const peft::ModuleSpec& spec,
                                                            const nn::ParameterSet& values) {
  if (!CanAdopt(spec)) return nullptr;
  for (const Adopted& a : adopted_) {
    if (a.spec.name == spec.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("module '", spec.name, "' is taken on already"));
    }
  }
  nn::Model& model = core.model();
  Adopted adopted{spec, nullptr, nullptr};
  if (spec.role == peft::ModuleRole::kPet) {
    if (values.num_tensors() > 0) {
      FEDCL_ASSIGN_OR_RETURN(adopted.pet,
                             peft::PetModule::FromParameters(spec.name, spec.pet, values));
    } else {
      FEDCL_ASSIGN_OR_RETURN(
          adopted.pet, peft::PetModule::Create(spec.name, spec.pet, model.backbone(), core.rng()));
    }
    FEDCL_RETURN_IF_ERROR(adopted.pet->Attach(model));
    adopted.set = &adopted.pet->parameters();
  } else {
    adopted.set = spec.role == peft::ModuleRole::kHead ? &model.head().parameters()
                                                       : &model.backbone().parameters();
    if (values.num_tensors() > 0) {
      FEDCL_RETURN_IF_ERROR(adopted.set->CheckSameLayout(values));
      adopted.set->flat_values() = values.flat_values();
    }
  }
  adopted_.push_back(std::move(adopted));
  return adopted_.back().set;
}

absl::Status RecipeMethod::BeginRound(LearnerCore& core, const nn::Recipe& recipe) {
  FEDCL_RETURN_IF_ERROR(recipe.Validate());
  // Only the server's modules train; everything else stays as it is.
  for (nn::ParameterSet* set : core.model().parameter_sets()) {
    bool shared = false;
    for (const Adopted& a : adopted_) shared = shared || a.set == set;
    set->SetAllTrainable(shared);
  }
  recipe_ = recipe;
  optimizer_ = nn::MakeOptimizer(recipe);
  return absl::OkStatus();
}

}  // namespace

void RegisterRecipeMethod(MethodRegistry& registry) {
  RegisterMethodWithoutOptions<RecipeMethod>(
      registry, "recipe",
      "the federated recipe (§1.4): trains the server's modules with the round's recipe");
}

}  // namespace fedcl::cl
