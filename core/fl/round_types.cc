#include "core/fl/round_types.h"

namespace fedcl::fl {

UpdateSubmission ToSubmission(LocalUpdate& update, ClientId client, int64_t round) {
  UpdateSubmission submission;
  submission.client = client;
  submission.round = round;
  submission.num_samples = update.num_samples;
  submission.local_steps = update.local_steps;
  submission.loss = update.loss;
  for (ModuleUpdate& module : update.modules) {
    submission.modules.push_back(
        {module.name, module.base_version, module.layout, absl::MakeSpan(module.values)});
  }
  return submission;
}

}  // namespace fedcl::fl
